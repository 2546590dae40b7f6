import { describe, expect, it } from 'vitest';
import { RelayFailure } from '../../../../lambda/core/failures.ts';
import { parseSmtpCredentials } from '../../../../lambda/providers/smtp/smtp-credentials.ts';

function failureOf(secretString: string, provider?: string): RelayFailure {
  try {
    parseSmtpCredentials(secretString, provider);
  } catch (error) {
    expect(error).toBeInstanceOf(RelayFailure);
    return error as RelayFailure;
  }
  throw new Error('expected a RelayFailure');
}

describe('parseSmtpCredentials', () => {
  it('reads a username and password', () => {
    expect(parseSmtpCredentials('{"username":"relay@ovh.example","password":"p4ss"}')).toEqual({
      username: 'relay@ovh.example',
      password: 'p4ss',
    });
  });

  it('names every missing or unexpected field without quoting values', () => {
    const failure = failureOf('{"user":"relay","password":""}');
    expect(failure).toMatchObject({
      code: 'SmtpCredentialInvalid',
      failureClass: 'provider',
      provider: 'smtp',
    });
    expect(failure.reason).toBe(
      'the SMTP credential secret is not usable: username: required, a non-empty string; password: required, a non-empty string; unknown field(s) user',
    );
    expect(failure.reason).not.toContain('relay');
  });

  it('refuses text that is not JSON', () => {
    expect(failureOf('user:pass').reason).toBe('the SMTP credential secret is not valid JSON');
  });

  it('reports the placeholder as not set', () => {
    expect(failureOf('{"placeholder":"fill me"}')).toMatchObject({ code: 'SmtpCredentialNotSet' });
  });

  it("names a named connection's secret failures by the connection, with the same hint", () => {
    const failure = failureOf('{"placeholder":"fill me"}', 'smtp:hve');

    expect(failure).toMatchObject({
      provider: 'smtp:hve',
      code: 'SmtpCredentialNotSet',
      failureClass: 'provider',
      hint: expect.stringContaining('smtp.connections.<name>.credentialSecretArn'),
    });
  });
});
