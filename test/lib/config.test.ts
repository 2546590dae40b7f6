import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { ingestSettingsSchema } from '../../lambda/core/settings.ts';
import { ConfigurationError } from '../../lambda/core/validation.ts';
import { providerNamesOf } from '../../lambda/providers/registry.ts';
import {
  type SmtpConnectionConfig,
  smtpSettingsFor,
  smtpSettingsListFor,
} from '../../lambda/providers/smtp/config.ts';
import {
  DEFAULT_CONFIG_PATH,
  INGRESS_PREFIX,
  INGRESS_SMTP_PORT,
  ingestSettingsFor,
  ingressCidrProblem,
  ingressMaxMessageBytes,
  loadRelayConfig,
  MAIL_MANAGER_MAX_MESSAGE_BYTES,
  parseRelayConfig,
  relaySettingsFor,
  staticEgressProvidersOf,
} from '../../lib/config.ts';

const REPO_ROOT = new URL('../../', import.meta.url);
const MiB = 1024 * 1024;
const SES = { identities: ['example.com'] };
const GRAPH = {
  tenantId: 'contoso.onmicrosoft.com',
  clientId: '11111111-2222-3333-4444-555555555555',
  senders: ['contoso.com'],
};
const scratchDir = mkdtempSync(join(tmpdir(), 'mail-relay-config-'));
afterAll(() => rmSync(scratchDir, { recursive: true, force: true }));

function writeScratchFile(name: string, text: string): string {
  const path = join(scratchDir, name);
  writeFileSync(path, text);
  return path;
}

function configurationErrorFrom(action: () => unknown): ConfigurationError {
  try {
    action();
  } catch (error) {
    if (error instanceof ConfigurationError) return error;
    throw error;
  }
  throw new Error('expected a ConfigurationError');
}

describe('parseRelayConfig', () => {
  it('fills every default when only the SES identities are given', () => {
    expect(parseRelayConfig({ ses: { identities: ['example.com'] } })).toEqual({
      ses: { identities: ['example.com'] },
      message: { maxRecipients: 50, maxMessageBytes: 40 * MiB },
      queue: { maxReceiveCount: 10, retentionDays: 14 },
      sendFunction: {
        timeoutSeconds: 30,
        memoryMiB: 512,
        batchSize: 10,
        maxConcurrency: 10,
        logRetentionDays: 30,
      },
      retry: { maxAttempts: 3, baseDelaySeconds: 30, maxDelaySeconds: 900 },
      circuitBreaker: { failureThreshold: 5, cooldownSeconds: 60 },
      ledger: { retentionDays: 14 },
      monitoring: {
        bounceRate: { warning: 0.02, critical: 0.05, minimumSent: 100, periodMinutes: 60 },
        complaintRate: 0.001,
        sesReputation: { bounceRate: 0.05, complaintRate: 0.001 },
        outboxAgeMinutes: 15,
        fallbackRate: 0.1,
        pauseSesOnCriticalBounces: false,
        routeMetrics: false,
        dashboard: false,
        alarmTopicKey: 'none',
      },
      suppression: {},
      events: {
        busName: 'default',
        // Failures and feedback to act on; one event per message (sent, delivered) only when asked.
        publish: {
          sent: false,
          'dead-lettered': true,
          suppressed: true,
          delivered: false,
          bounced: true,
          complained: true,
        },
      },
      pacing: { enabled: true, maxWaitSeconds: 5 },
      sourceMaps: false,
    });
  });

  it('reports every problem at once, naming each field', () => {
    const error = configurationErrorFrom(() =>
      parseRelayConfig({
        ses: { identities: ['not an identity'] },
        message: { maxRecipients: 0 },
        queue: { retentionDays: 15 },
        sendFunction: { memoryMiB: 64, logRetentionDays: 2 },
      }),
    );

    expect(error.problems.map((problem) => problem.split(':')[0])).toEqual(
      expect.arrayContaining([
        'ses.identities[0]',
        'message.maxRecipients',
        'queue.retentionDays',
        'sendFunction.memoryMiB',
        'sendFunction.logRetentionDays',
      ]),
    );
    expect(error.problems).toHaveLength(5);
  });

  it('reports a configuration without any provider', () => {
    expect(configurationErrorFrom(() => parseRelayConfig({})).problems).toEqual([
      '(root): configure at least one provider: graph (Microsoft Graph), smtp (SMTP) or ses (Amazon SES)',
    ]);
  });

  it('reports a missing provider together with the problems of other fields', () => {
    const error = configurationErrorFrom(() => parseRelayConfig({ queue: { maxReceiveCount: 'three' } }));

    expect(error.problems).toEqual([
      expect.stringMatching(/^queue\.maxReceiveCount: /),
      expect.stringMatching(/^\(root\): configure at least one provider/),
    ]);
  });

  it('rejects unknown fields, naming each one', () => {
    const error = configurationErrorFrom(() =>
      parseRelayConfig({ ses: { identities: ['example.com'], region: 'eu-west-1' }, queues: {} }),
    );

    expect(error.problems).toEqual(
      expect.arrayContaining(['ses.region: unknown field', 'queues: unknown field']),
    );
  });

  it('rejects a visibility timeout below 6 x the function timeout and explains why', () => {
    const error = configurationErrorFrom(() =>
      parseRelayConfig({
        ses: { identities: ['example.com'] },
        queue: { visibilityTimeoutSeconds: 359 },
        sendFunction: { timeoutSeconds: 60 },
      }),
    );

    expect(error.problems).toEqual([
      'queue.visibilityTimeoutSeconds: must be at least 6 x sendFunction.timeoutSeconds (360) so a slow batch is not delivered twice',
    ]);
  });

  it('accepts a visibility timeout of exactly 6 x the function timeout', () => {
    const config = parseRelayConfig({
      ses: { identities: ['example.com'] },
      queue: { visibilityTimeoutSeconds: 360 },
      sendFunction: { timeoutSeconds: 60 },
    });

    expect(config.queue.visibilityTimeoutSeconds).toBe(360);
  });

  it('rejects an identity containing an IAM wildcard character, which would widen the send permission', () => {
    const error = configurationErrorFrom(() => parseRelayConfig({ ses: { identities: ['*@example.com'] } }));

    expect(error.problems).toEqual([
      expect.stringMatching(/^ses\.identities\[0\]: must not contain \* or \?/),
    ]);
  });

  it("rejects so many identities that the function settings would not fit in Lambda's 4 KB environment", () => {
    const identities = Array.from({ length: 150 }, (_, index) => `sender${index}@example.com`);

    const error = configurationErrorFrom(() => parseRelayConfig({ ses: { identities } }));

    expect(error.problems).toEqual([
      expect.stringMatching(/^ses\.identities: the function settings would take ~\d+ bytes/),
    ]);
  });

  it('accepts a realistic list of identities within the environment limit', () => {
    const identities = Array.from({ length: 40 }, (_, index) => `sender${index}@example.com`);

    expect(parseRelayConfig({ ses: { identities } }).ses?.identities).toHaveLength(40);
  });

  it('rejects a configuration set name SES would not accept', () => {
    const error = configurationErrorFrom(() =>
      parseRelayConfig({ ses: { identities: ['example.com'], configurationSetName: 'relay/*' } }),
    );

    expect(error.problems).toEqual([expect.stringMatching(/^ses\.configurationSetName: may contain only/)]);
  });

  it('names the source in the error title', () => {
    expect(configurationErrorFrom(() => parseRelayConfig({}, 'test settings')).message).toMatch(
      /^Invalid test settings:\n {2}- /,
    );
  });
});

describe('parseRelayConfig: rules synth and local mode share', () => {
  it('refuses the SES brake without an ses section, as synth does', () => {
    const error = configurationErrorFrom(() =>
      parseRelayConfig({
        graph: {
          tenantId: 'contoso.onmicrosoft.com',
          clientId: '11111111-2222-3333-4444-555555555555',
          senders: ['contoso.com'],
        },
        monitoring: { pauseSesOnCriticalBounces: true },
      }),
    );

    expect(error.problems).toEqual([
      'monitoring.pauseSesOnCriticalBounces: pauses the SES configuration set the relay sends with when the SES bounce rate is critical: configure ses too, or turn this off',
    ]);
  });
});

describe('parseRelayConfig with Microsoft Graph', () => {
  it('accepts a graph section without ses and fills its defaults', () => {
    const config = parseRelayConfig({ graph: GRAPH });

    expect(config.ses).toBeUndefined();
    expect(config.graph).toEqual({
      ...GRAPH,
      saveToSentItems: true,
      cloud: 'global',
      mailboxAccess: 'consent',
    });
  });

  it('accepts a tenant GUID, a national cloud, explicit hosts, a secret ARN and RBAC scoping', () => {
    const graph = {
      ...GRAPH,
      tenantId: 'aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee',
      cloud: 'usgov',
      mailboxAccess: 'rbac',
      saveToSentItems: false,
      authorityHost: 'https://login.example.test',
      graphEndpoint: 'https://graph.example.test:8443',
      credentialSecretArn:
        'arn:aws-us-gov:secretsmanager:us-gov-west-1:123456789012:secret:mail-relay/graph-AbCdEf',
    };

    expect(parseRelayConfig({ graph }).graph).toEqual(graph);
  });

  it('accepts a partial secret ARN (without the 6-character suffix)', () => {
    const credentialSecretArn = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:mail-relay/graph';

    expect(parseRelayConfig({ graph: { ...GRAPH, credentialSecretArn } }).graph?.credentialSecretArn).toBe(
      credentialSecretArn,
    );
  });

  it('names every bad graph field, together with a problem elsewhere', () => {
    const error = configurationErrorFrom(() =>
      parseRelayConfig({
        graph: {
          tenantId: 'not a tenant',
          clientId: 'mail-relay',
          senders: ['contoso.com'],
          credentialSecretArn: 'arn:aws:s3:::mail-relay-credentials/graph.json',
          graphEndpoint: 'https://graph.microsoft.com/v1.0',
        },
        queue: { retentionDays: 15 },
      }),
    );

    expect(error.problems).toEqual([
      expect.stringMatching(/^graph\.tenantId: must be the directory \(tenant\) id/),
      expect.stringMatching(/^graph\.clientId: must be the application \(client\) id/),
      expect.stringMatching(/^graph\.credentialSecretArn: must be a Secrets Manager secret ARN/),
      expect.stringMatching(/^graph\.graphEndpoint: must be just scheme and host/),
      expect.stringMatching(/^queue\.retentionDays: /),
    ]);
  });

  it.each([
    ['an account id that is not 12 digits', 'arn:aws:secretsmanager:eu-west-1:1234:secret:graph-AbCdEf'],
    ['an unknown partition', 'arn:aws-xx:secretsmanager:eu-west-1:123456789012:secret:graph-AbCdEf'],
    ['no secret name', 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:'],
    ['a secret name instead of an ARN', 'mail-relay/graph'],
  ])('rejects a credentialSecretArn with %s', (_, credentialSecretArn) => {
    const error = configurationErrorFrom(() =>
      parseRelayConfig({ graph: { ...GRAPH, credentialSecretArn } }),
    );

    expect(error.problems).toEqual([expect.stringMatching(/^graph\.credentialSecretArn: /)]);
  });

  it('rejects a cloud it does not know', () => {
    const error = configurationErrorFrom(() => parseRelayConfig({ graph: { ...GRAPH, cloud: 'germany' } }));

    expect(error.problems).toEqual([expect.stringMatching(/^graph\.cloud: /)]);
  });

  it('rejects a message limit above 40 MiB when only SES can send, saying why', () => {
    const error = configurationErrorFrom(() =>
      parseRelayConfig({ ses: SES, message: { maxMessageBytes: 100 * MiB } }),
    );

    expect(error.problems).toEqual([
      expect.stringMatching(
        /^message\.maxMessageBytes: the configured providers take at most 41943040 bytes per message \(Amazon SES 41943040\); only graph takes more, .* add a graph section/,
      ),
    ]);
  });

  it('allows up to 500 recipients when Exchange Online sends (Graph), but only 50 with SES alone', () => {
    expect(
      parseRelayConfig({ ses: SES, graph: GRAPH, message: { maxRecipients: 500 } }).message.maxRecipients,
    ).toBe(500);
    expect(
      configurationErrorFrom(() => parseRelayConfig({ ses: SES, message: { maxRecipients: 100 } })).problems,
    ).toEqual([
      expect.stringMatching(
        /^message\.maxRecipients: the configured providers take at most 50 recipients per message \(Amazon SES 50\); only graph or smtp take more/,
      ),
    ]);
    expect(
      configurationErrorFrom(() => parseRelayConfig({ graph: GRAPH, message: { maxRecipients: 501 } }))
        .problems,
    ).toEqual(["message.maxRecipients: at most 500 (Exchange Online's limit per message; SES takes 50)"]);
  });

  it('accepts a message limit above 40 MiB when Graph can send', () => {
    const config = parseRelayConfig({ ses: SES, graph: GRAPH, message: { maxMessageBytes: 100 * MiB } });

    expect(config.message.maxMessageBytes).toBe(100 * MiB);
  });

  it('reports a message limit above 150 MiB once, as over the field maximum', () => {
    const error = configurationErrorFrom(() =>
      parseRelayConfig({ ses: SES, message: { maxMessageBytes: 200 * MiB } }),
    );

    expect(error.problems).toEqual([expect.stringMatching(/^message\.maxMessageBytes: at most 157286400/)]);
  });

  it('counts the graph and attachment settings in the 4 KB environment estimate', () => {
    // 100 single addresses fit on their own, but not with the Graph settings and the bucket name.
    const identities = Array.from({ length: 100 }, (_, index) => `sender${index}@example.com`);
    expect(parseRelayConfig({ ses: { identities } }).ses?.identities).toHaveLength(100);

    const error = configurationErrorFrom(() =>
      parseRelayConfig({ ses: { identities }, graph: GRAPH, attachments: {} }),
    );

    expect(error.problems).toEqual([
      expect.stringMatching(/^ses\.identities: the function settings would take ~\d+ bytes/),
    ]);
  });

  it('points the environment problem at graph.senders when that is the longer list', () => {
    const senders = Array.from({ length: 150 }, (_, index) => `sender${index}@contoso.com`);

    const error = configurationErrorFrom(() => parseRelayConfig({ ses: SES, graph: { ...GRAPH, senders } }));

    expect(error.problems).toEqual([
      expect.stringMatching(/^graph\.senders: the function settings would take ~\d+ bytes/),
    ]);
  });
});

describe('parseRelayConfig with a soft-bounce threshold', () => {
  it('is off unless configured: soft bounces never suppress by default', () => {
    expect(parseRelayConfig({ ses: SES }).suppression.softBounces).toBeUndefined();
  });

  it('takes a count and a window in days', () => {
    expect(
      parseRelayConfig({ ses: SES, suppression: { softBounces: { count: 5, days: 7 } } }).suppression,
    ).toEqual({
      softBounces: { count: 5, days: 7 },
    });
  });

  it.each([
    [{ count: 1, days: 7 }, /^suppression\.softBounces\.count: /],
    [{ count: 5, days: 0 }, /^suppression\.softBounces\.days: /],
    [{ count: 5 }, /^suppression\.softBounces\.days: /],
  ])('rejects %o', (softBounces, problem) => {
    const error = configurationErrorFrom(() => parseRelayConfig({ ses: SES, suppression: { softBounces } }));
    expect(error.problems).toEqual([expect.stringMatching(problem)]);
  });
});

describe('parseRelayConfig with an attachment bucket', () => {
  it('keeps attachments for 7 days by default', () => {
    expect(parseRelayConfig({ ses: SES, attachments: {} }).attachments).toEqual({ retentionDays: 7 });
  });

  it.each([0, 366, 1.5])('rejects a retention of %s days', (retentionDays) => {
    const error = configurationErrorFrom(() =>
      parseRelayConfig({ ses: SES, attachments: { retentionDays } }),
    );

    expect(error.problems).toEqual([expect.stringMatching(/^attachments\.retentionDays: /)]);
  });

  it('leaves the bucket out unless attachments is configured', () => {
    expect(parseRelayConfig({ ses: SES }).attachments).toBeUndefined();
  });
});

describe('parseRelayConfig with static egress', () => {
  const ALLOCATION_ID = 'eipalloc-0123456789abcdef0';
  /** SES, and an Exchange connector: the SMTP connection is what sends from the static IPs. */
  const SENDERS = { ses: SES, smtp: { senders: ['scanner@example.com'], mode: 'connector' as const } };

  it('fills the egress defaults: one NAT gateway in 10.80.0.0/16', () => {
    expect(parseRelayConfig({ ...SENDERS, egress: {} }).egress).toEqual({
      nat: 'gateway',
      natCount: 1,
      cidr: '10.80.0.0/16',
    });
  });

  it('counts one NAT per given Elastic IP when natCount is left out', () => {
    const egress = parseRelayConfig({
      ...SENDERS,
      egress: { elasticIpAllocationIds: [ALLOCATION_ID, 'eipalloc-1a2b3c4d'] },
    }).egress;

    expect(egress?.natCount).toBe(2);
  });

  it('accepts a NAT instance with its instance type and a reused Elastic IP', () => {
    const egress = { nat: 'instance', instanceType: 't4g.micro', elasticIpAllocationIds: [ALLOCATION_ID] };

    expect(parseRelayConfig({ ...SENDERS, egress }).egress).toEqual({
      ...egress,
      natCount: 1,
      cidr: '10.80.0.0/16',
    });
  });

  it('leaves egress out unless it is configured', () => {
    expect(parseRelayConfig({ ses: SES }).egress).toBeUndefined();
  });

  it('sends from the static IPs through every SMTP connection by default, or through the providers listed', () => {
    expect(staticEgressProvidersOf(parseRelayConfig({ ...SENDERS, egress: {} }))).toEqual(['smtp']);
    const graph = { ...SENDERS, graph: GRAPH, egress: { providers: ['smtp', 'graph'] } };
    expect(staticEgressProvidersOf(parseRelayConfig(graph))).toEqual(['smtp', 'graph']);
    expect(staticEgressProvidersOf(parseRelayConfig({ ses: SES }))).toEqual([]);
  });

  it('refuses static egress nothing sends from, an unknown provider, and a connector left out of it', () => {
    expect(configurationErrorFrom(() => parseRelayConfig({ ses: SES, egress: {} })).problems).toEqual([
      expect.stringMatching(/^egress: no provider sends from the static IPs .*egress\.providers/),
    ]);
    const error = configurationErrorFrom(() =>
      parseRelayConfig({ ...SENDERS, egress: { providers: ['ses', 'smtp:billing'] } }),
    );
    expect(error.problems).toEqual([
      'egress.providers[1]: "smtp:billing" is not a configured provider (smtp, ses)',
      'egress.providers: must include smtp: in connector mode Exchange Online accepts its mail only from the static IPs',
    ]);
  });

  it('keeps an XOAUTH2 connection with graph when graph sends from the static IPs', () => {
    const xoauth2 = {
      ses: SES,
      graph: GRAPH,
      smtp: { senders: ['soporte@contoso.com'], mode: 'submission' as const, auth: 'xoauth2' as const },
    };
    expect(
      configurationErrorFrom(() => parseRelayConfig({ ...xoauth2, egress: { providers: ['graph'] } }))
        .problems,
    ).toEqual([
      'egress.providers: must include smtp with graph: its XOAUTH2 tokens come from the Graph app, which then leaves from the static IPs',
    ]);
    expect(
      parseRelayConfig({ ...xoauth2, egress: { providers: ['graph', 'smtp'] } }).egress?.providers,
    ).toEqual(['graph', 'smtp']);
  });

  it('names every egress problem at once, together with a problem elsewhere', () => {
    const error = configurationErrorFrom(() =>
      parseRelayConfig({
        ...SENDERS,
        queue: { retentionDays: 15 },
        egress: {
          nat: 'gateway',
          natCount: 2,
          elasticIpAllocationIds: ['eipalloc-XYZ'],
          instanceType: 't4g.nano',
          cidr: '10.80.0.0/12',
        },
      }),
    );

    expect(error.problems).toEqual(
      expect.arrayContaining([
        'queue.retentionDays: Too big: expected number to be <=14',
        expect.stringMatching(/^egress\.elasticIpAllocationIds\[0\]: must be an Elastic IP allocation ID/),
        expect.stringMatching(/^egress\.natCount: is 2 but elasticIpAllocationIds lists 1/),
        'egress.instanceType: applies only to nat: "instance" (a NAT gateway has no instance type)',
        expect.stringMatching(/^egress\.cidr: must be a \/16 to \/24 block/),
      ]),
    );
    expect(error.problems).toHaveLength(5);
  });

  it('rejects more than three NATs and more than three Elastic IPs', () => {
    const error = configurationErrorFrom(() =>
      parseRelayConfig({
        ...SENDERS,
        egress: {
          natCount: 4,
          elasticIpAllocationIds: [
            'eipalloc-1a2b3c4d',
            'eipalloc-2a2b3c4d',
            'eipalloc-3a2b3c4d',
            'eipalloc-4a2b3c4d',
          ],
        },
      }),
    );

    expect(error.problems.map((problem) => problem.split(':')[0])).toEqual([
      'egress.natCount',
      'egress.elasticIpAllocationIds',
    ]);
  });

  it('rejects an Elastic IP listed twice', () => {
    const error = configurationErrorFrom(() =>
      parseRelayConfig({ ...SENDERS, egress: { elasticIpAllocationIds: [ALLOCATION_ID, ALLOCATION_ID] } }),
    );

    expect(error.problems).toEqual(['egress.elasticIpAllocationIds: lists an allocation ID twice']);
  });

  it.each([
    ['10.80.0.0', 'must be an IPv4 CIDR block such as 10.80.0.0/16'],
    ['10.300.0.0/16', 'must be an IPv4 CIDR block such as 10.80.0.0/16'],
    ['10.80.0.0/25', 'must be a /16 to /24 block'],
    ['10.80.1.0/16', 'must be the network address of the block: 10.80.0.0/16'],
  ])('rejects the CIDR block %s', (cidr, message) => {
    const error = configurationErrorFrom(() => parseRelayConfig({ ...SENDERS, egress: { cidr } }));

    expect(error.problems).toEqual([expect.stringContaining(`egress.cidr: ${message}`)]);
  });

  it('rejects an unknown NAT kind and an instance type EC2 would not know', () => {
    const error = configurationErrorFrom(() =>
      parseRelayConfig({ ...SENDERS, egress: { nat: 'instance-v1', instanceType: 'nano' } }),
    );

    expect(error.problems.map((problem) => problem.split(':')[0])).toEqual([
      'egress.nat',
      'egress.instanceType',
    ]);
  });
});

describe('loadRelayConfig', () => {
  it('says a missing file was not found and how to choose another', () => {
    const missing = join(scratchDir, 'absent.json');

    const error = configurationErrorFrom(() => loadRelayConfig(missing));

    expect(error.message).toContain(`Cannot read mail-relay configuration ${missing}`);
    expect(error.problems).toEqual([expect.stringContaining('file not found')]);
    expect(error.problems[0]).toContain('-c config=PATH');
  });

  it('says a file that is not JSON is not valid JSON', () => {
    const path = writeScratchFile('broken.json', '{ "ses": ');

    const error = configurationErrorFrom(() => loadRelayConfig(path));

    expect(error.message).toContain(`Invalid mail-relay configuration ${path}`);
    expect(error.problems).toEqual([expect.stringMatching(/^not valid JSON: /)]);
  });

  it('names the file when its content is invalid', () => {
    const path = writeScratchFile('invalid.json', JSON.stringify({ ses: { identities: [] } }));

    const error = configurationErrorFrom(() => loadRelayConfig(path));

    expect(error.message).toContain(`Invalid mail-relay configuration ${path}`);
    expect(error.problems).toEqual([expect.stringMatching(/^ses\.identities: /)]);
  });

  it('refuses a key given twice in one object, naming where, instead of keeping the last', () => {
    const path = writeScratchFile(
      'duplicates.json',
      [
        '{',
        '  "ses": { "identities": ["example.com"] },',
        '  "routes": [{ "name": "a", "from": ["*@example.com"], "providers": ["ses"], "name": "b" }],',
        '  "ses": { "identities": ["example.org"] }',
        '}',
      ].join('\n'),
    );

    const error = configurationErrorFrom(() => loadRelayConfig(path));

    expect(error.problems).toEqual([
      'routes[0].name: appears twice (lines 3 and 3); JSON keeps only the last',
      'ses: appears twice (lines 2 and 4); JSON keeps only the last',
    ]);
  });

  it('takes equal keys in different objects, and keys inside strings, as they are', () => {
    const path = writeScratchFile(
      'no-duplicates.json',
      [
        '{',
        '  "$schema": "a \\"ses\\": {} text",',
        '  "ses": { "identities": ["example.com"] },',
        '  "routes": [',
        '    { "name": "a", "from": ["*@example.com"], "providers": ["ses"] },',
        '    { "name": "b", "from": ["b@example.com"], "providers": ["ses"] }',
        '  ]',
        '}',
      ].join('\n'),
    );

    expect(loadRelayConfig(path).routes?.map((route) => route.name)).toEqual(['a', 'b']);
  });

  it('accepts the $schema reference editors use', () => {
    const path = writeScratchFile(
      'with-schema.json',
      JSON.stringify({ $schema: './schema/config.schema.json', ses: { identities: ['example.com'] } }),
    );

    expect(loadRelayConfig(path).ses?.identities).toEqual(['example.com']);
  });

  it('accepts the repository root mail-relay.config.json', () => {
    const rootConfig = fileURLToPath(new URL(DEFAULT_CONFIG_PATH, REPO_ROOT));

    expect(loadRelayConfig(rootConfig).ses?.identities.length).toBeGreaterThan(0);
  });
});

describe('smtpSettingsFor', () => {
  const SECRET = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:mail-relay/smtp-AbCdEf';
  const smtpOf = (smtp: object): SmtpConnectionConfig => {
    const config = parseRelayConfig({ graph: GRAPH, egress: {}, smtp });
    if (!config.smtp || 'connections' in config.smtp) throw new Error('expected a single smtp section');
    return config.smtp;
  };

  it('derives a connector host from a domain sender: the Exchange Online MX endpoint, dots as dashes', () => {
    expect(
      smtpSettingsFor(smtpOf({ senders: ['crm.contoso.com', 'x@fabrikam.com'], mode: 'connector' })),
    ).toEqual({
      senders: ['crm.contoso.com', 'x@fabrikam.com'],
      mode: 'connector',
      host: 'crm-contoso-com.mail.protection.outlook.com',
      port: 25,
      tls: 'starttls',
      requireTls: true,
      auth: 'none',
    });
  });

  it('derives a connector host from the domain of an address sender', () => {
    expect(smtpSettingsFor(smtpOf({ senders: ['scanner@Contoso.com'], mode: 'connector' })).host).toBe(
      'contoso-com.mail.protection.outlook.com',
    );
  });

  it('submits to smtp.office365.com on 587 with xoauth2 by default', () => {
    expect(smtpSettingsFor(smtpOf({ senders: ['contoso.com'], mode: 'submission' }))).toMatchObject({
      host: 'smtp.office365.com',
      port: 587,
      auth: 'xoauth2',
      tls: 'starttls',
      requireTls: true,
    });
  });

  it('authenticates to a smarthost with plain when a secret is given, and passes the secret on', () => {
    const settings = smtpSettingsFor(
      smtpOf({
        senders: ['contoso.com'],
        mode: 'smarthost',
        host: 'smtp.example.net',
        credentialSecretArn: SECRET,
      }),
    );

    expect(settings).toMatchObject({
      host: 'smtp.example.net',
      port: 587,
      auth: 'plain',
      credentialSecretId: SECRET,
    });
  });

  it('sends to a smarthost without authentication when no secret is given', () => {
    expect(
      smtpSettingsFor(smtpOf({ senders: ['contoso.com'], mode: 'smarthost', host: '10.0.0.5' })),
    ).toMatchObject({ auth: 'none', port: 587 });
  });

  it('keeps an explicit host, port, tls and auth', () => {
    expect(
      smtpSettingsFor(
        smtpOf({
          senders: ['contoso.com'],
          mode: 'submission',
          host: 'smtp.office365.us',
          port: 465,
          tls: 'implicit',
          oauthScope: 'https://outlook.office365.us/.default',
        }),
      ),
    ).toMatchObject({
      host: 'smtp.office365.us',
      port: 465,
      tls: 'implicit',
      auth: 'xoauth2',
      oauthScope: 'https://outlook.office365.us/.default',
    });
  });
});

describe('parseRelayConfig with an smtp section', () => {
  const UNRELATED = { queue: { retentionDays: 15 } };
  const problemsOf = (config: object) => configurationErrorFrom(() => parseRelayConfig(config)).problems;

  it('accepts smtp as the only provider', () => {
    expect(
      parseRelayConfig({ smtp: { senders: ['contoso.com'], mode: 'smarthost', host: 'mail.example.net' } })
        .smtp,
    ).toEqual({
      senders: ['contoso.com'],
      mode: 'smarthost',
      host: 'mail.example.net',
      tls: 'starttls',
      requireTls: true,
    });
  });

  it('rejects a login in connector mode, together with other problems', () => {
    expect(
      problemsOf({
        ...UNRELATED,
        egress: {},
        smtp: {
          senders: ['contoso.com'],
          mode: 'connector',
          auth: 'plain',
          credentialSecretArn: 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:s-AbCdEf',
        },
      }),
    ).toEqual([
      expect.stringMatching(/^queue\.retentionDays: /),
      'smtp.auth: must be none in connector mode: an Exchange Online inbound connector trusts the sending IP, not a login',
    ]);
  });

  it('rejects connector mode without egress, together with other problems', () => {
    expect(problemsOf({ ...UNRELATED, smtp: { senders: ['contoso.com'], mode: 'connector' } })).toEqual([
      expect.stringMatching(/^queue\.retentionDays: /),
      'smtp.mode: connector mode needs a static egress IP: add an egress section (docs/static-egress.md)',
    ]);
  });

  it('requires a host in smarthost mode, together with other problems', () => {
    expect(problemsOf({ ...UNRELATED, smtp: { senders: ['contoso.com'], mode: 'smarthost' } })).toEqual([
      expect.stringMatching(/^queue\.retentionDays: /),
      expect.stringMatching(/^smtp\.host: required in smarthost mode/),
    ]);
  });

  it.each(['plain', 'login'])('requires a credential secret for %s, together with other problems', (auth) => {
    expect(
      problemsOf({
        ...UNRELATED,
        smtp: { senders: ['contoso.com'], mode: 'smarthost', host: 'mail.example.net', auth },
      }),
    ).toEqual([
      expect.stringMatching(/^queue\.retentionDays: /),
      expect.stringMatching(new RegExp(`^smtp\\.credentialSecretArn: required for ${auth} authentication`)),
    ]);
  });

  it('requires graph for xoauth2, the default of submission, together with other problems', () => {
    const message =
      'smtp.auth: xoauth2 takes its tokens from the graph app registration (application permission SMTP.SendAsApp): add a graph section';

    expect(
      problemsOf({ ...UNRELATED, ses: SES, smtp: { senders: ['contoso.com'], mode: 'submission' } }),
    ).toEqual([expect.stringMatching(/^queue\.retentionDays: /), message]);
    expect(
      problemsOf({
        ...UNRELATED,
        ses: SES,
        smtp: { senders: ['contoso.com'], mode: 'smarthost', host: 'mail.example.net', auth: 'xoauth2' },
      }),
    ).toEqual([expect.stringMatching(/^queue\.retentionDays: /), message]);
  });

  it('rejects tls none with requireTls (its default), together with other problems', () => {
    expect(
      problemsOf({
        ...UNRELATED,
        smtp: { senders: ['contoso.com'], mode: 'smarthost', host: 'mail.example.net', tls: 'none' },
      }),
    ).toEqual([
      expect.stringMatching(/^queue\.retentionDays: /),
      expect.stringMatching(/^smtp\.requireTls: must be false with tls "none"/),
    ]);
    expect(
      parseRelayConfig({
        smtp: {
          senders: ['contoso.com'],
          mode: 'smarthost',
          host: 'mail.example.net',
          tls: 'none',
          requireTls: false,
        },
      }).smtp,
    ).toMatchObject({ tls: 'none' });
  });

  it('reports the cross-field rules even when another smtp field is invalid', () => {
    expect(problemsOf({ smtp: { senders: ['not a sender'], mode: 'connector', port: 0 } })).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^smtp\.senders\[0\]: /),
        expect.stringMatching(/^smtp\.port: /),
        expect.stringMatching(/^smtp\.mode: connector mode needs a static egress IP/),
      ]),
    );
  });
});

describe('parseRelayConfig with named SMTP connections', () => {
  const SECRET = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:mail-relay/smtp-AbCdEf';
  const UNRELATED = { queue: { retentionDays: 15 } };
  const problemsOf = (config: object) => configurationErrorFrom(() => parseRelayConfig(config)).problems;
  /** Seed 004's per-address send connectors, and an Exchange Online High Volume Email account. */
  const CONNECTIONS = {
    'billing-ovh': {
      senders: ['facturas@contoso.com'],
      mode: 'smarthost',
      host: 'smtp-relay.example.com',
      port: 465,
      tls: 'implicit',
      credentialSecretArn: SECRET,
      maxMessageBytes: 104_857_600,
    },
    hve: {
      senders: ['alerts@contoso.com'],
      mode: 'smarthost',
      host: 'smtp-hve.office365.com',
      auth: 'login',
      credentialSecretArn: SECRET,
      maxConnections: 3,
    },
  };

  it('accepts named connections, filling each one’s defaults', () => {
    expect(parseRelayConfig({ smtp: { connections: CONNECTIONS } }).smtp).toEqual({
      connections: {
        'billing-ovh': { ...CONNECTIONS['billing-ovh'], requireTls: true },
        hve: { ...CONNECTIONS.hve, tls: 'starttls', requireTls: true },
      },
    });
  });

  it('gives the function one setting per connection, named smtp:<name>, in order, its pool sized to the batch', () => {
    const config = parseRelayConfig({ smtp: { connections: CONNECTIONS }, sendFunction: { batchSize: 5 } });

    expect(smtpSettingsListFor(config.smtp ?? { connections: {} }, config.sendFunction.batchSize)).toEqual([
      {
        name: 'smtp:billing-ovh',
        senders: ['facturas@contoso.com'],
        mode: 'smarthost',
        host: 'smtp-relay.example.com',
        port: 465,
        tls: 'implicit',
        requireTls: true,
        auth: 'plain',
        credentialSecretId: SECRET,
        maxMessageBytes: 104_857_600,
        maxConnections: 5,
      },
      expect.objectContaining({ name: 'smtp:hve', port: 587, auth: 'login', maxConnections: 3 }),
    ]);
    expect(providerNamesOf(config)).toEqual(['smtp:billing-ovh', 'smtp:hve']);
  });

  it('names the single smtp section smtp, its pool sized to the batch too', () => {
    const config = parseRelayConfig({
      graph: GRAPH,
      ses: SES,
      smtp: { senders: ['contoso.com'], mode: 'smarthost', host: 'mail.example.net' },
    });
    const settings = relaySettingsFor(config, {
      queueUrl: 'https://sqs.test/outbox',
      deadLetterQueueUrl: 'https://sqs.test/dlq',
      credentialSecretIds: new Map([['graph', SECRET]]),
      ledgerTableName: 'ledger',
      suppressionTableName: 'suppression',
    });

    expect(settings.smtp).toEqual([expect.objectContaining({ name: 'smtp', host: 'mail.example.net' })]);
    expect(settings.smtp?.[0]?.maxConnections).toBe(10);
    expect(providerNamesOf(config)).toEqual(['graph', 'smtp', 'ses']);
  });

  it('applies every rule of a connection to each connection, reporting them all at once by path', () => {
    expect(
      problemsOf({
        ...UNRELATED,
        ses: SES,
        smtp: {
          connections: {
            exchange: {
              senders: ['contoso.com'],
              mode: 'connector',
              auth: 'plain',
              credentialSecretArn: SECRET,
            },
            partner: { senders: ['fabrikam.com'], mode: 'smarthost', auth: 'login' },
            mailbox: { senders: ['soporte@contoso.com'], mode: 'submission' },
            plain: { senders: ['x@fabrikam.com'], mode: 'smarthost', host: 'mail.example.net', tls: 'none' },
          },
        },
      }),
    ).toEqual([
      expect.stringMatching(/^queue\.retentionDays: /),
      'smtp.connections.exchange.auth: must be none in connector mode: an Exchange Online inbound connector trusts the sending IP, not a login',
      'smtp.connections.exchange.mode: connector mode needs a static egress IP: add an egress section (docs/static-egress.md)',
      'smtp.connections.partner.host: required in smarthost mode: the SMTP server to send through',
      'smtp.connections.partner.credentialSecretArn: required for login authentication: the secret with {"username", "password"}',
      'smtp.connections.mailbox.auth: xoauth2 takes its tokens from the graph app registration (application permission SMTP.SendAsApp): add a graph section',
      'smtp.connections.plain.requireTls: must be false with tls "none": a connection that is never encrypted cannot require TLS',
    ]);
  });

  it('reports a field error of one connection together with the rules of another', () => {
    expect(
      problemsOf({
        smtp: {
          connections: {
            a: { senders: ['contoso.com'], mode: 'smarthost', host: 'mail.example.net', port: 0, bogus: 1 },
            b: { senders: ['fabrikam.com'], mode: 'connector' },
          },
        },
      }),
    ).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^smtp\.connections\.a\.port: /),
        'smtp.connections.a.bogus: unknown field',
        expect.stringMatching(/^smtp\.connections\.b\.mode: connector mode needs a static egress IP/),
      ]),
    );
  });

  it('refuses connection names routes could not name, and an empty list', () => {
    const connection = { senders: ['contoso.com'], mode: 'smarthost', host: 'mail.example.net' };
    const message =
      'must be 1-32 lower-case letters, digits or hyphens, starting with a letter (routes name the connection smtp:<name>)';

    expect(
      problemsOf({
        smtp: { connections: { Billing: connection, '2nd': connection, [`a${'b'.repeat(32)}`]: connection } },
      }),
    ).toEqual([
      `smtp.connections.Billing: ${message}`,
      `smtp.connections["2nd"]: ${message}`,
      `smtp.connections.a${'b'.repeat(32)}: ${message}`,
    ]);
    expect(problemsOf({ smtp: { connections: {} } })).toEqual([
      'smtp.connections: name at least one connection',
    ]);
  });

  it('reports a connection missing a field, not the single form’s fields', () => {
    expect(problemsOf({ smtp: { connections: { a: { senders: ['contoso.com'] } } } })).toEqual([
      expect.stringMatching(/^smtp\.connections\.a\.mode: /),
    ]);
  });

  it('keeps maxConnections between 1 and 50', () => {
    const connection = (maxConnections: number) => ({
      connections: { a: { senders: ['contoso.com'], mode: 'smarthost', host: 'h.example', maxConnections } },
    });

    expect(problemsOf({ smtp: connection(0) })).toEqual([
      expect.stringMatching(/^smtp\.connections\.a\.maxConnections: /),
    ]);
    expect(problemsOf({ smtp: connection(51) })).toEqual([
      expect.stringMatching(/^smtp\.connections\.a\.maxConnections: /),
    ]);
    expect(() => parseRelayConfig({ smtp: connection(50) })).not.toThrow();
  });

  describe('named by routes', () => {
    const route = (providers: string[], from = ['*@contoso.com']) => ({ name: 'main', from, providers });

    it('lets a route name a connection smtp:<name>, before or after other providers', () => {
      const config = parseRelayConfig({
        ses: { identities: ['contoso.com'] },
        smtp: { connections: CONNECTIONS },
        routes: [
          route(['smtp:billing-ovh', 'ses'], ['facturas@contoso.com']),
          { name: 'alerts', from: ['alerts@contoso.com'], providers: ['smtp:hve'] },
        ],
      });

      expect(config.routes?.map((entry) => entry.providers)).toEqual([
        ['smtp:billing-ovh', 'ses'],
        ['smtp:hve'],
      ]);
    });

    it('refuses a connection that does not exist, listing the configured ones', () => {
      expect(
        problemsOf({
          smtp: { connections: CONNECTIONS },
          routes: [route(['smtp:billing'], ['facturas@contoso.com'])],
        }),
      ).toEqual([
        'routes[0].providers[0]: "smtp:billing" is not a configured SMTP connection (configured: smtp:billing-ovh, smtp:hve): name one of them, or remove it from the chain',
      ]);
    });

    it('refuses plain smtp when the connections are named, and smtp:<name> with the single form', () => {
      expect(
        problemsOf({
          smtp: { connections: CONNECTIONS },
          routes: [route(['smtp'], ['facturas@contoso.com'])],
        }),
      ).toEqual([
        'routes[0].providers[0]: "smtp" is not a configured SMTP connection (configured: smtp:billing-ovh, smtp:hve): name one of them, or remove it from the chain',
      ]);
      expect(
        problemsOf({
          smtp: { senders: ['contoso.com'], mode: 'smarthost', host: 'mail.example.net' },
          routes: [route(['smtp:hve'])],
        }),
      ).toEqual([
        'routes[0].providers[0]: "smtp:hve" is not a configured SMTP connection (configured: smtp, the single smtp section): name one of them, or remove it from the chain',
      ]);
    });

    it('refuses a connection without an smtp section, saying what to add', () => {
      expect(problemsOf({ ses: SES, routes: [route(['smtp:hve'], ['*@example.com'])] })).toEqual([
        'routes[0].providers[0]: "smtp:hve" is not configured: add an smtp section with the connection hve in smtp.connections (with its credentials) or remove it from the chain',
      ]);
    });

    it('checks the route’s senders against that connection’s senders only', () => {
      expect(
        problemsOf({
          smtp: { connections: CONNECTIONS },
          routes: [route(['smtp:hve', 'smtp:billing-ovh'], ['facturas@contoso.com'])],
        }),
      ).toEqual([
        'routes[0].providers[0]: "smtp:hve" cannot send as facturas@contoso.com: add facturas@contoso.com to smtp.connections.hve.senders, or remove smtp:hve from the chain',
      ]);
    });

    it('lets an ingress client use a sender only a named connection covers', () => {
      expect(() =>
        parseRelayConfig({
          smtp: { connections: CONNECTIONS },
          ingress: {
            clients: [{ name: 'erp', allowedCidrs: ['198.51.100.7/32'], senders: ['facturas@contoso.com'] }],
          },
        }),
      ).not.toThrow();
    });
  });

  it("still fits the function settings in Lambda's 4 KB, naming the longest list", () => {
    const connection = (count: number) => ({
      senders: Array.from({ length: count }, (_, n) => `sender-${n}@contoso-subsidiary-${n}.example`),
      mode: 'smarthost',
      host: 'mail.example.net',
    });

    expect(problemsOf({ smtp: { connections: { a: connection(20), b: connection(50) } } })).toEqual([
      expect.stringMatching(
        /^smtp\.connections\.b\.senders: the function settings would take ~\d+ bytes of its environment, over the 3500 that fit in Lambda's 4 KB; list whole domains instead of many single addresses, or configure fewer connections$/,
      ),
    ]);
  });

  it('reports a connection written twice in the file, which JSON would silently keep once', () => {
    const file = writeScratchFile(
      'twice.json',
      [
        '{',
        '  "smtp": { "connections": {',
        '    "hve": { "senders": ["a@contoso.com"], "mode": "smarthost", "host": "smtp-hve.office365.com" },',
        '    "hve": { "senders": ["b@contoso.com"], "mode": "smarthost", "host": "smtp-hve.office365.com" }',
        '  } }',
        '}',
      ].join('\n'),
    );

    expect(configurationErrorFrom(() => loadRelayConfig(file)).problems).toEqual([
      'smtp.connections.hve: appears twice (lines 3 and 4); JSON keeps only the last',
    ]);
  });
});

describe('parseRelayConfig with routes', () => {
  const providers = {
    ses: { identities: ['example.com', 'contoso.com'] },
    graph: { ...GRAPH, senders: ['contoso.com'] },
  };

  it('accepts routes whose providers cover their senders, and keeps them in order', () => {
    const routes = [
      { name: 'contoso', from: ['*@contoso.com'], providers: ['graph', 'ses'] },
      { name: 'ceo', from: ['ceo@contoso.com'], providers: ['graph'] },
      { name: 'anyone', from: ['*'], providers: ['ses'] },
      {
        name: 'crm',
        from: ['*@crm.fabrikam.com'],
        providers: ['graph'],
        rewriteFrom: { address: 'crm@contoso.com', name: 'Contoso CRM' },
        onUnknownOutcome: 'resend' as const,
      },
    ];
    // A route that does not say dead-letters what a provider may have sent: never twice by default.
    expect(parseRelayConfig({ ...providers, routes }).routes).toEqual(
      routes.map((route) => ({ onUnknownOutcome: 'dead-letter', onLimit: 'delay', ...route })),
    );
  });

  it('refuses an unknown onUnknownOutcome, and Sent Items lookups without Sent Items', () => {
    const error = configurationErrorFrom(() =>
      parseRelayConfig({
        ...providers,
        graph: { ...providers.graph, saveToSentItems: false, sentItemsLookupSeconds: 120 },
        routes: [
          { name: 'contoso', from: ['*@contoso.com'], providers: ['graph'], onUnknownOutcome: 'retry' },
        ],
      }),
    );
    expect(error.problems).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^routes\[0\]\.onUnknownOutcome: .*"dead-letter".*"resend"/),
        'graph.sentItemsLookupSeconds: looks for the copy Graph saves in Sent Items, and graph.saveToSentItems is false: turn saveToSentItems on, or set this to 0',
      ]),
    );
  });

  it('reports every route problem in one error, naming the field and the fix', () => {
    const error = configurationErrorFrom(() =>
      parseRelayConfig({
        ses: { identities: ['example.com'] },
        routes: [
          { name: 'contoso', from: ['*@contoso.com'], providers: ['graph', 'ses'] },
          { name: 'contoso', from: ['*@example.com', 'bad pattern'], providers: ['sendgrid'] },
          { name: 'again', from: ['*@Example.com', '*'], providers: ['ses'] },
          { name: 'anyone', from: ['*'], providers: ['ses', 'ses'] },
          {
            name: 'crm',
            from: ['*@crm.example.com'],
            providers: ['ses'],
            rewriteFrom: { address: 'crm@fabrikam.com' },
          },
        ],
        retry: { baseDelaySeconds: 60, maxDelaySeconds: 10 },
      }),
    );

    expect(error.problems).toEqual(
      expect.arrayContaining([
        'routes[0].providers[0]: "graph" is not configured: add a graph section (with its credentials) or remove it from the chain',
        'routes[0].providers[1]: "ses" cannot send as *@contoso.com: add contoso.com to ses.identities, or remove ses from the chain',
        expect.stringMatching(/^routes\[1\]\.from\[1\]: must be "\*" \(any sender\), "\*@domain"/),
        expect.stringMatching(
          /^routes\[1\]\.providers\[0\]: must be graph, smtp \(the smtp section\), smtp:<name>/,
        ),
        'routes[1].name: "contoso" is also the name of routes[0]',
        expect.stringMatching(
          /^routes\[2\]\.from: "\*@Example\.com" is also in routes\[1\]: two routes overlap/,
        ),
        expect.stringMatching(/^routes\[3\]\.from: "\*" is also in routes\[2\]/),
        'routes[3].providers: names a provider twice',
        'routes[4].providers[0]: "ses" cannot send as crm@fabrikam.com: add crm@fabrikam.com to ses.identities, or remove ses from the chain',
        'retry.maxDelaySeconds: must be at least retry.baseDelaySeconds (60)',
      ]),
    );
    expect(error.problems).toHaveLength(10);
  });

  it('defaults retries, the circuit breaker and the ledger', () => {
    const config = parseRelayConfig({ ses: SES });
    expect(config.routes).toBeUndefined();
    expect(config.retry).toEqual({ maxAttempts: 3, baseDelaySeconds: 30, maxDelaySeconds: 900 });
    expect(config.circuitBreaker).toEqual({ failureThreshold: 5, cooldownSeconds: 60 });
    expect(config.ledger).toEqual({ retentionDays: 14 });
  });
});

describe('parseRelayConfig route problems, one at a time', () => {
  const problemsOf = (config: object) => configurationErrorFrom(() => parseRelayConfig(config)).problems;
  const route = (overrides: object = {}) => ({
    name: 'main',
    from: ['*@example.com'],
    providers: ['ses'],
    ...overrides,
  });

  it('names the position of a provider that does not exist', () => {
    expect(problemsOf({ ses: SES, routes: [route({ providers: ['sms'] })] })).toEqual([
      'routes[0].providers[0]: must be graph, smtp (the smtp section), smtp:<name> (one of smtp.connections) or ses',
    ]);
  });

  it('refuses a chain that names a provider the configuration does not set up', () => {
    expect(problemsOf({ ses: SES, routes: [route({ providers: ['ses', 'smtp'] })] })).toEqual([
      'routes[0].providers[1]: "smtp" is not configured: add an smtp section (with its credentials) or remove it from the chain',
    ]);
  });

  it('refuses a provider that cannot send as a pattern, naming the list to add it to', () => {
    const ses = { identities: ['example.com', 'billing@contoso.com'] };

    // One address of the domain does not cover the whole domain; "*" needs no identity of its own.
    expect(
      problemsOf({ ses, routes: [route({ from: ['*@contoso.com', 'billing@contoso.com', '*'] })] }),
    ).toEqual([
      'routes[0].providers[0]: "ses" cannot send as *@contoso.com: add contoso.com to ses.identities, or remove ses from the chain',
    ]);
    expect(
      problemsOf({ ses, graph: GRAPH, routes: [route({ from: ['*@fabrikam.com'], providers: ['graph'] })] }),
    ).toEqual([
      'routes[0].providers[0]: "graph" cannot send as *@fabrikam.com: add fabrikam.com to graph.senders, or remove graph from the chain',
    ]);
  });

  it('refuses two routes that share a pattern, whatever its case', () => {
    expect(
      problemsOf({
        ses: SES,
        routes: [route(), route({ name: 'other', from: ['x@example.com', '*@EXAMPLE.com'] })],
      }),
    ).toEqual([
      'routes[1].from: "*@EXAMPLE.com" is also in routes[0]: two routes overlap when they share a pattern (the most specific pattern wins, so list each sender in one route)',
    ]);
  });

  it('refuses two catch-all routes', () => {
    expect(
      problemsOf({ ses: SES, routes: [route({ from: ['*'] }), route({ name: 'other', from: ['*'] })] }),
    ).toEqual([
      'routes[1].from: "*" is also in routes[0]: two routes overlap when they share a pattern (the most specific pattern wins, so list each sender in one route)',
    ]);
  });

  it('refuses two routes with one name', () => {
    expect(problemsOf({ ses: SES, routes: [route(), route({ from: ['x@example.com'] })] })).toEqual([
      'routes[1].name: "main" is also the name of routes[0]',
    ]);
  });

  it('checks a rewriting route against its service mailbox instead of its senders', () => {
    expect(
      problemsOf({ ses: SES, routes: [route({ rewriteFrom: { address: 'svc@contoso.com' } })] }),
    ).toEqual([
      'routes[0].providers[0]: "ses" cannot send as svc@contoso.com: add svc@contoso.com to ses.identities, or remove ses from the chain',
    ]);
    // The senders themselves need no identity when the message leaves from the service mailbox.
    expect(() =>
      parseRelayConfig({
        ses: SES,
        routes: [route({ from: ['*@crm.fabrikam.com'], rewriteFrom: { address: 'svc@example.com' } })],
      }),
    ).not.toThrow();
  });

  it('refuses a longest retry delay below the first', () => {
    expect(problemsOf({ ses: SES, retry: { baseDelaySeconds: 60, maxDelaySeconds: 30 } })).toEqual([
      'retry.maxDelaySeconds: must be at least retry.baseDelaySeconds (60)',
    ]);
  });

  it('reports problems of several routes and the retry section together in one error', () => {
    const error = configurationErrorFrom(() =>
      parseRelayConfig({
        ses: SES,
        routes: [route({ providers: ['sms'] }), route({ from: ['*'], providers: ['graph'] })],
        retry: { baseDelaySeconds: 60, maxDelaySeconds: 30 },
      }),
    );

    expect(error.message).toMatch(/^Invalid mail-relay configuration/);
    expect(error.problems).toEqual([
      'routes[0].providers[0]: must be graph, smtp (the smtp section), smtp:<name> (one of smtp.connections) or ses',
      'routes[1].name: "main" is also the name of routes[0]',
      'routes[1].providers[0]: "graph" is not configured: add a graph section (with its credentials) or remove it from the chain',
      'retry.maxDelaySeconds: must be at least retry.baseDelaySeconds (60)',
    ]);
  });
});

describe('parseRelayConfig with an ingress section', () => {
  const problemsOf = (config: object) => configurationErrorFrom(() => parseRelayConfig(config)).problems;
  const crm = { name: 'crm', allowedCidrs: ['203.0.113.10/32'], senders: ['*@crm.fabrikam.com'] };
  const ses = { identities: ['crm.fabrikam.com', 'contoso.com'] };
  const withClients = (...clients: object[]) => ({ ses, ingress: { clients } });
  const routes = [
    { name: 'crm', from: ['*@crm.fabrikam.com'], providers: ['ses'] },
    { name: 'office', from: ['scanner@contoso.com', 'ceo@contoso.com'], providers: ['ses'] },
  ];

  it('accepts clients the providers cover and fills the defaults', () => {
    const config = parseRelayConfig({
      ses,
      ingress: {
        clients: [crm, { ...crm, name: 'scanner', allowedCidrs: ['198.51.100.7/32', '2001:db8::/48'] }],
      },
    });

    expect(config.ingress).toEqual({
      clients: [crm, { ...crm, name: 'scanner', allowedCidrs: ['198.51.100.7/32', '2001:db8::/48'] }],
      retentionDays: 14,
      inlineMaxBytes: 49_152,
    });
    expect(ingressMaxMessageBytes(config)).toBe(MAIL_MANAGER_MAX_MESSAGE_BYTES);
    expect(INGRESS_PREFIX).toBe('ingress/');
    expect(INGRESS_SMTP_PORT).toBe(587);
  });

  it('loads the ingress example, whose clients the routes allow', () => {
    const config = loadRelayConfig(fileURLToPath(new URL('examples/ingress.config.json', REPO_ROOT)));

    expect(config.ingress?.clients.map((client) => [client.name, client.route])).toEqual([
      ['crm', 'crm'],
      ['scanner', undefined],
    ]);
  });

  it('defaults the largest submission to the relay limit when that is below Mail Manager’s 40 MB', () => {
    const config = parseRelayConfig({ ...withClients(crm), message: { maxMessageBytes: 10 * MiB } });

    expect(config.ingress?.maxMessageBytes).toBeUndefined();
    expect(ingressMaxMessageBytes(config)).toBe(10 * MiB);
    expect(
      ingressMaxMessageBytes(
        parseRelayConfig({ ...withClients(crm), ingress: { clients: [crm], maxMessageBytes: 2 * MiB } }),
      ),
    ).toBe(2 * MiB);
  });

  it('refuses a section without clients, and more clients than Mail Manager has rule sets for', () => {
    expect(problemsOf(withClients())).toEqual(['ingress.clients: list at least one client']);
    const many = Array.from({ length: 41 }, (_, index) => ({ ...crm, name: `client-${index}` }));
    expect(problemsOf(withClients(...many))).toEqual([
      'ingress.clients: at most 40: each client has its own Mail Manager rule set (40 per region) and authenticated ingress endpoint (50 per region)',
    ]);
  });

  it('refuses a client name that is not 1-53 letters, digits, hyphens or underscores', () => {
    const message =
      'must be 1-53 letters, digits, hyphens or underscores (it becomes the S3 prefix ingress/<name>/, which Mail Manager caps at 62 characters)';

    expect(problemsOf(withClients({ ...crm, name: 'crm app' }))).toEqual([
      `ingress.clients[0].name: ${message}`,
    ]);
    expect(problemsOf(withClients({ ...crm, name: 'x'.repeat(54) }))).toEqual([
      `ingress.clients[0].name: ${message}`,
    ]);
    expect(() => parseRelayConfig(withClients({ ...crm, name: 'x'.repeat(53) }))).not.toThrow();
  });

  it('refuses two clients with one name, or names that become the same stack outputs', () => {
    expect(problemsOf(withClients(crm, crm))).toEqual([
      'ingress.clients[1].name: "crm" is also the name of ingress.clients[0]',
    ]);
    expect(
      problemsOf(
        withClients({ ...crm, name: 'crm-eu' }, { ...crm, name: 'crm_eu' }, { ...crm, name: 'crmEu' }),
      ),
    ).toEqual([
      'ingress.clients[1].name: "crm_eu" and ingress.clients[0] would name the same stack outputs (IngressCrmEuHost …): names must differ in more than hyphens and underscores',
      'ingress.clients[2].name: "crmEu" and ingress.clients[0] would name the same stack outputs (IngressCrmEuHost …): names must differ in more than hyphens and underscores',
    ]);
  });

  it('refuses a client without allowed addresses, or with the same block twice', () => {
    expect(problemsOf(withClients({ ...crm, allowedCidrs: [] }))).toEqual([
      'ingress.clients[0].allowedCidrs: list at least one CIDR block the client connects from',
    ]);
    expect(problemsOf(withClients({ ...crm, allowedCidrs: ['2001:DB8::/48', '2001:db8::/48'] }))).toEqual([
      'ingress.clients[0].allowedCidrs: lists a block twice',
    ]);
  });

  it('refuses what is not an IPv4 or IPv6 CIDR block, naming the position', () => {
    const notCidr =
      'must be an IPv4 or IPv6 CIDR block, address/prefix, such as 203.0.113.10/32 or 2001:db8::/48';

    expect(
      problemsOf(
        withClients({ ...crm, allowedCidrs: ['203.0.113.10', 'crm.fabrikam.com/32', '203.0.113.256/32'] }),
      ),
    ).toEqual([
      `ingress.clients[0].allowedCidrs[0]: ${notCidr}`,
      `ingress.clients[0].allowedCidrs[1]: ${notCidr}`,
      `ingress.clients[0].allowedCidrs[2]: ${notCidr}`,
    ]);
    expect(problemsOf(withClients({ ...crm, allowedCidrs: ['203.0.113.10/33', '2001:db8::/129'] }))).toEqual([
      'ingress.clients[0].allowedCidrs[0]: must have a prefix from /1 to /32 (an IPv4 address has 32 bits)',
      'ingress.clients[0].allowedCidrs[1]: must have a prefix from /1 to /128 (an IPv6 address has 128 bits)',
    ]);
  });

  it('refuses the whole internet, IPv4 or IPv6, saying why', () => {
    expect(problemsOf(withClients({ ...crm, allowedCidrs: ['0.0.0.0/0', '::/0'] }))).toEqual([
      'ingress.clients[0].allowedCidrs[0]: allows every IPv4 address on the internet: list the addresses the client connects from, so a leaked password alone cannot submit mail',
      'ingress.clients[0].allowedCidrs[1]: allows every IPv6 address on the internet: list the addresses the client connects from, so a leaked password alone cannot submit mail',
    ]);
  });

  it('refuses a block written with host bits, naming its network address', () => {
    expect(
      problemsOf(
        withClients({
          ...crm,
          allowedCidrs: ['203.0.113.10/24', '2001:db8:0:0:1::/48', '::ffff:198.51.100.7/120'],
        }),
      ),
    ).toEqual([
      'ingress.clients[0].allowedCidrs[0]: must be the network address of the block: 203.0.113.0/24',
      'ingress.clients[0].allowedCidrs[1]: must be the network address of the block: 2001:db8::/48',
      'ingress.clients[0].allowedCidrs[2]: must be the network address of the block: ::ffff:c633:6400/120',
    ]);
  });

  it('accepts single addresses and networks of both versions', () => {
    expect(ingressCidrProblem('198.51.100.7/32')).toBeUndefined();
    expect(ingressCidrProblem('10.0.0.0/8')).toBeUndefined();
    expect(ingressCidrProblem('2001:db8::1/128')).toBeUndefined();
    expect(ingressCidrProblem('2001:db8:5c::/48')).toBeUndefined();
    expect(ingressCidrProblem('::ffff:198.51.100.0/120')).toBeUndefined();
  });

  it('refuses a client without senders, or with a pattern that is not one', () => {
    expect(problemsOf(withClients({ ...crm, senders: [] }))).toEqual([
      'ingress.clients[0].senders: list at least one sender pattern',
    ]);
    expect(problemsOf(withClients({ ...crm, senders: ['crm@*'] }))).toEqual([
      'ingress.clients[0].senders[0]: must be "*" (any sender), "*@domain" (any address at that domain) or one address',
    ]);
  });

  it('refuses a route the configuration does not have', () => {
    expect(problemsOf({ ...withClients({ ...crm, route: 'billing' }), routes })).toEqual([
      'ingress.clients[0].route: no route is named "billing" (configured: crm, office): name one of them, or leave route out to route by the From address',
    ]);
    expect(problemsOf(withClients({ ...crm, route: 'crm' }))).toEqual([
      'ingress.clients[0].route: names route "crm", but the configuration has no routes: add a routes section, or leave route out',
    ]);
  });

  it('refuses senders the forced route does not allow', () => {
    const client = {
      ...crm,
      route: 'office',
      senders: ['scanner@contoso.com', '*@contoso.com', 'x@crm.fabrikam.com'],
    };

    expect(problemsOf({ ...withClients(client), routes })).toEqual([
      'ingress.clients[0].senders[1]: "*@contoso.com" is not allowed by route "office" (it allows scanner@contoso.com, ceo@contoso.com), which refuses a From it does not allow: add it to that route\'s from, or remove it here',
      'ingress.clients[0].senders[2]: "x@crm.fabrikam.com" is not allowed by route "office" (it allows scanner@contoso.com, ceo@contoso.com), which refuses a From it does not allow: add it to that route\'s from, or remove it here',
    ]);
  });

  it('lets a route pattern *@domain cover the domain and its addresses, and * cover everyone', () => {
    const clients = [
      { ...crm, senders: ['*@crm.fabrikam.com', 'ventas@CRM.fabrikam.com'], route: 'crm' },
      { ...crm, name: 'any', senders: ['*', '*@contoso.com', 'x@example.com'], route: 'anyone' },
    ];
    const anyone = { name: 'anyone', from: ['*'], providers: ['ses'] };

    expect(() => parseRelayConfig({ ses, ingress: { clients }, routes: [...routes, anyone] })).not.toThrow();
  });

  it('refuses senders no route allows when the client does not force one', () => {
    const client = {
      ...crm,
      senders: ['ventas@crm.fabrikam.com', 'ceo@contoso.com', 'cfo@contoso.com', '*@contoso.com', '*'],
    };

    expect(problemsOf({ ...withClients(client), routes })).toEqual([
      'ingress.clients[0].senders[2]: "cfo@contoso.com" is not allowed by any route, so the relay would refuse its messages: add it (or *@contoso.com) to a route\'s from patterns, or remove it here',
      'ingress.clients[0].senders[3]: "*@contoso.com" is not allowed by any route, so the relay would refuse its messages: add it to a route\'s from patterns, or remove it here',
      'ingress.clients[0].senders[4]: "*" is not allowed by any route, so the relay would refuse its messages: add it to a route\'s from patterns, or remove it here',
    ]);
  });

  it('without routes, refuses senders no provider covers', () => {
    const client = {
      ...crm,
      senders: ['ventas@crm.fabrikam.com', '*@contoso.com', 'x@fabrikam.com', '*@fabrikam.com', '*'],
    };

    expect(problemsOf(withClients(client))).toEqual([
      'ingress.clients[0].senders[2]: "x@fabrikam.com" is not covered by any provider, so the relay would refuse its messages: add x@fabrikam.com (or fabrikam.com) to ses.identities, graph.senders or smtp.senders, or remove it here',
      'ingress.clients[0].senders[3]: "*@fabrikam.com" is not covered by any provider, so the relay would refuse its messages: add fabrikam.com to ses.identities, graph.senders or smtp.senders, or remove it here',
      'ingress.clients[0].senders[4]: "*" (any sender) needs a route that allows "*": without routes only the senders the providers cover are allowed, so list them here',
    ]);
    // Any provider's list counts.
    expect(() =>
      parseRelayConfig({
        ...withClients({ ...crm, senders: ['*@fabrikam.com'] }),
        graph: { ...GRAPH, senders: ['fabrikam.com'] },
      }),
    ).not.toThrow();
  });

  it('refuses a largest submission above Mail Manager’s 40 MB or above the relay’s own limit', () => {
    expect(
      problemsOf({ ses, ingress: { clients: [crm], maxMessageBytes: MAIL_MANAGER_MAX_MESSAGE_BYTES + 1 } }),
    ).toEqual([
      'ingress.maxMessageBytes: at most 41943040 (40 MB, the largest message Mail Manager accepts)',
    ]);
    expect(
      problemsOf({
        ses,
        message: { maxMessageBytes: 10 * MiB },
        ingress: { clients: [crm], maxMessageBytes: 20 * MiB },
      }),
    ).toEqual([
      'ingress.maxMessageBytes: must be at most message.maxMessageBytes (10485760): the relay would accept submissions it then refuses to send; lower this or raise message.maxMessageBytes',
    ]);
  });

  it('refuses keeping submissions for less time than the outbox keeps messages', () => {
    expect(problemsOf({ ses, ingress: { clients: [crm], retentionDays: 7 } })).toEqual([
      'ingress.retentionDays: must be at least queue.retentionDays (14): a message waiting in the outbox may still need its stored submission; raise this or lower queue.retentionDays',
    ]);
    expect(() =>
      parseRelayConfig({ ses, queue: { retentionDays: 7 }, ingress: { clients: [crm], retentionDays: 7 } }),
    ).not.toThrow();
  });

  it('refuses an inline size SQS cannot carry', () => {
    expect(problemsOf({ ses, ingress: { clients: [crm], inlineMaxBytes: 700_001 } })).toEqual([
      'ingress.inlineMaxBytes: Too big: expected number to be <=700000',
    ]);
  });

  it('refuses clients whose settings would not fit in the ingest function environment', () => {
    const senders = Array.from({ length: 40 }, (_, index) => `sender-${index}@crm.fabrikam.com`);
    const clients = Array.from({ length: 4 }, (_, index) => ({ ...crm, name: `crm-${index}`, senders }));

    expect(problemsOf(withClients(...clients))).toEqual([
      expect.stringMatching(
        /^ingress\.clients: the ingest function settings would take ~\d+ bytes of its environment, over the 3500 that fit in Lambda's 4 KB; list whole domains \(\*@domain\) instead of many single addresses$/,
      ),
    ]);
  });

  it('reports every ingress problem with the rest in one error', () => {
    const error = configurationErrorFrom(() =>
      parseRelayConfig({
        ses,
        routes,
        queue: { retentionDays: 14 },
        ingress: {
          clients: [
            { ...crm, route: 'nope', allowedCidrs: ['0.0.0.0/0'] },
            { ...crm, senders: ['*@fabrikam.com'] },
          ],
          retentionDays: 3,
        },
        retry: { baseDelaySeconds: 60, maxDelaySeconds: 30 },
      }),
    );

    expect(error.problems).toEqual([
      expect.stringMatching(/^ingress\.clients\[0\]\.allowedCidrs\[0\]: allows every IPv4 address/),
      expect.stringMatching(/^ingress\.clients\[0\]\.route: no route is named "nope"/),
      'ingress.clients[1].name: "crm" is also the name of ingress.clients[0]',
      expect.stringMatching(
        /^ingress\.clients\[1\]\.senders\[0\]: "\*@fabrikam\.com" is not allowed by any route/,
      ),
      expect.stringMatching(/^ingress\.retentionDays: must be at least queue\.retentionDays \(14\)/),
      'retry.maxDelaySeconds: must be at least retry.baseDelaySeconds (60)',
    ]);
  });
});

describe('ingestSettingsFor', () => {
  const resources = {
    queueUrl: 'https://sqs.eu-west-1.amazonaws.com/123456789012/outbox',
    deadLetterQueueUrl: 'https://sqs.eu-west-1.amazonaws.com/123456789012/ingest-dlq',
    bucket: 'relay-ingress-bucket',
  };

  it('gives the ingest function the prefix, the limits and each client’s senders and route', () => {
    const config = parseRelayConfig({
      ses: { identities: ['fabrikam.com'] },
      routes: [{ name: 'crm', from: ['*@fabrikam.com'], providers: ['ses'] }],
      message: { maxRecipients: 20 },
      ingress: {
        clients: [
          { name: 'crm', allowedCidrs: ['203.0.113.0/24'], senders: ['*@fabrikam.com'], route: 'crm' },
          { name: 'scanner', allowedCidrs: ['198.51.100.7/32'], senders: ['scanner@fabrikam.com'] },
        ],
        inlineMaxBytes: 1000,
      },
    });

    const settings = ingestSettingsFor(config, resources);

    expect(settings).toEqual({
      ...resources,
      prefix: 'ingress/',
      inlineMaxBytes: 1000,
      limits: { maxRecipients: 20, maxMessageBytes: MAIL_MANAGER_MAX_MESSAGE_BYTES },
      clients: [
        { name: 'crm', senders: ['*@fabrikam.com'], route: 'crm' },
        { name: 'scanner', senders: ['scanner@fabrikam.com'] },
      ],
    });
    expect(ingestSettingsSchema.parse(settings)).toEqual(settings);
  });

  it('refuses a configuration without an ingress section', () => {
    expect(
      configurationErrorFrom(() => ingestSettingsFor(parseRelayConfig({ ses: SES }), resources)).problems,
    ).toEqual(['ingress: required for the ingest function']);
  });
});
