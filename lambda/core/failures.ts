import { truncate } from './text.ts';

/**
 * How the relay classifies every failure, in one table:
 * - transient: try the same provider again later (throttling, 5xx, network);
 * - provider: this provider cannot send for this sender right now (auth, paused account); a later
 *   provider in the chain may, otherwise it is retried like a transient failure;
 * - permanent: this message can never succeed as written; dead-letter it now with the reason.
 */
export type FailureClass = 'transient' | 'provider' | 'permanent';

export interface FailureDetails {
  readonly failureClass: FailureClass;
  /** Stable code: the provider's error code, or one of the relay's own (InvalidMessage …). */
  readonly code: string;
  readonly reason: string;
  /** What a human should do about it, when we know. */
  readonly hint?: string;
  readonly provider?: string;
  readonly retryAfterSeconds?: number;
  /**
   * The request that sends the message was written in full and its answer was lost (a timeout or a
   * reset before the reply): the provider may have accepted the message. Such a failure is never
   * retried or passed to the next provider as if nothing had happened. Absent: nothing was sent.
   */
  readonly maybeSent?: boolean;
  /**
   * This provider cannot take this message as it is (more recipients or bytes than it takes, an
   * address it cannot write); the next provider of the route may. About the message, not the
   * provider's health: no circuit breaker counts it, and no retry on the same provider helps.
   */
  readonly cannotCarry?: boolean;
}

export class RelayFailure extends Error implements FailureDetails {
  readonly failureClass: FailureClass;
  readonly code: string;
  readonly reason: string;
  readonly hint?: string;
  readonly provider?: string;
  readonly retryAfterSeconds?: number;
  readonly maybeSent: boolean;
  readonly cannotCarry: boolean;

  constructor(details: FailureDetails, options?: { cause?: unknown }) {
    super(`${details.provider ? `${details.provider}: ` : ''}${details.code}: ${details.reason}`, options);
    this.name = 'RelayFailure';
    this.failureClass = details.failureClass;
    this.code = details.code;
    this.reason = details.reason;
    if (details.hint !== undefined) this.hint = details.hint;
    if (details.provider !== undefined) this.provider = details.provider;
    if (details.retryAfterSeconds !== undefined) this.retryAfterSeconds = details.retryAfterSeconds;
    this.maybeSent = details.maybeSent === true;
    this.cannotCarry = details.cannotCarry === true;
  }
}

/** A provider failure reduced to what classification needs; each provider adapter builds one. */
export interface ProviderFault {
  readonly provider: string;
  readonly code: string;
  readonly message: string;
  /** HTTP status (Graph, SES) or SMTP reply code, when there is one. */
  readonly status?: number;
  readonly retryAfterSeconds?: number;
  /** Class for codes the table does not know, when the status says little (e.g. a token endpoint refusal). */
  readonly fallbackClass?: FailureClass;
  /** The sending request was written in full and no answer came back (see FailureDetails.maybeSent). */
  readonly maybeSent?: boolean;
}

/** How one of a provider's error codes is classified: one row of the failure table. */
export interface FailureRule {
  /** The provider's error code (an SES exception, a Graph error code, an SMTP enhanced status …). */
  readonly code: string;
  readonly failureClass: FailureClass;
  readonly hint?: string;
  /** The provider cannot take this message; the next of the route may (FailureDetails.cannotCarry). */
  readonly cannotCarry?: true;
}

/**
 * Network-level codes from Node and the AWS SDK. Alone they do not say whether the request reached the
 * provider: the adapter that saw the failure says that (ProviderFault.maybeSent).
 */
export const NETWORK_ERROR_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ENETUNREACH',
  'EHOSTUNREACH',
  'TimeoutError',
  'RequestTimeout',
  'NetworkingError',
]);

/**
 * One provider family's rows of the failure table (each provider folder has its own, the relay's
 * own sources such as the attachment bucket too): every failure a provider reports is classified by
 * its family's rows, then by the HTTP status, then as "assume transient".
 */
export class FailureTable {
  private readonly byCode: ReadonlyMap<string, FailureRule>;

  /**
   * @param family - the kind of provider the rows are written for (`smtp` also classifies `smtp:billing`)
   */
  constructor(
    readonly family: string,
    readonly rules: readonly FailureRule[],
  ) {
    this.byCode = new Map(rules.map((rule) => [rule.code, rule]));
  }

  /** The row for a code, if the table has one. */
  ruleFor(code: string): FailureRule | undefined {
    return this.byCode.get(code);
  }

  /** Classifies a fault of this family; the failure keeps the provider's own name (`smtp:billing-ovh`). */
  classify(fault: ProviderFault, cause?: unknown): RelayFailure {
    return classifyWith(this.ruleFor(fault.code), fault, cause);
  }
}

/**
 * The kind of provider a provider name stands for, which the failure table's rules are written for:
 * every named SMTP connection (`smtp:billing-ovh`) is an `smtp` provider, classified the same.
 */
export function providerFamily(provider: string): string {
  const separator = provider.indexOf(':');
  return separator < 0 ? provider : provider.slice(0, separator);
}

/** Classifies a fault no table row knows: by the fault's own fallback class, then its status. */
export function classifyFault(fault: ProviderFault, cause?: unknown): RelayFailure {
  return classifyWith(undefined, fault, cause);
}

function classifyWith(rule: FailureRule | undefined, fault: ProviderFault, cause: unknown): RelayFailure {
  const failureClass = rule?.failureClass ?? fault.fallbackClass ?? classifyByStatus(fault);
  const details: FailureDetails = {
    failureClass,
    code: fault.code,
    reason: fault.message,
    provider: fault.provider,
    ...(rule?.hint !== undefined && { hint: rule.hint }),
    ...(fault.retryAfterSeconds !== undefined && { retryAfterSeconds: fault.retryAfterSeconds }),
    ...(fault.maybeSent === true && { maybeSent: true, hint: ANSWER_LOST_HINT }),
    ...(rule?.cannotCarry && { cannotCarry: true }),
  };
  return new RelayFailure(details, { cause });
}

/** Attachments and stored submissions the relay reads from its S3 buckets. */
export const S3_FAILURES = new FailureTable('s3', [
  // Attachments the relay reads from its S3 bucket.
  {
    code: 'NoSuchKey',
    failureClass: 'permanent',
    hint: 'Upload the attachment before enqueueing the message; objects in the attachment bucket expire after attachments.retentionDays.',
  },
  { code: 'NoSuchBucket', failureClass: 'permanent' },
  {
    code: 'AccessDenied',
    failureClass: 'transient',
    hint: 'The send function may not read this object (bucket policy or KMS key); fix the deployment and the retries will pick it up.',
  },
]);

/** What to do about a message whose answer was lost, when the relay could not find out itself. */
export const ANSWER_LOST_HINT =
  "The provider may have sent it: look for its Message-ID in the sending mailbox's Sent Items (Graph), the server's log (SMTP) or the SES events. To send it anyway, release it with `mail-relay dlq redrive`.";

function classifyByStatus(fault: ProviderFault): FailureClass {
  if (NETWORK_ERROR_CODES.has(fault.code)) return 'transient';
  const status = fault.status;
  // Unknown failures are retried, never dropped: the attempt limit then dead-letters them with the reason.
  if (status === undefined || status === 408 || status === 429 || status >= 500) return 'transient';
  if (status === 401 || status === 403) return 'provider';
  return 'permanent';
}

/** Anything thrown that is not already classified (a bug, an SDK surprise) is retried, not lost. */
export function toRelayFailure(error: unknown): RelayFailure {
  if (error instanceof RelayFailure) return error;
  const message = error instanceof Error ? error.message : String(error);
  return new RelayFailure(
    { failureClass: 'transient', code: 'UnexpectedError', reason: truncate(message, 500) },
    { cause: error },
  );
}
