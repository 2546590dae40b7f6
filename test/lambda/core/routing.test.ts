import { describe, expect, it } from 'vitest';
import { RelayFailure } from '../../../lambda/core/failures.ts';
import {
  implicitRoute,
  patternMatches,
  rewriteSender,
  routeFor,
  selectRoute,
  senderCoversPattern,
} from '../../../lambda/core/routing.ts';
import type { RouteSettings } from '../../../lambda/core/settings.ts';

const routes: RouteSettings[] = [
  { name: 'anyone', from: ['*'], providers: ['ses'] },
  { name: 'contoso', from: ['*@contoso.com'], providers: ['graph', 'ses'] },
  { name: 'scanner', from: ['scanner@contoso.com'], providers: ['smtp'] },
];

const failureFrom = (run: () => unknown): RelayFailure => {
  try {
    run();
  } catch (error) {
    if (error instanceof RelayFailure) return error;
  }
  throw new Error('expected a RelayFailure');
};

describe('routing', () => {
  it('matches *, *@domain (exactly that domain) and addresses, ignoring case', () => {
    expect(patternMatches('*', 'a@b.com')).toBe(true);
    expect(patternMatches('*@Contoso.com', 'ANA@contoso.COM')).toBe(true);
    expect(patternMatches('*@contoso.com', 'ana@sub.contoso.com')).toBe(false);
    expect(patternMatches('Scanner@contoso.com', 'scanner@CONTOSO.com')).toBe(true);
    expect(patternMatches('scanner@contoso.com', 'other@contoso.com')).toBe(false);
  });

  it('matches a Unicode domain pattern against the punycode address', () => {
    expect(patternMatches('*@bücher.de', 'ana@xn--bcher-kva.de')).toBe(true);
  });

  it('matches a punycode domain pattern against an address written with the Unicode domain', () => {
    expect(patternMatches('*@xn--bcher-kva.de', 'ana@Bücher.de')).toBe(true);
  });

  it('matches an address pattern with a Unicode domain against the punycode address', () => {
    expect(patternMatches('Ana@bücher.de', 'ana@xn--bcher-kva.de')).toBe(true);
  });

  it('does not match a Unicode domain pattern against another domain', () => {
    expect(patternMatches('*@bücher.de', 'ana@xn--bcher-kva.com')).toBe(false);
  });

  it('routes a punycode From by a route written with the Unicode domain', () => {
    const unicode: RouteSettings[] = [
      { name: 'anyone', from: ['*'], providers: ['ses'] },
      { name: 'buecher', from: ['*@bücher.de'], providers: ['graph'] },
    ];
    expect(routeFor(unicode, 'ana@xn--bcher-kva.de')?.name).toBe('buecher');
  });

  it('picks the most specific route whatever the order', () => {
    expect(routeFor(routes, 'scanner@contoso.com')?.name).toBe('scanner');
    expect(routeFor([...routes].reverse(), 'scanner@contoso.com')?.name).toBe('scanner');
    expect(routeFor(routes, 'ana@contoso.com')?.name).toBe('contoso');
    expect(routeFor(routes, 'x@elsewhere.org')?.name).toBe('anyone');
    expect(routeFor(routes.slice(1), 'x@elsewhere.org')).toBeUndefined();
  });

  it('refuses a sender no route allows, naming the field', () => {
    const failure = failureFrom(() => selectRoute(routes.slice(1), 'ceo@evil.example', undefined));
    expect(failure).toMatchObject({ failureClass: 'permanent', code: 'SenderNotAllowed' });
    expect(failure.reason).toBe('from: ceo@evil.example is not allowed by any route');
  });

  it('lets a message ask for a route only if that route allows its From', () => {
    expect(selectRoute(routes, 'scanner@contoso.com', 'contoso').name).toBe('contoso');
    expect(failureFrom(() => selectRoute(routes, 'ana@contoso.com', 'scanner')).code).toBe('RouteNotAllowed');
    expect(failureFrom(() => selectRoute(routes, 'ana@contoso.com', 'missing')).reason).toContain(
      'configured: anyone, contoso, scanner',
    );
  });

  it('without routes, chains every provider that covers the sender, in the given order', () => {
    const providers = [
      { name: 'graph', canSendAs: (address: string) => address.endsWith('@contoso.com') },
      { name: 'ses', canSendAs: () => true },
    ];
    expect(implicitRoute(providers, 'a@contoso.com').providers).toEqual(['graph', 'ses']);
    expect(implicitRoute(providers, 'a@example.com').providers).toEqual(['ses']);
    expect(failureFrom(() => implicitRoute(providers.slice(0, 1), 'a@example.com')).code).toBe(
      'SenderNotAllowed',
    );
  });

  it('without routes, chains graph, then each SMTP connection in configuration order, then ses', () => {
    const covers = (domain: string) => (address: string) => address.endsWith(`@${domain}`);
    const providers = [
      { name: 'graph', canSendAs: covers('contoso.com') },
      { name: 'smtp:billing-ovh', canSendAs: covers('contoso.com') },
      { name: 'smtp:hve', canSendAs: () => true },
      { name: 'ses', canSendAs: () => true },
    ];

    expect(implicitRoute(providers, 'a@contoso.com').providers).toEqual([
      'graph',
      'smtp:billing-ovh',
      'smtp:hve',
      'ses',
    ]);
    expect(implicitRoute(providers, 'a@example.com').providers).toEqual(['smtp:hve', 'ses']);
  });

  it('lets a message ask for a route whose chain names an SMTP connection', () => {
    const certified: RouteSettings[] = [
      { name: 'contoso', from: ['*@contoso.com'], providers: ['graph'] },
      { name: 'certified', from: ['*'], providers: ['smtp:certified'] },
    ];

    expect(selectRoute(certified, 'legal@contoso.com', undefined).name).toBe('contoso');
    expect(selectRoute(certified, 'legal@contoso.com', 'certified').providers).toEqual(['smtp:certified']);
  });

  it('rewrites the sender as "Name via Service", falling back to the address and the mailbox', () => {
    expect(rewriteSender({ from: { address: 'luis@crm.example' } }, { address: 'crm@contoso.com' })).toEqual({
      from: { name: 'luis@crm.example via crm@contoso.com', address: 'crm@contoso.com' },
      replyTo: [{ address: 'luis@crm.example' }],
    });
  });

  it('knows which configured senders cover a pattern', () => {
    expect(senderCoversPattern('contoso.com', '*@contoso.com')).toBe(true);
    expect(senderCoversPattern('ana@contoso.com', '*@contoso.com')).toBe(false);
    expect(senderCoversPattern('contoso.com', 'ana@contoso.com')).toBe(true);
    expect(senderCoversPattern('ana@contoso.com', 'ANA@contoso.com')).toBe(true);
    expect(senderCoversPattern('contoso.com', '*')).toBe(false);
  });

  it('takes the Unicode and punycode spellings of a domain as the same sender', () => {
    expect(senderCoversPattern('bücher.de', '*@xn--bcher-kva.de')).toBe(true);
    expect(senderCoversPattern('xn--bcher-kva.de', '*@bücher.de')).toBe(true);
    expect(senderCoversPattern('bücher.de', '*@buecher.de')).toBe(false);
  });
});
