import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { ConfidentialClientApplication } from '@azure/msal-node';
import { type AddressObject, type ParsedMail, simpleParser } from 'mailparser';
import MailComposer from 'nodemailer/lib/mail-composer';
import type Mail from 'nodemailer/lib/mailer';
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import {
  type ComposedOutbound,
  inlineAttachments,
  type RawOutbound,
  resolveRawMessage,
} from '../../../../lambda/core/attachments.ts';
import { RelayFailure } from '../../../../lambda/core/failures.ts';
import { DEFAULT_MAX_MESSAGE_BYTES } from '../../../../lambda/core/limits.ts';
import type { SendContext } from '../../../../lambda/core/mail-provider.ts';
import {
  type ComposedMessage,
  defaultMessageSchema,
  isRawMessage,
  parseMessage,
} from '../../../../lambda/core/message.ts';
import { TRACE_HEADERS } from '../../../../lambda/core/outcomes.ts';
import { cachedCredential, graphSecretReader } from '../../../../lambda/providers/graph/credentials.ts';
import { GraphProvider, UPLOAD_CHUNK_BYTES } from '../../../../lambda/providers/graph/graph-provider.ts';
import type { GraphSettings } from '../../../../lambda/providers/graph/settings.ts';
import { MsalTokenSource } from '../../../../lambda/providers/graph/token-source.ts';
import { createHttpTransport, type HttpTransport } from '../../../../lambda/providers/http-transport.ts';
import { createClientCertificate, type GeneratedCertificate } from '../../../../local/peers/certificates.ts';
import { type GraphPeer, startGraphPeer } from '../../../../local/peers/graph-peer.ts';
import {
  type SecretsManagerEmulator,
  startSecretsManagerEmulator,
} from '../../../../local/secrets-manager-emulator.ts';
import { failureOf } from '../../../helpers/failures.ts';
import { sendContext } from '../../../helpers/scripted-relay.ts';

const TENANT = '72f988bf-0000-4000-8000-00000000cafe';
const CLIENT_ID = '0a1b2c3d-0000-4000-8000-0000000000a1';
const SECRET_CLIENT_ID = '0a1b2c3d-0000-4000-8000-0000000000a2';
const CLIENT_SECRET = `local-test-secret-${Math.random().toString(36).slice(2)}`;

function outbound(fields: Record<string, unknown> = {}): ComposedOutbound {
  const parsed = parseMessage(
    JSON.stringify({
      v: 1,
      from: 'Billing <billing@contoso.com>',
      to: 'ana@example.org',
      subject: 'Invoice 42',
      text: 'See attached.',
      ...fields,
    }),
    defaultMessageSchema,
  );
  if (!parsed.ok) throw new Error(parsed.problems.join('; '));
  return inlineAttachments(parsed.message as ComposedMessage);
}

/** Bytes with a recognisable pattern, so a reordered or truncated chunk cannot compare equal. */
function patterned(length: number): Buffer {
  const bytes = Buffer.alloc(length);
  for (let index = 0; index < length; index += 1) bytes[index] = (index * 31 + (index >> 12)) & 0xff;
  return bytes;
}

describe('GraphProvider against the local Entra ID + Graph peer', () => {
  let peer: GraphPeer;
  let secrets: SecretsManagerEmulator;
  let secretsClient: SecretsManagerClient;
  let certificate: GeneratedCertificate;
  let transport: HttpTransport;
  let certificateSecretArn: string;

  const settings = (overrides: Partial<GraphSettings> = {}): GraphSettings => ({
    tenantId: TENANT,
    clientId: CLIENT_ID,
    senders: ['contoso.com'],
    credentialSecretId: certificateSecretArn,
    saveToSentItems: true,
    authorityHost: peer.authorityHost,
    graphEndpoint: peer.graphEndpoint,
    ...overrides,
  });

  /** A provider as a cold start builds it: fresh credential cache, fresh token cache. */
  const coldStart = (overrides: Partial<GraphSettings> = {}, options: { now?: () => number } = {}) => {
    const graph = settings(overrides);
    const credential = cachedCredential(graphSecretReader(secretsClient), graph.credentialSecretId);
    return new GraphProvider({
      settings: graph,
      tokens: new MsalTokenSource(graph, credential, transport),
      transport,
      ...options,
    });
  };

  beforeAll(async () => {
    certificate = await createClientCertificate();
    peer = await startGraphPeer({
      tenantId: TENANT,
      clients: [
        { clientId: CLIENT_ID, certificatePem: certificate.certificatePem },
        { clientId: SECRET_CLIENT_ID, clientSecret: CLIENT_SECRET },
      ],
      mailboxes: ['billing@contoso.com', 'crm@contoso.com', 'ops@contoso.com', 'ghost-owner@contoso.com'],
    });
    secrets = await startSecretsManagerEmulator(0);
    secretsClient = new SecretsManagerClient({
      region: 'us-east-1',
      endpoint: secrets.endpoint,
      credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
    });
    certificateSecretArn = secrets.putSecret(
      'graph-certificate',
      JSON.stringify({ certificate: certificate.certificatePem, privateKey: certificate.privateKeyPem }),
    );
    transport = createHttpTransport({ ca: peer.caCertificate });
  });
  afterAll(async () => {
    secretsClient.destroy();
    await Promise.all([peer.close(), secrets.stop()]);
  });
  beforeEach(() => peer.reset());

  it('sends a small message in one sendMail call with every field and attachment byte intact', async () => {
    const pdf = patterned(200_000);
    const logo = patterned(3_000);
    const receipt = await coldStart().send(
      outbound({
        to: ['Ana <ana@example.org>', 'bob@example.org'],
        cc: 'carol@example.org',
        bcc: 'audit@example.org',
        replyTo: 'Support <support@contoso.com>',
        html: '<p>Invoice <img src="cid:logo"></p>',
        headers: { 'X-Invoice': '42' },
        attachments: [
          { filename: 'invoice.pdf', contentType: 'application/pdf', content: pdf.toString('base64') },
          {
            filename: 'logo.png',
            contentType: 'image/png',
            content: logo.toString('base64'),
            contentId: 'logo',
          },
        ],
      }),
      sendContext(),
    );

    expect(receipt.provider).toBe('graph');
    expect(peer.delivered).toHaveLength(1);
    const [delivered] = peer.delivered;
    expect(delivered).toMatchObject({
      mailbox: 'billing@contoso.com',
      via: 'sendMail',
      saveToSentItems: true,
    });
    expect(delivered?.message).toMatchObject({
      subject: 'Invoice 42',
      body: { contentType: 'HTML', content: '<p>Invoice <img src="cid:logo"></p>' },
      from: { emailAddress: { address: 'billing@contoso.com', name: 'Billing' } },
      toRecipients: [
        { emailAddress: { address: 'ana@example.org', name: 'Ana' } },
        { emailAddress: { address: 'bob@example.org' } },
      ],
      ccRecipients: [{ emailAddress: { address: 'carol@example.org' } }],
      bccRecipients: [{ emailAddress: { address: 'audit@example.org' } }],
      replyTo: [{ emailAddress: { address: 'support@contoso.com', name: 'Support' } }],
      internetMessageHeaders: [{ name: 'X-Invoice', value: '42' }],
    });
    const attachments = delivered?.attachments ?? [];
    expect(
      attachments.map(({ name, contentType, isInline, contentId }) => ({
        name,
        contentType,
        isInline,
        contentId,
      })),
    ).toEqual([
      { name: 'invoice.pdf', contentType: 'application/pdf', isInline: false, contentId: undefined },
      { name: 'logo.png', contentType: 'image/png', isInline: true, contentId: 'logo' },
    ]);
    expect(attachments[0]?.bytes.equals(pdf)).toBe(true);
    expect(attachments[1]?.bytes.equals(logo)).toBe(true);
    expect(peer.requests.filter((request) => request.operation === 'sendMail')).toHaveLength(1);
  });

  it('passes saveToSentItems from the settings', async () => {
    await coldStart({ saveToSentItems: false }).send(outbound(), sendContext());
    expect(peer.delivered[0]?.saveToSentItems).toBe(false);
  });

  it('sends a 20 MB attachment through a draft and an upload session, bytes intact', async () => {
    const large = patterned(20 * 1024 * 1024);
    const small = patterned(50_000);
    await coldStart().send(
      outbound({
        attachments: [
          { filename: 'small.csv', contentType: 'text/csv', content: small.toString('base64') },
          { filename: 'scan.tiff', contentType: 'image/tiff', content: large.toString('base64') },
        ],
      }),
      sendContext(),
    );

    const [delivered] = peer.delivered;
    expect(delivered?.via).toBe('draft');
    expect(delivered?.message).toMatchObject({
      subject: 'Invoice 42',
      toRecipients: [{ emailAddress: { address: 'ana@example.org' } }],
    });
    const byName = new Map((delivered?.attachments ?? []).map((attachment) => [attachment.name, attachment]));
    expect(byName.get('scan.tiff')?.via).toBe('uploadSession');
    expect(byName.get('scan.tiff')?.bytes.equals(large)).toBe(true);
    expect(byName.get('small.csv')?.via).toBe('attachment');
    expect(byName.get('small.csv')?.bytes.equals(small)).toBe(true);
    const operations = peer.requests.map((request) => request.operation);
    expect(operations.filter((operation) => operation === 'uploadChunk')).toHaveLength(
      Math.ceil(large.length / UPLOAD_CHUNK_BYTES),
    );
    expect(operations).not.toContain('sendMail');
    expect(operations.at(-1)).toBe('sendDraft');
    expect(peer.openDrafts()).toBe(0);
  });

  it('deletes the draft when a large send fails half way, and classifies the failure', async () => {
    peer.injectFault({ operation: 'uploadChunk', status: 503, code: 'ServiceUnavailable' });
    const failure = await failureOf(
      coldStart().send(
        outbound({
          attachments: [{ filename: 'big.bin', content: patterned(5 * 1024 * 1024).toString('base64') }],
        }),
        sendContext(),
      ),
    );
    expect(failure).toMatchObject({
      failureClass: 'transient',
      code: 'ServiceUnavailable',
      provider: 'graph',
    });
    expect(peer.openDrafts()).toBe(0);
    expect(peer.delivered).toHaveLength(0);
  });

  it('asks Entra ID for one token for 100 messages, with no discovery requests', async () => {
    const provider = coldStart();
    const messages = Array.from({ length: 100 }, (_, index) => outbound({ subject: `Message ${index}` }));
    // In batches of 10, as one invocation sends one SQS batch at a time.
    for (let index = 0; index < messages.length; index += 10) {
      await Promise.all(
        messages.slice(index, index + 10).map((message) => provider.send(message, sendContext())),
      );
    }
    expect(peer.delivered).toHaveLength(100);
    expect(peer.tokenRequests).toHaveLength(1);
    expect(peer.tokenRequests[0]).toMatchObject({
      clientId: CLIENT_ID,
      credential: 'certificate',
      granted: true,
    });
    expect(peer.requests.filter((request) => request.operation === 'discovery')).toHaveLength(0);
  });

  it('hands out the token in hand without asking MSAL again until shortly before it expires', async () => {
    const asked = vi.spyOn(ConfidentialClientApplication.prototype, 'acquireTokenByClientCredential');
    try {
      const provider = coldStart();
      for (let index = 0; index < 5; index += 1) await provider.send(outbound(), sendContext());

      expect(asked).toHaveBeenCalledTimes(1);
      expect(peer.delivered).toHaveLength(5);
    } finally {
      asked.mockRestore();
    }
  });

  it('asks for a new token when the one in hand is within five minutes of expiring', async () => {
    const shortLived = await startGraphPeer({
      tenantId: TENANT,
      clients: [{ clientId: CLIENT_ID, certificatePem: certificate.certificatePem }],
      tokenLifetimeSeconds: 240,
    });
    try {
      const graph = settings({
        authorityHost: shortLived.authorityHost,
        graphEndpoint: shortLived.graphEndpoint,
      });
      const tokens = new MsalTokenSource(
        graph,
        cachedCredential(graphSecretReader(secretsClient), graph.credentialSecretId),
        createHttpTransport({ ca: shortLived.caCertificate }),
      );
      const asked = vi.spyOn(ConfidentialClientApplication.prototype, 'acquireTokenByClientCredential');
      try {
        await tokens.getToken();
        await tokens.getToken();

        expect(asked).toHaveBeenCalledTimes(2);
      } finally {
        asked.mockRestore();
      }
    } finally {
      await shortLived.close();
    }
  });

  it('takes a token endpoint it cannot reach as transient, not as a refused credential', async () => {
    // A peer that was started and closed: its port refuses connections.
    const gone = await startGraphPeer({ tenantId: TENANT, clients: [] });
    await gone.close();
    const graph = settings({ authorityHost: gone.authorityHost, graphEndpoint: gone.graphEndpoint });
    const tokens = new MsalTokenSource(
      graph,
      cachedCredential(graphSecretReader(secretsClient), graph.credentialSecretId),
      createHttpTransport({ ca: gone.caCertificate }),
    );
    const failure = await failureOf(tokens.getToken());
    expect(failure).toMatchObject({ failureClass: 'transient', code: 'ECONNREFUSED', provider: 'graph' });
  });

  it('authenticates with a client secret as well', async () => {
    const secretArn = secrets.putSecret('graph-secret', JSON.stringify({ clientSecret: CLIENT_SECRET }));
    await coldStart({ clientId: SECRET_CLIENT_ID, credentialSecretId: secretArn }).send(
      outbound(),
      sendContext(),
    );
    expect(peer.tokenRequests).toEqual([expect.objectContaining({ credential: 'secret', granted: true })]);
    expect(peer.delivered).toHaveLength(1);
  });

  it('reports an unfilled secret as provider-level, and picks the credential up once it is filled', async () => {
    const arn = secrets.putSecret('graph-later', JSON.stringify({ placeholder: 'fill me' }));
    const provider = coldStart({ credentialSecretId: arn });
    const failure = await failureOf(provider.send(outbound(), sendContext()));
    expect(failure).toMatchObject({
      failureClass: 'provider',
      code: 'GraphCredentialNotSet',
      provider: 'graph',
    });
    expect(failure.hint).toMatch(/GraphCredentialSecretArn/);

    secrets.putSecret(
      'graph-later',
      JSON.stringify({ certificate: certificate.certificatePem, privateKey: certificate.privateKeyPem }),
    );
    await provider.send(outbound(), sendContext());
    expect(peer.delivered).toHaveLength(1);
  });

  describe('classifies each Graph and Entra ID failure', () => {
    const cases = [
      { operation: 'sendMail', status: 503, code: 'ServiceUnavailable', failureClass: 'transient' },
      { operation: 'sendMail', status: 504, code: 'GatewayTimeout', failureClass: 'transient' },
      { operation: 'sendMail', status: 400, code: 'ErrorInvalidRecipients', failureClass: 'permanent' },
      { operation: 'sendMail', status: 403, code: 'ErrorSendAsDenied', failureClass: 'permanent' },
      { operation: 'sendMail', status: 403, code: 'ErrorAccessDenied', failureClass: 'provider' },
      { operation: 'sendMail', status: 404, code: 'MailboxNotEnabledForRESTAPI', failureClass: 'provider' },
      { operation: 'sendMail', status: 413, code: 'ErrorRequestEntityTooLarge', failureClass: 'permanent' },
      { operation: 'sendMail', status: 401, code: 'InvalidAuthenticationToken', failureClass: 'provider' },
    ] as const;
    it.each(cases)('$status $code → $failureClass', async ({ operation, status, code, failureClass }) => {
      peer.injectFault({ operation, status, code });
      const failure = await failureOf(coldStart().send(outbound(), sendContext()));
      expect(failure).toMatchObject({ failureClass, code, provider: 'graph' });
      expect(peer.delivered).toHaveLength(0);
    });

    it('401 invalid_client from Entra ID → provider-level, with the AADSTS code and a hint', async () => {
      peer.injectFault({ operation: 'token', status: 401, code: 'invalid_client' });
      const failure = await failureOf(coldStart().send(outbound(), sendContext()));
      expect(failure).toMatchObject({ failureClass: 'provider', code: 'AADSTS7000215', provider: 'graph' });
      expect(failure.reason).toMatch(/^Entra ID refused the token request: .*AADSTS7000215/);
      expect(failure.hint).toMatch(/client secret is wrong/);
      expect(peer.requests.some((request) => request.operation === 'sendMail')).toBe(false);
    });

    it('a wrong client secret is refused for real by the peer and lands in the same class', async () => {
      const arn = secrets.putSecret('graph-wrong', JSON.stringify({ clientSecret: 'not-the-secret' }));
      const failure = await failureOf(
        coldStart({ clientId: SECRET_CLIENT_ID, credentialSecretId: arn }).send(outbound(), sendContext()),
      );
      expect(failure).toMatchObject({ failureClass: 'provider', code: 'AADSTS7000215' });
    });

    it('reads the secret again after Entra ID refused it, so a rotated credential is picked up', async () => {
      const arn = secrets.putSecret('graph-rotated', JSON.stringify({ clientSecret: 'expired-secret' }));
      const provider = coldStart({ clientId: SECRET_CLIENT_ID, credentialSecretId: arn });
      await failureOf(provider.send(outbound(), sendContext()));
      secrets.putSecret('graph-rotated', JSON.stringify({ clientSecret: CLIENT_SECRET }));
      await provider.send(outbound(), sendContext());
      expect(peer.delivered).toHaveLength(1);
      expect(secrets.reads.get('graph-rotated')).toBe(2);
    });

    it('404 ErrorInvalidUser for a mailbox that does not exist → permanent', async () => {
      const failure = await failureOf(
        coldStart().send(outbound({ from: 'nobody@contoso.com' }), sendContext()),
      );
      expect(failure).toMatchObject({ failureClass: 'permanent', code: 'ErrorInvalidUser' });
      expect(failure.hint).toMatch(/shared mailbox/);
    });

    it('an unreachable Graph endpoint → transient network failure', async () => {
      const provider = coldStart();
      await provider.send(outbound(), sendContext()); // token cached
      const offline = new GraphProvider({
        settings: settings({ graphEndpoint: 'https://127.0.0.1:9' }),
        tokens: { getToken: async () => 'token' },
        transport,
      });
      const failure = await failureOf(offline.send(outbound(), sendContext()));
      expect(failure).toMatchObject({ failureClass: 'transient', code: 'ECONNREFUSED', provider: 'graph' });
    });
  });

  describe('Retry-After', () => {
    it('carries Retry-After and stops calling the throttled mailbox until it has passed', async () => {
      let now = Date.now();
      const provider = coldStart({}, { now: () => now });
      peer.injectFault({ operation: 'sendMail', status: 429, code: 'TooManyRequests', retryAfterSeconds: 7 });

      const throttled = await failureOf(provider.send(outbound(), sendContext()));
      expect(throttled).toMatchObject({
        failureClass: 'transient',
        code: 'TooManyRequests',
        retryAfterSeconds: 7,
      });

      const callsBefore = peer.requests.filter((request) => request.operation === 'sendMail').length;
      now += 3_000;
      const refused = await failureOf(provider.send(outbound(), sendContext()));
      expect(refused).toMatchObject({
        failureClass: 'transient',
        code: 'TooManyRequests',
        retryAfterSeconds: 4,
      });
      expect(peer.requests.filter((request) => request.operation === 'sendMail')).toHaveLength(callsBefore);

      // Other mailboxes are not held back.
      await provider.send(outbound({ from: 'crm@contoso.com' }), sendContext());

      now += 4_000;
      await provider.send(outbound(), sendContext());
      expect(peer.delivered.map((message) => message.mailbox)).toEqual([
        'crm@contoso.com',
        'billing@contoso.com',
      ]);
    });
  });

  describe('hand-off, lost answers and deadlines', () => {
    /** The relay's Graph transport with a short no-answer limit, as a nearly spent invocation has. */
    const impatient = (overrides: Partial<GraphSettings> = {}) => {
      const graph = settings(overrides);
      const quick = createHttpTransport({ ca: peer.caCertificate, timeoutMs: 300 });
      const credential = cachedCredential(graphSecretReader(secretsClient), graph.credentialSecretId);
      return new GraphProvider({
        settings: graph,
        tokens: new MsalTokenSource(graph, credential, quick),
        transport: quick,
      });
    };
    const sendMails = () => peer.requests.filter((request) => request.operation === 'sendMail');
    const withThreeMbAttachment = () =>
      outbound({
        attachments: [
          {
            filename: 'big.bin',
            contentType: 'application/octet-stream',
            content: patterned(3_500_000).toString('base64'),
          },
        ],
      });

    it('hands the message off right before sendMail is written, and sets the relay’s Message-ID', async () => {
      const order: string[] = [];
      const provider = coldStart();
      await provider.send(
        outbound(),
        sendContext({
          internetMessageId: '<relay-1@contoso.com>',
          handOff: async () => {
            order.push(`hand-off after ${sendMails().length} sendMail requests`);
          },
        }),
      );
      expect(order).toEqual(['hand-off after 0 sendMail requests']);
      expect(peer.delivered[0]?.internetMessageId).toBe('<relay-1@contoso.com>');
    });

    it('writes nothing when the hand-off is refused', async () => {
      // What the relay's hand-off rejects with when another function handed the message off first.
      const refused = new RelayFailure({
        failureClass: 'transient',
        code: 'InFlight',
        reason: 'claimed elsewhere',
      });
      const failure = await coldStart()
        .send(outbound(), sendContext({ handOff: () => Promise.reject(refused) }))
        .catch((error: unknown) => error);
      expect(failure).toBe(refused);
      expect(sendMails()).toHaveLength(0);
      expect(peer.delivered).toHaveLength(0);
    });

    it('says the message may be sent when Graph took sendMail and the answer never came', async () => {
      peer.injectFault({ operation: 'sendMail', lostAnswer: 'hang' });
      const failure = await failureOf(impatient().send(outbound(), sendContext()));
      expect(failure).toMatchObject({
        provider: 'graph',
        code: 'ETIMEDOUT',
        maybeSent: true,
        failureClass: 'transient',
      });
      expect(peer.delivered).toHaveLength(1);
    });

    it('says so too when the connection is reset after sendMail was written', async () => {
      peer.injectFault({ operation: 'sendMail', lostAnswer: 'reset' });
      const failure = await failureOf(coldStart().send(outbound(), sendContext()));
      expect(failure).toMatchObject({ code: 'ECONNRESET', maybeSent: true });
      expect(peer.delivered).toHaveLength(1);
    });

    it('knows nothing was sent when a lost answer was to a request that does not send (draft creation)', async () => {
      peer.injectFault({ operation: 'createDraft', lostAnswer: 'hang' });
      let handedOff = false;
      const failure = await failureOf(
        impatient().send(
          withThreeMbAttachment(),
          sendContext({
            handOff: async () => {
              handedOff = true;
            },
          }),
        ),
      );
      expect(failure).toMatchObject({ code: 'ETIMEDOUT', maybeSent: false });
      expect(handedOff).toBe(false);
      expect(peer.delivered).toHaveLength(0);
    });

    it('hands a large message off before the draft is sent, and keeps the draft when that answer is lost', async () => {
      peer.injectFault({ operation: 'sendDraft', lostAnswer: 'hang' });
      const failure = await failureOf(impatient().send(withThreeMbAttachment(), sendContext()));
      expect(failure).toMatchObject({ maybeSent: true });
      expect(peer.delivered).toHaveLength(1);
      // Deleting it would delete the sent copy the relay needs to find.
      expect(peer.requests.filter((request) => request.operation === 'deleteMessage')).toHaveLength(0);
    });

    it('stops at the deadline: before the request is written nothing was sent, after it maybe', async () => {
      const before = new AbortController();
      before.abort();
      const early = await failureOf(coldStart().send(outbound(), sendContext({ signal: before.signal })));
      expect(early).toMatchObject({ code: 'DeadlineExceeded', maybeSent: false });
      expect(sendMails()).toHaveLength(0);

      peer.injectFault({ operation: 'sendMail', lostAnswer: 'hang' });
      const late = new AbortController();
      const sending = coldStart().send(
        outbound(),
        sendContext({ signal: late.signal, handOff: async () => void setImmediate(() => late.abort()) }),
      );
      const failure = await failureOf(sending);
      expect(failure).toMatchObject({ code: 'DeadlineExceeded', maybeSent: true });
    });

    it('finds the sent copy in the mailbox by its Message-ID, and nothing for a message it never got', async () => {
      const provider = coldStart({ sentItemsLookupSeconds: 120 });
      expect(provider.lookupWindowSeconds).toBe(120);
      await provider.send(outbound(), sendContext({ internetMessageId: '<found@contoso.com>' }));
      const signal = new AbortController().signal;

      expect(
        await provider.findSent(
          { from: 'billing@contoso.com', internetMessageId: '<found@contoso.com>' },
          signal,
        ),
      ).toEqual({
        found: true,
        providerMessageId: '<found@contoso.com>',
      });
      expect(
        await provider.findSent(
          { from: 'billing@contoso.com', internetMessageId: "<n'one@contoso.com>" },
          signal,
        ),
      ).toEqual({
        found: false,
      });
    });

    it('cannot look without a copy in Sent Items, and says why when the app may not read the mailbox', async () => {
      expect(coldStart({ saveToSentItems: false, sentItemsLookupSeconds: 120 }).lookupWindowSeconds).toBe(0);
      peer.injectFault({ operation: 'findMessages', status: 403, code: 'ErrorAccessDenied' });
      const lookup = await coldStart({ sentItemsLookupSeconds: 120 }).findSent(
        { from: 'billing@contoso.com', internetMessageId: '<x@contoso.com>' },
        new AbortController().signal,
      );
      expect(lookup).toMatchObject({ unavailable: { code: 'ErrorAccessDenied', failureClass: 'provider' } });
    });
  });

  describe('raw messages (the application’s MIME)', () => {
    const INVITE = [
      'BEGIN:VCALENDAR',
      'METHOD:REQUEST',
      'PRODID:-//Contoso//Relay test//EN',
      'VERSION:2.0',
      'BEGIN:VEVENT',
      'UID:invoice-review-42@contoso.com',
      'DTSTART:20260301T100000Z',
      'DTEND:20260301T110000Z',
      'SUMMARY:Invoice review',
      'END:VEVENT',
      'END:VCALENDAR',
      '',
    ].join('\r\n');
    const APPLICATION_MESSAGE_ID = '<app.42@contoso.com>';

    /** MIME as the application's mailer writes it. */
    const applicationMime = (options: Partial<Mail.Options> = {}) =>
      new MailComposer({
        from: 'Billing <billing@contoso.com>',
        to: 'Ana <ana@example.org>',
        subject: 'Invoice 42',
        text: 'See attached.',
        messageId: APPLICATION_MESSAGE_ID,
        ...options,
      })
        .compile()
        .build();

    /** The message as the relay hands it to a provider: read, normalised, its envelope less suppressed recipients. */
    async function rawOutbound(
      mime: Buffer,
      envelope: string[],
      { suppressed = [] }: { suppressed?: string[] } = {},
    ): Promise<RawOutbound> {
      const parsed = parseMessage(
        JSON.stringify({
          v: 1,
          from: 'Billing <billing@contoso.com>',
          recipients: envelope,
          mime: { content: mime.toString('base64') },
        }),
        defaultMessageSchema,
      );
      if (!parsed.ok || !isRawMessage(parsed.message)) throw new Error('not a valid raw message');
      return resolveRawMessage(
        parsed.message,
        {
          recipients: parsed.message.recipients.filter((mailbox) => !suppressed.includes(mailbox.address)),
          headers: { [TRACE_HEADERS.messageId]: 'sqs-message-1' },
        },
        { maxMessageBytes: DEFAULT_MAX_MESSAGE_BYTES, now: new Date() },
      );
    }

    /** The MIME Graph received, parsed. */
    async function receivedMime(): Promise<ParsedMail> {
      const [delivered] = peer.delivered;
      expect(delivered?.via).toBe('mime');
      return simpleParser(delivered?.mime ?? Buffer.alloc(0), { keepCidLinks: true });
    }

    const addresses = (header: AddressObject | AddressObject[] | undefined) =>
      (header === undefined ? [] : Array.isArray(header) ? header : [header]).flatMap((object) =>
        object.value.map((mailbox) => mailbox.address),
      );
    const contextFor = (message: RawOutbound, overrides: Partial<SendContext> = {}) =>
      sendContext({ internetMessageId: message.messageId ?? '<relay-raw@contoso.com>', ...overrides });

    it('sends a PDF, a calendar invite and an inline image in one MIME sendMail, every part byte-identical', async () => {
      const pdf = patterned(200_000);
      const logo = patterned(3_000);
      const message = await rawOutbound(
        await applicationMime({
          html: '<p>Invoice <img src="cid:logo@contoso.com"></p>',
          icalEvent: { method: 'REQUEST', content: INVITE },
          attachments: [
            { filename: 'invoice.pdf', contentType: 'application/pdf', content: pdf },
            { filename: 'logo.png', contentType: 'image/png', content: logo, cid: 'logo@contoso.com' },
          ],
        }),
        ['ana@example.org'],
      );

      await coldStart().send(message, contextFor(message));

      expect(peer.requests.map((request) => request.operation)).toEqual(['token', 'sendMail']);
      const received = await receivedMime();
      const part = (contentType: string) =>
        received.attachments.find((attachment) => attachment.contentType === contentType);
      expect(part('application/pdf')?.content.equals(pdf)).toBe(true);
      expect(part('image/png')).toMatchObject({ cid: 'logo@contoso.com', related: true });
      expect(part('image/png')?.content.equals(logo)).toBe(true);
      expect(part('text/calendar')?.content.equals(Buffer.from(INVITE))).toBe(true);
      expect(received.html).toBe('<p>Invoice <img src="cid:logo@contoso.com"></p>');
    });

    it('carries the relay’s trace header and the application’s Message-ID in the MIME Graph gets', async () => {
      const message = await rawOutbound(await applicationMime(), ['ana@example.org']);

      await coldStart().send(message, contextFor(message));

      const received = await receivedMime();
      expect(received.messageId).toBe(APPLICATION_MESSAGE_ID);
      expect(received.headers.get(TRACE_HEADERS.messageId.toLowerCase())).toBe('sqs-message-1');
      expect(peer.delivered[0]?.internetMessageId).toBe(APPLICATION_MESSAGE_ID);
    });

    it('lists envelope recipients the headers do not show in the Bcc header Graph gets', async () => {
      const message = await rawOutbound(await applicationMime({ to: 'ana@example.org' }), [
        'ana@example.org',
        'audit@example.org',
      ]);

      await coldStart().send(message, contextFor(message));

      const received = await receivedMime();
      expect(addresses(received.bcc)).toEqual(['audit@example.org']);
      expect(addresses(received.to)).toEqual(['ana@example.org']);
    });

    it('shows in To and Cc only the recipients that are in the envelope', async () => {
      const message = await rawOutbound(
        await applicationMime({
          to: ['ana@example.org', 'not-sent@example.org'],
          cc: ['bo@example.org', 'not-sent-either@example.org'],
        }),
        ['ana@example.org', 'bo@example.org'],
      );

      await coldStart().send(message, contextFor(message));

      const received = await receivedMime();
      expect(addresses(received.to)).toEqual(['ana@example.org']);
      expect(addresses(received.cc)).toEqual(['bo@example.org']);
    });

    it('leaves a suppressed To recipient out of the To header Graph gets', async () => {
      const message = await rawOutbound(
        await applicationMime({ to: ['ana@example.org', 'bounced@example.org'] }),
        ['ana@example.org', 'bounced@example.org'],
        { suppressed: ['bounced@example.org'] },
      );

      await coldStart().send(message, contextFor(message));

      const received = await receivedMime();
      expect(addresses(received.to)).toEqual(['ana@example.org']);
      expect([...addresses(received.cc), ...addresses(received.bcc)]).not.toContain('bounced@example.org');
    });

    it('sends a raw message over 4 MB through a draft and an upload session, attachment bytes intact', async () => {
      const scan = patterned(3_500_000);
      const logo = patterned(3_000);
      const message = await rawOutbound(
        await applicationMime({
          to: 'Ana <ana@example.org>',
          cc: 'bo@example.org',
          html: '<p>Scan <img src="cid:logo@contoso.com"></p>',
          icalEvent: { method: 'REQUEST', content: INVITE },
          attachments: [
            { filename: 'scan.tiff', contentType: 'image/tiff', content: scan },
            { filename: 'logo.png', contentType: 'image/png', content: logo, cid: 'logo@contoso.com' },
          ],
        }),
        ['ana@example.org', 'bo@example.org', 'audit@example.org'],
      );

      await coldStart().send(message, contextFor(message));

      const operations = peer.requests.map((request) => request.operation);
      expect(operations).not.toContain('sendMail');
      expect(operations).toContain('uploadChunk');
      expect(operations.at(-1)).toBe('sendDraft');
      const [delivered] = peer.delivered;
      expect(delivered).toMatchObject({ via: 'draft', internetMessageId: APPLICATION_MESSAGE_ID });
      expect(delivered?.message).toMatchObject({
        subject: 'Invoice 42',
        toRecipients: [{ emailAddress: { address: 'ana@example.org', name: 'Ana' } }],
        ccRecipients: [{ emailAddress: { address: 'bo@example.org' } }],
        bccRecipients: [{ emailAddress: { address: 'audit@example.org' } }],
      });
      const byName = new Map(
        (delivered?.attachments ?? []).map((attachment) => [attachment.name, attachment]),
      );
      expect(byName.get('scan.tiff')?.via).toBe('uploadSession');
      expect(byName.get('scan.tiff')?.bytes.equals(scan)).toBe(true);
      expect(byName.get('logo.png')).toMatchObject({ isInline: true, contentId: 'logo@contoso.com' });
      expect(byName.get('logo.png')?.bytes.equals(logo)).toBe(true);
      expect(byName.get('invite.ics')?.bytes.equals(Buffer.from(INVITE))).toBe(true);
      expect(peer.openDrafts()).toBe(0);
    });

    it('hands a raw message off right before its MIME sendMail is written', async () => {
      const message = await rawOutbound(await applicationMime(), ['ana@example.org']);
      const order: string[] = [];

      await coldStart().send(
        message,
        contextFor(message, {
          handOff: async () => {
            order.push(
              `hand-off after ${peer.requests.filter((r) => r.operation === 'sendMail').length} sendMail`,
            );
          },
        }),
      );

      expect(order).toEqual(['hand-off after 0 sendMail']);
      expect(peer.delivered).toHaveLength(1);
    });

    it('writes no MIME when the hand-off is refused', async () => {
      const message = await rawOutbound(await applicationMime(), ['ana@example.org']);
      const refused = new RelayFailure({
        failureClass: 'transient',
        code: 'InFlight',
        reason: 'claimed elsewhere',
      });

      const failure = await coldStart()
        .send(message, contextFor(message, { handOff: () => Promise.reject(refused) }))
        .catch((error: unknown) => error);

      expect(failure).toBe(refused);
      expect(peer.requests.filter((request) => request.operation === 'sendMail')).toHaveLength(0);
      expect(peer.delivered).toHaveLength(0);
    });

    it('finds a MIME-sent message by its own Message-ID after the sendMail answer was lost', async () => {
      peer.injectFault({ operation: 'sendMail', lostAnswer: 'reset' });
      const provider = coldStart({ sentItemsLookupSeconds: 120 });
      const message = await rawOutbound(await applicationMime(), ['ana@example.org']);

      const failure = await failureOf(provider.send(message, contextFor(message)));
      const lookup = await provider.findSent(
        { from: 'billing@contoso.com', internetMessageId: APPLICATION_MESSAGE_ID },
        new AbortController().signal,
      );

      expect(failure).toMatchObject({ code: 'ECONNRESET', maybeSent: true });
      expect(lookup).toEqual({ found: true, providerMessageId: APPLICATION_MESSAGE_ID });
    });
  });
});

describe('GraphProvider concurrency per mailbox', () => {
  let peer: GraphPeer;
  let provider: GraphProvider;

  beforeAll(async () => {
    // Latency makes requests overlap, so a missing limit would show as more than 4 in flight.
    peer = await startGraphPeer({
      tenantId: TENANT,
      clients: [{ clientId: SECRET_CLIENT_ID, clientSecret: CLIENT_SECRET }],
      latencyMs: 40,
    });
    const transport = createHttpTransport({ ca: peer.caCertificate });
    const graph = {
      tenantId: TENANT,
      clientId: SECRET_CLIENT_ID,
      senders: ['contoso.com'],
      saveToSentItems: true,
      authorityHost: peer.authorityHost,
      graphEndpoint: peer.graphEndpoint,
    };
    provider = new GraphProvider({
      settings: graph,
      tokens: new MsalTokenSource(
        graph,
        { get: async () => ({ kind: 'secret', clientSecret: CLIENT_SECRET }), invalidate: () => {} },
        transport,
      ),
      transport,
    });
  });
  afterAll(() => peer.close());

  it('never has more than 4 requests in flight for one mailbox, while other mailboxes proceed', async () => {
    const billing = Array.from({ length: 24 }, (_, index) => outbound({ subject: `Billing ${index}` }));
    const ops = Array.from({ length: 8 }, (_, index) =>
      outbound({ from: 'ops@contoso.com', subject: `Ops ${index}` }),
    );
    // A large message's draft, upload chunks and send count against the same mailbox limit.
    const large = outbound({
      attachments: [{ filename: 'big.bin', content: patterned(7 * 1024 * 1024).toString('base64') }],
    });
    await Promise.all([...billing, ...ops, large].map((message) => provider.send(message, sendContext())));

    expect(peer.delivered).toHaveLength(33);
    expect(peer.maxConcurrency('billing@contoso.com')).toBe(4);
    expect(peer.maxConcurrency('ops@contoso.com')).toBe(4);
  });
});
