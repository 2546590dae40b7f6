import type { SQSRecord } from 'aws-lambda';
import type { Mailbox } from '../address.ts';
import { admit, LedgerEntry, ledgerKeyOf } from '../delivery.ts';
import { RelayFailure } from '../failures.ts';
import type { DeliveryLedger, DeliveryRecord, MaybeSent, TryFailure } from '../ledger.ts';
import type { MailProvider } from '../mail-provider.ts';
import {
  isRawMessage,
  type MessageSchema,
  type ParseResult,
  parseMessage,
  type RelayMessage,
  recipientsOf,
} from '../message.ts';
import { METRIC_NAMES, type RelayTelemetry } from '../metrics.ts';
import { implicitRoute, rewriteSender, selectRoute } from '../routing.ts';
import type { RouteSettings } from '../settings.ts';
import type { Suppression, SuppressionList } from '../suppression.ts';
import { type BatchReads, readLedger, sourceMessageIdOf, suppressionsFromBatch } from './batch-reads.ts';
import { CLAIM_LOST, type Delivery, ledgerUnavailable, type RecordContext } from './delivery-context.ts';
import type { RelayCoreSettings, RelayLogger } from './types.ts';

export interface AdmissionDependencies {
  readonly providers: readonly MailProvider[];
  readonly settings: Pick<RelayCoreSettings, 'routes'>;
  readonly schema: MessageSchema;
  readonly ledger: DeliveryLedger;
  readonly suppressions: SuppressionList;
  readonly telemetry: RelayTelemetry;
  readonly logger: RelayLogger;
  readonly now: () => number;
}

/** An invalid message: already in the dead-letter queue, or to be dead-lettered with `failure`. */
export type InvalidMessage =
  | { readonly kind: 'already-dead-lettered'; readonly record: DeliveryRecord }
  | {
      readonly kind: 'invalid';
      readonly failure: RelayFailure;
      /** The message's ledger key when the ledger has no entry under it (the refusal is recorded there). */
      readonly unrecordedKey: string | undefined;
    };

/** What the ledger and the route say about a parsed message, and the delivery it makes. */
export type AdmissionDecision =
  | { readonly kind: 'already-dead-lettered'; readonly record: DeliveryRecord }
  | { readonly kind: 'duplicate'; readonly delivery: Delivery; readonly record: DeliveryRecord }
  /** Another function has it with a provider right now: try again once its lease has run out. */
  | {
      readonly kind: 'in-flight';
      readonly delivery: Delivery;
      readonly failure: RelayFailure;
      readonly retryInSeconds: number;
      readonly failures: readonly TryFailure[];
    }
  /** The idempotency key came with another body: dead-letter it. */
  | { readonly kind: 'conflict'; readonly delivery: Delivery; readonly failure: RelayFailure }
  /** A provider may have sent it: resolve that before anything is sent. */
  | { readonly kind: 'unknown'; readonly delivery: Delivery; readonly maybeSent: MaybeSent }
  | { readonly kind: 'proceed'; readonly delivery: Delivery };

/** The recipients left once the suppression list had its say. */
export interface Screening {
  readonly suppressedRecipients: string[];
  /** Every recipient not suppressed. */
  readonly remainingRecipients: Mailbox[];
  /** `list` without its suppressed recipients. */
  remaining(list: Mailbox[] | undefined): Mailbox[] | undefined;
}

/**
 * Admission: parses the record, finds its ledger entry and what it says (a duplicate, in flight,
 * already dead-lettered…), selects the route and the providers that may send as its sender, and drops
 * suppressed recipients. Nothing here sends.
 */
export class AdmissionStage {
  private readonly byName: Map<string, MailProvider>;

  constructor(private readonly dependencies: AdmissionDependencies) {
    this.byName = new Map(dependencies.providers.map((provider) => [provider.name, provider]));
  }

  parse(sqsRecord: SQSRecord, reads: BatchReads | undefined): ParseResult {
    return reads?.parsed.get(sqsRecord.messageId) ?? parseMessage(sqsRecord.body, this.dependencies.schema);
  }

  /** Refuses a message that does not parse, unless this very SQS message is in the DLQ already. */
  async refuseInvalid(
    sqsRecord: SQSRecord,
    problems: readonly string[],
    signal: AbortSignal,
    reads: BatchReads | undefined,
  ): Promise<InvalidMessage> {
    const key = ledgerKeyOf(undefined, sqsRecord.messageId);
    // Best effort: when the ledger cannot be read, a crash-repeated copy may reach the DLQ twice.
    const previous = await readLedger(this.dependencies.ledger, key, signal, reads).catch(() => undefined);
    if (previous?.state === 'dead-lettered' && previous.messageId === sqsRecord.messageId) {
      return { kind: 'already-dead-lettered', record: previous };
    }
    const failure = new RelayFailure({
      failureClass: 'permanent',
      code: 'InvalidMessage',
      reason: problems.join('; '),
      hint: 'Fix the message to match the contract (schema/message.schema.json) and send it again.',
    });
    return { kind: 'invalid', failure, unrecordedKey: previous ? undefined : key };
  }

  /** Counts the message as accepted and adds its ids and tags to the log keys. */
  accept(message: RelayMessage, keys: Record<string, unknown>): void {
    this.dependencies.telemetry.count(METRIC_NAMES.accepted, {});
    Object.assign(keys, {
      recipients: recipientsOf(message).length,
      ...(message.idempotencyKey && { idempotencyKey: message.idempotencyKey }),
      ...(message.tags && { tags: message.tags }),
    });
  }

  /**
   * The message's ledger entry. A message without an idempotency key is keyed by its SQS message id;
   * a copy (moved back from the dead-letter queue, or put back to wait for a limit) has a new id, so
   * it is keyed by the id it had (MailRelay.SourceMessageId), unless that entry holds another body.
   */
  async findEntry(
    sqsRecord: SQSRecord,
    message: RelayMessage,
    bodyHash: string,
    signal: AbortSignal,
    reads: BatchReads | undefined,
  ): Promise<LedgerEntry> {
    const { ledger } = this.dependencies;
    const read = (key: string) =>
      readLedger(ledger, key, signal, reads).catch((error: unknown) => {
        throw ledgerUnavailable(error);
      });
    if (message.idempotencyKey) {
      return new LedgerEntry(ledger, message.idempotencyKey, await read(message.idempotencyKey));
    }
    const source = sourceMessageIdOf(sqsRecord);
    if (source) {
      // A copy (back from the dead-letter queue, or waiting out a provider's limit) is the original
      // message to the ledger, unless its body changed: if the original comes back too, the two are
      // still sent once.
      const originalKey = ledgerKeyOf(undefined, source);
      const original = await read(originalKey);
      if (original === undefined || original.bodyHash === bodyHash) {
        return new LedgerEntry(ledger, originalKey, original);
      }
    }
    const key = ledgerKeyOf(undefined, sqsRecord.messageId);
    return new LedgerEntry(ledger, key, await read(key));
  }

  /**
   * Decides from the ledger entry and the route what happens to the message. Throws (a permanent
   * RelayFailure) when the sender is not allowed or no provider can send as it.
   */
  admit(
    record: RecordContext,
    message: RelayMessage,
    entry: LedgerEntry,
    bodyHash: string,
    reads: BatchReads | undefined,
  ): AdmissionDecision {
    const { settings, providers, now } = this.dependencies;
    const { sqsRecord, keys } = record;
    const admission = admit(entry.record, { bodyHash, now: now(), messageId: sqsRecord.messageId });
    if (admission.kind === 'already-dead-lettered') return admission;

    // Policy first: a sender that is not allowed fails the same way every time.
    const route = settings.routes
      ? selectRoute(settings.routes, message.from.address, message.route)
      : implicitRoute(providers, message.from.address);
    keys.route = route.name;
    // A raw message's Reply-To is in its MIME: a rewrite sets one only when it has none.
    const ownReplyTo = isRawMessage(message) ? undefined : message.replyTo;
    const sender = route.rewriteFrom
      ? rewriteSender({ from: message.from, replyTo: ownReplyTo }, route.rewriteFrom)
      : { from: message.from, replyTo: ownReplyTo };
    const delivery: Delivery = {
      ...record,
      message,
      entry,
      bodyHash,
      route,
      sender,
      chain: this.chainFor(route, sender.from.address),
      reads,
    };

    switch (admission.kind) {
      case 'duplicate':
        return { kind: 'duplicate', delivery, record: admission.record };
      case 'in-flight':
        return {
          kind: 'in-flight',
          delivery,
          failure: new RelayFailure({
            failureClass: 'transient',
            code: CLAIM_LOST,
            reason: `another delivery of ${entry.key} is with ${admission.record.handedOffTo ?? 'a provider'} right now`,
          }),
          retryInSeconds: admission.retryInSeconds,
          failures: admission.record.failures,
        };
      case 'conflict':
        return {
          kind: 'conflict',
          delivery,
          failure: new RelayFailure({
            failureClass: 'permanent',
            code: 'IdempotencyKeyReused',
            reason: `idempotencyKey: ${entry.key} was already used for a different message (${admission.record.messageId})`,
            hint: 'Use a new idempotency key for each distinct message; repeat a key only to repeat the same message.',
          }),
        };
      case 'unknown':
        return { kind: 'unknown', delivery, maybeSent: admission.maybeSent };
      case 'proceed':
        return { kind: 'proceed', delivery };
    }
  }

  /**
   * Drops the recipients on the suppression list (read by the batch, else now). Throws a transient
   * RelayFailure when the list cannot be read.
   */
  async screenRecipients(delivery: Delivery): Promise<Screening> {
    const { telemetry, logger } = this.dependencies;
    const { message, keys } = delivery;
    const suppressed = await this.findSuppressed(message, delivery.deadlines.work, delivery.reads);
    const remaining = (list: Mailbox[] | undefined) =>
      list?.filter((mailbox) => !suppressed.has(mailbox.address.toLowerCase()));
    const suppressedRecipients = [...suppressed.keys()];
    if (suppressedRecipients.length > 0) {
      telemetry.count(METRIC_NAMES.suppressed, {}, suppressedRecipients.length);
      // Detail only: the message's outcome line counts them; the ledger and the outcome event list them.
      logger.debug?.('Suppressed recipients dropped', {
        ...keys,
        suppressedRecipients: [...suppressed.values()].map(({ address, reason }) => ({ address, reason })),
      });
    }
    const remainingRecipients = isRawMessage(message)
      ? (remaining(message.recipients) ?? [])
      : recipientsOf({ to: remaining(message.to), cc: remaining(message.cc), bcc: remaining(message.bcc) });
    return { suppressedRecipients, remainingRecipients, remaining };
  }

  /** The route's providers that can send as `from`, in order. */
  private chainFor(route: RouteSettings, from: string): MailProvider[] {
    const chain = route.providers
      .map((name) => this.byName.get(name))
      .filter((provider): provider is MailProvider => provider?.canSendAs(from) === true);
    if (chain.length === 0) {
      throw new RelayFailure({
        failureClass: 'permanent',
        code: 'SenderNotConfigured',
        reason: `from: route ${route.name} has no provider that can send as ${from} (${route.providers.join(', ')})`,
        hint: 'Add the address or its domain to graph.senders, the senders of the SMTP connection (smtp.senders, or smtp.connections.<name>.senders) or ses.identities (verified in SES).',
      });
    }
    return chain;
  }

  private async findSuppressed(
    message: RelayMessage,
    signal: AbortSignal,
    reads: BatchReads | undefined,
  ): Promise<Map<string, Suppression>> {
    const addresses = recipientsOf(message).map((mailbox) => mailbox.address.toLowerCase());
    const fromBatch = suppressionsFromBatch(addresses, reads);
    if (fromBatch) return fromBatch;
    try {
      return await this.dependencies.suppressions.find(addresses, signal);
    } catch (error) {
      throw new RelayFailure(
        {
          failureClass: 'transient',
          code: 'SuppressionListUnavailable',
          reason: `could not read the suppression list: ${String(error)}`,
        },
        { cause: error },
      );
    }
  }
}
