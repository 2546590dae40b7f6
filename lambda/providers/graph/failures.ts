import { FailureTable } from '../../core/failures.ts';

/** Microsoft Graph and its token endpoint (Entra ID): how each error code is classified. */
export const GRAPH_FAILURES = new FailureTable('graph', [
  // Microsoft Graph: learn.microsoft.com/graph/errors, /graph/throttling and the Outlook mail API.
  {
    code: 'TooManyRequests',
    failureClass: 'transient',
    hint: 'Graph throttled this app for this mailbox (10,000 requests per 10 minutes, 4 at a time); the relay waits for Retry-After.',
  },
  { code: 'ApplicationThrottled', failureClass: 'transient' },
  { code: 'MailboxConcurrency', failureClass: 'transient' },
  { code: 'ServiceUnavailable', failureClass: 'transient' },
  { code: 'ErrorServerBusy', failureClass: 'transient' },
  { code: 'ErrorTimeoutExpired', failureClass: 'transient' },
  {
    code: 'InvalidAuthenticationToken',
    failureClass: 'provider',
    hint: 'Graph rejected the access token: check that graph.tenantId is the tenant of the mailbox and graph.cloud matches it.',
  },
  {
    code: 'ErrorAccessDenied',
    failureClass: 'provider',
    hint: 'Grant the app the Mail.Send application permission with admin consent; if it is scoped with RBAC for Applications, add this mailbox to its management scope.',
  },
  {
    code: 'AccessDenied',
    failureClass: 'provider',
    hint: 'Grant the app the Mail.Send application permission with admin consent; if it is scoped with RBAC for Applications, add this mailbox to its management scope.',
  },
  {
    code: 'Authorization_RequestDenied',
    failureClass: 'provider',
    hint: 'Grant the app the Mail.Send application permission with admin consent.',
  },
  {
    code: 'MailboxNotEnabledForRESTAPI',
    failureClass: 'provider',
    hint: 'The mailbox is inactive, soft-deleted or on-premises: Graph sends only from Exchange Online mailboxes (a shared mailbox needs no licence). Use SES or an SMTP connector for this sender.',
  },
  {
    code: 'ErrorQuotaExceeded',
    failureClass: 'provider',
    hint: 'The sending mailbox is over its storage quota (Sent Items counts): clean it up or set graph.saveToSentItems to false.',
  },
  {
    code: 'ErrorInvalidRecipients',
    failureClass: 'permanent',
    hint: 'Exchange Online refused a recipient address; fix the recipients and send again.',
  },
  {
    code: 'ErrorSendAsDenied',
    failureClass: 'permanent',
    hint: 'The mailbox may not send as this From address: send from the mailbox itself, or give it Send As rights on the address (Exchange admin center > mailbox > delegation).',
  },
  {
    code: 'ErrorInvalidUser',
    failureClass: 'permanent',
    hint: 'No Exchange Online mailbox has this From address: create one (a shared mailbox is free) or send from an existing mailbox.',
  },
  {
    code: 'ErrorMessageSizeExceeded',
    failureClass: 'permanent',
    hint: "The message is bigger than the mailbox's send limit (Exchange Online: 35 MB by default, up to 150 MB set by an admin).",
  },
  {
    code: 'ErrorRequestEntityTooLarge',
    failureClass: 'permanent',
    hint: 'Graph refused the request size; attachments over 3 MB should go through an upload session (the relay does this), so report it.',
  },
  { code: 'RequestEntityTooLarge', failureClass: 'permanent' },
  { code: 'ErrorAttachmentSizeLimitExceeded', failureClass: 'permanent' },
  { code: 'ErrorMimeContentInvalidBase64String', failureClass: 'permanent' },
  { code: 'InvalidInternetMessageHeader', failureClass: 'permanent' },
  {
    code: 'AddressNotSupported',
    failureClass: 'provider',
    cannotCarry: true,
    hint: 'Microsoft Graph could not carry this address; the next provider in the route may. Exchange Online mailboxes cannot have an address whose local part is not ASCII, so such a From needs an SMTP server that offers SMTPUTF8.',
  },
  // Entra ID token endpoint (AADSTS codes: learn.microsoft.com/entra/identity-platform/reference-error-codes).
  {
    code: 'AADSTS7000215',
    failureClass: 'provider',
    hint: 'The client secret is wrong: create a new one under the app registration > Certificates & secrets and put it in the Graph credential secret.',
  },
  {
    code: 'AADSTS7000222',
    failureClass: 'provider',
    hint: 'The client secret has expired: create a new one (or better, upload a certificate) and update the Graph credential secret.',
  },
  {
    code: 'AADSTS700027',
    failureClass: 'provider',
    hint: 'Entra ID rejected the certificate assertion: the certificate in the Graph credential secret must be the one uploaded to the app registration, with its matching private key.',
  },
  {
    code: 'AADSTS700016',
    failureClass: 'provider',
    hint: 'No app with graph.clientId exists in graph.tenantId: check both ids, and that admin consent was granted in this tenant.',
  },
  {
    code: 'AADSTS90002',
    failureClass: 'provider',
    hint: 'The tenant graph.tenantId does not exist in this cloud: check the id and graph.cloud.',
  },
  {
    code: 'AADSTS53003',
    failureClass: 'provider',
    hint: "Conditional Access blocked the app's token: allow the relay's egress IP in the policy's named location.",
  },
  {
    code: 'AADSTS7000112',
    failureClass: 'provider',
    hint: 'The app registration is disabled in the tenant: enable its service principal (Enterprise applications).',
  },
  {
    code: 'invalid_client',
    failureClass: 'provider',
    hint: 'Entra ID refused the app credential: check the Graph credential secret and graph.clientId.',
  },
  {
    code: 'GraphCredentialNotSet',
    failureClass: 'provider',
    hint: 'Put the app credential in the secret (GraphCredentialSecretArn output): {"clientSecret": "..."} or {"certificate": "PEM", "privateKey": "PEM"}. See the README, Microsoft Graph setup.',
  },
  {
    code: 'GraphCredentialInvalid',
    failureClass: 'provider',
    hint: 'The Graph credential secret must be JSON: {"clientSecret": "..."} or {"certificate": "PEM", "privateKey": "PEM"}.',
  },
  {
    code: 'GraphCredentialUnavailable',
    failureClass: 'provider',
    hint: 'The send function could not read the Graph credential secret: check that it exists and that its KMS key lets the function decrypt it.',
  },
]);
