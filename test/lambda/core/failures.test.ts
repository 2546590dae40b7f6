import { describe, expect, it } from 'vitest';
import {
  type FailureClass,
  NETWORK_ERROR_CODES,
  type ProviderFault,
  providerFamily,
  RelayFailure,
  toRelayFailure,
} from '../../../lambda/core/failures.ts';
import {
  classifyProviderFault as classifyFault,
  FAILURE_TABLES,
} from '../../../lambda/providers/registry.ts';

const sesFault = (code: string, overrides: Partial<ProviderFault> = {}): ProviderFault => ({
  provider: 'ses',
  code,
  message: `${code} happened`,
  ...overrides,
});

describe('classifyFault with the SES table', () => {
  const table: [code: string, failureClass: FailureClass, hint: string | undefined][] = [
    [
      'TooManyRequestsException',
      'transient',
      'SES sending rate exceeded; the relay retries. Raise the SES rate or lower sendFunction.maxConcurrency.',
    ],
    ['ThrottlingException', 'transient', undefined],
    ['InternalFailure', 'transient', undefined],
    ['ServiceUnavailable', 'transient', undefined],
    [
      'LimitExceededException',
      'provider',
      'The SES daily sending quota is used up; request a higher quota in the SES console.',
    ],
    [
      'SendingPausedException',
      'provider',
      'Sending is paused for the account or configuration set (often after high bounce/complaint rates); check SES reputation.',
    ],
    ['AccountSuspendedException', 'provider', 'The SES account may not send; contact AWS Support.'],
    [
      'MailFromDomainNotVerifiedException',
      'provider',
      "The identity's custom MAIL FROM domain is not verified; check its MX and SPF records.",
    ],
    [
      'AccessDeniedException',
      'provider',
      'The function may not send as this identity; check ses.identities in the configuration and redeploy.',
    ],
    [
      'NotFoundException',
      'provider',
      'A resource named in the request does not exist, usually ses.configurationSetName.',
    ],
    [
      'MessageRejected',
      'permanent',
      'SES refused this message: its content, or (in the SES sandbox) a recipient that is not verified.',
    ],
    ['BadRequestException', 'permanent', undefined],
  ];

  it.each(table)('classifies %s as %s with its hint', (code, failureClass, hint) => {
    // A status that would classify differently proves the table wins over the status.
    const failure = classifyFault(sesFault(code, { status: failureClass === 'transient' ? 400 : 503 }));
    expect(failure.failureClass).toBe(failureClass);
    expect(failure.hint).toBe(hint);
  });

  it('carries the code, the message as reason and the provider', () => {
    const failure = classifyFault(sesFault('MessageRejected', { message: 'Email address is not verified.' }));
    expect(failure).toBeInstanceOf(RelayFailure);
    expect(failure).toMatchObject({
      code: 'MessageRejected',
      reason: 'Email address is not verified.',
      provider: 'ses',
      message: 'ses: MessageRejected: Email address is not verified.',
    });
  });

  it('matches table codes only for the provider they belong to', () => {
    const failure = classifyFault({ provider: 'graph', code: 'MessageRejected', message: 'no', status: 500 });
    expect(failure.failureClass).toBe('transient');
    expect(failure.hint).toBeUndefined();
  });

  it('keeps the original error as the cause', () => {
    const cause = new Error('sdk error');
    expect(classifyFault(sesFault('ThrottlingException'), cause).cause).toBe(cause);
  });
});

describe('classifyFault for a named SMTP connection', () => {
  const named = (code: string, status?: number): ProviderFault => ({
    provider: 'smtp:billing-ovh',
    code,
    message: `${code} happened`,
    ...(status !== undefined && { status }),
  });

  it('looks rules up by the provider family, so a named connection is classified as smtp is', () => {
    expect(providerFamily('smtp:billing-ovh')).toBe('smtp');
    expect(providerFamily('smtp')).toBe('smtp');
    expect(providerFamily('graph')).toBe('graph');
    for (const code of ['5.7.708', '4.7.500', 'SendAsDenied', 'AuthenticationFailed', '5.5.105']) {
      const viaConnection = classifyFault(named(code, 550));
      const viaSingle = classifyFault({ ...named(code, 550), provider: 'smtp' });
      expect([viaConnection.failureClass, viaConnection.hint], code).toEqual([
        viaSingle.failureClass,
        viaSingle.hint,
      ]);
    }
  });

  it('keeps the connection as the failure’s provider', () => {
    const failure = classifyFault(named('5.7.708'));

    expect(failure).toMatchObject({
      provider: 'smtp:billing-ovh',
      failureClass: 'provider',
      hint: expect.stringContaining('inbound connector'),
      message: 'smtp:billing-ovh: 5.7.708: 5.7.708 happened',
    });
  });

  it('says High Volume Email takes only internal recipients (5.5.105), permanently', () => {
    expect(classifyFault(named('5.5.105', 550))).toMatchObject({
      failureClass: 'permanent',
      hint: expect.stringContaining('High Volume Email'),
    });
  });
});

describe('classifyFault for codes outside the table', () => {
  it.each([
    [429, 'transient'],
    [500, 'transient'],
    [502, 'transient'],
    [503, 'transient'],
    [408, 'transient'],
    [401, 'provider'],
    [403, 'provider'],
    [400, 'permanent'],
    [404, 'permanent'],
    [422, 'permanent'],
  ] as const)('classifies status %i as %s', (status, failureClass) => {
    expect(classifyFault(sesFault('SomethingNew', { status })).failureClass).toBe(failureClass);
  });

  it('classifies an unknown code without a status as transient', () => {
    expect(classifyFault(sesFault('SomethingNew')).failureClass).toBe('transient');
  });

  it('gives no hint for an unknown code', () => {
    expect(classifyFault(sesFault('SomethingNew', { status: 400 })).hint).toBeUndefined();
  });

  it.each(['ECONNRESET', 'ECONNREFUSED', 'ETIMEDOUT', 'ENOTFOUND', 'TimeoutError', 'NetworkingError'])(
    'classifies the network code %s as transient even with a 4xx status',
    (code) => {
      expect(NETWORK_ERROR_CODES.has(code)).toBe(true);
      expect(classifyFault(sesFault(code, { status: 400 })).failureClass).toBe('transient');
    },
  );

  it('carries retryAfterSeconds', () => {
    expect(
      classifyFault(sesFault('SomethingNew', { status: 429, retryAfterSeconds: 30 })).retryAfterSeconds,
    ).toBe(30);
  });

  it('leaves retryAfterSeconds undefined when the fault has none', () => {
    expect(classifyFault(sesFault('SomethingNew', { status: 429 })).retryAfterSeconds).toBeUndefined();
  });
});

describe('toRelayFailure', () => {
  it('turns a plain Error into a transient UnexpectedError with its message as reason', () => {
    const error = new TypeError('cannot read properties of undefined');
    const failure = toRelayFailure(error);
    expect(failure).toMatchObject({
      failureClass: 'transient',
      code: 'UnexpectedError',
      reason: 'cannot read properties of undefined',
      message: 'UnexpectedError: cannot read properties of undefined',
    });
    expect(failure.cause).toBe(error);
    expect(failure.provider).toBeUndefined();
  });

  it('turns a thrown non-Error value into a reason string', () => {
    expect(toRelayFailure('boom').reason).toBe('boom');
  });

  it('truncates a long message to 500 characters', () => {
    expect(toRelayFailure(new Error('x'.repeat(600))).reason).toBe('x'.repeat(500));
  });

  it('passes a RelayFailure through unchanged', () => {
    const original = new RelayFailure({ failureClass: 'permanent', code: 'InvalidMessage', reason: 'bad' });
    expect(toRelayFailure(original)).toBe(original);
  });
});

describe('RelayFailure', () => {
  it('prefixes the message with the provider when there is one', () => {
    const failure = new RelayFailure({
      failureClass: 'provider',
      code: 'AccessDeniedException',
      reason: 'not allowed',
      provider: 'ses',
      hint: 'check identities',
      retryAfterSeconds: 5,
    });
    expect(failure.name).toBe('RelayFailure');
    expect(failure.message).toBe('ses: AccessDeniedException: not allowed');
    expect(failure).toMatchObject({ hint: 'check identities', retryAfterSeconds: 5 });
  });
});

describe('classifyFault with the Microsoft Graph table', () => {
  const graphFault = (code: string, status?: number): ProviderFault => ({
    provider: 'graph',
    code,
    message: `${code} happened`,
    ...(status !== undefined && { status }),
  });
  const cases: [code: string, status: number | undefined, failureClass: FailureClass][] = [
    ['TooManyRequests', 429, 'transient'],
    ['ApplicationThrottled', 429, 'transient'],
    ['MailboxConcurrency', 429, 'transient'],
    ['ServiceUnavailable', 503, 'transient'],
    ['HTTP504', 504, 'transient'],
    ['ECONNRESET', undefined, 'transient'],
    ['invalid_client', 401, 'provider'],
    ['AADSTS7000215', 401, 'provider'],
    ['AADSTS700016', 400, 'provider'],
    ['AADSTS90002', 400, 'provider'],
    ['InvalidAuthenticationToken', 401, 'provider'],
    ['ErrorAccessDenied', 403, 'provider'],
    ['MailboxNotEnabledForRESTAPI', 404, 'provider'],
    ['ErrorInvalidRecipients', 400, 'permanent'],
    ['ErrorSendAsDenied', 403, 'permanent'],
    ['ErrorInvalidUser', 404, 'permanent'],
    ['ErrorMessageSizeExceeded', 400, 'permanent'],
    ['ErrorRequestEntityTooLarge', 413, 'permanent'],
  ];
  it.each(cases)('%s (HTTP %s) is %s', (code, status, failureClass) => {
    const failure = classifyFault(graphFault(code, status));
    expect(failure).toMatchObject({ failureClass, code, provider: 'graph' });
  });

  it('gives an actionable hint for the mistakes admins make most', () => {
    expect(classifyFault(graphFault('ErrorAccessDenied', 403)).hint).toMatch(
      /Mail\.Send application permission with admin consent/,
    );
    expect(classifyFault(graphFault('AADSTS7000215', 401)).hint).toMatch(/client secret is wrong/);
    expect(classifyFault(graphFault('ErrorSendAsDenied', 403)).hint).toMatch(/Send As rights/);
    expect(classifyFault(graphFault('ErrorInvalidUser', 404)).hint).toMatch(/shared mailbox/);
  });

  it('uses the fault’s fallback class for codes the table does not know, before the status', () => {
    expect(
      classifyFault({ ...graphFault('AADSTS999999', 400), fallbackClass: 'provider' }).failureClass,
    ).toBe('provider');
    expect(classifyFault(graphFault('SomethingNew', 400)).failureClass).toBe('permanent');
  });
});

describe('failures about the message, not the provider (cannotCarry)', () => {
  it.each([
    ['ses', 'TooManyRecipients', 'permanent'],
    ['ses', 'MessageTooLarge', 'permanent'],
    ['ses', 'AddressNotSupported', 'provider'],
    ['smtp', 'MessageTooLarge', 'permanent'],
    ['smtp:billing', 'AddressNotSupported', 'provider'],
    ['graph', 'AddressNotSupported', 'provider'],
  ])('marks %s %s as one the next provider of the route may carry', (provider, code, failureClass) => {
    const failure = classifyFault({ provider, code, message: 'too much for this provider' });

    expect(failure).toMatchObject({ failureClass, code, cannotCarry: true });
  });

  it('does not mark a refusal of the message itself', () => {
    expect(classifyFault({ provider: 'ses', code: 'MessageRejected', message: 'rejected' }).cannotCarry).toBe(
      false,
    );
  });
});

describe('the failure table', () => {
  it('has one row per code in each family, so no rule shadows another', () => {
    for (const table of FAILURE_TABLES) {
      const codes = table.rules.map((rule) => rule.code);
      expect(new Set(codes).size, table.family).toBe(codes.length);
    }
  });

  it('keeps each family to its own rows: an SES code does not classify a Graph fault', () => {
    expect(
      classifyFault({ provider: 'graph', code: 'LimitExceededException', message: 'x', status: 400 }),
    ).toMatchObject({
      failureClass: 'permanent',
    });
    expect(
      classifyFault({ provider: 'ses', code: 'LimitExceededException', message: 'x', status: 400 }),
    ).toMatchObject({
      failureClass: 'provider',
    });
  });
});
