import type { Mailbox } from './address.ts';
import { domainOf, identityCovers, sameAddress } from './address.ts';
import { RelayFailure } from './failures.ts';
import type { ProviderName, RewriteFrom, RouteSettings } from './settings.ts';

/** What a From pattern matches, most specific first: one address, a domain, anyone. */
export type PatternKind = 'address' | 'domain' | 'any';

export function patternKind(pattern: string): PatternKind {
  if (pattern === '*') return 'any';
  return pattern.startsWith('*@') ? 'domain' : 'address';
}

const SPECIFICITY: Record<PatternKind, number> = { address: 2, domain: 1, any: 0 };

/**
 * `*` matches anyone, `*@contoso.com` addresses at exactly contoso.com, an address itself (any case).
 * A domain matches in Unicode or punycode alike (`*@bücher.de` matches `ana@xn--bcher-kva.de`).
 */
export function patternMatches(pattern: string, address: string): boolean {
  switch (patternKind(pattern)) {
    case 'any':
      return true;
    case 'domain':
      return domainOf(pattern) === domainOf(address);
    case 'address':
      return sameAddress(pattern, address);
  }
}

/** How specifically a route matches an address: -1 when it does not. */
function matchSpecificity(route: RouteSettings, address: string): number {
  return Math.max(
    -1,
    ...route.from
      .filter((pattern) => patternMatches(pattern, address))
      .map((pattern) => SPECIFICITY[patternKind(pattern)]),
  );
}

/**
 * The route for a From address: the one whose pattern matches it most specifically (an address
 * beats `*@domain`, which beats `*`). Configuration validation rules out two routes sharing a pattern,
 * so there is never a tie.
 */
export function routeFor(routes: readonly RouteSettings[], address: string): RouteSettings | undefined {
  let best: RouteSettings | undefined;
  let bestSpecificity = -1;
  for (const route of routes) {
    const specificity = matchSpecificity(route, address);
    if (specificity > bestSpecificity) {
      best = route;
      bestSpecificity = specificity;
    }
  }
  return best;
}

/**
 * The sender policy: the route a message goes by, or a permanent failure saying why it may not be
 * sent. A message may name a route, but only one that allows its From, so a producer cannot borrow
 * a route that sends as someone else.
 */
export function selectRoute(
  routes: readonly RouteSettings[],
  from: string,
  requested: string | undefined,
): RouteSettings {
  if (requested !== undefined) {
    const named = routes.find((route) => route.name === requested);
    if (!named) {
      throw new RelayFailure({
        failureClass: 'permanent',
        code: 'UnknownRoute',
        reason: `route: no route is named "${requested}" (configured: ${routes.map((route) => route.name).join(', ')})`,
        hint: 'Use one of the configured route names, or leave route out to route by the From address.',
      });
    }
    if (matchSpecificity(named, from) < 0) {
      throw new RelayFailure({
        failureClass: 'permanent',
        code: 'RouteNotAllowed',
        reason: `route: "${requested}" does not allow from ${from} (it allows ${named.from.join(', ')})`,
        hint: "Send from an address the route's from patterns list, or add the address to them.",
      });
    }
    return named;
  }
  const route = routeFor(routes, from);
  if (!route) {
    throw new RelayFailure({
      failureClass: 'permanent',
      code: 'SenderNotAllowed',
      reason: `from: ${from} is not allowed by any route`,
      hint: "Add the address (or *@its-domain) to a route's from patterns in the relay configuration.",
    });
  }
  return route;
}

/**
 * Without routes in the configuration every provider that covers a sender sends for it, in the order
 * the providers are given: Graph (the sender's own mailbox), then each SMTP connection in the
 * configuration's order, then SES. So a sender both Graph and SES cover falls back to SES.
 */
export function implicitRoute(
  providers: readonly { name: string; canSendAs(address: string): boolean }[],
  from: string,
): RouteSettings {
  const covering = providers.filter((provider) => provider.canSendAs(from));
  if (covering.length === 0) {
    throw new RelayFailure({
      failureClass: 'permanent',
      code: 'SenderNotAllowed',
      reason: `from: ${from} is not covered by any configured sender`,
      hint: "Add the address or its domain to graph.senders, an SMTP connection's senders (smtp.senders) or ses.identities (verified in SES), or add a route.",
    });
  }
  return {
    name: 'default',
    from: [from],
    providers: covering.map((provider) => provider.name as ProviderName),
  };
}

/**
 * A CRM-style From rewrite for servers that refuse send-as (550 5.7.1): the message leaves from the
 * route's service mailbox as "Original Name via Service", and replies still reach the original sender.
 */
export function rewriteSender(
  sender: { from: Mailbox; replyTo?: Mailbox[] | undefined },
  rewrite: RewriteFrom,
): { from: Mailbox; replyTo: Mailbox[] } {
  const original = sender.from;
  const service = rewrite.name ?? rewrite.address;
  return {
    from: { name: `${original.name ?? original.address} via ${service}`, address: rewrite.address },
    // The producer's own Reply-To wins: it already says where answers should go.
    replyTo: sender.replyTo && sender.replyTo.length > 0 ? sender.replyTo : [original],
  };
}

/** Whether a configured sender (a domain or an address) covers every address a From pattern matches. */
export function senderCoversPattern(sender: string, pattern: string): boolean {
  switch (patternKind(pattern)) {
    case 'any':
      return false;
    case 'domain':
      // Unicode and punycode spellings of a domain are the same domain.
      return !sender.includes('@') && domainOf(`x@${sender}`) === domainOf(`x${pattern.slice(1)}`);
    case 'address':
      return identityCovers(sender, pattern);
  }
}
