import { randomUUID } from 'node:crypto';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Finding } from '../../../cli/doctor/findings.ts';
import { checkGraph } from '../../../cli/doctor/graph-checks.ts';
import type { DoctorTarget } from '../../../cli/doctor/target.ts';
import { graphSettingsFor } from '../../../lambda/providers/graph/config.ts';
import { GRAPH_FAILURES } from '../../../lambda/providers/graph/failures.ts';
import { createHttpTransport } from '../../../lambda/providers/http-transport.ts';
import { parseRelayConfig, type RelayConfigInput } from '../../../lib/config.ts';
import { createClientCertificate, type GeneratedCertificate } from '../../../local/peers/certificates.ts';
import { type GraphPeer, startGraphPeer } from '../../../local/peers/graph-peer.ts';
import {
  type SecretsManagerEmulator,
  startSecretsManagerEmulator,
} from '../../../local/secrets-manager-emulator.ts';
import { doctorTarget } from './doctor-target.ts';

const TENANT = '72f988bf-0000-4000-8000-00000000d0c7';
const OTHER_TENANT = '72f988bf-0000-4000-8000-0000000000ff';
const SECRET = 'doctor-test-secret~value';
/** One app registration per permission set the tests need. */
const APPS = {
  complete: '0a1b2c3d-0000-4000-8000-0000000000a1',
  withoutMailSend: '0a1b2c3d-0000-4000-8000-0000000000a2',
  withoutMailRead: '0a1b2c3d-0000-4000-8000-0000000000a3',
  sendOnly: '0a1b2c3d-0000-4000-8000-0000000000a4',
  scopedToBilling: '0a1b2c3d-0000-4000-8000-0000000000a5',
  certificate: '0a1b2c3d-0000-4000-8000-0000000000a6',
} as const;
const BILLING = 'billing@contoso.com';
const CRM = 'crm@contoso.com';
const JWT = /eyJ[\w-]+\.[\w-]+\.[\w-]+/;

const hint = (code: string) => GRAPH_FAILURES.ruleFor(code)?.hint;

describe('checkGraph', () => {
  let peer: GraphPeer;
  let secrets: SecretsManagerEmulator;
  let secretsClient: SecretsManagerClient;
  let certificate: GeneratedCertificate;

  beforeAll(async () => {
    certificate = await createClientCertificate();
    peer = await startGraphPeer({
      tenantId: TENANT,
      mailboxes: [BILLING, CRM, 'ops@contoso.com'],
      clients: [
        { clientId: APPS.complete, clientSecret: SECRET },
        { clientId: APPS.withoutMailSend, clientSecret: SECRET, roles: ['Mail.ReadBasic.All', 'Mail.Read'] },
        { clientId: APPS.withoutMailRead, clientSecret: SECRET, roles: ['Mail.Send', 'Mail.ReadBasic.All'] },
        { clientId: APPS.sendOnly, clientSecret: SECRET, roles: ['Mail.Send'] },
        { clientId: APPS.scopedToBilling, clientSecret: SECRET, mailboxScope: [BILLING] },
        { clientId: APPS.certificate, certificatePem: certificate.certificatePem },
      ],
    });
    secrets = await startSecretsManagerEmulator(0);
    secretsClient = new SecretsManagerClient({
      region: 'us-east-1',
      endpoint: secrets.endpoint,
      credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
      maxAttempts: 1,
    });
  });
  afterAll(async () => {
    secretsClient.destroy();
    await Promise.all([peer.close(), secrets.stop()]);
  });

  interface Scenario {
    readonly clientId?: string;
    /** The credential secret's value; default: the right client secret. */
    readonly credential?: unknown;
    readonly tenantId?: string;
    readonly senders?: string[];
    readonly bounceReports?: string[];
    readonly sentItemsLookupSeconds?: number;
    readonly mailboxAccess?: 'consent' | 'rbac';
    /** Where tokens are asked for; default: the peer. */
    readonly authorityHost?: string;
  }

  /** A target as local mode builds it: the configuration's settings with the peer's hosts. */
  function targetFor(scenario: Scenario = {}): DoctorTarget {
    const configInput: RelayConfigInput = {
      graph: {
        tenantId: scenario.tenantId ?? TENANT,
        clientId: scenario.clientId ?? APPS.complete,
        senders: scenario.senders ?? [BILLING],
        ...(scenario.sentItemsLookupSeconds !== undefined && {
          sentItemsLookupSeconds: scenario.sentItemsLookupSeconds,
        }),
        ...(scenario.mailboxAccess && { mailboxAccess: scenario.mailboxAccess }),
      },
      ...(scenario.bounceReports && { bounceReports: { mailboxes: scenario.bounceReports } }),
    };
    const config = parseRelayConfig(configInput);
    if (!config.graph) throw new Error('the test configuration has a graph section');
    const secretId = secrets.putSecret(
      `graph-${randomUUID()}`,
      JSON.stringify(scenario.credential ?? { clientSecret: SECRET }),
    );
    return doctorTarget({
      configInput,
      settings: {
        graph: {
          ...graphSettingsFor(config.graph, secretId),
          authorityHost: scenario.authorityHost ?? peer.authorityHost,
          graphEndpoint: peer.graphEndpoint,
        },
      },
      secrets: secretsClient,
      graphTransport: createHttpTransport({ ca: peer.caCertificate }),
    });
  }

  function only(findings: readonly Finding[], check: string, subject = 'graph'): Finding {
    const matching = findings.filter((found) => found.check === check && found.subject === subject);
    expect(matching, `${check} of ${subject} in ${JSON.stringify(findings, null, 2)}`).toHaveLength(1);
    return matching[0] as Finding;
  }

  it('finds nothing to check without a graph section', async () => {
    expect(await checkGraph(doctorTarget())).toEqual([]);
  });

  it('passes every check for a working app: credential, token, roles and each mailbox', async () => {
    const findings = await checkGraph(
      targetFor({ senders: [BILLING, CRM], bounceReports: [BILLING], sentItemsLookupSeconds: 300 }),
    );

    expect(findings.map(({ check, subject, verdict }) => ({ check, subject, verdict }))).toEqual([
      { check: 'credential', subject: 'graph', verdict: 'ok' },
      { check: 'token', subject: 'graph', verdict: 'ok' },
      { check: 'roles', subject: 'graph', verdict: 'ok' },
      { check: 'roles', subject: 'graph', verdict: 'ok' },
      { check: 'roles', subject: 'graph', verdict: 'ok' },
      { check: 'roles', subject: 'graph', verdict: 'ok' },
      { check: 'mailbox', subject: BILLING, verdict: 'ok' },
      { check: 'mailbox', subject: CRM, verdict: 'ok' },
    ]);
    expect(only(findings, 'credential').detail).toMatch(/holds a client secret/);
    expect(only(findings, 'token').detail).toBe(
      `Entra ID issued a token to app ${APPS.complete} in tenant ${TENANT} (tokens from ${peer.authorityHost}, Graph at ${peer.graphEndpoint})`,
    );
    expect(findings[2]?.detail).toMatch(/^the token carries Mail\.Send \(roles: /);
    expect(findings[3]?.detail).toMatch(
      /more than 3 MB of attachments can go as drafts \(Mail\.ReadWrite\)$/,
    );
    expect(findings[4]?.detail).toMatch(/^bounce reports can read the Inbox .*\(Mail\.Read\)$/);
    expect(findings[5]?.detail).toMatch(/^lost-answer lookups can search .*\(Mail\.ReadBasic\.All\)$/);
    expect(only(findings, 'mailbox', BILLING).detail).toBe(
      'sender and bounce-report mailbox: exists and the app can reach it',
    );
    expect(only(findings, 'mailbox', CRM).detail).toBe('sender: exists and the app can reach it');
    expect(findings.every((found) => found.fix === undefined)).toBe(true);
  });

  it('reads the Sent Items folder of a sender and the Inbox of a bounce-report mailbox, and sends nothing', async () => {
    peer.reset();
    await checkGraph(targetFor({ senders: [CRM], bounceReports: [BILLING] }));

    expect(
      peer.requests
        .filter((recorded) => recorded.operation !== 'token')
        .map(({ method, path, status }) => ({ method, path, status }))
        .sort((a, b) => a.path.localeCompare(b.path)),
    ).toEqual([
      { method: 'GET', path: `/v1.0/users/${encodeURIComponent(BILLING)}/mailFolders/inbox`, status: 200 },
      { method: 'GET', path: `/v1.0/users/${encodeURIComponent(CRM)}/mailFolders/sentitems`, status: 200 },
    ]);
    expect(peer.delivered).toHaveLength(0);
  });

  it('never puts the client secret or the access token in a finding', async () => {
    const findings = await checkGraph(targetFor({ senders: [BILLING, 'nobody@contoso.com'] }));

    const text = JSON.stringify(findings);
    expect(text).not.toContain(SECRET);
    expect(text).not.toMatch(JWT);
  });

  it('fails the roles check of a token without Mail.Send, with the permission and admin consent as the fix', async () => {
    const findings = await checkGraph(targetFor({ clientId: APPS.withoutMailSend }));

    const roles = findings.find((found) => found.check === 'roles' && /Mail\.Send/.test(found.detail));
    expect(roles).toMatchObject({
      verdict: 'problem',
      detail: 'the token carries no Mail.Send role (roles: Mail.ReadBasic.All, Mail.Read)',
    });
    expect(roles?.fix).toMatch(/application permission Mail\.Send .*grant admin consent/);
    expect(roles?.fix).toMatch(/RBAC for Applications carries no Mail\.Send role .*a test send/);
  });

  it('warns that without Mail.ReadWrite a message with more than 3 MB of attachments cannot go as a draft', async () => {
    const findings = await checkGraph(targetFor({ clientId: APPS.sendOnly }));
    const draft = findings.find((found) => found.check === 'roles' && /Mail\.ReadWrite/.test(found.detail));
    expect(draft).toMatchObject({ verdict: 'warning' });
    expect(draft?.detail).toMatch(
      /more than 3 MB of attachments, sent as a draft, is refused with ErrorAccessDenied/,
    );
    expect(draft?.fix).toMatch(/application permission Mail\.ReadWrite/);
  });

  it('takes a token without Mail.Send as expected when the app is scoped by RBAC for Applications', async () => {
    const findings = await checkGraph(targetFor({ clientId: APPS.withoutMailSend, mailboxAccess: 'rbac' }));
    const roles = findings.find((found) => found.check === 'roles' && /Mail\.Send/.test(found.detail));
    expect(roles).toMatchObject({ verdict: 'warning' });
    expect(roles?.detail).toMatch(/mailboxAccess is "rbac": the token carries no Mail\.Send, as expected/);
    expect(roles?.fix).toMatch(/test message from each sender/);
    expect(findings.some((found) => found.verdict === 'problem')).toBe(false);
  });

  it('explains a wrong client secret (AADSTS7000215) with the fix from the failure table', async () => {
    const findings = await checkGraph(
      targetFor({ credential: { clientSecret: 'the-secret-id-not-its-value' } }),
    );

    expect(findings).toHaveLength(2);
    expect(only(findings, 'credential').verdict).toBe('ok');
    const token = only(findings, 'token');
    expect(token).toMatchObject({
      verdict: 'problem',
      code: 'AADSTS7000215',
      fix: hint('AADSTS7000215'),
    });
    expect(token.detail).toMatch(
      /^Entra ID refused the token request: AADSTS7000215: Invalid client secret provided\./,
    );
    expect(JSON.stringify(findings)).not.toContain('the-secret-id-not-its-value');
  });

  it('explains an unknown tenant (AADSTS90002) and names the cloud it asked', async () => {
    const findings = await checkGraph(targetFor({ tenantId: OTHER_TENANT }));

    const token = only(findings, 'token');
    expect(token).toMatchObject({ verdict: 'problem', code: 'AADSTS90002' });
    expect(token.detail).toMatch(new RegExp(`AADSTS90002: Tenant '${OTHER_TENANT}' not found`));
    expect(token.fix).toContain(hint('AADSTS90002'));
    expect(token.fix).toContain(`Doctor asked ${peer.authorityHost}`);
    expect(token.fix).toMatch(/national cloud \(usgov, usgov-dod, china\)/);
  });

  it('fails the token check with the host when Entra ID cannot be reached', async () => {
    const findings = await checkGraph(targetFor({ authorityHost: 'https://127.0.0.1:9' }));

    const token = only(findings, 'token');
    expect(token).toMatchObject({ verdict: 'problem', code: 'ECONNREFUSED' });
    expect(token.detail).toMatch(/^could not reach Entra ID at https:\/\/127\.0\.0\.1:9: /);
    expect(token.fix).toMatch(/reaches 127\.0\.0\.1:9 .*graph\.cloud names the tenant's cloud/);
  });

  it('fails the mailbox check of a sender that is no mailbox in the tenant (ErrorInvalidUser)', async () => {
    const findings = await checkGraph(targetFor({ senders: [BILLING, 'nobody@contoso.com'] }));

    expect(only(findings, 'mailbox', BILLING).verdict).toBe('ok');
    expect(only(findings, 'mailbox', 'nobody@contoso.com')).toEqual({
      area: 'graph',
      subject: 'nobody@contoso.com',
      check: 'mailbox',
      verdict: 'problem',
      detail: `sender: no such mailbox in tenant ${TENANT}`,
      fix: hint('ErrorInvalidUser'),
      code: 'ErrorInvalidUser',
    });
  });

  it('fails the mailbox check of a mailbox an access policy keeps the app from, with the scope as the fix', async () => {
    const findings = await checkGraph(targetFor({ clientId: APPS.scopedToBilling, senders: [BILLING, CRM] }));

    expect(only(findings, 'mailbox', BILLING).verdict).toBe('ok');
    const outside = only(findings, 'mailbox', CRM);
    expect(outside).toMatchObject({ verdict: 'problem', code: 'ErrorAccessDenied' });
    expect(outside.detail).toMatch(
      /^sender: the app may not reach this mailbox: Access to OData is disabled: \[RAOP\] : Blocked by tenant configured AppOnly AccessPolicy settings\./,
    );
    expect(outside.fix).toMatch(
      /^An Application Access Policy or an RBAC for Applications scope excludes this mailbox: add it/,
    );
  });

  it('fails the roles check when bounceReports is set and the token carries no Mail.Read', async () => {
    const findings = await checkGraph(
      targetFor({ clientId: APPS.withoutMailRead, bounceReports: [BILLING], sentItemsLookupSeconds: 0 }),
    );

    const bounce = findings.find((found) => found.check === 'roles' && /bounce/i.test(found.detail));
    expect(bounce).toMatchObject({
      verdict: 'problem',
      detail:
        'bounceReports is set, but the token carries no Mail.Read: the bounce report reader cannot read the Inbox of bounceReports.mailboxes',
    });
    expect(bounce?.fix).toMatch(/application permission Mail\.Read and grant admin consent/);
    // Mail.ReadBasic.All still reads the folder: the mailbox itself is fine.
    expect(only(findings, 'mailbox', BILLING).verdict).toBe('ok');
  });

  it('fails the roles check when lost-answer lookups are on and the token carries no read permission', async () => {
    const findings = await checkGraph(targetFor({ clientId: APPS.sendOnly, sentItemsLookupSeconds: 300 }));

    const lookups = findings.find(
      (found) => found.check === 'roles' && /sentItemsLookupSeconds/.test(found.detail),
    );
    expect(lookups?.verdict).toBe('problem');
    expect(lookups?.fix).toMatch(/Mail\.ReadBasic\.All .*or set graph\.sentItemsLookupSeconds to 0/);
  });

  it('warns once per mailbox, without failing, when the token carries no read permission at all', async () => {
    const findings = await checkGraph(
      targetFor({ clientId: APPS.sendOnly, senders: [BILLING, CRM], sentItemsLookupSeconds: 0 }),
    );

    expect(findings.some((found) => found.verdict === 'problem')).toBe(false);
    for (const mailbox of [BILLING, CRM]) {
      expect(only(findings, 'mailbox', mailbox)).toMatchObject({
        verdict: 'warning',
        detail:
          'sender: cannot check without a read permission (Mail.ReadBasic.All); with Mail.Send alone only a test send proves it',
      });
    }
  });

  it('warns once that the mailboxes of a domain sender cannot be enumerated', async () => {
    const findings = await checkGraph(targetFor({ senders: ['contoso.com', BILLING] }));

    expect(only(findings, 'mailbox', BILLING).verdict).toBe('ok');
    const domain = only(findings, 'mailbox');
    expect(domain).toMatchObject({
      verdict: 'warning',
      detail: "graph.senders lists the domain(s) contoso.com: doctor cannot enumerate a domain's mailboxes",
    });
    expect(domain.fix).toMatch(/listing its address in graph\.senders, or by a test send/);
  });

  it('fails the credential check of the placeholder secret with the GraphCredentialNotSet fix and goes no further', async () => {
    const findings = await checkGraph(targetFor({ credential: { placeholder: 'put the credential here' } }));

    expect(findings).toEqual([
      expect.objectContaining({
        check: 'credential',
        verdict: 'problem',
        code: 'GraphCredentialNotSet',
        fix: hint('GraphCredentialNotSet'),
        detail: expect.stringMatching(
          /^the Graph credential secret still holds the placeholder the stack created \(arn:/,
        ),
      }),
    ]);
  });

  it('fails the credential check of a secret that is no credential with the GraphCredentialInvalid fix', async () => {
    const findings = await checkGraph(targetFor({ credential: { password: 'not-a-graph-credential' } }));

    expect(only(findings, 'credential')).toMatchObject({
      verdict: 'problem',
      code: 'GraphCredentialInvalid',
      fix: hint('GraphCredentialInvalid'),
    });
    expect(JSON.stringify(findings)).not.toContain('not-a-graph-credential');
  });

  it('fails the credential check of a secret that cannot be read with the GraphCredentialUnavailable fix', async () => {
    const target = targetFor();
    const graph = target.settings.graph;
    if (!graph) throw new Error('the target has graph settings');
    const missing = { ...target, settings: { graph: { ...graph, credentialSecretId: 'no-such-secret' } } };

    const findings = await checkGraph(missing);

    expect(findings).toEqual([
      expect.objectContaining({
        check: 'credential',
        verdict: 'problem',
        code: 'GraphCredentialUnavailable',
        fix: hint('GraphCredentialUnavailable'),
        detail: expect.stringMatching(/ResourceNotFoundException.*\(no-such-secret\)$/),
      }),
    ]);
  });

  it('warns that a certificate credential expires within 30 days, with its date, and still gets a token with it', async () => {
    const target = targetFor({
      clientId: APPS.certificate,
      credential: { certificate: certificate.certificatePem, privateKey: certificate.privateKeyPem },
    });
    // A deployment's certificate: local mode's own, made at each start, is never warned about.
    const findings = await checkGraph({ ...target, local: false });
    expect(only(await checkGraph(target), 'credential').verdict).toBe('ok');

    const credential = only(findings, 'credential');
    expect(credential.verdict).toBe('warning');
    expect(credential.detail).toMatch(
      /holds a certificate \(thumbprint [0-9A-F]{40}\) valid until \d{4}-\d\d-\d\dT.* day\(s\) from now$/,
    );
    expect(credential.fix).toMatch(/^Upload a new certificate to the app registration/);
    expect(JSON.stringify(findings)).not.toContain('PRIVATE KEY');
    expect(only(findings, 'token').verdict).toBe('ok');
  });
});
