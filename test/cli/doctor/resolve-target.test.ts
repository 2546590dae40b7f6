import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  DoctorCannotRun,
  readStackOutputs,
  resolveDoctorTarget,
} from '../../../cli/doctor/resolve-target.ts';

const workDir = mkdtempSync(path.join(tmpdir(), 'mail-relay-doctor-target-'));
afterAll(() => rmSync(workDir, { recursive: true, force: true }));

function file(name: string, content: unknown): string {
  const target = path.join(workDir, name);
  writeFileSync(target, JSON.stringify(content));
  return target;
}

const GRAPH = {
  tenantId: 'contoso.onmicrosoft.com',
  clientId: '11111111-2222-4333-8444-555555555555',
  senders: ['soporte@contoso.com'],
};
const GRAPH_SECRET = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:MailRelayGraphCredential-AbCdEf';

describe("doctor's view of a deployed relay", () => {
  it('takes the secret the stack created, its egress IPs and region from the stack outputs', () => {
    const configPath = file('graph.json', {
      graph: GRAPH,
      smtp: { senders: ['scanner@contoso.com'], mode: 'connector' },
      egress: {},
    });
    const outputsPath = file('outputs.json', {
      MailRelay: { GraphCredentialSecretArn: GRAPH_SECRET, EgressIps: '203.0.113.7,203.0.113.8' },
    });
    const resolved = resolveDoctorTarget({ configPath, outputsPath });
    try {
      expect(resolved.findings).toEqual([]);
      expect(resolved.target).toMatchObject({
        local: false,
        egressIps: ['203.0.113.7', '203.0.113.8'],
        description: `${configPath} in eu-west-1 with the outputs in ${outputsPath}`,
      });
      expect(resolved.target.settings.graph?.credentialSecretId).toBe(GRAPH_SECRET);
      expect(resolved.target.settings.smtp?.[0]).toMatchObject({
        host: 'contoso-com.mail.protection.outlook.com',
        port: 25,
      });
    } finally {
      resolved.close();
    }
  });

  it('says Graph needs the outputs when the stack created its secret, and checks the rest', () => {
    const configPath = file('graph-only.json', { graph: GRAPH, ses: { identities: ['example.com'] } });
    const resolved = resolveDoctorTarget({ configPath, region: 'eu-west-1' });
    try {
      expect(resolved.findings).toEqual([
        expect.objectContaining({ area: 'graph', check: 'credential', verdict: 'problem' }),
      ]);
      expect(resolved.findings[0]?.fix).toMatch(/--outputs cdk-outputs\.json/);
      expect(resolved.target.settings.graph).toBeUndefined();
      expect(resolved.target.settings.ses?.identities).toEqual(['example.com']);
    } finally {
      resolved.close();
    }
  });

  it('cannot run without a region, and says where to give one', () => {
    const configPath = file('ses.json', { ses: { identities: ['example.com'] } });
    const saved = { AWS_REGION: process.env.AWS_REGION, AWS_DEFAULT_REGION: process.env.AWS_DEFAULT_REGION };
    delete process.env.AWS_REGION;
    delete process.env.AWS_DEFAULT_REGION;
    try {
      expect(() => resolveDoctorTarget({ configPath })).toThrow(DoctorCannotRun);
      expect(() => resolveDoctorTarget({ configPath })).toThrow(/pass --region/);
    } finally {
      for (const [name, value] of Object.entries(saved)) if (value !== undefined) process.env[name] = value;
    }
  });

  it('asks which stack when the outputs file holds several', () => {
    const outputsPath = file('two.json', { A: { X: '1' }, B: { X: '2' } });
    expect(() => readStackOutputs(outputsPath, undefined)).toThrow(
      /holds the stacks A, B: name one with --stack/,
    );
    expect(readStackOutputs(outputsPath, 'B')).toEqual({ X: '2' });
    expect(() => readStackOutputs(outputsPath, 'C')).toThrow(/has no stack C \(it has A, B\)/);
  });
});
