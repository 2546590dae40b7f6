import type { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import {
  type CachedSecret,
  cachedSecret,
  credentialFailure,
  type SecretOwner,
  secretsManagerReader,
} from '../../core/secrets.ts';
import { SMTP_FAILURES } from './failures.ts';
import { SMTP_PROVIDER } from './smtp-fault.ts';
import type { SmtpCredentials } from './smtp-provider.ts';

/** The owner of a connection's secret: its failures name the connection's provider (`smtp:billing-ovh`). */
function smtpSecretOwner(provider: string): SecretOwner {
  return { provider, label: 'Smtp', failures: SMTP_FAILURES };
}

/**
 * `{"username": "…", "password": "…"}`; problems name the field, never its value.
 *
 * @param provider - the connection whose secret it is (its failures name it)
 */
export function parseSmtpCredentials(secretString: string, provider = SMTP_PROVIDER): SmtpCredentials {
  const owner = smtpSecretOwner(provider);
  let value: unknown;
  try {
    value = JSON.parse(secretString);
  } catch {
    throw credentialFailure(owner, 'Invalid', 'the SMTP credential secret is not valid JSON');
  }
  const fields = (typeof value === 'object' && value !== null ? value : {}) as Record<string, unknown>;
  if ('placeholder' in fields) {
    throw credentialFailure(
      owner,
      'NotSet',
      'the SMTP credential secret still holds the placeholder the stack created',
    );
  }
  const problems = ['username', 'password']
    .filter((field) => typeof fields[field] !== 'string' || (fields[field] as string).length === 0)
    .map((field) => `${field}: required, a non-empty string`);
  const unknown = Object.keys(fields).filter((key) => key !== 'username' && key !== 'password');
  if (unknown.length > 0) problems.push(`unknown field(s) ${unknown.join(', ')}`);
  if (problems.length > 0) {
    throw credentialFailure(
      owner,
      'Invalid',
      `the SMTP credential secret is not usable: ${problems.join('; ')}`,
    );
  }
  return { username: fields.username as string, password: fields.password as string };
}

/** One SMTP connection's user and password from Secrets Manager, read once per cold start. */
export function cachedSmtpCredentials(
  client: SecretsManagerClient,
  secretId: string,
  provider = SMTP_PROVIDER,
): CachedSecret<SmtpCredentials> {
  return cachedSecret(secretsManagerReader(client, smtpSecretOwner(provider)), secretId, (secretString) =>
    parseSmtpCredentials(secretString, provider),
  );
}
