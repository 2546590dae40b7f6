import type { AddressObject, Attachment, HeaderLines, SimpleParserOptions } from 'mailparser';
import type { Mailbox } from '../../core/address.ts';
import type { ComposedOutbound, OutboundAttachment, RawOutbound } from '../../core/attachments.ts';
import { MESSAGE_CONTRACT_VERSION } from '../../core/message.ts';

/** The name a calendar part gets as an attachment (it has none of its own as a body part). */
export const CALENDAR_ATTACHMENT_NAME = 'invite.ics';

const CUSTOM_HEADER = /^x-/i;
const CALENDAR_TYPE = 'text/calendar';
const CALENDAR_TYPES: ReadonlySet<string> = new Set([CALENDAR_TYPE, 'application/ics']);

/**
 * Turns a raw message's rendered MIME into the relay's composed form, for Graph's JSON path (draft,
 * attachments, upload sessions, send): what a MIME message too big for one sendMail request (4 MB of
 * base64) has to travel as. `mime` is the message as the relay renders it for Graph (relay headers
 * set, To/Cc reduced to the envelope: providers/mime.ts), `message` gives the envelope and the From.
 *
 * Recipients come from the envelope: To is the header To that is in the envelope, Cc likewise, and
 * every other envelope address is Bcc. The From is `message.from` (the MIME's, or the route's rewrite).
 *
 * What the JSON form cannot keep, so the recipient sees a different message than the MIME would give:
 * - a calendar invite (text/calendar, METHOD:REQUEST) becomes an attachment `invite.ics`: Outlook no
 *   longer shows it as a meeting request with Accept/Decline, it is a file to open;
 * - headers other than X- headers (Graph takes only those in internetMessageHeaders): In-Reply-To and
 *   References (threading), List-Unsubscribe, Auto-Submitted, Importance, Disposition-Notification-To,
 *   Sender and the like are dropped; a repeated X- header keeps its first value; Date is Graph's own;
 * - an invite that is both a text/calendar part and an .ics attachment (nodemailer's icalEvent) is
 *   attached once;
 * - one body only: the HTML when there is one (Graph drops the text alternative), else the text;
 * - the MIME structure itself: charsets and transfer encodings are Exchange's choice, an attached
 *   message (message/rfc822) is a file attachment rather than an attached item, an S/MIME signature
 *   (multipart/signed) no longer verifies;
 * - group syntax in To/Cc (the members stay, the group name goes), the Bcc header.
 * Attachment bytes, file names, content types and Content-IDs (inline images) are kept.
 */
export async function composedFromMime(
  mime: Buffer,
  message: Pick<RawOutbound, 'from' | 'recipients' | 'tags'>,
): Promise<ComposedOutbound> {
  // Loaded only for the rare message that needs it: mailparser is large for a cold start.
  const { simpleParser } = await import('mailparser');
  const options: SimpleParserOptions & { readonly ignoreEmbedded: boolean } = {
    // Inline images stay attachments referenced by cid:, not data: URIs inside the HTML.
    keepCidLinks: true,
    // An attached message stays one attachment, its bytes as they are (mailparser's splitter option,
    // missing from its types): otherwise its text would join the body and its files become ours.
    ignoreEmbedded: true,
    skipHtmlToText: true,
    skipTextToHtml: true,
    skipTextLinks: true,
    skipImageLinks: true,
  };
  const parsed = await simpleParser(mime, options);
  const envelope = new Map(message.recipients.map((mailbox) => [mailbox.address.toLowerCase(), mailbox]));
  const taken = new Set<string>();
  const fromHeader = (header: AddressObject | AddressObject[] | undefined): Mailbox[] => {
    const list: Mailbox[] = [];
    for (const mailbox of mailboxesOf(header)) {
      const key = mailbox.address.toLowerCase();
      if (!envelope.has(key) || taken.has(key)) continue;
      taken.add(key);
      list.push(mailbox);
    }
    return list;
  };
  const to = fromHeader(parsed.to);
  const cc = fromHeader(parsed.cc);
  const bcc = [...envelope].filter(([key]) => !taken.has(key)).map(([, mailbox]) => mailbox);
  const replyTo = mailboxesOf(parsed.replyTo);
  const headers = customHeaders(parsed.headerLines);
  const html = typeof parsed.html === 'string' ? parsed.html : undefined;
  const text = parsed.text ?? (html === undefined ? '' : undefined);
  const attachments = withoutRepeatedCalendars(parsed.attachments.map(toAttachment));
  return {
    v: MESSAGE_CONTRACT_VERSION,
    from: message.from,
    ...(to.length > 0 && { to }),
    ...(cc.length > 0 && { cc }),
    ...(bcc.length > 0 && { bcc }),
    ...(replyTo.length > 0 && { replyTo }),
    subject: parsed.subject ?? '',
    ...(text !== undefined && { text }),
    ...(html !== undefined && { html }),
    ...(Object.keys(headers).length > 0 && { headers }),
    ...(attachments.length > 0 && { attachments }),
    ...(message.tags && { tags: message.tags }),
  };
}

function toAttachment(attachment: Attachment, index: number): OutboundAttachment {
  const contentType = attachment.contentType.toLowerCase();
  const calendar = contentType === CALENDAR_TYPE;
  // Inline: an image the HTML shows (in multipart/related, or marked inline), not a file that
  // merely has a Content-ID.
  const inline =
    attachment.cid !== undefined &&
    attachment.cid !== '' &&
    (attachment.related === true || attachment.contentDisposition === 'inline') &&
    !calendar;
  return {
    filename: attachment.filename ?? (calendar ? CALENDAR_ATTACHMENT_NAME : `attachment-${index + 1}`),
    contentType,
    ...(inline && { contentId: attachment.cid }),
    content: attachment.content,
  };
}

/**
 * nodemailer's icalEvent writes the invite twice, as a text/calendar alternative and as an
 * application/ics attachment: a calendar with the same bytes as an earlier one is attached once.
 */
function withoutRepeatedCalendars(attachments: OutboundAttachment[]): OutboundAttachment[] {
  const calendars: Buffer[] = [];
  return attachments.filter((attachment) => {
    if (!CALENDAR_TYPES.has(attachment.contentType)) return true;
    if (calendars.some((earlier) => earlier.equals(attachment.content))) return false;
    calendars.push(attachment.content);
    return true;
  });
}

/** Every address of an address header (group members included), as the relay's mailboxes. */
function mailboxesOf(header: AddressObject | AddressObject[] | undefined): Mailbox[] {
  const objects = header === undefined ? [] : Array.isArray(header) ? header : [header];
  const flatten = (entries: AddressObject['value']): Mailbox[] =>
    entries.flatMap((entry) => {
      if (entry.group) return flatten(entry.group);
      if (!entry.address) return [];
      return [entry.name ? { name: entry.name, address: entry.address } : { address: entry.address }];
    });
  return objects.flatMap((object) => flatten(object.value));
}

/** The X- headers, as written (unfolded; encoded words left encoded), first value of each name. */
function customHeaders(lines: HeaderLines): Record<string, string> {
  const headers: Record<string, string> = {};
  const seen = new Set<string>();
  for (const { key, line } of lines) {
    if (!CUSTOM_HEADER.test(key) || seen.has(key)) continue;
    const colon = line.indexOf(':');
    if (colon < 0) continue;
    seen.add(key);
    headers[line.slice(0, colon).trim()] = line
      .slice(colon + 1)
      .replace(/\r?\n[ \t]+/g, ' ')
      .trim();
  }
  return headers;
}
