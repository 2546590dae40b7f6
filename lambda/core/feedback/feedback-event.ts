/** What a provider told the relay about a message after accepting it. */
export const FEEDBACK_KINDS = [
  'sent',
  'delivered',
  'bounced',
  'complained',
  'delayed',
  'rejected',
  'rendering-failure',
] as const;
export type FeedbackKind = (typeof FEEDBACK_KINDS)[number];

/**
 * Why a message bounced, as the report's status and the remote server's own words show it. Only
 * the address causes (user-unknown, mailbox-disabled, host-unknown) can make a bounce hard; the
 * others are about the message, the sender or the moment, and never suppress by themselves.
 */
export const BOUNCE_CAUSES = [
  'user-unknown',
  'mailbox-disabled',
  'host-unknown',
  'over-quota',
  'rate-limited',
  'blocked',
  'policy',
  'content',
  'expired',
  'other',
] as const;
export type BounceCause = (typeof BOUNCE_CAUSES)[number];

/**
 * One piece of feedback, whatever its source (an SES event, a non-delivery report read from a
 * mailbox): the relay's own vocabulary, so suppression, metrics and outcome events are decided once.
 */
export interface FeedbackEvent {
  readonly kind: FeedbackKind;
  /** The provider that sent the message: graph, smtp or ses. */
  readonly provider: string;
  /** Lower-cased addresses the feedback is about (for a bounce: the ones that bounced). */
  readonly recipients: readonly string[];
  /**
   * For bounces. hard: the address does not exist or refuses for good (suppress it); soft: may
   * succeed later (mailbox full, greylisting, a transient 4.x.x), never suppressed.
   */
  readonly bounceType?: 'hard' | 'soft';
  /** For bounces: the cause the status and the diagnostic agree on (see BOUNCE_CAUSES). */
  readonly cause?: BounceCause;
  /** Enhanced status code (RFC 3463) such as 5.1.1, when known. */
  readonly status?: string;
  /** The remote server's words (Diagnostic-Code, SES diagnosticCode), at most 500 characters. */
  readonly diagnostic?: string;
  /** The provider's id of the sent message (SES message id, Internet Message-ID). */
  readonly providerMessageId?: string;
  /** The relay's request: the SQS message id from the X-Mail-Relay-Message-Id header, when it came back. */
  readonly sourceMessageId?: string;
  /** From the X-Mail-Relay-Idempotency-Key header, when it came back. */
  readonly idempotencyKey?: string;
  /** Message tags, when the provider returns them (SES). */
  readonly tags?: Readonly<Record<string, string>>;
  /**
   * Nothing proves the feedback is about a message the relay sent: a report in a mailbox that names
   * no request the ledger knows (anyone can mail a report-shaped message to a sending mailbox).
   * Counted and published, but it never puts anyone on the suppression list.
   */
  readonly unverified?: boolean;
  /** ISO 8601: when the provider saw it. */
  readonly at: string;
}
