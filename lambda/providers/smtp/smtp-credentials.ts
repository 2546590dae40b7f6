import type { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import {
  type CachedSecret,
  cachedSecret,
  credentialFailure,
  type SecretOwner,
  secretsManagerReader,
} from '../../core/secrets.ts';
import { SMTP_PROVIDER } from './smtp-fault.ts';
import type { SmtpCredentials } from './smtp-provider.ts';

const SMTP_SECRET: SecretOwner = { provider: SMTP_PROVIDER, label: 'Smtp' };

/** `{"username": "…", "password": "…"}`; problems name the field, never its value. */
export function parseSmtpCredentials(secretString: string): SmtpCredentials {
  let value: unknown;
  try {
    value = JSON.parse(secretString);
  } catch {
    throw credentialFailure(SMTP_SECRET, 'Invalid', 'the SMTP credential secret is not valid JSON');
  }
  const fields = (typeof value === 'object' && value !== null ? value : {}) as Record<string, unknown>;
  if ('placeholder' in fields) {
    throw credentialFailure(
      SMTP_SECRET,
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
      SMTP_SECRET,
      'Invalid',
      `the SMTP credential secret is not usable: ${problems.join('; ')}`,
    );
  }
  return { username: fields.username as string, password: fields.password as string };
}

/** The SMTP user and password from Secrets Manager, read once per cold start. */
export function cachedSmtpCredentials(
  client: SecretsManagerClient,
  secretId: string,
): CachedSecret<SmtpCredentials> {
  return cachedSecret(secretsManagerReader(client, SMTP_SECRET), secretId, parseSmtpCredentials);
}
