import type { FailureClass } from './failures.ts';

/** The final outcomes producing apps can subscribe to (EventBridge source `mail-relay`). */
export const OUTCOME_KINDS = [
  'sent',
  'dead-lettered',
  'suppressed',
  'delivered',
  'bounced',
  'complained',
] as const;
export type OutcomeKind = (typeof OUTCOME_KINDS)[number];

export const OUTCOME_EVENT_SOURCE = 'mail-relay';

/** Headers the relay adds to every message it sends, so feedback (bounces, SES events) can name the request. */
export const TRACE_HEADERS = {
  messageId: 'X-Mail-Relay-Message-Id',
  idempotencyKey: 'X-Mail-Relay-Idempotency-Key',
} as const;

/** EventBridge detail-type per outcome: what a rule matches on. */
export const OUTCOME_DETAIL_TYPES: Record<OutcomeKind, string> = {
  sent: 'Mail Sent',
  'dead-lettered': 'Mail Dead-Lettered',
  suppressed: 'Mail Suppressed',
  delivered: 'Mail Delivered',
  bounced: 'Mail Bounced',
  complained: 'Mail Complained',
};

/** What one outcome event says. Never the body, subject or attachments. */
export interface OutcomeEvent {
  readonly outcome: OutcomeKind;
  /** The SQS message id of the request. */
  readonly messageId: string;
  readonly idempotencyKey?: string;
  readonly tags?: Readonly<Record<string, string>>;
  readonly route?: string;
  readonly provider?: string;
  readonly providerMessageId?: string;
  /** Providers that failed before the one that sent it. */
  readonly fallbackFrom?: readonly string[];
  /** For dead-lettered (and bounced): the failure code, its class and the reason. */
  readonly code?: string;
  readonly failureClass?: FailureClass;
  readonly reason?: string;
  /** For bounced: hard (the address is suppressed) or soft. */
  readonly bounceType?: 'hard' | 'soft';
  /** Recipients dropped because they are on the suppression list (sent, suppressed), or put on it (bounced, complained). */
  readonly suppressedRecipients?: readonly string[];
  /** Recipients the feedback is about (delivered, bounced, complained). */
  readonly recipients?: readonly string[];
  /** ISO 8601. */
  readonly at: string;
}

export interface OutcomePublisher {
  /** Best effort is the caller's business: this rejects when the events could not be published. */
  publish(events: readonly OutcomeEvent[]): Promise<void>;
}
