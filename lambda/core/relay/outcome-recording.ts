import type { DeadLetterSink } from '../dead-letter.ts';
import { bodyHashOf, type LedgerEntry, ledgerKeyOf, withFailure } from '../delivery.ts';
import { RelayFailure } from '../failures.ts';
import type { DeliveryLedger, DeliveryRecord, MaybeSent, TryFailure } from '../ledger.ts';
import type { SendReceipt } from '../mail-provider.ts';
import { METRIC_DIMENSIONS, METRIC_NAMES, type RelayTelemetry } from '../metrics.ts';
import type { OutcomeEvent, OutcomePublisher } from '../outcomes.ts';
import type { RecordDelay, RecordRequeue } from '../record-delay.ts';
import {
  type Clock,
  type Delivery,
  describeFailure,
  exhausted,
  freshEntry,
  type RecordContext,
  RetryScheduled,
  retryDelay,
  tryFailure,
} from './delivery-context.ts';
import type { RecordOutcome, RelayCoreSettings, RelayLogger } from './types.ts';

export interface OutcomeRecorderDependencies {
  readonly settings: Pick<RelayCoreSettings, 'maxReceiveCount' | 'retry' | 'ledger'>;
  readonly ledger: DeliveryLedger;
  readonly deadLetters: DeadLetterSink;
  readonly recordDelay: RecordDelay | undefined;
  /** Puts a copy back on the queue to wait for a provider's limit; absent: the wait is a retry. */
  readonly requeue: RecordRequeue | undefined;
  /** Puts a copy on the static-egress function's queue; needed when settings.staticEgress is set. */
  readonly staticEgressQueue: RecordRequeue | undefined;
  readonly outcomes: OutcomePublisher | undefined;
  readonly telemetry: RelayTelemetry;
  readonly logger: RelayLogger;
  readonly clock: Clock;
  readonly random: () => number;
}

/** A provider accepted the message. */
export interface Sent {
  readonly receipt: SendReceipt;
  /** Providers that failed before the one that sent it. */
  readonly fallbackFrom: string[];
  readonly failures: TryFailure[];
  /** Milliseconds the accepting provider call took. */
  readonly latencyMs: number;
}

/** The ledger change that goes with an outcome: whose entry, and what changes in it. */
export interface LedgerNote {
  readonly delivery: Delivery;
  readonly changes: Partial<DeliveryRecord>;
}

/**
 * Records how a record ended, one method per outcome: the ledger entry, metrics, the outcome event and
 * the log line. Writes that only report (ledger notes, events) are best effort: they never turn a
 * decided outcome into a retry.
 */
export class OutcomeRecorder {
  constructor(private readonly dependencies: OutcomeRecorderDependencies) {}

  async sent(
    delivery: Delivery,
    sent: Sent,
    suppressedRecipients: readonly string[],
  ): Promise<RecordOutcome> {
    const { logger, telemetry, clock } = this.dependencies;
    const { keys, sqsRecord } = delivery;
    const { receipt, fallbackFrom } = sent;
    await this.note(delivery, {
      state: 'sent',
      leaseUntil: undefined,
      failures: sent.failures,
      provider: receipt.provider,
      ...(receipt.providerMessageId !== undefined && { providerMessageId: receipt.providerMessageId }),
      ...(fallbackFrom.length > 0 && { fallbackFrom }),
      ...(suppressedRecipients.length > 0 && { suppressedRecipients }),
      sentAt: clock.iso(),
    });
    // The message's one INFO line: ids, route, provider, how long the provider took, what it took to
    // get there. Counts only: the suppressed addresses are in the ledger and the outcome event.
    logger.info('Message sent', {
      ...keys,
      ...ledgerKeyIfNotObvious(delivery),
      provider: receipt.provider,
      providerMessageId: receipt.providerMessageId,
      ms: Math.round(sent.latencyMs),
      ...(fallbackFrom.length > 0 && { fallbackFrom }),
      ...(suppressedRecipients.length > 0 && { suppressedCount: suppressedRecipients.length }),
    });
    this.countSent(delivery, receipt, fallbackFrom);
    telemetry.milliseconds(
      METRIC_NAMES.sendLatency,
      { [METRIC_DIMENSIONS.provider]: receipt.provider },
      sent.latencyMs,
    );
    const enqueuedAt = Number(sqsRecord.attributes.SentTimestamp);
    if (Number.isFinite(enqueuedAt) && enqueuedAt > 0) {
      telemetry.milliseconds(
        METRIC_NAMES.endToEndLatency,
        { [METRIC_DIMENSIONS.provider]: receipt.provider },
        Math.max(0, clock.now() - enqueuedAt),
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
      logger.warn('Some recipients were refused', {
        ...keys,
        provider: receipt.provider,
        rejectedRecipients: receipt.rejectedRecipients,
      });
    }
    return { outcome: 'sent', receipt, route: delivery.route.name, fallbackFrom, suppressedRecipients };
  }

  /** A provider whose answer was lost had the message after all: it was sent, once. */
  async foundSent(
    delivery: Delivery,
    maybeSent: MaybeSent,
    providerMessageId: string,
    fallbackFrom: string[],
  ): Promise<RecordOutcome> {
    const { keys, entry } = delivery;
    const receipt: SendReceipt = { provider: maybeSent.provider, providerMessageId };
    this.dependencies.logger.info('Lost answer resolved: the provider has the message', {
      ...keys,
      provider: maybeSent.provider,
      providerMessageId,
    });
    await this.note(delivery, {
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

  /** Every recipient is suppressed: nothing was sent. */
  async suppressed(delivery: Delivery, suppressedRecipients: string[]): Promise<RecordOutcome> {
    const { keys } = delivery;
    await this.note(delivery, { state: 'suppressed', leaseUntil: undefined, suppressedRecipients });
    this.dependencies.logger.warn('Message not sent: every recipient is suppressed', { ...keys });
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

  duplicate(delivery: Delivery, record: DeliveryRecord): RecordOutcome {
    this.dependencies.logger.info('Duplicate message not sent again', {
      ...delivery.keys,
      key: delivery.entry.key,
      firstMessageId: record.messageId,
      provider: record.provider,
      sentAt: record.sentAt,
    });
    this.dependencies.telemetry.count(METRIC_NAMES.duplicate, {});
    return { outcome: 'duplicate', record };
  }

  alreadyDeadLettered(record: DeliveryRecord, keys: Record<string, unknown>): RecordOutcome {
    this.dependencies.logger.warn('Already in the dead-letter queue: not dead-lettered a second time', {
      ...keys,
      key: record.key,
      code: record.failures.at(-1)?.code,
    });
    return { outcome: 'already-dead-lettered', record };
  }

  /**
   * Moves the record to the DLQ with its reason, then notes it in the ledger (`note`), so a copy of
   * this very SQS message that comes back after a crash is recognised instead of dead-lettered again.
   */
  async deadLetter(record: RecordContext, failure: RelayFailure, note?: LedgerNote): Promise<RecordOutcome> {
    const { deadLetters, logger, telemetry } = this.dependencies;
    const { sqsRecord, attempt, keys, deadlines } = record;
    // If this throws, the record is retried and SQS's own redrive remains the safety net.
    await deadLetters.deadLetter(sqsRecord, failure, attempt, deadlines.wrapUp);
    if (note) await this.note(note.delivery, { ...note.changes, messageId: sqsRecord.messageId });
    logger.warn('Message dead-lettered', { ...keys, ...describeFailure(failure) });
    telemetry.count(METRIC_NAMES.deadLettered, {
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

  /**
   * Dead-letters a message refused before any provider had it (invalid, sender not allowed). With
   * `unrecordedKey` (the ledger has no entry under it), the refusal is recorded there too.
   */
  async refused(
    record: RecordContext,
    failure: RelayFailure,
    unrecordedKey?: string,
  ): Promise<RecordOutcome> {
    const outcome = await this.deadLetter(record, failure);
    if (unrecordedKey !== undefined) await this.recordRefusal(record, unrecordedKey, failure);
    return outcome;
  }

  /**
   * A failure before the message had a delivery (routing, ledger reads): nothing was sent. `entry`:
   * the message's ledger entry, when it was found.
   */
  async failedBeforeDelivery(
    record: RecordContext,
    failure: RelayFailure,
    entry: LedgerEntry | undefined,
  ): Promise<RecordOutcome> {
    if (failure.failureClass === 'permanent') {
      const outcome = await this.deadLetter(record, failure);
      if (entry && !entry.record) await this.recordRefusal(record, entry.key, failure);
      return outcome;
    }
    return this.retryLater(record, failure, this.delayFor(failure, record.attempt), [
      tryFailure(failure, this.dependencies.clock.iso()),
    ]);
  }

  /** A failure before any provider had the delivery's message (suppression list, attachments). */
  async failedBeforeHandOff(delivery: Delivery, failure: RelayFailure): Promise<RecordOutcome> {
    const failures = withFailure(delivery.entry.record?.failures ?? [], this.tryFailure(failure));
    if (failure.failureClass === 'permanent') {
      return this.deadLetter(delivery, failure, {
        delivery,
        changes: { state: 'dead-lettered', leaseUntil: undefined, failures },
      });
    }
    return this.retryLater(delivery, failure, this.delayFor(failure, delivery.attempt), failures);
  }

  /**
   * Reports the record for a retry after `delaySeconds`, or, on its last delivery, dead-letters it
   * with every reason: the queue would otherwise move it to the DLQ itself, without one. On the last
   * delivery `last.finalFailure` is the reason given (else every failure so far), and `last.delivery`'s
   * ledger entry is marked dead-lettered.
   */
  async retryLater(
    record: RecordContext,
    failure: RelayFailure,
    delaySeconds: number,
    failures: readonly TryFailure[],
    last: { readonly finalFailure?: RelayFailure; readonly delivery?: Delivery } = {},
  ): Promise<RecordOutcome> {
    const { settings, recordDelay, telemetry, logger } = this.dependencies;
    const { sqsRecord, attempt, keys, deadlines } = record;
    if (attempt >= settings.maxReceiveCount) {
      const final =
        last.finalFailure ??
        exhausted(failure, failures.length > 0 ? failures : [this.tryFailure(failure)], attempt);
      return this.deadLetter(
        record,
        final,
        last.delivery && {
          delivery: last.delivery,
          changes: { state: 'dead-lettered', leaseUntil: undefined },
        },
      );
    }
    if (recordDelay) {
      // Best effort: if this fails, the queue's visibility timeout still brings the record back.
      await recordDelay
        .delay(sqsRecord, delaySeconds, deadlines.wrapUp)
        .catch((error: unknown) =>
          logger.warn('Could not delay the retry', { ...keys, error: String(error) }),
        );
    }
    telemetry.count(METRIC_NAMES.retried, {});
    if (failure.provider !== undefined) {
      telemetry.count(METRIC_NAMES.retried, { [METRIC_DIMENSIONS.provider]: failure.provider });
    }
    logger.warn('Send failed, will retry', {
      ...keys,
      ...describeFailure(failure),
      retryInSeconds: delaySeconds,
    });
    throw new RetryScheduled(failure);
  }

  /**
   * A provider's limit is reached: the message waits on the queue until it frees, as a copy that is
   * not a receive (so waiting never uses up maxReceiveCount). Without a way to copy it, the wait is a
   * retry like any other.
   */
  async paced(
    delivery: Delivery,
    paced: {
      readonly provider: string;
      readonly limit: string;
      readonly until: number;
      readonly returnAt: number;
      readonly reservations?: Readonly<Record<string, number>>;
    },
  ): Promise<RecordOutcome> {
    const { requeue, telemetry, logger, clock } = this.dependencies;
    const { sqsRecord, keys, deadlines } = delivery;
    const seconds = Math.max(0, Math.ceil((paced.returnAt - clock.now()) / 1000));
    let copied = false;
    try {
      copied = (await requeue?.requeue(sqsRecord, seconds, paced.reservations, deadlines.wrapUp)) ?? false;
    } catch (error) {
      logger.warn('Could not put the message back to wait for the limit; retrying it instead', {
        ...keys,
        error: String(error),
      });
    }
    if (!copied) {
      const failure = new RelayFailure({
        failureClass: 'transient',
        code: 'ProviderLimit',
        reason: `${paced.provider}: ${paced.limit} reached until ${new Date(paced.until).toISOString()}`,
        provider: paced.provider,
        retryAfterSeconds: seconds,
      });
      return this.retryLater(delivery, failure, seconds, delivery.entry.record?.failures ?? []);
    }
    telemetry.count(METRIC_NAMES.paced, { [METRIC_DIMENSIONS.provider]: paced.provider });
    if (paced.limit === 'recipientsPerDay') {
      telemetry.count(METRIC_NAMES.dailyCapReached, { [METRIC_DIMENSIONS.provider]: paced.provider });
    }
    logger.info('Provider limit reached; the message waits on the queue', {
      ...keys,
      provider: paced.provider,
      limit: paced.limit,
      freeAt: new Date(paced.until).toISOString(),
      waitSeconds: seconds,
    });
    return { outcome: 'paced', provider: paced.provider, limit: paced.limit, until: paced.until };
  }

  /**
   * The next provider sends from the static-egress function: the ledger says where the chain stands,
   * then a copy of the record goes on that function's queue, which resumes the chain there. A copy
   * that cannot be made is a retry (the record comes back here, and is passed on again).
   */
  async passToStaticEgress(
    delivery: Delivery,
    passed: {
      readonly provider: string;
      readonly progress: Pick<
        DeliveryRecord,
        'providerIndex' | 'attempts' | 'failures' | 'internetMessageId'
      >;
    },
  ): Promise<RecordOutcome> {
    const { staticEgressQueue, logger } = this.dependencies;
    const { sqsRecord, keys, deadlines } = delivery;
    // Best effort, like every note: without it that function starts the chain from its first provider.
    await this.note(delivery, { state: 'retrying', leaseUntil: undefined, ...passed.progress });
    let copied = false;
    let problem = 'the static-egress queue is not configured';
    try {
      copied = (await staticEgressQueue?.requeue(sqsRecord, 0, undefined, deadlines.wrapUp)) ?? false;
      if (!copied) problem = 'the record has no room for the attribute that names it';
    } catch (error) {
      problem = String(error);
    }
    if (!copied) {
      const failure = new RelayFailure({
        failureClass: 'transient',
        code: 'StaticEgressUnavailable',
        reason: `could not pass the message to the static-egress function for ${passed.provider}: ${problem}`,
        provider: passed.provider,
      });
      return this.retryLater(
        delivery,
        failure,
        this.delayFor(failure, delivery.attempt),
        passed.progress.failures ?? [],
      );
    }
    logger.info('Passed to the static-egress function', { ...keys, provider: passed.provider });
    return { outcome: 'passed-to-static-egress', provider: passed.provider };
  }

  delayFor(failure: RelayFailure, attempt: number): number {
    return retryDelay(failure, attempt, this.dependencies.settings.retry, this.dependencies.random);
  }

  /** The failure as the ledger keeps it, stamped now. */
  tryFailure(failure: RelayFailure): TryFailure {
    return tryFailure(failure, this.dependencies.clock.iso());
  }

  /** Writes `changes` to the delivery's ledger entry. Best effort: a failed write is logged, not thrown. */
  async note(delivery: Delivery, changes: Partial<DeliveryRecord>): Promise<void> {
    const { logger, clock, settings } = this.dependencies;
    const { entry, sqsRecord, bodyHash, deadlines } = delivery;
    try {
      const at = clock.iso();
      const fresh = () => freshEntry(sqsRecord, bodyHash, clock, settings.ledger);
      if (!(await entry.write(changes, fresh, at, deadlines.wrapUp))) {
        logger.warn('The delivery ledger entry changed under this function', { key: entry.key });
      }
    } catch (error) {
      logger.error('Could not write the delivery ledger', { key: entry.key, error: String(error) });
    }
  }

  private countSent(delivery: Delivery, receipt: SendReceipt, fallbackFrom: readonly string[]): void {
    const { telemetry } = this.dependencies;
    const byProvider = { [METRIC_DIMENSIONS.provider]: receipt.provider };
    const byRoute = { ...byProvider, [METRIC_DIMENSIONS.route]: delivery.route.name };
    for (const dimensions of [byProvider, byRoute]) {
      telemetry.count(METRIC_NAMES.sent, dimensions);
      if (fallbackFrom.length > 0) telemetry.count(METRIC_NAMES.fallbackUsed, dimensions);
    }
  }

  /**
   * Records a message refused before any provider had it (invalid, sender not allowed), so
   * `mail-relay status` can say why. Only when the ledger has no entry for it: a refused copy never
   * hides a sent message.
   */
  private async recordRefusal(record: RecordContext, key: string, failure: RelayFailure): Promise<void> {
    const { ledger, clock, settings, logger } = this.dependencies;
    const { sqsRecord, deadlines } = record;
    const at = clock.iso();
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
          failures: [this.tryFailure(failure)],
          createdAt: at,
          updatedAt: at,
          expiresAt: Math.floor(clock.now() / 1000) + settings.ledger.retentionDays * 86_400,
        },
        undefined,
        deadlines.wrapUp,
      )
      .catch((error: unknown) =>
        logger.error('Could not write the delivery ledger', { key, error: String(error) }),
      );
  }

  /** Publishes a final outcome. Best effort: the message's fate is decided, and logged, either way. */
  private async publish(
    outcome: Omit<OutcomeEvent, 'messageId' | 'idempotencyKey' | 'tags' | 'route' | 'at'>,
    keys: Record<string, unknown>,
  ): Promise<void> {
    const { outcomes, logger, clock } = this.dependencies;
    // Not configured for this kind (events.publish): not even built.
    if (!outcomes || outcomes.publishes?.(outcome.outcome) === false) return;
    const event: OutcomeEvent = {
      ...outcome,
      messageId: String(keys.messageId),
      ...(typeof keys.idempotencyKey === 'string' && { idempotencyKey: keys.idempotencyKey }),
      ...(keys.tags !== undefined && { tags: keys.tags as Record<string, string> }),
      ...(typeof keys.route === 'string' && { route: keys.route }),
      at: clock.iso(),
    };
    await outcomes.publish([event]).catch((error: unknown) =>
      logger.error('Could not publish the outcome event', {
        ...keys,
        outcome: event.outcome,
        error: String(error),
      }),
    );
  }
}

/**
 * The ledger key (`mail-relay status` takes it) when the line does not show it already: a message with
 * an idempotency key is keyed by it, one without by `sqs:` and its message id, except a copy (back from
 * the dead-letter queue, or waiting for a limit), which keeps its original's entry.
 */
function ledgerKeyIfNotObvious(delivery: Delivery): { key?: string } {
  const { entry, message, sqsRecord } = delivery;
  return entry.key === ledgerKeyOf(message.idempotencyKey, sqsRecord.messageId) ? {} : { key: entry.key };
}
