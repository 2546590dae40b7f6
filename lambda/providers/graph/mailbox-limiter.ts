/**
 * At most `limit` concurrent operations per key (Graph allows 4 concurrent requests per app per
 * mailbox; more are answered 429 MailboxConcurrency). Waiters are served in arrival order.
 */
export class MailboxLimiter {
  private readonly active = new Map<string, number>();
  private readonly waiting = new Map<string, (() => void)[]>();

  constructor(private readonly limit: number) {}

  /** Runs `operation` once a permit is free; rejects with `onAbort()` if `signal` aborts first. */
  async run<T>(
    key: string,
    signal: AbortSignal | undefined,
    operation: () => Promise<T>,
    onAbort: () => Error = () => new Error('aborted while waiting for a permit'),
  ): Promise<T> {
    await this.acquire(key, signal, onAbort);
    try {
      return await operation();
    } finally {
      this.release(key);
    }
  }

  private acquire(key: string, signal: AbortSignal | undefined, onAbort: () => Error): Promise<void> {
    if (signal?.aborted) return Promise.reject(onAbort());
    const active = this.active.get(key) ?? 0;
    if (active < this.limit) {
      this.active.set(key, active + 1);
      return Promise.resolve();
    }
    return new Promise((resolve, reject) => {
      const queue = this.waiting.get(key) ?? [];
      const grant = () => {
        signal?.removeEventListener('abort', giveUp);
        resolve();
      };
      // A waiter that gives up leaves the queue, so its permit goes to the next one.
      const giveUp = () => {
        const waiters = this.waiting.get(key);
        const index = waiters?.indexOf(grant) ?? -1;
        if (index >= 0) waiters?.splice(index, 1);
        reject(onAbort());
      };
      signal?.addEventListener('abort', giveUp, { once: true });
      queue.push(grant);
      this.waiting.set(key, queue);
    });
  }

  private release(key: string): void {
    const next = this.waiting.get(key)?.shift();
    if (next) {
      next(); // the permit passes straight to the next waiter
      return;
    }
    if (this.waiting.get(key)?.length === 0) this.waiting.delete(key);
    const active = (this.active.get(key) ?? 1) - 1;
    if (active === 0) this.active.delete(key);
    else this.active.set(key, active);
  }
}
