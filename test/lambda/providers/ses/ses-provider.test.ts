import { randomBytes } from 'node:crypto';
import { SESv2Client } from '@aws-sdk/client-sesv2';
import { simpleParser } from 'mailparser';
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { inlineAttachments, type OutboundMessage } from '../../../../lambda/core/attachments.ts';
import { RelayFailure } from '../../../../lambda/core/failures.ts';
import {
  type ComposedMessage,
  createMessageSchema,
  defaultMessageSchema,
  parseMessage,
} from '../../../../lambda/core/message.ts';
import { createSesClient, SesProvider } from '../../../../lambda/providers/ses/ses-provider.ts';
import { failureOf } from '../../../helpers/failures.ts';
import { type Peers, startPeers, UNREACHABLE_CLIENT_CONFIG, validMessage } from '../../../helpers/peers.ts';
import { sendContext } from '../../../helpers/scripted-relay.ts';

function message(overrides: Record<string, unknown> = {}): OutboundMessage {
  const parsed = parseMessage(JSON.stringify(validMessage(overrides)), defaultMessageSchema);
  if (!parsed.ok) throw new Error(parsed.problems.join('; '));
  return inlineAttachments(parsed.message as ComposedMessage);
}

describe('SesProvider against the SES v2 emulator', () => {
  let peers: Peers;
  let provider: SesProvider;

  beforeAll(async () => {
    peers = await startPeers();
    provider = new SesProvider(peers.ses, { identities: ['example.com'], configurationSetName: 'relay' });
  });
  afterAll(() => peers.stop());
  beforeEach(() => {
    peers.capture.sent.length = 0;
  });

  it('sends raw MIME with the full envelope, tags and configuration set', async () => {
    const receipt = await provider.send(
      message({ cc: 'Ops <ops@example.org>', bcc: ['audit@example.org'], tags: { tenant: 'acme' } }),
      sendContext(),
    );

    expect(receipt.provider).toBe('ses');
    expect(peers.capture.sent).toHaveLength(1);
    const [sent] = peers.capture.sent;
    expect(sent?.messageId).toBe(receipt.providerMessageId);
    expect(sent?.destination).toEqual({
      to: ['customer@example.org'],
      cc: ['ops@example.org'],
      bcc: ['audit@example.org'],
    });
    expect(sent?.tags).toEqual({ tenant: 'acme' });
    expect(sent?.configurationSetName).toBe('relay');
  });

  it('delivers attachment bytes and custom headers intact to the emulator', async () => {
    const bytes = randomBytes(4096);
    await provider.send(
      message({
        headers: { 'X-Tenant': 'acme' },
        attachments: [
          {
            filename: 'report.bin',
            contentType: 'application/octet-stream',
            content: bytes.toString('base64'),
          },
        ],
      }),
      sendContext(),
    );

    const store = (await fetch(`${peers.sesEmulator.endpoint}/store`).then((response) =>
      response.json(),
    )) as {
      emails: { subject: string; attachments: { filename: string; content: string }[] }[];
    };
    const stored = store.emails.at(-1);
    expect(stored?.subject).toBe('Invoice 42');
    expect(Buffer.from(stored?.attachments[0]?.content ?? '', 'base64').equals(bytes)).toBe(true);
    const parsed = await simpleParser(peers.capture.sent[0]?.raw ?? Buffer.alloc(0));
    expect(parsed.headers.get('x-tenant')).toBe('acme');
  });

  it('can send only as a configured identity', () => {
    expect(provider.canSendAs('anyone@example.com')).toBe(true);
    expect(provider.canSendAs('anyone@EXAMPLE.COM')).toBe(true);
    expect(provider.canSendAs('anyone@sub.example.com')).toBe(false);
    expect(provider.canSendAs('anyone@example.org')).toBe(false);
  });

  it.each([
    { status: 429, code: 'TooManyRequestsException', failureClass: 'transient' },
    { status: 500, code: 'InternalFailure', failureClass: 'transient' },
    { status: 503, code: 'ServiceUnavailable', failureClass: 'transient' },
    { status: 403, code: 'AccessDeniedException', failureClass: 'provider' },
    { status: 400, code: 'SendingPausedException', failureClass: 'provider' },
    { status: 400, code: 'MessageRejected', failureClass: 'permanent' },
    { status: 400, code: 'BadRequestException', failureClass: 'permanent' },
  ])('classifies SES $code ($status) as $failureClass', async ({ status, code, failureClass }) => {
    peers.capture.injectFault({ status, code });

    const failure = await failureOf(provider.send(message(), sendContext()));

    expect(failure.failureClass).toBe(failureClass);
    expect(failure.code).toBe(code);
    expect(failure.provider).toBe('ses');
    expect(peers.capture.sent).toHaveLength(0);
  });

  it('refuses more than 50 recipients before calling SES (a relay that also sends through Exchange allows 500)', async () => {
    const attemptsBefore = peers.capture.sendAttempts;
    const to = Array.from({ length: 51 }, (_, index) => `r${index}@example.org`);
    const parsed = parseMessage(
      JSON.stringify(validMessage({ to })),
      createMessageSchema({ maxRecipients: 500, maxMessageBytes: 1024 * 1024 }),
    );
    if (!parsed.ok) throw new Error(parsed.problems.join('; '));
    const failure = await failureOf(
      provider.send(inlineAttachments(parsed.message as ComposedMessage), sendContext()),
    );
    expect(failure).toMatchObject({ failureClass: 'permanent', code: 'TooManyRecipients', provider: 'ses' });
    expect(failure.hint).toMatch(/Exchange Online takes 500/);
    expect(peers.capture.sendAttempts).toBe(attemptsBefore);
  });

  it.each([
    { field: 'to', overrides: { to: ['josé@example.org'] }, address: 'josé@example.org' },
    { field: 'cc', overrides: { cc: ['用户@例子.广告'] }, address: '用户@xn--fsqu00a.xn--4rr70v' },
    { field: 'bcc', overrides: { bcc: ['josé@example.org'] }, address: 'josé@example.org' },
    { field: 'reply-to', overrides: { replyTo: 'josé@example.org' }, address: 'josé@example.org' },
    { field: 'from', overrides: { from: 'José <josé@example.com>' }, address: 'josé@example.com' },
  ])(
    'refuses a $field address with a non-ASCII local part before calling SES, so the next provider may send it',
    async ({ field, overrides, address }) => {
      const attemptsBefore = peers.capture.sendAttempts;
      const handOff = vi.fn(async () => undefined);

      const failure = await failureOf(provider.send(message(overrides), sendContext({ handOff })));

      expect(failure).toMatchObject({
        failureClass: 'provider',
        code: 'AddressNotSupported',
        provider: 'ses',
      });
      expect(failure.reason).toBe(`${field} ${address}: SES cannot carry a non-ASCII local part (SMTPUTF8)`);
      expect(failure.hint).toMatch(/Microsoft Graph or an SMTP server that offers SMTPUTF8/);
      expect(handOff).not.toHaveBeenCalled();
      expect(peers.capture.sendAttempts).toBe(attemptsBefore);
    },
  );

  it('sends to an international domain in punycode', async () => {
    await provider.send(message({ to: ['ana@bücher.de'] }), sendContext());

    expect(peers.capture.sent[0]?.destination.to).toEqual(['ana@xn--bcher-kva.de']);
  });

  it('classifies a refused connection as transient', async () => {
    const unreachable = new SESv2Client(UNREACHABLE_CLIENT_CONFIG);
    const offline = new SesProvider(unreachable, { identities: ['example.com'] });

    const failure = await failureOf(offline.send(message(), sendContext()));

    expect(failure.failureClass).toBe('transient');
    expect(failure.code).toBe('ECONNREFUSED');
    unreachable.destroy();
  });
});

describe("the relay's SES client: hand-off, lost answers, refusals and deadlines", () => {
  let peers: Peers;
  const clients: SESv2Client[] = [];
  const relayProvider = (requestTimeoutMs = 300) => {
    const client = createSesClient({
      requestTimeoutMs,
      client: {
        endpoint: peers.sesEndpoint,
        region: 'us-east-1',
        credentials: { accessKeyId: 't', secretAccessKey: 't' },
      },
    });
    clients.push(client);
    return new SesProvider(client, { identities: ['example.com'] });
  };

  beforeAll(async () => {
    peers = await startPeers();
  });
  afterAll(async () => {
    for (const client of clients) client.destroy();
    await peers.stop();
  });
  beforeEach(() => {
    peers.capture.sent.length = 0;
    peers.capture.sendAttempts = 0;
  });

  it('hands the message off right before SendEmail is written, with the relay’s Message-ID', async () => {
    const attemptsAtHandOff: number[] = [];
    await relayProvider().send(
      message(),
      sendContext({
        internetMessageId: '<relay-3@example.com>',
        handOff: async () => void attemptsAtHandOff.push(peers.capture.sendAttempts),
      }),
    );
    expect(attemptsAtHandOff).toEqual([0]);
    const mail = await simpleParser(peers.capture.sent[0]?.raw ?? Buffer.alloc(0));
    expect(mail.messageId).toBe('<relay-3@example.com>');
  });

  it('sends nothing when the hand-off is refused', async () => {
    const refused = new RelayFailure({
      failureClass: 'transient',
      code: 'InFlight',
      reason: 'claimed elsewhere',
    });
    const failure = await relayProvider()
      .send(message(), sendContext({ handOff: () => Promise.reject(refused) }))
      .catch((error: unknown) => error);
    expect(failure).toBe(refused);
    expect(peers.capture.sendAttempts).toBe(0);
  });

  it('says the message may be sent, and does not repeat it, when SES took it and the answer never came', async () => {
    peers.capture.injectFault({ lostAnswer: 'hang' });
    const failure = await failureOf(relayProvider().send(message(), sendContext()));
    expect(failure).toMatchObject({ provider: 'ses', code: 'ETIMEDOUT', maybeSent: true });
    expect(peers.capture.sendAttempts).toBe(1);
    expect(peers.capture.sent).toHaveLength(1);
  });

  it('says so too when the connection is reset after SendEmail was written', async () => {
    peers.capture.injectFault({ lostAnswer: 'reset' });
    const failure = await failureOf(relayProvider().send(message(), sendContext()));
    expect(failure).toMatchObject({ code: 'ECONNRESET', maybeSent: true });
    expect(peers.capture.sendAttempts).toBe(1);
  });

  it('retries throttling inside the call, since a refusal sent nothing', async () => {
    peers.capture.injectFault({ status: 429, code: 'TooManyRequestsException', times: 2 });
    const receipt = await relayProvider().send(message(), sendContext());
    expect(receipt.provider).toBe('ses');
    expect(peers.capture.sendAttempts).toBe(3);
    expect(peers.capture.sent).toHaveLength(1);
  });

  it('ends a hung call at the invocation’s deadline instead of running into the function timeout', async () => {
    peers.capture.injectFault({ lostAnswer: 'hang' });
    const deadline = new AbortController();
    const sending = relayProvider(60_000).send(message(), sendContext({ signal: deadline.signal }));
    await vi.waitUntil(() => peers.capture.sent.length === 1, { timeout: 60_000 });
    deadline.abort();
    expect(await failureOf(sending)).toMatchObject({ code: 'DeadlineExceeded', maybeSent: true });
  });
});
