import MailComposer from 'nodemailer/lib/mail-composer';
import type { Address } from 'nodemailer/lib/mailer';
import type { Mailbox } from '../core/address.ts';
import type { ComposedOutbound, RawOutbound } from '../core/attachments.ts';
import { TRACE_HEADERS } from '../core/outcomes.ts';

const toAddress = (mailbox: Mailbox): Address | string =>
  mailbox.name ? { name: mailbox.name, address: mailbox.address } : mailbox.address;

/**
 * Builds the RFC 5322 message. Bcc is deliberately left out of the headers (recipients are given
 * to the provider's envelope), so Bcc recipients stay hidden from everyone else.
 */
export function composeMime(
  message: ComposedOutbound,
  options: { messageId?: string } = {},
): Promise<Buffer> {
  const composer = new MailComposer({
    // The relay's own Message-ID, so the sent message can be found in a server's log or a mailbox.
    ...(options.messageId !== undefined && { messageId: options.messageId }),
    from: toAddress(message.from),
    ...(message.to && { to: message.to.map(toAddress) }),
    ...(message.cc && { cc: message.cc.map(toAddress) }),
    ...(message.bcc && { bcc: message.bcc.map(toAddress) }),
    ...(message.replyTo && { replyTo: message.replyTo.map(toAddress) }),
    subject: message.subject,
    ...(message.text !== undefined && { text: message.text }),
    ...(message.html !== undefined && { html: message.html }),
    ...(message.headers && { headers: message.headers }),
    attachments: (message.attachments ?? []).map((attachment) => ({
      filename: attachment.filename,
      contentType: attachment.contentType,
      content: attachment.content,
      ...(attachment.contentId !== undefined && { cid: attachment.contentId }),
    })),
  });
  return composer.compile().build();
}

/**
 * A raw message as it leaves: the application's MIME with the relay's own headers (trace headers, the
 * Message-ID when it had none, the route's From rewrite). `envelope`: for providers given the
 * recipients apart (SES, SMTP), so Bcc headers are dropped. `headers`: for Microsoft Graph, which
 * sends to the header recipients, so To/Cc/Bcc are made to say exactly the envelope.
 */
export async function renderRawMime(
  message: RawOutbound,
  options: { readonly messageId: string; readonly recipients: 'envelope' | 'headers' },
): Promise<Buffer> {
  // Loaded with the first raw message: composed messages never pay for libmime's charset tables.
  const [{ withoutHeaders }, { prepareForRelay, renderForEnvelope, renderWithRecipientHeaders }] =
    await Promise.all([import('../core/mime/raw-mime.ts'), import('../core/mime/render.ts')]);
  // Only the relay writes its trace headers: a forged one would tie feedback to another message.
  const prepared = prepareForRelay(withoutHeaders(message.mime, ...Object.values(TRACE_HEADERS)), {
    ...(message.rewrittenFrom && { from: message.from, replyTo: message.rewrittenFrom.replyTo }),
    setHeaders: message.headers,
    messageId: options.messageId,
  });
  return options.recipients === 'envelope'
    ? renderForEnvelope(prepared)
    : renderWithRecipientHeaders(prepared, message.recipients);
}
