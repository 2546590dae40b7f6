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

/** The outcomes the send function decides (and publishes, when asked to). */
export const SEND_OUTCOME_KINDS = [
  'sent',
  'dead-lettered',
  'suppressed',
] as const satisfies readonly OutcomeKind[];
/** The outcomes feedback reports (SES events, non-delivery reports read from mailboxes). */
export const FEEDBACK_OUTCOME_KINDS = [
  'delivered',
  'bounced',
  'complained',
] as const satisfies readonly OutcomeKind[];

/**
 * Published unless configured otherwise (events.publish): what a producing app must act on. `sent`
 * and `delivered` happen once per message each, and every event is billed: they are opt-in.
 */
export const DEFAULT_OUTCOME_KINDS: readonly OutcomeKind[] = [
  'dead-lettered',
  'suppressed',
  'bounced',
  'complained',
];

/**
 * A function's `events` settings: the bus and which of `functionKinds` (the kinds that function
 * decides) it publishes out of `published`. The kinds are left out when they are the defaults (the
 * settings must fit in Lambda's 4 KB of environment). Undefined when it publishes none of them: the
 * function then has no EventBridge client and needs no permission.
 */
export function outcomeEventSettings(
  busName: string,
  published: readonly OutcomeKind[],
  functionKinds: readonly OutcomeKind[],
): { busName: string; kinds?: OutcomeKind[] } | undefined {
  const ofFunction = (kinds: readonly OutcomeKind[]) => kinds.filter((kind) => functionKinds.includes(kind));
  const kinds = ofFunction(published);
  if (kinds.length === 0) return undefined;
  const defaults = ofFunction(DEFAULT_OUTCOME_KINDS);
  const isDefault = kinds.length === defaults.length && kinds.every((kind) => defaults.includes(kind));
  return { busName, ...(!isDefault && { kinds }) };
}

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
  /**
   * Best effort is the caller's business: this rejects when the events could not be published. Events
   * of a kind the publisher does not publish (`publishes`) are dropped, without a request.
   */
  publish(events: readonly OutcomeEvent[]): Promise<void>;
  /** Whether events of this kind go out; absent: every kind does. Callers skip building the others. */
  publishes?(kind: OutcomeKind): boolean;
}
