import * as z from 'zod';
import {
  classifyFault,
  type FailureTable,
  type ProviderFault,
  providerFamily,
  type RelayFailure,
  S3_FAILURES,
} from '../core/failures.ts';
import type { ProviderName } from '../core/settings.ts';
import { graphDefinition } from './graph/definition.ts';
import type { ConfiguredProvider, ProviderDefinition } from './provider-definition.ts';
import { sesDefinition } from './ses/definition.ts';
import { smtpDefinition } from './smtp/definition.ts';

/**
 * Every kind of provider the relay has, in the order of an implicit chain: the sender's own
 * Microsoft 365 mailbox (Graph) first, then each SMTP connection, then SES. Adding a provider is a
 * folder under lambda/providers/ and a line here (docs/adding-a-provider.md).
 */
export const PROVIDERS = [graphDefinition, smtpDefinition, sesDefinition] as const;

type Registered = (typeof PROVIDERS)[number];

/** The provider sections of the configuration file, each optional, typed from the definitions. */
export type ProviderConfigShape = {
  [D in Registered as D['section']]: z.ZodOptional<D['configSchema']>;
};
/** The provider sections of the send function's settings, each optional. */
export type ProviderSettingsShape = {
  [D in Registered as D['section']]: z.ZodOptional<D['settingsSchema']>;
};

/** The sections as the configuration file's schema has them (with their descriptions). */
export function providerConfigShape(): ProviderConfigShape {
  return Object.fromEntries(
    PROVIDERS.map((definition) => [
      definition.section,
      definition.configSchema.optional().describe(definition.description),
    ]),
  ) as unknown as ProviderConfigShape;
}

/** The sections as the send function's settings have them. */
export function providerSettingsShape(): ProviderSettingsShape {
  return Object.fromEntries(
    PROVIDERS.map((definition) => [definition.section, definition.settingsSchema.optional()]),
  ) as unknown as ProviderSettingsShape;
}

/** "a, b or c" */
function oneOf(items: readonly string[]): string {
  return items.length < 2 ? (items[0] ?? '') : `${items.slice(0, -1).join(', ')} or ${items.at(-1)}`;
}

/** What the relay says when no provider is configured. */
export const NO_PROVIDER_MESSAGE = `configure at least one provider: ${oneOf(
  PROVIDERS.map((definition) => `${definition.section} (${definition.title})`),
)}`;

/** A name a route's chain may use: one a registered provider sets up (`graph`, `smtp:billing` …). */
export const providerNameSchema = z
  .string()
  .regex(
    new RegExp(`^(?:${PROVIDERS.map((definition) => definition.namePattern).join('|')})$`),
    `must be ${oneOf(PROVIDERS.map((definition) => definition.nameHint))}`,
  ) as z.ZodType<ProviderName, ProviderName>;

/** The definition a provider name belongs to (`smtp:billing` is an smtp), if any. */
export function definitionOf(provider: string): ProviderDefinition | undefined {
  const family = providerFamily(provider);
  return PROVIDERS.find((definition) => definition.section === family) as ProviderDefinition | undefined;
}

/**
 * Every provider a configuration sets up, in the order of an implicit chain, read from a
 * configuration that may have failed validation.
 */
export function configuredProviders(config: object): ConfiguredProvider[] {
  return PROVIDERS.flatMap((definition) => {
    const section = (config as Record<string, unknown>)[definition.section];
    return section === undefined ? [] : definition.providersIn(section);
  });
}

/** The provider names a configuration sets up, in the order of an implicit chain. */
export function providerNamesOf(config: object): string[] {
  return configuredProviders(config).map((provider) => provider.name);
}

/** The sections present in a configuration (or settings), with their definitions. */
export function configuredSections(
  config: object,
): { readonly definition: ProviderDefinition; readonly section: unknown }[] {
  return PROVIDERS.flatMap((definition) => {
    const section = (config as Record<string, unknown>)[definition.section];
    return section === undefined ? [] : [{ definition: definition as ProviderDefinition, section }];
  });
}

/** The whole failure table: every provider's rows, and the relay's own (its S3 buckets). */
export const FAILURE_TABLES: readonly FailureTable[] = [
  ...PROVIDERS.map((definition) => definition.failures),
  S3_FAILURES,
];

/** Classifies a fault by the rows of its provider's family (tests, tools); adapters use their own table. */
export function classifyProviderFault(fault: ProviderFault, cause?: unknown): RelayFailure {
  const family = providerFamily(fault.provider);
  const table = FAILURE_TABLES.find((candidate) => candidate.family === family);
  return table ? table.classify(fault, cause) : classifyFault(fault, cause);
}
