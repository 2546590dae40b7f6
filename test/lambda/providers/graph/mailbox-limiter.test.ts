import { describe, expect, it } from 'vitest';
import { MailboxLimiter } from '../../../../lambda/providers/graph/mailbox-limiter.ts';

/** A task that stays in flight until released, recording the concurrency it observed. */
function gate() {
  let release: () => void = () => {};
  const done = new Promise<void>((resolve) => {
    release = resolve;
  });
  return { done, release: () => release() };
}

describe('MailboxLimiter', () => {
  it('never runs more than the limit per key, and runs queued work as permits free up', async () => {
    const limiter = new MailboxLimiter(4);
    let active = 0;
    let highest = 0;
    const gates = Array.from({ length: 10 }, gate);
    const started: number[] = [];
    const runs = gates.map((g, index) =>
      limiter.run('ana@contoso.com', undefined, async () => {
        started.push(index);
        active += 1;
        highest = Math.max(highest, active);
        await g.done;
        active -= 1;
      }),
    );
    await new Promise((resolve) => setImmediate(resolve));
    expect(started).toEqual([0, 1, 2, 3]);
    gates[1]?.release();
    await new Promise((resolve) => setImmediate(resolve));
    expect(started).toEqual([0, 1, 2, 3, 4]);
    for (const g of gates) g.release();
    await Promise.all(runs);
    expect(highest).toBe(4);
    expect(started).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  });

  it('limits each key separately', async () => {
    const limiter = new MailboxLimiter(1);
    const first = gate();
    const order: string[] = [];
    const a = limiter.run('a@contoso.com', undefined, async () => {
      order.push('a1');
      await first.done;
    });
    const b = limiter.run('b@contoso.com', undefined, async () => {
      order.push('b1');
    });
    await b;
    expect(order).toEqual(['a1', 'b1']);
    first.release();
    await a;
  });

  it('frees the permit when the operation fails', async () => {
    const limiter = new MailboxLimiter(1);
    await expect(
      limiter.run('a@contoso.com', undefined, () => Promise.reject(new Error('boom'))),
    ).rejects.toThrow('boom');
    await expect(limiter.run('a@contoso.com', undefined, async () => 'next')).resolves.toBe('next');
  });

  it('lets a waiter give up at its deadline, and passes the permit to the next one instead', async () => {
    const limiter = new MailboxLimiter(1);
    const busy = gate();
    const holder = limiter.run('a@contoso.com', undefined, () => busy.done);
    const deadline = new AbortController();
    const order: string[] = [];
    const impatient = limiter.run(
      'a@contoso.com',
      deadline.signal,
      async () => void order.push('impatient'),
      () => new Error('out of time'),
    );
    const patient = limiter.run('a@contoso.com', undefined, async () => void order.push('patient'));

    deadline.abort();
    await expect(impatient).rejects.toThrow('out of time');
    busy.release();
    await Promise.all([holder, patient]);
    expect(order).toEqual(['patient']);
  });
});
