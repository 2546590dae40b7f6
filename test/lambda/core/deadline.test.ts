import { describe, expect, it } from 'vitest';
import { invocationDeadlines, untilAborted } from '../../../lambda/core/deadline.ts';

describe('invocationDeadlines', () => {
  it('keeps time to record the outcome: a quarter of what is left, 2 to 5 seconds, at most half', async () => {
    // Nothing is left: both signals abort at once, so nothing waits into the timeout.
    const none = invocationDeadlines(0);
    await expect.poll(() => none.work.aborted && none.wrapUp.aborted).toBe(true);

    // 2.4 s left: 2 s would be most of it, so half is kept: the work stops at 1.2 s, the recording at 1.9 s.
    const short = invocationDeadlines(2_400);
    const startedAt = Date.now();
    await new Promise((resolve) => short.work.addEventListener('abort', resolve));
    const workStopped = Date.now() - startedAt;
    await new Promise((resolve) => short.wrapUp.addEventListener('abort', resolve));
    const wrapUpStopped = Date.now() - startedAt;
    // Lower bounds only: a busy machine may fire timers late, never early.
    expect(workStopped).toBeGreaterThanOrEqual(1_190);
    expect(wrapUpStopped).toBeGreaterThanOrEqual(1_890);
    expect(wrapUpStopped).toBeGreaterThan(workStopped);
  });

  it('takes any remaining time Lambda reports, odd milliseconds included', () => {
    // A quarter of 3999 ms is not a whole number of milliseconds.
    for (const remainingMs of [3_999, 1, 0.5, 12_345.678]) {
      expect(() => invocationDeadlines(remainingMs)).not.toThrow();
    }
  });

  it('takes a listener per record and request of a large batch without a MaxListenersExceededWarning', async () => {
    const warnings: Error[] = [];
    const onWarning = (warning: Error) => warnings.push(warning);
    process.on('warning', onWarning);
    try {
      const { work, wrapUp } = invocationDeadlines(30_000);
      for (let index = 0; index < 50; index += 1) {
        work.addEventListener('abort', () => undefined);
        wrapUp.addEventListener('abort', () => undefined);
      }
      // Node emits the warning on the next tick.
      await new Promise((resolve) => setImmediate(resolve));
    } finally {
      process.off('warning', onWarning);
    }
    expect(warnings.filter((warning) => warning.name === 'MaxListenersExceededWarning')).toEqual([]);
  });

  it('leaves a long invocation nearly all its time for work', () => {
    const long = invocationDeadlines(900_000);
    expect(long.work.aborted).toBe(false);
    expect(long.wrapUp.aborted).toBe(false);
  });
});

describe('untilAborted', () => {
  it('settles with the work, or rejects as soon as the signal aborts', async () => {
    await expect(
      untilAborted(Promise.resolve('done'), new AbortController().signal, () => new Error('late')),
    ).resolves.toBe('done');
    const controller = new AbortController();
    const waiting = untilAborted(new Promise(() => undefined), controller.signal, () => new Error('late'));
    controller.abort();
    await expect(waiting).rejects.toThrow('late');
    const aborted = AbortSignal.abort();
    await expect(untilAborted(Promise.resolve('done'), aborted, () => new Error('late'))).rejects.toThrow(
      'late',
    );
  });
});
