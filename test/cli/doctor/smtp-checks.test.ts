import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Finding } from '../../../cli/doctor/findings.ts';
import { checkSmtp } from '../../../cli/doctor/smtp-checks.ts';
import type { SmtpSettings } from '../../../lambda/providers/smtp/settings.ts';
import { type SmtpPeer, startSmtpPeer } from '../../../local/peers/smtp-peer.ts';
import {
  type SecretsManagerEmulator,
  startSecretsManagerEmulator,
} from '../../../local/secrets-manager-emulator.ts';
import { doctorTarget } from './doctor-target.ts';

const USER = { username: 'relay@contoso.example', password: 'correct-horse' };

let secretsEmulator: SecretsManagerEmulator;
let secrets: SecretsManagerClient;
const peers: SmtpPeer[] = [];

beforeAll(async () => {
  secretsEmulator = await startSecretsManagerEmulator(0);
  secrets = new SecretsManagerClient({
    region: 'us-east-1',
    endpoint: secretsEmulator.endpoint,
    credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
  });
});
afterAll(async () => {
  secrets.destroy();
  await secretsEmulator.stop();
});
afterEach(async () => {
  await Promise.all(peers.splice(0).map((peer) => peer.close()));
});

async function peer(options: Parameters<typeof startSmtpPeer>[0] = {}): Promise<SmtpPeer> {
  const started = await startSmtpPeer({ greetingDelayMs: 0, ...options });
  peers.push(started);
  return started;
}

function connection(smtpPeer: SmtpPeer, overrides: Partial<SmtpSettings> = {}): SmtpSettings {
  return {
    name: 'smtp',
    senders: ['app@contoso.example'],
    mode: 'connector',
    host: smtpPeer.host,
    port: smtpPeer.port,
    tls: 'starttls',
    requireTls: true,
    auth: 'none',
    maxConnections: 2,
    ...overrides,
  };
}

async function check(smtp: SmtpSettings, smtpPeer: SmtpPeer | undefined, extra = {}): Promise<Finding[]> {
  return [
    ...(await checkSmtp(
      doctorTarget({
        settings: { smtp: [smtp] },
        secrets,
        ...(smtpPeer && { smtpCa: { [smtp.name]: smtpPeer.caCertificate } }),
        ...extra,
      }),
    )),
  ];
}

function byCheck(findings: readonly Finding[], name: string): Finding {
  const found = findings.find((finding) => finding.check === name);
  if (!found) throw new Error(`no ${name} finding in ${JSON.stringify(findings, null, 2)}`);
  return found;
}

describe('the SMTP checks', () => {
  it('pass a connector that takes STARTTLS, the sender and the recipient, and never send DATA', async () => {
    const smtpPeer = await peer({ requireTls: true });
    const findings = await check(connection(smtpPeer), smtpPeer);
    expect(findings.filter((finding) => finding.verdict !== 'ok')).toEqual([]);
    expect(findings.map((finding) => finding.check)).toEqual([
      'dns',
      'tcp',
      'greeting',
      'certificate',
      'auth',
      'envelope app@contoso.example',
    ]);
    expect(byCheck(findings, 'certificate').detail).toMatch(/TLSv1\.[23]/);
    expect(smtpPeer.transcript.map((entry) => entry.stage)).toEqual([
      'connect',
      'starttls',
      'mailFrom',
      'rcptTo',
    ]);
    expect(smtpPeer.received).toEqual([]);
  });

  it('log in with the user and password from Secrets Manager', async () => {
    const smtpPeer = await peer({ authMethods: ['PLAIN', 'LOGIN'], users: [USER] });
    const secretId = secretsEmulator.putSecret('doctor/smtp-good', JSON.stringify(USER));
    const findings = await check(
      connection(smtpPeer, { mode: 'submission', auth: 'login', credentialSecretId: secretId }),
      smtpPeer,
    );
    expect(byCheck(findings, 'credential')).toMatchObject({
      verdict: 'ok',
      detail: `user ${USER.username} from the credential secret`,
    });
    expect(byCheck(findings, 'auth')).toMatchObject({
      verdict: 'ok',
      detail: `logged in as ${USER.username} (PLAIN)`,
    });
    expect(JSON.stringify(findings)).not.toContain(USER.password);
  });

  it('explain a wrong password with the authentication advice, without printing it', async () => {
    const smtpPeer = await peer({ authMethods: ['PLAIN', 'LOGIN'], users: [USER] });
    const secretId = secretsEmulator.putSecret(
      'doctor/smtp-wrong',
      JSON.stringify({ ...USER, password: 'wrong-one' }),
    );
    const findings = await check(
      connection(smtpPeer, { mode: 'submission', auth: 'plain', credentialSecretId: secretId }),
      smtpPeer,
    );
    const auth = byCheck(findings, 'auth');
    expect(auth).toMatchObject({ verdict: 'problem', code: '5.7.3' });
    expect(auth.detail).toContain('535 5.7.3 Authentication unsuccessful');
    expect(auth.fix).toMatch(/refused the credentials/);
    expect(JSON.stringify(findings)).not.toContain('wrong-one');
    expect(findings.some((finding) => finding.check.startsWith('envelope'))).toBe(false);
  });

  it("say that a secret still holding the stack's placeholder is not set", async () => {
    const smtpPeer = await peer({ authMethods: ['PLAIN'], users: [USER] });
    const secretId = secretsEmulator.putSecret(
      'doctor/smtp-placeholder',
      JSON.stringify({ placeholder: 'set me' }),
    );
    const findings = await check(
      connection(smtpPeer, { mode: 'submission', auth: 'plain', credentialSecretId: secretId }),
      smtpPeer,
    );
    expect(byCheck(findings, 'credential')).toMatchObject({
      verdict: 'problem',
      code: 'SmtpCredentialNotSet',
    });
    expect(byCheck(findings, 'credential').fix).toMatch(/\{"username": "\.\.\.", "password": "\.\.\."\}/);
  });

  it('explain 5.7.708 as a connector that does not trust the IP', async () => {
    const smtpPeer = await peer();
    smtpPeer.reject({
      stage: 'rcptTo',
      reply: '550 5.7.708 Service unavailable. Access denied, traffic not accepted from this IP.',
      times: 1,
    });
    const findings = await check(connection(smtpPeer), smtpPeer);
    const rcpt = byCheck(findings, 'rcpt to app@contoso.example');
    expect(rcpt).toMatchObject({ verdict: 'problem', code: '5.7.708' });
    expect(rcpt.fix).toMatch(/inbound connector lists the relay's egress IPs/);
  });

  it("take a 5.7.708 seen from a machine that is not the relay's egress IP as a warning, and say why", async () => {
    const smtpPeer = await peer();
    smtpPeer.reject({
      stage: 'rcptTo',
      reply: '550 5.7.708 Service unavailable. Access denied, traffic not accepted from this IP.',
      times: 1,
    });
    const findings = await check(connection(smtpPeer), smtpPeer, {
      local: false,
      egressIps: ['203.0.113.7'],
    });
    const rcpt = byCheck(findings, 'rcpt to app@contoso.example');
    expect(rcpt.verdict).toBe('warning');
    expect(rcpt.detail).toMatch(
      /refuses this machine \(127\.0\.0\.1\), which is not the relay's egress IP \(203\.0\.113\.7\)/,
    );
    expect(byCheck(findings, 'egress ip')).toMatchObject({ verdict: 'warning' });
  });

  it('refuse a server without STARTTLS when the connection requires TLS', async () => {
    const smtpPeer = await peer({ tls: 'none' });
    const findings = await check(connection(smtpPeer), smtpPeer);
    expect(byCheck(findings, 'starttls')).toMatchObject({ verdict: 'problem', code: 'TlsFailed' });
    expect(byCheck(findings, 'starttls').detail).toMatch(
      /does not offer STARTTLS and the connection requires TLS/,
    );
  });

  it('report a certificate the relay would not trust', async () => {
    const smtpPeer = await peer();
    const findings = await check(connection(smtpPeer), undefined);
    const certificate = byCheck(findings, 'certificate');
    expect(certificate).toMatchObject({ verdict: 'problem', code: 'TlsFailed' });
    expect(certificate.detail).toMatch(
      /not accepted \((DEPTH_ZERO_SELF_SIGNED_CERT|SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_VERIFY_LEAF_SIGNATURE)/,
    );
  });

  it('explain Basic auth turned off in Exchange Online (5.7.30)', async () => {
    const smtpPeer = await peer({ authMethods: ['PLAIN'], users: [USER] });
    smtpPeer.reject({
      stage: 'auth',
      reply: '550 5.7.30 Basic authentication is not supported for Client Submission.',
    });
    const secretId = secretsEmulator.putSecret('doctor/smtp-basic-off', JSON.stringify(USER));
    const findings = await check(
      connection(smtpPeer, { mode: 'submission', auth: 'plain', credentialSecretId: secretId }),
      smtpPeer,
    );
    expect(byCheck(findings, 'auth')).toMatchObject({ verdict: 'problem', code: '5.7.30' });
    expect(byCheck(findings, 'auth').fix).toMatch(/xoauth2/);
  });

  it('say that nothing listens on the port', async () => {
    const closed = await peer();
    const port = closed.port;
    await closed.close();
    peers.splice(peers.indexOf(closed), 1);
    const findings = await check(connection(closed, { port }), undefined);
    expect(byCheck(findings, 'tcp')).toMatchObject({ verdict: 'problem', code: 'ECONNREFUSED' });
    expect(findings.map((finding) => finding.check)).toEqual(['dns', 'tcp']);
  });
});
