import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkDns } from '../../../cli/doctor/dns-checks.ts';
import type { Finding } from '../../../cli/doctor/findings.ts';
import { createDnsLookup, type DoctorSettings } from '../../../cli/doctor/target.ts';
import type { GraphSettings } from '../../../lambda/providers/graph/settings.ts';
import type { SmtpSettings } from '../../../lambda/providers/smtp/settings.ts';
import { localZoneFor } from '../../../local/dns-zone.ts';
import { type DnsPeer, type DnsRecords, startDnsPeer } from '../../../local/peers/dns-peer.ts';
import { doctorTarget } from './doctor-target.ts';

const MICROSOFT_SPF: DnsRecords = {
  'spf.protection.outlook.com': {
    txt: [
      'v=spf1 ip4:40.92.0.0/15 ip4:40.107.0.0/16 ip4:52.100.0.0/15 ip4:104.47.0.0/17 ip6:2a01:111:f400::/48 -all',
    ],
  },
  'spf.protection.office365.us': { txt: ['v=spf1 ip4:23.103.128.0/19 -all'] },
};

/** contoso.com as a Microsoft 365 domain should look: one SPF with Microsoft's include, DMARC, MX at EXO. */
function contosoZone(
  overrides: { spf?: string[]; dmarc?: string[]; mx?: { exchange: string; priority: number }[] } = {},
): DnsRecords {
  return {
    ...MICROSOFT_SPF,
    'contoso.com': {
      txt: [...(overrides.spf ?? ['v=spf1 include:spf.protection.outlook.com -all']), 'MS=ms12345678'],
      mx: overrides.mx ?? [{ exchange: 'contoso-com.mail.protection.outlook.com', priority: 0 }],
    },
    '_dmarc.contoso.com': { txt: overrides.dmarc ?? ['v=DMARC1; p=reject; rua=mailto:dmarc@contoso.com'] },
    'contoso-com.mail.protection.outlook.com': { a: ['52.101.68.1'] },
    'mx.filter.example': { a: ['198.51.100.25'] },
  };
}

function graph(senders: string[], overrides: Partial<GraphSettings> = {}): GraphSettings {
  return {
    tenantId: '00000000-0000-4000-8000-000000000001',
    clientId: '00000000-0000-4000-8000-000000000002',
    senders,
    credentialSecretId: 'graph-credential',
    saveToSentItems: true,
    authorityHost: 'https://login.microsoftonline.com',
    graphEndpoint: 'https://graph.microsoft.com',
    ...overrides,
  };
}

function connector(senders: string[], overrides: Partial<SmtpSettings> = {}): SmtpSettings {
  return {
    name: 'smtp',
    senders,
    mode: 'connector',
    host: 'contoso-com.mail.protection.outlook.com',
    port: 25,
    tls: 'starttls',
    requireTls: true,
    auth: 'none',
    maxConnections: 2,
    ...overrides,
  };
}

let peer: DnsPeer;
beforeAll(async () => {
  peer = await startDnsPeer({ records: {} });
});
afterAll(async () => {
  await peer.close();
});

async function check(
  zone: DnsRecords,
  settings: DoctorSettings,
  egressIps?: readonly string[],
): Promise<readonly Finding[]> {
  peer.setRecords(zone);
  return checkDns(
    doctorTarget({
      settings,
      dns: createDnsLookup([peer.address], 2_000),
      ...(egressIps === undefined ? {} : { egressIps }),
    }),
  );
}

function only(findings: readonly Finding[], subject: string, check: string): Finding {
  const matching = findings.filter((finding) => finding.subject === subject && finding.check === check);
  expect(matching).toHaveLength(1);
  return matching[0] as Finding;
}

function verdicts(findings: readonly Finding[]): string[] {
  return findings.map((finding) => `${finding.subject} ${finding.check} ${finding.verdict}`);
}

describe('checkDns for a Graph domain', () => {
  it('passes SPF, DMARC and MX for a correct Microsoft 365 domain', async () => {
    const findings = await check(contosoZone(), { graph: graph(['contoso.com', 'ana@Contoso.com']) });
    expect(verdicts(findings)).toEqual(['contoso.com spf ok', 'contoso.com dmarc ok', 'contoso.com mx ok']);
    expect(only(findings, 'contoso.com', 'spf').detail).toContain('1 of 10 DNS lookups');
    expect(only(findings, 'contoso.com', 'dmarc').detail).toContain('p=reject');
    for (const finding of findings) expect(finding.area).toBe('dns');
  });

  it('finds a missing SPF record and suggests one with Microsoft\u2019s include', async () => {
    const spf = only(
      await check(contosoZone({ spf: [] }), { graph: graph(['contoso.com']) }),
      'contoso.com',
      'spf',
    );
    expect(spf.verdict).toBe('problem');
    expect(spf.detail).toContain('no SPF record');
    expect(spf.fix).toContain('"v=spf1 include:spf.protection.outlook.com -all"');
  });

  it('finds two SPF records (permerror: receivers ignore both)', async () => {
    const zone = contosoZone({
      spf: ['v=spf1 include:spf.protection.outlook.com -all', 'v=spf1 ip4:192.0.2.1 -all'],
    });
    const spf = only(await check(zone, { graph: graph(['contoso.com']) }), 'contoso.com', 'spf');
    expect(spf.verdict).toBe('problem');
    expect(spf.detail).toMatch(/2 SPF records .*permerror/);
  });

  /** contoso.com → Microsoft's include and _spf1 → … → _spf<depth>: depth + 1 lookups. */
  function nestedIncludes(depth: number): DnsRecords {
    const zone: Record<string, { txt: string[] }> = {};
    for (let level = 1; level <= depth; level += 1) {
      zone[`_spf${level}.contoso.com`] = {
        txt: [
          level === depth ? 'v=spf1 ip4:192.0.2.1 -all' : `v=spf1 include:_spf${level + 1}.contoso.com -all`,
        ],
      };
    }
    return {
      ...contosoZone({ spf: ['v=spf1 include:spf.protection.outlook.com include:_spf1.contoso.com -all'] }),
      ...zone,
    };
  }

  it('fails an SPF tree with 11 DNS lookups through nested includes, and passes one with 10', async () => {
    const eleven = only(
      await check(nestedIncludes(10), { graph: graph(['contoso.com']) }),
      'contoso.com',
      'spf',
    );
    expect(eleven.verdict).toBe('problem');
    expect(eleven.detail).toContain('permerror');
    expect(eleven.detail).toContain('more than 10 DNS lookups');
    expect(eleven.detail).toContain('include:_spf10.contoso.com in the record of _spf9.contoso.com');
    const ten = only(await check(nestedIncludes(9), { graph: graph(['contoso.com']) }), 'contoso.com', 'spf');
    expect(ten.verdict).toBe('ok');
    expect(ten.detail).toContain('10 of 10 DNS lookups');
  });

  it('counts Microsoft\u2019s include found anywhere in the tree', async () => {
    const zone = {
      ...contosoZone({ spf: ['v=spf1 include:_spf.contoso.com -all'] }),
      '_spf.contoso.com': { txt: ['v=spf1 include:spf.protection.outlook.com ~all'] },
    };
    expect(only(await check(zone, { graph: graph(['contoso.com']) }), 'contoso.com', 'spf').verdict).toBe(
      'ok',
    );
  });

  it('finds an SPF record without Microsoft\u2019s include and shows the merged record', async () => {
    const zone = contosoZone({ spf: ['v=spf1 ip4:192.0.2.1 -all'] });
    const spf = only(await check(zone, { graph: graph(['contoso.com']) }), 'contoso.com', 'spf');
    expect(spf.verdict).toBe('problem');
    expect(spf.fix).toContain('"v=spf1 ip4:192.0.2.1 include:spf.protection.outlook.com -all"');
  });

  it('asks a US government cloud domain for spf.protection.office365.us', async () => {
    const settings = {
      graph: graph(['contoso.com'], {
        authorityHost: 'https://login.microsoftonline.us',
        graphEndpoint: 'https://graph.microsoft.us',
      }),
    };
    const spf = (await check(contosoZone(), settings)).filter((finding) => finding.check === 'spf');
    expect(spf.map((finding) => finding.verdict)).toEqual(['problem']);
    expect(spf[0]?.detail).toContain('does not include spf.protection.office365.us');
  });

  it('fails +all: anyone may send as the domain', async () => {
    const zone = contosoZone({ spf: ['v=spf1 include:spf.protection.outlook.com +all'] });
    const spf = only(await check(zone, { graph: graph(['contoso.com']) }), 'contoso.com', 'spf');
    expect(spf.verdict).toBe('problem');
    expect(spf.detail).toContain('+all');
    expect(spf.fix).toContain('-all');
  });

  it('warns about ?all', async () => {
    const zone = contosoZone({ spf: ['v=spf1 include:spf.protection.outlook.com ?all'] });
    const spf = (await check(zone, { graph: graph(['contoso.com']) })).filter(
      (finding) => finding.check === 'spf',
    );
    expect(spf.map((finding) => finding.verdict)).toEqual(['ok', 'warning']);
    expect(spf[1]?.detail).toContain('?all');
  });

  it('warns when there is no DMARC record, naming Outlook.com\u2019s 5.7.515', async () => {
    const dmarc = only(
      await check(contosoZone({ dmarc: [] }), { graph: graph(['contoso.com']) }),
      'contoso.com',
      'dmarc',
    );
    expect(dmarc.verdict).toBe('warning');
    expect(dmarc.detail).toContain('550 5.7.515');
    expect(dmarc.fix).toContain('_dmarc.contoso.com');
    expect(dmarc.fix).toContain('v=DMARC1; p=none');
  });

  it('finds two DMARC records', async () => {
    const zone = contosoZone({ dmarc: ['v=DMARC1; p=none', 'v=DMARC1; p=reject'] });
    expect(only(await check(zone, { graph: graph(['contoso.com']) }), 'contoso.com', 'dmarc').verdict).toBe(
      'problem',
    );
  });

  it('reads a subdomain\u2019s DMARC policy from its parent (sp=)', async () => {
    const zone = {
      ...contosoZone({ dmarc: ['v=DMARC1; p=reject; sp=quarantine'] }),
      'mail.contoso.com': {
        txt: ['v=spf1 include:spf.protection.outlook.com -all'],
        mx: [{ exchange: 'contoso-com.mail.protection.outlook.com', priority: 0 }],
      },
    };
    const dmarc = only(
      await check(zone, { graph: graph(['mail.contoso.com']) }),
      'mail.contoso.com',
      'dmarc',
    );
    expect(dmarc.verdict).toBe('ok');
    expect(dmarc.detail).toContain('p=quarantine');
    expect(dmarc.detail).toContain('from _dmarc.contoso.com');
  });

  it('warns when the MX of a Graph domain is not Exchange Online\u2019s', async () => {
    const zone = contosoZone({ mx: [{ exchange: 'mx.filter.example', priority: 10 }] });
    const mx = only(await check(zone, { graph: graph(['contoso.com']) }), 'contoso.com', 'mx');
    expect(mx.verdict).toBe('warning');
    expect(mx.detail).toContain('mx.filter.example');
    expect(mx.detail).toContain('not Exchange Online');
    expect(mx.fix).toContain('contoso-com.mail.protection.outlook.com');
  });

  it('warns when a domain has no MX', async () => {
    const mx = only(
      await check(contosoZone({ mx: [] }), { graph: graph(['contoso.com']) }),
      'contoso.com',
      'mx',
    );
    expect(mx.verdict).toBe('warning');
    expect(mx.detail).toContain('cannot come back');
  });

  it('reports a DNS server that does not answer as a problem of every check', async () => {
    const findings = await checkDns(
      doctorTarget({
        settings: { graph: graph(['contoso.com']) },
        dns: createDnsLookup(['127.0.0.1:9'], 300),
      }),
    );
    expect(verdicts(findings)).toEqual([
      'contoso.com spf problem',
      'contoso.com dmarc problem',
      'contoso.com mx problem',
    ]);
    for (const finding of findings) expect(finding.detail).toContain('could not read DNS via 127.0.0.1:9');
  });
});

describe('checkDns for SMTP and SES domains', () => {
  const CONNECTOR_SPF = 'v=spf1 ip4:203.0.113.0/24 include:spf.protection.outlook.com -all';

  it('fails a connector domain whose SPF lacks the egress IP, explaining connector vs SPF', async () => {
    const spf = only(
      await check(contosoZone(), { smtp: [connector(['contoso.com'])] }, ['203.0.113.10']),
      'contoso.com',
      'spf',
    );
    expect(spf.verdict).toBe('problem');
    expect(spf.detail).toContain('203.0.113.10');
    expect(spf.detail).toContain('5.7.64');
    expect(spf.detail).toContain('5.7.708');
    expect(spf.fix).toContain('"v=spf1 include:spf.protection.outlook.com ip4:203.0.113.10 -all"');
  });

  it('passes a connector domain whose SPF has the egress IP inside a CIDR range', async () => {
    const zone = contosoZone({ spf: [CONNECTOR_SPF] });
    const spf = only(
      await check(zone, { smtp: [connector(['contoso.com'])] }, ['203.0.113.10']),
      'contoso.com',
      'spf',
    );
    expect(spf.verdict).toBe('ok');
    expect(spf.detail).toContain('egress IP 203.0.113.10');
  });

  it('passes an egress IP that an a: mechanism resolves to', async () => {
    const zone = {
      ...contosoZone({ spf: ['v=spf1 a:relay.contoso.com/28 include:spf.protection.outlook.com -all'] }),
      'relay.contoso.com': { a: ['203.0.113.1'] },
    };
    const spf = only(
      await check(zone, { smtp: [connector(['contoso.com'])] }, ['203.0.113.10']),
      'contoso.com',
      'spf',
    );
    expect(spf.verdict).toBe('ok');
  });

  it('warns when the egress IPs are unknown', async () => {
    const spf = (
      await check(contosoZone({ spf: [CONNECTOR_SPF] }), { smtp: [connector(['contoso.com'])] })
    ).filter((finding) => finding.check === 'spf');
    expect(spf.map((finding) => finding.verdict)).toEqual(['ok', 'warning']);
    expect(spf[1]?.detail).toContain('egress IPs unknown: pass the stack outputs');
  });

  it('reminds to include a smart host\u2019s own SPF', async () => {
    const smarthost = connector(['contoso.com'], {
      name: 'smtp:newsletter',
      mode: 'smarthost',
      host: 'smtp.mailgun.org',
      port: 587,
      auth: 'plain',
    });
    const spf = (await check(contosoZone(), { smtp: [smarthost] })).filter(
      (finding) => finding.check === 'spf',
    );
    expect(spf.map((finding) => finding.verdict)).toEqual(['ok', 'warning']);
    expect(spf[1]?.detail).toContain('smtp:newsletter delivers through smtp.mailgun.org');
  });

  it('never fails a SES-only domain for having no SPF record', async () => {
    const zone: DnsRecords = {
      'example.org': { mx: [{ exchange: 'mx.example.org', priority: 10 }] },
      'mx.example.org': { a: ['192.0.2.25'] },
      '_dmarc.example.org': { txt: ['v=DMARC1; p=none'] },
    };
    const findings = await check(zone, { ses: { identities: ['example.org'] } });
    expect(findings.filter((finding) => finding.verdict === 'problem')).toEqual([]);
    const spf = only(findings, 'example.org', 'spf');
    expect(spf.verdict).toBe('ok');
    expect(spf.detail).toContain('MAIL FROM');
  });
});

describe('localZoneFor', () => {
  it('serves a zone on which every DNS check passes for Graph, an SMTP connector and SES', async () => {
    const settings: DoctorSettings = {
      graph: graph(['contoso.com', 'ana@contoso.com']),
      smtp: [connector(['fabrikam.com', 'scanner@contoso.com'], { host: '127.0.0.1', port: 2525 })],
      ses: { identities: ['noreply@example.org', 'example.org'] },
    };
    const egressIps = ['127.0.0.1'];
    const findings = await check(localZoneFor(settings, egressIps), settings, egressIps);
    expect(verdicts(findings)).toEqual([
      'contoso.com spf ok',
      'contoso.com dmarc ok',
      'contoso.com mx ok',
      'fabrikam.com spf ok',
      'fabrikam.com dmarc ok',
      'fabrikam.com mx ok',
      'example.org spf ok',
      'example.org dmarc ok',
      'example.org mx ok',
    ]);
    expect(only(findings, 'contoso.com', 'spf').detail).toContain('egress IP 127.0.0.1 for smtp');
  });

  it('points every MX host at 127.0.0.1, so nothing resolved through it leaves the machine', () => {
    const zone = localZoneFor({ graph: graph(['contoso.com']), ses: { identities: ['example.org'] } }, [
      '127.0.0.1',
    ]);
    expect(zone['contoso.com']?.mx).toEqual([
      { exchange: 'contoso-com.mail.protection.outlook.com', priority: 10 },
    ]);
    expect(zone['example.org']?.mx).toEqual([{ exchange: 'mx.example.org', priority: 10 }]);
    const hosts = Object.values(zone).flatMap((records) => records.mx ?? []);
    for (const { exchange } of hosts) expect(zone[exchange]?.a).toEqual(['127.0.0.1']);
  });
});
