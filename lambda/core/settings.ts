import { z } from 'zod';
import { identityCovers, isDomainName, isEmailAddress } from './address.ts';
import { SES_MAX_MESSAGE_BYTES, SES_MAX_RECIPIENTS_PER_MESSAGE } from './limits.ts';
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
    .max(SES_MAX_RECIPIENTS_PER_MESSAGE, `SES accepts at most ${SES_MAX_RECIPIENTS_PER_MESSAGE} recipients`),
  maxMessageBytes: z
    .int()
    .min(1024)
    .max(SES_MAX_MESSAGE_BYTES, `SES accepts at most ${SES_MAX_MESSAGE_BYTES} bytes per message`),
});
export type MessageLimits = z.infer<typeof messageLimitsSchema>;

export const sesSettingsSchema = z.strictObject({
  identities: z.array(sesIdentitySchema).min(1, 'list at least one verified SES identity'),
  configurationSetName: z
    .string()
    .regex(
      /^[A-Za-z0-9_-]{1,64}$/,
      'may contain only letters, digits, hyphens and underscores (the SES naming rule)',
    )
    .optional(),
});
export type SesSettings = z.infer<typeof sesSettingsSchema>;

export const relaySettingsSchema = z.strictObject({
  deadLetterQueueUrl: z.url({ protocol: /^https?$/ }),
  maxReceiveCount: z.int().min(1).max(1000),
  limits: messageLimitsSchema,
  ses: sesSettingsSchema,
});
export type RelaySettings = z.infer<typeof relaySettingsSchema>;

/** Reads and validates the settings at cold start, failing with every problem listed. */
export function readSettings(env: Readonly<Record<string, string | undefined>>): RelaySettings {
  const raw = env[SETTINGS_ENV_VAR];
  if (!raw) {
    throw new ConfigurationError('Invalid send function environment', [
      `${SETTINGS_ENV_VAR}: not set (the MailRelay construct writes it; in local mode \`npm start\` does)`,
    ]);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    throw new ConfigurationError('Invalid send function environment', [
      `${SETTINGS_ENV_VAR}: not valid JSON`,
    ]);
  }
  const result = relaySettingsSchema.safeParse(parsed);
  if (!result.success) {
    throw new ConfigurationError(
      'Invalid send function environment',
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

export function sesIdentityFor(settings: SesSettings, address: string): string | undefined {
  return settings.identities.find((identity) => identityCovers(identity, address));
}
