import { isIP } from 'node:net';
import * as z from 'zod';
import { isDomainName, isEmailAddress } from '../../core/address.ts';
import { pacingConfigSchema } from '../../core/pacing/limits.ts';
import type { ProviderName } from '../../core/settings.ts';

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
export const SMTP_CONNECTION_NAME_SOURCE = SMTP_CONNECTION_NAME_PATTERN.source.slice(1, -1);

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
  /** What the configuration changes of the default pacing limits (false: not paced); absent: the defaults. */
  pacing: pacingConfigSchema.optional(),
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
