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

interface FailureRule {
  readonly provider: string;
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
  {
    provider: 'ses',
    code: 'TooManyRecipients',
    failureClass: 'permanent',
    cannotCarry: true,
    hint: 'SES takes at most 50 recipients per message: split the message, or send it through Graph or SMTP (Exchange Online takes 500).',
  },
  {
    provider: 'ses',
    code: 'MessageTooLarge',
    failureClass: 'permanent',
    cannotCarry: true,
    hint: 'SES takes at most 40 MB per message once encoded; send large files through Microsoft Graph (150 MB) or as links.',
  },
  {
    // docs.aws.amazon.com/ses/latest/APIReference-V2/API_Destination.html: SES does not support SMTPUTF8.
    provider: 'ses',
    code: 'AddressNotSupported',
    failureClass: 'provider',
    cannotCarry: true,
    hint: 'SES cannot send from or to an address whose local part is not ASCII (SMTPUTF8): route such messages through Microsoft Graph or an SMTP server that offers SMTPUTF8.',
  },

  // Microsoft Graph: learn.microsoft.com/graph/errors, /graph/throttling and the Outlook mail API.
  {
    provider: 'graph',
    code: 'TooManyRequests',
    failureClass: 'transient',
    hint: 'Graph throttled this app for this mailbox (10,000 requests per 10 minutes, 4 at a time); the relay waits for Retry-After.',
  },
  { provider: 'graph', code: 'ApplicationThrottled', failureClass: 'transient' },
  { provider: 'graph', code: 'MailboxConcurrency', failureClass: 'transient' },
  { provider: 'graph', code: 'ServiceUnavailable', failureClass: 'transient' },
  { provider: 'graph', code: 'ErrorServerBusy', failureClass: 'transient' },
  { provider: 'graph', code: 'ErrorTimeoutExpired', failureClass: 'transient' },
  {
    provider: 'graph',
    code: 'InvalidAuthenticationToken',
    failureClass: 'provider',
    hint: 'Graph rejected the access token: check that graph.tenantId is the tenant of the mailbox and graph.cloud matches it.',
  },
  {
    provider: 'graph',
    code: 'ErrorAccessDenied',
    failureClass: 'provider',
    hint: 'Grant the app the Mail.Send application permission with admin consent; if it is scoped with RBAC for Applications, add this mailbox to its management scope.',
  },
  {
    provider: 'graph',
    code: 'AccessDenied',
    failureClass: 'provider',
    hint: 'Grant the app the Mail.Send application permission with admin consent; if it is scoped with RBAC for Applications, add this mailbox to its management scope.',
  },
  {
    provider: 'graph',
    code: 'Authorization_RequestDenied',
    failureClass: 'provider',
    hint: 'Grant the app the Mail.Send application permission with admin consent.',
  },
  {
    provider: 'graph',
    code: 'MailboxNotEnabledForRESTAPI',
    failureClass: 'provider',
    hint: 'The mailbox is inactive, soft-deleted or on-premises: Graph sends only from Exchange Online mailboxes (a shared mailbox needs no licence). Use SES or an SMTP connector for this sender.',
  },
  {
    provider: 'graph',
    code: 'ErrorQuotaExceeded',
    failureClass: 'provider',
    hint: 'The sending mailbox is over its storage quota (Sent Items counts): clean it up or set graph.saveToSentItems to false.',
  },
  {
    provider: 'graph',
    code: 'ErrorInvalidRecipients',
    failureClass: 'permanent',
    hint: 'Exchange Online refused a recipient address; fix the recipients and send again.',
  },
  {
    provider: 'graph',
    code: 'ErrorSendAsDenied',
    failureClass: 'permanent',
    hint: 'The mailbox may not send as this From address: send from the mailbox itself, or give it Send As rights on the address (Exchange admin center > mailbox > delegation).',
  },
  {
    provider: 'graph',
    code: 'ErrorInvalidUser',
    failureClass: 'permanent',
    hint: 'No Exchange Online mailbox has this From address: create one (a shared mailbox is free) or send from an existing mailbox.',
  },
  {
    provider: 'graph',
    code: 'ErrorMessageSizeExceeded',
    failureClass: 'permanent',
    hint: "The message is bigger than the mailbox's send limit (Exchange Online: 35 MB by default, up to 150 MB set by an admin).",
  },
  {
    provider: 'graph',
    code: 'ErrorRequestEntityTooLarge',
    failureClass: 'permanent',
    hint: 'Graph refused the request size; attachments over 3 MB should go through an upload session (the relay does this), so report it.',
  },
  { provider: 'graph', code: 'RequestEntityTooLarge', failureClass: 'permanent' },
  { provider: 'graph', code: 'ErrorAttachmentSizeLimitExceeded', failureClass: 'permanent' },
  { provider: 'graph', code: 'ErrorMimeContentInvalidBase64String', failureClass: 'permanent' },
  { provider: 'graph', code: 'InvalidInternetMessageHeader', failureClass: 'permanent' },
  {
    provider: 'graph',
    code: 'AddressNotSupported',
    failureClass: 'provider',
    cannotCarry: true,
    hint: 'Microsoft Graph could not carry this address; the next provider in the route may. Exchange Online mailboxes cannot have an address whose local part is not ASCII, so such a From needs an SMTP server that offers SMTPUTF8.',
  },
  // Entra ID token endpoint (AADSTS codes: learn.microsoft.com/entra/identity-platform/reference-error-codes).
  {
    provider: 'graph',
    code: 'AADSTS7000215',
    failureClass: 'provider',
    hint: 'The client secret is wrong: create a new one under the app registration > Certificates & secrets and put it in the Graph credential secret.',
  },
  {
    provider: 'graph',
    code: 'AADSTS7000222',
    failureClass: 'provider',
    hint: 'The client secret has expired: create a new one (or better, upload a certificate) and update the Graph credential secret.',
  },
  {
    provider: 'graph',
    code: 'AADSTS700027',
    failureClass: 'provider',
    hint: 'Entra ID rejected the certificate assertion: the certificate in the Graph credential secret must be the one uploaded to the app registration, with its matching private key.',
  },
  {
    provider: 'graph',
    code: 'AADSTS700016',
    failureClass: 'provider',
    hint: 'No app with graph.clientId exists in graph.tenantId: check both ids, and that admin consent was granted in this tenant.',
  },
  {
    provider: 'graph',
    code: 'AADSTS90002',
    failureClass: 'provider',
    hint: 'The tenant graph.tenantId does not exist in this cloud: check the id and graph.cloud.',
  },
  {
    provider: 'graph',
    code: 'AADSTS53003',
    failureClass: 'provider',
    hint: "Conditional Access blocked the app's token: allow the relay's egress IP in the policy's named location.",
  },
  {
    provider: 'graph',
    code: 'AADSTS7000112',
    failureClass: 'provider',
    hint: 'The app registration is disabled in the tenant: enable its service principal (Enterprise applications).',
  },
  {
    provider: 'graph',
    code: 'invalid_client',
    failureClass: 'provider',
    hint: 'Entra ID refused the app credential: check the Graph credential secret and graph.clientId.',
  },
  {
    provider: 'graph',
    code: 'GraphCredentialNotSet',
    failureClass: 'provider',
    hint: 'Put the app credential in the secret (GraphCredentialSecretArn output): {"clientSecret": "..."} or {"certificate": "PEM", "privateKey": "PEM"}. See the README, Microsoft Graph setup.',
  },
  {
    provider: 'graph',
    code: 'GraphCredentialInvalid',
    failureClass: 'provider',
    hint: 'The Graph credential secret must be JSON: {"clientSecret": "..."} or {"certificate": "PEM", "privateKey": "PEM"}.',
  },
  {
    provider: 'graph',
    code: 'GraphCredentialUnavailable',
    failureClass: 'provider',
    hint: 'The send function could not read the Graph credential secret: check that it exists and that its KMS key lets the function decrypt it.',
  },

  // SMTP (Exchange Online connectors, smart hosts), by enhanced status code; see docs/static-egress.md.
  {
    provider: 'smtp',
    code: '5.7.708',
    failureClass: 'provider',
    hint: "Exchange Online does not accept mail from this IP: check that the inbound connector lists the relay's egress IPs (EgressIps output) and that it is of type OnPremises; a new IP may also need delisting at sender.office.com.",
  },
  {
    provider: 'smtp',
    code: '5.7.64',
    failureClass: 'provider',
    hint: "TenantAttribution: the connector no longer recognises the sender, usually because the egress IP changed; update the inbound connector's SenderIPAddresses to the EgressIps output.",
  },
  {
    provider: 'smtp',
    code: '5.7.606',
    failureClass: 'provider',
    hint: "Microsoft has banned the sending IP; request delisting at sender.office.com (use the relay's egress IP).",
  },
  {
    provider: 'smtp',
    code: '4.7.500',
    failureClass: 'transient',
    hint: 'Exchange Online is busy (server busy); the relay retries later.',
  },
  {
    provider: 'smtp',
    code: 'SendAsDenied',
    failureClass: 'permanent',
    hint: 'The authenticated account may not send as this From address: give it Send As rights on the address, or send from the account itself (or use a route that rewrites From).',
  },
  {
    provider: 'smtp',
    code: 'AuthenticationFailed',
    failureClass: 'provider',
    hint: 'The SMTP server refused the credentials: check the user and password in the secret; for Exchange Online use XOAUTH2 (Basic auth for SMTP is being retired) and enable SMTP AUTH on the mailbox.',
  },
  {
    provider: 'smtp',
    code: 'TlsFailed',
    failureClass: 'provider',
    hint: 'TLS with the SMTP server failed: check the host name matches its certificate and that the server offers STARTTLS (certificate checks stay on).',
  },
  {
    provider: 'smtp',
    code: 'Port25Blocked',
    failureClass: 'provider',
    hint: 'Connections to port 25 timed out: AWS blocks outbound port 25 until a removal request is approved (only for functions behind a NAT gateway); see docs/static-egress.md.',
  },
  {
    provider: 'smtp',
    code: '5.3.4',
    failureClass: 'permanent',
    hint: "The message is larger than the SMTP server accepts; lower message.maxMessageBytes or raise the server's limit.",
  },
  {
    provider: 'smtp',
    code: '5.1.1',
    failureClass: 'permanent',
    hint: 'The recipient address does not exist at its mail server; fix the address.',
  },
  {
    provider: 'smtp',
    code: '5.5.105',
    failureClass: 'permanent',
    hint: 'Exchange Online High Volume Email delivers only to recipients in its own tenant: send mail for outside recipients through another route or SMTP connection.',
  },
  {
    provider: 'smtp',
    code: 'AddressNotSupported',
    failureClass: 'provider',
    cannotCarry: true,
    hint: 'The SMTP server does not offer SMTPUTF8 (RFC 6531), so it cannot take an address whose local part is not ASCII: use a server that offers it, or another provider in the route.',
  },
  {
    provider: 'smtp',
    code: 'MessageTooLarge',
    failureClass: 'permanent',
    cannotCarry: true,
    hint: 'The message is larger than the server takes (its maxMessageBytes): send large files through Microsoft Graph (150 MB) or as links.',
  },

  {
    provider: 'smtp',
    code: 'SmtpCredentialNotSet',
    failureClass: 'provider',
    hint: 'Put the SMTP user and password in the secret named by credentialSecretArn (smtp.credentialSecretArn, or smtp.connections.<name>.credentialSecretArn for a named connection), as {"username": "...", "password": "..."}.',
  },
  {
    provider: 'smtp',
    code: 'SmtpCredentialInvalid',
    failureClass: 'provider',
    hint: 'The SMTP credential secret must be JSON: {"username": "...", "password": "..."}.',
  },
  {
    provider: 'smtp',
    code: 'SmtpCredentialUnavailable',
    failureClass: 'provider',
    hint: 'The send function could not read the SMTP credential secret: check that it exists and that its KMS key lets the function decrypt it.',
  },

  // Attachments the relay reads from its S3 bucket.
  {
    provider: 's3',
    code: 'NoSuchKey',
    failureClass: 'permanent',
    hint: 'Upload the attachment before enqueueing the message; objects in the attachment bucket expire after attachments.retentionDays.',
  },
  { provider: 's3', code: 'NoSuchBucket', failureClass: 'permanent' },
  {
    provider: 's3',
    code: 'AccessDenied',
    failureClass: 'transient',
    hint: 'The send function may not read this object (bucket policy or KMS key); fix the deployment and the retries will pick it up.',
  },
];

const RULES = new Map(FAILURE_TABLE.map((rule) => [`${rule.provider}:${rule.code}`, rule]));

/**
 * The kind of provider a provider name stands for, which the failure table's rules are written for:
 * every named SMTP connection (`smtp:billing-ovh`) is an `smtp` provider, classified the same.
 */
export function providerFamily(provider: string): string {
  const separator = provider.indexOf(':');
  return separator < 0 ? provider : provider.slice(0, separator);
}

/**
 * Classifies a provider fault: the table first (by the provider's family), then the HTTP status, then
 * "assume transient". The failure keeps the provider's own name (`smtp:billing-ovh`).
 */
export function classifyFault(fault: ProviderFault, cause?: unknown): RelayFailure {
  const rule = RULES.get(`${providerFamily(fault.provider)}:${fault.code}`);
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
