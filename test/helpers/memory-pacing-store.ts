import type { PacingStore } from '../../lambda/core/pacing/pacing-store.ts';

/** The pacing store in memory, with the same rules as the DynamoDB one (for narrow unit tests). */
export class MemoryPacingStore implements PacingStore {
  readonly schedules = new Map<string, number>();
  readonly totals = new Map<string, number>();
  readonly leases = new Map<string, { holder: string; leaseUntil: number }>();
  writes = 0;

  async reserve(key: string, costMs: number, now: number, latestStart: number) {
    this.writes += 1;
    const at = this.schedules.get(key);
    if (at === undefined || at <= now) {
      this.schedules.set(key, now + costMs);
      return { reserved: true as const, start: now };
    }
    if (at <= latestStart) {
      this.schedules.set(key, at + costMs);
      return { reserved: true as const, start: at };
    }
    return { reserved: false as const, freeAt: at };
  }

  async pushBack(key: string, until: number) {
    this.writes += 1;
    const at = this.schedules.get(key);
    if (at === undefined || at < until) this.schedules.set(key, until);
  }

  async add(key: string, amount: number, limit: number) {
    this.writes += 1;
    const total = this.totals.get(key) ?? 0;
    if (total + amount > limit) return { added: false, total };
    this.totals.set(key, total + amount);
    return { added: true, total: total + amount };
  }

  async subtract(key: string, amount: number) {
    this.writes += 1;
    const total = this.totals.get(key);
    if (total !== undefined) this.totals.set(key, total - amount);
  }

  async lease(key: string, slots: number, holder: string, now: number, leaseUntil: number) {
    for (let slot = 0; slot < slots; slot += 1) {
      this.writes += 1;
      const held = this.leases.get(`${key}|${slot}`);
      if (held === undefined || held.leaseUntil < now) {
        this.leases.set(`${key}|${slot}`, { holder, leaseUntil });
        return slot;
      }
    }
    return undefined;
  }

  async unlease(key: string, slot: number, holder: string) {
    this.writes += 1;
    if (this.leases.get(`${key}|${slot}`)?.holder === holder) this.leases.delete(`${key}|${slot}`);
  }

  /** Leases held now. */
  held(now: number): number {
    return [...this.leases.values()].filter((lease) => lease.leaseUntil >= now).length;
  }
}
