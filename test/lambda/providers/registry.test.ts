import { describe, expect, it } from 'vitest';
import {
  configuredProviders,
  definitionOf,
  NO_PROVIDER_MESSAGE,
  PROVIDERS,
  providerNameSchema,
  providerNamesOf,
} from '../../../lambda/providers/registry.ts';
import { relaySettingsSchema } from '../../../lambda/send/settings.ts';
import { relayConfigSchema } from '../../../lib/config.ts';

const SMTP_CONNECTION = { senders: ['billing@contoso.com'], mode: 'smarthost', host: 'mail.example.net' };

describe('the provider registry', () => {
  it('gives the configuration file and the send settings one section per registered provider', () => {
    const sections = PROVIDERS.map((definition) => definition.section);

    expect(sections).toEqual(['graph', 'smtp', 'ses']);
    for (const section of sections) {
      expect(Object.keys(relayConfigSchema.shape)).toContain(section);
      expect(Object.keys(relaySettingsSchema.shape)).toContain(section);
    }
  });

  it('accepts exactly the names the registered providers set up in a route', () => {
    for (const name of ['graph', 'ses', 'smtp', 'smtp:billing-ovh']) {
      expect(providerNameSchema.safeParse(name).success, name).toBe(true);
    }
    for (const name of ['Graph', 'smtp:Billing', 'smtp:', 'ses:eu', 'postmark']) {
      expect(providerNameSchema.safeParse(name).success, name).toBe(false);
    }
  });

  it('lists the configured providers in the implicit chain order, whatever the order of the file', () => {
    const config = {
      ses: { identities: ['contoso.com'] },
      smtp: { connections: { billing: SMTP_CONNECTION, hve: SMTP_CONNECTION } },
      graph: { senders: ['contoso.com'] },
    };

    expect(providerNamesOf(config)).toEqual(['graph', 'smtp:billing', 'smtp:hve', 'ses']);
    expect(configuredProviders(config).map((provider) => [...provider.path, provider.sendersField])).toEqual([
      ['graph', 'senders'],
      ['smtp', 'connections', 'billing', 'senders'],
      ['smtp', 'connections', 'hve', 'senders'],
      ['ses', 'identities'],
    ]);
  });

  it('finds the definition of a named connection by its family', () => {
    expect(definitionOf('smtp:billing')?.section).toBe('smtp');
    expect(definitionOf('graph')?.section).toBe('graph');
    expect(definitionOf('postmark')).toBeUndefined();
  });

  it('names every registered provider when none is configured', () => {
    for (const definition of PROVIDERS) expect(NO_PROVIDER_MESSAGE).toContain(definition.section);
  });

  it('explains a route name whose provider is missing, per provider', () => {
    const smtp = definitionOf('smtp');

    expect(definitionOf('graph')?.whyNotConfigured('graph', undefined)).toBe(
      '"graph" is not configured: add a graph section (with its credentials) or remove it from the chain',
    );
    expect(smtp?.whyNotConfigured('smtp:hve', { connections: { billing: SMTP_CONNECTION } })).toBe(
      '"smtp:hve" is not a configured SMTP connection (configured: smtp:billing): name one of them, or remove it from the chain',
    );
  });
});
