import { describe, expect, it } from 'vitest';
import type { ProviderPacing } from '../../../../lambda/core/pacing/limits.ts';
import { Pacer } from '../../../../lambda/core/pacing/pacer.ts';
import { MemoryPacingStore } from '../../../helpers/memory-pacing-store.ts';

const START = Date.parse('2026-11-29T10:00:00Z');

function pacerWith(pacing: Record<string, ProviderPacing>, options: { maxWaitMs?: number } = {}) {
  const store = new MemoryPacingStore();
  let now = START;
  const pacer = new Pacer({
    store,
    pacingOf: (provider) => pacing[provider],
    maxWaitMs: options.maxWaitMs ?? 0,
    leaseMs: 30_000,
    now: () => now,
    sleep: async (ms) => {
      now += ms;
    },
  });
  return {
    store,
    pacer,
    advance(ms: number) {
      now += ms;
    },
    now: () => now,
  };
}

const GRAPH: ProviderPacing = {
  perMailbox: { messagesPerMinute: 30, recipientsPerDay: 100, concurrentRequests: 2 },
};
const send = (recipients = 1, mailbox = 'app@contoso.com') => ({ provider: 'graph', mailbox, recipients });

describe('Pacer', () => {
  it('lets an unpaced provider send at once, writing nothing', async () => {
    const { pacer, store } = pacerWith({});

    const decision = await pacer.acquire({ provider: 'ses', mailbox: 'a@example.com', recipients: 3 });

    expect(decision).toMatchObject({ kind: 'go', startAt: START });
    expect(store.writes).toBe(0);
  });

  it('spaces a mailbox to its messages per minute, a little under the limit', async () => {
    const { pacer, advance } = pacerWith({ graph: { perMailbox: { messagesPerMinute: 30 } } });
    const first = await pacer.acquire(send());
    const second = await pacer.acquire(send());

    expect(first).toMatchObject({ kind: 'go', startAt: START });
    expect(second).toMatchObject({ kind: 'limited', limit: 'messagesPerMinute', scope: 'mailbox' });
    const until = second.kind === 'limited' ? second.until : 0;
    // (60 s + half a second of allowance for arrival jitter) / 30: just over two seconds.
    expect(until - START).toBeCloseTo(2016.7, 0);

    // The second message keeps its slot while it waits on the queue: back at its time, it goes, and
    // a newcomer queues behind it.
    expect(second.kind === 'limited' && second.reservations).toEqual({
      'graph|mailbox|app@contoso.com|messages': until,
    });
    advance(until - START);
    const reservations = second.kind === 'limited' ? second.reservations : undefined;
    expect(await pacer.acquire({ ...send(), ...(reservations && { reservations }) })).toMatchObject({
      kind: 'go',
      startAt: until,
    });
    expect(await pacer.acquire(send())).toMatchObject({ kind: 'limited' });
  });

  it('reserves no slot further ahead than SQS can delay a message (15 minutes)', async () => {
    const { pacer } = pacerWith({ graph: { perMailbox: { messagesPerMinute: 1 } } });
    for (let index = 0; index < 16; index += 1) await pacer.acquire(send());

    const beyond = await pacer.acquire(send());

    expect(beyond).toMatchObject({ kind: 'limited', limit: 'messagesPerMinute' });
    expect(beyond.kind === 'limited' && beyond.reservations).toBeFalsy();
  });

  it('lets a send wait in the function for its turn when it comes within the wait budget', async () => {
    const { pacer } = pacerWith({ graph: { perMailbox: { messagesPerMinute: 30 } } }, { maxWaitMs: 5000 });
    await pacer.acquire(send());
    const second = await pacer.acquire(send());
    const third = await pacer.acquire(send());
    const fourth = await pacer.acquire(send());

    expect(second.kind === 'go' && second.startAt - START).toBeCloseTo(2016.7, 0);
    expect(third.kind === 'go' && third.startAt - START).toBeCloseTo(4033.3, 0);
    // Beyond five seconds: back to the queue with its slot, due two seconds before it to wait the rest.
    expect(fourth).toMatchObject({ kind: 'limited', limit: 'messagesPerMinute' });
    if (fourth.kind === 'limited') expect(fourth.until - fourth.returnAt).toBe(2000);
  });

  it('counts recipients per UTC day and, once the day is full, says the next day', async () => {
    const { pacer } = pacerWith({ graph: { perMailbox: { recipientsPerDay: 100 } } });

    expect(await pacer.acquire(send(60))).toMatchObject({ kind: 'go' });
    expect(await pacer.acquire(send(40))).toMatchObject({ kind: 'go' });
    expect(await pacer.acquire(send(1))).toEqual({
      kind: 'limited',
      until: Date.parse('2026-11-30T00:00:00Z'),
      returnAt: Date.parse('2026-11-30T00:00:00Z'),
      limit: 'recipientsPerDay',
      scope: 'mailbox',
    });
    // Another mailbox has its own day.
    expect(await pacer.acquire(send(1, 'other@contoso.com'))).toMatchObject({ kind: 'go' });
  });

  it('gives the day count back when a later limit stops the send', async () => {
    const { pacer, store } = pacerWith({ graph: GRAPH });
    await pacer.acquire(send(10));

    const refused = await pacer.acquire(send(10));

    expect(refused).toMatchObject({ kind: 'limited', limit: 'messagesPerMinute' });
    expect([...store.totals.values()]).toEqual([10]);
  });

  it('holds concurrency leases until the permit is released, across pacers (functions)', async () => {
    const store = new MemoryPacingStore();
    const pacing = { graph: { perMailbox: { concurrentRequests: 2 } } };
    const make = () =>
      new Pacer({
        store,
        pacingOf: (provider) => pacing[provider as 'graph'],
        maxWaitMs: 0,
        leaseMs: 30_000,
      });
    const [one, two, three] = [make(), make(), make()];

    const a = await one.acquire(send());
    const b = await two.acquire(send());
    const c = await three.acquire(send());

    expect([a.kind, b.kind, c.kind]).toEqual(['go', 'go', 'limited']);
    expect(c).toMatchObject({ limit: 'concurrentRequests' });
    if (a.kind === 'go') await a.permit.release();
    expect(await three.acquire(send())).toMatchObject({ kind: 'go' });
  });

  it('frees a lease whose function stopped once the lease runs out', async () => {
    const { pacer, advance } = pacerWith({ graph: { perMailbox: { concurrentRequests: 1 } } });
    await pacer.acquire(send());

    expect(await pacer.acquire(send())).toMatchObject({ kind: 'limited' });
    advance(30_001);
    expect(await pacer.acquire(send())).toMatchObject({ kind: 'go' });
  });

  it('moves every schedule of the mailbox past a Retry-After, so all functions wait', async () => {
    const { pacer } = pacerWith({ graph: { perMailbox: { messagesPerMinute: 600 } } });
    await pacer.backOff({ provider: 'graph', mailbox: 'APP@contoso.com' }, 30);

    expect(await pacer.acquire(send())).toMatchObject({
      kind: 'limited',
      until: START + 30_000,
      limit: 'messagesPerMinute',
      scope: 'mailbox',
    });
  });

  it('paces an account by recipients per second, each send costing its recipients', async () => {
    const { pacer } = pacerWith({ ses: { perProvider: { recipientsPerSecond: 10 } } }, { maxWaitMs: 60_000 });
    const request = { provider: 'ses', mailbox: 'a@example.com', recipients: 49 };

    await pacer.acquire(request);
    const next = await pacer.acquire({ ...request, mailbox: 'b@example.com' });

    // 49 recipients at 10 per second (each second stretched by 50 ms): the account is busy 5.145 s.
    expect(next.kind === 'go' && next.startAt - START).toBeCloseTo(5145, 0);
  });

  it('uses a mailbox of its own limits instead of perMailbox', async () => {
    const { pacer } = pacerWith({
      graph: {
        perMailbox: { recipientsPerDay: 100 },
        mailboxes: { 'ceo@contoso.com': { recipientsPerDay: 5 } },
      },
    });

    expect(await pacer.acquire(send(6, 'CEO@contoso.com'))).toMatchObject({ kind: 'limited' });
    expect(await pacer.acquire(send(6))).toMatchObject({ kind: 'go' });
  });
});
