import { isIP } from 'node:net';
import { Readable } from 'node:stream';
import SMTPConnection from 'nodemailer/lib/smtp-connection';
import XOAuth2 from 'nodemailer/lib/xoauth2';
import { identityCovers, needsSmtpUtf8 } from '../../core/address.ts';
import { isRawOutbound, type OutboundMessage } from '../../core/attachments.ts';
import { untilAborted } from '../../core/deadline.ts';
import type { RelayFailure } from '../../core/failures.ts';
import type { MailProvider, RejectedRecipient, SendContext, SendReceipt } from '../../core/mail-provider.ts';
import { recipientsOf } from '../../core/message.ts';
import type { TokenSource } from '../graph/token-source.ts';
import { composeMime, renderRawMime } from '../mime.ts';
import { SMTP_FAILURES } from './failures.ts';
import { type SmtpSettings, smtpConfigPathOf } from './settings.ts';
import { SmtpConnectionPool } from './smtp-connection-pool.ts';
import { parseSmtpReply, smtpFailure } from './smtp-fault.ts';

export interface SmtpCredentials {
  readonly username: string;
  readonly password: string;
}

export interface SmtpProviderOptions {
  /** One connection: its provider name, server, senders, credentials and pool size (`maxConnections`). */
  readonly settings: SmtpSettings;
  /** Username and password for plain/login (read from Secrets Manager once). */
  readonly credentials?: () => Promise<SmtpCredentials>;
  /** Access tokens for XOAUTH2 (the Graph app registration, scope smtp.office365.com / outlook). */
  readonly tokens?: TokenSource;
  /** Extra CA to trust (local peers with self-signed certificates); certificate checks stay on. */
  readonly ca?: string;
  /** Connect and greeting limit; three times this for any later reply. @default 10000 */
  readonly connectionTimeoutMs?: number;
}

/**
 * Sends raw MIME over one SMTP connection: to an Exchange Online inbound connector (port 25, no AUTH,
 * trusted by IP), to Microsoft 365 client submission (587, XOAUTH2) or to any smart host. Each
 * configured connection is its own provider, named `smtp` or `smtp:<connection>`, and every failure
 * names it. Sessions are pooled per warm function and per authenticated user, at most
 * `settings.maxConnections` open at once; certificates are verified. The relay drives each
 * transaction over nodemailer's SMTPConnection so it knows how far a message got: the hand-off is
 * recorded after the server said 354 and before the first byte of data, and a session that ends
 * after the whole message went out but before the server's reply leaves the message maybe sent.
 */
export class SmtpProvider implements MailProvider {
  readonly name: string;
  /** Promises, so concurrent first sends share one pool (and one credential read). */
  private readonly pools = new Map<string, Promise<SmtpConnectionPool>>();

  constructor(private readonly options: SmtpProviderOptions) {
    this.name = options.settings.name;
  }

  canSendAs(address: string): boolean {
    return this.options.settings.senders.some((sender) => identityCovers(sender, address));
  }

  async send(message: OutboundMessage, context: SendContext): Promise<SendReceipt> {
    const { host, port } = this.options.settings;
    const provider = this.name;
    const envelope = {
      from: message.from.address,
      to: recipientsOf(message).map((mailbox) => mailbox.address),
    };
    // An address with a non-ASCII local part goes only to a server that offers SMTPUTF8 (RFC 6531).
    const smtpUtf8Address = [envelope.from, ...envelope.to].find(needsSmtpUtf8);
    const raw = isRawOutbound(message)
      ? await renderRawMime(message, { messageId: context.internetMessageId, recipients: 'envelope' })
      : await composeMime(message, { messageId: context.internetMessageId });
    const limit = this.options.settings.maxMessageBytes;
    if (limit !== undefined && raw.length > limit) {
      throw SMTP_FAILURES.classify({
        provider,
        code: 'MessageTooLarge',
        message: `the message is ${raw.length} bytes MIME-encoded; ${host} takes at most ${limit} (${smtpConfigPathOf(provider)}.maxMessageBytes)`,
        fallbackClass: 'permanent',
      });
    }
    // Taken here so a refused token is classified as Entra ID's answer (AADSTS…), not as an SMTP error;
    // the sessions then get the same cached token.
    if (this.options.settings.auth === 'xoauth2') {
      await untilAborted(this.tokens().getToken(), context.signal, () =>
        outOfTime(provider, host, port, false),
      );
    }
    const pool = await this.poolFor(message.from.address);
    for (let session = 1; ; session += 1) {
      let acquired: { connection: SMTPConnection; reused: boolean };
      try {
        acquired = await pool.acquire(context.signal);
      } catch (error) {
        if (context.signal.aborted) throw outOfTime(provider, host, port, false);
        throw smtpFailure(error, { host, port, provider });
      }
      if (smtpUtf8Address !== undefined && !offersSmtpUtf8(acquired.connection)) {
        // Refused before MAIL FROM: nothing was handed off, and the session serves the next message.
        pool.release(acquired.connection);
        throw SMTP_FAILURES.classify({
          provider,
          code: 'AddressNotSupported',
          message: `${smtpUtf8Address === envelope.from ? 'from' : 'recipient'} ${smtpUtf8Address}: ${host}:${port} does not offer SMTPUTF8, which a non-ASCII local part needs`,
        });
      }
      const transaction = await runTransaction(acquired.connection, envelope, raw, context);
      if (transaction.ok) {
        pool.release(acquired.connection);
        return receipt(provider, transaction.info, context.internetMessageId);
      }
      pool.discard(acquired.connection);
      const { error, stage } = transaction;
      if (stage === 'refused-hand-off') throw error;
      if (context.signal.aborted) throw outOfTime(provider, host, port, stage === 'data-sent');
      // A kept session the server closed while idle fails before anything was handed off: once more
      // on a new one, rather than counting a failed try.
      if (acquired.reused && session === 1 && stage === 'envelope' && !hasReply(error)) continue;
      if (stage === 'data-sent' && !hasReply(error)) throw answerLost(provider, error, host, port);
      throw smtpFailure(firstRecipientError(error), { host, port, provider });
    }
  }

  /** Closes pooled connections (a warm function keeps them; tests close them). */
  close(): void {
    for (const pool of this.pools.values())
      void pool.then(
        (open) => open.close(),
        () => undefined,
      );
    this.pools.clear();
  }

  private poolFor(from: string): Promise<SmtpConnectionPool> {
    // XOAUTH2 authenticates as the sending mailbox, so each mailbox gets its own sessions.
    const user = this.options.settings.auth === 'xoauth2' ? from.toLowerCase() : '';
    let pool = this.pools.get(user);
    if (!pool) {
      pool = this.createPool(from);
      this.pools.set(user, pool);
      // A pool that could not be set up (credentials unreadable) is tried again next time.
      pool.catch(() => this.pools.delete(user));
    }
    return pool;
  }

  private async createPool(from: string): Promise<SmtpConnectionPool> {
    const { settings } = this.options;
    // Read once per pool: an unreadable credential is the credential's failure, not an SMTP one.
    const credentials =
      settings.auth === 'plain' || settings.auth === 'login' ? await this.credentials() : undefined;
    const timeout = this.options.connectionTimeoutMs ?? 10_000;
    const open = async (signal: AbortSignal): Promise<SMTPConnection> => {
      const connection = new SMTPConnection({
        host: settings.host,
        port: settings.port,
        secure: settings.tls === 'implicit',
        requireTLS: settings.tls === 'starttls' && settings.requireTls,
        ignoreTLS: settings.tls === 'none',
        tls: {
          rejectUnauthorized: true,
          // SNI takes names only; for an IP address the certificate is checked against its IP entries.
          ...(isIP(settings.host) === 0 && { servername: settings.host }),
          ...(this.options.ca !== undefined && { ca: this.options.ca }),
        },
        connectionTimeout: timeout,
        greetingTimeout: timeout,
        socketTimeout: 3 * timeout,
      });
      // An idle session's socket may fail at any time; the failure is seen by the next send.
      connection.on('error', () => undefined);
      const stop = () => connection.close();
      signal.addEventListener('abort', stop, { once: true });
      try {
        await step(connection, (done) => connection.connect(done));
        if (credentials) {
          const { username, password } = credentials;
          await step(connection, (done) =>
            connection.login(
              { credentials: { user: username, pass: password }, method: settings.auth.toUpperCase() },
              done,
            ),
          );
        } else if (settings.auth === 'xoauth2') {
          const accessToken = await this.tokens().getToken();
          await step(connection, (done) =>
            connection.login(
              { type: 'OAuth2', user: from, oauth2: new XOAuth2({ user: from, accessToken }) } as never,
              done,
            ),
          );
        }
        return connection;
      } catch (error) {
        connection.close();
        throw error;
      } finally {
        signal.removeEventListener('abort', stop);
      }
    };
    return new SmtpConnectionPool(open, settings.maxConnections);
  }

  private async credentials(): Promise<SmtpCredentials> {
    const { settings, credentials } = this.options;
    if (!credentials) throw new Error(`${settings.auth} needs credentials`);
    return credentials();
  }

  private tokens(): TokenSource {
    if (!this.options.tokens) throw new Error('xoauth2 needs a token source');
    return this.options.tokens;
  }
}

/** How far one transaction got, when it did not end with the server's 250. */
type TransactionResult =
  | { readonly ok: true; readonly info: SMTPConnection.SentMessageInfo }
  | {
      readonly ok: false;
      readonly error: unknown;
      /**
       * envelope: MAIL FROM / RCPT TO / DATA (nothing handed off); refused-hand-off: the relay would not
       * hand it off; data: part of the message went out (no terminator, so the server discards it);
       * data-sent: the whole message went out.
       */
      readonly stage: 'envelope' | 'refused-hand-off' | 'data' | 'data-sent';
    };

/**
 * One MAIL FROM … DATA transaction. The message is a stream nodemailer reads only after the server
 * accepted DATA (354): its first read records the hand-off, and only then are the bytes released.
 */
function runTransaction(
  connection: SMTPConnection,
  envelope: { from: string; to: string[] },
  raw: Buffer,
  context: SendContext,
): Promise<TransactionResult> {
  return new Promise((resolve) => {
    let stage: 'envelope' | 'data' | 'data-sent' = 'envelope';
    let refusedHandOff: unknown;
    let settled = false;
    const settle = (result: TransactionResult) => {
      if (settled) return;
      settled = true;
      context.signal.removeEventListener('abort', onAbort);
      connection.off('end', onEnd);
      resolve(result);
    };
    // close() drops a pending send without calling back: end it here.
    const onAbort = () => {
      settle({ ok: false, error: context.signal.reason, stage });
      connection.close();
    };
    const onEnd = () => settle({ ok: false, error: new Error('Connection closed unexpectedly'), stage });
    const message = new Readable({
      read() {
        if (stage !== 'envelope') return;
        stage = 'data';
        context.handOff().then(
          () => {
            this.push(raw);
            this.push(null);
          },
          (error: unknown) => {
            refusedHandOff = error;
            // A plain error: nodemailer rewrites the code of the error a stream fails with.
            this.destroy(new Error('hand-off refused'));
          },
        );
      },
    });
    message.once('end', () => {
      stage = 'data-sent';
    });
    context.signal.addEventListener('abort', onAbort, { once: true });
    connection.once('end', onEnd);
    if (context.signal.aborted) {
      onAbort();
      return;
    }
    connection.send(envelope, message, (error, info) => {
      if (refusedHandOff !== undefined)
        settle({ ok: false, error: refusedHandOff, stage: 'refused-hand-off' });
      else if (error) settle({ ok: false, error, stage });
      else settle({ ok: true, info });
    });
  });
}

/**
 * Whether the server offered SMTPUTF8 in its EHLO reply. nodemailer then adds the SMTPUTF8 parameter to
 * MAIL FROM itself for an envelope address that is not ASCII (and sends the address bare when the
 * server did not offer it); it keeps the offered extensions in `_supportedExtensions`, with no public
 * accessor (nodemailer/dist/esm/smtp-connection/index.js, _setEnvelope and _parseEhloExtensions).
 */
function offersSmtpUtf8(connection: SMTPConnection): boolean {
  const extensions = (connection as unknown as { _supportedExtensions?: unknown })._supportedExtensions;
  return Array.isArray(extensions) && extensions.includes('SMTPUTF8');
}

/** Runs one callback-style step of a session, failing also when the session errors or ends. */
function step(
  connection: SMTPConnection,
  run: (done: (error?: Error | null) => void) => void,
): Promise<void> {
  return new Promise((resolve, reject) => {
    const cleanup = () => {
      connection.off('error', onError);
      connection.off('end', onEnd);
    };
    const onError = (error: Error) => {
      cleanup();
      reject(error);
    };
    const onEnd = () => {
      cleanup();
      reject(Object.assign(new Error('Connection closed unexpectedly'), { code: 'ECONNECTION' }));
    };
    connection.once('error', onError);
    connection.once('end', onEnd);
    run((error) => {
      cleanup();
      if (error) reject(error);
      else resolve();
    });
  });
}

function hasReply(error: unknown): boolean {
  return typeof (error as { responseCode?: unknown } | undefined)?.responseCode === 'number';
}

/** The whole message went out and the server never answered: it may have queued the message. */
function answerLost(provider: string, error: unknown, host: string, port: number): RelayFailure {
  const details = (error ?? {}) as { code?: string; message?: string };
  return SMTP_FAILURES.classify(
    {
      provider,
      code: details.code === 'ETIMEDOUT' ? 'ETIMEDOUT' : 'NoReplyAfterData',
      message: `${host}:${port} took the whole message but gave no reply to its end (${details.message ?? String(error)})`,
      fallbackClass: 'transient',
      maybeSent: true,
    },
    error,
  );
}

/** The invocation ran out of time: before the data went out nothing was sent, after it maybe. */
function outOfTime(provider: string, host: string, port: number, dataSent: boolean): RelayFailure {
  return SMTP_FAILURES.classify({
    provider,
    code: 'DeadlineExceeded',
    message: dataSent
      ? `${host}:${port} had the whole message but had not answered when the invocation ran out of time`
      : `the invocation ran out of time before the message went to ${host}:${port}; nothing was sent`,
    fallbackClass: 'transient',
    ...(dataSent && { maybeSent: true }),
  });
}

function receipt(
  provider: string,
  info: SMTPConnection.SentMessageInfo,
  internetMessageId: string,
): SendReceipt {
  // Some recipients refused, the rest accepted: the message went out, and the refusals are reported.
  const rejectedRecipients = rejectedOf(info);
  return {
    provider,
    providerMessageId: internetMessageId,
    ...(rejectedRecipients.length > 0 && { rejectedRecipients }),
  };
}

interface RecipientError {
  readonly recipient?: string;
  readonly response?: string;
}

function rejectedOf(info: SMTPConnection.SentMessageInfo): RejectedRecipient[] {
  const errors = ((info as { rejectedErrors?: RecipientError[] }).rejectedErrors ?? []) as RecipientError[];
  return (info.rejected ?? []).map((entry) => {
    const recipient = String(entry);
    const response = errors.find((error) => error.recipient === recipient)?.response;
    const reply = parseSmtpReply(response);
    return {
      address: recipient,
      reason: reply ? `${reply.code}${reply.enhanced ? ` ${reply.enhanced}` : ''} ${reply.text}` : 'refused',
    };
  });
}

/** When every recipient was refused, nodemailer's error lists them; the first refusal explains it. */
function firstRecipientError(error: unknown): unknown {
  const rejectedErrors = (error as { rejectedErrors?: (RecipientError & Error)[] } | undefined)
    ?.rejectedErrors;
  return rejectedErrors?.[0] ?? error;
}
