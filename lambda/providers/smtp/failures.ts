import { FailureTable } from '../../core/failures.ts';

/** SMTP servers (Exchange Online connectors, smart hosts), by enhanced status code or the relay's own codes; see docs/static-egress.md. */
export const SMTP_FAILURES = new FailureTable('smtp', [
  // SMTP (Exchange Online connectors, smart hosts), by enhanced status code; see docs/static-egress.md.
  {
    code: '5.7.708',
    failureClass: 'provider',
    hint: "Exchange Online does not accept mail from this IP: check that the inbound connector lists the relay's egress IPs (EgressIps output) and that it is of type OnPremises; a new IP may also need delisting at sender.office.com.",
  },
  {
    code: '5.7.64',
    failureClass: 'provider',
    hint: "TenantAttribution: the connector no longer recognises the sender, usually because the egress IP changed; update the inbound connector's SenderIPAddresses to the EgressIps output.",
  },
  {
    code: '5.7.606',
    failureClass: 'provider',
    hint: "Microsoft has banned the sending IP; request delisting at sender.office.com (use the relay's egress IP).",
  },
  {
    code: '5.7.54',
    failureClass: 'provider',
    hint: "Exchange Online will not relay to a domain outside the tenant for this client: the inbound connector did not match it (its egress IP or certificate), so the mail counts as anonymous; check the connector's SenderIPAddresses against the EgressIps output.",
  },
  {
    code: '5.7.68',
    failureClass: 'provider',
    hint: 'The tenant rejects Direct Send (Set-OrganizationConfig -RejectDirectSend $true): unauthenticated mail to its MX from its own domains needs an inbound connector that trusts the relay (smtp mode "connector", docs/static-egress.md).',
  },
  {
    code: '5.7.30',
    failureClass: 'provider',
    hint: 'Basic authentication for SMTP AUTH is off in this Exchange Online tenant: use auth "xoauth2" (the Graph app with SMTP.SendAsApp) or send through Graph.',
  },
  {
    code: '5.7.139',
    failureClass: 'provider',
    hint: 'Exchange Online refused the login: SMTP AUTH is disabled for the tenant or the mailbox (Set-CASMailbox -SmtpClientAuthenticationDisabled $false), or security defaults block Basic auth; prefer xoauth2 or Graph.',
  },
  {
    code: '5.7.57',
    failureClass: 'provider',
    hint: 'The server requires the client to authenticate before MAIL FROM (port 587 is submission): set auth to plain, login or xoauth2, or use the tenant MX on port 25 with a connector.',
  },
  {
    code: '5.7.515',
    failureClass: 'permanent',
    hint: "The recipient's provider (Outlook.com since May 2025) refuses bulk mail whose domain lacks SPF, DKIM and DMARC that pass: publish them for the sending domain (mail-relay doctor checks them).",
  },
  {
    code: '4.7.500',
    failureClass: 'transient',
    hint: 'Exchange Online is busy (server busy); the relay retries later.',
  },
  {
    code: 'SendAsDenied',
    failureClass: 'permanent',
    hint: 'The authenticated account may not send as this From address: give it Send As rights on the address, or send from the account itself (or use a route that rewrites From).',
  },
  {
    code: 'AuthenticationFailed',
    failureClass: 'provider',
    hint: 'The SMTP server refused the credentials: check the user and password in the secret; for Exchange Online use XOAUTH2 (Basic auth for SMTP is being retired) and enable SMTP AUTH on the mailbox.',
  },
  {
    code: 'TlsFailed',
    failureClass: 'provider',
    hint: 'TLS with the SMTP server failed: check the host name matches its certificate and that the server offers STARTTLS (certificate checks stay on).',
  },
  {
    code: 'Port25Blocked',
    failureClass: 'provider',
    hint: 'Connections to port 25 timed out: AWS blocks outbound port 25 until a removal request is approved (only for functions behind a NAT gateway); see docs/static-egress.md.',
  },
  {
    code: '5.3.4',
    failureClass: 'permanent',
    hint: "The message is larger than the SMTP server accepts; lower message.maxMessageBytes or raise the server's limit.",
  },
  {
    code: '5.1.1',
    failureClass: 'permanent',
    hint: 'The recipient address does not exist at its mail server; fix the address.',
  },
  {
    code: '5.5.105',
    failureClass: 'permanent',
    hint: 'Exchange Online High Volume Email delivers only to recipients in its own tenant: send mail for outside recipients through another route or SMTP connection.',
  },
  {
    code: 'AddressNotSupported',
    failureClass: 'provider',
    cannotCarry: true,
    hint: 'The SMTP server does not offer SMTPUTF8 (RFC 6531), so it cannot take an address whose local part is not ASCII: use a server that offers it, or another provider in the route.',
  },
  {
    code: 'MessageTooLarge',
    failureClass: 'permanent',
    cannotCarry: true,
    hint: 'The message is larger than the server takes (its maxMessageBytes): send large files through Microsoft Graph (150 MB) or as links.',
  },
  {
    code: 'SmtpCredentialNotSet',
    failureClass: 'provider',
    hint: 'Put the SMTP user and password in the secret named by credentialSecretArn (smtp.credentialSecretArn, or smtp.connections.<name>.credentialSecretArn for a named connection), as {"username": "...", "password": "..."}.',
  },
  {
    code: 'SmtpCredentialInvalid',
    failureClass: 'provider',
    hint: 'The SMTP credential secret must be JSON: {"username": "...", "password": "..."}.',
  },
  {
    code: 'SmtpCredentialUnavailable',
    failureClass: 'provider',
    hint: 'The send function could not read the SMTP credential secret: check that it exists and that its KMS key lets the function decrypt it.',
  },
]);
