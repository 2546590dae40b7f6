import * as z from 'zod';
import { readSettingsWith, relayCoreSettingsSchema, routeSettingsSchemaFor } from '../core/settings.ts';
import {
  configuredSections,
  NO_PROVIDER_MESSAGE,
  providerNameSchema,
  providerSettingsShape,
} from '../providers/registry.ts';

/**
 * The send function's settings (MAIL_RELAY_SETTINGS): the relay's own, and a section per configured
 * provider, each validated by its definition, with the rules across sections each definition has.
 */
export const relaySettingsSchema = relayCoreSettingsSchema
  .extend({
    ...providerSettingsShape(),
    /** Absent: every sender a provider covers is allowed, with the providers that cover it as its chain. */
    routes: z.array(routeSettingsSchemaFor(providerNameSchema)).min(1).optional(),
  })
  .superRefine((settings, ctx) => {
    const sections = configuredSections(settings);
    // Providers passed to the static-egress function count: this function routes to them.
    if (sections.length === 0 && !settings.staticEgress) {
      ctx.addIssue({ code: 'custom', path: [], message: NO_PROVIDER_MESSAGE });
    }
    for (const { definition, section } of sections) {
      for (const problem of definition.settingsProblems(section, settings)) {
        ctx.addIssue({ code: 'custom', path: [...problem.path], message: problem.message });
      }
    }
    for (const [index, provider] of (settings.staticEgress?.providers ?? []).entries()) {
      if (!providerNameSchema.safeParse(provider.name).success) {
        ctx.addIssue({
          code: 'custom',
          path: ['staticEgress', 'providers', index, 'name'],
          message: `"${provider.name}" is not a provider name`,
        });
      }
    }
  });
export type RelaySettings = z.infer<typeof relaySettingsSchema>;

/** Reads and validates the send function's settings at cold start, failing with every problem listed. */
export function readSettings(env: Readonly<Record<string, string | undefined>>): RelaySettings {
  return readSettingsWith(relaySettingsSchema, env);
}
