import * as z from 'zod';
import { identityCovers, isDomainName, isEmailAddress } from '../../core/address.ts';
import { pacingConfigSchema } from '../../core/pacing/limits.ts';
import { sesConfigurationSetNameSchema } from '../../core/settings.ts';

export const sesIdentitySchema = z
  .string()
  .refine((value) => isDomainName(value) || isEmailAddress(value), {
    message: 'must be a domain (example.com) or an email address (noreply@example.com) verified in SES',
  })
  // Identities become IAM resource ARNs that scope sending; there `*` and `?` are wildcards.
  .refine((value) => !/[*?]/.test(value), {
    message: 'must not contain * or ? (IAM would read them as wildcards in the send permission)',
  });

export const sesSettingsSchema = z.strictObject({
  identities: z.array(sesIdentitySchema).min(1, 'list at least one verified SES identity'),
  configurationSetName: sesConfigurationSetNameSchema.optional(),
  /**
   * What the configuration sets of the pacing limits (false: not paced); without a rate, the account's
   * maximum send rate is read at cold start.
   */
  pacing: pacingConfigSchema.optional(),
});
export type SesSettings = z.infer<typeof sesSettingsSchema>;
export function sesIdentityFor(settings: SesSettings, address: string): string | undefined {
  return settings.identities.find((identity) => identityCovers(identity, address));
}
