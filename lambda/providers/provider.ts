import type { OutboundMessage } from '../core/attachments.ts';

export interface RejectedRecipient {
  readonly address: string;
  /** The server's reply, e.g. "550 5.1.1 User unknown". */
  readonly reason: string;
}

export interface SendReceipt {
  readonly provider: string;
  /** The provider's id for the accepted message (SES MessageId, Graph request id, SMTP Message-ID). */
  readonly providerMessageId: string | undefined;
  /** Recipients the provider refused while accepting the message for the others (SMTP). */
  readonly rejectedRecipients?: readonly RejectedRecipient[];
}

/**
 * One way of sending mail (SES, Graph, SMTP). Adapters are thin: they translate a validated message
 * into the provider's call and every failure into a classified `RelayFailure` (see core/failures.ts).
 */
export interface MailProvider {
  readonly name: string;
  /** Whether this provider is configured to send as this address (a verified identity, a mailbox …). */
  canSendAs(address: string): boolean;
  send(message: OutboundMessage): Promise<SendReceipt>;
}
