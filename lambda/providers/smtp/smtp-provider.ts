import { isIP } from 'node:net';
import nodemailer, { type Transporter } from 'nodemailer';
import type SMTPPool from 'nodemailer/lib/smtp-pool';
import { identityCovers } from '../../core/address.ts';
import type { OutboundMessage } from '../../core/attachments.ts';
import { classifyFault, RelayFailure } from '../../core/failures.ts';
import { recipientsOf } from '../../core/message.ts';
import type { SmtpSettings } from '../../core/settings.ts';
import type { TokenSource } from '../graph/token-source.ts';
import { composeMime } from '../mime.ts';
import type { MailProvider, RejectedRecipient, SendReceipt } from '../provider.ts';
import { parseSmtpReply, SMTP_PROVIDER, smtpFailure } from './smtp-fault.ts';

/** How long nodemailer may reuse a token before asking the token source again. */
const TOKEN_REUSE_MS = 5 * 60 * 1000;

export interface SmtpCredentials {
  readonly username: string;
  readonly password: string;
}

export interface SmtpProviderOptions {
  readonly settings: SmtpSettings;
  /** Username and password for plain/login (read from Secrets Manager once). */
  readonly credentials?: () => Promise<SmtpCredentials>;
  /** Access tokens for XOAUTH2 (the Graph app registration, scope smtp.office365.com / outlook). */
  readonly tokens?: TokenSource;
  /** Extra CA to trust (local peers with self-signed certificates); certificate checks stay on. */
  readonly ca?: string;
  /** @default 10000 */
  readonly connectionTimeoutMs?: number;
}

/**
 * Sends raw MIME over SMTP with nodemailer: to an Exchange Online inbound connector (port 25, no
 * AUTH, trusted by IP), to Microsoft 365 client submission (587, XOAUTH2) or to any smart host.
 * Connections are pooled per warm function and per authenticated user; certificates are verified.
 */
export class SmtpProvider implements MailProvider {
  readonly name = SMTP_PROVIDER;
  /** Promises, so concurrent first sends share one pool instead of racing to create several. */
  private readonly pools = new Map<string, Promise<Transporter<SMTPPool.SentMessageInfo>>>();

  constructor(private readonly options: SmtpProviderOptions) {}

  canSendAs(address: string): boolean {
    return this.options.settings.senders.some((sender) => identityCovers(sender, address));
  }

  async send(message: OutboundMessage): Promise<SendReceipt> {
    const { host, port } = this.options.settings;
    const envelope = {
      from: message.from.address,
      to: recipientsOf(message).map((mailbox) => mailbox.address),
    };
    const raw = await composeMime(message);
    const limit = this.options.settings.maxMessageBytes;
    if (limit !== undefined && raw.length > limit) {
      throw classifyFault({
        provider: SMTP_PROVIDER,
        code: 'MessageTooLarge',
        message: `the message is ${raw.length} bytes MIME-encoded; ${host} takes at most ${limit} (smtp.maxMessageBytes)`,
        fallbackClass: 'permanent',
      });
    }
    // Taken here so a refused token is classified as Entra ID's answer (AADSTS…), not as an SMTP error;
    // the pool's connections then get the same cached token.
    if (this.options.settings.auth === 'xoauth2') await this.tokens().getToken();
    let info: SMTPPool.SentMessageInfo;
    try {
      const transport = await this.transportFor(message.from.address);
      info = await transport.sendMail({ envelope, raw });
    } catch (error) {
      // Already classified: the credential could not be read or parsed.
      if (error instanceof RelayFailure) throw error;
      throw smtpFailure(firstRecipientError(error), { host, port });
    }
    // Some recipients refused, the rest accepted: the message went out, and the refusals are reported.
    const rejectedRecipients = rejectedOf(info);
    return {
      provider: this.name,
      providerMessageId: info.messageId,
      ...(rejectedRecipients.length > 0 && { rejectedRecipients }),
    };
  }

  /** Closes pooled connections (a warm function keeps them; tests close them). */
  close(): void {
    for (const pool of this.pools.values())
      void pool.then(
        (transport) => transport.close(),
        () => undefined,
      );
    this.pools.clear();
  }

  private transportFor(from: string): Promise<Transporter<SMTPPool.SentMessageInfo>> {
    // XOAUTH2 authenticates as the sending mailbox, so each mailbox gets its own connections.
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

  private async createPool(from: string): Promise<Transporter<SMTPPool.SentMessageInfo>> {
    const { settings } = this.options;
    const auth = await this.auth(from);
    const timeout = this.options.connectionTimeoutMs ?? 10_000;
    return nodemailer.createTransport({
      pool: true,
      maxConnections: 2,
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
      ...(auth && { auth }),
    });
  }

  private tokens(): TokenSource {
    if (!this.options.tokens) throw new Error('xoauth2 needs a token source');
    return this.options.tokens;
  }

  private async auth(from: string): Promise<SMTPPool.Options['auth'] | undefined> {
    const { settings, credentials } = this.options;
    switch (settings.auth) {
      case 'none':
        return undefined;
      case 'xoauth2': {
        const source = this.tokens();
        return {
          type: 'OAuth2',
          user: from,
          // Each new connection asks again (the token source caches until near expiry), so a
          // long-lived pool never authenticates with an expired token.
          provisionCallback: (_user, _renew, callback) => {
            source.getToken().then(
              (token) => callback(null, token, Date.now() + TOKEN_REUSE_MS),
              (error: unknown) => callback(error instanceof Error ? error : new Error(String(error))),
            );
          },
        };
      }
      default: {
        if (!credentials) throw new Error(`${settings.auth} needs credentials`);
        const { username, password } = await credentials();
        return { type: 'login', user: username, pass: password, method: settings.auth.toUpperCase() };
      }
    }
  }
}

interface RecipientError {
  readonly recipient?: string;
  readonly response?: string;
}

function rejectedOf(info: SMTPPool.SentMessageInfo): RejectedRecipient[] {
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
