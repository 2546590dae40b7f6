import * as z from 'zod';
import { pacingConfigSchema } from '../../core/pacing/limits.ts';
import { type SesSettings, sesSettingsSchema } from './settings.ts';

/** The `ses` section of the configuration, each field described. */
export const sesConfigSchema = z.strictObject({
  identities: sesSettingsSchema.shape.identities.describe(
    'Identities verified in SES that the relay may send from: domains (example.com: every address there) or single addresses (noreply@example.com). The send permission is scoped to exactly these.',
  ),
  configurationSetName: sesSettingsSchema.shape.configurationSetName.describe(
    'An existing SES configuration set for every message (dedicated IPs, your own event destinations); the relay adds an EventBridge event destination to it for its feedback function. Default: the stack creates one, with reputation metrics.',
  ),
  pacing: pacingConfigSchema
    .optional()
    .describe(
      "The limits the relay keeps SES sends within, across every send function at once (docs/pacing.md). Default: perProvider.recipientsPerSecond is the account's maximum send rate, read from SES (GetAccount) when the function starts (1 in the sandbox). Set it to pace below that; false turns pacing off.",
    ),
});
export type SesConfig = z.output<typeof sesConfigSchema>;

/** The send function's SES settings. */
export function sesSettingsFor(ses: SesConfig): SesSettings {
  return {
    identities: ses.identities,
    ...(ses.configurationSetName !== undefined && { configurationSetName: ses.configurationSetName }),
    ...(ses.pacing !== undefined && { pacing: ses.pacing }),
  };
}
