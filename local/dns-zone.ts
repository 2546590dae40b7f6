import { isIPv6 } from 'node:net';
import type { DoctorSettings } from '../cli/doctor/target.ts';
import { domainOf, isEmailAddress, toAsciiDomain } from '../lambda/core/address.ts';
import type { DnsRecordSet, DnsRecords } from './peers/dns-peer.ts';

/**
 * What each sender domain's DNS must say for the configured sending paths, and the zone local mode's
 * DNS peer serves so that `mail-relay doctor`'s DNS checks pass for a correct configuration. Both
 * live here so the zone and the checks (cli/doctor/dns-checks.ts) cannot drift apart.
 *
 * The zone is only what doctor reads: nothing in local mode resolves mail hosts through it, and its
 * MX hosts point at 127.0.0.1 so that even a mistaken connection would stay on this machine.
 */

/** Where a Microsoft cloud's Exchange Online publishes its SPF and hosts its customers' MX. */
export interface ExchangeCloud {
  readonly name: 'global' | 'usgov' | 'china';
  readonly spfInclude: string;
  /** The MX of an Exchange Online domain is `<domain, dots → dashes><mxSuffix>`. */
  readonly mxSuffix: string;
}

export const EXCHANGE_CLOUDS = {
  global: {
    name: 'global',
    spfInclude: 'spf.protection.outlook.com',
    mxSuffix: '.mail.protection.outlook.com',
  },
  usgov: {
    name: 'usgov',
    spfInclude: 'spf.protection.office365.us',
    mxSuffix: '.mail.protection.office365.us',
  },
  china: {
    name: 'china',
    spfInclude: 'spf.protection.partner.outlook.cn',
    mxSuffix: '.mail.protection.partner.outlook.cn',
  },
} as const satisfies Record<string, ExchangeCloud>;

/** What SES's MAIL FROM domain (amazonses.com, or a custom MAIL FROM domain) includes. */
export const SES_SPF_INCLUDE = 'amazonses.com';

/** One sender domain and what its configured paths need of its DNS. */
export interface SenderDomain {
  /** Lower-case ASCII. */
  readonly domain: string;
  /** Providers that send as this domain, in configuration order: `graph`, `smtp:billing`, `ses`. */
  readonly providers: readonly string[];
  /** SPF includes the domain needs, each with the providers that need it (Graph, Exchange SMTP). */
  readonly includes: ReadonlyMap<string, readonly string[]>;
  /** Connector-mode providers: the relay's egress IPs must be in the SPF. */
  readonly connectorProviders: readonly string[];
  /** SMTP servers that are neither Exchange Online nor SES: their own SPF must be included. */
  readonly smartHosts: readonly { readonly provider: string; readonly host: string }[];
  /** Whether SES (API or SMTP interface) sends as this domain: its MAIL FROM is not this domain. */
  readonly ses: boolean;
  /** The Exchange Online cloud hosting this domain's mailboxes, when Graph or Exchange SMTP sends as it. */
  readonly exchange?: ExchangeCloud;
}

/** Whether the domain has paths whose mail is checked against this domain's SPF (all but SES's). */
export function needsSpf(domain: SenderDomain): boolean {
  return domain.includes.size > 0 || domain.connectorProviders.length > 0 || domain.smartHosts.length > 0;
}

/** The cloud of the graph section, by the top-level domain of its hosts (.us: GCC High/DoD, .cn: 21Vianet). */
export function graphCloudOf(settings: DoctorSettings): ExchangeCloud {
  const hosts = [settings.graph?.authorityHost, settings.graph?.graphEndpoint]
    .filter((url): url is string => url !== undefined)
    .map((url) => new URL(url).hostname.toLowerCase());
  if (hosts.some((host) => host.endsWith('.us'))) return EXCHANGE_CLOUDS.usgov;
  if (hosts.some((host) => host.endsWith('.cn'))) return EXCHANGE_CLOUDS.china;
  return EXCHANGE_CLOUDS.global;
}

/** The Exchange Online cloud an SMTP host belongs to, if it is Exchange Online's. */
export function exchangeCloudOfHost(host: string): ExchangeCloud | undefined {
  const name = host.toLowerCase().replace(/\.$/, '');
  for (const cloud of Object.values(EXCHANGE_CLOUDS)) if (name.endsWith(cloud.mxSuffix)) return cloud;
  // Client submission (smtp.office365.com) and High Volume Email (smtp-hve.office365.com).
  if (name === 'smtp.office365.com' || name === 'smtp-hve.office365.com') return EXCHANGE_CLOUDS.global;
  if (name === 'smtp.office365.us') return EXCHANGE_CLOUDS.usgov;
  if (name === 'smtp.partner.outlook.cn') return EXCHANGE_CLOUDS.china;
  return undefined;
}

/** SES's SMTP interface (email-smtp.<region>.amazonaws.com): mail leaves with SES's MAIL FROM. */
function isSesSmtpHost(host: string): boolean {
  return /^email-smtp(?:-fips)?\.[a-z0-9-]+\.amazonaws\.com\.?$/i.test(host);
}

/** The lower-case ASCII domain of a sender (an address or a domain); undefined when it is neither. */
export function senderDomainOf(sender: string): string | undefined {
  if (isEmailAddress(sender)) return domainOf(sender);
  return toAsciiDomain(sender)?.toLowerCase();
}

interface MutableSenderDomain {
  domain: string;
  providers: string[];
  includes: Map<string, string[]>;
  connectorProviders: string[];
  smartHosts: { provider: string; host: string }[];
  ses: boolean;
  exchange?: ExchangeCloud;
}

/** Every sender domain of the settings (deduplicated, in configuration order) with what it needs. */
export function senderDomainsOf(settings: DoctorSettings): SenderDomain[] {
  const domains = new Map<string, MutableSenderDomain>();
  const entryFor = (sender: string, provider: string): MutableSenderDomain | undefined => {
    const domain = senderDomainOf(sender);
    if (domain === undefined) return undefined;
    let entry = domains.get(domain);
    if (entry === undefined) {
      entry = {
        domain,
        providers: [],
        includes: new Map(),
        connectorProviders: [],
        smartHosts: [],
        ses: false,
      };
      domains.set(domain, entry);
    }
    if (!entry.providers.includes(provider)) entry.providers.push(provider);
    return entry;
  };
  const needInclude = (entry: MutableSenderDomain, cloud: ExchangeCloud, provider: string) => {
    const providers = entry.includes.get(cloud.spfInclude) ?? [];
    if (!providers.includes(provider)) providers.push(provider);
    entry.includes.set(cloud.spfInclude, providers);
    entry.exchange ??= cloud;
  };
  const graphCloud = graphCloudOf(settings);

  for (const sender of settings.graph?.senders ?? []) {
    const entry = entryFor(sender, 'graph');
    if (entry) needInclude(entry, graphCloud, 'graph');
  }
  for (const smtp of settings.smtp ?? []) {
    // Connector mode is an Exchange Online inbound connector by definition, whatever host it names
    // (local mode's is a loopback peer): the cloud is the host's, else the graph section's.
    const hostCloud = exchangeCloudOfHost(smtp.host);
    const cloud = hostCloud ?? (smtp.mode === 'connector' ? graphCloud : undefined);
    for (const sender of smtp.senders) {
      const entry = entryFor(sender, smtp.name);
      if (entry === undefined) continue;
      if (cloud !== undefined) needInclude(entry, cloud, smtp.name);
      if (smtp.mode === 'connector') {
        if (!entry.connectorProviders.includes(smtp.name)) entry.connectorProviders.push(smtp.name);
      } else if (isSesSmtpHost(smtp.host)) {
        entry.ses = true;
      } else if (cloud === undefined && !entry.smartHosts.some((known) => known.provider === smtp.name)) {
        entry.smartHosts.push({ provider: smtp.name, host: smtp.host });
      }
    }
  }
  for (const identity of settings.ses?.identities ?? []) {
    const entry = entryFor(identity, 'ses');
    if (entry) entry.ses = true;
  }
  return [...domains.values()];
}

/** The SPF mechanisms a domain's paths need: the egress IPs (connector mode), then the includes. */
export function requiredSpfMechanisms(
  domain: SenderDomain,
  egressIps: readonly string[] | undefined,
): string[] {
  const ips =
    domain.connectorProviders.length > 0
      ? (egressIps ?? []).map((ip) => (isIPv6(ip) ? `ip6:${ip}` : `ip4:${ip}`))
      : [];
  return [...ips, ...[...domain.includes.keys()].map((include) => `include:${include}`)];
}

/** The record a domain should publish, for a fix: what its paths need, and `-all`. */
export function suggestedSpfRecord(domain: SenderDomain, egressIps: readonly string[] | undefined): string {
  const mechanisms = requiredSpfMechanisms(domain, egressIps);
  if (domain.connectorProviders.length > 0 && (egressIps ?? []).length === 0) {
    mechanisms.unshift('ip4:<egress IP>');
  }
  for (const { host } of domain.smartHosts) mechanisms.push(`include:<SPF domain of ${host}>`);
  if (domain.ses && !needsSpf(domain)) mechanisms.push(`include:${SES_SPF_INCLUDE}`);
  return ['v=spf1', ...mechanisms, '-all'].join(' ');
}

/** The MX host Exchange Online gives a domain: contoso.com → contoso-com.mail.protection.outlook.com. */
export function exchangeMxHostOf(domain: string, cloud: ExchangeCloud): string {
  return `${domain.replaceAll('.', '-')}${cloud.mxSuffix}`;
}

/**
 * Stand-ins for the SPF records the zone's includes name, with ranges like the real ones (what is
 * published changes; doctor only needs a valid record behind each include).
 */
const INCLUDED_SPF_RECORDS: Readonly<Record<string, string>> = {
  [EXCHANGE_CLOUDS.global.spfInclude]:
    'v=spf1 ip4:40.92.0.0/15 ip4:40.107.0.0/16 ip4:52.100.0.0/15 ip4:52.102.0.0/16 ip4:104.47.0.0/17 ip6:2a01:111:f400::/48 ip6:2a01:111:f403::/48 -all',
  [EXCHANGE_CLOUDS.usgov.spfInclude]:
    'v=spf1 ip4:23.103.128.0/19 ip4:52.126.192.0/19 ip6:2001:489a:2200::/40 -all',
  [EXCHANGE_CLOUDS.china.spfInclude]:
    'v=spf1 ip4:40.73.0.0/16 ip4:52.130.0.0/15 ip6:2406:e500:4000::/35 -all',
  [SES_SPF_INCLUDE]:
    'v=spf1 ip4:199.255.192.0/22 ip4:199.127.232.0/22 ip4:54.240.0.0/18 ip4:69.169.224.0/20 ip4:23.249.208.0/20 ip4:23.251.224.0/19 ip4:76.223.176.0/20 -all',
};

const LOOPBACK = '127.0.0.1';

/**
 * The records local mode's DNS peer serves: for each sender domain an SPF record with what its paths
 * need (the given egress IPs for connector mode; include:amazonses.com for a domain only SES sends
 * as), `v=DMARC1; p=none` at _dmarc, an MX (Exchange Online's host for Graph and Exchange domains,
 * else mx.<domain>) with an A record, and the SPF records the includes name.
 */
export function localZoneFor(settings: DoctorSettings, egressIps: readonly string[]): DnsRecords {
  const zone = new Map<
    string,
    { a?: string[]; txt?: string[]; mx?: { exchange: string; priority: number }[] }
  >();
  const setOf = (name: string) => {
    let set = zone.get(name);
    if (set === undefined) {
      set = {};
      zone.set(name, set);
    }
    return set;
  };
  const includes = new Set<string>();
  for (const domain of senderDomainsOf(settings)) {
    // Smart hosts publish their own SPF, which the local zone cannot know: doctor reminds of it.
    const mechanisms = requiredSpfMechanisms(domain, egressIps);
    if (domain.ses && !needsSpf(domain)) mechanisms.push(`include:${SES_SPF_INCLUDE}`);
    for (const mechanism of mechanisms)
      if (mechanism.startsWith('include:')) includes.add(mechanism.slice(8));
    const apex = setOf(domain.domain);
    apex.txt = [['v=spf1', ...mechanisms, '-all'].join(' ')];
    setOf(`_dmarc.${domain.domain}`).txt = ['v=DMARC1; p=none'];
    const mxHost =
      domain.exchange === undefined
        ? `mx.${domain.domain}`
        : exchangeMxHostOf(domain.domain, domain.exchange);
    apex.mx = [{ exchange: mxHost, priority: 10 }];
    setOf(mxHost).a = [LOOPBACK];
  }
  for (const include of includes) {
    const record = INCLUDED_SPF_RECORDS[include];
    if (record !== undefined && !zone.get(include)?.txt) setOf(include).txt = [record];
  }
  return Object.fromEntries(zone) as Record<string, DnsRecordSet>;
}
