import type { RelayFailure } from '../failures.ts';
import type { DeliveryRecord } from '../ledger.ts';
import type { SendReceipt } from '../mail-provider.ts';
import type { SendSettingsCore } from '../settings.ts';

/** The slice of a structured logger the core needs (Powertools Logger fits). */
export interface RelayLogger {
  /** Detail below the one line per message (Powertools: shown with POWERTOOLS_LOG_LEVEL=DEBUG). */
  debug?(message: string, attributes: Record<string, unknown>): void;
  info(message: string, attributes: Record<string, unknown>): void;
  warn(message: string, attributes: Record<string, unknown>): void;
  error(message: string, attributes: Record<string, unknown>): void;
}

/** What the relay core reads of the send function's settings. */
export type RelayCoreSettings = Pick<
  SendSettingsCore,
  | 'limits'
  | 'maxReceiveCount'
  | 'attachments'
  | 'ingress'
  | 'routes'
  | 'retry'
  | 'circuitBreaker'
  | 'ledger'
  | 'staticEgress'
>;

export type RecordOutcome =
  | {
      readonly outcome: 'sent';
      readonly receipt: SendReceipt;
      readonly route: string;
      /** Providers that failed before the one that sent it. */
      readonly fallbackFrom: readonly string[];
      readonly suppressedRecipients: readonly string[];
    }
  /** A provider had already accepted this message (same idempotency key or SQS message id). */
  | { readonly outcome: 'duplicate'; readonly record: DeliveryRecord }
  /** Every recipient is suppressed: nothing was sent. */
  | { readonly outcome: 'suppressed'; readonly suppressedRecipients: readonly string[] }
  | { readonly outcome: 'dead-lettered'; readonly failure: RelayFailure }
  /** This SQS message is in the dead-letter queue already (a function stopped before deleting it). */
  | { readonly outcome: 'already-dead-lettered'; readonly record: DeliveryRecord }
  /** Its next provider sends from the static-egress function: the message is on that function's queue. */
  | { readonly outcome: 'passed-to-static-egress'; readonly provider: string }
  /** A provider's limit was reached: the message waits on the queue until `until` (not an attempt). */
  | {
      readonly outcome: 'paced';
      readonly provider: string;
      readonly limit: string;
      readonly until: number;
    };
