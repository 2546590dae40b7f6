import type { FeedbackNote, FeedbackNotes } from '../ledger.ts';
import { METRIC_DIMENSIONS, METRIC_NAMES, type RelayTelemetry } from '../metrics.ts';
import type { OutcomeEvent, OutcomePublisher } from '../outcomes.ts';
import type { RelayLogger } from '../relay.ts';
import {
  diagnosticExcerpt,
  type SoftBounceCounter,
  type Suppression,
  type SuppressionCause,
} from '../suppression.ts';
import { truncate } from '../text.ts';
import type { BounceCause, FeedbackEvent } from './feedback-event.ts';

/** What the feedback path writes to the suppression list. */
export interface SuppressionWriter {
  suppress(entry: Suppression): Promise<void>;
}

/** N soft bounces of the same address within D days suppress it (suppression.softBounces). */
export interface SoftBounceThreshold {
  /** Soft bounces that suppress, counted from the first in the window. */
  readonly count: number;
  /** The window, in days from an address's first soft bounce. */
  readonly days: number;
}

/**
 * Soft bounces whose cause is about the sender or the message, not the address: the same address
 * works once the sender is off a blocklist, slower, or sends something else, so these are never
 * counted towards the soft-bounce threshold (a blocklisting would otherwise suppress every recipient
 * at that provider within days).
 */
export const UNCOUNTED_SOFT_BOUNCE_CAUSES: readonly BounceCause[] = [
  'rate-limited',
  'blocked',
  'policy',
  'content',
];

export interface FeedbackDependencies {
  readonly suppressions: SuppressionWriter;
  readonly telemetry: RelayTelemetry;
  readonly outcomes?: OutcomePublisher;
  /** The delivery ledger, so `mail-relay status` tells the bounce too. */
  readonly notes?: FeedbackNotes;
  readonly logger: RelayLogger;
  /** Days a hard bounce or complaint keeps a recipient suppressed; absent: until removed. */
  readonly suppressionDays?: number;
  /** Suppress after N soft bounces in D days, counted per address; absent: soft bounces never suppress. */
  readonly softBounces?: { readonly threshold: SoftBounceThreshold; readonly counter: SoftBounceCounter };
  readonly now?: () => number;
}

/** What processing one batch of feedback did, for the caller's summary log and tests. */
export interface FeedbackSummary {
  readonly suppressed: readonly string[];
  readonly published: number;
}

const OUTCOME_OF: Partial<Record<FeedbackEvent['kind'], FeedbackNote['kind']>> = {
  delivered: 'delivered',
  bounced: 'bounced',
  complained: 'complained',
};

/**
 * Hard bounces and complaints suppress; a soft bounce may recover (mailbox full, greylisting, policy),
 * and unverified feedback (a report naming no message the relay sent) could be forged. (Soft bounces
 * may still add up to the soft-bounce threshold: see countsTowardsThreshold.)
 */
export function suppresses(event: FeedbackEvent): boolean {
  if (event.unverified) return false;
  return event.kind === 'complained' || (event.kind === 'bounced' && event.bounceType === 'hard');
}

/** A verified soft bounce whose cause may be the address's (not the sender's or the message's). */
export function countsTowardsThreshold(event: FeedbackEvent): boolean {
  if (event.unverified || event.kind !== 'bounced' || event.bounceType === 'hard') return false;
  return event.cause === undefined || !UNCOUNTED_SOFT_BOUNCE_CAUSES.includes(event.cause);
}

/** What the suppression list and the SuppressionAdded metric call the reason for an entry. */
function causeOf(event: FeedbackEvent): SuppressionCause {
  return event.kind === 'complained' ? 'complaint' : (event.cause ?? 'other');
}

/**
 * Turns provider feedback into the relay's effects: hard bounces and complaints put the recipients on
 * the suppression list, deliveries, bounces and complaints are counted per provider (once per message
 * and kind, so Bounced / Sent is a per-message rate like the alarms expect), and each becomes an
 * outcome event when its kind is published (by default bounced and complained, not delivered). A suppression write that fails throws, so the caller retries the feedback; metrics and
 * events are best effort and never stop it.
 */
export async function processFeedback(
  events: readonly FeedbackEvent[],
  dependencies: FeedbackDependencies,
): Promise<FeedbackSummary> {
  const { logger, telemetry } = dependencies;
  const now = dependencies.now ?? Date.now;
  const suppressed: string[] = [];
  const counted = new Set<string>();
  const outcomes: OutcomeEvent[] = [];

  for (const [index, event] of events.entries()) {
    const about = {
      provider: event.provider,
      ...(event.sourceMessageId && { messageId: event.sourceMessageId }),
      ...(event.providerMessageId && { providerMessageId: event.providerMessageId }),
    };
    const entry = (address: string, reason: string): Suppression => ({
      address,
      reason,
      since: event.at,
      ...(dependencies.suppressionDays !== undefined && {
        expiresAt: Math.floor(now() / 1000) + dependencies.suppressionDays * 86_400,
      }),
      cause: causeOf(event),
      evidence: {
        ...(event.status && { status: event.status }),
        ...(event.diagnostic && { diagnostic: diagnosticExcerpt(event.diagnostic) }),
        provider: event.provider,
      },
    });
    const suppressedHere: string[] = [];
    if (suppresses(event)) {
      const reason = suppressionReason(event);
      for (const address of event.recipients) {
        await dependencies.suppressions.suppress(entry(address, reason));
        suppressedHere.push(address);
      }
    } else if (dependencies.softBounces && countsTowardsThreshold(event)) {
      const { threshold, counter } = dependencies.softBounces;
      const messageId = event.providerMessageId ?? event.sourceMessageId;
      for (const address of event.recipients) {
        // A counter that cannot be written throws, as a suppression would: the batch is tried again,
        // and the message id keeps that from counting the bounce twice.
        const count = await counter.countSoftBounce(
          address,
          { ...(messageId !== undefined && { messageId }), at: event.at },
          threshold.days,
        );
        if (count < threshold.count) continue;
        await dependencies.suppressions.suppress(
          entry(address, softBounceReason(event, count, threshold.days)),
        );
        suppressedHere.push(address);
      }
    }
    for (const address of suppressedHere) {
      telemetry.count(METRIC_NAMES.suppressionAdded, { [METRIC_DIMENSIONS.cause]: causeOf(event) });
      suppressed.push(address);
    }
    const metric = metricOf(event);
    const messageKey = `${event.kind}\u0000${event.bounceType ?? ''}\u0000${event.providerMessageId ?? event.sourceMessageId ?? `#${index}`}`;
    if (metric && !counted.has(messageKey)) {
      counted.add(messageKey);
      const byProvider = { [METRIC_DIMENSIONS.provider]: event.provider };
      // Per provider only: which bounces were hard shows in SuppressionAdded by Cause, and every
      // further dimension value is one more custom metric billed per month.
      telemetry.count(metric, byProvider);
    }

    // Addresses are the recipient's personal data, but naming them is what makes a bounce actionable;
    // the diagnostic is the remote server's words about the address, never the message.
    const details = {
      ...about,
      recipients: event.recipients,
      ...(event.bounceType && { bounceType: event.bounceType }),
      ...(event.cause && { cause: event.cause }),
      ...(event.status && { status: event.status }),
      ...(event.diagnostic && { diagnostic: event.diagnostic }),
      ...(event.unverified && { unverified: true }),
    };
    switch (event.kind) {
      case 'bounced':
        logger.warn('Bounce received', {
          ...details,
          suppressed: suppressedHere.length > 0,
          ...(suppressedHere.length > 0 &&
            suppressedHere.length < event.recipients.length && { suppressedRecipients: suppressedHere }),
        });
        break;
      case 'complained':
        logger.warn('Complaint received', { ...details, suppressed: suppressedHere.length > 0 });
        break;
      case 'rejected':
      case 'rendering-failure':
        logger.warn(
          `Provider ${event.kind === 'rejected' ? 'rejected' : 'could not render'} the message`,
          details,
        );
        break;
      case 'delayed':
        logger.info('Delivery delayed', details);
        break;
      default:
        break;
    }

    const outcome = OUTCOME_OF[event.kind];
    if (outcome) {
      // Only the kinds configured (events.publish): every event is billed.
      if (dependencies.outcomes?.publishes?.(outcome) !== false) {
        outcomes.push(outcomeEvent(outcome, event, suppressedHere));
      }
      await noteInLedger(event, outcome, dependencies, suppressedHere.length > 0);
    }
  }

  if (outcomes.length > 0 && dependencies.outcomes) {
    try {
      await dependencies.outcomes.publish(outcomes);
    } catch (error) {
      logger.error('Could not publish the outcome events', {
        count: outcomes.length,
        error: error instanceof Error ? error.message : String(error),
      });
      return { suppressed, published: 0 };
    }
  }
  return { suppressed, published: dependencies.outcomes ? outcomes.length : 0 };
}

/** The ledger entry the feedback is about: the idempotency key, else the SQS message id. */
function ledgerKeyOf(event: FeedbackEvent): string | undefined {
  if (event.idempotencyKey) return event.idempotencyKey;
  return event.sourceMessageId ? `sqs:${event.sourceMessageId}` : undefined;
}

/** Best effort: the suppression, metric and event already carry the feedback; this is for `status`. */
async function noteInLedger(
  event: FeedbackEvent,
  kind: FeedbackNote['kind'],
  dependencies: FeedbackDependencies,
  suppressed: boolean,
): Promise<void> {
  const key = ledgerKeyOf(event);
  if (!dependencies.notes || key === undefined || event.unverified) return;
  try {
    await dependencies.notes.noteFeedback(key, {
      kind,
      provider: event.provider,
      recipients: event.recipients,
      ...(event.bounceType && { bounceType: event.bounceType }),
      ...(event.status && { status: event.status }),
      ...(event.diagnostic && { diagnostic: event.diagnostic }),
      suppressed,
      at: event.at,
    });
  } catch (error) {
    dependencies.logger.warn('Could not note the feedback in the delivery ledger', {
      messageId: event.sourceMessageId,
      error: error instanceof Error ? error.message : String(error),
    });
  }
}

function metricOf(event: FeedbackEvent) {
  switch (event.kind) {
    case 'delivered':
      return METRIC_NAMES.delivered;
    case 'bounced':
      return METRIC_NAMES.bounced;
    case 'complained':
      return METRIC_NAMES.complained;
    default:
      return undefined;
  }
}

function suppressionReason(event: FeedbackEvent): string {
  if (event.kind === 'complained') {
    return `complaint${event.diagnostic ? ` (${event.diagnostic})` : ''} via ${event.provider}`;
  }
  const code = event.status ? ` ${event.status}` : '';
  const words = event.diagnostic ? `: ${event.diagnostic}` : '';
  return truncate(`hard bounce${code} via ${event.provider}${words}`, 500);
}

function softBounceReason(event: FeedbackEvent, count: number, days: number): string {
  const code = event.status ? ` ${event.status}` : '';
  const words = event.diagnostic ? `: ${event.diagnostic}` : '';
  return truncate(
    `${count} soft bounces in ${days} days, the last${code} via ${event.provider}${words}`,
    500,
  );
}

function outcomeEvent(
  outcome: OutcomeEvent['outcome'],
  event: FeedbackEvent,
  suppressedRecipients: readonly string[],
): OutcomeEvent {
  return {
    outcome,
    // The relay's request id when the trace header came back; otherwise the provider's id is all there is.
    messageId: event.sourceMessageId ?? event.providerMessageId ?? 'unknown',
    ...(event.idempotencyKey && { idempotencyKey: event.idempotencyKey }),
    ...(event.tags && { tags: event.tags }),
    provider: event.provider,
    ...(event.providerMessageId && { providerMessageId: event.providerMessageId }),
    recipients: event.recipients,
    ...(event.bounceType && { bounceType: event.bounceType }),
    ...(event.status && { code: event.status }),
    ...(event.diagnostic && { reason: event.diagnostic }),
    ...(suppressedRecipients.length > 0 && { suppressedRecipients }),
    at: event.at,
  };
}
