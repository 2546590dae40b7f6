import * as z from 'zod';

/**
 * A provider's limits on one scope (a sender mailbox, or the provider account or connection as a
 * whole). Every field is optional: absent means the relay does not pace on it.
 */
export const paceLimitsSchema = z.strictObject({
  /** Requests to the provider in progress at once, across every send function (Graph: 4 per mailbox). */
  concurrentRequests: z.int().min(1).max(1000).optional(),
  /** Messages per minute (Exchange Online: 30 per mailbox). */
  messagesPerMinute: z.int().min(1).max(100_000).optional(),
  /** Recipients per second, to + cc + bcc (SES: the account's maximum send rate). */
  recipientsPerSecond: z.number().positive().max(100_000).optional(),
  /** Recipients per UTC day, to + cc + bcc (Exchange Online: 10,000 per mailbox). */
  recipientsPerDay: z.int().min(1).max(10_000_000).optional(),
});
export type PaceLimits = z.infer<typeof paceLimitsSchema>;

/** What a provider's settings say about pacing: per sending mailbox, for the provider as a whole, and exceptions. */
export const providerPacingSchema = z.strictObject({
  perMailbox: paceLimitsSchema.optional(),
  perProvider: paceLimitsSchema.optional(),
  /** Limits of single mailboxes (by address) instead of perMailbox. */
  mailboxes: z.record(z.string(), paceLimitsSchema).optional(),
});
export type ProviderPacing = z.infer<typeof providerPacingSchema>;

/** One limited scope of a send: its key in the pacing table and its limits. */
export interface PaceScope {
  /** `graph|mailbox|app@contoso.com`, `ses|provider` … */
  readonly key: string;
  /** For metrics and logs: `mailbox` or `provider`. */
  readonly kind: 'mailbox' | 'provider';
  readonly limits: PaceLimits;
}

/** The scopes that limit sending as `mailbox` through `provider` (none: not paced). */
export function scopesFor(
  provider: string,
  pacing: ProviderPacing | undefined,
  mailbox: string,
): PaceScope[] {
  if (!pacing) return [];
  const address = mailbox.toLowerCase();
  const perMailbox = pacing.mailboxes?.[address] ?? pacing.perMailbox;
  const scopes: PaceScope[] = [];
  if (perMailbox && hasLimits(perMailbox)) {
    scopes.push({ key: `${provider}|mailbox|${address}`, kind: 'mailbox', limits: perMailbox });
  }
  if (pacing.perProvider && hasLimits(pacing.perProvider)) {
    scopes.push({ key: `${provider}|provider`, kind: 'provider', limits: pacing.perProvider });
  }
  return scopes;
}

function hasLimits(limits: PaceLimits): boolean {
  return Object.values(limits).some((value) => value !== undefined);
}

/** The names limits go by in metrics, logs and the dead-letter reason. */
export type LimitName = keyof PaceLimits;

/**
 * A provider's `pacing` in the configuration file: its limits (each field overrides the provider's
 * default), or false to turn pacing off for it.
 */
export const pacingConfigSchema = z.union([z.literal(false), providerPacingSchema]);
export type PacingConfig = z.infer<typeof pacingConfigSchema>;

/**
 * The limits a provider runs with: its defaults, each field overridden by what the configuration
 * says; undefined when the configuration turns pacing off or nothing is limited.
 */
export function resolvePacing(
  defaults: ProviderPacing,
  configured: PacingConfig | undefined,
): ProviderPacing | undefined {
  if (configured === false) return undefined;
  const merge = (base: PaceLimits | undefined, override: PaceLimits | undefined) =>
    base || override ? { ...base, ...override } : undefined;
  const perMailbox = merge(defaults.perMailbox, configured?.perMailbox);
  const perProvider = merge(defaults.perProvider, configured?.perProvider);
  const mailboxes = configured?.mailboxes
    ? Object.fromEntries(
        Object.entries(configured.mailboxes).map(([address, limits]) => [
          address.toLowerCase(),
          { ...perMailbox, ...limits },
        ]),
      )
    : undefined;
  const pacing: ProviderPacing = {
    ...(perMailbox && hasLimits(perMailbox) && { perMailbox }),
    ...(perProvider && hasLimits(perProvider) && { perProvider }),
    ...(mailboxes && { mailboxes }),
  };
  return Object.keys(pacing).length > 0 ? pacing : undefined;
}
