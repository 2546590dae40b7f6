import { connect as connectTcp, isIP, type Socket } from 'node:net';
import { connect as connectTls, rootCertificates, type TLSSocket } from 'node:tls';
import { parseSmtpReply, type SmtpReply } from '../../lambda/providers/smtp/smtp-fault.ts';

/** A whole server reply: the parsed code and text, and its lines as sent. */
export interface ProbeReply extends SmtpReply {
  readonly lines: readonly string[];
}

/** What the server's certificate said when TLS began. */
export interface TlsOutcome {
  /** The certificate chains to a trusted CA and names the host (what the relay itself requires). */
  readonly trusted: boolean;
  /** Node's reason when it is not: ERR_TLS_CERT_ALTNAME_INVALID, CERT_HAS_EXPIRED, … */
  readonly error?: string;
  readonly subject?: string;
  readonly issuer?: string;
  readonly validTo?: Date;
  readonly protocol?: string;
}

export interface ProbeOptions {
  readonly host: string;
  readonly port: number;
  /** TLS from the first byte (port 465). */
  readonly implicitTls: boolean;
  readonly timeoutMs: number;
  /** An extra CA to trust besides the public ones (local mode's self-signed captures). */
  readonly ca?: string;
}

/**
 * A bare SMTP client for `mail-relay doctor`: it sends one command at a time and hands back the
 * reply, so a check can stop after RCPT TO and never reach DATA (nodemailer's connection sends a
 * whole transaction at once). Certificate problems are reported, not thrown: doctor explains them.
 */
export class SmtpProbe {
  private buffer = '';
  private pendingLines: string[] = [];
  private waiter: ((reply: ProbeReply | Error) => void) | undefined;
  private queued: (ProbeReply | Error)[] = [];

  private constructor(
    private socket: Socket,
    private readonly options: ProbeOptions,
  ) {
    this.listen(socket);
  }

  /** Connects (TLS at once when implicit) and reads the greeting. */
  static async open(
    options: ProbeOptions,
  ): Promise<{ probe: SmtpProbe; greeting: ProbeReply; tls?: TlsOutcome }> {
    if (options.implicitTls) {
      const socket = await secure(options, (tlsOptions) =>
        connectTls({ ...tlsOptions, host: options.host, port: options.port }),
      );
      const probe = new SmtpProbe(socket.socket, options);
      return { probe, greeting: await probe.read(), tls: socket.outcome };
    }
    const socket = await new Promise<Socket>((resolve, reject) => {
      const plain = connectTcp({ host: options.host, port: options.port });
      plain.setTimeout(options.timeoutMs, () => plain.destroy(timeoutError('connect', options)));
      plain.once('connect', () => {
        plain.setTimeout(0);
        resolve(plain);
      });
      plain.once('error', reject);
    });
    const probe = new SmtpProbe(socket, options);
    return { probe, greeting: await probe.read() };
  }

  /** Sends one command line and waits for its whole reply. */
  async command(line: string): Promise<ProbeReply> {
    this.socket.write(`${line}\r\n`);
    return this.read();
  }

  /** STARTTLS once the server said 220: the same connection, now encrypted. */
  async startTls(): Promise<TlsOutcome> {
    const plain = this.socket;
    plain.removeAllListeners('data');
    const upgraded = await secure(this.options, (tlsOptions) =>
      connectTls({ ...tlsOptions, socket: plain, host: this.options.host }),
    );
    this.socket = upgraded.socket;
    this.listen(upgraded.socket);
    return upgraded.outcome;
  }

  /** QUIT, then closes whatever the server does. */
  async quit(): Promise<void> {
    try {
      if (!this.socket.destroyed) await this.command('QUIT');
    } catch {
      // the server may close first
    } finally {
      this.socket.destroy();
    }
  }

  close(): void {
    this.socket.destroy();
  }

  private listen(socket: Socket): void {
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => this.onData(chunk));
    socket.on('error', (error) => this.deliver(error));
    socket.on('close', () =>
      this.deliver(new Error(`${this.options.host}:${this.options.port} closed the connection`)),
    );
  }

  private onData(chunk: string): void {
    this.buffer += chunk;
    let end = this.buffer.indexOf('\n');
    while (end >= 0) {
      const line = this.buffer.slice(0, end).replace(/\r$/, '');
      this.buffer = this.buffer.slice(end + 1);
      this.pendingLines.push(line);
      // A reply ends at its line with a space (or nothing) after the code: `250 OK`, not `250-SIZE`.
      if (!/^\d{3}-/.test(line)) {
        const lines = this.pendingLines;
        this.pendingLines = [];
        const parsed = parseSmtpReply(lines.join('\r\n'));
        this.deliver(
          parsed ? { ...parsed, lines } : new Error(`not an SMTP reply: ${lines.join(' ').slice(0, 120)}`),
        );
      }
      end = this.buffer.indexOf('\n');
    }
  }

  private deliver(reply: ProbeReply | Error): void {
    const waiter = this.waiter;
    if (waiter) {
      this.waiter = undefined;
      waiter(reply);
    } else if (!(reply instanceof Error) || this.queued.length === 0) {
      this.queued.push(reply);
    }
  }

  private read(): Promise<ProbeReply> {
    const ready = this.queued.shift();
    if (ready !== undefined) return ready instanceof Error ? Promise.reject(ready) : Promise.resolve(ready);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiter = undefined;
        reject(timeoutError('reply', this.options));
      }, this.options.timeoutMs);
      this.waiter = (reply) => {
        clearTimeout(timer);
        if (reply instanceof Error) reject(reply);
        else resolve(reply);
      };
    });
  }
}

/** A timeout, with ETIMEDOUT as Node's own connect timeouts have. */
function timeoutError(step: 'connect' | 'reply' | 'tls', options: ProbeOptions): Error {
  const error = new Error(
    `${options.host}:${options.port}: no ${step === 'connect' ? 'connection' : step === 'tls' ? 'TLS handshake' : 'reply'} within ${options.timeoutMs} ms`,
  );
  return Object.assign(error, { code: 'ETIMEDOUT', step });
}

/**
 * TLS as the relay does it (the host's name checked, public CAs plus the extra one), but the
 * verdict is read rather than enforced, so doctor can say what is wrong with the certificate.
 */
async function secure(
  options: ProbeOptions,
  open: (tlsOptions: { servername?: string; ca: string[]; rejectUnauthorized: false }) => TLSSocket,
): Promise<{ socket: TLSSocket; outcome: TlsOutcome }> {
  const socket = open({
    ...(isIP(options.host) === 0 && { servername: options.host }),
    ca: options.ca === undefined ? [...rootCertificates] : [...rootCertificates, options.ca],
    rejectUnauthorized: false,
  });
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => socket.destroy(timeoutError('tls', options)), options.timeoutMs);
    socket.once('secureConnect', () => {
      clearTimeout(timer);
      resolve();
    });
    socket.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
  });
  const certificate = socket.getPeerCertificate();
  const error = socket.authorizationError;
  return {
    socket,
    outcome: {
      trusted: socket.authorized,
      ...(error !== null &&
        error !== undefined && { error: typeof error === 'string' ? error : error.message }),
      ...(certificate.subject?.CN !== undefined && { subject: String(certificate.subject.CN) }),
      ...(certificate.issuer?.CN !== undefined && { issuer: String(certificate.issuer.CN) }),
      ...(certificate.valid_to !== undefined && { validTo: new Date(certificate.valid_to) }),
      ...(socket.getProtocol() && { protocol: socket.getProtocol() ?? '' }),
    },
  };
}
