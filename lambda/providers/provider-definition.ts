import type { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import type { z } from 'zod';
import type { FailureTable } from '../core/failures.ts';
import type { MailProvider } from '../core/mail-provider.ts';
import type { ProviderPacing } from '../core/pacing/limits.ts';
import type { HttpTransport } from './http-transport.ts';

/** A problem of a configuration, where it is written and what is wrong. */
export interface ConfigProblem {
  readonly path: readonly (string | number)[];
  readonly message: string;
}

/** One provider a configuration section sets up (a section may set up several: SMTP connections). */
export interface ConfiguredProvider {
  /** What routes, metrics, the ledger and failures call it: `graph`, `smtp`, `smtp:billing`. */
  readonly name: string;
  /** Where it is written: `['graph']`, `['smtp', 'connections', 'billing']`. */
  readonly path: readonly string[];
  /** Where its sender list is written, relative to `path`: `senders`, `identities`. */
  readonly sendersField: string;
  /** The senders as written; in a configuration that failed validation, anything. */
  readonly senders: unknown;
}

/** A Secrets Manager secret the send function reads for a provider (an app credential, a password). */
export interface CredentialSecret {
  /** The provider that uses it. */
  readonly provider: string;
  /** The construct ID the stack gives the secret: it names the resource, so it never changes. */
  readonly constructId: string;
  /** Where its ARN is written (`smtp.credentialSecretArn`), for errors. */
  readonly path: readonly string[];
  /** The existing secret's ARN; absent: the stack creates one holding a placeholder (see `placeholder`). */
  readonly arn?: string;
  /** What a secret the stack creates holds until the admin puts the credential in; absent: never created. */
  readonly placeholder?: { readonly description: string; readonly value: Readonly<Record<string, string>> };
}

/** An IAM statement the send function needs to send through a provider. */
export interface SendPermission {
  readonly actions: readonly string[];
  /**
   * Resources of the provider's service in the stack's partition, region and account
   * (`identity/example.com`), or `*` for an action that has no resource ARN.
   */
  readonly resources: readonly string[];
  /** The service in the ARNs (`ses`). */
  readonly service: string;
}

/** What the stack (or local mode) made for a section, which its settings name. */
export interface SectionResources {
  /** The batch size of the send function: pools default to it. */
  readonly batchSize: number;
  /** The secret the stack created or imported for the section's first credential, by provider name. */
  readonly credentialSecretIds: ReadonlyMap<string, string>;
  /** The SES configuration set every SES send uses (the one the stack created when none is configured). */
  readonly sesConfigurationSetName?: string;
}

/** What the send function gives a section's factory: shared clients and the test/local-mode overrides. */
export interface ProviderRuntime {
  readonly secrets: SecretsManagerClient;
  /** The whole settings, for a provider that borrows another's (SMTP's XOAUTH2 tokens come from Graph's app). */
  readonly settings: Readonly<Record<string, unknown>>;
  /** HTTPS for Entra ID and Graph; local mode passes one that trusts its Graph peer's certificate. */
  readonly graphTransport?: HttpTransport;
  /** Extra CA for SMTP servers: one for all, or one per provider name. */
  readonly smtpCa?: string | Readonly<Record<string, string>>;
  /** How long a provider may stay silent before a call counts as failed. */
  readonly providerTimeoutMs?: number;
  /** One value per key for the send function's life: what providers share (Graph's app credential). */
  shared<T>(key: string, create: () => T): T;
}

/**
 * Everything the relay knows about one kind of provider, in its own folder (lambda/providers/<name>/):
 * its configuration section and the send function's settings for it (zod), its failure table, its
 * secrets, permissions and egress ports, and the factory of its adapters. The registry
 * (lambda/providers/registry.ts) lists them; the handler, the CDK construct, local mode and the CLI
 * loop over that list. See docs/adding-a-provider.md.
 *
 * @typeParam Section - the key of its section in the configuration file and in the settings
 */
export interface ProviderDefinition<
  Section extends string = string,
  ConfigSchema extends z.ZodType = z.ZodType,
  SettingsSchema extends z.ZodType = z.ZodType,
> {
  readonly section: Section;
  /** A human name for messages and the local-mode banner: "Microsoft Graph". */
  readonly title: string;
  /**
   * The provider names the section sets up, as a regular expression source (no anchors): `graph`,
   * `smtp(?::[a-z][a-z0-9-]{0,31})?`. Routes may name only these.
   */
  readonly namePattern: string;
  /** How those names read in a message: `graph`, `smtp (the smtp section) or smtp:<name> (…)`. */
  readonly nameHint: string;
  /** The most recipients and bytes one message sent through it may have. */
  readonly limits: { readonly maxRecipients: number; readonly maxMessageBytes: number };
  /** The section as users write it (defaults and descriptions: the JSON Schema and the construct props). */
  readonly configSchema: ConfigSchema;
  /** What the section says about itself in the configuration's documentation. */
  readonly description: string;
  /** The section of the send function's settings (MAIL_RELAY_SETTINGS). */
  readonly settingsSchema: SettingsSchema;
  readonly failures: FailureTable;

  /**
   * Why a route's name of this kind is not configured (no section, or no such connection): what to
   * add, or which names exist. `section` is the section as written, or undefined.
   */
  whyNotConfigured(name: string, section: unknown): string;
  /** The providers a section sets up, read from a configuration that may have failed validation. */
  providersIn(section: unknown): ConfiguredProvider[];
  /**
   * Rules across the section's fields and the rest of the configuration (which may have failed
   * validation: read it through `fieldOf`), at synth and in local mode.
   */
  configProblems(section: unknown, config: object): ConfigProblem[];
  /** The send function's settings for a validated section. */
  settingsFor(section: z.output<ConfigSchema>, resources: SectionResources): z.output<SettingsSchema>;
  /** Rules across the settings the function checks at cold start (every problem, with its path). */
  settingsProblems(
    settings: z.output<SettingsSchema>,
    all: Readonly<Record<string, unknown>>,
  ): ConfigProblem[];
  /** The secrets the send function reads for a validated section. */
  credentialSecrets(section: z.output<ConfigSchema>): CredentialSecret[];
  /** What the send function may do in AWS to send through it. */
  sendPermissions(section: z.output<ConfigSchema>, resources: SectionResources): SendPermission[];
  /** The TCP ports the send function connects to (its security group lets out only these). */
  egressPorts(settings: z.output<SettingsSchema>): number[];
  /** Who each provider sends as, from the settings (the local-mode banner, `mail-relay` hints). */
  sendersOf(
    settings: z.output<SettingsSchema>,
  ): { readonly provider: string; readonly senders: readonly string[] }[];
  /** The limits each provider the section sets up is paced to (see core/pacing), from the settings. */
  pacingOf(
    settings: z.output<SettingsSchema>,
  ): { readonly provider: string; readonly pacing: ProviderPacing | undefined }[];
  /**
   * Limits read from the provider's account at cold start (SES's maximum send rate), replacing what
   * pacingOf said for those providers; absent: nothing to read.
   */
  readPacing?(
    settings: z.output<SettingsSchema>,
    runtime: ProviderRuntime,
  ): Promise<{ readonly provider: string; readonly pacing: ProviderPacing | undefined }[]>;
  /** The section's adapters, in the order of an implicit chain. */
  createProviders(settings: z.output<SettingsSchema>, runtime: ProviderRuntime): MailProvider[];
}

/** Keeps a definition's literal section name and schema types (the registry's types are built from them). */
export function defineProvider<
  const Section extends string,
  ConfigSchema extends z.ZodType,
  SettingsSchema extends z.ZodType,
>(definition: ProviderDefinition<Section, ConfigSchema, SettingsSchema>) {
  return definition;
}

/** Reads a field of a value that may have failed validation, where any shape is possible. */
export function fieldOf(value: unknown, ...path: string[]): unknown {
  let current = value;
  for (const key of path) {
    if (typeof current !== 'object' || current === null) return undefined;
    current = (current as Record<string, unknown>)[key];
  }
  return current;
}
