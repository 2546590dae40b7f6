import { describe, expect, it } from 'vitest';
import { SETTINGS_ENV_VAR } from '../../../lambda/core/settings.ts';
import { ConfigurationError } from '../../../lambda/core/validation.ts';
import { sesIdentityFor } from '../../../lambda/providers/ses/settings.ts';
import { type RelaySettings, readSettings } from '../../../lambda/send/settings.ts';

const validSettings = {
  queueUrl: 'https://sqs.eu-west-1.amazonaws.com/123456789012/mail-relay-outbox',
  deadLetterQueueUrl: 'https://sqs.eu-west-1.amazonaws.com/123456789012/mail-relay-dlq',
  maxReceiveCount: 5,
  limits: { maxRecipients: 50, maxMessageBytes: 1024 * 1024 },
  ses: { identities: ['example.com', 'noreply@other.org'], configurationSetName: 'mail-relay' },
  retry: { maxAttempts: 3, baseDelaySeconds: 30, maxDelaySeconds: 900 },
  circuitBreaker: { failureThreshold: 5, cooldownSeconds: 60 },
  ledger: { tableName: 'mail-relay-ledger', leaseSeconds: 30, retentionDays: 14 },
  suppression: { tableName: 'mail-relay-suppression' },
} satisfies RelaySettings;

const graphSettings = {
  tenantId: 'contoso.onmicrosoft.com',
  clientId: '11111111-2222-3333-4444-555555555555',
  senders: ['contoso.com', 'crm@fabrikam.com'],
  credentialSecretId: 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:mail-relay/graph-AbCdEf',
  saveToSentItems: true,
  authorityHost: 'https://login.microsoftonline.com',
  graphEndpoint: 'https://graph.microsoft.com',
};

function configurationErrorOf(env: Record<string, string | undefined>): ConfigurationError {
  try {
    readSettings(env);
  } catch (error) {
    if (error instanceof ConfigurationError) return error;
    throw error;
  }
  throw new Error('expected readSettings to throw');
}

const withSettings = (settings: unknown) => ({ [SETTINGS_ENV_VAR]: JSON.stringify(settings) });

describe('readSettings', () => {
  it('reads the settings from MAIL_RELAY_SETTINGS', () => {
    expect(SETTINGS_ENV_VAR).toBe('MAIL_RELAY_SETTINGS');
    expect(readSettings(withSettings(validSettings))).toEqual(validSettings);
  });

  it('reports a missing variable', () => {
    const error = configurationErrorOf({});
    expect(error.problems).toEqual([
      'MAIL_RELAY_SETTINGS: not set (the MailRelay construct writes it; in local mode `npm start` does)',
    ]);
    expect(error.message).toMatch(/^Invalid function environment:\n {2}- MAIL_RELAY_SETTINGS: not set/);
  });

  it('reports an empty variable as not set', () => {
    expect(configurationErrorOf({ [SETTINGS_ENV_VAR]: '' }).problems).toEqual([
      'MAIL_RELAY_SETTINGS: not set (the MailRelay construct writes it; in local mode `npm start` does)',
    ]);
  });

  it('reports invalid JSON', () => {
    expect(configurationErrorOf({ [SETTINGS_ENV_VAR]: '{"maxReceiveCount": 5,' }).problems).toEqual([
      'MAIL_RELAY_SETTINGS: not valid JSON',
    ]);
  });

  it('reports every problem of the settings object at once, each prefixed with the variable name', () => {
    const error = configurationErrorOf(
      withSettings({
        deadLetterQueueUrl: 'ftp://example.com/dlq',
        maxReceiveCount: 0,
        limits: { maxRecipients: 501, maxMessageBytes: 10 },
        ses: { identities: [], region: 'eu-west-1' },
        debug: true,
      }),
    );
    expect(error.problems).toEqual([
      'MAIL_RELAY_SETTINGS.queueUrl: required',
      'MAIL_RELAY_SETTINGS.deadLetterQueueUrl: Invalid URL',
      'MAIL_RELAY_SETTINGS.maxReceiveCount: Too small: expected number to be >=1',
      "MAIL_RELAY_SETTINGS.limits.maxRecipients: at most 500 (Exchange Online's limit per message; SES takes 50)",
      'MAIL_RELAY_SETTINGS.limits.maxMessageBytes: Too small: expected number to be >=1024',
      'MAIL_RELAY_SETTINGS.retry: required',
      'MAIL_RELAY_SETTINGS.circuitBreaker: required',
      'MAIL_RELAY_SETTINGS.ledger: required',
      'MAIL_RELAY_SETTINGS.suppression: required',
      'MAIL_RELAY_SETTINGS.ses.identities: list at least one verified SES identity',
      'MAIL_RELAY_SETTINGS.ses.region: unknown field',
      'MAIL_RELAY_SETTINGS.debug: unknown field',
    ]);
  });

  it('reports an identity that is neither a domain nor an address by its index', () => {
    const settings = { ...validSettings, ses: { identities: ['example.com', 'not an identity'] } };
    expect(configurationErrorOf(withSettings(settings)).problems).toEqual([
      'MAIL_RELAY_SETTINGS.ses.identities[1]: must be a domain (example.com) or an email address (noreply@example.com) verified in SES',
    ]);
  });

  it("reports a message size over Graph's 150 MiB maximum", () => {
    const settings = {
      ...validSettings,
      limits: { maxRecipients: 50, maxMessageBytes: 150 * 1024 * 1024 + 1 },
    };
    expect(configurationErrorOf(withSettings(settings)).problems).toEqual([
      "MAIL_RELAY_SETTINGS.limits.maxMessageBytes: at most 157286400 (150 MiB, Microsoft Graph's limit; SES takes up to 40 MB)",
    ]);
  });

  it('accepts Graph alone, and Graph with SES', () => {
    const { ses: _ses, ...withoutSes } = validSettings;
    expect(readSettings(withSettings({ ...withoutSes, graph: graphSettings })).graph).toEqual(graphSettings);
    expect(readSettings(withSettings({ ...validSettings, graph: graphSettings })).ses).toEqual(
      validSettings.ses,
    );
  });

  it('requires at least one provider', () => {
    const { ses: _ses, ...withoutSes } = validSettings;
    expect(configurationErrorOf(withSettings(withoutSes)).problems).toEqual([
      'MAIL_RELAY_SETTINGS: configure at least one provider: graph (Microsoft Graph), smtp (SMTP) or ses (Amazon SES)',
    ]);
  });

  it('accepts SMTP alone, and ties its authentication to what it needs', () => {
    const { ses: _ses, ...withoutSes } = validSettings;
    const smtp = {
      name: 'smtp',
      senders: ['scanner@contoso.com'],
      mode: 'connector',
      host: 'contoso-com.mail.protection.outlook.com',
      port: 25,
      tls: 'starttls',
      requireTls: true,
      auth: 'none',
      maxConnections: 10,
    };
    expect(readSettings(withSettings({ ...withoutSes, smtp: [smtp] })).smtp).toEqual([smtp]);
    expect(
      configurationErrorOf(
        withSettings({ ...withoutSes, smtp: [{ ...smtp, mode: 'submission', auth: 'xoauth2' }] }),
      ).problems,
    ).toEqual([
      'MAIL_RELAY_SETTINGS.smtp[0].auth: xoauth2 takes its tokens from the Graph app registration: configure graph too',
    ]);
    expect(
      configurationErrorOf(
        withSettings({ ...withoutSes, smtp: [{ ...smtp, mode: 'smarthost', auth: 'plain' }] }),
      ).problems,
    ).toEqual([
      'MAIL_RELAY_SETTINGS.smtp[0].credentialSecretId: required for plain and login authentication',
    ]);
  });

  describe('with named SMTP connections', () => {
    const { ses: _ses, ...withoutSes } = validSettings;
    const connection = (name: string, fields: object = {}) => ({
      name,
      senders: ['contoso.com'],
      mode: 'smarthost',
      host: 'mail.example.net',
      port: 587,
      tls: 'starttls',
      requireTls: true,
      auth: 'none',
      maxConnections: 10,
      ...fields,
    });

    it('accepts one settings entry per connection, each named by its provider name, in order', () => {
      const smtp = [connection('smtp:billing-ovh', { port: 465, tls: 'implicit' }), connection('smtp:hve')];

      expect(readSettings(withSettings({ ...withoutSes, smtp })).smtp?.map((entry) => entry.name)).toEqual([
        'smtp:billing-ovh',
        'smtp:hve',
      ]);
    });

    it('reports each connection whose authentication lacks what it needs, at its own index', () => {
      const smtp = [connection('smtp:a', { auth: 'xoauth2' }), connection('smtp:b', { auth: 'login' })];

      expect(configurationErrorOf(withSettings({ ...withoutSes, smtp })).problems).toEqual([
        'MAIL_RELAY_SETTINGS.smtp[0].auth: xoauth2 takes its tokens from the Graph app registration: configure graph too',
        'MAIL_RELAY_SETTINGS.smtp[1].credentialSecretId: required for plain and login authentication',
      ]);
    });

    it('refuses a connection named twice, a name that is not a provider name and a pool out of range, at once', () => {
      const smtp = [connection('smtp:a'), connection('smtp:a'), connection('billing', { maxConnections: 0 })];

      expect(configurationErrorOf(withSettings({ ...withoutSes, smtp })).problems).toEqual([
        'MAIL_RELAY_SETTINGS.smtp[2].name: must be smtp or smtp:<connection name>',
        expect.stringMatching(/^MAIL_RELAY_SETTINGS\.smtp\[2\]\.maxConnections: /),
        'MAIL_RELAY_SETTINGS.smtp: names an SMTP connection twice',
      ]);
    });

    it('lets a route name a connection, and refuses what is no provider name', () => {
      const smtp = [connection('smtp:billing-ovh')];
      const route = (providers: string[]) => ({ name: 'billing', from: ['*@contoso.com'], providers });

      expect(
        readSettings(withSettings({ ...withoutSes, smtp, routes: [route(['smtp:billing-ovh', 'graph'])] }))
          .routes?.[0]?.providers,
      ).toEqual(['smtp:billing-ovh', 'graph']);
      expect(
        configurationErrorOf(withSettings({ ...withoutSes, smtp, routes: [route(['smtp:Billing', 'sms'])] }))
          .problems,
      ).toEqual([
        'MAIL_RELAY_SETTINGS.routes[0].providers[0]: must be graph, smtp (the smtp section), smtp:<name> (one of smtp.connections) or ses',
        'MAIL_RELAY_SETTINGS.routes[0].providers[1]: must be graph, smtp (the smtp section), smtp:<name> (one of smtp.connections) or ses',
      ]);
    });
  });

  it('names each invalid Graph field without echoing secrets', () => {
    const error = configurationErrorOf(
      withSettings({
        ...validSettings,
        graph: {
          ...graphSettings,
          tenantId: 'not a tenant',
          clientId: 'my-app',
          senders: [],
          graphEndpoint: 'https://graph.microsoft.com/v1.0',
          authorityHost: 'http://login.microsoftonline.com',
        },
      }),
    );
    expect(error.problems).toEqual([
      'MAIL_RELAY_SETTINGS.graph.tenantId: must be the directory (tenant) id, a GUID, or a verified domain such as contoso.onmicrosoft.com',
      'MAIL_RELAY_SETTINGS.graph.clientId: must be the application (client) id of the app registration, a GUID',
      'MAIL_RELAY_SETTINGS.graph.senders: list at least one mailbox or domain that sends through Graph',
      'MAIL_RELAY_SETTINGS.graph.authorityHost: must be an https URL',
      'MAIL_RELAY_SETTINGS.graph.graphEndpoint: must be just scheme and host (https://host[:port]), without a path or trailing slash',
    ]);
  });
});

describe('sesIdentityFor', () => {
  it('finds the identity that covers an address', () => {
    expect(sesIdentityFor(validSettings.ses, 'Alerts@Example.com')).toBe('example.com');
    expect(sesIdentityFor(validSettings.ses, 'noreply@other.org')).toBe('noreply@other.org');
  });

  it('finds no identity for an address nothing covers', () => {
    expect(sesIdentityFor(validSettings.ses, 'ceo@other.org')).toBeUndefined();
  });
});
