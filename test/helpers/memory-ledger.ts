import type { DeliveryLedger, DeliveryRecord } from '../../lambda/core/ledger.ts';
import type {
  SoftBounce,
  SoftBounceCounter,
  Suppression,
  SuppressionList,
} from '../../lambda/core/suppression.ts';

/**
 * In-memory ledger for narrow unit tests of the relay core's decisions. The DynamoDB ledger has its
 * own tests against dynalite, and the end-to-end tests use it.
 */
export class MemoryLedger implements DeliveryLedger {
  readonly records = new Map<string, DeliveryRecord>();
  /** Set to make the next writes fail, as an unreachable table would. */
  failWrites = false;
  failReads = false;
  /** Set to make batch reads fail while single reads work. */
  failBatchReads = false;
  writes = 0;
  reads = 0;
  batchReads = 0;

  async get(key: string): Promise<DeliveryRecord | undefined> {
    if (this.failReads) throw new Error('ledger unreachable');
    this.reads += 1;
    return this.records.get(key);
  }

  async getMany(keys: readonly string[]): Promise<Map<string, DeliveryRecord>> {
    if (this.failReads || this.failBatchReads) throw new Error('ledger unreachable');
    this.batchReads += 1;
    return new Map(
      keys.flatMap((key) => {
        const record = this.records.get(key);
        return record ? [[key, record] as const] : [];
      }),
    );
  }

  async put(record: DeliveryRecord, expectedVersion: number | undefined): Promise<boolean> {
    if (this.failWrites) throw new Error('ledger unreachable');
    const stored = this.records.get(record.key);
    if ((stored?.version ?? undefined) !== expectedVersion) return false;
    this.records.set(record.key, record);
    this.writes += 1;
    return true;
  }
}

export class MemorySuppressionList implements SuppressionList, SoftBounceCounter {
  readonly entries = new Map<string, Suppression>();
  /** The addresses of each lookup, in order. */
  readonly lookups: (readonly string[])[] = [];
  /** Soft-bounce counters per lower-cased address, as the DynamoDB list keeps them (window from the first). */
  readonly softBounces = new Map<string, { count: number; expiresAt: number; messages: Set<string> }>();
  /** Set to make the next writes fail, as an unreachable table would. */
  failWrites = false;

  constructor(private readonly now: () => number = Date.now) {}

  async suppress(entry: Suppression): Promise<void> {
    if (this.failWrites) throw new Error('suppression list unreachable');
    const address = entry.address.toLowerCase();
    this.entries.set(address, { ...entry, address });
  }

  async remove(address: string): Promise<void> {
    this.entries.delete(address.toLowerCase());
    this.softBounces.delete(address.toLowerCase());
  }

  async countSoftBounce(address: string, bounce: SoftBounce, windowDays: number): Promise<number> {
    if (this.failWrites) throw new Error('suppression list unreachable');
    const key = address.toLowerCase();
    const nowSeconds = Math.floor(this.now() / 1000);
    let counter = this.softBounces.get(key);
    if (!counter || counter.expiresAt <= nowSeconds) {
      counter = { count: 0, expiresAt: nowSeconds + windowDays * 86_400, messages: new Set() };
      this.softBounces.set(key, counter);
    }
    if (bounce.messageId !== undefined) {
      if (counter.messages.has(bounce.messageId)) return counter.count;
      counter.messages.add(bounce.messageId);
    }
    counter.count += 1;
    return counter.count;
  }

  add(address: string, reason = 'hard bounce'): void {
    const lower = address.toLowerCase();
    this.entries.set(lower, { address: lower, reason, since: new Date(0).toISOString() });
  }

  async find(addresses: readonly string[]): Promise<Map<string, Suppression>> {
    this.lookups.push(addresses);
    const found = new Map<string, Suppression>();
    for (const address of addresses) {
      const entry = this.entries.get(address.toLowerCase());
      if (entry) found.set(entry.address, entry);
    }
    return found;
  }
}
