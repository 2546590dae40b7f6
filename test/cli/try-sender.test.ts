import { describe, expect, it } from 'vitest';
import { trySender } from '../../cli/try-sender.ts';
import { routeFor } from '../../lambda/core/routing.ts';
import type { RouteSettings } from '../../lambda/core/settings.ts';

describe("the banner's Try: sender", () => {
  const providers = [
    { provider: 'graph', senders: ['contoso.com', 'alerts@fabrikam.com'] },
    { provider: 'smtp', senders: ['fabrikam.com'] },
    { provider: 'ses', senders: ['example.com'] },
  ];

  it('without routes: the first sender of the first provider, an address as it is', () => {
    expect(trySender(undefined, providers)).toBe('app@contoso.com');
    expect(trySender([], [{ provider: 'graph', senders: ['ana@contoso.com'] }])).toBe('ana@contoso.com');
    expect(trySender(undefined, [])).toBe('app@example.com');
  });

  it('with routes: an address a route allows and a provider of that route covers', () => {
    const routes: RouteSettings[] = [
      // Allowed, but no provider of its chain sends as fabrikam.org: not the one to try.
      { name: 'orphan', from: ['*@fabrikam.org'], providers: ['ses'] },
      { name: 'billing', from: ['billing@example.com'], providers: ['ses'] },
    ];
    const sender = trySender(routes, providers);
    expect(sender).toBe('billing@example.com');
    expect(routeFor(routes, sender)?.name).toBe('billing');
    // The first provider's domain, the old choice, is not allowed by any route.
    expect(routeFor(routes, 'app@contoso.com')).toBeUndefined();
  });

  it('a catch-all route tries the providers’ senders; a rewriting route needs no covering provider', () => {
    expect(trySender([{ name: 'all', from: ['*'], providers: ['ses'] }], providers)).toBe('app@example.com');
    const rewriting: RouteSettings[] = [
      {
        name: 'crm',
        from: ['*@crm.example.net'],
        providers: ['smtp'],
        rewriteFrom: { address: 'crm@fabrikam.com', name: 'CRM' },
      },
    ];
    expect(trySender(rewriting, providers)).toBe('app@crm.example.net');
  });

  it('falls back to an allowed address when no provider covers any', () => {
    expect(trySender([{ name: 'x', from: ['ops@nowhere.test'], providers: ['ses'] }], providers)).toBe(
      'ops@nowhere.test',
    );
  });
});
