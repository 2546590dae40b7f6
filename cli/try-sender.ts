import { identityCovers } from '../lambda/core/address.ts';
import { routeFor } from '../lambda/core/routing.ts';
import type { RouteSettings } from '../lambda/core/settings.ts';

/** Who a provider sends as: addresses, or domains (any address at them). */
export interface ProviderSenders {
  readonly provider: string;
  readonly senders: readonly string[];
}

/** An address a sender identity stands for: itself, or app@ the domain. */
function addressOf(identity: string): string {
  return identity.includes('@') ? identity : `app@${identity}`;
}

/**
 * The From address for the banner's "Try:" line: one the configured routes allow (and, when one
 * does, that a provider of its route covers), so the first message a newcomer sends goes out.
 * Without routes: the first sender of the first provider, in the implicit chain's order.
 */
export function trySender(
  routes: readonly RouteSettings[] | undefined,
  providers: readonly ProviderSenders[],
): string {
  const covered = providers.flatMap(({ provider, senders }) =>
    senders.map((identity) => ({ provider, identity })),
  );
  const fallback = addressOf(covered[0]?.identity ?? 'example.com');
  if (!routes || routes.length === 0) return fallback;
  const candidates = routes.flatMap((route) =>
    route.from.flatMap((pattern) => {
      if (pattern === '*') return covered.map(({ identity }) => addressOf(identity));
      return [pattern.startsWith('*@') ? `app@${pattern.slice(2)}` : pattern];
    }),
  );
  const allowed = candidates.filter((address) => routeFor(routes, address) !== undefined);
  const sendable = allowed.find((address) => {
    const route = routeFor(routes, address);
    if (route?.rewriteFrom !== undefined) return true;
    return covered.some(
      ({ provider, identity }) => route?.providers.includes(provider) && identityCovers(identity, address),
    );
  });
  return sendable ?? allowed[0] ?? fallback;
}
