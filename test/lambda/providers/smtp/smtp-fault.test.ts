import { describe, expect, it } from 'vitest';
import { parseSmtpReply, smtpFailure } from '../../../../lambda/providers/smtp/smtp-fault.ts';

const connector = { host: 'contoso-com.mail.protection.outlook.com', port: 25 };

/** The shape nodemailer gives a refused command. */
const refused = (response: string, command = 'MAIL FROM', code = 'EENVELOPE') => ({
  code,
  command,
  response,
  responseCode: Number(response.slice(0, 3)),
  message: `Mail command failed: ${response}`,
});

describe('parseSmtpReply', () => {
  it('reads the basic code, the enhanced status and the text', () => {
    expect(
      parseSmtpReply('550 5.7.708 Service unavailable. Access denied, traffic not accepted from this IP.'),
    ).toEqual({
      code: 550,
      enhanced: '5.7.708',
      text: 'Service unavailable. Access denied, traffic not accepted from this IP.',
    });
  });

  it('joins a multi-line reply and finds its enhanced status', () => {
    expect(
      parseSmtpReply('550-5.7.1 Client does not have permissions\r\n550 5.7.1 to send as this sender'),
    ).toEqual({
      code: 550,
      enhanced: '5.7.1',
      text: 'Client does not have permissions to send as this sender',
    });
  });

  it('accepts a reply without an enhanced status, and nothing that is not a reply', () => {
    expect(parseSmtpReply('421 Too many connections')).toEqual({ code: 421, text: 'Too many connections' });
    expect(parseSmtpReply('connect ECONNREFUSED 127.0.0.1:25')).toBeUndefined();
    expect(parseSmtpReply(undefined)).toBeUndefined();
  });
});

describe('smtpFailure', () => {
  it.each([
    [
      '550 5.7.708 Service unavailable. Access denied, traffic not accepted from this IP.',
      '5.7.708',
      'provider',
      /EgressIps/,
    ],
    ['550 5.7.64 TenantAttribution; Relay Access Denied', '5.7.64', 'provider', /egress IP changed/],
    ['550 5.7.606 Access denied, banned sending IP', '5.7.606', 'provider', /delisting/],
    ['451 4.7.500 Server busy. Please try again later.', '4.7.500', 'transient', /busy/],
    [
      '550 5.7.1 Client does not have permissions to send as this sender',
      'SendAsDenied',
      'permanent',
      /Send As rights/,
    ],
    [
      '552 5.3.4 Message size exceeds fixed maximum message size',
      '5.3.4',
      'permanent',
      /larger than the SMTP server accepts/,
    ],
    ['550 5.1.1 User unknown', '5.1.1', 'permanent', /does not exist/],
    // Refusals of the path, not of the message: the next provider of the route may carry it.
    [
      '550 5.7.54 SMTP; Unable to relay recipient in non-accepted domain',
      '5.7.54',
      'provider',
      /connector did not match/,
    ],
    ['550 5.7.68 TenantInboundAttribution; Direct Send not allowed', '5.7.68', 'provider', /Direct Send/],
    [
      '550 5.7.30 Basic authentication is not supported for Client Submission.',
      '5.7.30',
      'provider',
      /xoauth2/,
    ],
    [
      '535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled',
      '5.7.139',
      'provider',
      /SMTP AUTH is disabled/,
    ],
    [
      '530 5.7.57 Client not authenticated to send mail',
      '5.7.57',
      'provider',
      /authenticate before MAIL FROM/,
    ],
    [
      '550 5.7.515 Access denied, sending domain does not meet the required authentication level',
      '5.7.515',
      'permanent',
      /SPF, DKIM and DMARC/,
    ],
  ] as const)('%s → %s (%s) with a hint', (response, code, failureClass, hint) => {
    const failure = smtpFailure(refused(response), connector);
    expect(failure).toMatchObject({ code, failureClass, provider: 'smtp' });
    expect(failure.hint).toMatch(hint);
    expect(failure.reason).toContain(response.slice(4));
    expect(failure.reason).toContain('contoso-com.mail.protection.outlook.com:25');
  });

  it('follows SMTP semantics for codes the table does not know: 4xx transient, 5xx permanent', () => {
    expect(smtpFailure(refused('452 4.3.1 Insufficient system resources'), connector).failureClass).toBe(
      'transient',
    );
    expect(smtpFailure(refused('554 5.6.0 Message rejected'), connector).failureClass).toBe('permanent');
    expect(smtpFailure(refused('421 Service not available'), connector)).toMatchObject({
      code: 'SMTP421',
      failureClass: 'transient',
    });
  });

  it('tells a 5.7.1 relay refusal (not send-as) apart from send-as', () => {
    expect(smtpFailure(refused('550 5.7.1 Unable to relay'), connector).code).toBe('5.7.1');
  });

  it('classifies refused credentials as provider-level', () => {
    const failure = smtpFailure(
      {
        code: 'EAUTH',
        command: 'AUTH PLAIN',
        response: '535 5.7.3 Authentication unsuccessful',
        responseCode: 535,
      },
      { host: 'smtp.office365.com', port: 587 },
    );
    expect(failure).toMatchObject({ code: 'AuthenticationFailed', failureClass: 'provider' });
    expect(failure.hint).toMatch(/XOAUTH2/);
  });

  it('reports a port-25 timeout with the AWS port-25 hint, not as a generic network error', () => {
    const failure = smtpFailure({ code: 'ETIMEDOUT', message: 'Connection timeout' }, connector);
    expect(failure).toMatchObject({ code: 'Port25Blocked', failureClass: 'provider' });
    expect(failure.hint).toMatch(/AWS blocks outbound port 25/);
    expect(
      smtpFailure(
        { code: 'ETIMEDOUT', message: 'Connection timeout' },
        { host: 'smtp.example.com', port: 587 },
      ),
    ).toMatchObject({ code: 'ETIMEDOUT', failureClass: 'transient' });
  });

  it('classifies a certificate problem as a TLS failure', () => {
    expect(
      smtpFailure({ code: 'ESOCKET', message: 'self-signed certificate in certificate chain' }, connector),
    ).toMatchObject({ code: 'TlsFailed', failureClass: 'provider' });
  });

  it('retries a refused connection', () => {
    expect(
      smtpFailure({ code: 'ECONNREFUSED', message: 'connect ECONNREFUSED 127.0.0.1:25' }, connector),
    ).toMatchObject({ code: 'ECONNREFUSED', failureClass: 'transient' });
  });
});

describe('smtpFailure for a named connection', () => {
  it('names the connection and classifies the reply by the smtp rules', () => {
    const failure = smtpFailure(
      refused('550 5.7.708 Service unavailable. Access denied, traffic not accepted from this IP.'),
      { ...connector, provider: 'smtp:billing-ovh' },
    );

    expect(failure).toMatchObject({
      provider: 'smtp:billing-ovh',
      code: '5.7.708',
      failureClass: 'provider',
      hint: expect.stringMatching(/EgressIps/),
    });
  });
});
