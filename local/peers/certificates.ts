import { X509Certificate } from 'node:crypto';
import { generate } from 'selfsigned';

export interface GeneratedCertificate {
  certificatePem: string;
  privateKeyPem: string;
  /** hex SHA-256 of the DER certificate, lowercase */
  thumbprintSha256: string;
}

const DAY_MS = 24 * 60 * 60 * 1000;

/** Self-signed TLS server certificate for 127.0.0.1 / localhost (SAN IP 127.0.0.1, DNS localhost), RSA 2048, valid 1 day+. */
export async function createServerCertificate(): Promise<GeneratedCertificate> {
  return selfSigned('localhost', [
    { name: 'basicConstraints', cA: false, critical: true },
    { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
    { name: 'extKeyUsage', serverAuth: true },
    {
      name: 'subjectAltName',
      altNames: [
        { type: 7, ip: '127.0.0.1' },
        { type: 2, value: 'localhost' },
      ],
    },
  ]);
}

/** Self-signed certificate an app registration would have uploaded (CN=mail-relay-test-app), RSA 2048. */
export async function createClientCertificate(): Promise<GeneratedCertificate> {
  return selfSigned('mail-relay-test-app', [
    { name: 'basicConstraints', cA: false, critical: true },
    { name: 'keyUsage', digitalSignature: true, critical: true },
    { name: 'extKeyUsage', clientAuth: true },
  ]);
}

type Extensions = NonNullable<NonNullable<Parameters<typeof generate>[1]>['extensions']>;

async function selfSigned(commonName: string, extensions: Extensions): Promise<GeneratedCertificate> {
  const now = Date.now();
  const generated = await generate([{ name: 'commonName', value: commonName }], {
    keyType: 'rsa',
    keySize: 2048,
    algorithm: 'sha256',
    // A few minutes back, so a clock a little behind still accepts it; two days ahead.
    notBeforeDate: new Date(now - 5 * 60 * 1000),
    notAfterDate: new Date(now + 2 * DAY_MS),
    extensions,
  });
  return {
    certificatePem: generated.cert,
    privateKeyPem: generated.private,
    thumbprintSha256: new X509Certificate(generated.cert).fingerprint256.replaceAll(':', '').toLowerCase(),
  };
}
