/**
 * At most `limit` concurrent operations per key (Graph allows 4 concurrent requests per app per
 * mailbox; more are answered 429 MailboxConcurrency). Waiters are served in arrival order.
 */
export class MailboxLimiter {
  private readonly active = new Map<string, number>();
  private readonly waiting = new Map<string, (() => void)[]>();

  constructor(private readonly limit: number) {}

  async run<T>(key: string, operation: () => Promise<T>): Promise<T> {
    await this.acquire(key);
    try {
      return await operation();
    } finally {
      this.release(key);
    }
  }

  private acquire(key: string): Promise<void> {
    const active = this.active.get(key) ?? 0;
    if (active < this.limit) {
      this.active.set(key, active + 1);
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const queue = this.waiting.get(key) ?? [];
      queue.push(resolve);
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
