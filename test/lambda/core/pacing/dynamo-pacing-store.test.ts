import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DynamoPacingStore } from '../../../../lambda/core/pacing/dynamo-pacing-store.ts';
import { type DynamoPeer, startDynamo } from '../../../helpers/dynamo.ts';

const NOW = Date.parse('2026-11-29T10:00:00Z');

describe('the pacing store on the DynamoDB emulator', () => {
  let dynamo: DynamoPeer;
  let store: DynamoPacingStore;

  beforeAll(async () => {
    dynamo = await startDynamo();
    store = new DynamoPacingStore(dynamo.client, dynamo.pacingTableName);
  });
  afterAll(() => dynamo.stop());

  it('reserves a free schedule now, queues the next behind it, and refuses past the latest start', async () => {
    expect(await store.reserve('rate-a', 1000, NOW, NOW)).toEqual({ reserved: true, start: NOW });
    expect(await store.reserve('rate-a', 1000, NOW, NOW + 1500)).toEqual({
      reserved: true,
      start: NOW + 1000,
    });
    expect(await store.reserve('rate-a', 1000, NOW, NOW + 1500)).toEqual({
      reserved: false,
      freeAt: NOW + 2000,
    });
    // Once the time has come, the schedule is free again.
    expect(await store.reserve('rate-a', 1000, NOW + 5000, NOW + 5000)).toEqual({
      reserved: true,
      start: NOW + 5000,
    });
  });

  it('never gives two concurrent reservations the same slot', async () => {
    const starts = await Promise.all(
      Array.from({ length: 20 }, () => store.reserve('rate-b', 100, NOW, NOW + 10_000)),
    );

    const reserved = starts.map((slot) => (slot.reserved ? slot.start - NOW : -1)).sort((a, b) => a - b);
    expect(reserved).toEqual(Array.from({ length: 20 }, (_, index) => index * 100));
  });

  it('pushes a schedule back, and never forward', async () => {
    await store.pushBack('rate-c', NOW + 30_000);
    await store.pushBack('rate-c', NOW + 10_000);

    expect(await store.reserve('rate-c', 1000, NOW, NOW)).toEqual({ reserved: false, freeAt: NOW + 30_000 });
  });

  it('counts up to the limit and no further, and takes back what is subtracted', async () => {
    const expiresAt = NOW / 1000 + 86_400;
    expect(await store.add('day-a', 6, 10, expiresAt)).toEqual({ added: true, total: 6 });
    expect(await store.add('day-a', 5, 10, expiresAt)).toEqual({ added: false, total: 6 });
    expect(await store.add('day-a', 4, 10, expiresAt)).toEqual({ added: true, total: 10 });
    await store.subtract('day-a', 4);
    expect(await store.add('day-a', 3, 10, expiresAt)).toEqual({ added: true, total: 9 });
  });

  it('hands out each lease once, frees it on release or expiry, and only to its holder', async () => {
    const first = await store.lease('conc-a', 2, 'one', NOW, NOW + 1000);
    const second = await store.lease('conc-a', 2, 'two', NOW, NOW + 1000);

    expect([first, second].sort()).toEqual([0, 1]);
    expect(await store.lease('conc-a', 2, 'three', NOW, NOW + 1000)).toBeUndefined();
    // Another holder cannot give back a lease that is not its own.
    await store.unlease('conc-a', first as number, 'three');
    expect(await store.lease('conc-a', 2, 'three', NOW, NOW + 1000)).toBeUndefined();
    await store.unlease('conc-a', first as number, 'one');
    expect(await store.lease('conc-a', 2, 'three', NOW, NOW + 1000)).toBe(first);
    // Past its lease, a slot is free whoever held it.
    expect(await store.lease('conc-a', 2, 'four', NOW + 1001, NOW + 2000)).toBeDefined();
  });
});
