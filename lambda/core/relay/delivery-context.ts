import type { SQSRecord } from 'aws-lambda';
import type { Mailbox } from '../address.ts';
import { backoffSeconds } from '../backoff.ts';
import type { RecordDeadlines } from '../deadline.ts';
import type { LedgerEntry } from '../delivery.ts';
import { type FailureClass, RelayFailure } from '../failures.ts';
import { RELAY_FAILURE_PROVIDER, type TryFailure } from '../ledger.ts';
import type { MailProvider } from '../mail-provider.ts';
import type { RelayMessage } from '../message.ts';
import type { RouteSettings } from '../settings.ts';
import type { BatchReads } from './batch-reads.ts';
import type { RelayCoreSettings } from './types.ts';

/** What every stage knows about a record from the moment it arrives. */
export interface RecordContext {
  readonly sqsRecord: SQSRecord;
  readonly attempt: number;
  /** Log keys: ids, counts, tags and failure reasons only; bodies, subjects and attachments never reach the logs. */
  readonly keys: Record<string, unknown>;
  readonly deadlines: RecordDeadlines;
}

/** What one delivery works with once the message is parsed and routed. */
export interface Delivery extends RecordContext {
  readonly message: RelayMessage;
  readonly entry: LedgerEntry;
  readonly bodyHash: string;
  readonly route: RouteSettings;
  readonly sender: { from: Mailbox; replyTo?: Mailbox[] | undefined };
  readonly chain: readonly MailProvider[];
  /** What the batch read at once, when the record came with its batch. */
  readonly reads: BatchReads | undefined;
}

export interface Clock {
  readonly now: () => number;
  /** `now()` as ISO 8601. */
  readonly iso: () => string;
}

export function clockOf(now: () => number): Clock {
  return { now, iso: () => new Date(now()).toISOString() };
}

/** The code of a hand-off that lost the race for the ledger entry to another function. */
export const CLAIM_LOST = 'InFlight';
/** The ledger could not be read or written: nothing was sent. */
export const LEDGER_UNAVAILABLE = 'LedgerUnavailable';

/** Thrown by retryLater once the delay is set, so outer handlers do not schedule it twice. */
export class RetryScheduled extends Error {
  constructor(readonly failure: RelayFailure) {
    super(failure.message);
  }
}

/** A failure as the ledger keeps it (`at`: ISO 8601). */
export function tryFailure(failure: RelayFailure, at: string): TryFailure {
  return {
    provider: failure.provider ?? RELAY_FAILURE_PROVIDER,
    code: failure.code,
    failureClass: failure.failureClass,
    reason: failure.reason.slice(0, 500),
    at,
  };
}

/** The wait before the next try: the provider's Retry-After, else backoff for `attempt`. */
export function retryDelay(
  failure: RelayFailure,
  attempt: number,
  retry: RelayCoreSettings['retry'],
  random: () => number,
): number {
  return failure.retryAfterSeconds ?? backoffSeconds(attempt, retry, random);
}

/** The first version of a ledger entry written for this record. */
export function freshEntry(
  sqsRecord: SQSRecord,
  bodyHash: string,
  clock: Clock,
  ledger: RelayCoreSettings['ledger'],
) {
  return {
    state: 'retrying' as const,
    messageId: sqsRecord.messageId,
    bodyHash,
    providerIndex: 0,
    attempts: 0,
    failures: [],
    updatedAt: clock.iso(),
    expiresAt: Math.floor(clock.now() / 1000) + ledger.retentionDays * 86_400,
  };
}

export function ledgerUnavailable(error: unknown): RelayFailure {
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
export function exhausted(
  last: RelayFailure,
  failures: readonly TryFailure[],
  deliveries: number,
): RelayFailure {
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

/** A failure's log keys. */
export function describeFailure(failure: RelayFailure): {
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
