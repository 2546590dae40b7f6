import * as z from 'zod';
import { isDomainName, isEmailAddress } from './address.ts';
import { EXCHANGE_MAX_RECIPIENTS_PER_MESSAGE, GRAPH_MAX_MESSAGE_BYTES } from './limits.ts';
import { OUTCOME_KINDS } from './outcomes.ts';
import { ConfigurationError, describeIssues } from './validation.ts';

/** The one environment variable the send function reads its settings from (JSON, written by the construct). */
export const SETTINGS_ENV_VAR = 'MAIL_RELAY_SETTINGS';

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

export const attachmentSettingsSchema = z.strictObject({
  /** The only bucket messages may reference attachments in. */
  bucket: z.string().regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, 'must be an S3 bucket name'),
});
export type AttachmentSettings = z.infer<typeof attachmentSettingsSchema>;

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

/**
 * When a provider's limit is reached (a mailbox's messages per minute, recipients per day …): `delay`
 * waits until it frees, `next-provider` sends through the route's next provider at once.
 */
export const LIMIT_ACTIONS = ['delay', 'next-provider'] as const;
export type LimitAction = (typeof LIMIT_ACTIONS)[number];

/**
 * What a route's chain names: a provider (`graph`, `ses`, `smtp`) or a named connection of one
 * (`smtp:billing`). Which names exist is the provider registry's business (lambda/providers/registry.ts).
 */
export type ProviderName = string;

/** The routes' schema, with the schema of the provider names their chains may use. */
export function routeSettingsSchemaFor(providerName: z.ZodType<ProviderName, ProviderName>) {
  return z.strictObject({
    name: routeNameSchema,
    from: z.array(fromPatternSchema).min(1, 'list at least one sender pattern'),
    providers: z
      .array(providerName)
      .min(1, 'name at least one provider')
      .refine((names) => new Set(names).size === names.length, { message: 'names a provider twice' }),
    rewriteFrom: rewriteFromSchema.optional(),
    /** What to do with a message a provider may have sent (its answer was lost). Absent: dead-letter. */
    onUnknownOutcome: z.enum(UNKNOWN_OUTCOME_ACTIONS).optional(),
    /** What to do when a provider's limit is reached. Absent: delay. */
    onLimit: z.enum(LIMIT_ACTIONS).optional(),
  });
}
export type RouteSettings = z.infer<ReturnType<typeof routeSettingsSchemaFor>>;

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

export const tableNameSchema = z.string().regex(/^[A-Za-z0-9_.-]{3,255}$/, 'must be a DynamoDB table name');

export const ledgerSettingsSchema = z.strictObject({
  tableName: tableNameSchema,
  /** How long a claim holds: the function timeout, after which the claimant is certainly gone. */
  leaseSeconds: z.int().min(1).max(900),
  retentionDays: z.int().min(1).max(365),
});
export type LedgerSettings = z.infer<typeof ledgerSettingsSchema>;

export const suppressionSettingsSchema = z.strictObject({ tableName: tableNameSchema });

/** Outcome events: the bus, and the kinds published (absent: DEFAULT_OUTCOME_KINDS). */
export const outcomeEventSettingsSchema = z.strictObject({
  busName: z.string().min(1),
  kinds: z.array(z.enum(OUTCOME_KINDS)).optional(),
});
export type SuppressionSettings = z.infer<typeof suppressionSettingsSchema>;

/**
 * The send function's settings apart from its providers and routes: the provider registry adds those
 * (lambda/send/settings.ts), since only it knows which providers and names exist.
 */
export const relayCoreSettingsSchema = z.strictObject({
  /** The outbox, so a record can be delayed (Retry-After) by changing its visibility. */
  queueUrl: z.url({ protocol: /^https?$/ }),
  deadLetterQueueUrl: z.url({ protocol: /^https?$/ }),
  maxReceiveCount: z.int().min(1).max(1000),
  limits: messageLimitsSchema,
  attachments: attachmentSettingsSchema.optional(),
  /** The bucket messages submitted over SMTP are stored in: raw messages may reference their MIME there. */
  ingress: z.strictObject({ bucket: attachmentSettingsSchema.shape.bucket }).optional(),
  retry: retrySettingsSchema,
  circuitBreaker: circuitBreakerSettingsSchema,
  ledger: ledgerSettingsSchema,
  suppression: suppressionSettingsSchema,
  /** Where final outcomes are published, and which; absent: not published. */
  events: outcomeEventSettingsSchema.optional(),
  /** Sent and FallbackUsed also per Route (one more CloudWatch metric per route); absent: per Provider only. */
  routeMetrics: z.boolean().optional(),
  /** Latencies also per Provider (the dashboard draws them); absent: for the relay as a whole. */
  latencyByProvider: z.boolean().optional(),
  /**
   * Providers another function sends through: the static-egress function, the only one in the VPC
   * behind the Elastic IPs. This function puts their messages on that function's queue instead of
   * sending; absent: it sends through every provider itself.
   */
  staticEgress: z
    .strictObject({
      queueUrl: z.url({ protocol: /^https?$/ }),
      /**
       * The providers it sends through, with whom each sends as: enough to route by. A section whose
       * providers are all here is left out of these settings (the other function has it).
       */
      providers: z
        .array(z.strictObject({ name: z.string().min(1), senders: z.array(z.string().min(1)).min(1) }))
        .min(1),
    })
    .optional(),
  /** The table the fleet paces its sends in (provider limits); absent: no pacing across functions. */
  pacing: z
    .strictObject({
      tableName: tableNameSchema,
      /** The longest a send waits in the function for its turn; longer waits go back to the queue. */
      maxWaitSeconds: z.int().min(0).max(60),
    })
    .optional(),
});
export type SendSettingsCore = z.infer<typeof relayCoreSettingsSchema> & {
  /** Absent: every sender a provider covers is allowed, with the providers that cover it as its chain. */
  readonly routes?: readonly RouteSettings[] | undefined;
};

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
    /** N soft bounces of an address in D days suppress it; absent: soft bounces never suppress. */
    softBounces: z.strictObject({ count: z.int().min(2).max(100), days: z.int().min(1).max(365) }).optional(),
  }),
  /** Where bounced, complained (and delivered) outcomes are published, and which; absent: not published. */
  events: outcomeEventSettingsSchema.optional(),
  /** The delivery ledger, where feedback is noted for `mail-relay status`. */
  ledger: z.strictObject({ tableName: tableNameSchema }).optional(),
});
export type FeedbackSettings = z.infer<typeof feedbackSettingsSchema>;

/** The SES brake's settings: the configuration set it pauses when the critical bounce alarm fires. */
export const sesBrakeSettingsSchema = z.strictObject({
  configurationSetName: sesConfigurationSetNameSchema,
});
export type SesBrakeSettings = z.infer<typeof sesBrakeSettingsSchema>;

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
