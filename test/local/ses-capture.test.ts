import {
  GetAccountCommand,
  GetConfigurationSetCommand,
  GetEmailIdentityCommand,
  SESv2Client,
  SESv2ServiceException,
  SendEmailCommand,
} from '@aws-sdk/client-sesv2';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { type RunningEmulator, startSesEmulator } from '../../local/emulators.ts';
import {
  type CapturedSend,
  type InjectedFault,
  SesCapture,
  type SesCaptureOptions,
} from '../../local/ses-capture.ts';

const FROM = 'billing@example.com';

let emulator: RunningEmulator;
let capture: SesCapture;
let client: SESv2Client;
/** Where the capture listens. */
let captureEndpoint: string;
/** What the capture's onSent listeners were given. */
let heard: CapturedSend[];

beforeAll(async () => {
  emulator = await startSesEmulator(0);
});
afterAll(() => emulator.stop());

async function startCapture(options: SesCaptureOptions = {}): Promise<void> {
  capture = new SesCapture(emulator.endpoint, options);
  heard = [];
  capture.onSent((send) => heard.push(send));
  const endpoint = await capture.listen(0);
  captureEndpoint = endpoint;
  // One attempt: every request the test makes is one the capture sees.
  client = new SESv2Client({
    region: 'us-east-1',
    endpoint,
    credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
    maxAttempts: 1,
  });
  await fetch(`${emulator.endpoint}/clear-store`, { method: 'POST' });
}

beforeEach(() => startCapture());
afterEach(async () => {
  client.destroy();
  await capture.close();
});

/** A send whose outcome is watched rather than awaited, and that the client can give up on. */
function openSend(subject: string) {
  const controller = new AbortController();
  let settled = false;
  const outcome = client
    .send(
      new SendEmailCommand({
        FromEmailAddress: FROM,
        Destination: { ToAddresses: ['customer@example.org'] },
        Content: { Raw: { Data: Buffer.from(`From: ${FROM}\r\nSubject: ${subject}\r\n\r\nbody\r\n`) } },
      }),
      { abortSignal: controller.signal },
    )
    .then(
      (output) => ({ messageId: output.MessageId, error: undefined }),
      (error: Error & { code?: string; $metadata?: { httpStatusCode?: number } }) => ({
        messageId: undefined,
        error,
      }),
    )
    .finally(() => {
      settled = true;
    });
  return {
    outcome,
    get settled() {
      return settled;
    },
    giveUp: () => controller.abort(),
  };
}

const send = (subject: string) => openSend(subject).outcome;

/** The capture records a forwarded send as soon as the emulator accepted it, before any answer. */
const captured = (count: number) =>
  vi.waitUntil(() => capture.sent.length >= count, { timeout: 60_000, interval: 5 });

async function emulatorMessageIds(): Promise<string[]> {
  const store = (await (await fetch(`${emulator.endpoint}/store`)).json()) as {
    emails: { messageId: string }[];
  };
  return store.emails.map((email) => email.messageId);
}

describe('SES capture', () => {
  it('answers an injected error without forwarding the send, as before', async () => {
    capture.injectFault({ status: 503, code: 'ServiceUnavailable' });
    const { error } = await send('refused');
    expect(error).toBeInstanceOf(SESv2ServiceException);
    expect(error?.name).toBe('ServiceUnavailable');
    expect(error?.$metadata?.httpStatusCode).toBe(503);
    expect(capture.sent).toEqual([]);
    expect(await emulatorMessageIds()).toEqual([]);

    const { messageId } = await send('next');
    expect(capture.sent.map((sent) => sent.messageId)).toEqual([messageId]);
    expect(capture.sendAttempts).toBe(2);
  });

  it("'hang' forwards and records the send, then never answers until the client gives up", async () => {
    capture.injectFault({ lostAnswer: 'hang' });
    const lost = openSend('lost');
    await captured(1);
    expect(capture.sent[0]).toMatchObject({ fromEmailAddress: FROM, answerWithheld: 'hang' });
    expect(heard).toEqual([capture.sent[0]]);
    expect(await emulatorMessageIds()).toEqual([capture.sent[0]?.messageId]);

    // The capture answers other sends meanwhile; the first one is still waiting.
    const next = await send('next');
    expect(next.messageId).toBe(capture.sent[1]?.messageId);
    expect(lost.settled).toBe(false);

    lost.giveUp();
    const { messageId, error } = await lost.outcome;
    expect(messageId).toBeUndefined();
    expect(error?.name).toBe('AbortError');
    expect(capture.sendAttempts).toBe(2);
  });

  it("'reset' forwards and records the send, then drops the connection without an answer", async () => {
    capture.injectFault({ lostAnswer: 'reset' });
    const { messageId, error } = await send('reset');
    expect(messageId).toBeUndefined();
    expect(error?.$metadata?.httpStatusCode).toBeUndefined();
    // The SDK's name for a connection that ended without a response.
    expect(error?.code).toBe('ECONNRESET');
    expect(capture.sent).toHaveLength(1);
    expect(capture.sent[0]?.answerWithheld).toBe('reset');
    expect(heard).toHaveLength(1);
    expect(await emulatorMessageIds()).toEqual([capture.sent[0]?.messageId]);
  });

  it('answerAfterMs: a patient client gets the real answer late; a client that gives up first never does', async () => {
    capture.injectFault({ lostAnswer: 'hang', answerAfterMs: 300 });
    const startedAt = Date.now();
    const late = await send('late');
    // Timers fire no earlier than asked, however busy the machine.
    expect(Date.now() - startedAt).toBeGreaterThanOrEqual(300);
    expect(late.messageId).toBe(capture.sent[0]?.messageId);

    capture.injectFault({ lostAnswer: 'hang', answerAfterMs: 600_000 });
    const impatient = openSend('impatient');
    await captured(2);
    impatient.giveUp();
    const { messageId, error } = await impatient.outcome;
    expect(messageId).toBeUndefined();
    expect(error?.name).toBe('AbortError');
    expect(await emulatorMessageIds()).toEqual(capture.sent.map((sent) => sent.messageId));
  });

  it('close() drops a connection whose answer is withheld instead of waiting for it', async () => {
    capture.injectFault({ lostAnswer: 'hang' });
    const lost = openSend('lost');
    await captured(1);
    await capture.close();
    const { messageId, error } = await lost.outcome;
    expect(messageId).toBeUndefined();
    expect(error?.name).not.toBe('AbortError');
  });

  it('refuses a lost-answer fault it could not honour', () => {
    expect(() =>
      capture.injectFault({ lostAnswer: 'hang', answerAfterMs: Number.POSITIVE_INFINITY }),
    ).toThrow(RangeError);
    expect(() => capture.injectFault({ lostAnswer: 'reset', answerAfterMs: Number.NaN })).toThrow(RangeError);
  });

  it('consults the fault plan (constructor option or setter) for each send no injected fault is left for', async () => {
    client.destroy();
    await capture.close();
    const plan: (InjectedFault | undefined)[] = [
      undefined,
      { status: 400, code: 'MessageRejected', message: 'Email address is not verified.' },
      { lostAnswer: 'reset' },
    ];
    let asked = 0;
    await startCapture({
      faultPlan: () => {
        asked += 1;
        return plan.shift();
      },
    });

    expect((await send('one')).messageId).toBe(capture.sent[0]?.messageId);
    const rejected = (await send('two')).error;
    expect(rejected?.name).toBe('MessageRejected');
    expect(rejected?.message).toBe('Email address is not verified.');
    const reset = await send('three');
    expect(reset.messageId).toBeUndefined();
    expect(capture.sent.map((sent) => sent.answerWithheld)).toEqual([undefined, 'reset']);
    expect(asked).toBe(3);

    // An injected fault comes first; the plan is not asked about that send.
    capture.injectFault({ status: 503, code: 'ServiceUnavailable' });
    expect((await send('four')).error?.name).toBe('ServiceUnavailable');
    expect(asked).toBe(3);

    capture.setFaultPlan(() => ({ status: 429, code: 'TooManyRequestsException' }));
    expect((await send('five')).error?.name).toBe('TooManyRequestsException');
    capture.setFaultPlan(undefined);
    expect((await send('six')).messageId).toBe(capture.sent[2]?.messageId);
    expect(capture.sendAttempts).toBe(6);
  });
});

describe('SES capture maxSendRate', () => {
  type Destination = { ToAddresses?: string[]; CcAddresses?: string[]; BccAddresses?: string[] };

  /** A raw send to `destination`; without one, SES takes the recipients from the MIME headers. */
  function sendTo(destination: Destination | undefined, headers = 'To: customer@example.org\r\n') {
    return client
      .send(
        new SendEmailCommand({
          FromEmailAddress: FROM,
          ...(destination && { Destination: destination }),
          Content: {
            Raw: { Data: Buffer.from(`From: ${FROM}\r\n${headers}Subject: paced\r\n\r\nbody\r\n`) },
          },
        }),
      )
      .then(
        (output) => ({ messageId: output.MessageId, error: undefined }),
        (error: Error & { $metadata?: { httpStatusCode?: number } }) => ({ messageId: undefined, error }),
      );
  }

  const recipients = (count: number) =>
    Array.from({ length: count }, (_, index) => `customer${index}@example.org`);
  const waitUntil = (condition: () => boolean) => vi.waitUntil(condition, { timeout: 60_000, interval: 5 });

  function expectThrottled(outcome: Awaited<ReturnType<typeof sendTo>>): void {
    expect(outcome.messageId).toBeUndefined();
    expect(outcome.error).toBeInstanceOf(SESv2ServiceException);
    expect(outcome.error?.name).toBe('ThrottlingException');
    expect(outcome.error?.message).toBe('Maximum sending rate exceeded.');
    expect(outcome.error?.$metadata?.httpStatusCode).toBe(400);
  }

  it('counts To, Cc and Bcc in a second and refuses a send beyond the rate without forwarding it', async () => {
    capture.setLimits({ maxSendRate: 3 });
    const first = await sendTo({ ToAddresses: ['ana@example.org'], BccAddresses: ['bo@example.org'] });
    expect(first.error).toBeUndefined();

    expectThrottled(await sendTo({ ToAddresses: recipients(2) }));
    expect(capture.sent).toHaveLength(1);
    expect(heard).toHaveLength(1);
    expect(await emulatorMessageIds()).toEqual([first.messageId]);

    // One more fits exactly.
    expect((await sendTo({ CcAddresses: ['cy@example.org'] })).error).toBeUndefined();
    const stats = capture.pacingStats();
    expect(stats.limits).toEqual({ maxSendRate: 3 });
    expect(stats.accepted.map((send) => send.recipients)).toEqual([2, 1]);
    expect(stats.throttled.map((send) => send.recipients)).toEqual([2]);
    expect(capture.sendAttempts).toBe(3);

    // Off again at runtime.
    capture.setLimits({});
    expect((await sendTo({ ToAddresses: recipients(5) })).error).toBeUndefined();
    expect(capture.pacingStats().accepted).toHaveLength(3);
  });

  it('slides: recipients leave the window one second after they were accepted, each at its own time', async () => {
    capture.setLimits({ maxSendRate: 2 });
    expect((await sendTo({ ToAddresses: recipients(1) })).error).toBeUndefined();
    const first = capture.pacingStats().accepted[0]?.at ?? 0;
    // The second most of a second later, so it stays in the window that long after the first leaves.
    await waitUntil(() => Date.now() >= first + 800);
    expect((await sendTo({ ToAddresses: recipients(1) })).error).toBeUndefined();

    await waitUntil(() => Date.now() >= first + 1000);
    expect((await sendTo({ ToAddresses: recipients(1) })).error).toBeUndefined();
    // Only the first left: the second still counts.
    expectThrottled(await sendTo({ ToAddresses: recipients(1) }));

    expect(capture.sent).toHaveLength(3);
    expect(capture.pacingStats().throttled).toHaveLength(1);
    // Whatever the timing: no accepted send took its second beyond the rate.
    const { accepted } = capture.pacingStats();
    for (const { at } of accepted) {
      const inSecond = accepted
        .filter((other) => other.at <= at && other.at > at - 1000)
        .reduce((sum, other) => sum + other.recipients, 0);
      expect(inSecond).toBeLessThanOrEqual(2);
    }
  });

  it("counts a raw message's To, Cc and Bcc headers when the send has no Destination", async () => {
    capture.setLimits({ maxSendRate: 3 });
    const headers = 'To: ana@example.org, bo@example.org\r\nCc: cy@example.org\r\n';
    expect((await sendTo(undefined, headers)).error).toBeUndefined();
    expect(capture.pacingStats().accepted.map((send) => send.recipients)).toEqual([3]);
    expectThrottled(await sendTo(undefined));
  });

  it('lets a message with more recipients than the rate go when the window is empty, as SES does', async () => {
    capture.setLimits({ maxSendRate: 2 });
    expect((await sendTo({ ToAddresses: recipients(3) })).error).toBeUndefined();
    expectThrottled(await sendTo({ ToAddresses: recipients(1) }));
  });

  it('takes maxSendRate from the constructor, serves its statistics at /mail-relay/pacing, and refuses a bad rate', async () => {
    client.destroy();
    await capture.close();
    await startCapture({ maxSendRate: 1 });
    expect((await sendTo({ ToAddresses: recipients(1) })).error).toBeUndefined();
    expectThrottled(await sendTo({ ToAddresses: recipients(1) }));

    const served = (await (await fetch(`${captureEndpoint}/mail-relay/pacing`)).json()) as unknown;
    expect(served).toEqual(JSON.parse(JSON.stringify(capture.pacingStats())));
    expect(served).toMatchObject({
      limits: { maxSendRate: 1 },
      accepted: [{ recipients: 1 }],
      throttled: [{ recipients: 1 }],
    });

    expect(() => capture.setLimits({ maxSendRate: 0 })).toThrow(RangeError);
    expect(() => new SesCapture(emulator.endpoint, { maxSendRate: 1.5 })).toThrow(RangeError);
    expect(capture.pacingStats().limits).toEqual({ maxSendRate: 1 });
  });

  it('answers an injected fault first, without counting the send', async () => {
    capture.setLimits({ maxSendRate: 1 });
    capture.injectFault({ status: 503, code: 'ServiceUnavailable' });
    expect((await sendTo({ ToAddresses: recipients(1) })).error?.name).toBe('ServiceUnavailable');
    expect((await sendTo({ ToAddresses: recipients(1) })).error).toBeUndefined();
    expect(capture.pacingStats()).toMatchObject({ accepted: [{ recipients: 1 }], throttled: [] });
  });
});

describe('SES capture answers what doctor reads', () => {
  const identity = (name: string) => client.send(new GetEmailIdentityCommand({ EmailIdentity: name }));
  const configurationSet = (name: string) =>
    client.send(new GetConfigurationSetCommand({ ConfigurationSetName: name }));
  /** The SDK's error for a call expected to fail. */
  const failure = (call: Promise<unknown>) =>
    call.then(
      () => expect.unreachable('the call succeeded'),
      (error: SESv2ServiceException) => error,
    );

  it('unscripted (local mode): every identity is verified with DKIM SUCCESS, every configuration set sends', async () => {
    const domain = await identity('example.com');
    expect(domain).toMatchObject({
      IdentityType: 'DOMAIN',
      VerifiedForSendingStatus: true,
      VerificationStatus: 'SUCCESS',
      DkimAttributes: { SigningEnabled: true, Status: 'SUCCESS', SigningAttributesOrigin: 'AWS_SES' },
      MailFromAttributes: { BehaviorOnMxFailure: 'USE_DEFAULT_VALUE' },
    });
    expect(domain.DkimAttributes?.Tokens).toHaveLength(3);
    expect(domain.MailFromAttributes?.MailFromDomain).toBeUndefined();
    // An address travels URL-encoded in the path.
    expect(await identity('billing+ops@example.com')).toMatchObject({
      IdentityType: 'EMAIL_ADDRESS',
      VerifiedForSendingStatus: true,
    });
    expect(await configurationSet('relay-events')).toMatchObject({
      ConfigurationSetName: 'relay-events',
      SendingOptions: { SendingEnabled: true },
    });
  });

  it('answers scripted identities, and one scripted as absent with 404 NotFoundException', async () => {
    capture.setIdentity('Pending.example', { verified: false, dkimStatus: 'PENDING' });
    capture.setIdentity('mailfrom.example', {
      mailFromDomain: 'bounce.mailfrom.example',
      mailFromStatus: 'FAILED',
    });
    capture.setIdentity('gone@example.com', undefined);

    // SES matches identities regardless of case.
    expect(await identity('pending.example')).toMatchObject({
      VerifiedForSendingStatus: false,
      VerificationStatus: 'PENDING',
      DkimAttributes: { SigningEnabled: false, Status: 'PENDING' },
    });
    expect((await identity('mailfrom.example')).MailFromAttributes).toEqual({
      MailFromDomain: 'bounce.mailfrom.example',
      MailFromDomainStatus: 'FAILED',
      BehaviorOnMxFailure: 'USE_DEFAULT_VALUE',
    });
    const missing = await failure(identity('gone@example.com'));
    expect(missing).toBeInstanceOf(SESv2ServiceException);
    expect(missing.name).toBe('NotFoundException');
    expect(missing.$metadata.httpStatusCode).toBe(404);
    expect(missing.message).toContain('gone@example.com');
  });

  it('answers scripted configuration sets: paused, or absent with 404 NotFoundException', async () => {
    capture.setConfigurationSet('relay-braked', { sendingEnabled: false });
    capture.setConfigurationSet('relay-missing', undefined);
    expect((await configurationSet('relay-braked')).SendingOptions).toEqual({ SendingEnabled: false });
    const missing = await failure(configurationSet('relay-missing'));
    expect(missing.name).toBe('NotFoundException');
    expect(missing.$metadata.httpStatusCode).toBe(404);
  });

  it('setAccount changes what GetAccount reports beyond the send rate; {} brings the defaults back', async () => {
    capture.setLimits({ maxSendRate: 14 });
    capture.setAccount({
      productionAccessEnabled: false,
      sendingEnabled: false,
      enforcementStatus: 'PROBATION',
      max24HourSend: 200,
      sentLast24Hours: 190,
    });
    expect(await client.send(new GetAccountCommand({}))).toMatchObject({
      ProductionAccessEnabled: false,
      SendingEnabled: false,
      EnforcementStatus: 'PROBATION',
      SendQuota: { Max24HourSend: 200, MaxSendRate: 14, SentLast24Hours: 190 },
    });

    capture.setAccount({});
    expect((await send('counted')).error).toBeUndefined();
    expect(await client.send(new GetAccountCommand({}))).toMatchObject({
      ProductionAccessEnabled: true,
      SendingEnabled: true,
      EnforcementStatus: 'HEALTHY',
      // Unscripted, the day's sends are those the capture recorded.
      SendQuota: { Max24HourSend: 1_000_000, MaxSendRate: 14, SentLast24Hours: 1 },
    });
  });
});
