import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Finding } from '../../cli/doctor/findings.ts';
import { writeLocalEndpoints } from '../../cli/local-endpoints.ts';
import { type LocalRelay, startLocalRelay } from '../../local/local-relay.ts';
import { runBin } from '../helpers/cli.ts';
import { isolatedLocalMode } from '../local/isolated-local-mode.ts';

const _run = promisify(execFile);
const _bin = path.resolve('cli/mail-relay.js');

function doctor(stateDir: string, ...args: string[]) {
  return runBin(process.cwd(), ['doctor', '--state-dir', stateDir, ...args]);
}

interface DoctorJson {
  readonly exitCode: number;
  readonly counts: { readonly ok: number; readonly warning: number; readonly problem: number };
  readonly findings: readonly Finding[];
}

/** Graph through the Graph peer, an Exchange connector (an SMTP capture stands in), and SES. */
const CONFIG = {
  graph: {
    tenantId: 'contoso.onmicrosoft.com',
    clientId: '11111111-2222-4333-8444-555555555555',
    senders: ['soporte@contoso.example'],
  },
  smtp: { senders: ['scanner@fabrikam.example'], mode: 'connector' },
  egress: {},
  ses: { identities: ['example.com'] },
};

describe('mail-relay doctor against local mode', () => {
  const workDir = mkdtempSync(path.join(tmpdir(), 'mail-relay-doctor-'));
  const configPath = path.join(workDir, 'mail-relay.config.json');
  let relay: LocalRelay;

  beforeAll(async () => {
    writeFileSync(configPath, JSON.stringify(CONFIG));
    relay = await startLocalRelay({
      ...isolatedLocalMode(workDir),
      configPath,
      graphPeer: true,
      logLevel: 'ERROR',
    });
    await writeLocalEndpoints(relay);
  });
  afterAll(async () => {
    await relay?.stop();
    rmSync(workDir, { recursive: true, force: true });
  });

  it('passes every check of a correct setup, with no flags, and exits 0', async () => {
    const result = await doctor(relay.state.directory);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toContain(`mail-relay doctor: local mode (${configPath}`);
    for (const heading of ['graph · graph', 'smtp · smtp', 'ses · account', 'dns · contoso.example']) {
      expect(result.stdout).toContain(heading);
    }
    expect(result.stdout).not.toContain('✗');
    expect(result.stdout).toMatch(/\d+ ok, \d+ warning\(s\), 0 problem\(s\)\./);
  });

  it('names a connector refusing the IP, with its fix, and exits 1 (--json for scripts)', async () => {
    const capture = relay.smtpCapture?.peer;
    if (!capture) throw new Error('local mode started no SMTP capture');
    capture.reject({
      stage: 'rcptTo',
      reply: '550 5.7.708 Service unavailable. Access denied, traffic not accepted from this IP.',
      times: 1,
    });
    const result = await doctor(relay.state.directory, '--json', '--only', 'smtp');
    expect(result.code).toBe(1);
    const report = JSON.parse(result.stdout) as DoctorJson;
    expect(report.exitCode).toBe(1);
    expect(new Set(report.findings.map((finding) => finding.area))).toEqual(new Set(['smtp']));
    const refused = report.findings.filter((finding) => finding.verdict === 'problem');
    expect(refused).toHaveLength(1);
    expect(refused[0]).toMatchObject({ check: 'rcpt to scanner@fabrikam.example', code: '5.7.708' });
    expect(refused[0]?.fix).toMatch(/inbound connector lists the relay's egress IPs/);
  });

  it('exits 2 with the reason when it cannot run', async () => {
    const result = await doctor(relay.state.directory, '--only', 'graph,carrier-pigeon');
    expect(result.code).toBe(2);
    expect(result.stderr).toContain(
      '--only takes graph, smtp, ses, dns (comma-separated), not carrier-pigeon',
    );
    const missing = await doctor(relay.state.directory, '--config', path.join(workDir, 'absent.json'));
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/mail-relay doctor could not run: .*absent\.json/);
    // The deployed relay, from a shell with no AWS credentials at all.
    const deployed = await doctor(relay.state.directory, '--config', configPath, '--region', 'eu-west-1');
    expect(deployed.code).toBe(2);
    expect(deployed.stderr).toMatch(
      /could not run: it reads the provider secrets and SES with your AWS credentials, and found none/,
    );
  });
});

describe('mail-relay doctor against local mode without a Graph credential', () => {
  const workDir = mkdtempSync(path.join(tmpdir(), 'mail-relay-doctor-nocred-'));
  const configPath = path.join(workDir, 'mail-relay.config.json');
  let relay: LocalRelay;

  beforeAll(async () => {
    writeFileSync(configPath, JSON.stringify({ graph: CONFIG.graph }));
    relay = await startLocalRelay({ ...isolatedLocalMode(workDir), configPath, logLevel: 'ERROR' });
    await writeLocalEndpoints(relay);
  });
  afterAll(async () => {
    await relay?.stop();
    rmSync(workDir, { recursive: true, force: true });
  });

  it('says the credential secret still holds the placeholder and how to fill it', async () => {
    const result = await doctor(relay.state.directory, '--only', 'graph');
    expect(result.code).toBe(1);
    expect(result.stdout).toMatch(
      /✗ credential: .*GraphCredentialNotSet|✗ credential: .*\[GraphCredentialNotSet\]/,
    );
    expect(result.stdout).toMatch(/fix: .*secret/i);
  });
});
