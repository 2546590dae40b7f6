import { BlockList, isIPv4, isIPv6 } from 'node:net';
import {
  exchangeMxHostOf,
  needsSpf,
  type SenderDomain,
  senderDomainsOf,
  suggestedSpfRecord,
} from '../../local/dns-zone.ts';
import { type Finding, findingsOf, type Verdict } from './findings.ts';
import type { DnsLookup, DoctorCheck, DoctorTarget } from './target.ts';

const finding = findingsOf('dns');

/**
 * The DNS of each sender domain, read as receivers read it: SPF (evaluated by hand, RFC 7208: includes
 * and redirects followed, the 10-lookup limit, the egress IPs checked against ip4/ip6/a/mx), DMARC at
 * _dmarc (RFC 7489) and MX. What each domain needs comes from its sending paths (local/dns-zone.ts):
 * Graph and Exchange Online SMTP need Microsoft's include, connector mode also the egress IPs, other
 * smart hosts their own include, and SES nothing of the From domain's SPF.
 */
export const checkDns: DoctorCheck = async (target) => {
  const domains = senderDomainsOf(target.settings);
  const perDomain = await Promise.all(domains.map((domain) => checkDomain(target, domain)));
  return perDomain.flat();
};

async function checkDomain(target: DoctorTarget, domain: SenderDomain): Promise<Finding[]> {
  const [spf, dmarc, mx] = await Promise.all([
    guarded(target, domain, 'spf', () => spfFindings(target, domain)),
    guarded(target, domain, 'dmarc', () => dmarcFindings(target, domain)),
    guarded(target, domain, 'mx', () => mxFindings(target, domain)),
  ]);
  return [...spf, ...dmarc, ...mx];
}

/** A DNS failure other than "no record" (timeout, SERVFAIL, refused): the check could not read. */
class DnsReadError extends Error {
  constructor(
    readonly query: string,
    override readonly cause: unknown,
  ) {
    super(`${query}: ${describeError(cause)}`);
  }
}

function describeError(error: unknown): string {
  const code = (error as { code?: unknown }).code;
  if (typeof code === 'string') return code;
  return error instanceof Error ? error.message : String(error);
}

/** Every query of the checks, so a failure names what was asked. */
function reader(dns: DnsLookup) {
  const wrap =
    <T>(kind: string, read: (name: string) => Promise<T>) =>
    async (name: string): Promise<T> => {
      try {
        return await read(name);
      } catch (error) {
        throw new DnsReadError(`${kind} ${name}`, error);
      }
    };
  return {
    txt: wrap('TXT', (name) => dns.txt(name)),
    mx: wrap('MX', (name) => dns.mx(name)),
    addresses: wrap('A/AAAA', (name) => dns.addresses(name)),
  };
}
type Reader = ReturnType<typeof reader>;

/** Runs one check; a DNS failure (or anything unexpected) becomes its ✗ finding, never a throw. */
async function guarded(
  target: DoctorTarget,
  domain: SenderDomain,
  check: string,
  run: () => Promise<Finding[]>,
): Promise<Finding[]> {
  try {
    return await run();
  } catch (error) {
    if (!(error instanceof DnsReadError)) {
      return [
        finding(domain.domain, check, 'problem', `the check could not run: ${describeError(error)}`, {
          fix: 'run doctor again; if it persists, report it with this output',
        }),
      ];
    }
    return [
      finding(
        domain.domain,
        check,
        'problem',
        `could not read DNS via ${target.dns.source} (${error.message})`,
        {
          fix: `check that ${target.dns.source} answers for ${domain.domain} (a timeout: the server is unreachable; SERVFAIL: the domain's name servers or its DNSSEC are broken), then run doctor again`,
        },
      ),
    ];
  }
}

// ---- SPF: reading and evaluating ----

type Qualifier = '+' | '-' | '~' | '?';
type SpfResult = 'pass' | 'fail' | 'softfail' | 'neutral';
const RESULT_OF: Readonly<Record<Qualifier, SpfResult>> = {
  '+': 'pass',
  '-': 'fail',
  '~': 'softfail',
  '?': 'neutral',
};

/** The most DNS-querying terms one SPF evaluation may have (RFC 7208 4.6.4), and "void" answers. */
const MAX_SPF_LOOKUPS = 10;
const MAX_VOID_LOOKUPS = 2;
const MAX_MX_NAMES = 10;

interface SpfTree {
  readonly domain: string;
  readonly record: string;
  readonly terms: readonly SpfTerm[];
  readonly redirect?: SpfTree;
}

type SpfTerm =
  | { readonly kind: 'all'; readonly qualifier: Qualifier }
  /** ip4, ip6, a, mx: what they match, resolved. */
  | { readonly kind: 'network'; readonly qualifier: Qualifier; readonly networks: BlockList }
  | { readonly kind: 'include'; readonly qualifier: Qualifier; readonly tree: SpfTree }
  /** exists, ptr, or a term with macros: it depends on the message, which doctor does not have. */
  | { readonly kind: 'opaque'; readonly qualifier: Qualifier; readonly text: string };

/** An SPF record receivers reject: they return permerror, and the domain has no SPF at all. */
class SpfPermError extends Error {}

interface SpfWalk {
  readonly dns: Reader;
  lookups: number;
  voidLookups: number;
  /** Every include: and redirect= domain in the tree, lower case. */
  readonly includes: Set<string>;
}

const SPF_PREFIX = /^v=spf1(?:\s|$)/i;
const DOMAIN_SPEC = /^[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?(?:\.[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?)+\.?$/i;

function spfRecordsIn(records: readonly string[]): string[] {
  return records.filter((record) => SPF_PREFIX.test(record.trim())).map((record) => record.trim());
}

function normalizedDomain(domain: string): string {
  return domain.toLowerCase().replace(/\.$/, '');
}

function countLookup(walk: SpfWalk, term: string, domain: string): void {
  walk.lookups += 1;
  if (walk.lookups > MAX_SPF_LOOKUPS) {
    throw new SpfPermError(
      `more than ${MAX_SPF_LOOKUPS} DNS lookups (include, a, mx, ptr, exists, redirect; the 11th is ${term} in the record of ${domain}): receivers stop with permerror`,
    );
  }
}

function countVoid(walk: SpfWalk, term: string): void {
  walk.voidLookups += 1;
  if (walk.voidLookups > MAX_VOID_LOOKUPS) {
    throw new SpfPermError(
      `more than ${MAX_VOID_LOOKUPS} lookups found nothing (the last: ${term}): receivers stop with permerror (RFC 7208 4.6.4)`,
    );
  }
}

/** The one SPF record of an included or redirected-to domain, parsed; none or several is permerror. */
async function readIncluded(walk: SpfWalk, domain: string, via: string): Promise<SpfTree> {
  const records = spfRecordsIn(await walk.dns.txt(domain));
  if (records.length === 0) {
    countVoid(walk, via);
    throw new SpfPermError(`${via}: ${domain} has no SPF record, which receivers treat as permerror`);
  }
  if (records.length > 1) throw new SpfPermError(`${via}: ${domain} has ${records.length} SPF records`);
  return parseSpf(walk, domain, records[0] ?? '');
}

/** A record parsed term by term, its DNS-querying terms followed (depth first, as receivers count them). */
async function parseSpf(walk: SpfWalk, domain: string, record: string): Promise<SpfTree> {
  const terms: SpfTerm[] = [];
  let redirectTo: string | undefined;
  for (const text of record.split(/\s+/).slice(1)) {
    if (text === '') continue;
    const modifier = /^([a-z][a-z0-9_.-]*)=(.*)$/i.exec(text);
    if (modifier) {
      const name = (modifier[1] ?? '').toLowerCase();
      if (name === 'redirect') {
        if (redirectTo !== undefined) throw new SpfPermError(`${domain}: more than one redirect=`);
        redirectTo = modifier[2] ?? '';
      }
      continue; // exp= and unknown modifiers do not change the result
    }
    terms.push(await parseMechanism(walk, domain, text));
  }
  // redirect= only applies when no mechanism matched, and never with an all (RFC 7208 6.1).
  if (redirectTo === undefined || terms.some((term) => term.kind === 'all')) return { domain, record, terms };
  const via = `redirect=${redirectTo}`;
  countLookup(walk, via, domain);
  if (redirectTo.includes('%')) {
    return { domain, record, terms: [...terms, { kind: 'opaque', qualifier: '+', text: via }] };
  }
  if (!DOMAIN_SPEC.test(redirectTo)) throw new SpfPermError(`${domain}: ${via} is not a domain`);
  walk.includes.add(normalizedDomain(redirectTo));
  return { domain, record, terms, redirect: await readIncluded(walk, normalizedDomain(redirectTo), via) };
}

async function parseMechanism(walk: SpfWalk, domain: string, text: string): Promise<SpfTerm> {
  const qualifier: Qualifier = '+-~?'.includes(text.charAt(0)) ? (text.charAt(0) as Qualifier) : '+';
  const body = qualifier === '+' && text.charAt(0) !== '+' ? text : text.slice(1);
  const name = (/^[a-z0-9]+/i.exec(body)?.[0] ?? '').toLowerCase();
  const rest = body.slice(name.length);
  const invalid = () => new SpfPermError(`${domain}: "${text}" is not a valid SPF term`);
  switch (name) {
    case 'all':
      if (rest !== '') throw invalid();
      return { kind: 'all', qualifier };
    case 'ip4':
    case 'ip6': {
      const match = /^:([^/]+)(?:\/(\d{1,3}))?$/.exec(rest);
      const address = match?.[1] ?? '';
      const family = name === 'ip4' ? 'ipv4' : 'ipv6';
      const prefix = match?.[2] === undefined ? (family === 'ipv4' ? 32 : 128) : Number(match[2]);
      const valid = family === 'ipv4' ? isIPv4(address) && prefix <= 32 : isIPv6(address) && prefix <= 128;
      if (!valid) throw invalid();
      const networks = new BlockList();
      networks.addSubnet(address, prefix, family);
      return { kind: 'network', qualifier, networks };
    }
    case 'include':
    case 'exists': {
      countLookup(walk, text, domain);
      const target = /^:(.+)$/.exec(rest)?.[1];
      if (target === undefined) throw invalid();
      if (name === 'exists' || target.includes('%')) return { kind: 'opaque', qualifier, text };
      if (!DOMAIN_SPEC.test(target)) throw invalid();
      walk.includes.add(normalizedDomain(target));
      return { kind: 'include', qualifier, tree: await readIncluded(walk, normalizedDomain(target), text) };
    }
    case 'ptr':
      countLookup(walk, text, domain);
      if (rest !== '' && !rest.startsWith(':')) throw invalid();
      return { kind: 'opaque', qualifier, text };
    case 'a':
    case 'mx': {
      countLookup(walk, text, domain);
      const match = /^(?::([^/]+))?(?:\/(\d{1,2}))?(?:\/\/(\d{1,3}))?$/.exec(rest);
      if (!match) throw invalid();
      const host = match[1] ?? domain;
      const prefix4 = Number(match[2] ?? 32);
      const prefix6 = Number(match[3] ?? 128);
      if (prefix4 > 32 || prefix6 > 128) throw invalid();
      if (host.includes('%')) return { kind: 'opaque', qualifier, text };
      if (!DOMAIN_SPEC.test(host)) throw invalid();
      const addresses = name === 'a' ? await walk.dns.addresses(host) : await mxAddresses(walk, host, text);
      if (addresses.length === 0) countVoid(walk, text);
      const networks = new BlockList();
      for (const address of addresses) {
        if (isIPv4(address)) networks.addSubnet(address, prefix4, 'ipv4');
        else if (isIPv6(address)) networks.addSubnet(address, prefix6, 'ipv6');
      }
      return { kind: 'network', qualifier, networks };
    }
    default:
      throw invalid();
  }
}

async function mxAddresses(walk: SpfWalk, host: string, term: string): Promise<string[]> {
  const exchanges = (await walk.dns.mx(host)).filter((mx) => mx.exchange !== '' && mx.exchange !== '.');
  if (exchanges.length > MAX_MX_NAMES) {
    throw new SpfPermError(`${term}: ${host} has more than ${MAX_MX_NAMES} MX hosts (RFC 7208 4.6.4)`);
  }
  const addresses = await Promise.all(exchanges.map((mx) => walk.dns.addresses(mx.exchange)));
  return addresses.flat();
}

/** What check_host() would return for mail from `ip`; 'unknown' when a message-dependent term decides. */
function evaluate(tree: SpfTree, ip: string): SpfResult | 'unknown' {
  const family = isIPv6(ip) ? 'ipv6' : 'ipv4';
  for (const term of tree.terms) {
    let matched: boolean | 'unknown';
    if (term.kind === 'all') matched = true;
    else if (term.kind === 'network') matched = term.networks.check(ip, family);
    else if (term.kind === 'include') {
      const result = evaluate(term.tree, ip);
      matched = result === 'unknown' ? 'unknown' : result === 'pass';
    } else matched = 'unknown';
    if (matched === 'unknown') return 'unknown';
    if (matched) return RESULT_OF[term.qualifier];
  }
  return tree.redirect === undefined ? 'neutral' : evaluate(tree.redirect, ip);
}

/** The qualifier of the all that ends the evaluation (through redirects); undefined: none (neutral). */
function finalAll(tree: SpfTree): Qualifier | undefined {
  const all = tree.terms.find((term) => term.kind === 'all');
  if (all) return all.qualifier;
  return tree.redirect === undefined ? undefined : finalAll(tree.redirect);
}

type SpfReading =
  | { readonly kind: 'none' }
  | { readonly kind: 'several'; readonly records: readonly string[] }
  | { readonly kind: 'permerror'; readonly record: string; readonly reason: string }
  | {
      readonly kind: 'valid';
      readonly record: string;
      readonly tree: SpfTree;
      readonly lookups: number;
      readonly includes: ReadonlySet<string>;
    };

async function readSpf(dns: Reader, domain: string): Promise<SpfReading> {
  const records = spfRecordsIn(await dns.txt(domain));
  const [record] = records;
  if (record === undefined) return { kind: 'none' };
  if (records.length > 1) return { kind: 'several', records };
  const walk: SpfWalk = { dns, lookups: 0, voidLookups: 0, includes: new Set() };
  try {
    const tree = await parseSpf(walk, domain, record);
    return { kind: 'valid', record, tree, lookups: walk.lookups, includes: walk.includes };
  } catch (error) {
    if (error instanceof SpfPermError) return { kind: 'permerror', record, reason: error.message };
    throw error;
  }
}

/** The record with mechanisms added before its all (or redirect=), for a fix. */
function withMechanisms(record: string, additions: readonly string[]): string {
  const terms = record.split(/\s+/).filter((term) => term !== '');
  const end = terms.findIndex((term, index) => index > 0 && /^[+\-~?]?all$|^redirect=/i.test(term));
  const at = end < 0 ? terms.length : end;
  return [...terms.slice(0, at), ...additions, ...terms.slice(at)].join(' ');
}

/** The record without its all mechanism. */
function withoutAll(record: string): string {
  return record
    .split(/\s+/)
    .filter((term, index) => index === 0 || !/^[+\-~?]?all$/i.test(term))
    .join(' ');
}

function ipMechanism(ip: string): string {
  return `${isIPv6(ip) ? 'ip6' : 'ip4'}:${ip}`;
}

// ---- SPF: findings ----

function whoNeeds(providers: readonly string[]): string {
  return providers.join(', ');
}

async function spfFindings(target: DoctorTarget, domain: SenderDomain): Promise<Finding[]> {
  const name = domain.domain;
  const spf = (verdict: Verdict, detail: string, fix?: string): Finding =>
    finding(name, 'spf', verdict, detail, { fix });
  const needed = needsSpf(domain);
  // Only SES sends as this domain: its SPF is not what SES mail is checked against, so nothing here
  // stops that mail (problems are warnings).
  const serious: Finding['verdict'] = needed ? 'problem' : 'warning';
  const sesNote =
    'SES mail is checked against its MAIL FROM domain (amazonses.com, or your custom MAIL FROM domain) and aligns for DMARC through DKIM';
  const suggested = suggestedSpfRecord(domain, target.egressIps);
  const reading = await readSpf(reader(target.dns), name);

  if (reading.kind === 'none') {
    if (!needed) return [spf('ok', `no SPF record, which SES mail does not need: ${sesNote}`)];
    return [
      spf(
        'problem',
        `no SPF record (TXT "v=spf1 …") at ${name}: receivers cannot tell that the servers of ${whoNeeds(sendersNeedingSpf(domain))} may send for it, and mark or refuse the mail`,
        `publish one TXT record at ${name}: "${suggested}"`,
      ),
    ];
  }
  if (reading.kind === 'several') {
    return [
      spf(
        serious,
        `${reading.records.length} SPF records at ${name} (${reading.records.map((record) => `"${record}"`).join(', ')}): receivers return permerror and ignore them all`,
        `merge them into one TXT record: "${suggested}" plus what else the others allowed`,
      ),
    ];
  }
  if (reading.kind === 'permerror') {
    return [
      spf(
        serious,
        `the SPF record "${reading.record}" fails (permerror): ${reading.reason}`,
        `fix the record so receivers can evaluate it (merge includes, replace them with ip4:/ip6: ranges, remove broken ones); what this relay needs: "${suggested}"`,
      ),
    ];
  }

  const { record, tree, lookups, includes } = reading;
  const problems: Finding[] = [];
  const warnings: Finding[] = [];
  const allowed: string[] = [];
  if (!needed) {
    const all = finalAll(tree);
    if (all === '+') {
      warnings.push(
        spf(
          'warning',
          `"${record}" ends in +all: every server on the internet may send as ${name} (${sesNote}, so SES mail is unaffected)`,
          `end the record with -all (or ~all): "${withMechanisms(withoutAll(record), ['-all'])}"`,
        ),
      );
      return warnings;
    }
    return [spf('ok', `"${record}" (${lookups} of ${MAX_SPF_LOOKUPS} DNS lookups); ${sesNote}`)];
  }

  // What is missing, first: each fix then shows the whole record with every SPF fix applied.
  const missingIncludes = [...domain.includes].filter(([include]) => !includes.has(include));
  const connectors = whoNeeds(domain.connectorProviders);
  const egressIps =
    domain.connectorProviders.length > 0
      ? (target.egressIps ?? []).filter((ip) => isIPv4(ip) || isIPv6(ip))
      : [];
  const egressResults = egressIps.map((ip) => ({ ip, result: evaluate(tree, ip) }));
  const missingIps = egressResults.filter(({ result }) => result !== 'pass' && result !== 'unknown');
  const all = finalAll(tree);
  const badAll = all === '+' || all === '?' || all === undefined;
  const additions = [
    ...missingIncludes.map(([include]) => `include:${include}`),
    ...missingIps.map(({ ip }) => ipMechanism(ip)),
  ];
  const fixed = withMechanisms(badAll ? withoutAll(record) : record, [
    ...additions,
    ...(badAll ? ['-all'] : []),
  ]);
  const whole = `the record with every SPF fix: "${fixed}"`;

  for (const [include, providers] of domain.includes) {
    if (includes.has(include)) allowed.push(`include:${include} for ${whoNeeds(providers)}`);
  }
  for (const [include, providers] of missingIncludes) {
    problems.push(
      spf(
        'problem',
        `"${record}" does not include ${include}: ${whoNeeds(providers)} send through Exchange Online, so receivers do not accept its servers as senders for ${name}`,
        `add include:${include}; ${whole}`,
      ),
    );
  }

  if (domain.connectorProviders.length > 0 && egressIps.length === 0) {
    warnings.push(
      spf(
        'warning',
        `egress IPs unknown: pass the stack outputs (EgressIps) so doctor can check that ${name}'s SPF allows the addresses ${connectors} sends from`,
        `run doctor with the stack's outputs; the SPF must hold each egress IP as ip4: ("${suggested}")`,
      ),
    );
  }
  for (const { ip, result } of egressResults) {
    if (result === 'pass') allowed.push(`egress IP ${ip} for ${connectors}`);
    if (result !== 'unknown') continue;
    warnings.push(
      spf(
        'warning',
        `cannot tell whether the egress IP ${ip} passes "${record}": a term that depends on the message (exists, ptr, a macro) comes before any match`,
        `list ${ip} explicitly: add ${ipMechanism(ip)} near the start of the record`,
      ),
    );
  }
  if (missingIps.length > 0) {
    problems.push(
      spf(
        'problem',
        `"${record}" does not allow the relay's egress IP ${missingIps.map(({ ip, result }) => `${ip} (SPF ${result})`).join(', ')}, which ${connectors} sends from: the inbound connector trusts the IP (without it Exchange Online answers 5.7.64 TenantAttribution or 5.7.708), but SPF is what tells recipients the IP may send for ${name}; Microsoft's connector guidance and the stack's SpfRecord output both add it`,
        `add ${missingIps.map(({ ip }) => ipMechanism(ip)).join(' ')}; ${whole}`,
      ),
    );
  }

  for (const { provider, host } of domain.smartHosts) {
    warnings.push(
      spf(
        'warning',
        `${provider} delivers through ${host}, whose sending servers doctor cannot know: ${name}'s SPF must include them`,
        `add the include: (or ip4: ranges) that ${host}'s provider documents to "${record}"`,
      ),
    );
  }

  if (all === '+') {
    problems.push(
      spf(
        'problem',
        `"${record}" ends in +all: every server on the internet may send as ${name}`,
        `end the record with -all (or ~all); ${whole}`,
      ),
    );
  } else if (badAll) {
    warnings.push(
      spf(
        'warning',
        `"${record}" ${all === '?' ? 'ends in ?all' : 'has no all'}: mail for ${name} from any other server is "neutral", so spoofed mail is not marked`,
        `end the record with ~all or -all; ${whole}`,
      ),
    );
  }

  if (problems.length > 0) return [...problems, ...warnings];
  const ending = all === undefined ? '' : `, ends in ${all === '+' ? '' : all}all`;
  return [
    spf(
      'ok',
      `"${record}" allows ${allowed.length > 0 ? allowed.join(', ') : 'what doctor can check'} (${lookups} of ${MAX_SPF_LOOKUPS} DNS lookups${ending})`,
    ),
    ...warnings,
  ];
}

/** The providers whose mail is checked against this domain's SPF. */
function sendersNeedingSpf(domain: SenderDomain): string[] {
  const providers = new Set<string>();
  for (const needing of domain.includes.values()) for (const provider of needing) providers.add(provider);
  for (const provider of domain.connectorProviders) providers.add(provider);
  for (const { provider } of domain.smartHosts) providers.add(provider);
  return [...providers];
}

// ---- DMARC ----

const DMARC_PREFIX = /^v=DMARC1\s*(?:;|$)/i;

/** The DMARC records for a domain: its own, else its parents' (policy discovery, RFC 7489 6.6.3). */
async function readDmarc(
  dns: Reader,
  domain: string,
): Promise<{ readonly at: string; readonly records: string[] } | undefined> {
  const labels = domain.split('.');
  // Receivers look up the organizational domain (public suffix + 1); without the suffix list, every
  // parent down to two labels stands in for it.
  for (let start = 0; start <= labels.length - 2; start += 1) {
    const at = `_dmarc.${labels.slice(start).join('.')}`;
    const records = (await dns.txt(at))
      .map((record) => record.trim())
      .filter((record) => DMARC_PREFIX.test(record));
    if (records.length > 0) return { at, records };
  }
  return undefined;
}

function dmarcTag(record: string, tag: string): string | undefined {
  for (const part of record.split(';')) {
    const [key, ...value] = part.split('=');
    if (key?.trim().toLowerCase() === tag) return value.join('=').trim().toLowerCase();
  }
  return undefined;
}

async function dmarcFindings(target: DoctorTarget, domain: SenderDomain): Promise<Finding[]> {
  const name = domain.domain;
  const own = `_dmarc.${name}`;
  const dmarc = (verdict: Verdict, detail: string, fix?: string, code?: string): Finding =>
    finding(name, 'dmarc', verdict, detail, { fix, code });
  const found = await readDmarc(reader(target.dns), name);
  if (found === undefined) {
    return [
      dmarc(
        'warning',
        `no DMARC record at ${own}: Outlook.com refuses bulk mail from domains without SPF, DKIM and DMARC with 550 5.7.515 (since May 2025), and Gmail and Yahoo demand DMARC from bulk senders`,
        `publish a TXT record at ${own}: "v=DMARC1; p=none" (add rua=mailto:<a mailbox you read> for reports; move to p=quarantine or p=reject once SPF and DKIM pass)`,
        '5.7.515',
      ),
    ];
  }
  if (found.records.length > 1) {
    return [
      dmarc(
        'problem',
        `${found.records.length} DMARC records at ${found.at}: receivers ignore them all, as if there were none`,
        `keep one TXT record at ${found.at}, such as "${found.records[0]}"`,
      ),
    ];
  }
  const record = found.records[0] ?? '';
  const inherited = found.at !== own;
  const policy =
    (inherited ? (dmarcTag(record, 'sp') ?? dmarcTag(record, 'p')) : dmarcTag(record, 'p')) ?? '';
  if (!['none', 'quarantine', 'reject'].includes(policy)) {
    return [
      dmarc(
        'warning',
        `"${record}" at ${found.at} has no valid p= policy (none, quarantine or reject)`,
        `add p=none (then quarantine or reject): "v=DMARC1; p=none"`,
      ),
    ];
  }
  const from = inherited ? ` (from ${found.at}, the parent domain's)` : '';
  return [dmarc('ok', `"${record}"${from}: policy p=${policy}`)];
}

// ---- MX ----

async function mxFindings(target: DoctorTarget, domain: SenderDomain): Promise<Finding[]> {
  const name = domain.domain;
  const mx = (verdict: Verdict, detail: string, fix?: string): Finding =>
    finding(name, 'mx', verdict, detail, { fix });
  const dns = reader(target.dns);
  const expectedHost = domain.exchange === undefined ? undefined : exchangeMxHostOf(name, domain.exchange);
  const publish =
    expectedHost === undefined
      ? `publish the MX of the service that receives ${name}'s mail`
      : `publish the MX of the service that receives ${name}'s mail (Exchange Online: 0 ${expectedHost})`;
  const records = [...(await dns.mx(name))].sort((a, b) => a.priority - b.priority);
  if (records.length === 0) {
    return [
      mx(
        'warning',
        `no MX record at ${name}: bounces and replies to this domain cannot come back (and some receivers refuse mail from a domain that cannot receive)`,
        publish,
      ),
    ];
  }
  const hosts = records.map((mx) => normalizedDomain(mx.exchange));
  if (hosts.every((host) => host === '')) {
    return [
      mx(
        'warning',
        `${name} publishes a null MX (RFC 7505, "0 ."): it takes no mail, so bounces and replies cannot come back, and receivers may refuse mail from it`,
        publish,
      ),
    ];
  }
  const listed = records.map((mx) => `${mx.priority} ${normalizedDomain(mx.exchange)}`).join(', ');
  const findings: Finding[] = [];
  if (
    domain.exchange !== undefined &&
    !hosts.some((host) => host.endsWith(domain.exchange?.mxSuffix ?? ''))
  ) {
    findings.push(
      mx(
        'warning',
        `MX ${listed} is not Exchange Online's (*${domain.exchange.mxSuffix}), though ${whoNeeds([...new Set([...domain.includes.values()].flat())])} send as ${name} through Exchange Online: mail for the domain may not be hosted in Exchange Online (fine behind third-party filtering or in a hybrid setup, but then the connectors need care: enhanced filtering, and inbound connectors scoped to the filtering service)`,
        `if Exchange Online hosts ${name}'s mailboxes and nothing filters in front of it, point the MX at ${expectedHost}; otherwise check the connectors of the filtering service or on-premises server`,
      ),
    );
  }
  const addresses = await Promise.all(hosts.filter((host) => host !== '').map((host) => dns.addresses(host)));
  if (addresses.every((list) => list.length === 0)) {
    findings.push(
      mx(
        'warning',
        `MX ${listed}: none of these hosts has an address, so mail to ${name} (bounces, replies) cannot be delivered`,
        `publish A/AAAA records for the MX hosts, or correct the MX${expectedHost === undefined ? '' : ` (Exchange Online: 0 ${expectedHost})`}`,
      ),
    );
  }
  return findings.length > 0 ? findings : [mx('ok', `MX ${listed}`)];
}
