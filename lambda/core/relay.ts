import type { SQSRecord } from 'aws-lambda';
import type { AttachmentStore } from './attachments.ts';
import { CircuitBreakers } from './circuit-breaker.ts';
import type { DeadLetterSink } from './dead-letter.ts';
import type { RecordDeadlines } from './deadline.ts';
import { bodyHashOf, type LedgerEntry } from './delivery.ts';
import { toRelayFailure } from './failures.ts';
import type { DeliveryLedger } from './ledger.ts';
import type { MailProvider } from './mail-provider.ts';
import { createMessageSchema } from './message.ts';
import { NO_TELEMETRY, type RelayTelemetry } from './metrics.ts';
import type { OutcomePublisher } from './outcomes.ts';
import type { Pacer } from './pacing/pacer.ts';
import type { RecordDelay, RecordRequeue } from './record-delay.ts';
import { type AdmissionDecision, AdmissionStage, type Screening } from './relay/admission.ts';
import { type BatchReadSources, type BatchReads, readBatch } from './relay/batch-reads.ts';
import { clockOf, type Delivery, type RecordContext, RetryScheduled } from './relay/delivery-context.ts';
import { MaybeSentResolver } from './relay/maybe-sent.ts';
import { composeOutbound, type OutboundSources } from './relay/outbound.ts';
import { OutcomeRecorder } from './relay/outcome-recording.ts';
import { ProviderChain, type WalkResult } from './relay/provider-chain.ts';
import type { RecordOutcome, RelayCoreSettings, RelayLogger } from './relay/types.ts';
import type { SuppressionList } from './suppression.ts';

export type { RecordOutcome, RelayCoreSettings, RelayLogger } from './relay/types.ts';

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
  /** Puts a copy back on the queue to wait for a provider's limit without counting a receive. */
  readonly requeue?: RecordRequeue;
  /** Puts a copy on the static-egress function's queue (settings.staticEgress). */
  readonly staticEgressQueue?: RecordRequeue;
  /** Keeps sends inside the providers' limits across every send function; absent: not paced. */
  readonly pacer?: Pacer;
  /** Per warm function; created from settings.circuitBreaker when not given. */
  readonly circuitBreakers?: CircuitBreakers;
  /** Metrics (EMF in the send function). */
  readonly telemetry?: RelayTelemetry;
  /** Final outcomes for producing apps (EventBridge in the send function). */
  readonly outcomes?: OutcomePublisher;
  readonly now?: () => number;
  readonly random?: () => number;
}

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

const NEVER = new AbortController().signal;
const NO_DEADLINES: RecordDeadlines = { work: NEVER, wrapUp: NEVER };

export function createRelay(dependencies: RelayDependencies): Relay {
  return new RelayCore(dependencies);
}

/**
 * The send path over a batch: read what the batch needs at once, then per record admission (parse,
 * ledger, route), the provider chain, and the recording of the outcome. Each stage lives in relay/.
 */
class RelayCore implements Relay {
  private readonly batchSources: BatchReadSources;
  private readonly admission: AdmissionStage;
  private readonly recorder: OutcomeRecorder;
  private readonly maybeSent: MaybeSentResolver;
  private readonly chain: ProviderChain;
  private readonly outbound: OutboundSources;

  constructor(dependencies: RelayDependencies) {
    const { settings, logger, providers, ledger, suppressions } = dependencies;
    const now = dependencies.now ?? Date.now;
    const random = dependencies.random ?? Math.random;
    const clock = clockOf(now);
    const telemetry = dependencies.telemetry ?? NO_TELEMETRY;
    const schema = createMessageSchema(settings.limits);
    this.batchSources = { schema, ledger, suppressions, logger };
    this.admission = new AdmissionStage({
      providers,
      settings,
      schema,
      ledger,
      suppressions,
      telemetry,
      logger,
      now,
    });
    this.recorder = new OutcomeRecorder({
      settings,
      ledger,
      deadLetters: dependencies.deadLetters,
      recordDelay: dependencies.recordDelay,
      requeue: dependencies.requeue,
      staticEgressQueue: dependencies.staticEgressQueue,
      outcomes: dependencies.outcomes,
      telemetry,
      logger,
      clock,
      random,
    });
    this.maybeSent = new MaybeSentResolver({ providers, recorder: this.recorder, logger, clock });
    this.chain = new ProviderChain({
      settings,
      breakers: dependencies.circuitBreakers ?? new CircuitBreakers(settings.circuitBreaker, now),
      recorder: this.recorder,
      maybeSent: this.maybeSent,
      logger,
      clock,
      random,
      pacer: dependencies.pacer,
      staticEgressProviders:
        settings.staticEgress && new Set(settings.staticEgress.providers.map((provider) => provider.name)),
      telemetry,
    });
    this.outbound = { settings, attachmentStore: dependencies.attachmentStore, now };
  }

  async processBatch(
    records: readonly SQSRecord[],
    deadlines: RecordDeadlines = NO_DEADLINES,
  ): Promise<PromiseSettledResult<RecordOutcome>[]> {
    const reads = await readBatch(records, deadlines.work, this.batchSources);
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

  private async process(
    sqsRecord: SQSRecord,
    deadlines: RecordDeadlines,
    reads: BatchReads | undefined,
  ): Promise<RecordOutcome> {
    const attempt = Number(sqsRecord.attributes.ApproximateReceiveCount) || 1;
    // Ids, counts, tags and failure reasons only: bodies, subjects and attachments never reach the logs.
    const keys: Record<string, unknown> = { messageId: sqsRecord.messageId, attempt };
    const record: RecordContext = { sqsRecord, attempt, keys, deadlines };
    const parsed = this.admission.parse(sqsRecord, reads);
    if (!parsed.ok) {
      const invalid = await this.admission.refuseInvalid(sqsRecord, parsed.problems, deadlines.work, reads);
      if (invalid.kind === 'already-dead-lettered') {
        return this.recorder.alreadyDeadLettered(invalid.record, keys);
      }
      return this.recorder.refused(record, invalid.failure, invalid.unrecordedKey);
    }
    const { message } = parsed;
    this.admission.accept(message, keys);
    let entry: LedgerEntry | undefined;
    try {
      const bodyHash = bodyHashOf(sqsRecord.body);
      entry = await this.admission.findEntry(sqsRecord, message, bodyHash, deadlines.work, reads);
      return await this.deliver(record, this.admission.admit(record, message, entry, bodyHash, reads));
    } catch (error) {
      if (error instanceof RetryScheduled) throw error;
      // Failures before any provider had the message (routing, ledger reads): nothing was sent.
      return this.recorder.failedBeforeDelivery(record, toRelayFailure(error), entry);
    }
  }

  private async deliver(record: RecordContext, decision: AdmissionDecision): Promise<RecordOutcome> {
    switch (decision.kind) {
      case 'already-dead-lettered':
        return this.recorder.alreadyDeadLettered(decision.record, record.keys);
      case 'duplicate':
        return this.recorder.duplicate(decision.delivery, decision.record);
      case 'in-flight':
        return this.recorder.retryLater(
          decision.delivery,
          decision.failure,
          decision.retryInSeconds,
          decision.failures,
        );
      case 'conflict':
        return this.recorder.deadLetter(decision.delivery, decision.failure);
      case 'unknown': {
        const resolved = await this.maybeSent.resolve(decision.delivery, decision.maybeSent);
        if (resolved) return resolved;
        return this.send(decision.delivery);
      }
      case 'proceed':
        return this.send(decision.delivery);
    }
  }

  private async send(delivery: Delivery): Promise<RecordOutcome> {
    let screening: Screening;
    let walked: WalkResult;
    try {
      screening = await this.admission.screenRecipients(delivery);
      if (screening.remainingRecipients.length === 0) {
        return await this.recorder.suppressed(delivery, screening.suppressedRecipients);
      }
      const outbound = await composeOutbound(delivery, screening, this.outbound);
      walked = await this.chain.walk(delivery, outbound, screening.suppressedRecipients);
    } catch (error) {
      if (error instanceof RetryScheduled) throw error;
      // Failures before any provider had it (suppression list, attachments): nothing was sent.
      return this.recorder.failedBeforeHandOff(delivery, toRelayFailure(error));
    }
    // Outside the try: when recording the walk's end fails, process() handles it (as it always did).
    return this.chain.settle(delivery, walked, screening.suppressedRecipients);
  }
}
