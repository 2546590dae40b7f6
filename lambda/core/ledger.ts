import type { FailureClass } from './failures.ts';

/**
 * Where a message stands in the delivery ledger:
 * - sending: a function has handed the message to a provider (`handedOffTo`) and holds it until
 *   `leaseUntil`; written right before the request that sends it, never earlier;
 * - retrying: the last try failed and the message is back on the queue;
 * - sent: a provider accepted it: a copy arriving later is a duplicate and is not sent again;
 * - dead-lettered: it is in the dead-letter queue with its reason;
 * - suppressed: every recipient is on the suppression list, so nothing was sent.
 */
export const DELIVERY_STATES = ['sending', 'retrying', 'sent', 'dead-lettered', 'suppressed'] as const;
export type DeliveryState = (typeof DELIVERY_STATES)[number];

/** One failed try, kept so the dead-letter reason and `mail-relay status` can list every provider's. */
export interface TryFailure {
  readonly provider: string;
  readonly code: string;
  readonly failureClass: FailureClass;
  readonly reason: string;
  /** ISO 8601. */
  readonly at: string;
}

/**
 * A provider may have accepted the message, but the relay does not know: its answer was lost, or the
 * function died while the provider had it. Until this is resolved (the provider is asked, the route
 * allows a resend, or an operator releases it) the message is not sent again.
 */
export interface MaybeSent {
  readonly provider: string;
  /** ISO 8601: when the message was handed to the provider. */
  readonly since: string;
  /** e.g. "the answer to sendMail was lost (ETIMEDOUT …)" or "a function stopped while graph had it". */
  readonly reason: string;
  /** Epoch ms until which the provider can still be asked (Provider.lookupWindowSeconds). */
  readonly lookupUntil?: number;
}

/** An operator's decision to send a message again (`mail-relay dlq redrive`). */
export interface Release {
  /** ISO 8601. */
  readonly at: string;
  /** Who released it (the operator's AWS identity, or the local user name). */
  readonly by: string;
}

/** What a provider said about a message after accepting it (a bounce, a complaint, a delivery). */
export interface FeedbackNote {
  readonly kind: 'delivered' | 'bounced' | 'complained';
  readonly provider: string;
  readonly recipients: readonly string[];
  readonly bounceType?: 'hard' | 'soft';
  readonly status?: string;
  readonly diagnostic?: string;
  /** Whether the recipients were put on the suppression list. */
  readonly suppressed: boolean;
  /** ISO 8601. */
  readonly at: string;
}

/** A message's entry in the ledger: one per idempotency key (or SQS message id when it has none). */
export interface DeliveryRecord {
  /** The message's idempotencyKey, or `sqs:<message id>` when it has none. */
  readonly key: string;
  readonly state: DeliveryState;
  /** Bumped on every write; writes are conditional on it, so two functions never both claim a message. */
  readonly version: number;
  /** The SQS message id of the latest delivery. */
  readonly messageId: string;
  /** SHA-256 of the message body: the same key with another body is a producer bug, not a duplicate. */
  readonly bodyHash: string;
  readonly route?: string;
  /** Position in the route's provider chain the next try starts at. */
  readonly providerIndex: number;
  /** Tries on the provider at providerIndex so far. */
  readonly attempts: number;
  /** Most recent last, at most MAX_TRY_FAILURES. */
  readonly failures: readonly TryFailure[];
  /** Epoch milliseconds until which the sending function owns the message (state sending). */
  readonly leaseUntil?: number;
  /** The provider the message was last handed to, and when (ISO 8601). */
  readonly handedOffTo?: string;
  readonly handedOffAt?: string;
  /** The Message-ID the relay chose for the message, the same on every try (`<…@domain>`). */
  readonly internetMessageId?: string;
  /** Set while a provider may have accepted the message and nobody knows (see MaybeSent). */
  readonly maybeSent?: MaybeSent;
  /** An operator released the message from the dead-letter queue; consumed by the next hand-off. */
  readonly release?: Release;
  /** The provider that accepted the message. */
  readonly provider?: string;
  readonly providerMessageId?: string;
  /** Providers tried and failed before the one that sent it. */
  readonly fallbackFrom?: readonly string[];
  /** Recipients dropped because they are on the suppression list. */
  readonly suppressedRecipients?: readonly string[];
  /** ISO 8601 timestamps. */
  readonly createdAt: string;
  readonly updatedAt: string;
  readonly sentAt?: string;
  /** Epoch seconds after which the entry expires (DynamoDB TTL); an expired entry counts as absent. */
  readonly expiresAt: number;
  /** Bounces, complaints and deliveries reported after the send, oldest first. */
  readonly feedback?: readonly FeedbackNote[];
}

export const MAX_TRY_FAILURES = 10;

/** The `provider` of a recorded failure that came from no provider (ledger, suppression list, policy). */
export const RELAY_FAILURE_PROVIDER = 'relay';

/**
 * Storage of the delivery ledger. Deliberately small: the claim logic lives in the core (delivery.ts)
 * and needs only a read and a conditional write.
 */
export interface DeliveryLedger {
  /** The entry, read strongly consistent; undefined when absent or expired. */
  get(key: string, signal?: AbortSignal): Promise<DeliveryRecord | undefined>;
  /**
   * Several entries at once, read strongly consistent (one request for a batch instead of one each);
   * the map holds the entries that exist and have not expired.
   */
  getMany?(keys: readonly string[], signal?: AbortSignal): Promise<Map<string, DeliveryRecord>>;
  /**
   * Writes the entry only if the stored one still has `expectedVersion` (undefined: only if there is
   * none, or it has expired). Resolves false when another writer got there first.
   */
  put(record: DeliveryRecord, expectedVersion: number | undefined, signal?: AbortSignal): Promise<boolean>;
}

/** Where the feedback functions note what they learnt about a message, for `mail-relay status`. */
export interface FeedbackNotes {
  /** Appends to the entry's feedback; resolves false when there is no such entry (expired, unknown). */
  noteFeedback(key: string, note: FeedbackNote): Promise<boolean>;
}
