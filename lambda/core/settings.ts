import { isIP } from 'node:net';
import { z } from 'zod';
import { identityCovers, isDomainName, isEmailAddress } from './address.ts';
import { EXCHANGE_MAX_RECIPIENTS_PER_MESSAGE, GRAPH_MAX_MESSAGE_BYTES } from './limits.ts';
import { ConfigurationError, describeIssues } from './validation.ts';

/** The one environment variable the send function reads its settings from (JSON, written by the construct). */
export const SETTINGS_ENV_VAR = 'MAIL_RELAY_SETTINGS';

export const sesIdentitySchema = z
  .string()
  .refine((value) => isDomainName(value) || isEmailAddress(value), {
    message: 'must be a domain (example.com) or an email address (noreply@example.com) verified in SES',
  })
  // Identities become IAM resource ARNs that scope sending; there `*` and `?` are wildcards.
  .refine((value) => !/[*?]/.test(value), {
    message: 'must not contain * or ? (IAM would read them as wildcards in the send permission)',
  });

export const messageLimitsSchema = z.strictObject({
  maxRecipients: z
    .int()
    .min(1)
    .max(
      EXCHANGE_MAX_RECIPIENTS_PER_MESSAGE,
      `at most ${EXCHANGE_MAX_RECIPIENTS_PER_MESSAGE} (Exchange Online's limit per message; SES takes 50)`,
    ),
  maxMessageBytes: z
    .int()
    .min(1024)
    .max(
      GRAPH_MAX_MESSAGE_BYTES,
      `at most ${GRAPH_MAX_MESSAGE_BYTES} (150 MiB, Microsoft Graph's limit; SES takes up to 40 MB)`,
    ),
});
export type MessageLimits = z.infer<typeof messageLimitsSchema>;

/** An SES configuration set name, as SES names them. */
export const sesConfigurationSetNameSchema = z
  .string()
  .regex(
    /^[A-Za-z0-9_-]{1,64}$/,
    'may contain only letters, digits, hyphens and underscores (the SES naming rule)',
  );

export const sesSettingsSchema = z.strictObject({
  identities: z.array(sesIdentitySchema).min(1, 'list at least one verified SES identity'),
  configurationSetName: sesConfigurationSetNameSchema.optional(),
});
export type SesSettings = z.infer<typeof sesSettingsSchema>;

/** Microsoft clouds: where tokens come from and where Graph lives (learn.microsoft.com/graph/deployments). */
export const GRAPH_CLOUDS = {
  global: {
    authorityHost: 'https://login.microsoftonline.com',
    graphEndpoint: 'https://graph.microsoft.com',
  },
  usgov: { authorityHost: 'https://login.microsoftonline.us', graphEndpoint: 'https://graph.microsoft.us' },
  'usgov-dod': {
    authorityHost: 'https://login.microsoftonline.us',
    graphEndpoint: 'https://dod-graph.microsoft.us',
  },
  china: {
    authorityHost: 'https://login.chinacloudapi.cn',
    graphEndpoint: 'https://microsoftgraph.chinacloudapi.cn',
  },
} as const;
export type GraphCloud = keyof typeof GRAPH_CLOUDS;

const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export const graphTenantIdSchema = z.string().refine((value) => GUID.test(value) || isDomainName(value), {
  message: 'must be the directory (tenant) id, a GUID, or a verified domain such as contoso.onmicrosoft.com',
});

export const graphClientIdSchema = z
  .string()
  .regex(GUID, 'must be the application (client) id of the app registration, a GUID');

export const graphSendersSchema = z
  .array(
    z.string().refine((value) => isDomainName(value) || isEmailAddress(value), {
      message: 'must be a domain (contoso.com: every mailbox there) or one mailbox address',
    }),
  )
  .min(1, 'list at least one mailbox or domain that sends through Graph');

/** An https base URL without a path, such as https://graph.microsoft.com. */
export const httpsOriginSchema = z
  .url({ protocol: /^https$/, error: 'must be an https URL' })
  .refine((value) => new URL(value).pathname === '/' && !value.endsWith('/'), {
    message: 'must be just scheme and host (https://host[:port]), without a path or trailing slash',
  });

export const graphSettingsSchema = z.strictObject({
  tenantId: graphTenantIdSchema,
  clientId: graphClientIdSchema,
  senders: graphSendersSchema,
  /** Secrets Manager secret (ARN or name) with the app credential: see providers/graph/credentials.ts. */
  credentialSecretId: z.string().min(1),
  saveToSentItems: z.boolean(),
  /**
   * After a lost answer, how long the relay keeps looking for the message's sent copy in the mailbox
   * (Mail.ReadBasic.All) before it concludes the message was not sent. Absent or 0: it does not look.
   */
  sentItemsLookupSeconds: z.int().min(0).max(3600).optional(),
  authorityHost: httpsOriginSchema,
  graphEndpoint: httpsOriginSchema,
});
export type GraphSettings = z.infer<typeof graphSettingsSchema>;

/** How the relay talks to an SMTP server (see providers/smtp): modelled on Exchange send connectors. */
export const SMTP_MODES = ['connector', 'submission', 'smarthost'] as const;
export const SMTP_TLS_MODES = ['starttls', 'implicit', 'none'] as const;
export const SMTP_AUTH_METHODS = ['none', 'plain', 'login', 'xoauth2'] as const;

/** The provider name of the single `smtp` section, and the family of every SMTP connection's name. */
export const SMTP_PROVIDER_NAME = 'smtp';
/**
 * A named SMTP connection: a lower-case letter, then up to 31 lower-case letters, digits or hyphens.
 * It starts with a letter because JavaScript puts integer-like keys ("1", "42") before all others
 * when it reads an object, which would change the order of the connections (the implicit chain's).
 */
export const SMTP_CONNECTION_NAME_PATTERN = /^[a-z][a-z0-9-]{0,31}$/;
const SMTP_CONNECTION_NAME_SOURCE = SMTP_CONNECTION_NAME_PATTERN.source.slice(1, -1);

/** `smtp` for the single `smtp` section, `smtp:<name>` for the connection of that name. */
export function smtpProviderName(connection?: string): ProviderName {
  return connection === undefined ? SMTP_PROVIDER_NAME : `${SMTP_PROVIDER_NAME}:${connection}`;
}

/** Where a connection sits in the configuration: `smtp`, or `smtp.connections.<name>`. */
export function smtpConfigPathOf(provider: string): string {
  const connection = provider.startsWith(`${SMTP_PROVIDER_NAME}:`)
    ? provider.slice(SMTP_PROVIDER_NAME.length + 1)
    : undefined;
  return connection === undefined ? SMTP_PROVIDER_NAME : `${SMTP_PROVIDER_NAME}.connections.${connection}`;
}

export const smtpConnectionSettingsSchema = z.strictObject({
  senders: z
    .array(
      z.string().refine((value) => isDomainName(value) || isEmailAddress(value), {
        message: 'must be a domain (contoso.com: every address there) or one address',
      }),
    )
    .min(1, 'list at least one address or domain that sends through SMTP'),
  mode: z.enum(SMTP_MODES),
  host: z.string().refine((value) => isDomainName(value) || value === 'localhost' || isIP(value) !== 0, {
    message: 'must be a host name such as contoso-com.mail.protection.outlook.com, or an IP address',
  }),
  port: z.int().min(1).max(65_535),
  tls: z.enum(SMTP_TLS_MODES),
  /** Refuse to send when STARTTLS is not offered (never falls back to plain text). */
  requireTls: z.boolean(),
  auth: z.enum(SMTP_AUTH_METHODS),
  /** Secrets Manager secret with {"username", "password"} for plain/login. */
  credentialSecretId: z.string().min(1).optional(),
  /** OAuth scope for XOAUTH2 tokens (from the Graph app registration). */
  oauthScope: z.url({ protocol: /^https$/ }).optional(),
  /** Refuse larger messages before connecting (the server's own limit, as a send connector sets it). */
  maxMessageBytes: z.int().min(1024).optional(),
});
/** One SMTP connection as the configuration describes it, its per-mode defaults resolved. */
export type SmtpConnectionSettings = z.infer<typeof smtpConnectionSettingsSchema>;

/** The most sessions one SMTP connection may hold open in one warm function. */
export const MAX_SMTP_CONNECTIONS = 50;

/** One SMTP connection as the send function runs it: its own provider, pool and credentials. */
export const smtpSettingsSchema = smtpConnectionSettingsSchema.extend({
  /** The provider name routes, metrics, the ledger and failures use: `smtp` or `smtp:<connection>`. */
  name: z
    .string()
    .regex(
      new RegExp(`^${SMTP_PROVIDER_NAME}(?::${SMTP_CONNECTION_NAME_SOURCE})?$`),
      'must be smtp or smtp:<connection name>',
    ),
  /** Sessions open at once in one warm function (per sending mailbox with xoauth2). */
  maxConnections: z.int().min(1).max(MAX_SMTP_CONNECTIONS),
});
export type SmtpSettings = z.infer<typeof smtpSettingsSchema>;

export const attachmentSettingsSchema = z.strictObject({
  /** The only bucket messages may reference attachments in. */
  bucket: z.string().regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, 'must be an S3 bucket name'),
});
export type AttachmentSettings = z.infer<typeof attachmentSettingsSchema>;

/** The kinds of provider, in the order of an implicit chain: every SMTP connection is an `smtp`. */
export const PROVIDER_FAMILIES = ['graph', 'smtp', 'ses'] as const;
/** What a route's chain names: `graph`, `ses`, `smtp` (the single smtp section) or `smtp:<connection>`. */
export type ProviderName = 'graph' | 'ses' | 'smtp' | `smtp:${string}`;

/**
 * A provider name. The pattern accepts exactly the `ProviderName` strings, so the schema is typed as
 * them (a plain pattern keeps one clear message and a JSON Schema `pattern`, where a union of an enum
 * and a template literal would report the enum's complaint for `smtp:Billing`).
 */
export const providerNameSchema = z
  .string()
  .regex(
    new RegExp(`^(?:graph|ses|${SMTP_PROVIDER_NAME}(?::${SMTP_CONNECTION_NAME_SOURCE})?)$`),
    'must be graph, ses, smtp (the smtp section) or smtp:<name> (one of smtp.connections)',
  ) as z.ZodType<ProviderName, ProviderName>;

/** `*` (any sender), `*@contoso.com` (any address at exactly that domain) or one address. */
export const fromPatternSchema = z
  .string()
  .refine(
    (value) =>
      value === '*' ||
      (value.startsWith('*@') && isDomainName(value.slice(2))) ||
      (!value.includes('*') && isEmailAddress(value)),
    { message: 'must be "*" (any sender), "*@domain" (any address at that domain) or one address' },
  );

export const routeNameSchema = z
  .string()
  .regex(/^[A-Za-z0-9_-]{1,64}$/, 'must be 1-64 letters, digits, hyphens or underscores');

export const rewriteFromSchema = z.strictObject({
  address: z.string().refine(isEmailAddress, { message: 'must be an email address (the service mailbox)' }),
  name: z
    .string()
    .min(1)
    .max(64)
    .regex(/^[^\r\n"<>]*$/, 'must not contain CR, LF, quotes or angle brackets')
    .optional(),
});
export type RewriteFrom = z.infer<typeof rewriteFromSchema>;

/**
 * When a provider may have accepted a message and nobody can find out: `dead-letter` never sends it
 * twice (an operator decides), `resend` never loses it (it may arrive twice).
 */
export const UNKNOWN_OUTCOME_ACTIONS = ['dead-letter', 'resend'] as const;
export type UnknownOutcomeAction = (typeof UNKNOWN_OUTCOME_ACTIONS)[number];

export const routeSettingsSchema = z.strictObject({
  name: routeNameSchema,
  from: z.array(fromPatternSchema).min(1, 'list at least one sender pattern'),
  providers: z
    .array(providerNameSchema)
    .min(1, 'name at least one provider')
    .refine((names) => new Set(names).size === names.length, { message: 'names a provider twice' }),
  rewriteFrom: rewriteFromSchema.optional(),
  /** What to do with a message a provider may have sent (its answer was lost). Absent: dead-letter. */
  onUnknownOutcome: z.enum(UNKNOWN_OUTCOME_ACTIONS).optional(),
});
export type RouteSettings = z.infer<typeof routeSettingsSchema>;

export const retrySettingsSchema = z.strictObject({
  maxAttempts: z.int().min(1).max(20),
  baseDelaySeconds: z.int().min(1).max(3600),
  maxDelaySeconds: z.int().min(1).max(43_200),
});
export type RetrySettings = z.infer<typeof retrySettingsSchema>;

export const circuitBreakerSettingsSchema = z.strictObject({
  failureThreshold: z.int().min(1).max(1000),
  cooldownSeconds: z.int().min(1).max(3600),
});
export type CircuitBreakerSettings = z.infer<typeof circuitBreakerSettingsSchema>;

const tableNameSchema = z.string().regex(/^[A-Za-z0-9_.-]{3,255}$/, 'must be a DynamoDB table name');

export const ledgerSettingsSchema = z.strictObject({
  tableName: tableNameSchema,
  /** How long a claim holds: the function timeout, after which the claimant is certainly gone. */
  leaseSeconds: z.int().min(1).max(900),
  retentionDays: z.int().min(1).max(365),
});
export type LedgerSettings = z.infer<typeof ledgerSettingsSchema>;

export const suppressionSettingsSchema = z.strictObject({ tableName: tableNameSchema });
export type SuppressionSettings = z.infer<typeof suppressionSettingsSchema>;

export const relaySettingsSchema = z
  .strictObject({
    /** The outbox, so a record can be delayed (Retry-After) by changing its visibility. */
    queueUrl: z.url({ protocol: /^https?$/ }),
    deadLetterQueueUrl: z.url({ protocol: /^https?$/ }),
    maxReceiveCount: z.int().min(1).max(1000),
    limits: messageLimitsSchema,
    ses: sesSettingsSchema.optional(),
    graph: graphSettingsSchema.optional(),
    /** One per SMTP connection, in the configuration's order (the implicit chain's). */
    smtp: z
      .array(smtpSettingsSchema)
      .min(1)
      .refine(
        (connections) =>
          new Set(connections.map((connection) => connection.name)).size === connections.length,
        {
          message: 'names an SMTP connection twice',
        },
      )
      .optional(),
    attachments: attachmentSettingsSchema.optional(),
    /** The bucket messages submitted over SMTP are stored in: raw messages may reference their MIME there. */
    ingress: z.strictObject({ bucket: attachmentSettingsSchema.shape.bucket }).optional(),
    /** Absent: every sender a provider covers is allowed, with the providers that cover it as its chain. */
    routes: z.array(routeSettingsSchema).min(1).optional(),
    retry: retrySettingsSchema,
    circuitBreaker: circuitBreakerSettingsSchema,
    ledger: ledgerSettingsSchema,
    suppression: suppressionSettingsSchema,
    /** Where final outcomes are published; absent: not published. */
    events: z.strictObject({ busName: z.string().min(1) }).optional(),
  })
  .refine((settings) => settings.ses ?? settings.graph ?? settings.smtp, {
    message: 'configure at least one provider: ses, graph or smtp',
  })
  .superRefine((settings, ctx) => {
    settings.smtp?.forEach((smtp, index) => {
      if (smtp.auth === 'xoauth2' && settings.graph === undefined) {
        ctx.addIssue({
          code: 'custom',
          path: ['smtp', index, 'auth'],
          message: 'xoauth2 takes its tokens from the Graph app registration: configure graph too',
        });
      }
      if ((smtp.auth === 'plain' || smtp.auth === 'login') && !smtp.credentialSecretId) {
        ctx.addIssue({
          code: 'custom',
          path: ['smtp', index, 'credentialSecretId'],
          message: 'required for plain and login authentication',
        });
      }
    });
  });
export type RelaySettings = z.infer<typeof relaySettingsSchema>;

/** Reads and validates the send function's settings at cold start, failing with every problem listed. */
export function readSettings(env: Readonly<Record<string, string | undefined>>): RelaySettings {
  return readSettingsWith(relaySettingsSchema, env);
}

/** Reads one function's settings from MAIL_RELAY_SETTINGS with its schema, every problem listed. */
export function readSettingsWith<T extends z.ZodType>(
  schema: T,
  env: Readonly<Record<string, string | undefined>>,
): z.output<T> {
  const raw = env[SETTINGS_ENV_VAR];
  if (!raw) {
    throw new ConfigurationError('Invalid function environment', [
      `${SETTINGS_ENV_VAR}: not set (the MailRelay construct writes it; in local mode \`npm start\` does)`,
    ]);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    throw new ConfigurationError('Invalid function environment', [`${SETTINGS_ENV_VAR}: not valid JSON`]);
  }
  const result = schema.safeParse(parsed);
  if (!result.success) {
    throw new ConfigurationError(
      'Invalid function environment',
      // `MAIL_RELAY_SETTINGS.ses.identities[0]: …`, or `MAIL_RELAY_SETTINGS: …` for the value as a whole.
      describeIssues(result.error).map((problem) =>
        problem.startsWith('(root):')
          ? `${SETTINGS_ENV_VAR}${problem.slice(6)}`
          : `${SETTINGS_ENV_VAR}.${problem}`,
      ),
    );
  }
  return result.data;
}

/** The feedback function's settings: where suppressions go, for how long, and where outcomes go. */
export const feedbackSettingsSchema = z.strictObject({
  suppression: suppressionSettingsSchema.extend({
    /** Days a hard bounce or complaint keeps a recipient suppressed; absent: until removed. */
    retentionDays: z.int().min(1).max(3650).optional(),
  }),
  events: z.strictObject({ busName: z.string().min(1) }).optional(),
  /** The delivery ledger, where feedback is noted for `mail-relay status`. */
  ledger: z.strictObject({ tableName: tableNameSchema }).optional(),
});
export type FeedbackSettings = z.infer<typeof feedbackSettingsSchema>;

/** The bounce report reader's settings: the feedback settings, plus which mailboxes and how to reach them. */
export const bounceReportSettingsSchema = feedbackSettingsSchema.extend({
  graph: graphSettingsSchema,
  /** Sending mailboxes whose Inbox receives the non-delivery reports. */
  mailboxes: z
    .array(z.string().refine(isEmailAddress, { message: 'must be a mailbox address' }))
    .min(1, 'list at least one mailbox'),
  /** How far back the first reading of a mailbox looks. */
  lookbackMinutes: z.int().min(1).max(43_200),
  maxMessagesPerMailbox: z.int().min(1).max(1000),
  /** The ledger: which provider sent a reported message, and where each mailbox's reading stopped. */
  ledger: z.strictObject({ tableName: tableNameSchema }),
});
export type BounceReportSettings = z.infer<typeof bounceReportSettingsSchema>;

/** The SES brake's settings: the configuration set it pauses when the critical bounce alarm fires. */
export const sesBrakeSettingsSchema = z.strictObject({
  configurationSetName: sesConfigurationSetNameSchema,
});
export type SesBrakeSettings = z.infer<typeof sesBrakeSettingsSchema>;

export function sesIdentityFor(settings: SesSettings, address: string): string | undefined {
  return settings.identities.find((identity) => identityCovers(identity, address));
}

/** An application that submits over SMTP: the senders it may use and, optionally, the route it must take. */
export const ingressClientSettingsSchema = z.strictObject({
  name: routeNameSchema,
  /** From patterns (as in routes) the client may use, for the From header, Sender and envelope sender. */
  senders: z.array(fromPatternSchema).min(1, 'list at least one sender pattern'),
  route: routeNameSchema.optional(),
});
export type IngressClientSettings = z.infer<typeof ingressClientSettingsSchema>;

/** The ingest function's settings: where submitted messages are stored, who may submit, where they go. */
export const ingestSettingsSchema = z.strictObject({
  /** The outbox the send function reads. */
  queueUrl: z.string().url(),
  /** Where a message the ingest refuses goes, with its reason (the ingest function's own DLQ). */
  deadLetterQueueUrl: z.string().url(),
  /** The relay's bucket: submitted messages are stored under `prefix<client>/`. */
  bucket: attachmentSettingsSchema.shape.bucket,
  prefix: z.string().regex(/^[A-Za-z0-9!_.*'()/-]{1,62}\/$/, 'must be an S3 prefix ending in /'),
  /** Messages up to this size travel inside the outbox message (and their object is deleted at once). */
  inlineMaxBytes: z.int().min(0).max(700_000),
  limits: messageLimitsSchema,
  clients: z.array(ingressClientSettingsSchema).min(1, 'list at least one client'),
});
export type IngestSettings = z.infer<typeof ingestSettingsSchema>;

/** Reads and validates the ingest function's settings at cold start. */
export function readIngestSettings(env: Readonly<Record<string, string | undefined>>): IngestSettings {
  return readSettingsWith(ingestSettingsSchema, env);
}
