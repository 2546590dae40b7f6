import { GetSecretValueCommand, type SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { type FailureTable, NETWORK_ERROR_CODES, RelayFailure } from './failures.ts';
import { truncate } from './text.ts';

/** Whose credential a secret holds: failures carry this provider and `<label>Credential…` codes. */
export interface SecretOwner {
  readonly provider: string;
  /** "Graph", "Smtp": codes become GraphCredentialUnavailable, SmtpCredentialInvalid … */
  readonly label: string;
  /** The owner's failure table, whose rows give the `<label>Credential…` codes their class and hint. */
  readonly failures: FailureTable;
}

/** Reads a secret's string value. */
export type SecretReader = (secretId: string) => Promise<string>;

/** A provider-level failure about a credential, through the failure table so the hint comes with it. */
export function credentialFailure(
  owner: SecretOwner,
  problem: 'NotSet' | 'Invalid',
  message: string,
): RelayFailure {
  return owner.failures.classify({
    provider: owner.provider,
    code: `${owner.label}Credential${problem}`,
    message,
    fallbackClass: 'provider',
  });
}

export function secretsManagerReader(client: SecretsManagerClient, owner: SecretOwner): SecretReader {
  return async (secretId) => {
    try {
      const output = await client.send(new GetSecretValueCommand({ SecretId: secretId }));
      if (output.SecretString === undefined) {
        throw credentialFailure(
          owner,
          'Invalid',
          'the secret holds binary data; store the JSON as a secret string',
        );
      }
      return output.SecretString;
    } catch (error) {
      if (error instanceof RelayFailure) throw error;
      throw secretReadFailure(error, owner);
    }
  };
}

/** Network trouble and throttling are retried; anything else (not found, no permission, KMS) needs a human. */
function secretReadFailure(error: unknown, owner: SecretOwner): RelayFailure {
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
  return owner.failures.classify(
    {
      provider: owner.provider,
      code: transient ? (details.code ?? name) : `${owner.label}CredentialUnavailable`,
      message: `could not read the ${owner.label} credential secret: ${name}: ${truncate(details.message ?? String(error), 300)}`,
      fallbackClass: transient ? 'transient' : 'provider',
    },
    error,
  );
}

/** A secret's parsed value, read once and kept; `invalidate` makes the next `get` read it again. */
export interface CachedSecret<T> {
  get(): Promise<T>;
  invalidate(): void;
}

/**
 * Reads and parses a secret once per cold start. A failed read or parse is not kept, so the next
 * record tries again (a secret filled in after deploy is picked up without a redeploy).
 */
export function cachedSecret<T>(
  read: SecretReader,
  secretId: string,
  parse: (secretString: string) => T,
): CachedSecret<T> {
  let loading: Promise<T> | undefined;
  return {
    get() {
      loading ??= read(secretId)
        .then(parse)
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
