import type { OutboundMessage } from './attachments.ts';
import type { RelayFailure } from './failures.ts';

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

/** What the relay gives a provider with each message. */
export interface SendContext {
  /** Aborts when the invocation's time for provider calls runs out. */
  readonly signal: AbortSignal;
  /**
   * The RFC 5322 Message-ID the relay chose for this message (`<…@sender-domain>`), the same on every
   * try: set it on the message, so the sent copy can be found again (Graph's Sent Items, server logs).
   */
  readonly internetMessageId: string;
  /**
   * Call right before the first byte of the request that can make the provider send the message
   * (Graph's sendMail or draft send, SMTP's message data, SES's SendEmail), once the connection is
   * open. The relay records the hand-off in its ledger; when that fails the promise rejects and the
   * request must not be written. Calling it again is harmless.
   */
  handOff(): Promise<void>;
}

/** What a provider knows about a message whose answer was lost. */
export type SentLookup =
  /** The provider has the message: it was sent. */
  | { readonly found: true; readonly providerMessageId?: string }
  /** Not there (yet): whether that means "not sent" is the relay's call, after a grace period. */
  | { readonly found: false }
  /** The provider could not be asked (no permission, an error): the failure says why. */
  | { readonly unavailable: RelayFailure };

/**
 * One way of sending mail (SES, Graph, SMTP). Adapters are thin: they translate a validated message
 * into the provider's call and every failure into a classified `RelayFailure` (see core/failures.ts),
 * saying with `maybeSent` when the request went out in full and its answer was lost.
 */
export interface MailProvider {
  readonly name: string;
  /** Whether this provider is configured to send as this address (a verified identity, a mailbox …). */
  canSendAs(address: string): boolean;
  send(message: OutboundMessage, context: SendContext): Promise<SendReceipt>;
  /**
   * Gets ready to send (an access token …) before the relay takes the send's turn within the
   * provider's limits, so the request leaves when its turn comes, not a token fetch later. Absent:
   * nothing to prepare. A failure here is not reported: send() meets it again and classifies it.
   */
  prepare?(signal: AbortSignal): Promise<void>;
  /**
   * How long after a lost answer the provider can still say whether it sent the message (Graph: a sent
   * copy with that Message-ID shows up in the mailbox); absent or 0: it cannot tell.
   */
  readonly lookupWindowSeconds?: number;
  /** Asks the provider whether it has the message with this Message-ID (see lookupWindowSeconds). */
  findSent?(query: SentQuery, signal: AbortSignal): Promise<SentLookup>;
}

export interface SentQuery {
  /** The address the message was sent as (Graph: the mailbox to look in). */
  readonly from: string;
  readonly internetMessageId: string;
}
