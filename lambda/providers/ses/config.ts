import { sesSettingsSchema } from './settings.ts';

/** The `ses` section of the configuration: the settings' shape, each field described. */
export const sesConfigSchema = sesSettingsSchema.extend({
  identities: sesSettingsSchema.shape.identities.describe(
    'Identities verified in SES that the relay may send from: domains (example.com: every address there) or single addresses (noreply@example.com). The send permission is scoped to exactly these.',
  ),
  configurationSetName: sesSettingsSchema.shape.configurationSetName.describe(
    'An existing SES configuration set for every message (dedicated IPs, your own event destinations); the relay adds an EventBridge event destination to it for its feedback function. Default: the stack creates one, with reputation metrics.',
  ),
});
