import { createPrivateKey, X509Certificate } from 'node:crypto';
import type { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import type { RelayFailure } from '../../core/failures.ts';
import {
  type CachedSecret,
  cachedSecret,
  credentialFailure,
  type SecretOwner,
  type SecretReader,
  secretsManagerReader,
} from '../../core/secrets.ts';
import { GRAPH_FAILURES } from './failures.ts';

export const GRAPH_PROVIDER = 'graph';
const GRAPH_SECRET: SecretOwner = { provider: GRAPH_PROVIDER, label: 'Graph', failures: GRAPH_FAILURES };

/**
 * The app registration's credential, as kept in the Secrets Manager secret (JSON):
 * `{"certificate": "-----BEGIN CERTIFICATE-----…", "privateKey": "-----BEGIN PRIVATE KEY-----…"}`
 * (preferred: Entra ID never sees the key) or `{"clientSecret": "…"}`.
 */
export type GraphCredential =
  | { readonly kind: 'certificate'; readonly privateKey: string; readonly thumbprintSha256: string }
  | { readonly kind: 'secret'; readonly clientSecret: string };

/**
 * Parses the secret. Problems name the field and never quote its value: the value is a credential.
 * Throws a provider-level RelayFailure (GraphCredentialNotSet / GraphCredentialInvalid).
 */
export function parseGraphCredential(secretString: string, now = new Date()): GraphCredential {
  const invalid = (problems: string[]) =>
    credentialFailure(
      GRAPH_SECRET,
      'Invalid',
      `the Graph credential secret is not usable: ${problems.join('; ')}`,
    );
  let value: unknown;
  try {
    value = JSON.parse(secretString);
  } catch {
    throw invalid(['not valid JSON']);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw invalid(['not a JSON object']);
  const fields = value as Record<string, unknown>;
  if ('placeholder' in fields) {
    throw credentialFailure(
      GRAPH_SECRET,
      'NotSet',
      'the Graph credential secret still holds the placeholder the stack created',
    );
  }
  const unknown = Object.keys(fields).filter(
    (key) => !['certificate', 'privateKey', 'clientSecret'].includes(key),
  );
  if (unknown.length > 0) {
    throw invalid([
      `unknown field(s) ${unknown.join(', ')}: expected certificate + privateKey, or clientSecret`,
    ]);
  }
  if (fields.certificate !== undefined || fields.privateKey !== undefined) {
    return certificateCredential(fields, now, invalid);
  }
  if (typeof fields.clientSecret === 'string' && fields.clientSecret.trim() !== '') {
    return { kind: 'secret', clientSecret: fields.clientSecret };
  }
  throw invalid([
    fields.clientSecret === undefined
      ? 'set certificate + privateKey (PEM), or clientSecret'
      : 'clientSecret: must be a non-empty string',
  ]);
}

function certificateCredential(
  fields: Record<string, unknown>,
  now: Date,
  invalid: (problems: string[]) => RelayFailure,
): GraphCredential {
  const problems: string[] = [];
  let certificate: X509Certificate | undefined;
  if (typeof fields.certificate !== 'string') {
    problems.push(
      'certificate: required with privateKey, the PEM certificate uploaded to the app registration',
    );
  } else {
    try {
      certificate = new X509Certificate(fields.certificate);
    } catch {
      problems.push('certificate: not a PEM X.509 certificate');
    }
  }
  let privateKey: string | undefined;
  if (typeof fields.privateKey !== 'string') {
    problems.push('privateKey: required with certificate, the PEM private key of that certificate');
  } else {
    try {
      // Normalised to PKCS#8, the form MSAL signs with, whatever PEM flavour was stored.
      privateKey = createPrivateKey(fields.privateKey).export({ type: 'pkcs8', format: 'pem' }).toString();
    } catch {
      problems.push('privateKey: not a PEM private key (an encrypted key is not supported)');
    }
  }
  if (certificate && privateKey) {
    if (!certificate.checkPrivateKey(createPrivateKey(privateKey))) {
      problems.push('privateKey: does not belong to the certificate');
    }
    if (new Date(certificate.validTo) < now) {
      problems.push(
        `certificate: expired on ${certificate.validTo}; upload a new one to the app registration`,
      );
    }
  }
  if (problems.length > 0 || !certificate || !privateKey) throw invalid(problems);
  return {
    kind: 'certificate',
    privateKey,
    thumbprintSha256: certificate.fingerprint256.replaceAll(':', '').toLowerCase(),
  };
}

/** Reads the Graph credential secret (failures are the Graph provider's). */
export function graphSecretReader(client: SecretsManagerClient): SecretReader {
  return secretsManagerReader(client, GRAPH_SECRET);
}

/** The credential, read once and kept; `invalidate` makes the next `get` read the secret again. */
export type CredentialSource = CachedSecret<GraphCredential>;

/**
 * Reads and parses the credential once per cold start; the token source invalidates it when Entra
 * ID refuses it, so a rotated credential is picked up too.
 */
export function cachedCredential(read: SecretReader, secretId: string): CredentialSource {
  return cachedSecret(read, secretId, (secretString) => parseGraphCredential(secretString));
}
