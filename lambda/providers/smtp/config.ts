import * as z from 'zod';
import { type ProviderPacing, pacingConfigSchema } from '../../core/pacing/limits.ts';
import { SECRET_ARN_MESSAGE, SECRET_ARN_PATTERN } from '../../core/secret-arn.ts';
import { ConfigurationError, formatPath } from '../../core/validation.ts';
import { fieldOf } from '../provider-definition.ts';
import {
  MAX_SMTP_CONNECTIONS,
  SMTP_AUTH_METHODS,
  SMTP_CONNECTION_NAME_PATTERN,
  SMTP_MODES,
  SMTP_TLS_MODES,
  type SmtpConnectionSettings,
  type SmtpSettings,
  smtpConnectionSettingsSchema,
  smtpProviderName,
} from './settings.ts';

/** Exchange Online's SMTP AUTH client submission endpoint (learn.microsoft.com/exchange/.../smtp-auth). */
export const SMTP_SUBMISSION_HOST = 'smtp.office365.com';
/** The port each mode connects to unless told otherwise: MX delivery on 25, submission on 587. */
export const SMTP_DEFAULT_PORTS = { connector: 25, submission: 587, smarthost: 587 } as const;

export const smtpConnectionConfigSchema = z
  .strictObject({
    senders: smtpConnectionSettingsSchema.shape.senders.describe(
      'From addresses the relay sends through SMTP: one address (scanner@contoso.com) or a whole domain (contoso.com). Graph senders win over these, and these over ses.identities.',
    ),
    mode: z
      .enum(SMTP_MODES)
      .describe(
        'connector: deliver to an Exchange Online inbound connector that trusts the static egress IP (no login, port 25; needs egress). submission: Exchange Online SMTP AUTH client submission (smtp.office365.com:587, XOAUTH2 with the graph app). smarthost: any other SMTP server (host required).',
      ),
    host: smtpConnectionSettingsSchema.shape.host
      .optional()
      .describe(
        `SMTP server host name or IP. Default: connector, <domain of the first sender with dots replaced by dashes>.mail.protection.outlook.com (the tenant's MX endpoint); submission, ${SMTP_SUBMISSION_HOST}; smarthost: required.`,
      ),
    port: smtpConnectionSettingsSchema.shape.port
      .optional()
      .describe(
        `TCP port. Default: connector ${SMTP_DEFAULT_PORTS.connector}, submission ${SMTP_DEFAULT_PORTS.submission}, smarthost ${SMTP_DEFAULT_PORTS.smarthost}. With egress, the function's security group lets this port out.`,
      ),
    tls: z
      .enum(SMTP_TLS_MODES)
      .default('starttls')
      .describe(
        'starttls: upgrade a plain connection (ports 25 and 587). implicit: TLS from the start (port 465). none: never encrypt.',
      ),
    requireTls: z
      .boolean()
      .default(true)
      .describe(
        'Refuse to send when the server does not offer STARTTLS, instead of sending in plain text. Must be false with tls "none".',
      ),
    auth: z
      .enum(SMTP_AUTH_METHODS)
      .optional()
      .describe(
        'none, plain, login (username and password from credentialSecretArn) or xoauth2 (tokens of the graph app registration, application permission SMTP.SendAsApp). Default: connector none, submission xoauth2, smarthost plain with a credentialSecretArn, else none.',
      ),
    credentialSecretArn: z
      .string()
      .regex(SECRET_ARN_PATTERN, SECRET_ARN_MESSAGE)
      .optional()
      .describe(
        'Complete ARN of an existing Secrets Manager secret in the stack\'s region holding {"username": "...", "password": "..."} as a JSON string, for plain and login. The function may read only this secret.',
      ),
    oauthScope: smtpConnectionSettingsSchema.shape.oauthScope.describe(
      "OAuth scope requested for xoauth2 tokens. Default: the provider's, https://outlook.office365.com/.default.",
    ),
    maxMessageBytes: smtpConnectionSettingsSchema.shape.maxMessageBytes.describe(
      "The SMTP server's maximum message size, MIME-encoded (a send connector's maximum size): larger messages are dead-lettered as MessageTooLarge without connecting. Default: none; the server's own refusal (552 5.3.4) is permanent too.",
    ),
    maxConnections: z
      .int()
      .min(1)
      .max(MAX_SMTP_CONNECTIONS)
      .optional()
      .describe(
        `Sessions to this server each warm send function keeps open at once (per sending mailbox with xoauth2), 1-${MAX_SMTP_CONNECTIONS}; a batch's messages are sent concurrently, so fewer sessions make the rest wait. Default: sendFunction.batchSize. The server sees up to this times sendFunction.maxConcurrency sessions.`,
      ),
    pacing: pacingConfigSchema
      .optional()
      .describe(
        "The limits the relay keeps this connection's sends within, across every send function at once (docs/pacing.md): perMailbox (each sender), perProvider (the connection as a whole) and mailboxes (single senders). Default: submission mode 30 messages per minute and 10,000 recipients per day per mailbox (Exchange Online); connector and smarthost none. False turns pacing off.",
      ),
  })
  .meta({ id: 'SmtpConnection' });
/** One SMTP connection as written: the single `smtp` section, or one of `smtp.connections`. */
export type SmtpConnectionConfig = z.output<typeof smtpConnectionConfigSchema>;

export const smtpConnectionsConfigSchema = z.strictObject({
  connections: z
    .record(
      z
        .string()
        .regex(
          SMTP_CONNECTION_NAME_PATTERN,
          'must be 1-32 lower-case letters, digits or hyphens, starting with a letter (routes name the connection smtp:<name>)',
        ),
      smtpConnectionConfigSchema,
    )
    .refine((connections) => Object.keys(connections).length > 0, {
      message: 'name at least one connection',
    })
    .describe(
      'Named SMTP connections, each with its own server, senders, credentials and session pool: per-address send connectors, a High Volume Email account, a partner smart host (docs/smtp.md, Named connections). Routes name a connection smtp:<name>; without routes, the implicit chain tries them in this order, after graph and before ses.',
    ),
});

export const smtpConfigSchema = z.union([smtpConnectionConfigSchema, smtpConnectionsConfigSchema]);
export type SmtpConfig = z.output<typeof smtpConfigSchema>;

/** One SMTP connection of a validated configuration, with what names it. */
export interface SmtpConnection {
  /** `smtp` for the single form, `smtp:<name>` for a named connection: what routes and metrics say. */
  readonly provider: string;
  /** Where it is written: `['smtp']` or `['smtp', 'connections', '<name>']`. */
  readonly path: readonly string[];
  /** The connection's name in `smtp.connections`; absent for the single form. */
  readonly name?: string;
  readonly config: SmtpConnectionConfig;
}

/** The SMTP connections of a validated `smtp` section, in the configuration's order. */
export function smtpConnectionsOf(smtp: SmtpConfig | undefined): SmtpConnection[] {
  if (smtp === undefined) return [];
  if (!('connections' in smtp)) return [{ provider: smtpProviderName(), path: ['smtp'], config: smtp }];
  return Object.entries(smtp.connections).map(([name, config]) => ({
    provider: smtpProviderName(name),
    path: ['smtp', 'connections', name],
    name,
    config,
  }));
}

/**
 * The SMTP connections of an `smtp` section that may have failed validation, read as the rules across
 * fields need them: the single form, or each entry of `connections` whose name is valid.
 */
export function rawSmtpConnectionsOf(smtp: unknown): { provider: string; path: string[]; value: unknown }[] {
  if (typeof smtp !== 'object' || smtp === null) return [];
  if (!('connections' in smtp)) return [{ provider: smtpProviderName(), path: ['smtp'], value: smtp }];
  const connections = fieldOf(smtp, 'connections');
  if (typeof connections !== 'object' || connections === null) return [];
  return Object.entries(connections)
    .filter(([name]) => SMTP_CONNECTION_NAME_PATTERN.test(name))
    .map(([name, value]) => ({
      provider: smtpProviderName(name),
      path: ['smtp', 'connections', name],
      value,
    }));
}

/** The domain of a sender: the part after the @ of an address, or the sender itself when it is a domain. */
function senderDomain(sender: string): string {
  return sender.slice(sender.lastIndexOf('@') + 1).toLowerCase();
}

/** The auth method an smtp section uses once its default is resolved. */
function smtpAuthFor(mode: unknown, auth: unknown, credentialSecretArn: unknown): unknown {
  if (auth !== undefined) return auth;
  if (mode === 'connector') return 'none';
  if (mode === 'submission') return 'xoauth2';
  if (mode === 'smarthost') return credentialSecretArn === undefined ? 'none' : 'plain';
  return undefined;
}

/**
 * The settings of one SMTP connection, with the per-mode defaults resolved: the host (a connector's
 * is the Exchange Online MX endpoint of the first sender's domain), the port and the auth method.
 *
 * @param path - where the connection is written, for the error about a missing host
 */
export function smtpSettingsFor(
  smtp: SmtpConnectionConfig,
  path: readonly string[] = ['smtp'],
): SmtpConnectionSettings {
  const firstSender = smtp.senders[0] ?? '';
  const defaultHost =
    smtp.mode === 'connector'
      ? `${senderDomain(firstSender).replaceAll('.', '-')}.mail.protection.outlook.com`
      : smtp.mode === 'submission'
        ? SMTP_SUBMISSION_HOST
        : undefined;
  const host = smtp.host ?? defaultHost;
  if (host === undefined) {
    // The schema requires a host in smarthost mode; this is for callers that built the value by hand.
    throw new ConfigurationError('Invalid smtp configuration', [
      `${formatPath([...path, 'host'])}: required in smarthost mode`,
    ]);
  }
  return {
    senders: smtp.senders,
    mode: smtp.mode,
    host,
    port: smtp.port ?? SMTP_DEFAULT_PORTS[smtp.mode],
    tls: smtp.tls,
    requireTls: smtp.requireTls,
    auth: smtpAuthFor(smtp.mode, smtp.auth, smtp.credentialSecretArn) as SmtpConnectionSettings['auth'],
    ...(smtp.credentialSecretArn !== undefined && { credentialSecretId: smtp.credentialSecretArn }),
    ...(smtp.oauthScope !== undefined && { oauthScope: smtp.oauthScope }),
    ...(smtp.maxMessageBytes !== undefined && { maxMessageBytes: smtp.maxMessageBytes }),
    ...(smtp.pacing !== undefined && { pacing: smtp.pacing }),
  };
}

/**
 * The send function's SMTP settings: one per connection, in the configuration's order, each named by
 * its provider name and with its session pool sized (`maxConnections`, by default the batch size, so
 * the records of one batch, which are sent concurrently, need not wait for a session).
 */
export function smtpSettingsListFor(smtp: SmtpConfig, batchSize: number): SmtpSettings[] {
  return smtpConnectionsOf(smtp).map((connection) => ({
    name: connection.provider,
    ...smtpSettingsFor(connection.config, connection.path),
    maxConnections: connection.config.maxConnections ?? batchSize,
  }));
}

/**
 * The rules across fields of one SMTP connection (the single smtp section, or one of its connections)
 * and the rest of the configuration. The connection may have failed validation, so it is only read
 * through fieldOf, and a field of the wrong type is left to its own error.
 *
 * @param path - where the connection is written: `['smtp']` or `['smtp', 'connections', '<name>']`
 */
export function smtpProblems(
  smtp: unknown,
  path: readonly string[],
  others: { graph: unknown; egress: unknown },
): { path: string[]; message: string }[] {
  const problems: { path: string[]; message: string }[] = [];
  const at = (field: string) => [...path, field];
  const mode = fieldOf(smtp, 'mode');
  const explicitAuth = fieldOf(smtp, 'auth');
  const credentialSecretArn = fieldOf(smtp, 'credentialSecretArn');
  const auth = smtpAuthFor(mode, explicitAuth, credentialSecretArn);
  if (mode === 'connector' && explicitAuth !== undefined && explicitAuth !== 'none') {
    problems.push({
      path: at('auth'),
      message:
        'must be none in connector mode: an Exchange Online inbound connector trusts the sending IP, not a login',
    });
  }
  if (mode === 'connector' && others.egress === undefined) {
    problems.push({
      path: at('mode'),
      message: 'connector mode needs a static egress IP: add an egress section (docs/static-egress.md)',
    });
  }
  if (mode === 'smarthost' && fieldOf(smtp, 'host') === undefined) {
    problems.push({
      path: at('host'),
      message: 'required in smarthost mode: the SMTP server to send through',
    });
  }
  if ((explicitAuth === 'plain' || explicitAuth === 'login') && credentialSecretArn === undefined) {
    problems.push({
      path: at('credentialSecretArn'),
      message: `required for ${explicitAuth} authentication: the secret with {"username", "password"}`,
    });
  }
  if (auth === 'xoauth2' && mode !== 'connector' && others.graph === undefined) {
    problems.push({
      path: at('auth'),
      message:
        'xoauth2 takes its tokens from the graph app registration (application permission SMTP.SendAsApp): add a graph section',
    });
  }
  if (fieldOf(smtp, 'tls') === 'none' && (fieldOf(smtp, 'requireTls') ?? true) === true) {
    problems.push({
      path: at('requireTls'),
      message: 'must be false with tls "none": a connection that is never encrypted cannot require TLS',
    });
  }
  return problems;
}

/**
 * Exchange Online's limits per mailbox apply to SMTP AUTH submission as to Graph: 30 messages per
 * minute, 10,000 recipients per day. A connector or another server has its own, set per connection.
 */
export const SMTP_PACING_DEFAULTS: Readonly<Record<SmtpConnectionConfig['mode'], ProviderPacing>> = {
  submission: { perMailbox: { messagesPerMinute: 30, recipientsPerDay: 10_000 } },
  connector: {},
  smarthost: {},
};
