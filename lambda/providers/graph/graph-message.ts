import type { Mailbox } from '../../core/address.ts';
import type { ComposedOutbound, OutboundAttachment } from '../../core/attachments.ts';

/** Graph's `recipient` resource. */
export interface GraphRecipient {
  readonly emailAddress: { readonly address: string; readonly name?: string };
}

/** Graph's `fileAttachment` resource, bytes inline (base64). */
export interface GraphFileAttachment {
  readonly '@odata.type': '#microsoft.graph.fileAttachment';
  readonly name: string;
  readonly contentType: string;
  readonly contentBytes: string;
  readonly isInline: boolean;
  readonly contentId?: string;
}

/** The subset of Graph's `message` resource the relay sets. */
export interface GraphMessage {
  readonly subject: string;
  readonly body: { readonly contentType: 'HTML' | 'Text'; readonly content: string };
  readonly from: GraphRecipient;
  readonly toRecipients: GraphRecipient[];
  readonly ccRecipients: GraphRecipient[];
  readonly bccRecipients: GraphRecipient[];
  readonly replyTo: GraphRecipient[];
  readonly internetMessageHeaders?: { readonly name: string; readonly value: string }[];
  /** RFC 5322 Message-ID; settable when the message is created (sendMail, a new draft). */
  readonly internetMessageId?: string;
  readonly attachments?: GraphFileAttachment[];
}

const recipient = (mailbox: Mailbox): GraphRecipient => ({
  emailAddress: mailbox.name
    ? { address: mailbox.address, name: mailbox.name }
    : { address: mailbox.address },
});

/**
 * Maps a composed message to Graph's JSON form (a raw message goes as MIME: graph-provider.ts). Graph
 * carries one body: HTML when given (the text part is then dropped, as Outlook derives its own), else
 * text. Only X- headers exist in the contract, which is also all Graph accepts in internetMessageHeaders.
 */
export function toGraphMessage(
  message: ComposedOutbound,
  attachments: readonly OutboundAttachment[] = message.attachments ?? [],
  internetMessageId?: string,
): GraphMessage {
  const headers = Object.entries(message.headers ?? {}).map(([name, value]) => ({ name, value }));
  return {
    subject: message.subject,
    body:
      message.html !== undefined
        ? { contentType: 'HTML', content: message.html }
        : { contentType: 'Text', content: message.text ?? '' },
    from: recipient(message.from),
    toRecipients: (message.to ?? []).map(recipient),
    ccRecipients: (message.cc ?? []).map(recipient),
    bccRecipients: (message.bcc ?? []).map(recipient),
    replyTo: (message.replyTo ?? []).map(recipient),
    ...(headers.length > 0 && { internetMessageHeaders: headers }),
    ...(internetMessageId !== undefined && { internetMessageId }),
    ...(attachments.length > 0 && { attachments: attachments.map(toFileAttachment) }),
  };
}

export function toFileAttachment(attachment: OutboundAttachment): GraphFileAttachment {
  return {
    '@odata.type': '#microsoft.graph.fileAttachment',
    name: attachment.filename,
    contentType: attachment.contentType,
    contentBytes: attachment.content.toString('base64'),
    isInline: attachment.contentId !== undefined,
    ...(attachment.contentId !== undefined && { contentId: attachment.contentId }),
  };
}
