import { connect as connectTcp, type Socket } from 'node:net';
import { connect as connectTls } from 'node:tls';

/** One SMTP reply: its code and its lines' text, `250-a` / `250 b` → 250, ['a', 'b']. */
export interface SmtpReply {
  readonly code: number;
  readonly lines: readonly string[];
  /** The last line as the client saw it, e.g. `452 4.5.3 too many recipients …`. */
  readonly text: string;
}

/**
 * A scripted SMTP client over a plain socket: each step writes a line and waits for the complete
 * (possibly multi-line) reply, so a test says exactly what the server saw and heard back.
 */
export class SmtpSession {
  private socket: Socket;
  private buffered = '';
  private readonly replies: SmtpReply[] = [];
  private waiting: { resolve: (reply: SmtpReply) => void; reject: (error: Error) => void } | undefined;
  private failure: Error | undefined;

  private constructor(socket: Socket) {
    this.socket = socket;
    this.listen(socket);
  }

  /** Connects and waits for the greeting. */
  static async open(host: string, port: number): Promise<{ session: SmtpSession; greeting: SmtpReply }> {
    const socket = connectTcp({ host, port });
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve).once('error', reject);
    });
    const session = new SmtpSession(socket);
    return { session, greeting: await session.next() };
  }

  /** Writes one command line (CRLF added) and waits for its reply. */
  command(line: string): Promise<SmtpReply> {
    this.socket.write(`${line}\r\n`);
    return this.next();
  }

  /**
   * Sends a message after DATA's 354: its bytes as given (bare LF, 8-bit and all), dot-stuffed, then
   * CRLF.CRLF. Waits for the reply to the end of DATA.
   */
  async data(message: Buffer): Promise<SmtpReply> {
    const go = await this.command('DATA');
    if (go.code !== 354) return go;
    const stuffed = Buffer.from(message.toString('latin1').replace(/(^|\n)\./g, '$1..'), 'latin1');
    this.socket.write(Buffer.concat([stuffed, Buffer.from('\r\n.\r\n')]));
    return this.next();
  }

  /** STARTTLS, then TLS on the same connection, trusting only `ca`. */
  async startTls(ca: string, host: string): Promise<SmtpReply> {
    const reply = await this.command('STARTTLS');
    if (reply.code !== 220) return reply;
    const plain = this.socket;
    plain.removeAllListeners('data');
    const secure = connectTls({ socket: plain, ca, host });
    await new Promise<void>((resolve, reject) => {
      secure.once('secureConnect', resolve).once('error', reject);
    });
    this.socket = secure;
    this.listen(secure);
    return reply;
  }

  async quit(): Promise<void> {
    if (!this.socket.destroyed) await this.command('QUIT').catch(() => undefined);
    this.socket.destroy();
  }

  private listen(socket: Socket): void {
    socket.on('data', (chunk: Buffer) => {
      this.buffered += chunk.toString('latin1');
      this.parse();
    });
    socket.once('error', (error) => this.fail(error));
    socket.once('close', () => this.fail(new Error('the server closed the connection')));
  }

  private parse(): void {
    for (;;) {
      const lines = this.buffered.split('\r\n');
      // The last element is an incomplete line (or '' after a final CRLF).
      const complete = lines.slice(0, -1);
      const last = complete.findIndex((line) => /^\d{3}(?: |$)/.test(line));
      if (last === -1) return;
      const replyLines = complete.slice(0, last + 1);
      this.buffered = lines.slice(last + 1).join('\r\n');
      const text = replyLines[last] ?? '';
      const reply = { code: Number(text.slice(0, 3)), lines: replyLines.map((line) => line.slice(4)), text };
      const waiting = this.waiting;
      this.waiting = undefined;
      if (waiting) waiting.resolve(reply);
      else this.replies.push(reply);
    }
  }

  private fail(error: Error): void {
    this.failure ??= error;
    const waiting = this.waiting;
    this.waiting = undefined;
    waiting?.reject(error);
  }

  private next(): Promise<SmtpReply> {
    const queued = this.replies.shift();
    if (queued) return Promise.resolve(queued);
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      this.waiting = { resolve, reject };
    });
  }
}
