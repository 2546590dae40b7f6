import { createHash } from 'node:crypto';
import type { DeliveryLedger, DeliveryRecord, TryFailure } from './ledger.ts';
import { MAX_TRY_FAILURES } from './ledger.ts';

/** The ledger key of a message: the producer's idempotency key, else the SQS message id. */
export function ledgerKeyOf(idempotencyKey: string | undefined, messageId: string): string {
  return idempotencyKey ?? `sqs:${messageId}`;
}

export function bodyHashOf(body: string): string {
  return createHash('sha256').update(body).digest('base64url');
}

/** The failure code recorded when a function died while a provider had the message. */
export const OUTCOME_UNKNOWN = 'OutcomeUnknown';

/** What the ledger says about a delivery that is about to start. */
export type Admission =
  /** Go ahead; `previous` carries the progress of earlier tries (chain position, attempts). */
  | { readonly kind: 'proceed'; readonly previous: DeliveryRecord | undefined }
  /** A provider already accepted this message: do not send it again. */
  | { readonly kind: 'duplicate'; readonly record: DeliveryRecord }
  /** Another function is sending it right now. */
  | { readonly kind: 'in-flight'; readonly record: DeliveryRecord; readonly retryInSeconds: number }
  /** The same idempotency key arrived with a different body. */
  | { readonly kind: 'conflict'; readonly record: DeliveryRecord }
  /** A function died while a provider had it: it may or may not have been sent. */
  | { readonly kind: 'unknown'; readonly record: DeliveryRecord };

/**
 * Decides from the ledger entry whether a delivery may go ahead. `redriven` means an operator moved
 * the message back from the dead-letter queue, which is the explicit decision to send a message whose
 * outcome was unknown.
 */
export function admit(
  previous: DeliveryRecord | undefined,
  incoming: { readonly bodyHash: string; readonly now: number; readonly redriven: boolean },
): Admission {
  if (!previous) return { kind: 'proceed', previous };
  if (previous.bodyHash !== incoming.bodyHash && previous.state !== 'dead-lettered') {
    return { kind: 'conflict', record: previous };
  }
  switch (previous.state) {
    case 'sent':
      return { kind: 'duplicate', record: previous };
    case 'sending': {
      const leaseUntil = previous.leaseUntil ?? 0;
      if (leaseUntil > incoming.now) {
        return {
          kind: 'in-flight',
          record: previous,
          retryInSeconds: Math.max(1, Math.ceil((leaseUntil - incoming.now) / 1000)),
        };
      }
      return incoming.redriven ? { kind: 'proceed', previous } : { kind: 'unknown', record: previous };
    }
    case 'dead-lettered':
      if (previous.failures.at(-1)?.code === OUTCOME_UNKNOWN && !incoming.redriven) {
        return { kind: 'unknown', record: previous };
      }
      return { kind: 'proceed', previous };
    case 'retrying':
    case 'suppressed':
      return { kind: 'proceed', previous };
  }
}

/** A claimed ledger entry: every write is conditional on the version this function last wrote. */
export class ClaimedDelivery {
  private current: DeliveryRecord;

  private constructor(
    private readonly ledger: DeliveryLedger,
    record: DeliveryRecord,
  ) {
    this.current = record;
  }

  /**
   * Writes the entry as `sending` with a lease, only if nobody wrote it since `previous` was read.
   * Resolves undefined when another function claimed it first.
   */
  static async claim(
    ledger: DeliveryLedger,
    previous: DeliveryRecord | undefined,
    fresh: Omit<
      DeliveryRecord,
      'version' | 'createdAt' | 'updatedAt' | 'providerIndex' | 'attempts' | 'failures'
    >,
    nowIso: string,
  ): Promise<ClaimedDelivery | undefined> {
    const record: DeliveryRecord = {
      // Progress survives across deliveries; a redriven or re-sent message starts the chain afresh.
      providerIndex: previous?.state === 'retrying' ? previous.providerIndex : 0,
      attempts: previous?.state === 'retrying' ? previous.attempts : 0,
      failures: previous?.failures ?? [],
      ...fresh,
      version: (previous?.version ?? 0) + 1,
      createdAt: previous?.createdAt ?? nowIso,
      updatedAt: nowIso,
    };
    const written = await ledger.put(record, previous?.version);
    return written ? new ClaimedDelivery(ledger, record) : undefined;
  }

  get record(): DeliveryRecord {
    return this.current;
  }

  /** Resolves false when the entry changed under us (then nothing is written). */
  async update(
    changes: Partial<Omit<DeliveryRecord, 'key' | 'version' | 'createdAt'>>,
    nowIso: string,
  ): Promise<boolean> {
    const next: DeliveryRecord = {
      ...this.current,
      ...changes,
      version: this.current.version + 1,
      updatedAt: nowIso,
    };
    const written = await this.ledger.put(next, this.current.version);
    if (written) this.current = next;
    return written;
  }
}

export function withFailure(failures: readonly TryFailure[], failure: TryFailure): TryFailure[] {
  return [...failures, failure].slice(-MAX_TRY_FAILURES);
}
