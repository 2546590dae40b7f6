/**
 * Where the fleet keeps its pacing state, shared by every concurrent send function (DynamoDB in AWS
 * and local mode). Each operation is one conditional write, so no two functions can both take the
 * last of a limit.
 */
export interface PacingStore {
  /**
   * A schedule (GCRA: each key holds the time its capacity is free again). Reserves `costMs` of it,
   * starting no later than `latestStart`: returns when the reservation starts, or when the schedule
   * is free if that is later than `latestStart` (then nothing is reserved).
   */
  reserve(
    key: string,
    costMs: number,
    now: number,
    latestStart: number,
    signal?: AbortSignal,
  ): Promise<
    | { readonly reserved: true; readonly start: number }
    | { readonly reserved: false; readonly freeAt: number }
  >;

  /** Pushes a schedule back to at least `until` (a provider said to wait: the whole fleet waits). */
  pushBack(key: string, until: number, signal?: AbortSignal): Promise<void>;

  /**
   * A counter of one window (a UTC day): adds `amount` if the total stays within `limit`. Returns the
   * total after the addition, or the total as it is when the addition would go over.
   */
  add(
    key: string,
    amount: number,
    limit: number,
    expiresAt: number,
    signal?: AbortSignal,
  ): Promise<{ readonly added: boolean; readonly total: number }>;

  /** Takes back what `add` added (the send never happened). */
  subtract(key: string, amount: number, signal?: AbortSignal): Promise<void>;

  /**
   * Takes one of `slots` leases (concurrent requests) for `holder` until `leaseUntil`; an expired lease
   * (its holder stopped) is free. Returns the slot taken, or undefined when all are held.
   */
  lease(
    key: string,
    slots: number,
    holder: string,
    now: number,
    leaseUntil: number,
    signal?: AbortSignal,
  ): Promise<number | undefined>;

  /** Gives a lease back. */
  unlease(key: string, slot: number, holder: string): Promise<void>;
}
