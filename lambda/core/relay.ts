import { randomUUID } from 'node:crypto';
import type { SQSRecord } from 'aws-lambda';
import { domainOf, type Mailbox } from './address.ts';
import {
  type AttachmentStore,
  isRawOutbound,
  type OutboundMessage,
  resolveAttachments,
  resolveRawMessage,
} from './attachments.ts';
import { backoffSeconds } from './backoff.ts';
import { CircuitBreakers } from './circuit-breaker.ts';
import { DEAD_LETTER_ATTRIBUTES, type DeadLetterSink } from './dead-letter.ts';
import type { RecordDeadlines } from './deadline.ts';
import { admit, bodyHashOf, LedgerEntry, ledgerKeyOf, OUTCOME_UNKNOWN, withFailure } from './delivery.ts';
import { ANSWER_LOST_HINT, type FailureClass, RelayFailure, toRelayFailure } from './failures.ts';
import {
  type DeliveryLedger,
  type DeliveryRecord,
  type MaybeSent,
  RELAY_FAILURE_PROVIDER,
  type TryFailure,
} from './ledger.ts';
import type { MailProvider, SendContext, SendReceipt } from './mail-provider.ts';
import {
  createMessageSchema,
  isRawMessage,
  type MessageSchema,
  type ParseResult,
  parseMessage,
  type RelayMessage,
  recipientsOf,
} from './message.ts';
import { METRIC_DIMENSIONS, METRIC_NAMES, NO_TELEMETRY, type RelayTelemetry } from './metrics.ts';
import { type OutcomeEvent, type OutcomePublisher, TRACE_HEADERS } from './outcomes.ts';
import type { RecordDelay } from './record-delay.ts';
import { implicitRoute, rewriteSender, selectRoute } from './routing.ts';
import type { RelaySettings, RouteSettings } from './settings.ts';
import type { Suppression, SuppressionList } from './suppression.ts';

/** The slice of a structured logger the core needs (Powertools Logger fits). */
export interface RelayLogger {
  info(message: string, attributes: Record<string, unknown>): void;
  warn(message: string, attributes: Record<string, unknown>): void;
  error(message: string, attributes: Record<string, unknown>): void;
}

export type RelayCoreSettings = Pick<
  RelaySettings,
  'limits' | 'maxReceiveCount' | 'attachments' | 'ingress' | 'routes' | 'retry' | 'circuitBreaker' | 'ledger'
>;

export interface RelayDependencies {
  readonly providers: readonly MailProvider[];
  readonly deadLetters: DeadLetterSink;
  readonly settings: RelayCoreSettings;
  readonly logger: RelayLogger;
  /** Remembers what happened to each message: no second send, and `mail-relay status`. */
  readonly ledger: DeliveryLedger;
  readonly suppressions: SuppressionList;
  /** Reads S3-referenced attachments; needed when settings.attachments is set. */
  readonly attachmentStore?: AttachmentStore;
  /** Sets when a retried record comes back (backoff, Retry-After). */
  readonly recordDelay?: RecordDelay;
  /** Per warm function; created from settings.circuitBreaker when not given. */
  readonly circuitBreakers?: CircuitBreakers;
  /** Metrics (EMF in the send function). */
  readonly telemetry?: RelayTelemetry;
  /** Final outcomes for producing apps (EventBridge in the send function). */
  readonly outcomes?: OutcomePublisher;
  readonly now?: () => number;
  readonly random?: () => number;
}

export type RecordOutcome =
  | {
      readonly outcome: 'sent';
      readonly receipt: SendReceipt;
      readonly route: string;
      /** Providers that failed before the one that sent it. */
      readonly fallbackFrom: readonly string[];
      readonly suppressedRecipients: readonly string[];
    }
  /** A provider had already accepted this message (same idempotency key or SQS message id). */
  | { readonly outcome: 'duplicate'; readonly record: DeliveryRecord }
  /** Every recipient is suppressed: nothing was sent. */
  | { readonly outcome: 'suppressed'; readonly suppressedRecipients: readonly string[] }
  | { readonly outcome: 'dead-lettered'; readonly failure: RelayFailure }
  /** This SQS message is in the dead-letter queue already (a function stopped before deleting it). */
  | { readonly outcome: 'already-dead-lettered'; readonly record: DeliveryRecord };

export interface Relay {
  /**
   * Resolves when the record is finished (sent, a duplicate, suppressed, or safely in the DLQ) and may
   * be deleted; throws a RelayFailure when it must be retried (the batch reports it as a failed item).
   */
  processRecord(record: SQSRecord, deadlines?: RecordDeadlines): Promise<RecordOutcome>;
  /**
   * The records of one invocation: what they all need is read once (their ledger entries in one
   * request, the suppression list for all their recipients in another), then each is processed as
   * processRecord does, concurrently. One settled result per record, in order.
   */
  processBatch(
    records: readonly SQSRecord[],
    deadlines?: RecordDeadlines,
  ): Promise<PromiseSettledResult<RecordOutcome>[]>;
}

/**
 * What a batch read at once. A record uses it instead of its own reads; what is missing here (the
 * batch read failed, or did not cover it) each record reads alone, as before.
 */
interface BatchReads {
  readonly parsed: ReadonlyMap<string, ParseResult>;
  /** Ledger entries by key, for the keys in `keys` (a key read but absent from `found`: no entry). */
  readonly ledger?: {
    readonly keys: ReadonlySet<string>;
    readonly found: ReadonlyMap<string, DeliveryRecord>;
  };
  /** Suppressions among `addresses` (lower-cased), keyed by lower-cased address. */
  readonly suppressed?: {
    readonly addresses: ReadonlySet<string>;
    readonly found: ReadonlyMap<string, Suppression>;
  };
}

/** Where the walk along a route's provider chain ended for this delivery. */
type WalkResult =
  | {
      readonly kind: 'sent';
      readonly receipt: SendReceipt;
      readonly fallbackFrom: string[];
      readonly failures: TryFailure[];
      /** Milliseconds the accepting provider call took. */
      readonly latencyMs: number;
    }
  | { readonly kind: 'permanent'; readonly failure: RelayFailure }
  | { readonly kind: 'retry'; readonly failure: RelayFailure; readonly delaySeconds: number }
  | { readonly kind: 'exhausted'; readonly failure: RelayFailure }
  /**
   * The hand-off was refused (another function handed the message off first) or could not be written
   * (the ledger is unreachable): the provider got nothing, and no provider try is counted.
   */
  | { readonly kind: 'not-handed-off'; readonly failure: RelayFailure; readonly delaySeconds: number }
  /** The provider may have accepted it: the answer to the sending request was lost. */
  | {
      readonly kind: 'maybe-sent';
      readonly maybeSent: MaybeSent;
      readonly failure: RelayFailure;
      readonly failures: TryFailure[];
    };

/** What one delivery works with once the message is parsed and routed. */
interface Delivery {
  readonly sqsRecord: SQSRecord;
  readonly message: RelayMessage;
  readonly attempt: number;
  readonly keys: Record<string, unknown>;
  readonly deadlines: RecordDeadlines;
  readonly entry: LedgerEntry;
  readonly bodyHash: string;
  readonly route: RouteSettings;
  readonly sender: { from: Mailbox; replyTo?: Mailbox[] | undefined };
  readonly chain: readonly MailProvider[];
  /** What the batch read at once, when the record came with its batch. */
  readonly reads: BatchReads | undefined;
}

/** The code of a hand-off that lost the race for the ledger entry to another function. */
const CLAIM_LOST = 'InFlight';
/** The ledger could not be read or written: nothing was sent. */
const LEDGER_UNAVAILABLE = 'LedgerUnavailable';
/** First wait before looking for a lost-answer message again; it doubles up to the provider's window. */
const LOOKUP_FIRST_DELAY_SECONDS = 10;

const NEVER = new AbortController().signal;
const NO_DEADLINES: RecordDeadlines = { work: NEVER, wrapUp: NEVER };

export function createRelay(dependencies: RelayDependencies): Relay {
  return new RelayCore(dependencies);
}

class RelayCore implements Relay {
  private readonly now: () => number;
  private readonly random: () => number;
  private readonly breakers: CircuitBreakers;
  private readonly schema: MessageSchema;
  private readonly byName: Map<string, MailProvider>;
  private readonly telemetry: RelayTelemetry;
  private readonly settings: RelayCoreSettings;
  private readonly logger: RelayLogger;

  constructor(private readonly dependencies: RelayDependencies) {
    this.settings = dependencies.settings;
    this.logger = dependencies.logger;
    this.now = dependencies.now ?? Date.now;
    this.random = dependencies.random ?? Math.random;
    this.breakers =
      dependencies.circuitBreakers ?? new CircuitBreakers(this.settings.circuitBreaker, this.now);
    this.schema = createMessageSchema(this.settings.limits);
    this.byName = new Map(dependencies.providers.map((provider) => [provider.name, provider]));
    this.telemetry = dependencies.telemetry ?? NO_TELEMETRY;
  }

  async processBatch(
    records: readonly SQSRecord[],
    deadlines: RecordDeadlines = NO_DEADLINES,
  ): Promise<PromiseSettledResult<RecordOutcome>[]> {
    const reads = await this.readBatch(records, deadlines.work);
    return Promise.allSettled(records.map((record) => this.processRecord(record, deadlines, reads)));
  }

  async processRecord(
    sqsRecord: SQSRecord,
    deadlines: RecordDeadlines = NO_DEADLINES,
    reads?: BatchReads,
  ): Promise<RecordOutcome> {
    try {
      return await this.process(sqsRecord, deadlines, reads);
    } catch (error) {
      // The batch reports the record as failed; the delay for its return is already set.
      throw error instanceof RetryScheduled ? error.failure : error;
    }
  }

  private iso(): string {
    return new Date(this.now()).toISOString();
  }

  /**
   * Reads once what the batch's records need: their ledger entries (a message's idempotency key or SQS
   * message id, and the id a redriven copy had) and the suppressions among all their recipients. A
   * failed read is left to each record, whose own read then fails (and is retried) alone.
   */
  private async readBatch(records: readonly SQSRecord[], signal: AbortSignal): Promise<BatchReads> {
    const parsed = new Map(
      records.map((record) => [record.messageId, parseMessage(record.body, this.schema)]),
    );
    const ledgerKeys = new Set<string>();
    const addresses = new Set<string>();
    for (const record of records) {
      const result = parsed.get(record.messageId);
      if (!result?.ok) {
        ledgerKeys.add(ledgerKeyOf(undefined, record.messageId));
        continue;
      }
      ledgerKeys.add(ledgerKeyOf(result.message.idempotencyKey, record.messageId));
      const source = sourceMessageIdOf(record);
      if (!result.message.idempotencyKey && source) ledgerKeys.add(ledgerKeyOf(undefined, source));
      for (const mailbox of recipientsOf(result.message)) addresses.add(mailbox.address.toLowerCase());
    }
    const { ledger, suppressions } = this.dependencies;
    const leftToEachRecord = (what: string) => (error: unknown) => {
      this.logger.warn(`Could not read ${what} for the whole batch; each record reads its own`, {
        records: records.length,
        error: String(error),
      });
      return undefined;
    };
    const [found, suppressed] = await Promise.all([
      ledger.getMany?.([...ledgerKeys], signal).catch(leftToEachRecord('the ledger entries')),
      addresses.size > 0
        ? suppressions.find([...addresses], signal).catch(leftToEachRecord('the suppression list'))
        : new Map(),
    ]);
    return {
      parsed,
      ...(found && { ledger: { keys: ledgerKeys, found } }),
      ...(suppressed && { suppressed: { addresses, found: suppressed } }),
    };
  }

  /** The ledger entry for a key: from the batch's read when it covered the key, else read now. */
  private readLedger(key: string, signal: AbortSignal, reads: BatchReads | undefined) {
    const batch = reads?.ledger;
    return batch?.keys.has(key)
      ? Promise.resolve(batch.found.get(key))
      : this.dependencies.ledger.get(key, signal);
  }

  private async process(
    sqsRecord: SQSRecord,
    deadlines: RecordDeadlines,
    reads: BatchReads | undefined,
  ): Promise<RecordOutcome> {
    const attempt = Number(sqsRecord.attributes.ApproximateReceiveCount) || 1;
    // Ids, counts, tags and failure reasons only: bodies, subjects and attachments never reach the logs.
    const keys: Record<string, unknown> = { messageId: sqsRecord.messageId, attempt };
    const parsed = reads?.parsed.get(sqsRecord.messageId) ?? parseMessage(sqsRecord.body, this.schema);
    if (!parsed.ok) {
      const key = ledgerKeyOf(undefined, sqsRecord.messageId);
      // Best effort: when the ledger cannot be read, a crash-repeated copy may reach the DLQ twice.
      const previous = await this.readLedger(key, deadlines.work, reads).catch(() => undefined);
      if (previous?.state === 'dead-lettered' && previous.messageId === sqsRecord.messageId) {
        return this.alreadyDeadLettered(previous, keys);
      }
      const invalid = new RelayFailure({
        failureClass: 'permanent',
        code: 'InvalidMessage',
        reason: parsed.problems.join('; '),
        hint: 'Fix the message to match the contract (schema/message.schema.json) and send it again.',
      });
      const outcome = await this.deadLetter(sqsRecord, invalid, attempt, keys, deadlines);
      if (!previous) await this.recordRefusal(sqsRecord, key, invalid, deadlines);
      return outcome;
    }
    const { message } = parsed;
    this.telemetry.count(METRIC_NAMES.accepted, {});
    Object.assign(keys, {
      recipients: recipientsOf(message).length,
      ...(message.idempotencyKey && { idempotencyKey: message.idempotencyKey }),
      ...(message.tags && { tags: message.tags }),
    });
    let entry: LedgerEntry | undefined;
    try {
      const bodyHash = bodyHashOf(sqsRecord.body);
      entry = await this.findEntry(sqsRecord, message, bodyHash, deadlines.work, reads);
      return await this.deliver(sqsRecord, message, attempt, keys, deadlines, entry, bodyHash, reads);
    } catch (error) {
      if (error instanceof RetryScheduled) throw error;
      // Failures before any provider had the message (routing, ledger reads): nothing was sent.
      const failure = toRelayFailure(error);
      if (failure.failureClass === 'permanent') {
        const outcome = await this.deadLetter(sqsRecord, failure, attempt, keys, deadlines);
        if (entry && !entry.record) await this.recordRefusal(sqsRecord, entry.key, failure, deadlines);
        return outcome;
      }
      return this.retryLater(sqsRecord, failure, this.delayFor(failure, attempt), attempt, keys, deadlines, [
        this.tryFailure(failure),
      ]);
    }
  }

  /**
   * The message's ledger entry. A message without an idempotency key is keyed by its SQS message id;
   * a copy moved back from the dead-letter queue has a new id, so it is found by the id it had
   * (MailRelay.SourceMessageId), and only if the entry holds the very same body.
   */
  private async findEntry(
    sqsRecord: SQSRecord,
    message: RelayMessage,
    bodyHash: string,
    signal: AbortSignal,
    reads: BatchReads | undefined,
  ): Promise<LedgerEntry> {
    const read = (key: string) =>
      this.readLedger(key, signal, reads).catch((error: unknown) => {
        throw ledgerUnavailable(error);
      });
    if (message.idempotencyKey) {
      return new LedgerEntry(
        this.dependencies.ledger,
        message.idempotencyKey,
        await read(message.idempotencyKey),
      );
    }
    const source = sourceMessageIdOf(sqsRecord);
    if (source) {
      const original = await read(ledgerKeyOf(undefined, source));
      if (original?.bodyHash === bodyHash) {
        return new LedgerEntry(this.dependencies.ledger, original.key, original);
      }
    }
    const key = ledgerKeyOf(undefined, sqsRecord.messageId);
    return new LedgerEntry(this.dependencies.ledger, key, await read(key));
  }

  private async deliver(
    sqsRecord: SQSRecord,
    message: RelayMessage,
    attempt: number,
    keys: Record<string, unknown>,
    deadlines: RecordDeadlines,
    entry: LedgerEntry,
    bodyHash: string,
    reads: BatchReads | undefined,
  ): Promise<RecordOutcome> {
    const admission = admit(entry.record, { bodyHash, now: this.now(), messageId: sqsRecord.messageId });
    if (admission.kind === 'already-dead-lettered') return this.alreadyDeadLettered(admission.record, keys);

    // Policy first: a sender that is not allowed fails the same way every time.
    const route = this.settings.routes
      ? selectRoute(this.settings.routes, message.from.address, message.route)
      : implicitRoute(this.dependencies.providers, message.from.address);
    keys.route = route.name;
    // A raw message's Reply-To is in its MIME: a rewrite sets one only when it has none.
    const ownReplyTo = isRawMessage(message) ? undefined : message.replyTo;
    const sender = route.rewriteFrom
      ? rewriteSender({ from: message.from, replyTo: ownReplyTo }, route.rewriteFrom)
      : { from: message.from, replyTo: ownReplyTo };
    const delivery: Delivery = {
      sqsRecord,
      message,
      attempt,
      keys,
      deadlines,
      entry,
      bodyHash,
      route,
      sender,
      chain: this.chainFor(route, sender.from.address),
      reads,
    };

    switch (admission.kind) {
      case 'duplicate':
        this.logger.info('Duplicate message not sent again', {
          ...keys,
          key: entry.key,
          firstMessageId: admission.record.messageId,
          provider: admission.record.provider,
          sentAt: admission.record.sentAt,
        });
        this.telemetry.count(METRIC_NAMES.duplicate, {});
        return { outcome: 'duplicate', record: admission.record };
      case 'in-flight':
        return this.retryLater(
          sqsRecord,
          new RelayFailure({
            failureClass: 'transient',
            code: CLAIM_LOST,
            reason: `another delivery of ${entry.key} is with ${admission.record.handedOffTo ?? 'a provider'} right now`,
          }),
          admission.retryInSeconds,
          attempt,
          keys,
          deadlines,
          admission.record.failures,
        );
      case 'conflict':
        return this.deadLetter(
          sqsRecord,
          new RelayFailure({
            failureClass: 'permanent',
            code: 'IdempotencyKeyReused',
            reason: `idempotencyKey: ${entry.key} was already used for a different message (${admission.record.messageId})`,
            hint: 'Use a new idempotency key for each distinct message; repeat a key only to repeat the same message.',
          }),
          attempt,
          keys,
          deadlines,
        );
      case 'unknown': {
        const resolved = await this.resolveMaybeSent(delivery, admission.maybeSent);
        if (resolved) return resolved;
        return this.send(delivery);
      }
      case 'proceed':
        return this.send(delivery);
    }
  }

  /**
   * A provider may have this message. Resolves the outcome when the question is settled here (found
   * sent, or dead-lettered); returns undefined when the message should be sent after all (the provider
   * says it never got it, or the route prefers a possible duplicate to a loss).
   */
  private async resolveMaybeSent(
    delivery: Delivery,
    maybeSent: MaybeSent,
    failuresSoFar?: readonly TryFailure[],
  ): Promise<RecordOutcome | undefined> {
    const { entry, keys, deadlines, sqsRecord, attempt } = delivery;
    const provider = this.byName.get(maybeSent.provider);
    const internetMessageId = entry.record?.internetMessageId;
    const lookupUntil =
      maybeSent.lookupUntil ??
      (provider?.lookupWindowSeconds
        ? Date.parse(maybeSent.since) + provider.lookupWindowSeconds * 1000
        : undefined);
    let lookupProblem: RelayFailure | undefined;
    if (provider?.findSent && internetMessageId && lookupUntil !== undefined) {
      const lookup = await provider
        .findSent({ from: delivery.sender.from.address, internetMessageId }, deadlines.work)
        .catch((error: unknown) => ({ unavailable: toRelayFailure(error) }));
      if ('found' in lookup && lookup.found) {
        return this.confirmSent(delivery, maybeSent, lookup.providerMessageId ?? internetMessageId);
      }
      const stillLooking = this.now() < lookupUntil;
      if ('found' in lookup) {
        if (!stillLooking) {
          // Not there a whole window after the hand-off: the provider never accepted it.
          this.logger.warn('Lost answer resolved: the provider does not have the message, sending it again', {
            ...keys,
            provider: maybeSent.provider,
            internetMessageId,
          });
          await this.recordQuietly(delivery, {
            maybeSent: undefined,
            failures: withFailure(entry.record?.failures ?? [], {
              provider: maybeSent.provider,
              code: 'AnswerLost',
              failureClass: 'transient',
              reason: `${maybeSent.reason}; no sent copy with Message-ID ${internetMessageId} appeared in ${provider.lookupWindowSeconds} s, so it was not sent`,
              at: this.iso(),
            }),
          });
          return undefined;
        }
      } else if (lookup.unavailable.failureClass !== 'transient' || !stillLooking) {
        lookupProblem = lookup.unavailable;
      }
      if (!lookupProblem) {
        // Not there yet, or the mailbox could not be read just now: look again a little later.
        if (!entry.record?.maybeSent || entry.record.maybeSent.lookupUntil === undefined) {
          await this.recordQuietly(delivery, {
            state: 'retrying',
            leaseUntil: undefined,
            maybeSent: { ...maybeSent, lookupUntil },
          });
        }
        const lookups =
          entry.record?.failures.filter((failure) => failure.code === 'LookupPending').length ?? 0;
        const delaySeconds = Math.max(
          1,
          Math.min(LOOKUP_FIRST_DELAY_SECONDS * 2 ** lookups, Math.ceil((lookupUntil - this.now()) / 1000)),
        );
        const pending = new RelayFailure({
          failureClass: 'transient',
          code: 'LookupPending',
          reason: `${maybeSent.provider} may have sent it (${maybeSent.reason}); looking for Message-ID ${internetMessageId} in the mailbox again in ${delaySeconds} s`,
          provider: maybeSent.provider,
        });
        await this.recordQuietly(delivery, {
          failures: withFailure(entry.record?.failures ?? [], this.tryFailure(pending)),
        });
        return this.retryLater(
          sqsRecord,
          pending,
          delaySeconds,
          attempt,
          keys,
          deadlines,
          entry.record?.failures ?? [],
          this.outcomeUnknown(delivery, maybeSent, pending),
          delivery,
        );
      }
    }
    if (delivery.route.onUnknownOutcome === 'resend') {
      // The route prefers a possible duplicate to a loss (password resets, one-time codes).
      this.logger.warn('A provider may have sent this message; the route resends it', {
        ...keys,
        provider: maybeSent.provider,
        reason: maybeSent.reason,
      });
      return undefined;
    }
    const failure = this.outcomeUnknown(delivery, maybeSent, lookupProblem);
    return this.deadLetter(sqsRecord, failure, attempt, keys, deadlines, delivery, {
      state: 'dead-lettered',
      leaseUntil: undefined,
      maybeSent,
      failures: withFailure(failuresSoFar ?? entry.record?.failures ?? [], this.tryFailure(failure)),
    });
  }

  private outcomeUnknown(
    delivery: Delivery,
    maybeSent: MaybeSent,
    lookupProblem?: RelayFailure,
  ): RelayFailure {
    const internetMessageId = delivery.entry.record?.internetMessageId;
    return new RelayFailure({
      failureClass: 'permanent',
      code: OUTCOME_UNKNOWN,
      reason: `${maybeSent.provider} may have sent this message (${maybeSent.reason})${internetMessageId ? `, Message-ID ${internetMessageId}` : ''}; not sending it again${lookupProblem ? `. The mailbox could not be checked: ${lookupProblem.code}: ${lookupProblem.reason}` : ''}`,
      hint: ANSWER_LOST_HINT,
      provider: maybeSent.provider,
    });
  }

  /** The provider had the message after all: it was sent, once. */
  private async confirmSent(
    delivery: Delivery,
    maybeSent: MaybeSent,
    providerMessageId: string,
  ): Promise<RecordOutcome> {
    const { keys, entry } = delivery;
    const receipt: SendReceipt = { provider: maybeSent.provider, providerMessageId };
    this.logger.info('Lost answer resolved: the provider has the message', {
      ...keys,
      provider: maybeSent.provider,
      providerMessageId,
    });
    const fallbackFrom = this.fallbackBefore(delivery.chain, maybeSent.provider);
    await this.recordQuietly(delivery, {
      state: 'sent',
      leaseUntil: undefined,
      maybeSent: undefined,
      provider: maybeSent.provider,
      providerMessageId,
      ...(fallbackFrom.length > 0 && { fallbackFrom }),
      sentAt: maybeSent.since,
    });
    this.countSent(delivery, receipt, fallbackFrom);
    await this.publish(
      {
        outcome: 'sent',
        provider: receipt.provider,
        providerMessageId,
        ...(fallbackFrom.length > 0 && { fallbackFrom }),
      },
      keys,
    );
    return {
      outcome: 'sent',
      receipt,
      route: delivery.route.name,
      fallbackFrom,
      suppressedRecipients: entry.record?.suppressedRecipients ?? [],
    };
  }

  private async send(delivery: Delivery): Promise<RecordOutcome> {
    const { sqsRecord, message, attempt, keys, deadlines, sender, route } = delivery;
    try {
      const suppressed = await this.findSuppressed(message, deadlines.work, delivery.reads);
      const remaining = (list: Mailbox[] | undefined) =>
        list?.filter((mailbox) => !suppressed.has(mailbox.address.toLowerCase()));
      const suppressedRecipients = [...suppressed.keys()];
      if (suppressedRecipients.length > 0) {
        this.telemetry.count(METRIC_NAMES.suppressed, {}, suppressedRecipients.length);
        this.logger.warn('Suppressed recipients dropped', {
          ...keys,
          suppressedRecipients: [...suppressed.values()].map(({ address, reason }) => ({ address, reason })),
        });
      }
      // Bounce reports and SES events carry these back, so feedback finds the request it is about.
      const traceHeaders = {
        [TRACE_HEADERS.messageId]: sqsRecord.messageId,
        ...(message.idempotencyKey && { [TRACE_HEADERS.idempotencyKey]: message.idempotencyKey }),
      };
      const resolveOptions = {
        maxMessageBytes: this.settings.limits.maxMessageBytes,
        signal: deadlines.work,
        ...(this.settings.attachments && { settings: this.settings.attachments }),
        ...(this.dependencies.attachmentStore && { store: this.dependencies.attachmentStore }),
      };
      const remainingRecipients = isRawMessage(message)
        ? (remaining(message.recipients) ?? [])
        : recipientsOf({ to: remaining(message.to), cc: remaining(message.cc), bcc: remaining(message.bcc) });
      if (remainingRecipients.length === 0) {
        await this.recordQuietly(delivery, {
          state: 'suppressed',
          leaseUntil: undefined,
          suppressedRecipients,
        });
        this.logger.warn('Message not sent: every recipient is suppressed', { ...keys });
        await this.publish(
          {
            outcome: 'suppressed',
            suppressedRecipients,
            reason: 'every recipient is on the suppression list',
          },
          keys,
        );
        return { outcome: 'suppressed', suppressedRecipients };
      }
      // S3 objects are read only now: they can be large.
      const outbound: OutboundMessage = isRawMessage(message)
        ? await resolveRawMessage(
            message,
            {
              ...(route.rewriteFrom && {
                rewrite: { from: sender.from, replyTo: sender.replyTo ?? [message.from] },
              }),
              recipients: remainingRecipients,
              headers: traceHeaders,
            },
            { ...resolveOptions, now: new Date(this.now()), ingressBucket: this.settings.ingress?.bucket },
          )
        : await resolveAttachments(
            {
              ...message,
              to: remaining(message.to),
              cc: remaining(message.cc),
              bcc: remaining(message.bcc),
              from: sender.from,
              ...(sender.replyTo && { replyTo: sender.replyTo }),
              headers: { ...withoutTraceHeaders(message.headers), ...traceHeaders },
            },
            resolveOptions,
          );
      const result = await this.walk(delivery, outbound, suppressedRecipients);
      switch (result.kind) {
        case 'sent':
          return this.recordSent(delivery, result, suppressedRecipients);
        case 'permanent':
          return this.deadLetter(sqsRecord, result.failure, attempt, keys, deadlines, delivery, {
            state: 'dead-lettered',
            leaseUntil: undefined,
            failures: withFailure(delivery.entry.record?.failures ?? [], this.tryFailure(result.failure)),
          });
        case 'exhausted':
          return this.deadLetter(sqsRecord, result.failure, attempt, keys, deadlines, delivery, {
            state: 'dead-lettered',
            leaseUntil: undefined,
          });
        case 'retry':
          return this.retryLater(
            sqsRecord,
            result.failure,
            result.delaySeconds,
            attempt,
            keys,
            deadlines,
            delivery.entry.record?.failures ?? [],
            undefined,
            delivery,
          );
        case 'not-handed-off':
          return this.retryLater(sqsRecord, result.failure, result.delaySeconds, attempt, keys, deadlines, [
            this.tryFailure(result.failure),
          ]);
        case 'maybe-sent': {
          this.logger.warn('The answer was lost: the provider may have sent the message', {
            ...keys,
            ...describeFailure(result.failure),
          });
          const resolved = await this.resolveMaybeSent(delivery, result.maybeSent, result.failures);
          if (resolved) return resolved;
          // The route resends: a transient failure of that provider, retried as usual.
          await this.recordQuietly(delivery, { maybeSent: undefined });
          return this.retryLater(
            sqsRecord,
            result.failure,
            this.delayFor(result.failure, attempt),
            attempt,
            keys,
            deadlines,
            delivery.entry.record?.failures ?? [],
          );
        }
      }
    } catch (error) {
      if (error instanceof RetryScheduled) throw error;
      // Failures before any provider had it (suppression list, attachments): nothing was sent.
      const failure = toRelayFailure(error);
      const failures = withFailure(delivery.entry.record?.failures ?? [], this.tryFailure(failure));
      if (failure.failureClass === 'permanent') {
        return this.deadLetter(sqsRecord, failure, attempt, keys, deadlines, delivery, {
          state: 'dead-lettered',
          leaseUntil: undefined,
          failures,
        });
      }
      return this.retryLater(
        sqsRecord,
        failure,
        this.delayFor(failure, attempt),
        attempt,
        keys,
        deadlines,
        failures,
      );
    }
  }

  /** Tries the chain from where earlier deliveries left off (fallback only moves forward). */
  private async walk(
    delivery: Delivery,
    outbound: OutboundMessage,
    suppressedRecipients: readonly string[],
  ): Promise<WalkResult> {
    const { chain, entry, keys, deadlines, route } = delivery;
    const settings = this.settings;
    const previous = entry.record;
    // Progress survives across deliveries; a redriven or re-sent message starts the chain afresh.
    const resume = previous?.state === 'retrying' && !previous.release;
    let index = Math.min(resume ? previous.providerIndex : 0, chain.length - 1);
    let attempts = resume ? previous.attempts : 0;
    let failures = [...(previous?.failures ?? [])];
    // A raw message keeps the Message-ID its application gave it (replies thread on it).
    const internetMessageId =
      previous?.internetMessageId ??
      (isRawOutbound(outbound) ? outbound.messageId : undefined) ??
      newInternetMessageId(delivery.sender.from.address);
    for (;;) {
      const provider = chain[index] as MailProvider;
      const isLast = index === chain.length - 1;
      let failure: RelayFailure;
      let handedOffAt: string | undefined;
      const circuit = this.breakers.check(provider.name);
      if (circuit.allowed) {
        const context: SendContext = {
          signal: deadlines.work,
          internetMessageId,
          handOff: async () => {
            if (handedOffAt !== undefined) return;
            const at = this.iso();
            await this.handOff(delivery, provider.name, at, {
              providerIndex: index,
              attempts,
              failures,
              internetMessageId,
              ...(suppressedRecipients.length > 0 && { suppressedRecipients }),
            });
            handedOffAt = at;
          },
        };
        const startedAt = this.now();
        try {
          const receipt = await provider.send(outbound, context);
          const latencyMs = this.now() - startedAt;
          this.breakers.recordSuccess(provider.name);
          const fallbackFrom = chain.slice(0, index).map((earlier) => earlier.name);
          return { kind: 'sent', receipt, fallbackFrom, failures, latencyMs };
        } catch (error) {
          failure = toRelayFailure(error);
          // Anything unclassified after the hand-off may have happened after the request went out.
          const maybeSent =
            handedOffAt !== undefined && (failure.maybeSent || !(error instanceof RelayFailure));
          const lookupWindow = provider.findSent ? (provider.lookupWindowSeconds ?? 0) : 0;
          if (maybeSent && route.onUnknownOutcome === 'resend' && lookupWindow === 0) {
            // Nobody can find out, and the route prefers a possible duplicate to a loss.
            this.logger.warn('The answer was lost; the route resends the message', {
              ...keys,
              ...describeFailure(failure),
            });
          } else if (maybeSent && handedOffAt !== undefined) {
            this.breakers.recordInconclusive(provider.name);
            const ambiguous: MaybeSent = {
              provider: provider.name,
              since: handedOffAt,
              reason: `the answer was lost: ${failure.code}: ${failure.reason}`,
              ...(lookupWindow > 0 && { lookupUntil: Date.parse(handedOffAt) + lookupWindow * 1000 }),
            };
            failures = withFailure(failures, this.tryFailure(failure));
            // Only a lookup needs the window recorded now; otherwise the next write (the DLQ entry)
            // says it all, and until then the hand-off's lease says the same.
            if (lookupWindow > 0) {
              await this.recordQuietly(delivery, {
                state: 'retrying',
                leaseUntil: undefined,
                maybeSent: ambiguous,
                failures,
              });
            }
            return { kind: 'maybe-sent', maybeSent: ambiguous, failure, failures };
          }
          // The relay's own hand-off failed: nothing went to the provider, which is not to blame.
          if (handedOffAt === undefined && failure.provider === undefined) {
            if (failure.code === CLAIM_LOST) return { kind: 'not-handed-off', failure, delaySeconds: 1 };
            if (failure.code === LEDGER_UNAVAILABLE) {
              return {
                kind: 'not-handed-off',
                failure,
                delaySeconds: this.delayFor(failure, delivery.attempt),
              };
            }
          }
          if (failure.cannotCarry) {
            // About this message, not the provider's health: the next provider may carry it, and
            // when none is left no retry ever will.
            this.breakers.recordInconclusive(provider.name);
            if (isLast) {
              return {
                kind: 'permanent',
                failure:
                  chain.length > 1
                    ? new RelayFailure({
                        failureClass: 'permanent',
                        code: failure.code,
                        reason: `no provider of route ${route.name} can carry this message: ${failure.reason}`,
                        ...(failure.hint !== undefined && { hint: failure.hint }),
                        provider: provider.name,
                      })
                    : failure,
              };
            }
            failures = withFailure(failures, this.tryFailure(failure));
            this.logger.warn('Provider cannot carry this message; the next one tries', {
              ...keys,
              ...describeFailure(failure),
            });
            index += 1;
            attempts = 0;
            continue;
          }
          if (failure.failureClass === 'provider') this.breakers.recordFailure(provider.name);
          else this.breakers.recordInconclusive(provider.name);
        }
      } else {
        failure = new RelayFailure({
          failureClass: 'provider',
          code: 'CircuitOpen',
          reason: `skipped: ${provider.name} failed ${settings.circuitBreaker.failureThreshold} times in a row at provider level`,
          provider: provider.name,
          retryAfterSeconds: circuit.retryInSeconds,
        });
      }
      if (failure.failureClass === 'permanent') return { kind: 'permanent', failure };
      failures = withFailure(failures, this.tryFailure(failure));
      this.logger.warn('Provider failed', { ...keys, ...describeFailure(failure) });
      attempts += 1;
      // Provider-level: this provider cannot send it now, so the next one tries at once. Transient:
      // the same provider again later, until its attempts are used up.
      const moveOn = failure.failureClass === 'provider' || attempts >= settings.retry.maxAttempts;
      const next = moveOn && !isLast;
      if (next) {
        index += 1;
        attempts = 0;
      }
      // Written when the message goes back to the queue, and when a provider that had it refused it:
      // the entry must not say a provider has the message any more.
      if (!next || handedOffAt !== undefined) {
        await this.recordQuietly(delivery, {
          state: 'retrying',
          leaseUntil: undefined,
          providerIndex: index,
          attempts,
          failures,
          internetMessageId,
        });
      }
      if (next) continue;
      if (attempts >= settings.retry.maxAttempts) {
        return { kind: 'exhausted', failure: exhausted(failure, failures, delivery.attempt) };
      }
      const delaySeconds = failure.retryAfterSeconds ?? backoffSeconds(attempts, settings.retry, this.random);
      return { kind: 'retry', failure, delaySeconds };
    }
  }

  /**
   * Records that the message goes to `provider` now, conditional on the version this function read:
   * the one write that decides which function sends it. Written right before the request that sends.
   */
  private async handOff(
    delivery: Delivery,
    provider: string,
    at: string,
    progress: Pick<DeliveryRecord, 'providerIndex' | 'attempts' | 'failures' | 'internetMessageId'> &
      Partial<Pick<DeliveryRecord, 'suppressedRecipients'>>,
  ): Promise<void> {
    const { entry, sqsRecord, bodyHash, route, deadlines } = delivery;
    let written: boolean;
    try {
      written = await entry.write(
        {
          state: 'sending',
          messageId: sqsRecord.messageId,
          bodyHash,
          route: route.name,
          leaseUntil: this.now() + this.settings.ledger.leaseSeconds * 1000,
          handedOffTo: provider,
          handedOffAt: at,
          ...progress,
          // A release is used up by this hand-off; whatever was uncertain before is settled by it.
          release: undefined,
          maybeSent: undefined,
        },
        () => this.freshEntry(sqsRecord, bodyHash),
        at,
        deadlines.work,
      );
    } catch (error) {
      throw ledgerUnavailable(error);
    }
    if (!written) {
      throw new RelayFailure({
        failureClass: 'transient',
        code: CLAIM_LOST,
        reason: `${entry.key} was handed to a provider by another delivery first`,
      });
    }
  }

  private async recordSent(
    delivery: Delivery,
    result: Extract<WalkResult, { kind: 'sent' }>,
    suppressedRecipients: readonly string[],
  ): Promise<RecordOutcome> {
    const { keys, sqsRecord } = delivery;
    const { receipt, fallbackFrom } = result;
    await this.recordQuietly(delivery, {
      state: 'sent',
      leaseUntil: undefined,
      failures: result.failures,
      provider: receipt.provider,
      ...(receipt.providerMessageId !== undefined && { providerMessageId: receipt.providerMessageId }),
      ...(fallbackFrom.length > 0 && { fallbackFrom }),
      ...(suppressedRecipients.length > 0 && { suppressedRecipients }),
      sentAt: this.iso(),
    });
    this.logger.info('Message sent', {
      ...keys,
      provider: receipt.provider,
      providerMessageId: receipt.providerMessageId,
      ...(fallbackFrom.length > 0 && { fallbackFrom }),
    });
    this.countSent(delivery, receipt, fallbackFrom);
    this.telemetry.milliseconds(
      METRIC_NAMES.sendLatency,
      { [METRIC_DIMENSIONS.provider]: receipt.provider },
      result.latencyMs,
    );
    const enqueuedAt = Number(sqsRecord.attributes.SentTimestamp);
    if (Number.isFinite(enqueuedAt) && enqueuedAt > 0) {
      this.telemetry.milliseconds(
        METRIC_NAMES.endToEndLatency,
        { [METRIC_DIMENSIONS.provider]: receipt.provider },
        Math.max(0, this.now() - enqueuedAt),
      );
    }
    await this.publish(
      {
        outcome: 'sent',
        provider: receipt.provider,
        ...(receipt.providerMessageId !== undefined && { providerMessageId: receipt.providerMessageId }),
        ...(fallbackFrom.length > 0 && { fallbackFrom }),
        ...(suppressedRecipients.length > 0 && { suppressedRecipients }),
      },
      keys,
    );
    if (receipt.rejectedRecipients) {
      // Sent to the others: reported, not retried (a retry would send it to them twice).
      this.logger.warn('Some recipients were refused', {
        ...keys,
        provider: receipt.provider,
        rejectedRecipients: receipt.rejectedRecipients,
      });
    }
    return { outcome: 'sent', receipt, route: delivery.route.name, fallbackFrom, suppressedRecipients };
  }

  private countSent(delivery: Delivery, receipt: SendReceipt, fallbackFrom: readonly string[]): void {
    const byProvider = { [METRIC_DIMENSIONS.provider]: receipt.provider };
    const byRoute = { ...byProvider, [METRIC_DIMENSIONS.route]: delivery.route.name };
    for (const dimensions of [byProvider, byRoute]) {
      this.telemetry.count(METRIC_NAMES.sent, dimensions);
      if (fallbackFrom.length > 0) this.telemetry.count(METRIC_NAMES.fallbackUsed, dimensions);
    }
  }

  private fallbackBefore(chain: readonly MailProvider[], provider: string): string[] {
    const index = chain.findIndex((candidate) => candidate.name === provider);
    return index <= 0 ? [] : chain.slice(0, index).map((earlier) => earlier.name);
  }

  /**
   * Moves the record to the DLQ with its reason, then notes it in the ledger (`changes`), so a copy
   * of this very SQS message that comes back after a crash is recognised instead of dead-lettered again.
   */
  private async deadLetter(
    sqsRecord: SQSRecord,
    failure: RelayFailure,
    attempt: number,
    keys: Record<string, unknown>,
    deadlines: RecordDeadlines,
    delivery?: Delivery,
    changes?: Partial<DeliveryRecord>,
  ): Promise<RecordOutcome> {
    // If this throws, the record is retried and SQS's own redrive remains the safety net.
    await this.dependencies.deadLetters.deadLetter(sqsRecord, failure, attempt, deadlines.wrapUp);
    if (delivery && changes)
      await this.recordQuietly(delivery, { ...changes, messageId: sqsRecord.messageId });
    this.logger.warn('Message dead-lettered', { ...keys, ...describeFailure(failure) });
    this.telemetry.count(METRIC_NAMES.deadLettered, {
      [METRIC_DIMENSIONS.failureClass]: failure.failureClass,
    });
    await this.publish(
      {
        outcome: 'dead-lettered',
        code: failure.code,
        failureClass: failure.failureClass,
        reason: failure.reason,
        ...(failure.provider !== undefined && { provider: failure.provider }),
      },
      keys,
    );
    return { outcome: 'dead-lettered', failure };
  }

  private alreadyDeadLettered(record: DeliveryRecord, keys: Record<string, unknown>): RecordOutcome {
    this.logger.warn('Already in the dead-letter queue: not dead-lettered a second time', {
      ...keys,
      key: record.key,
      code: record.failures.at(-1)?.code,
    });
    return { outcome: 'already-dead-lettered', record };
  }

  /**
   * Reports the record for a retry after `delaySeconds`, or, on its last delivery, dead-letters it
   * with every reason: the queue would otherwise move it to the DLQ itself, without one.
   */
  private async retryLater(
    sqsRecord: SQSRecord,
    failure: RelayFailure,
    delaySeconds: number,
    attempt: number,
    keys: Record<string, unknown>,
    deadlines: RecordDeadlines,
    failures: readonly TryFailure[],
    finalFailure?: RelayFailure,
    delivery?: Delivery,
  ): Promise<RecordOutcome> {
    if (attempt >= this.settings.maxReceiveCount) {
      const last =
        finalFailure ??
        exhausted(failure, failures.length > 0 ? failures : [this.tryFailure(failure)], attempt);
      return this.deadLetter(sqsRecord, last, attempt, keys, deadlines, delivery, {
        state: 'dead-lettered',
        leaseUntil: undefined,
      });
    }
    if (this.dependencies.recordDelay) {
      // Best effort: if this fails, the queue's visibility timeout still brings the record back.
      await this.dependencies.recordDelay
        .delay(sqsRecord, delaySeconds, deadlines.wrapUp)
        .catch((error: unknown) =>
          this.logger.warn('Could not delay the retry', { ...keys, error: String(error) }),
        );
    }
    this.telemetry.count(METRIC_NAMES.retried, {});
    if (failure.provider !== undefined) {
      this.telemetry.count(METRIC_NAMES.retried, { [METRIC_DIMENSIONS.provider]: failure.provider });
    }
    this.logger.warn('Send failed, will retry', {
      ...keys,
      ...describeFailure(failure),
      retryInSeconds: delaySeconds,
    });
    throw new RetryScheduled(failure);
  }

  private delayFor(failure: RelayFailure, attempt: number): number {
    return failure.retryAfterSeconds ?? backoffSeconds(attempt, this.settings.retry, this.random);
  }

  /** Best effort: a ledger write that fails must not turn a decided outcome into a retry. */
  private async recordQuietly(delivery: Delivery, changes: Partial<DeliveryRecord>): Promise<void> {
    const { entry, sqsRecord, bodyHash, deadlines } = delivery;
    try {
      const at = this.iso();
      if (!(await entry.write(changes, () => this.freshEntry(sqsRecord, bodyHash), at, deadlines.wrapUp))) {
        this.logger.warn('The delivery ledger entry changed under this function', { key: entry.key });
      }
    } catch (error) {
      this.logger.error('Could not write the delivery ledger', { key: entry.key, error: String(error) });
    }
  }

  private freshEntry(sqsRecord: SQSRecord, bodyHash: string) {
    return {
      state: 'retrying' as const,
      messageId: sqsRecord.messageId,
      bodyHash,
      providerIndex: 0,
      attempts: 0,
      failures: [],
      updatedAt: this.iso(),
      expiresAt: Math.floor(this.now() / 1000) + this.settings.ledger.retentionDays * 86_400,
    };
  }

  /**
   * Records a message refused before any provider had it (invalid, sender not allowed), so
   * `mail-relay status` can say why. Only when the ledger has no entry for it: a refused copy never
   * hides a sent message.
   */
  private async recordRefusal(
    sqsRecord: SQSRecord,
    key: string,
    failure: RelayFailure,
    deadlines: RecordDeadlines,
  ): Promise<void> {
    const at = this.iso();
    await this.dependencies.ledger
      .put(
        {
          key,
          state: 'dead-lettered',
          version: 1,
          messageId: sqsRecord.messageId,
          bodyHash: bodyHashOf(sqsRecord.body),
          providerIndex: 0,
          attempts: 0,
          failures: [this.tryFailure(failure)],
          createdAt: at,
          updatedAt: at,
          expiresAt: Math.floor(this.now() / 1000) + this.settings.ledger.retentionDays * 86_400,
        },
        undefined,
        deadlines.wrapUp,
      )
      .catch((error: unknown) =>
        this.logger.error('Could not write the delivery ledger', { key, error: String(error) }),
      );
  }

  private tryFailure(failure: RelayFailure): TryFailure {
    return {
      provider: failure.provider ?? RELAY_FAILURE_PROVIDER,
      code: failure.code,
      failureClass: failure.failureClass,
      reason: failure.reason.slice(0, 500),
      at: this.iso(),
    };
  }

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
    const batch = reads?.suppressed;
    if (batch && addresses.every((address) => batch.addresses.has(address))) {
      return new Map(
        addresses.flatMap((address) => {
          const suppression = batch.found.get(address);
          return suppression ? [[address, suppression] as const] : [];
        }),
      );
    }
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

  /** Publishes a final outcome. Best effort: the message's fate is decided, and logged, either way. */
  private async publish(
    outcome: Omit<OutcomeEvent, 'messageId' | 'idempotencyKey' | 'tags' | 'route' | 'at'>,
    keys: Record<string, unknown>,
  ): Promise<void> {
    if (!this.dependencies.outcomes) return;
    const event: OutcomeEvent = {
      ...outcome,
      messageId: String(keys.messageId),
      ...(typeof keys.idempotencyKey === 'string' && { idempotencyKey: keys.idempotencyKey }),
      ...(keys.tags !== undefined && { tags: keys.tags as Record<string, string> }),
      ...(typeof keys.route === 'string' && { route: keys.route }),
      at: this.iso(),
    };
    await this.dependencies.outcomes.publish([event]).catch((error: unknown) =>
      this.logger.error('Could not publish the outcome event', {
        ...keys,
        outcome: event.outcome,
        error: String(error),
      }),
    );
  }
}

/** Thrown by retryLater once the delay is set, so outer handlers do not schedule it twice. */
class RetryScheduled extends Error {
  constructor(readonly failure: RelayFailure) {
    super(failure.message);
  }
}

/** The SQS message id a copy moved back from the dead-letter queue had before (MailRelay.SourceMessageId). */
function sourceMessageIdOf(sqsRecord: SQSRecord): string | undefined {
  const source = sqsRecord.messageAttributes?.[DEAD_LETTER_ATTRIBUTES.sourceMessageId]?.stringValue;
  return source && source !== sqsRecord.messageId ? source : undefined;
}

/** Only the relay writes its trace headers: a forged one would tie feedback to another message. */
function withoutTraceHeaders(headers: Readonly<Record<string, string>> | undefined): Record<string, string> {
  const trace = new Set(Object.values(TRACE_HEADERS).map((name) => name.toLowerCase()));
  return Object.fromEntries(Object.entries(headers ?? {}).filter(([name]) => !trace.has(name.toLowerCase())));
}

/** A message relay chose for a message: `<uuid@sender-domain>`, a valid RFC 5322 msg-id. */
function newInternetMessageId(from: string): string {
  return `<${randomUUID()}@${domainOf(from)}>`;
}

function ledgerUnavailable(error: unknown): RelayFailure {
  if (error instanceof RelayFailure) return error;
  return new RelayFailure(
    {
      failureClass: 'transient',
      code: LEDGER_UNAVAILABLE,
      reason: `could not read or write the delivery ledger entry (nothing was sent): ${String(error)}`,
    },
    { cause: error },
  );
}

/** The final failure once tries are used up: the last one's class and code, every provider's reason. */
function exhausted(last: RelayFailure, failures: readonly TryFailure[], deliveries: number): RelayFailure {
  const tried = failures.map((failure) => `${failure.provider} ${failure.code}: ${failure.reason}`);
  return new RelayFailure(
    {
      failureClass: last.failureClass,
      code: last.code,
      reason: `gave up after ${deliveries} ${deliveries === 1 ? 'attempt' : 'attempts'}: ${tried.join(' | ')}`,
      ...(last.hint !== undefined && { hint: last.hint }),
      ...(last.provider !== undefined && { provider: last.provider }),
    },
    { cause: last },
  );
}

function describeFailure(failure: RelayFailure): {
  failureClass: FailureClass;
  code: string;
  reason: string;
  provider?: string;
} {
  return {
    failureClass: failure.failureClass,
    code: failure.code,
    reason: failure.reason,
    ...(failure.provider !== undefined && { provider: failure.provider }),
  };
}
