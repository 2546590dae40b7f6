import { Resolver, lookup as systemLookup } from 'node:dns/promises';
import type { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import type { SESv2Client } from '@aws-sdk/client-sesv2';
import type { HttpTransport } from '../../lambda/providers/http-transport.ts';
import type { RelaySettings } from '../../lambda/send/settings.ts';
import type { RelayConfig } from '../../lib/config.ts';

/** The provider sections of the send function's settings: what doctor checks. */
export type DoctorSettings = Pick<RelaySettings, 'graph' | 'smtp' | 'ses' | 'routes'>;

/**
 * What `mail-relay doctor` checks and with what: the configuration, the settings the send function
 * would run with, and clients for the services (the real ones, or local mode's peers). Built once
 * (see resolve-target.ts); every check module reads it and never writes.
 */
export interface DoctorTarget {
  /** Said at the top of the report: "local mode (.local/endpoints.json)", "mail-relay.config.json in eu-west-1". */
  readonly description: string;
  /** Checking local mode's stand-ins: findings that only make sense against the real services say so. */
  readonly local: boolean;
  readonly config: RelayConfig;
  readonly settings: DoctorSettings;
  /** Reads the provider credentials (Graph app credential, SMTP user and password). */
  readonly secrets: SecretsManagerClient;
  /** SES v2 in the relay's region (or local mode's SES emulator); undefined without an ses section. */
  readonly ses?: SESv2Client;
  /** HTTPS to Entra ID and Graph (local mode's trusts its Graph peer's certificate). */
  readonly graphTransport: HttpTransport;
  /** Extra CA per SMTP provider name (local mode's captures have self-signed certificates). */
  readonly smtpCa?: Readonly<Record<string, string>>;
  readonly dns: DnsLookup;
  /**
   * The public addresses the deployed relay sends from (static egress: the EgressIps output), when
   * known; local mode: 127.0.0.1.
   */
  readonly egressIps?: readonly string[];
  /** The longest one network step (a connect, a reply, an HTTP answer) may take. */
  readonly timeoutMs: number;
  /** A recipient for the SMTP RCPT TO check (`--rcpt`); default: the sender itself. */
  readonly testRecipient?: string;
}

/** One area's checks: what they found, in order. Never throws: a check that cannot run is a finding. */
export type DoctorCheck = (target: DoctorTarget) => Promise<readonly import('./findings.ts').Finding[]>;

/** DNS answers for the checks; no record (NXDOMAIN, no data) is an empty list, other failures throw. */
export interface DnsLookup {
  /** Where the answers come from, for messages: "the system resolver", "127.0.0.1:5300". */
  readonly source: string;
  /** TXT records of a name, each record's strings joined. */
  txt(name: string): Promise<string[]>;
  mx(name: string): Promise<{ readonly exchange: string; readonly priority: number }[]>;
  /** A host's IPv4 and IPv6 addresses. */
  addresses(host: string): Promise<string[]>;
}

const NO_RECORD = new Set(['ENOTFOUND', 'ENODATA', 'NXDOMAIN']);

async function orEmpty<T>(query: Promise<T[]>): Promise<T[]> {
  try {
    return await query;
  } catch (error) {
    if (NO_RECORD.has((error as { code?: string }).code ?? '')) return [];
    throw error;
  }
}

/**
 * DNS through the given servers (`host:port`, as `--dns-server` and local mode's DNS peer give them),
 * else the system's resolver (and, for host addresses, /etc/hosts as connections would use).
 */
export function createDnsLookup(servers?: readonly string[], timeoutMs = 5_000): DnsLookup {
  const resolver = new Resolver({ timeout: timeoutMs, tries: 2 });
  if (servers && servers.length > 0) resolver.setServers([...servers]);
  const custom = servers !== undefined && servers.length > 0;
  return {
    source: custom ? servers.join(', ') : 'the system resolver',
    txt: async (name) => (await orEmpty(resolver.resolveTxt(name))).map((parts) => parts.join('')),
    mx: (name) => orEmpty(resolver.resolveMx(name)),
    addresses: async (host) => {
      if (!custom) {
        return (await orEmpty(systemLookup(host, { all: true }))).map((entry) => entry.address);
      }
      const [v4, v6] = await Promise.all([
        orEmpty(resolver.resolve4(host)),
        orEmpty(resolver.resolve6(host)),
      ]);
      return [...v4, ...v6];
    },
  };
}
