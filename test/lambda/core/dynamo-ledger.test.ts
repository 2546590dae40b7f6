import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DynamoDeliveryLedger } from '../../../lambda/core/dynamo-ledger.ts';
import type { DeliveryRecord } from '../../../lambda/core/ledger.ts';
import { type DynamoPeer, startDynamo } from '../../helpers/dynamo.ts';

const NOW = Date.parse('2026-11-22T10:00:00Z');

const record = (key: string, changes: Partial<DeliveryRecord> = {}): DeliveryRecord => ({
  key,
  state: 'sending',
  version: 1,
  messageId: 'm-1',
  bodyHash: 'hash',
  providerIndex: 0,
  attempts: 0,
  failures: [],
  leaseUntil: NOW + 30_000,
  createdAt: '2026-11-22T10:00:00.000Z',
  updatedAt: '2026-11-22T10:00:00.000Z',
  expiresAt: NOW / 1000 + 86_400,
  ...changes,
});

describe('the delivery ledger on the DynamoDB emulator', () => {
  let dynamo: DynamoPeer;
  let ledger: DynamoDeliveryLedger;

  beforeAll(async () => {
    dynamo = await startDynamo();
    ledger = new DynamoDeliveryLedger(dynamo.client, dynamo.ledgerTableName, () => NOW);
  });
  afterAll(() => dynamo.stop());

  it('stores and reads back every field, leaving absent ones out', async () => {
    const full = record('full', {
      state: 'sent',
      route: 'contoso',
      provider: 'ses',
      providerMessageId: 'ses-1',
      fallbackFrom: ['graph'],
      suppressedRecipients: ['bounced@example.org'],
      sentAt: '2026-11-22T10:00:01.000Z',
      failures: [
        {
          provider: 'graph',
          code: 'InvalidAuthenticationToken',
          failureClass: 'provider',
          reason: 'r',
          at: 'a',
        },
      ],
    });
    expect(await ledger.put(full, undefined)).toBe(true);
    expect(await ledger.get('full')).toEqual(full);

    const bare = record('bare', { leaseUntil: undefined });
    await ledger.put(bare, undefined);
    const read = await ledger.get('bare');
    expect(read).toEqual(bare);
    expect(read && 'leaseUntil' in read).toBe(false);
    expect(await ledger.get('missing')).toBeUndefined();
  });

  it('appends feedback to an entry, keeps it through a versioned write, and refuses an unknown key', async () => {
    await ledger.put(record('noted', { state: 'sent', provider: 'graph' }), undefined);
    const bounce = {
      kind: 'bounced' as const,
      provider: 'graph',
      recipients: ['nobody@fabrikam.com'],
      bounceType: 'hard' as const,
      status: '5.1.10',
      suppressed: true,
      at: '2026-11-22T10:05:00.000Z',
    };
    const delivered = {
      kind: 'delivered' as const,
      provider: 'graph',
      recipients: ['ana@fabrikam.com'],
      suppressed: false,
      at: 'b',
    };

    expect(await ledger.noteFeedback('noted', bounce)).toBe(true);
    expect(await ledger.noteFeedback('noted', delivered)).toBe(true);
    const read = await ledger.get('noted');
    expect(read?.feedback).toEqual([bounce, delivered]);
    // The send function rewrites whole entries (a later copy, say): the notes survive.
    if (!read) throw new Error('entry missing');
    expect(await ledger.put({ ...read, version: 2 }, 1)).toBe(true);
    expect((await ledger.get('noted'))?.feedback).toEqual([bounce, delivered]);

    expect(await ledger.noteFeedback('never-sent', bounce)).toBe(false);
    expect(await ledger.get('never-sent')).toBeUndefined();
  });

  it('lets exactly one of two writers with the same expected version through', async () => {
    await ledger.put(record('race'), undefined);
    const results = await Promise.all([
      ledger.put(record('race', { version: 2, messageId: 'a' }), 1),
      ledger.put(record('race', { version: 2, messageId: 'b' }), 1),
    ]);
    expect(results.filter(Boolean)).toHaveLength(1);
    expect(await ledger.put(record('race', { version: 3 }), 1)).toBe(false);
    expect(await ledger.put(record('new-1'), undefined)).toBe(true);
    expect(await ledger.put(record('new-1'), undefined)).toBe(false);
  });

  it('treats an expired entry as absent, and lets a new claim replace it', async () => {
    await ledger.put(record('old', { state: 'sent', expiresAt: NOW / 1000 - 1 }), undefined);
    expect(await ledger.get('old')).toBeUndefined();
    expect(await ledger.put(record('old', { messageId: 'again' }), undefined)).toBe(true);
    expect((await ledger.get('old'))?.messageId).toBe('again');
  });

  it('agrees with itself on expiry within a second: what get calls expired, put may replace', async () => {
    const halfASecondLater = new DynamoDeliveryLedger(dynamo.client, dynamo.ledgerTableName, () => NOW + 500);
    await ledger.put(record('edge', { expiresAt: NOW / 1000 }), undefined);
    expect(await ledger.get('edge')).toBeDefined();

    expect(await halfASecondLater.get('edge')).toBeUndefined();
    expect(await halfASecondLater.put(record('edge', { messageId: 'after' }), undefined)).toBe(true);
  });

  it('reads many entries in one go, leaving out absent and expired ones, beyond 100 keys', async () => {
    const keys = Array.from({ length: 120 }, (_, index) => `many-${index}`);
    await Promise.all(keys.slice(0, 110).map((key) => ledger.put(record(key), undefined)));
    await ledger.put(record('many-expired', { expiresAt: NOW / 1000 - 1 }), undefined);

    const found = await ledger.getMany([...keys, 'many-expired']);

    expect([...found.keys()].sort()).toEqual(keys.slice(0, 110).sort());
    expect(found.get('many-7')).toEqual(record('many-7'));
  });

  it('passes on errors other than a lost race', async () => {
    const elsewhere = new DynamoDeliveryLedger(dynamo.client, 'no-such-table', () => NOW);
    await expect(elsewhere.put(record('x'), undefined)).rejects.toMatchObject({
      name: 'ResourceNotFoundException',
    });
    await expect(elsewhere.get('x')).rejects.toMatchObject({ name: 'ResourceNotFoundException' });
  });
});
