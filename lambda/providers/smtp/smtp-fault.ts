import { type FailureClass, NETWORK_ERROR_CODES, type RelayFailure } from '../../core/failures.ts';
import { truncate } from '../../core/text.ts';
import { SMTP_FAILURES } from './failures.ts';
import { SMTP_PROVIDER_NAME } from './settings.ts';

/** The provider name of the single `smtp` section; a named connection's is `smtp:<name>`. */
export const SMTP_PROVIDER = SMTP_PROVIDER_NAME;

export interface SmtpReply {
  /** Basic reply code, e.g. 550. */
  readonly code: number;
  /** Enhanced status code (RFC 3463), e.g. "5.7.708", when the server sent one. */
  readonly enhanced?: string;
  /** The reply text without codes, lines joined. */
  readonly text: string;
}

const REPLY_LINE = /^(\d{3})[ -](?:([245]\.\d{1,3}\.\d{1,3})\s+)?(.*)$/;

/**
 * Parses a server reply such as `550 5.7.708 Service unavailable. Access denied…` or a multi-line
 * `550-5.7.1 …\r\n550 5.7.1 …`. nodemailer exposes the basic code as `responseCode` but the enhanced
 * status only inside the reply text, and the enhanced code is what tells 5.7.708 from 5.7.1.
 */
export function parseSmtpReply(response: string | undefined): SmtpReply | undefined {
  if (!response) return undefined;
  const lines = response
    .split(/\r?\n/)
    .map((line) => REPLY_LINE.exec(line.trim()))
    .filter((match) => match !== null);
  const [first] = lines;
  if (!first) return undefined;
  const enhanced = lines.map((match) => match[2]).find((value) => value !== undefined);
  return {
    code: Number(first[1]),
    ...(enhanced !== undefined && { enhanced }),
    text: lines.map((match) => match[3]?.trim() ?? '').join(' '),
  };
}

/** What nodemailer attaches to a failed send. */
interface NodemailerError {
  readonly code?: string;
  readonly command?: string;
  readonly response?: string;
  readonly responseCode?: number;
  readonly message?: string;
}

const SEND_AS = /send as|send-as|sendas/i;

/**
 * One SMTP failure → one classified RelayFailure, through the shared failure table. Codes are the
 * enhanced status (5.7.708, 4.7.500 …) so the table can hold the Exchange Online specifics; a few
 * situations that carry no enhanced code get a name (AuthenticationFailed, TlsFailed, Port25Blocked).
 * The failure names the connection's provider (`smtp:billing-ovh`); every connection is classified
 * by the same `smtp` rules.
 */
export function smtpFailure(
  error: unknown,
  context: { port: number; host: string; provider?: string },
): RelayFailure {
  const details = (error ?? {}) as NodemailerError;
  const reply = parseSmtpReply(details.response);
  const where = `${context.host}:${context.port}`;
  const fault = (code: string, message: string, fallbackClass: FailureClass, status?: number) =>
    SMTP_FAILURES.classify(
      {
        provider: context.provider ?? SMTP_PROVIDER,
        code,
        message: truncate(message, 500),
        fallbackClass,
        ...(status !== undefined && { status }),
      },
      error,
    );

  if (reply) {
    const line = `${reply.code}${reply.enhanced ? ` ${reply.enhanced}` : ''} ${reply.text}`.trim();
    const message = `${where} answered ${details.command ? `${details.command}: ` : ''}${line}`;
    if (details.code === 'EAUTH') return fault('AuthenticationFailed', message, 'provider', reply.code);
    // STARTTLS refused or not offered while TLS is required: never fall back to clear text.
    if (details.code === 'ETLS') return fault('TlsFailed', message, 'provider', reply.code);
    if (reply.enhanced === '5.7.1' && SEND_AS.test(reply.text)) {
      return fault('SendAsDenied', message, 'permanent', reply.code);
    }
    const code = reply.enhanced ?? `SMTP${reply.code}`;
    // SMTP's own semantics: 4xx try again later, 5xx do not (unless the table knows better).
    return fault(code, message, reply.code >= 500 ? 'permanent' : 'transient', reply.code);
  }
  const message = `${where}: ${details.message ?? String(error)}`;
  if (details.code === 'EAUTH') return fault('AuthenticationFailed', message, 'provider');
  if (details.code === 'ETLS' || /certificate|self[- ]signed|TLS|SSL/i.test(details.message ?? '')) {
    return fault('TlsFailed', message, 'provider');
  }
  const timedOut = details.code === 'ETIMEDOUT' || /timeout|timed out/i.test(details.message ?? '');
  if (timedOut && context.port === 25) return fault('Port25Blocked', message, 'provider');
  const network = details.code && NETWORK_ERROR_CODES.has(details.code) ? details.code : undefined;
  return fault(network ?? (timedOut ? 'ETIMEDOUT' : (details.code ?? 'SmtpError')), message, 'transient');
}
