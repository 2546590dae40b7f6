import {
  type Attachment,
  type HeaderValue,
  type ParsedMail,
  type SimpleParserOptions,
  simpleParser,
} from 'mailparser';
import { TRACE_HEADERS } from '../outcomes.ts';
import { truncate } from '../text.ts';
import { type BounceType, bounceTypeFor, classifyBounce, enhancedStatus } from './bounce-classification.ts';
import type { FeedbackEvent, FeedbackKind } from './feedback-event.ts';
import { fromMailerDaemon, quotedOriginal, readTextReport, recipientWords } from './report-formats.ts';
import { parseSesEvent } from './ses-events.ts';

export { type BounceType, bounceTypeFor, classifyBounce };

const MAX_DIAGNOSTIC = 500;

export interface DeliveryReportContext {
  /** The provider that sent the original (graph or smtp), as the caller determined it. */
  readonly provider: string;
  /** ISO 8601 time the report arrived, used when the report carries no Arrival-Date/Date. */
  readonly receivedAt: string;
}

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
  // Not RFC 3464: SendGrid's word for a message it gave up on.
  ['expired', 'bounced'],
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

/** One recipient of a report, however the report said it. */
interface RecipientReport {
  readonly recipient: string;
  readonly kind: FeedbackKind;
  readonly status?: string | undefined;
  readonly diagnostic?: string | undefined;
  readonly permanent?: boolean;
  readonly at?: string | undefined;
}

async function parse(
  mime: Buffer | string,
  context: DeliveryReportContext,
  nested = false,
): Promise<FeedbackEvent[] | undefined> {
  const mail = await simpleParser(mime, PARSER_OPTIONS);
  const fromSes = sesNotification(mail);
  if (fromSes) return fromSes;
  const contentType = mimeType(mail.headers.get('content-type'));
  // The message's parts, also those of a multipart inside it (a report wrapped in multipart/mixed);
  // a returned or forwarded message stays one part (ignoreEmbedded).
  const parts = mail.attachments;
  const statusPart = parts.find((part) => STATUS_PART_TYPES.has(part.contentType.toLowerCase()));
  const originalPart = parts.find((part) => ORIGINAL_PART_TYPES.has(part.contentType.toLowerCase()));
  const reportDate = parseDate(headerLine(mail.headerLines, 'date'));

  // RFC 3464: a multipart/report, or the same parts in a multipart/mixed (OpenSMTPD, some gateways).
  const fromStatus =
    statusPart && contentType?.startsWith('multipart/') ? statusRecipients(text(statusPart)) : undefined;
  let recipients: readonly RecipientReport[] | undefined = fromStatus?.length
    ? withReportWords(fromStatus, mail, mime)
    : undefined;
  let originalHeaders = originalPart ? text(originalPart) : undefined;
  if (recipients === undefined) {
    // A report-type other than delivery-status (a complaint, a read receipt) is never a bounce. One
    // without a report-type at all (X3) is read as text unless a part says it is one of those.
    const type = reportType(mail);
    const otherReport =
      type === undefined
        ? parts.some((part) => OTHER_REPORT_PART_TYPES.has(part.contentType.toLowerCase()))
        : type !== 'delivery-status';
    if (contentType === 'multipart/report' && !statusPart && otherReport) return undefined;
    const message = textMessage(mail, mime);
    const textReport = isComplaint(mail) ? undefined : readTextReport(message);
    // RFC 3464 fields written into the text (a delivery-status part labelled text/plain, WorkMail, or a
    // multipart whose parts could not be split).
    const inText = textReport === undefined ? [] : statusRecipients(textReport.text);
    if (textReport === undefined || (inText.length === 0 && textReport.recipients.length === 0)) {
      // A mail gateway that passes another server's report on as its returned message (X5): one level.
      if (!fromStatus && !nested && originalPart && fromMailerDaemon(message.from)) {
        const inner = await parse(originalPart.content, context, true);
        if (inner?.some((event) => event.kind === 'bounced' || event.kind === 'delayed')) return inner;
      }
      // A delivery-status part with no readable recipient is a report with nothing to act on.
      return fromStatus && [];
    }
    const textWords = new Map(textReport.recipients.map((entry) => [entry.recipient, entry.diagnostic]));
    recipients = inText.length
      ? inText.map((entry) => ({ ...entry, diagnostic: entry.diagnostic ?? textWords.get(entry.recipient) }))
      : textReport.recipients.map((entry) => ({
          recipient: entry.recipient,
          // A success notice (Postfix's "delivery via …: 250 2.0.0 Ok") in text form.
          kind: entry.delayed
            ? 'delayed'
            : enhancedStatus(entry.diagnostic ?? '')?.startsWith('2')
              ? 'delivered'
              : 'bounced',
          diagnostic: entry.diagnostic,
          permanent: textReport.permanent,
        }));
    originalHeaders ??= textReport.original?.replace(/^\s+/, '');
  }
  // Without a part of its own, the original's header may be quoted in the text (Exchange Online's
  // "Original message headers:"), or be a text part of its own (X6).
  originalHeaders ??= quotedOriginal(mail.text ?? '') ?? headerTextPart(parts);
  const original = originalHeaders === undefined ? undefined : fieldGroups(originalHeaders)[0];
  const common = fromOriginal(original);

  const events = new Map<string, FeedbackEvent & { recipients: string[] }>();
  for (const entry of recipients) {
    const diagnostic = entry.diagnostic === undefined ? undefined : diagnosticText(entry.diagnostic);
    const classified =
      entry.kind === 'bounced'
        ? classifyBounce({
            status: entry.status,
            diagnostic: entry.diagnostic,
            permanent: entry.permanent,
          })
        : undefined;
    const status =
      classified?.status ??
      (entry.status === undefined ? undefined : enhancedStatus(entry.status)) ??
      (entry.diagnostic === undefined ? undefined : enhancedStatus(entry.diagnostic));
    const at = entry.at ?? reportDate ?? context.receivedAt;
    const key = JSON.stringify([
      entry.kind,
      classified?.bounceType,
      classified?.cause,
      status,
      diagnostic,
      at,
    ]);
    const event = events.get(key);
    if (event) {
      if (!event.recipients.includes(entry.recipient)) event.recipients.push(entry.recipient);
      continue;
    }
    events.set(key, {
      kind: entry.kind,
      provider: context.provider,
      recipients: [entry.recipient],
      ...(classified && { bounceType: classified.bounceType, cause: classified.cause }),
      ...(status && { status }),
      ...(diagnostic && { diagnostic }),
      ...common,
      at,
    });
  }
  return [...events.values()];
}

/** The parts of a report that is not about delivery: a complaint (RFC 5965), a read receipt (RFC 8098). */
const OTHER_REPORT_PART_TYPES: ReadonlySet<string> = new Set([
  'message/feedback-report',
  'message/disposition-notification',
]);

/** The recipients of a message/delivery-status body (RFC 3464). */
function statusRecipients(body: string): RecipientReport[] {
  const groups = fieldGroups(body);
  const isRecipient = (fields: Fields) => fields.has('final-recipient') || fields.has('original-recipient');
  // Normally the first group. A report with no blank line after them has its per-message fields in the
  // first recipient's group, which is why Arrival-Date is also looked for there.
  const perMessage = groups.find((fields) => !isRecipient(fields)) ?? new Map<string, string[]>();
  const recipients: RecipientReport[] = [];
  for (const fields of groups.filter(isRecipient)) {
    const first = (name: string) => fields.get(name)?.[0];
    // The address the relay sent to: Original-Recipient when present (Postfix puts the alias it
    // rewrote to in Final-Recipient, an address the relay never used), else Final-Recipient.
    const recipient = addressOf(first('original-recipient')) ?? addressOf(first('final-recipient'));
    const kind = KIND_BY_ACTION.get(/^\s*([a-z-]*)/i.exec(first('action') ?? '')?.[1]?.toLowerCase() ?? '');
    if (recipient === undefined || kind === undefined) continue;
    // Every Diagnostic-Code line a server wrote is evidence, not only the first.
    const diagnosticCode = fields.get('diagnostic-code')?.join(' ');
    recipients.push({
      recipient,
      kind,
      status: first('status'),
      diagnostic: diagnosticCode,
      at:
        parseDate(first('last-attempt-date')) ??
        parseDate(perMessage.get('arrival-date')?.[0] ?? first('arrival-date')),
    });
  }
  return recipients;
}

/**
 * A recipient without a readable Diagnostic-Code takes the words the report's text has for its address,
 * else the comment of its Status field (`Status: 5.4.4 (Illegal host/domain name found)`).
 */
function withReportWords(
  recipients: readonly RecipientReport[],
  mail: ParsedMail,
  mime: Buffer | string,
): readonly RecipientReport[] {
  if (recipients.every((entry) => readable(entry.diagnostic))) return recipients;
  const words = recipientWords(textMessage(mail, mime));
  return recipients.map((entry) => {
    const diagnostic = readable(entry.diagnostic)
      ? entry.diagnostic
      : (words.get(entry.recipient) ?? entry.diagnostic ?? statusComment(entry.status));
    return diagnostic === undefined ? entry : { ...entry, diagnostic };
  });
}

/**
 * Whether a Diagnostic-Code can be read as it is: present, and without ISO-2022 escape sequences (Domino
 * writes Japanese there undecoded; the report's text part has the same words decoded).
 */
function readable(diagnostic: string | undefined): diagnostic is string {
  return diagnostic !== undefined && !diagnostic.includes('\u001b');
}

/** The comment after a Status code, when it has one. */
function statusComment(status: string | undefined): string | undefined {
  return status === undefined
    ? undefined
    : /^\s*\d\.\d{1,3}\.\d{1,3}\s*\((.+)\)\s*$/.exec(status)?.[1]?.trim();
}

/**
 * An Amazon SES notification that an SNS topic sent by email: the notification's JSON (SNS protocol
 * `email`) or SNS's JSON envelope around it (`email-json`). Read as the same event through EventBridge
 * would be; undefined when the message is not one.
 */
function sesNotification(mail: ParsedMail): FeedbackEvent[] | undefined {
  if (!/@sns\.amazonaws\.com>?\s*$/i.test(headerLine(mail.headerLines, 'from') ?? '')) return undefined;
  // Long lines arrive folded, also inside JSON strings: a line break and the space after it are not data.
  const body = (mail.text ?? '').replace(/\r?\n[ \t]/g, '');
  try {
    const json: unknown = JSON.parse(body.slice(body.indexOf('{'), body.lastIndexOf('}') + 1));
    const envelope = json as { readonly Message?: unknown };
    const notification: unknown = typeof envelope.Message === 'string' ? JSON.parse(envelope.Message) : json;
    const type = (notification as { readonly notificationType?: unknown }).notificationType;
    if (typeof type !== 'string') return undefined;
    return parseSesEvent({ source: 'aws.ses', detail: { ...(notification as object), eventType: type } });
  } catch {
    return undefined;
  }
}

/** The report-type parameter of a multipart/report, lower-cased. */
function reportType(mail: ParsedMail): string | undefined {
  const value = mail.headers.get('content-type');
  const params = typeof value === 'object' && value !== null && 'params' in value ? value.params : undefined;
  return typeof params?.['report-type'] === 'string' ? params['report-type'].toLowerCase() : undefined;
}

/** A complaint (ARF, RFC 5965) quotes the message it is about: never read it as a bounce. */
function isComplaint(mail: ParsedMail): boolean {
  return mail.attachments.some((part) => part.contentType.toLowerCase() === 'message/feedback-report');
}

/** What the plain-text readers need of a message. */
function textMessage(mail: ParsedMail, mime: Buffer | string) {
  // A multipart body whose parts could not be split (a boundary that matches no line) is read as text.
  const raw = typeof mime === 'string' ? mime : mime.toString('latin1');
  const body = mail.text || (mail.attachments.length === 0 ? raw.slice(raw.search(/\r?\n\r?\n/) + 1) : '');
  const failed = headerLine(mail.headerLines, 'x-failed-recipients') ?? '';
  return {
    from: headerLine(mail.headerLines, 'from') ?? '',
    subject: mail.subject ?? '',
    text: body,
    failedRecipients: failed
      .split(',')
      .map((address) => addressOf(address))
      .filter((address): address is string => address !== undefined),
  };
}

/**
 * The first text part that is a message header: it starts with a field, and its first group has a
 * Message-ID. Only text parts are decoded, not the images or documents a report may carry.
 */
function headerTextPart(parts: readonly Attachment[]): string | undefined {
  for (const part of parts) {
    if (!part.contentType.toLowerCase().startsWith('text/')) continue;
    const content = text(part);
    if (/^[!-9;-~]+[ \t]*:/.test(content) && fieldGroups(content)[0]?.has('message-id')) return content;
  }
  return undefined;
}

/** The trace headers the relay adds to every message it sends, and the original's Message-ID. */
function fromOriginal(
  headers: Fields | undefined,
): Pick<FeedbackEvent, 'providerMessageId' | 'sourceMessageId' | 'idempotencyKey'> {
  const header = (name: string) => headers?.get(name.toLowerCase())?.[0] || undefined;
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

/** Field name → every value it had, in order. */
type Fields = ReadonlyMap<string, readonly string[]>;

/**
 * Header-style fields in groups separated by blank lines, names lower-cased, folded lines unfolded: a
 * delivery-status body is a per-message group then one per recipient; a returned original's header is
 * its first group. A repeated field keeps every value. Some servers write recipient blocks without a
 * blank line between them, so in a group that already names a recipient, a Final-Recipient or
 * Original-Recipient after an Action or the same field, or a second Action, starts a new group. Lines
 * that are not fields are skipped.
 */
function fieldGroups(content: string): Fields[] {
  const groups: Map<string, string[]>[] = [];
  let group: Map<string, string[]> | undefined;
  let folding: string[] | undefined;
  for (const line of content.split(/\r?\n/)) {
    if (line.trim() === '') {
      group = undefined;
      folding = undefined;
    } else if (/^[ \t]/.test(line)) {
      if (folding) folding[folding.length - 1] = `${folding[folding.length - 1]} ${line.trim()}`.trim();
    } else {
      const field = /^([!-9;-~]+)[ \t]*:(.*)$/.exec(line);
      folding = undefined;
      if (!field) continue;
      const name = (field[1] as string).toLowerCase();
      const recipientField = name === 'final-recipient' || name === 'original-recipient';
      const hasRecipient = group?.has('final-recipient') || group?.has('original-recipient');
      // Action may come before the address (Amazon SES writes it first) or after it.
      const startsRecipient =
        hasRecipient &&
        ((recipientField && (group?.has(name) || group?.has('action'))) ||
          (name === 'action' && group?.has('action')));
      if (!group || startsRecipient) {
        group = new Map();
        groups.push(group);
      }
      const values = group.get(name) ?? [];
      values.push((field[2] as string).trim());
      group.set(name, values);
      folding = values;
    }
  }
  return groups;
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
