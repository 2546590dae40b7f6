import type { BounceCause } from './feedback/feedback-event.ts';
import { truncate } from './text.ts';

/** Why an address is suppressed: the bounce's cause, a complaint, or an operator's decision. */
export type SuppressionCause = BounceCause | 'complaint' | 'operator';

/** The most of the remote server's words a suppression entry keeps. */
export const SUPPRESSION_DIAGNOSTIC_MAX = 200;

/** What the relay was told when it suppressed an address. */
export interface SuppressionEvidence {
  /** Enhanced status code (RFC 3463), e.g. 5.1.1. */
  readonly status?: string;
  /** An excerpt of the remote server's words, at most SUPPRESSION_DIAGNOSTIC_MAX characters. */
  readonly diagnostic?: string;
  /** The provider that sent the message that bounced or was complained about: graph, smtp, ses … */
  readonly provider?: string;
}

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
  /** Absent on entries written before causes were kept. */
  readonly cause?: SuppressionCause;
  readonly evidence?: SuppressionEvidence;
}

/** The recipients the relay must not send to (hard bounces, complaints), shared by every route. */
export interface SuppressionList {
  /** The suppressed ones among these addresses (any case), keyed by lower-cased address. */
  find(addresses: readonly string[], signal?: AbortSignal): Promise<Map<string, Suppression>>;
}

/** One soft bounce of an address, as the soft-bounce threshold counts it. */
export interface SoftBounce {
  /** The message that bounced, so a retried batch does not count it twice; absent: counted every time. */
  readonly messageId?: string;
  /** ISO 8601: when the provider saw it. */
  readonly at: string;
}

/** Counts each address's soft bounces over a window of days (the soft-bounce threshold). */
export interface SoftBounceCounter {
  /**
   * Counts this bounce (once per message) and returns how many the address had in its current window,
   * which opens at its first soft bounce and lasts `windowDays`.
   */
  countSoftBounce(address: string, bounce: SoftBounce, windowDays: number): Promise<number>;
}

/** The remote server's words as an entry keeps them: spaces folded, at most 200 characters (… when cut). */
export function diagnosticExcerpt(diagnostic: string): string {
  const folded = diagnostic.replace(/\s+/g, ' ').trim();
  if (folded.length <= SUPPRESSION_DIAGNOSTIC_MAX) return folded;
  return `${truncate(folded, SUPPRESSION_DIAGNOSTIC_MAX - 1).trimEnd()}…`;
}
