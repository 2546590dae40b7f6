import { createHash } from 'node:crypto';
import type { DeliveryLedger, DeliveryRecord, MaybeSent, TryFailure } from './ledger.ts';
import { MAX_TRY_FAILURES } from './ledger.ts';

/** The ledger key of a message: the producer's idempotency key, else the SQS message id. */
export function ledgerKeyOf(idempotencyKey: string | undefined, messageId: string): string {
  return idempotencyKey ?? `sqs:${messageId}`;
}

export function bodyHashOf(body: string): string {
  return createHash('sha256').update(body).digest('base64url');
}

/** The failure code of a message a provider may have sent, when nobody could find out. */
export const OUTCOME_UNKNOWN = 'OutcomeUnknown';

/** What the ledger says about a delivery that is about to start. */
export type Admission =
  /** Go ahead; `previous` carries the progress of earlier tries (chain position, attempts). */
  | { readonly kind: 'proceed'; readonly previous: DeliveryRecord | undefined }
  /** A provider already accepted this message: do not send it again. */
  | { readonly kind: 'duplicate'; readonly record: DeliveryRecord }
  /** Another function has handed it to a provider right now. */
  | { readonly kind: 'in-flight'; readonly record: DeliveryRecord; readonly retryInSeconds: number }
  /** The same idempotency key arrived with a different body. */
  | { readonly kind: 'conflict'; readonly record: DeliveryRecord }
  /**
   * This very SQS message was already put in the dead-letter queue: the function stopped between
   * that and deleting it from the outbox. It must not go to the DLQ a second time.
   */
  | { readonly kind: 'already-dead-lettered'; readonly record: DeliveryRecord }
  /** A provider may have sent it and nobody knows; no operator has released it. */
  | { readonly kind: 'unknown'; readonly record: DeliveryRecord; readonly maybeSent: MaybeSent };

export interface Incoming {
  readonly bodyHash: string;
  readonly now: number;
  /** The SQS message id of this delivery. */
  readonly messageId: string;
}

/**
 * Decides from the ledger entry whether a delivery may go ahead. Only the ledger decides: a message
 * a provider may have sent goes out again only when an operator released it there (`release`, written
 * by `mail-relay dlq redrive`), never because of anything the message itself carries.
 */
export function admit(previous: DeliveryRecord | undefined, incoming: Incoming): Admission {
  if (!previous) return { kind: 'proceed', previous };
  if (previous.bodyHash !== incoming.bodyHash && previous.state !== 'dead-lettered') {
    return { kind: 'conflict', record: previous };
  }
  if (previous.state === 'sent') return { kind: 'duplicate', record: previous };
  if (previous.state === 'dead-lettered' && previous.messageId === incoming.messageId) {
    return { kind: 'already-dead-lettered', record: previous };
  }
  if (previous.state === 'sending') {
    const leaseUntil = previous.leaseUntil ?? 0;
    if (leaseUntil > incoming.now) {
      return {
        kind: 'in-flight',
        record: previous,
        retryInSeconds: Math.max(1, Math.ceil((leaseUntil - incoming.now) / 1000)),
      };
    }
  }
  const maybeSent = maybeSentOf(previous);
  if (maybeSent && !previous.release) return { kind: 'unknown', record: previous, maybeSent };
  return { kind: 'proceed', previous };
}

/** Whether, and why, a provider may have this message: recorded, or implied by a lease that ran out. */
function maybeSentOf(record: DeliveryRecord): MaybeSent | undefined {
  if (record.maybeSent) return record.maybeSent;
  const provider = record.handedOffTo ?? record.provider ?? 'a provider';
  if (record.state === 'sending') {
    // `sending` is written only at the hand-off, so the function died while the provider had it.
    return {
      provider,
      since: record.handedOffAt ?? record.updatedAt,
      reason: `a function stopped while ${provider} had the message, before its answer was recorded`,
    };
  }
  // Entries written before maybeSent existed said so with their last failure.
  const last = record.failures.at(-1);
  if (record.state === 'dead-lettered' && last?.code === OUTCOME_UNKNOWN) {
    return { provider, since: last.at, reason: last.reason };
  }
  return undefined;
}

/**
 * One message's ledger entry as this function knows it. Every write is conditional on the version
 * last read or written here, so two functions never both hand the same message to a provider.
 */
export class LedgerEntry {
  private current: DeliveryRecord | undefined;

  constructor(
    private readonly ledger: DeliveryLedger,
    readonly key: string,
    record: DeliveryRecord | undefined,
  ) {
    this.current = record;
  }

  get record(): DeliveryRecord | undefined {
    return this.current;
  }

  /**
   * Writes the next version of the entry: `fresh` fills a new entry, `changes` apply to it. Resolves
   * false when another function wrote it since (then nothing is written).
   */
  async write(
    changes: Partial<Omit<DeliveryRecord, 'key' | 'version' | 'createdAt'>>,
    fresh: () => Omit<DeliveryRecord, 'key' | 'version' | 'createdAt' | 'updatedAt'>,
    nowIso: string,
    signal?: AbortSignal,
  ): Promise<boolean> {
    const base = this.current ?? {
      ...fresh(),
      key: this.key,
      version: 0,
      createdAt: nowIso,
      updatedAt: nowIso,
    };
    const next = dropUndefined({
      ...base,
      ...changes,
      key: this.key,
      version: base.version + 1,
      createdAt: base.createdAt,
      updatedAt: nowIso,
    });
    const written = await this.ledger.put(next, this.current?.version, signal);
    if (written) this.current = next;
    return written;
  }
}

/** `{...record, leaseUntil: undefined}` clears a field: the stored entry must not keep it. */
function dropUndefined(record: DeliveryRecord): DeliveryRecord {
  return Object.fromEntries(
    Object.entries(record).filter(([, value]) => value !== undefined),
  ) as DeliveryRecord;
}

export function withFailure(failures: readonly TryFailure[], failure: TryFailure): TryFailure[] {
  return [...failures, failure].slice(-MAX_TRY_FAILURES);
}
