import type { SQSRecord } from 'aws-lambda';
import type { MailProvider, SendReceipt } from '../providers/provider.ts';
import type { Mailbox } from './address.ts';
import { type AttachmentStore, type OutboundMessage, resolveAttachments } from './attachments.ts';
import { backoffSeconds } from './backoff.ts';
import { CircuitBreakers } from './circuit-breaker.ts';
import { DEAD_LETTER_ATTRIBUTES, type DeadLetterSink } from './dead-letter.ts';
import { admit, bodyHashOf, ClaimedDelivery, ledgerKeyOf, OUTCOME_UNKNOWN, withFailure } from './delivery.ts';
import { type FailureClass, RelayFailure, toRelayFailure } from './failures.ts';
import {
  type DeliveryLedger,
  type DeliveryRecord,
  RELAY_FAILURE_PROVIDER,
  type TryFailure,
} from './ledger.ts';
import { createMessageSchema, parseMessage, type RelayMessage, recipientsOf } from './message.ts';
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
  'limits' | 'maxReceiveCount' | 'attachments' | 'routes' | 'retry' | 'circuitBreaker' | 'ledger'
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
  | { readonly outcome: 'dead-lettered'; readonly failure: RelayFailure };

export interface Relay {
  /**
   * Resolves when the record is finished (sent, a duplicate, suppressed, or safely in the DLQ) and may
   * be deleted; throws a RelayFailure when it must be retried (the batch reports it as a failed item).
   */
  processRecord(record: SQSRecord): Promise<RecordOutcome>;
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
  | { readonly kind: 'exhausted'; readonly failure: RelayFailure };

export function createRelay(dependencies: RelayDependencies): Relay {
  const { providers, deadLetters, settings, logger, ledger, suppressions } = dependencies;
  const now = dependencies.now ?? Date.now;
  const random = dependencies.random ?? Math.random;
  const breakers = dependencies.circuitBreakers ?? new CircuitBreakers(settings.circuitBreaker, now);
  const schema = createMessageSchema(settings.limits);
  const byName = new Map(providers.map((provider) => [provider.name, provider]));
  const iso = () => new Date(now()).toISOString();
  const telemetry = dependencies.telemetry ?? NO_TELEMETRY;
  const { provider: PROVIDER, route: ROUTE, failureClass: FAILURE_CLASS } = METRIC_DIMENSIONS;

  /** Publishes a final outcome. Best effort: the message's fate is decided, and logged, either way. */
  const publish = async (
    outcome: Omit<OutcomeEvent, 'messageId' | 'idempotencyKey' | 'tags' | 'route' | 'at'>,
    keys: Record<string, unknown>,
  ) => {
    if (!dependencies.outcomes) return;
    const event: OutcomeEvent = {
      ...outcome,
      messageId: String(keys.messageId),
      ...(typeof keys.idempotencyKey === 'string' && { idempotencyKey: keys.idempotencyKey }),
      ...(keys.tags !== undefined && { tags: keys.tags as Record<string, string> }),
      ...(typeof keys.route === 'string' && { route: keys.route }),
      at: iso(),
    };
    await dependencies.outcomes.publish([event]).catch((error: unknown) =>
      logger.error('Could not publish the outcome event', {
        ...keys,
        outcome: event.outcome,
        error: String(error),
      }),
    );
  };

  const tryFailure = (failure: RelayFailure): TryFailure => ({
    provider: failure.provider ?? RELAY_FAILURE_PROVIDER,
    code: failure.code,
    failureClass: failure.failureClass,
    reason: failure.reason.slice(0, 500),
    at: iso(),
  });

  /** Best effort: a ledger write that fails must not turn a decided outcome into a retry. */
  const record = async (delivery: ClaimedDelivery, changes: Parameters<ClaimedDelivery['update']>[0]) => {
    try {
      if (!(await delivery.update(changes, iso()))) {
        logger.warn('The delivery ledger entry changed under this function', { key: delivery.record.key });
      }
    } catch (error) {
      logger.error('Could not write the delivery ledger', { key: delivery.record.key, error: String(error) });
    }
  };

  /** Tries the chain from where earlier deliveries left off (fallback only moves forward). */
  const walk = async (
    chain: readonly MailProvider[],
    outbound: OutboundMessage,
    delivery: ClaimedDelivery,
    attempt: number,
    keys: Record<string, unknown>,
  ): Promise<WalkResult> => {
    let index = Math.min(delivery.record.providerIndex, chain.length - 1);
    let attempts = delivery.record.attempts;
    let failures = [...delivery.record.failures];
    for (;;) {
      const provider = chain[index] as MailProvider;
      const isLast = index === chain.length - 1;
      let failure: RelayFailure;
      const circuit = breakers.check(provider.name);
      if (circuit.allowed) {
        const startedAt = now();
        try {
          const receipt = await provider.send(outbound);
          const latencyMs = now() - startedAt;
          breakers.recordSuccess(provider.name);
          // Fallback only moves forward, so every provider before this one failed, in this delivery or earlier.
          const fallbackFrom = chain.slice(0, index).map((earlier) => earlier.name);
          return { kind: 'sent', receipt, fallbackFrom, failures, latencyMs };
        } catch (error) {
          failure = toRelayFailure(error);
          if (failure.failureClass === 'provider') breakers.recordFailure(provider.name);
          else breakers.recordInconclusive(provider.name);
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
      failures = withFailure(failures, tryFailure(failure));
      logger.warn('Provider failed', { ...keys, ...describeFailure(failure) });
      attempts += 1;
      // Provider-level: this provider cannot send it now, so the next one tries at once. Transient:
      // the same provider again later, until its attempts are used up.
      const moveOn = failure.failureClass === 'provider' || attempts >= settings.retry.maxAttempts;
      if (moveOn && !isLast) {
        index += 1;
        attempts = 0;
        continue;
      }
      await record(delivery, {
        state: 'retrying',
        providerIndex: index,
        attempts,
        failures,
        leaseUntil: undefined,
      });
      if (attempts >= settings.retry.maxAttempts) {
        return { kind: 'exhausted', failure: exhausted(failure, failures, attempt) };
      }
      const delaySeconds = failure.retryAfterSeconds ?? backoffSeconds(attempts, settings.retry, random);
      return { kind: 'retry', failure, delaySeconds };
    }
  };

  const deadLetter = async (
    sqsRecord: SQSRecord,
    failure: RelayFailure,
    attempt: number,
    keys: Record<string, unknown>,
    delivery?: ClaimedDelivery,
    { alreadyRecorded = false } = {},
  ): Promise<RecordOutcome> => {
    // If this throws, the record is retried and SQS's own redrive remains the safety net.
    await deadLetters.deadLetter(sqsRecord, failure, attempt);
    if (delivery) {
      await record(delivery, {
        state: 'dead-lettered',
        leaseUntil: undefined,
        ...(!alreadyRecorded && { failures: withFailure(delivery.record.failures, tryFailure(failure)) }),
      });
    }
    logger.warn('Message dead-lettered', { ...keys, ...describeFailure(failure) });
    telemetry.count(METRIC_NAMES.deadLettered, { [FAILURE_CLASS]: failure.failureClass });
    await publish(
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
  };

  /**
   * Records a message refused before any claim (invalid, sender not allowed), so `mail-relay status`
   * can say why. Only when the ledger has no entry for it: a refused copy never hides a sent message.
   */
  const recordRefusal = async (sqsRecord: SQSRecord, key: string, failure: RelayFailure) => {
    const at = iso();
    await ledger
      .put(
        {
          key,
          state: 'dead-lettered',
          version: 1,
          messageId: sqsRecord.messageId,
          bodyHash: bodyHashOf(sqsRecord.body),
          providerIndex: 0,
          attempts: 0,
          failures: [tryFailure(failure)],
          createdAt: at,
          updatedAt: at,
          expiresAt: Math.floor(now() / 1000) + settings.ledger.retentionDays * 86_400,
        },
        undefined,
      )
      .catch((error: unknown) =>
        logger.error('Could not write the delivery ledger', { key, error: String(error) }),
      );
  };

  const retryLater = async (
    sqsRecord: SQSRecord,
    failure: RelayFailure,
    delaySeconds: number,
    keys: Record<string, unknown>,
  ): Promise<never> => {
    if (dependencies.recordDelay) {
      // Best effort: if this fails, the queue's visibility timeout still brings the record back.
      await dependencies.recordDelay
        .delay(sqsRecord, delaySeconds)
        .catch((error: unknown) =>
          logger.warn('Could not delay the retry', { ...keys, error: String(error) }),
        );
    }
    telemetry.count(METRIC_NAMES.retried, {});
    if (failure.provider !== undefined)
      telemetry.count(METRIC_NAMES.retried, { [PROVIDER]: failure.provider });
    logger.warn('Send failed, will retry', {
      ...keys,
      ...describeFailure(failure),
      retryInSeconds: delaySeconds,
    });
    throw new RetryScheduled(failure);
  };

  const chainFor = (route: RouteSettings, from: string): MailProvider[] => {
    const chain = route.providers
      .map((name) => byName.get(name))
      .filter((provider): provider is MailProvider => provider?.canSendAs(from) === true);
    if (chain.length === 0) {
      throw new RelayFailure({
        failureClass: 'permanent',
        code: 'SenderNotConfigured',
        reason: `from: route ${route.name} has no provider that can send as ${from} (${route.providers.join(', ')})`,
        hint: 'Add the address or its domain to graph.senders, smtp.senders or ses.identities (verified in SES).',
      });
    }
    return chain;
  };

  const deliver = async (
    sqsRecord: SQSRecord,
    message: RelayMessage,
    attempt: number,
    keys: Record<string, unknown>,
  ): Promise<RecordOutcome> => {
    const key = ledgerKeyOf(message.idempotencyKey, sqsRecord.messageId);
    const bodyHash = bodyHashOf(sqsRecord.body);
    const redriven = sqsRecord.messageAttributes?.[DEAD_LETTER_ATTRIBUTES.code] !== undefined;

    // Policy first: a sender that is not allowed fails the same way every time.
    const route = settings.routes
      ? selectRoute(settings.routes, message.from.address, message.route)
      : implicitRoute(providers, message.from.address);
    keys.route = route.name;
    const sender = route.rewriteFrom
      ? rewriteSender(message, route.rewriteFrom)
      : { from: message.from, replyTo: message.replyTo };
    const chain = chainFor(route, sender.from.address);

    const previous = await readLedger(key);
    const admission = admit(previous, { bodyHash, now: now(), redriven });
    switch (admission.kind) {
      case 'duplicate':
        logger.info('Duplicate message not sent again', {
          ...keys,
          key,
          firstMessageId: admission.record.messageId,
          provider: admission.record.provider,
          sentAt: admission.record.sentAt,
        });
        telemetry.count(METRIC_NAMES.duplicate, {});
        return { outcome: 'duplicate', record: admission.record };
      case 'in-flight':
        return retryLater(
          sqsRecord,
          new RelayFailure({
            failureClass: 'transient',
            code: 'InFlight',
            reason: `another delivery of ${key} is being sent right now`,
          }),
          admission.retryInSeconds,
          keys,
        );
      case 'conflict':
        return deadLetter(
          sqsRecord,
          new RelayFailure({
            failureClass: 'permanent',
            code: 'IdempotencyKeyReused',
            reason: `idempotencyKey: ${key} was already used for a different message (${admission.record.messageId})`,
            hint: 'Use a new idempotency key for each distinct message; repeat a key only to repeat the same message.',
          }),
          attempt,
          keys,
        );
      case 'unknown': {
        const outcome = await deadLetter(
          sqsRecord,
          new RelayFailure({
            failureClass: 'permanent',
            code: OUTCOME_UNKNOWN,
            reason: `a function stopped while ${admission.record.provider ?? 'a provider'} had this message (it may have been sent); not sending it again`,
            hint: "Check the provider (the mailbox's Sent Items, the SMTP server's log). To send it anyway, redrive it from the dead-letter queue.",
          }),
          attempt,
          keys,
        );
        // So `mail-relay status` says so, and a later copy is recognised (best effort).
        const unknown = outcome.outcome === 'dead-lettered' ? outcome.failure : undefined;
        await ledger
          .put(
            {
              ...admission.record,
              state: 'dead-lettered',
              leaseUntil: undefined,
              failures: unknown
                ? withFailure(admission.record.failures, tryFailure(unknown))
                : admission.record.failures,
              version: admission.record.version + 1,
              updatedAt: iso(),
            },
            admission.record.version,
          )
          .catch((error: unknown) =>
            logger.error('Could not write the delivery ledger', { key, error: String(error) }),
          );
        return outcome;
      }
      case 'proceed':
        break;
    }

    const claimed = await ClaimedDelivery.claim(
      ledger,
      admission.previous,
      {
        key,
        state: 'sending',
        messageId: sqsRecord.messageId,
        bodyHash,
        route: route.name,
        leaseUntil: now() + settings.ledger.leaseSeconds * 1000,
        expiresAt: Math.floor(now() / 1000) + settings.ledger.retentionDays * 86_400,
      },
      iso(),
    ).catch((error: unknown) => {
      throw ledgerUnavailable(error);
    });
    if (!claimed) {
      // Another function wrote first: decide again from what it wrote.
      return retryLater(
        sqsRecord,
        new RelayFailure({
          failureClass: 'transient',
          code: 'InFlight',
          reason: `${key} was claimed by another delivery`,
        }),
        1,
        keys,
      );
    }

    try {
      const suppressed = await findSuppressed(message);
      const remaining = (list: Mailbox[] | undefined) =>
        list?.filter((mailbox) => !suppressed.has(mailbox.address.toLowerCase()));
      const suppressedRecipients = [...suppressed.keys()];
      if (suppressedRecipients.length > 0) {
        telemetry.count(METRIC_NAMES.suppressed, {}, suppressedRecipients.length);
        logger.warn('Suppressed recipients dropped', {
          ...keys,
          suppressedRecipients: [...suppressed.values()].map(({ address, reason }) => ({ address, reason })),
        });
      }
      const addressed = {
        ...message,
        to: remaining(message.to),
        cc: remaining(message.cc),
        bcc: remaining(message.bcc),
      };
      if (recipientsOf(addressed).length === 0) {
        await record(claimed, { state: 'suppressed', leaseUntil: undefined, suppressedRecipients });
        logger.warn('Message not sent: every recipient is suppressed', { ...keys });
        await publish(
          {
            outcome: 'suppressed',
            suppressedRecipients,
            reason: 'every recipient is on the suppression list',
          },
          keys,
        );
        return { outcome: 'suppressed', suppressedRecipients };
      }
      // S3 attachments are read only now: they can be large.
      const outbound = await resolveAttachments(
        {
          ...addressed,
          from: sender.from,
          ...(sender.replyTo && { replyTo: sender.replyTo }),
          // Bounce reports and SES events carry these back, so feedback finds the request it is about.
          headers: {
            ...addressed.headers,
            [TRACE_HEADERS.messageId]: sqsRecord.messageId,
            ...(message.idempotencyKey && { [TRACE_HEADERS.idempotencyKey]: message.idempotencyKey }),
          },
        },
        {
          maxMessageBytes: settings.limits.maxMessageBytes,
          ...(settings.attachments && { settings: settings.attachments }),
          ...(dependencies.attachmentStore && { store: dependencies.attachmentStore }),
        },
      );
      const result = await walk(chain, outbound, claimed, attempt, keys);
      switch (result.kind) {
        case 'sent': {
          const { receipt, fallbackFrom } = result;
          await record(claimed, {
            state: 'sent',
            leaseUntil: undefined,
            failures: result.failures,
            provider: receipt.provider,
            ...(receipt.providerMessageId !== undefined && { providerMessageId: receipt.providerMessageId }),
            ...(fallbackFrom.length > 0 && { fallbackFrom }),
            ...(suppressedRecipients.length > 0 && { suppressedRecipients }),
            sentAt: iso(),
          });
          logger.info('Message sent', {
            ...keys,
            provider: receipt.provider,
            providerMessageId: receipt.providerMessageId,
            ...(fallbackFrom.length > 0 && { fallbackFrom }),
          });
          const byProvider = { [PROVIDER]: receipt.provider };
          const byRoute = { ...byProvider, [ROUTE]: route.name };
          for (const dimensions of [byProvider, byRoute]) {
            telemetry.count(METRIC_NAMES.sent, dimensions);
            if (fallbackFrom.length > 0) telemetry.count(METRIC_NAMES.fallbackUsed, dimensions);
          }
          telemetry.milliseconds(METRIC_NAMES.sendLatency, byProvider, result.latencyMs);
          const enqueuedAt = Number(sqsRecord.attributes.SentTimestamp);
          if (Number.isFinite(enqueuedAt) && enqueuedAt > 0) {
            telemetry.milliseconds(METRIC_NAMES.endToEndLatency, byProvider, Math.max(0, now() - enqueuedAt));
          }
          await publish(
            {
              outcome: 'sent',
              provider: receipt.provider,
              ...(receipt.providerMessageId !== undefined && {
                providerMessageId: receipt.providerMessageId,
              }),
              ...(fallbackFrom.length > 0 && { fallbackFrom }),
              ...(suppressedRecipients.length > 0 && { suppressedRecipients }),
            },
            keys,
          );
          if (receipt.rejectedRecipients) {
            // Sent to the others: reported, not retried (a retry would send it to them twice).
            logger.warn('Some recipients were refused', {
              ...keys,
              provider: receipt.provider,
              rejectedRecipients: receipt.rejectedRecipients,
            });
          }
          return { outcome: 'sent', receipt, route: route.name, fallbackFrom, suppressedRecipients };
        }
        case 'permanent':
          return deadLetter(sqsRecord, result.failure, attempt, keys, claimed);
        case 'exhausted':
          return deadLetter(sqsRecord, result.failure, attempt, keys, claimed, { alreadyRecorded: true });
        case 'retry':
          if (attempt >= settings.maxReceiveCount) {
            // The queue would move it to the DLQ without a reason: do it ourselves, with one.
            return deadLetter(
              sqsRecord,
              exhausted(result.failure, claimed.record.failures, attempt),
              attempt,
              keys,
              claimed,
              { alreadyRecorded: true },
            );
          }
          return retryLater(sqsRecord, result.failure, result.delaySeconds, keys);
      }
    } catch (error) {
      if (error instanceof RetryScheduled) throw error;
      // Failures before any provider call (suppression list, attachments): nothing was sent.
      const failure = toRelayFailure(error);
      if (failure.failureClass === 'permanent') return deadLetter(sqsRecord, failure, attempt, keys, claimed);
      await record(claimed, { state: 'retrying', leaseUntil: undefined });
      if (attempt >= settings.maxReceiveCount) {
        return deadLetter(
          sqsRecord,
          exhausted(failure, [tryFailure(failure)], attempt),
          attempt,
          keys,
          claimed,
        );
      }
      return retryLater(
        sqsRecord,
        failure,
        failure.retryAfterSeconds ?? backoffSeconds(attempt, settings.retry, random),
        keys,
      );
    }
  };

  const readLedger = (key: string) =>
    ledger.get(key).catch((error: unknown) => {
      throw ledgerUnavailable(error);
    });

  const findSuppressed = async (message: RelayMessage): Promise<Map<string, Suppression>> => {
    try {
      return await suppressions.find(recipientsOf(message).map((mailbox) => mailbox.address));
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
  };

  const processRecord = async (sqsRecord: SQSRecord): Promise<RecordOutcome> => {
    const attempt = Number(sqsRecord.attributes.ApproximateReceiveCount) || 1;
    // Ids, counts, tags and failure reasons only: bodies, subjects and attachments never reach the logs.
    const keys: Record<string, unknown> = { messageId: sqsRecord.messageId, attempt };
    const parsed = parseMessage(sqsRecord.body, schema);
    if (!parsed.ok) {
      const invalid = new RelayFailure({
        failureClass: 'permanent',
        code: 'InvalidMessage',
        reason: parsed.problems.join('; '),
        hint: 'Fix the message to match the contract (schema/message.schema.json) and send it again.',
      });
      const outcome = await deadLetter(sqsRecord, invalid, attempt, keys);
      await recordRefusal(sqsRecord, ledgerKeyOf(undefined, sqsRecord.messageId), invalid);
      return outcome;
    }
    const { message } = parsed;
    telemetry.count(METRIC_NAMES.accepted, {});
    Object.assign(keys, {
      recipients: recipientsOf(message).length,
      ...(message.idempotencyKey && { idempotencyKey: message.idempotencyKey }),
      ...(message.tags && { tags: message.tags }),
    });
    try {
      return await deliver(sqsRecord, message, attempt, keys);
    } catch (error) {
      if (error instanceof RetryScheduled) throw error;
      // Failures before the claim (routing, ledger reads): nothing was sent.
      const failure = toRelayFailure(error);
      if (failure.failureClass === 'permanent') {
        const outcome = await deadLetter(sqsRecord, failure, attempt, keys);
        await recordRefusal(sqsRecord, ledgerKeyOf(message.idempotencyKey, sqsRecord.messageId), failure);
        return outcome;
      }
      if (attempt >= settings.maxReceiveCount) {
        return deadLetter(sqsRecord, exhausted(failure, [tryFailure(failure)], attempt), attempt, keys);
      }
      return retryLater(
        sqsRecord,
        failure,
        failure.retryAfterSeconds ?? backoffSeconds(attempt, settings.retry, random),
        keys,
      );
    }
  };

  return {
    async processRecord(sqsRecord) {
      try {
        return await processRecord(sqsRecord);
      } catch (error) {
        // The batch reports the record as failed; the delay for its return is already set.
        throw error instanceof RetryScheduled ? error.failure : error;
      }
    },
  };
}

/** Thrown by retryLater once the delay is set, so outer handlers do not schedule it twice. */
class RetryScheduled extends Error {
  constructor(readonly failure: RelayFailure) {
    super(failure.message);
  }
}

function ledgerUnavailable(error: unknown): RelayFailure {
  return new RelayFailure(
    {
      failureClass: 'transient',
      code: 'LedgerUnavailable',
      reason: `could not read or claim the delivery ledger entry (nothing was sent): ${String(error)}`,
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
