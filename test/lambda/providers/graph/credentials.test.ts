import { createPrivateKey } from 'node:crypto';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { beforeAll, describe, expect, it } from 'vitest';
import { RelayFailure } from '../../../../lambda/core/failures.ts';
import {
  cachedCredential,
  graphSecretReader,
  parseGraphCredential,
} from '../../../../lambda/providers/graph/credentials.ts';
import { createClientCertificate, type GeneratedCertificate } from '../../../../local/peers/certificates.ts';
import { startSecretsManagerEmulator } from '../../../../local/secrets-manager-emulator.ts';

function failureOf(action: () => unknown): RelayFailure {
  try {
    action();
  } catch (error) {
    expect(error).toBeInstanceOf(RelayFailure);
    return error as RelayFailure;
  }
  throw new Error('expected a RelayFailure');
}

describe('parseGraphCredential', () => {
  let app: GeneratedCertificate;
  let other: GeneratedCertificate;

  beforeAll(async () => {
    [app, other] = await Promise.all([createClientCertificate(), createClientCertificate()]);
  });

  it('reads a certificate credential and computes its SHA-256 thumbprint', () => {
    const credential = parseGraphCredential(
      JSON.stringify({ certificate: app.certificatePem, privateKey: app.privateKeyPem }),
    );
    expect(credential).toMatchObject({ kind: 'certificate', thumbprintSha256: app.thumbprintSha256 });
  });

  it('accepts a PKCS#1 ("BEGIN RSA PRIVATE KEY") key, as openssl often writes it', () => {
    const pkcs1 = createPrivateKey(app.privateKeyPem).export({ type: 'pkcs1', format: 'pem' }).toString();
    expect(pkcs1).toContain('BEGIN RSA PRIVATE KEY');
    const credential = parseGraphCredential(
      JSON.stringify({ certificate: app.certificatePem, privateKey: pkcs1 }),
    );
    expect(credential.kind).toBe('certificate');
    expect(credential.kind === 'certificate' && credential.privateKey).toContain('BEGIN PRIVATE KEY');
  });

  it('reads a client secret credential', () => {
    expect(parseGraphCredential(JSON.stringify({ clientSecret: 'abc~123' }))).toEqual({
      kind: 'secret',
      clientSecret: 'abc~123',
    });
  });

  it('refuses a key that does not belong to the certificate', () => {
    const failure = failureOf(() =>
      parseGraphCredential(
        JSON.stringify({ certificate: app.certificatePem, privateKey: other.privateKeyPem }),
      ),
    );
    expect(failure).toMatchObject({ failureClass: 'provider', code: 'GraphCredentialInvalid' });
    expect(failure.reason).toContain('privateKey: does not belong to the certificate');
  });

  it('refuses an expired certificate, saying when it expired', () => {
    const later = new Date(Date.now() + 400 * 24 * 3600 * 1000);
    const failure = failureOf(() =>
      parseGraphCredential(
        JSON.stringify({ certificate: app.certificatePem, privateKey: app.privateKeyPem }),
        later,
      ),
    );
    expect(failure.reason).toMatch(/certificate: expired on .+; upload a new one to the app registration/);
  });

  it('reports every problem of a certificate credential at once', () => {
    const failure = failureOf(() =>
      parseGraphCredential(JSON.stringify({ certificate: 'not a pem', privateKey: 'not a key either' })),
    );
    expect(failure.reason).toBe(
      'the Graph credential secret is not usable: certificate: not a PEM X.509 certificate; privateKey: not a PEM private key (an encrypted key is not supported)',
    );
  });

  it('names the missing half of a certificate credential', () => {
    expect(
      failureOf(() => parseGraphCredential(JSON.stringify({ certificate: app.certificatePem }))).reason,
    ).toContain('privateKey: required with certificate');
  });

  it('reports the placeholder the stack creates as "not set", with where to put it', () => {
    const failure = failureOf(() =>
      parseGraphCredential(JSON.stringify({ placeholder: 'Replace this value' })),
    );
    expect(failure).toMatchObject({
      failureClass: 'provider',
      code: 'GraphCredentialNotSet',
      provider: 'graph',
    });
    expect(failure.hint).toMatch(/GraphCredentialSecretArn/);
  });

  it.each([
    ['not JSON', 'clientSecret=abc', 'not valid JSON'],
    ['a JSON string', '"abc"', 'not a JSON object'],
    ['an unknown field', '{"client_secret":"abc"}', 'unknown field(s) client_secret'],
    ['an empty secret', '{"clientSecret":"  "}', 'clientSecret: must be a non-empty string'],
    ['nothing useful', '{}', 'set certificate + privateKey (PEM), or clientSecret'],
  ])('refuses %s without quoting the value', (_, secretString, problem) => {
    const failure = failureOf(() => parseGraphCredential(secretString));
    expect(failure.code).toBe('GraphCredentialInvalid');
    expect(failure.reason).toContain(problem);
    expect(failure.reason).not.toContain('abc');
  });
});

describe('cachedCredential with Secrets Manager', () => {
  it('reads the secret once, again only after a failure or an invalidation', async () => {
    const emulator = await startSecretsManagerEmulator(0);
    const client = new SecretsManagerClient({
      region: 'us-east-1',
      endpoint: emulator.endpoint,
      credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
    });
    try {
      const source = cachedCredential(graphSecretReader(client), 'relay/graph');
      const missing = await source.get().catch((error: unknown) => error as RelayFailure);
      expect(missing).toMatchObject({ failureClass: 'provider', code: 'GraphCredentialUnavailable' });
      expect((missing as RelayFailure).reason).toContain('ResourceNotFoundException');

      emulator.putSecret('relay/graph', JSON.stringify({ clientSecret: 's1' }));
      await Promise.all([source.get(), source.get(), source.get()]);
      expect(emulator.reads.get('relay/graph')).toBe(1);

      emulator.putSecret('relay/graph', JSON.stringify({ clientSecret: 's2' }));
      expect(await source.get()).toEqual({ kind: 'secret', clientSecret: 's1' });
      source.invalidate();
      expect(await source.get()).toEqual({ kind: 'secret', clientSecret: 's2' });
      expect(emulator.reads.get('relay/graph')).toBe(2);
    } finally {
      client.destroy();
      await emulator.stop();
    }
  });

  it('treats an unreachable Secrets Manager as transient', async () => {
    const client = new SecretsManagerClient({
      region: 'us-east-1',
      endpoint: 'http://127.0.0.1:9',
      credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
      maxAttempts: 1,
    });
    const failure = await cachedCredential(graphSecretReader(client), 'relay/graph')
      .get()
      .catch((error: unknown) => error as RelayFailure);
    expect(failure).toMatchObject({ failureClass: 'transient', provider: 'graph' });
    client.destroy();
  });
});
