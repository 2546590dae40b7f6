import type SMTPConnection from 'nodemailer/lib/smtp-connection';

/** Opens (connects and authenticates) a new connection; rejects with nodemailer's error. */
export type OpenConnection = (signal: AbortSignal) => Promise<SMTPConnection>;

/**
 * Up to `maxConnections` open SMTP sessions to one server for one user, reused across messages in a
 * warm function (the connection's `maxConnections`, by default as many as the records of a batch).
 * The relay drives each transaction itself (not nodemailer's pool) because it must know exactly how
 * far a message got: a session that failed in any way is closed, never reused.
 */
export class SmtpConnectionPool {
  private readonly idle: SMTPConnection[] = [];
  private active = 0;
  private readonly waiters: (() => void)[] = [];

  constructor(
    private readonly open: OpenConnection,
    private readonly maxConnections: number,
  ) {}

  /** A session ready for MAIL FROM; `reused` says it served a message before (the server may have closed it). */
  async acquire(signal: AbortSignal): Promise<{ connection: SMTPConnection; reused: boolean }> {
    for (;;) {
      if (signal.aborted) throw signal.reason;
      const idle = this.takeIdle();
      if (idle) {
        this.active += 1;
        return { connection: idle, reused: true };
      }
      if (this.active < this.maxConnections) {
        this.active += 1;
        try {
          return { connection: await this.open(signal), reused: false };
        } catch (error) {
          this.active -= 1;
          this.wakeOne();
          throw error;
        }
      }
      await this.waitForTurn(signal);
    }
  }

  /** Back into the pool after a transaction that ended with the server's 250. */
  release(connection: SMTPConnection): void {
    this.active -= 1;
    if (!connection.destroyed) this.idle.push(connection);
    this.wakeOne();
  }

  /** Closes a session whose state is unknown (a failure, a deadline, a refused hand-off). */
  discard(connection: SMTPConnection): void {
    this.active -= 1;
    connection.close();
    this.wakeOne();
  }

  close(): void {
    for (const connection of this.idle.splice(0)) connection.quit();
  }

  private takeIdle(): SMTPConnection | undefined {
    for (let connection = this.idle.pop(); connection; connection = this.idle.pop()) {
      if (!connection.destroyed) return connection;
    }
    return undefined;
  }

  private waitForTurn(signal: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      const turn = () => {
        signal.removeEventListener('abort', giveUp);
        resolve();
      };
      const giveUp = () => {
        const index = this.waiters.indexOf(turn);
        if (index >= 0) this.waiters.splice(index, 1);
        reject(signal.reason);
      };
      signal.addEventListener('abort', giveUp, { once: true });
      this.waiters.push(turn);
    });
  }

  private wakeOne(): void {
    this.waiters.shift()?.();
  }
}
