import { randomUUID } from 'node:crypto';
import { type LimitName, type PaceScope, type ProviderPacing, scopesFor } from './limits.ts';
import type { PacingStore } from './pacing-store.ts';

/** One send about to happen: who sends it, through which provider, to how many recipients. */
export interface PaceRequest {
  readonly provider: string;
  readonly mailbox: string;
  readonly recipients: number;
  /** Rate slots this message reserved before it went back on the queue (schedule key → start). */
  readonly reservations?: Readonly<Record<string, number>>;
}

/** Held while the send is in progress; give it back when the provider answered. */
export interface PacePermit {
  release(): Promise<void>;
}

export type PaceDecision =
  /** Send at `startAt` (now, or a moment within the wait the function may afford). */
  | { readonly kind: 'go'; readonly startAt: number; readonly permit: PacePermit }
  /** A limit is reached: the message may be sent from `until` on (or by another provider now). */
  | {
      readonly kind: 'limited';
      readonly until: number;
      readonly limit: LimitName;
      readonly scope: PaceScope['kind'];
      /**
       * Rate slots reserved for the message, which keep its turn while it waits on the queue: the
       * copy carries them, and they are its when it comes back (schedule key → start).
       */
      readonly reservations?: Readonly<Record<string, number>>;
      /**
       * When the message should be back: with reserved slots, a little before `until`, so it waits
       * the rest in the function and leaves on time (a copy the queue hands back late would crowd
       * the next sends into the provider's window); else `until`.
       */
      readonly returnAt: number;
    };

export type PaceLimited = Extract<PaceDecision, { kind: 'limited' }>;

export interface PacerOptions {
  readonly store: PacingStore;
  /** The pacing of a provider (by its name: `graph`, `smtp:billing`), from its settings. */
  readonly pacingOf: (provider: string) => ProviderPacing | undefined;
  /** The longest a send may wait in the function for its turn; beyond, the message waits in the queue. */
  readonly maxWaitMs: number;
  /** How long a concurrency lease holds if its function stops without giving it back. */
  readonly leaseMs: number;
  readonly now?: () => number;
  readonly sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
}

/**
 * Rates are paced a little under the limit: sends the schedule spaces exactly may still arrive
 * closer together (a function woken late, network jitter), and the provider counts arrivals in its
 * window. A window's sends are spread over the window plus an allowance for that: half a second of a
 * minute (Exchange counts strictly), 50 ms of a second (SES's rate tolerates short bursts).
 */
const MINUTE_ALLOWANCE_MS = 500;
const SECOND_ALLOWANCE_MS = 50;
/**
 * How far ahead a message may reserve its turn while it waits on the queue: SQS delays a message by
 * at most 15 minutes. A later turn is not reserved; the message comes back and asks again.
 */
const QUEUE_HORIZON_MS = 900_000;
/** How long before its reserved turn a waiting message comes back, to wait the rest in the function. */
const EARLY_RETURN_MS = 2000;
/**
 * How late a message may use its reserved slot. Within the minute's half-second allowance (see
 * MINUTE_ALLOWANCE_MS), a send this late cannot push a window over its limit.
 */
const LATE_SLOT_TOLERANCE_MS = 250;
/** How often a send waiting for a concurrency lease asks again (a little more, at random). */
const LEASE_POLL_MS = 200;
/** A concurrency lease frees when a request ends: soon, but nobody knows when. */
const LEASE_RETRY_MS = 1000;
const DAY_MS = 86_400_000;
/** Day counters outlive their day a little, for `mail-relay status`. */
const DAY_COUNTER_RETENTION_MS = 2 * DAY_MS;

/**
 * Keeps sends inside each provider's limits across every send function at once: concurrency leases,
 * rate schedules (GCRA) and daily counters in a shared store, each taken with one conditional write.
 * What is taken for a send that then waits elsewhere is given back where it can be (leases, day
 * counts); a rate slot is not, so a limit is never exceeded, only sometimes underused.
 */
export class Pacer {
  private readonly holder = randomUUID();
  private readonly now: () => number;
  private readonly sleep: (ms: number, signal?: AbortSignal) => Promise<void>;

  constructor(private readonly options: PacerOptions) {
    this.now = options.now ?? Date.now;
    this.sleep = options.sleep ?? sleepFor;
  }

  /** The scopes that limit this send (none when the provider is not paced). */
  scopes(request: Pick<PaceRequest, 'provider' | 'mailbox'>): PaceScope[] {
    return scopesFor(request.provider, this.options.pacingOf(request.provider), request.mailbox);
  }

  /**
   * Takes the send's turn: the day's count, a slot of each rate (now, soon enough to wait for in the
   * function, or reserved up to 15 minutes ahead for the message to wait on the queue), then a
   * concurrency lease. What a send that must wait took is given back (the count, the leases); its
   * reserved slots go with it.
   */
  async acquire(request: PaceRequest, signal?: AbortSignal): Promise<PaceDecision> {
    const scopes = this.scopes(request);
    const undo: (() => Promise<void>)[] = [];
    const giveBack = async () => {
      await Promise.allSettled(undo.splice(0).map((step) => step()));
    };
    try {
      for (const scope of scopes) {
        const limit = scope.limits.recipientsPerDay;
        if (limit === undefined) continue;
        const day = Math.floor(this.now() / DAY_MS);
        const key = `${scope.key}|day|${new Date(day * DAY_MS).toISOString().slice(0, 10)}`;
        const count = await this.options.store.add(
          key,
          request.recipients,
          limit,
          Math.ceil(((day + 1) * DAY_MS + DAY_COUNTER_RETENTION_MS) / 1000),
          signal,
        );
        if (!count.added) {
          await giveBack();
          return limited((day + 1) * DAY_MS, 'recipientsPerDay', scope);
        }
        undo.push(() => this.options.store.subtract(key, request.recipients));
      }
      // Rates: a slot per schedule, the message's own if it reserved one before waiting on the queue.
      const reservations: Record<string, number> = {};
      let startAt = this.now();
      let slowest: { limit: LimitName; scope: PaceScope } | undefined;
      for (const scope of scopes) {
        for (const rate of ratesOf(scope, request.recipients)) {
          let start = request.reservations?.[rate.key];
          // A slot the queue handed back too late is not used: sent now, the message would crowd the
          // sends spaced after its slot into the provider's window. It takes a new one.
          if (start !== undefined && start < this.now() - LATE_SLOT_TOLERANCE_MS) start = undefined;
          if (start === undefined) {
            const now = this.now();
            const slot = await this.options.store.reserve(
              rate.key,
              rate.costMs,
              now,
              now + QUEUE_HORIZON_MS,
              signal,
            );
            if (!slot.reserved) {
              await giveBack();
              return limited(slot.freeAt, rate.limit, scope, reservations);
            }
            start = slot.start;
          }
          reservations[rate.key] = start;
          if (start > startAt) {
            startAt = start;
            slowest = { limit: rate.limit, scope };
          }
        }
      }
      if (slowest && startAt > this.now() + this.options.maxWaitMs) {
        // Too far for the function to wait: the message waits on the queue, its slots kept.
        await giveBack();
        return {
          ...limited(startAt, slowest.limit, slowest.scope, reservations),
          returnAt: startAt - Math.min(this.options.maxWaitMs, EARLY_RETURN_MS),
        };
      }
      const leases: (() => Promise<void>)[] = [];
      const leased = scopes.filter((scope) => scope.limits.concurrentRequests !== undefined);
      if (leased.length > 0 && slowest && startAt > this.now()) {
        // A lease is taken when the turn has come, not held while waiting for it.
        try {
          await this.sleep(startAt - this.now(), signal);
        } catch {
          await giveBack();
          return limited(startAt, slowest.limit, slowest.scope, reservations);
        }
      }
      for (const scope of leased) {
        const slots = scope.limits.concurrentRequests;
        if (slots === undefined) continue;
        const lease = await this.lease(`${scope.key}|concurrent`, slots, signal);
        if (lease === undefined) {
          await giveBack();
          return limited(this.now() + LEASE_RETRY_MS, 'concurrentRequests', scope, reservations);
        }
        const release = () => this.options.store.unlease(`${scope.key}|concurrent`, lease, this.holder);
        undo.push(release);
        leases.push(release);
      }
      return {
        kind: 'go',
        startAt,
        permit: { release: async () => void (await Promise.allSettled(leases.map((step) => step()))) },
      };
    } catch (error) {
      await giveBack();
      throw error;
    }
  }

  /**
   * A provider throttled a send (429 with Retry-After, SMTP 4.7.x): every function's schedule for
   * those scopes moves past the wait, so the fleet backs off, not only the function that was told.
   */
  async backOff(request: Pick<PaceRequest, 'provider' | 'mailbox'>, seconds: number): Promise<void> {
    const until = this.now() + seconds * 1000;
    const keys = this.scopes(request).flatMap((scope) => ratesOf(scope, 1).map((rate) => rate.key));
    await Promise.all(keys.map((key) => this.options.store.pushBack(key, until)));
  }

  /** A lease, waiting for one within the send's wait budget. */
  private async lease(key: string, slots: number, signal?: AbortSignal): Promise<number | undefined> {
    const giveUpAt = this.now() + this.options.maxWaitMs;
    for (;;) {
      const now = this.now();
      const slot = await this.options.store.lease(
        key,
        slots,
        this.holder,
        now,
        now + this.options.leaseMs,
        signal,
      );
      if (slot !== undefined || now + LEASE_POLL_MS > giveUpAt || signal?.aborted) return slot;
      // Spread out, so the waiting sends of many functions do not all ask at once.
      try {
        await this.sleep(LEASE_POLL_MS * (1 + Math.random()), signal);
      } catch {
        return undefined; // out of time: no lease, the message waits on the queue
      }
    }
  }
}

/** The rate schedules of a scope with what one send costs on each (GCRA's emission interval). */
function ratesOf(
  scope: PaceScope,
  recipients: number,
): { readonly key: string; readonly costMs: number; readonly limit: LimitName }[] {
  const rates: { key: string; costMs: number; limit: LimitName }[] = [];
  const { messagesPerMinute, recipientsPerSecond } = scope.limits;
  if (messagesPerMinute !== undefined) {
    rates.push({
      key: `${scope.key}|messages`,
      costMs: (60_000 + MINUTE_ALLOWANCE_MS) / messagesPerMinute,
      limit: 'messagesPerMinute',
    });
  }
  if (recipientsPerSecond !== undefined) {
    rates.push({
      key: `${scope.key}|recipients`,
      costMs: (Math.max(recipients, 1) * (1000 + SECOND_ALLOWANCE_MS)) / recipientsPerSecond,
      limit: 'recipientsPerSecond',
    });
  }
  return rates;
}

function limited(
  until: number,
  limit: LimitName,
  scope: PaceScope,
  reservations: Readonly<Record<string, number>> = {},
): PaceLimited {
  return {
    kind: 'limited',
    until,
    returnAt: until,
    limit,
    scope: scope.kind,
    ...(Object.keys(reservations).length > 0 && { reservations }),
  };
}

function sleepFor(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

export { sleepFor };
