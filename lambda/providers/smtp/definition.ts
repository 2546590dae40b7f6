import * as z from 'zod';
import { EXCHANGE_MAX_RECIPIENTS_PER_MESSAGE, SES_MAX_MESSAGE_BYTES } from '../../core/limits.ts';
import { resolvePacing } from '../../core/pacing/limits.ts';
import { graphAppFor } from '../graph/definition.ts';
import type { GraphSettings } from '../graph/settings.ts';
import { MsalTokenSource } from '../graph/token-source.ts';
import { type ConfigProblem, defineProvider, fieldOf, type ProviderRuntime } from '../provider-definition.ts';
import {
  rawSmtpConnectionsOf,
  SMTP_PACING_DEFAULTS,
  type SmtpConfig,
  smtpConfigSchema,
  smtpConnectionsOf,
  smtpProblems,
  smtpSettingsListFor,
} from './config.ts';
import { SMTP_FAILURES } from './failures.ts';
import {
  SMTP_CONNECTION_NAME_SOURCE,
  SMTP_PROVIDER_NAME,
  type SmtpSettings,
  smtpSettingsSchema,
} from './settings.ts';
import { cachedSmtpCredentials } from './smtp-credentials.ts';
import { SmtpProvider } from './smtp-provider.ts';

/** Exchange Online's resource for SMTP AUTH with OAuth (global cloud). */
export const EXCHANGE_ONLINE_SMTP_SCOPE = 'https://outlook.office365.com/.default';

/**
 * SMTP: one connection (`smtp`) or named connections (`smtp:<name>`), each its own provider with its
 * own server, senders, credentials and session pool.
 */
export const smtpDefinition = defineProvider({
  section: 'smtp',
  title: 'SMTP',
  namePattern: `${SMTP_PROVIDER_NAME}(?::${SMTP_CONNECTION_NAME_SOURCE})?`,
  nameHint: 'smtp (the smtp section), smtp:<name> (one of smtp.connections)',
  // Exchange Online's limits; another server's own size limit is its connection's maxMessageBytes.
  limits: { maxRecipients: EXCHANGE_MAX_RECIPIENTS_PER_MESSAGE, maxMessageBytes: SES_MAX_MESSAGE_BYTES },
  configSchema: smtpConfigSchema,
  description:
    'SMTP: one connection, sending as the listed senders through an Exchange Online inbound connector (from the static egress IP), Exchange Online SMTP AUTH submission, or another SMTP server (smarthost); routes name it smtp. Or {"connections": {"<name>": {...}}}: named connections of the same shape, each its own provider smtp:<name> (docs/smtp.md, Named connections).',
  settingsSchema: z
    .array(smtpSettingsSchema)
    .min(1)
    .refine(
      (connections) => new Set(connections.map((connection) => connection.name)).size === connections.length,
      { message: 'names an SMTP connection twice' },
    ),
  failures: SMTP_FAILURES,

  whyNotConfigured(name, section) {
    if (typeof section !== 'object' || section === null) {
      const what = name.startsWith(`${SMTP_PROVIDER_NAME}:`)
        ? `an smtp section with the connection ${name.slice(SMTP_PROVIDER_NAME.length + 1)} in smtp.connections`
        : 'an smtp section';
      return `"${name}" is not configured: add ${what} (with its credentials) or remove it from the chain`;
    }
    const configured = rawSmtpConnectionsOf(section).map((connection) => connection.provider);
    const single = 'connections' in section ? '' : ', the single smtp section';
    return `"${name}" is not a configured SMTP connection (configured: ${configured.join(', ') || 'none'}${single}): name one of them, or remove it from the chain`;
  },
  providersIn: (section) =>
    rawSmtpConnectionsOf(section).map((connection) => ({
      name: connection.provider,
      path: connection.path,
      sendersField: 'senders',
      senders: fieldOf(connection.value, 'senders'),
    })),

  configProblems(section, config) {
    // Every rule of a connection, for each connection, so all their problems are reported at once.
    const others = { graph: fieldOf(config, 'graph'), egress: fieldOf(config, 'egress') };
    return rawSmtpConnectionsOf(section).flatMap((connection) =>
      smtpProblems(connection.value, connection.path, others),
    );
  },

  settingsFor: (section: SmtpConfig, resources) => smtpSettingsListFor(section, resources.batchSize),

  settingsProblems(connections, all) {
    const problems: ConfigProblem[] = [];
    connections.forEach((smtp, index) => {
      if (smtp.auth === 'xoauth2' && all.graph === undefined) {
        problems.push({
          path: ['smtp', index, 'auth'],
          message: 'xoauth2 takes its tokens from the Graph app registration: configure graph too',
        });
      }
      if ((smtp.auth === 'plain' || smtp.auth === 'login') && !smtp.credentialSecretId) {
        problems.push({
          path: ['smtp', index, 'credentialSecretId'],
          message: 'required for plain and login authentication',
        });
      }
    });
    return problems;
  },

  credentialSecrets: (section) =>
    smtpConnectionsOf(section).flatMap((connection) =>
      connection.config.credentialSecretArn === undefined
        ? []
        : [
            {
              provider: connection.provider,
              constructId:
                connection.name === undefined ? 'SmtpCredential' : `SmtpCredential-${connection.name}`,
              path: [...connection.path, 'credentialSecretArn'],
              arn: connection.config.credentialSecretArn,
            },
          ],
    ),

  sendPermissions: () => [],
  egressPorts: (connections) => connections.map((connection) => connection.port),
  sendersOf: (connections) =>
    connections.map((connection) => ({ provider: connection.name, senders: connection.senders })),
  pacingOf: (connections) =>
    connections.map((connection) => ({
      provider: connection.name,
      pacing: resolvePacing(SMTP_PACING_DEFAULTS[connection.mode], connection.pacing),
    })),

  createProviders: (connections, runtime) =>
    connections.map((connection) => createSmtpProvider(connection, runtime)),
});

function createSmtpProvider(smtp: SmtpSettings, runtime: ProviderRuntime): SmtpProvider {
  const credentials = smtp.credentialSecretId
    ? cachedSmtpCredentials(runtime.secrets, smtp.credentialSecretId, smtp.name)
    : undefined;
  const ca = typeof runtime.smtpCa === 'string' ? runtime.smtpCa : runtime.smtpCa?.[smtp.name];
  const graph = runtime.settings.graph as GraphSettings | undefined;
  // XOAUTH2 tokens come from the Graph app registration (application permission SMTP.SendAsApp).
  const app = smtp.auth === 'xoauth2' && graph ? graphAppFor(graph, runtime) : undefined;
  return new SmtpProvider({
    settings: smtp,
    ...(credentials && { credentials: () => credentials.get() }),
    ...(app && {
      tokens: new MsalTokenSource(
        app.settings,
        app.credential,
        app.transport,
        smtp.oauthScope ?? EXCHANGE_ONLINE_SMTP_SCOPE,
      ),
    }),
    ...(ca !== undefined && { ca }),
    ...(runtime.providerTimeoutMs !== undefined && { connectionTimeoutMs: runtime.providerTimeoutMs }),
  });
}
