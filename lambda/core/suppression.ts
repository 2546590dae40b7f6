/** Why a recipient is on the suppression list. */
export interface Suppression {
  /** Lower-cased address. */
  readonly address: string;
  /** e.g. "hard bounce: 550 5.1.1 user unknown", "complaint", "added by an operator". */
  readonly reason: string;
  /** ISO 8601. */
  readonly since: string;
  /** Epoch seconds after which the entry no longer applies (DynamoDB TTL); absent: never expires. */
  readonly expiresAt?: number;
}

/** The recipients the relay must not send to (hard bounces, complaints), shared by every route. */
export interface SuppressionList {
  /** The suppressed ones among these addresses (any case), keyed by lower-cased address. */
  find(addresses: readonly string[], signal?: AbortSignal): Promise<Map<string, Suppression>>;
}
