import { createPrivateKey, X509Certificate } from 'node:crypto';
import { GetSecretValueCommand, type SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { classifyFault, NETWORK_ERROR_CODES, RelayFailure } from '../../core/failures.ts';
import { truncate } from '../../core/text.ts';

export const GRAPH_PROVIDER = 'graph';

/**
 * The app registration's credential, as kept in the Secrets Manager secret (JSON):
 * `{"certificate": "-----BEGIN CERTIFICATE-----…", "privateKey": "-----BEGIN PRIVATE KEY-----…"}`
 * (preferred: Entra ID never sees the key) or `{"clientSecret": "…"}`.
 */
export type GraphCredential =
  | { readonly kind: 'certificate'; readonly privateKey: string; readonly thumbprintSha256: string }
  | { readonly kind: 'secret'; readonly clientSecret: string };

/** Reads a secret's string value. */
export type SecretReader = (secretId: string) => Promise<string>;

/**
 * Parses the secret. Problems name the field and never quote its value: the value is a credential.
 * Throws a provider-level RelayFailure (GraphCredentialNotSet / GraphCredentialInvalid).
 */
export function parseGraphCredential(secretString: string, now = new Date()): GraphCredential {
  const invalid = (problems: string[]) =>
    credentialFailure(
      'GraphCredentialInvalid',
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
      'GraphCredentialNotSet',
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

/** Through the failure table, so the hint comes with it. */
function credentialFailure(code: string, message: string): RelayFailure {
  return classifyFault({ provider: GRAPH_PROVIDER, code, message, fallbackClass: 'provider' });
}

export function secretsManagerReader(client: SecretsManagerClient): SecretReader {
  return async (secretId) => {
    try {
      const output = await client.send(new GetSecretValueCommand({ SecretId: secretId }));
      if (output.SecretString === undefined) {
        throw credentialFailure(
          'GraphCredentialInvalid',
          'the Graph credential secret holds binary data; store the JSON as a secret string',
        );
      }
      return output.SecretString;
    } catch (error) {
      if (error instanceof RelayFailure) throw error;
      throw secretReadFailure(error);
    }
  };
}

/** Network trouble and throttling are retried; anything else (not found, no permission, KMS) needs a human. */
function secretReadFailure(error: unknown): RelayFailure {
  const details = (error ?? {}) as {
    name?: string;
    code?: string;
    message?: string;
    $metadata?: { httpStatusCode?: number };
  };
  const name = details.name ?? 'Error';
  const status = details.$metadata?.httpStatusCode;
  const transient =
    NETWORK_ERROR_CODES.has(details.code ?? name) ||
    name === 'ThrottlingException' ||
    name === 'InternalServiceError' ||
    (status !== undefined && status >= 500);
  return classifyFault(
    {
      provider: GRAPH_PROVIDER,
      code: transient ? (details.code ?? name) : 'GraphCredentialUnavailable',
      message: `could not read the Graph credential secret: ${name}: ${truncate(details.message ?? String(error), 300)}`,
      fallbackClass: transient ? 'transient' : 'provider',
    },
    error,
  );
}

/** The credential, read once and kept; `invalidate` makes the next `get` read the secret again. */
export interface CredentialSource {
  get(): Promise<GraphCredential>;
  invalidate(): void;
}

/**
 * Reads and parses the credential once per cold start. A failed read is not kept, so the next
 * record tries again (a secret filled in after deploy is picked up without a redeploy), and the
 * token source invalidates it when Entra ID refuses it (a rotated credential is picked up too).
 */
export function cachedCredential(read: SecretReader, secretId: string): CredentialSource {
  let loading: Promise<GraphCredential> | undefined;
  return {
    get() {
      loading ??= read(secretId)
        .then((secretString) => parseGraphCredential(secretString))
        .catch((error: unknown) => {
          loading = undefined;
          throw error;
        });
      return loading;
    },
    invalidate() {
      loading = undefined;
    },
  };
}
