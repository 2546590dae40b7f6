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
}

export class RelayFailure extends Error implements FailureDetails {
  readonly failureClass: FailureClass;
  readonly code: string;
  readonly reason: string;
  readonly hint?: string;
  readonly provider?: string;
  readonly retryAfterSeconds?: number;

  constructor(details: FailureDetails, options?: { cause?: unknown }) {
    super(`${details.provider ? `${details.provider}: ` : ''}${details.code}: ${details.reason}`, options);
    this.name = 'RelayFailure';
    this.failureClass = details.failureClass;
    this.code = details.code;
    this.reason = details.reason;
    if (details.hint !== undefined) this.hint = details.hint;
    if (details.provider !== undefined) this.provider = details.provider;
    if (details.retryAfterSeconds !== undefined) this.retryAfterSeconds = details.retryAfterSeconds;
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
}

interface FailureRule {
  readonly provider: string;
  readonly code: string;
  readonly failureClass: FailureClass;
  readonly hint?: string;
}

/** Network-level codes from Node and the AWS SDK: nothing reached the provider or the answer was lost. */
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

// Sources: SES v2 SendEmail errors (docs.aws.amazon.com/ses/latest/APIReference-V2/API_SendEmail.html).
const FAILURE_TABLE: readonly FailureRule[] = [
  {
    provider: 'ses',
    code: 'TooManyRequestsException',
    failureClass: 'transient',
    hint: 'SES sending rate exceeded; the relay retries. Raise the SES rate or lower sendFunction.maxConcurrency.',
  },
  { provider: 'ses', code: 'ThrottlingException', failureClass: 'transient' },
  { provider: 'ses', code: 'InternalFailure', failureClass: 'transient' },
  { provider: 'ses', code: 'ServiceUnavailable', failureClass: 'transient' },
  {
    provider: 'ses',
    code: 'LimitExceededException',
    failureClass: 'provider',
    hint: 'The SES daily sending quota is used up; request a higher quota in the SES console.',
  },
  {
    provider: 'ses',
    code: 'SendingPausedException',
    failureClass: 'provider',
    hint: 'Sending is paused for the account or configuration set (often after high bounce/complaint rates); check SES reputation.',
  },
  {
    provider: 'ses',
    code: 'AccountSuspendedException',
    failureClass: 'provider',
    hint: 'The SES account may not send; contact AWS Support.',
  },
  {
    provider: 'ses',
    code: 'MailFromDomainNotVerifiedException',
    failureClass: 'provider',
    hint: "The identity's custom MAIL FROM domain is not verified; check its MX and SPF records.",
  },
  {
    provider: 'ses',
    code: 'AccessDeniedException',
    failureClass: 'provider',
    hint: 'The function may not send as this identity; check ses.identities in the configuration and redeploy.',
  },
  {
    provider: 'ses',
    code: 'NotFoundException',
    failureClass: 'provider',
    hint: 'A resource named in the request does not exist, usually ses.configurationSetName.',
  },
  {
    provider: 'ses',
    code: 'MessageRejected',
    failureClass: 'permanent',
    hint: 'SES refused this message: its content, or (in the SES sandbox) a recipient that is not verified.',
  },
  { provider: 'ses', code: 'BadRequestException', failureClass: 'permanent' },
];

const RULES = new Map(FAILURE_TABLE.map((rule) => [`${rule.provider}:${rule.code}`, rule]));

/** Classifies a provider fault: the table first, then the HTTP status, then "assume transient". */
export function classifyFault(fault: ProviderFault, cause?: unknown): RelayFailure {
  const rule = RULES.get(`${fault.provider}:${fault.code}`);
  const failureClass = rule?.failureClass ?? classifyByStatus(fault);
  const details: FailureDetails = {
    failureClass,
    code: fault.code,
    reason: fault.message,
    provider: fault.provider,
    ...(rule?.hint !== undefined && { hint: rule.hint }),
    ...(fault.retryAfterSeconds !== undefined && { retryAfterSeconds: fault.retryAfterSeconds }),
  };
  return new RelayFailure(details, { cause });
}

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
