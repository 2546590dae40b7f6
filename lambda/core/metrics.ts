/**
 * The relay's CloudWatch metrics, in one place: the functions emit them as Embedded Metric Format
 * (send/telemetry.ts, one document per set of dimension values per invocation), and the stack's
 * alarms and dashboard read them by these names.
 */
export const METRICS_NAMESPACE = 'MailRelay';

/**
 * Every metric carries a `service` dimension with this value; alarms and
 * the dashboard must name it too, or CloudWatch finds no data.
 */
export const METRICS_SERVICE = 'mail-relay';

/**
 * Dimension names. `Provider` is a provider name: graph, ses, smtp or smtp:<connection> (one per named SMTP
 * connection); `Route` a configured route name (or `default`).
 */
export const METRIC_DIMENSIONS = {
  service: 'service',
  provider: 'Provider',
  route: 'Route',
  /** The failure class of a dead-lettered message: permanent, transient or provider. */
  failureClass: 'FailureClass',
  /** hard or soft, for Bounced. */
  /**
   * Why an address was put on the suppression list, for SuppressionAdded: a bounce cause
   * (BOUNCE_CAUSES), complaint or operator. Bounded: that list and nothing else.
   */
  cause: 'Cause',
} as const;

export const METRIC_NAMES = {
  /** A valid message was taken from the outbox (counted once per delivery attempt). */
  accepted: 'Accepted',
  /** A provider accepted a message. Dimensions: Provider, Route. */
  sent: 'Sent',
  /** A delivery ended in a scheduled retry. Dimension: Provider. */
  retried: 'Retried',
  /** A message was sent by a provider other than the first of its chain. Dimensions: Provider, Route. */
  fallbackUsed: 'FallbackUsed',
  /** Dimension: FailureClass. */
  deadLettered: 'DeadLettered',
  /** A copy of a message already sent, deleted without sending. */
  duplicate: 'Duplicate',
  /** Recipients dropped because they are on the suppression list. */
  suppressed: 'Suppressed',
  /** Feedback: addresses put on the suppression list (one per address). Dimension: Cause. */
  suppressionAdded: 'SuppressionAdded',
  /** Feedback: the receiving server accepted the message (SES delivery events). Dimension: Provider. */
  delivered: 'Delivered',
  /** Feedback: a bounce, hard or soft. Dimension: Provider (the hard ones: SuppressionAdded by Cause). */
  bounced: 'Bounced',
  /** Feedback: a recipient marked the message as spam. Dimension: Provider. */
  complained: 'Complained',
  /** A message waits for a provider's limit (back on the queue, not an attempt). Dimension: Provider. */
  paced: 'Paced',
  /** A provider's limit was reached and the route's next provider took the message. Dimension: Provider (the limited one). */
  spilledOver: 'SpilledOver',
  /** A send found its mailbox's (or account's) recipients for the day used up. Dimension: Provider. */
  dailyCapReached: 'DailyCapReached',
  /** Milliseconds the provider call took. Dimension: Provider. */
  sendLatency: 'SendLatency',
  /** Milliseconds from the SQS SentTimestamp to the provider's acceptance. Dimension: Provider. */
  endToEndLatency: 'EndToEndLatency',
} as const;

export type MetricName = (typeof METRIC_NAMES)[keyof typeof METRIC_NAMES];

/** Where the core reports what happened; the send function's adapter writes EMF (send/telemetry.ts). */
export interface RelayTelemetry {
  count(name: MetricName, dimensions: Readonly<Record<string, string>>, value?: number): void;
  milliseconds(name: MetricName, dimensions: Readonly<Record<string, string>>, value: number): void;
}

/** For callers that do not measure (unit tests of other concerns). */
export const NO_TELEMETRY: RelayTelemetry = { count: () => undefined, milliseconds: () => undefined };
