import type { DeliveryLedger, DeliveryRecord } from '../../lambda/core/ledger.ts';
import type { Suppression, SuppressionList } from '../../lambda/core/suppression.ts';

/**
 * In-memory ledger for narrow unit tests of the relay core's decisions. The DynamoDB ledger has its
 * own tests against dynalite, and the end-to-end tests use it.
 */
export class MemoryLedger implements DeliveryLedger {
  readonly records = new Map<string, DeliveryRecord>();
  /** Set to make the next writes fail, as an unreachable table would. */
  failWrites = false;
  failReads = false;
  writes = 0;

  async get(key: string): Promise<DeliveryRecord | undefined> {
    if (this.failReads) throw new Error('ledger unreachable');
    return this.records.get(key);
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

export class MemorySuppressionList implements SuppressionList {
  readonly entries = new Map<string, Suppression>();

  add(address: string, reason = 'hard bounce'): void {
    const lower = address.toLowerCase();
    this.entries.set(lower, { address: lower, reason, since: new Date(0).toISOString() });
  }

  async find(addresses: readonly string[]): Promise<Map<string, Suppression>> {
    const found = new Map<string, Suppression>();
    for (const address of addresses) {
      const entry = this.entries.get(address.toLowerCase());
      if (entry) found.set(entry.address, entry);
    }
    return found;
  }
}
