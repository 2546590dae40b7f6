import { type Attachment, type HeaderValue, type SimpleParserOptions, simpleParser } from 'mailparser';
import { TRACE_HEADERS } from '../outcomes.ts';
import { truncate } from '../text.ts';
import type { FeedbackEvent, FeedbackKind } from './feedback-event.ts';

const MAX_DIAGNOSTIC = 500;

export interface DeliveryReportContext {
  /** The provider that sent the original (graph or smtp), as the caller determined it. */
  readonly provider: string;
  /** ISO 8601 time the report arrived, used when the report carries no Arrival-Date/Date. */
  readonly receivedAt: string;
}

export type BounceType = NonNullable<FeedbackEvent['bounceType']>;

/**
 * Whether a failed delivery with this enhanced status code (RFC 3463) is a hard bounce, the one kind
 * the relay suppresses the address for. Only permanent failures about the recipient's address itself
 * are hard:
 * - 5.1.x, addressing: bad mailbox 5.1.1, bad domain 5.1.2, bad syntax 5.1.3, moved 5.1.6, Exchange's
 *   RESOLVER.ADR.RecipientNotFound 5.1.10 and its 5.1.351 "unknown recipient";
 * - 5.2.1, mailbox disabled.
 * Everything else is soft. 4.x.x may still succeed. 5.2.2 mailbox full, 5.3.4 message too large and
 * 5.7.x policy (5.7.1, Exchange's 5.7.708 for a tenant's sending reputation) are about this message or
 * its sender: suppressing the address for them would silently stop mail to someone who can receive it.
 * For the same reason three 5.1.x are soft: 5.1.7 and 5.1.8 are the sender's address, and 5.1.0 ("other
 * address status") is what Exchange Online reports an SPF failure of the sender's domain with.
 * No status at all is soft: nothing says the address is bad.
 */
export function bounceTypeFor(status: string | undefined): BounceType {
  const code = status === undefined ? undefined : enhancedStatus(status);
  if (code === undefined) return 'soft';
  const [statusClass, subject, detail] = code.split('.');
  if (statusClass !== '5') return 'soft';
  if (subject === '1') return SENDER_OR_UNSPECIFIED_ADDRESS.has(detail ?? '') ? 'soft' : 'hard';
  return subject === '2' && detail === '1' ? 'hard' : 'soft';
}

/** X.1.0 other address status, X.1.7 bad sender mailbox syntax, X.1.8 bad sender system address. */
const SENDER_OR_UNSPECIFIED_ADDRESS: ReadonlySet<string> = new Set(['0', '7', '8']);

/**
 * RFC 3464 Action values. relayed (handed to a system that sends no reports) and expanded (delivered to
 * an alias or list) are as far as anyone will report: like an SES Delivery, the next server took it.
 * A Map, so an Action such as `constructor` finds nothing.
 */
const KIND_BY_ACTION: ReadonlyMap<string, FeedbackKind> = new Map([
  ['failed', 'bounced'],
  ['delayed', 'delayed'],
  ['delivered', 'delivered'],
  ['relayed', 'delivered'],
  ['expanded', 'delivered'],
]);

/** The machine-readable part: RFC 3464, and RFC 6533 for internationalised addresses. */
const STATUS_PART_TYPES: ReadonlySet<string> = new Set([
  'message/delivery-status',
  'message/global-delivery-status',
]);
/** The returned original: the whole message, or its header only. */
const ORIGINAL_PART_TYPES: ReadonlySet<string> = new Set([
  'message/rfc822',
  'text/rfc822-headers',
  'message/global',
  'message/global-headers',
]);
/** Final-Recipient address types that carry an email address (utf-8: RFC 6533). */
const MAIL_ADDRESS_TYPES: ReadonlySet<string> = new Set(['rfc822', 'utf-8']);

/**
 * Reads one message from a sending mailbox. A delivery status notification (a multipart/report with a
 * message/delivery-status part, as Exchange Online, Postfix, sendmail and others write them) becomes
 * feedback events; anything else (a reply, an auto-reply, a read receipt) is undefined.
 *
 * Recipients with the same kind, bounce type, status, diagnostic and time share one event, as SES
 * feedback does; recipients without a usable address or Action are left out, so a report can yield [].
 *
 * Never throws and never logs: the message is untrusted input that may hold personal data, and a reader
 * that failed on one message would stop at it on every run.
 */
export async function parseDeliveryReport(
  mime: Buffer | string,
  context: DeliveryReportContext,
): Promise<FeedbackEvent[] | undefined> {
  try {
    return await parse(mime, context);
  } catch {
    return undefined;
  }
}

const PARSER_OPTIONS: SimpleParserOptions & { readonly ignoreEmbedded: boolean } = {
  // message/delivery-status as a part of its own, not text mixed into the body.
  keepDeliveryStatus: true,
  // The returned original as one part even when marked inline (mailsplit would otherwise open it up,
  // and its header, where the trace headers are, would be lost).
  ignoreEmbedded: true,
  // Only the report's parts are read: no text or HTML conversions.
  skipHtmlToText: true,
  skipTextToHtml: true,
  skipImageLinks: true,
  skipTextLinks: true,
};

async function parse(
  mime: Buffer | string,
  context: DeliveryReportContext,
): Promise<FeedbackEvent[] | undefined> {
  const mail = await simpleParser(mime, PARSER_OPTIONS);
  if (mimeType(mail.headers.get('content-type')) !== 'multipart/report') return undefined;
  // Parts of the report itself (IMAP part ids without a dot), not of a message nested in it.
  const parts = mail.attachments.filter((part) => part.partId !== undefined && !part.partId.includes('.'));
  const statusPart = parts.find((part) => STATUS_PART_TYPES.has(part.contentType.toLowerCase()));
  if (!statusPart) return undefined;

  const groups = fieldGroups(text(statusPart));
  const isRecipient = (fields: Fields) => fields.has('final-recipient') || fields.has('original-recipient');
  // Normally the first group. A report with no blank line after them has its per-message fields in the
  // first recipient's group, which is why Arrival-Date is also looked for there.
  const perMessage = groups.find((fields) => !isRecipient(fields)) ?? new Map<string, string>();
  const originalPart = parts.find((part) => ORIGINAL_PART_TYPES.has(part.contentType.toLowerCase()));
  const original = originalPart
    ? (fieldGroups(text(originalPart))[0] ?? new Map<string, string>())
    : undefined;
  const reportDate = parseDate(headerLine(mail.headerLines, 'date'));
  const common = fromOriginal(original);

  const events = new Map<string, FeedbackEvent & { recipients: string[] }>();
  for (const fields of groups.filter(isRecipient)) {
    // The address the relay sent to: Original-Recipient when present (Postfix puts the alias it
    // rewrote to in Final-Recipient, an address the relay never used), else Final-Recipient.
    const recipient = addressOf(fields.get('original-recipient')) ?? addressOf(fields.get('final-recipient'));
    const kind = KIND_BY_ACTION.get(
      /^\s*([a-z-]*)/i.exec(fields.get('action') ?? '')?.[1]?.toLowerCase() ?? '',
    );
    if (recipient === undefined || kind === undefined) continue;
    const diagnosticCode = fields.get('diagnostic-code');
    const status = enhancedStatus(fields.get('status') ?? '') ?? enhancedStatus(diagnosticCode ?? '');
    const diagnostic = diagnosticCode === undefined ? undefined : diagnosticText(diagnosticCode);
    const bounceType = kind === 'bounced' ? bounceTypeFor(status) : undefined;
    const at =
      parseDate(fields.get('last-attempt-date')) ??
      parseDate(perMessage.get('arrival-date') ?? fields.get('arrival-date')) ??
      reportDate ??
      context.receivedAt;
    const key = JSON.stringify([kind, bounceType, status, diagnostic, at]);
    const event = events.get(key);
    if (event) {
      if (!event.recipients.includes(recipient)) event.recipients.push(recipient);
      continue;
    }
    events.set(key, {
      kind,
      provider: context.provider,
      recipients: [recipient],
      ...(bounceType && { bounceType }),
      ...(status && { status }),
      ...(diagnostic && { diagnostic }),
      ...common,
      at,
    });
  }
  return [...events.values()];
}

/** The trace headers the relay adds to every message it sends, and the original's Message-ID. */
function fromOriginal(
  headers: Fields | undefined,
): Pick<FeedbackEvent, 'providerMessageId' | 'sourceMessageId' | 'idempotencyKey'> {
  const header = (name: string) => headers?.get(name.toLowerCase()) || undefined;
  const messageId = header('message-id');
  const providerMessageId = messageId && (/<([^<>]+)>/.exec(messageId)?.[1] ?? messageId).trim();
  const sourceMessageId = header(TRACE_HEADERS.messageId);
  const idempotencyKey = header(TRACE_HEADERS.idempotencyKey);
  return {
    ...(providerMessageId && { providerMessageId }),
    ...(sourceMessageId && { sourceMessageId }),
    ...(idempotencyKey && { idempotencyKey }),
  };
}

type Fields = ReadonlyMap<string, string>;

/**
 * Header-style fields in groups separated by blank lines, names lower-cased, folded lines unfolded: a
 * delivery-status body is a per-message group then one per recipient; a returned original's header is
 * its first group. Of a repeated field the first counts; lines that are not fields are skipped.
 */
function fieldGroups(content: string): Fields[] {
  const groups: Map<string, string>[] = [];
  let group: Map<string, string> | undefined;
  let folding: string | undefined;
  for (const line of content.split(/\r?\n/)) {
    if (line.trim() === '') {
      group = undefined;
      folding = undefined;
    } else if (/^[ \t]/.test(line)) {
      if (group && folding !== undefined) group.set(folding, `${group.get(folding)} ${line.trim()}`.trim());
    } else {
      const field = /^([!-9;-~]+)[ \t]*:(.*)$/.exec(line);
      folding = undefined;
      if (!field) continue;
      const name = (field[1] as string).toLowerCase();
      if (!group) {
        group = new Map();
        groups.push(group);
      }
      if (group.has(name)) continue;
      group.set(name, (field[2] as string).trim());
      folding = name;
    }
  }
  return groups;
}

/**
 * The first enhanced status code (class.subject.detail) in the text, without leading zeros: `5.1.1`
 * from `5.1.1 (Remote SMTP server has rejected address)` or `smtp; 550 5.1.1 <a@b>: user unknown`, but
 * never from an IP address such as 192.0.2.1.
 */
function enhancedStatus(text: string): string | undefined {
  const match = /(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?!\.?\d)/.exec(text);
  return match ? `${match[1]}.${Number(match[2])}.${Number(match[3])}` : undefined;
}

/** The Diagnostic-Code without its type (`smtp;`, `X-Postfix;`), on one line, at most 500 characters. */
function diagnosticText(diagnosticCode: string): string | undefined {
  const words = diagnosticCode
    .replace(/^\s*[A-Za-z][\w.-]*\s*;/, '')
    .replace(/\s+/g, ' ')
    .trim();
  return truncate(words, MAX_DIAGNOSTIC).trimEnd() || undefined;
}

/**
 * The email address of a Final-Recipient or Original-Recipient field (`rfc822;a@b`, `RFC822; <A@B>`),
 * lower-cased; undefined for other address types (x400, a mailbox path) and for anything unreadable.
 */
function addressOf(field: string | undefined): string | undefined {
  if (field === undefined) return undefined;
  const typed = /^([^;\s]+)\s*;(.*)$/s.exec(field);
  if (typed && !MAIL_ADDRESS_TYPES.has((typed[1] as string).toLowerCase())) return undefined;
  const value = (typed ? (typed[2] as string) : field).trim();
  const candidate = (/<([^<>]*)>/.exec(value)?.[1] ?? value.split(/\s+/)[0] ?? '').trim().toLowerCase();
  return /^[^\s@<>;,]+@[^\s@<>;,]+$/.test(candidate) ? candidate : undefined;
}

const MONTHS = ['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec'];
/** RFC 5322 obsolete zone names, in minutes east of UTC. */
const ZONES: ReadonlyMap<string, number> = new Map([
  ['ut', 0],
  ['utc', 0],
  ['gmt', 0],
  ['z', 0],
  ['est', -300],
  ['edt', -240],
  ['cst', -360],
  ['cdt', -300],
  ['mst', -420],
  ['mdt', -360],
  ['pst', -480],
  ['pdt', -420],
]);

/**
 * An RFC 5322 date (`Tue, 5 Mar 2024 10:15:32 +0000`, `29 Apr 2014 23:34:45 +0000 (GMT)`) as ISO 8601;
 * undefined when it is not one. Stricter than Date.parse, which reads almost any text as some date.
 */
function parseDate(value: string | undefined): string | undefined {
  const match =
    value === undefined
      ? null
      : /^\s*(?:[a-z]{3}\s*,\s*)?(\d{1,2})\s+([a-z]{3})\s+(\d{2,4})\s+(\d{1,2}):(\d{2})(?::(\d{2}))?\s*([+-]\d{4}|[a-z]{1,3})(?![a-z\d])/i.exec(
          value,
        );
  if (!match) return undefined;
  const [, day = '', monthName = '', yearText = '', hour = '', minute = '', second = '0', zone = ''] = match;
  const month = MONTHS.indexOf(monthName.toLowerCase());
  // RFC 5322 obsolete years: two digits are 1950-2049, three are counted from 1900.
  const shortYear = yearText.length === 2 ? (Number(yearText) < 50 ? 2000 : 1900) : 0;
  const year = Number(yearText) + (yearText.length === 3 ? 1900 : shortYear);
  const offset = /^[+-]/.test(zone)
    ? (zone.startsWith('-') ? -1 : 1) * (Number(zone.slice(1, 3)) * 60 + Number(zone.slice(3, 5)))
    : ZONES.get(zone.toLowerCase());
  const [d, h, m, s] = [Number(day), Number(hour), Number(minute), Number(second)];
  if (month < 0 || offset === undefined || year < 1970 || h > 23 || m > 59 || s > 60) return undefined;
  // A leap second (60) counts as the second before it.
  const local = Date.UTC(year, month, d, h, m, Math.min(s, 59));
  // Date.UTC rolls 31 April over into May: such a date is not one.
  if (new Date(local).getUTCDate() !== d) return undefined;
  return new Date(local - offset * 60_000).toISOString();
}

function mimeType(value: HeaderValue | undefined): string | undefined {
  if (typeof value === 'object' && value !== null && 'value' in value && typeof value.value === 'string') {
    return value.value.toLowerCase();
  }
  return typeof value === 'string' ? value.toLowerCase().split(';')[0]?.trim() : undefined;
}

/** The raw value of a header of the report itself, unfolded. */
function headerLine(lines: readonly { key: string; line: string }[], name: string): string | undefined {
  const line = lines.find((candidate) => candidate.key === name)?.line;
  return line?.slice(line.indexOf(':') + 1).replace(/\r?\n[ \t]+/g, ' ');
}

function text(part: Attachment): string {
  return part.content.toString('utf8');
}
