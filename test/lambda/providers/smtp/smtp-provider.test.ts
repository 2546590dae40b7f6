import { type AddressObject, simpleParser } from 'mailparser';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { inlineAttachments, type OutboundMessage } from '../../../../lambda/core/attachments.ts';
import { RelayFailure } from '../../../../lambda/core/failures.ts';
import { type ComposedMessage, defaultMessageSchema, parseMessage } from '../../../../lambda/core/message.ts';
import { MsalTokenSource } from '../../../../lambda/providers/graph/token-source.ts';
import { createHttpTransport } from '../../../../lambda/providers/http-transport.ts';
import type { SmtpSettings } from '../../../../lambda/providers/smtp/settings.ts';
import { parseSmtpCredentials } from '../../../../lambda/providers/smtp/smtp-credentials.ts';
import { SmtpProvider, type SmtpProviderOptions } from '../../../../lambda/providers/smtp/smtp-provider.ts';
import { type GraphPeer, startGraphPeer } from '../../../../local/peers/graph-peer.ts';
import { type SmtpPeer, type SmtpPeerOptions, startSmtpPeer } from '../../../../local/peers/smtp-peer.ts';
import { failureOf } from '../../../helpers/failures.ts';
import { sendContext } from '../../../helpers/scripted-relay.ts';

function outbound(fields: Record<string, unknown> = {}): OutboundMessage {
  const parsed = parseMessage(
    JSON.stringify({
      v: 1,
      from: 'Scanner <scanner@contoso.com>',
      to: ['ana@example.org'],
      subject: 'Scan 7',
      text: 'Scan attached.',
      ...fields,
    }),
    defaultMessageSchema,
  );
  if (!parsed.ok) throw new Error(parsed.problems.join('; '));
  return inlineAttachments(parsed.message as ComposedMessage);
}

/** What the credential cache throws for the placeholder secret. */
const parseFailure = () => {
  try {
    parseSmtpCredentials('{"placeholder":"x"}');
  } catch (error) {
    return error as Error;
  }
  throw new Error('expected the placeholder to be refused');
};

const addresses = (header: AddressObject | AddressObject[] | undefined) =>
  [header ?? []].flat().flatMap((group) => group.value.map((mailbox) => mailbox.address));

describe('SmtpProvider against the local SMTP peer', () => {
  const peers: SmtpPeer[] = [];
  const providers: SmtpProvider[] = [];
  afterEach(() => {
    for (const provider of providers.splice(0)) provider.close();
  });
  afterAll(() => Promise.all(peers.map((peer) => peer.close())));

  async function peer(options: SmtpPeerOptions = {}): Promise<SmtpPeer> {
    const started = await startSmtpPeer(options);
    peers.push(started);
    return started;
  }

  function provider(
    smtpPeer: SmtpPeer,
    settings: Partial<SmtpSettings> = {},
    options: Partial<SmtpProviderOptions> = {},
  ): SmtpProvider {
    const created = new SmtpProvider({
      settings: {
        name: 'smtp',
        senders: ['contoso.com'],
        mode: 'connector',
        host: smtpPeer.host,
        port: smtpPeer.port,
        tls: 'starttls',
        requireTls: true,
        auth: 'none',
        maxConnections: 2,
        ...settings,
      },
      ca: smtpPeer.caCertificate,
      connectionTimeoutMs: 3_000,
      ...options,
    });
    providers.push(created);
    return created;
  }

  describe('connector mode (Exchange Online inbound connector: port 25, STARTTLS, no AUTH)', () => {
    let connector: SmtpPeer;
    beforeAll(async () => {
      connector = await peer({ tls: 'starttls', requireTls: true });
    });
    afterEach(() => connector.reset());

    it('delivers over STARTTLS with the envelope (Bcc included) and the message intact', async () => {
      const pdf = Buffer.from('%PDF-1.7 scan bytes \u0000\u00ff');
      const receipt = await provider(connector).send(
        outbound({
          cc: 'Ops <ops@example.org>',
          bcc: 'audit@example.org',
          headers: { 'X-Scanner': 'floor-2' },
          attachments: [
            { filename: 'scan.pdf', contentType: 'application/pdf', content: pdf.toString('base64') },
          ],
        }),
        sendContext(),
      );

      expect(receipt).toMatchObject({ provider: 'smtp' });
      expect(receipt.rejectedRecipients).toBeUndefined();
      const [received] = connector.received;
      expect(received?.secure).toBe(true);
      expect(received?.authenticatedUser).toBeUndefined();
      expect(received?.envelope).toEqual({
        mailFrom: 'scanner@contoso.com',
        rcptTo: ['ana@example.org', 'ops@example.org', 'audit@example.org'],
      });
      const mail = await simpleParser(received?.raw ?? Buffer.alloc(0));
      expect(mail.subject).toBe('Scan 7');
      expect(mail.from?.value[0]).toMatchObject({ name: 'Scanner', address: 'scanner@contoso.com' });
      expect(addresses(mail.cc)).toEqual(['ops@example.org']);
      expect(mail.headers.has('bcc')).toBe(false);
      expect(mail.headers.get('x-scanner')).toBe('floor-2');
      expect(mail.attachments[0]?.content.equals(pdf)).toBe(true);
    });

    it('reuses pooled connections for several messages', async () => {
      const relay = provider(connector);
      await Promise.all(
        [1, 2, 3, 4, 5].map((n) => relay.send(outbound({ subject: `Pooled ${n}` }), sendContext())),
      );
      expect(connector.received).toHaveLength(5);
      expect(connector.connections).toBeLessThanOrEqual(2);
    });

    it('refuses to send in clear text when the server offers no STARTTLS', async () => {
      const plain = await peer({ tls: 'none' });
      const failure = await failureOf(provider(plain).send(outbound(), sendContext()));
      expect(failure).toMatchObject({ failureClass: 'provider', code: 'TlsFailed', provider: 'smtp' });
      expect(plain.received).toHaveLength(0);
    });

    it('verifies the server certificate (an untrusted one is a TLS failure)', async () => {
      const failure = await failureOf(
        provider(connector, {}, { ca: undefined }).send(outbound(), sendContext()),
      );
      expect(failure).toMatchObject({ failureClass: 'provider', code: 'TlsFailed' });
    });

    it.each([
      [
        'connect',
        '550 5.7.708 Service unavailable. Access denied, traffic not accepted from this IP.',
        '5.7.708',
        'provider',
      ],
      [
        'mailFrom',
        '550 5.7.708 Service unavailable. Access denied, traffic not accepted from this IP.',
        '5.7.708',
        'provider',
      ],
      ['mailFrom', '550 5.7.64 TenantAttribution; Relay Access Denied', '5.7.64', 'provider'],
      ['mailFrom', '451 4.7.500 Server busy. Please try again later.', '4.7.500', 'transient'],
      [
        'mailFrom',
        '550 5.7.1 Client does not have permissions to send as this sender',
        'SendAsDenied',
        'permanent',
      ],
    ] as const)('a %s rejection "%s" is %s (%s) with a hint', async (stage, reply, code, failureClass) => {
      connector.reject({ stage, reply });
      const failure = await failureOf(provider(connector).send(outbound(), sendContext()));
      expect(failure).toMatchObject({ code, failureClass, provider: 'smtp' });
      expect(failure.reason).toContain(reply.slice(4));
      expect(failure.hint).toBeTruthy();
      expect(connector.received).toHaveLength(0);
    });

    it('reports one refused recipient of three and delivers to the other two', async () => {
      connector.reject({ stage: 'rcptTo', address: 'gone@example.org', reply: '550 5.1.1 User unknown' });
      const receipt = await provider(connector).send(
        outbound({ to: ['ana@example.org', 'gone@example.org', 'bob@example.org'] }),
        sendContext(),
      );
      expect(receipt.rejectedRecipients).toEqual([
        { address: 'gone@example.org', reason: '550 5.1.1 User unknown' },
      ]);
      expect(connector.received[0]?.envelope.rcptTo).toEqual(['ana@example.org', 'bob@example.org']);
    });

    it('refuses a message above smtp.maxMessageBytes without connecting', async () => {
      const connectionsBefore = connector.connections;
      const failure = await failureOf(
        provider(connector, { maxMessageBytes: 2048 }).send(
          outbound({
            attachments: [{ filename: 'big.bin', content: Buffer.alloc(4096).toString('base64') }],
          }),
          sendContext(),
        ),
      );
      expect(failure).toMatchObject({ code: 'MessageTooLarge', failureClass: 'permanent', provider: 'smtp' });
      expect(failure.reason).toMatch(/takes at most 2048 \(smtp\.maxMessageBytes\)/);
      expect(connector.connections).toBe(connectionsBefore);
    });

    it('fails permanently when every recipient is refused', async () => {
      connector.reject({ stage: 'rcptTo', address: 'gone@example.org', reply: '550 5.1.1 User unknown' });
      const failure = await failureOf(
        provider(connector).send(outbound({ to: 'gone@example.org' }), sendContext()),
      );
      expect(failure).toMatchObject({ code: '5.1.1', failureClass: 'permanent' });
    });
  });

  describe('addresses beyond ASCII (SMTPUTF8, RFC 6531)', () => {
    let offering: SmtpPeer;
    let refusing: SmtpPeer;
    beforeAll(async () => {
      offering = await peer();
      refusing = await peer({ smtpUtf8: false });
    });
    afterEach(() => {
      offering.reset();
      refusing.reset();
    });

    it('says SMTPUTF8 in MAIL FROM for a recipient with a non-ASCII local part when the server offers it', async () => {
      await provider(offering).send(outbound({ to: 'josé@example.org' }), sendContext());

      expect(offering.received[0]?.smtpUtf8).toBe(true);
      expect(offering.received[0]?.envelope.rcptTo).toEqual(['josé@example.org']);
    });

    it('says SMTPUTF8 in MAIL FROM for a From with a non-ASCII local part when the server offers it', async () => {
      await provider(offering).send(outbound({ from: 'José <josé@contoso.com>' }), sendContext());

      expect(offering.received[0]?.smtpUtf8).toBe(true);
      expect(offering.received[0]?.envelope.mailFrom).toBe('josé@contoso.com');
    });

    it('does not say SMTPUTF8 when every address is ASCII', async () => {
      await provider(offering).send(outbound(), sendContext());

      expect(offering.received[0]?.smtpUtf8).toBe(false);
    });

    it('sends an international domain as punycode to a server without SMTPUTF8', async () => {
      await provider(refusing).send(outbound({ to: 'ana@bücher.de' }), sendContext());

      const [received] = refusing.received;
      expect(received?.smtpUtf8).toBe(false);
      // The peer (and mailparser) show the domain in Unicode again; the header as sent is punycode.
      expect(received?.raw.toString('latin1')).toMatch(/^To: ana@xn--bcher-kva\.de\r$/m);
    });

    it('refuses a non-ASCII local part before MAIL FROM, handing nothing off, when the server does not offer SMTPUTF8', async () => {
      const handOff = vi.fn(async () => undefined);

      const failure = await failureOf(
        provider(refusing).send(
          outbound({ to: ['ana@example.org', 'josé@example.org'] }),
          sendContext({ handOff }),
        ),
      );

      expect(failure).toMatchObject({
        failureClass: 'provider',
        code: 'AddressNotSupported',
        provider: 'smtp',
      });
      expect(failure.reason).toBe(
        `recipient josé@example.org: 127.0.0.1:${refusing.port} does not offer SMTPUTF8, which a non-ASCII local part needs`,
      );
      expect(failure.hint).toMatch(/does not offer SMTPUTF8/);
      expect(handOff).not.toHaveBeenCalled();
      expect(refusing.transcript.map((entry) => entry.stage)).toEqual(['connect', 'starttls']);
      expect(refusing.received).toHaveLength(0);
    });

    it('names the From when it is the address the server cannot take', async () => {
      const failure = await failureOf(
        provider(refusing).send(outbound({ from: 'josé@contoso.com' }), sendContext()),
      );

      expect(failure.reason).toMatch(/^from josé@contoso\.com: /);
    });

    it('keeps the session for the next message after refusing an address', async () => {
      const relay = provider(refusing);
      await failureOf(relay.send(outbound({ to: 'josé@example.org' }), sendContext()));

      await relay.send(outbound(), sendContext());

      expect(refusing.received).toHaveLength(1);
      expect(refusing.connections).toBe(1);
    });
  });

  describe('hand-off, lost answers and deadlines', () => {
    let server: SmtpPeer;
    beforeAll(async () => {
      server = await peer({ tls: 'none' });
    });
    afterEach(() => server.reset());
    const plainText = (options: Partial<SmtpProviderOptions> = {}) =>
      provider(
        server,
        { tls: 'none', requireTls: false, mode: 'smarthost' },
        { connectionTimeoutMs: 300, ...options },
      );

    it('hands off only once the server accepted DATA, and carries the relay’s Message-ID', async () => {
      const stages: string[] = [];
      await plainText().send(
        outbound(),
        sendContext({
          internetMessageId: '<relay-2@contoso.com>',
          handOff: async () => {
            stages.push(server.transcript.map((entry) => entry.stage).join(','));
          },
        }),
      );
      expect(stages[0]).toMatch(/mailFrom,rcptTo/);
      const mail = await simpleParser(server.received[0]?.raw ?? Buffer.alloc(0));
      expect(mail.messageId).toBe('<relay-2@contoso.com>');
    });

    it('sends no data and drops the session when the hand-off is refused', async () => {
      const refused = new RelayFailure({
        failureClass: 'transient',
        code: 'InFlight',
        reason: 'claimed elsewhere',
      });
      const relay = plainText();
      const failure = await relay
        .send(outbound(), sendContext({ handOff: () => Promise.reject(refused) }))
        .catch((error: unknown) => error);
      expect(failure).toBe(refused);
      expect(server.received).toHaveLength(0);
      // The next message gets a fresh session, not the one left inside DATA.
      await relay.send(outbound({ subject: 'next' }), sendContext());
      expect(server.received).toHaveLength(1);
      expect(server.connections).toBe(2);
    });

    it('says the message may be sent when the server took all of it and never replied', async () => {
      server.reject({ stage: 'data', lostReply: 'hang' });
      const failure = await failureOf(plainText().send(outbound(), sendContext()));
      expect(failure).toMatchObject({ provider: 'smtp', maybeSent: true, failureClass: 'transient' });
      expect(server.received).toHaveLength(1);
    });

    it('says so too when the server drops the connection instead of replying to the end of data', async () => {
      server.reject({ stage: 'data', lostReply: 'close' });
      const failure = await failureOf(plainText().send(outbound(), sendContext()));
      expect(failure).toMatchObject({ code: 'NoReplyAfterData', maybeSent: true });
    });

    it('knows a refusal at the end of data was no send', async () => {
      server.reject({ stage: 'data', reply: '451 4.3.0 Temporary server error' });
      const failure = await failureOf(plainText().send(outbound(), sendContext()));
      expect(failure).toMatchObject({ code: '4.3.0', maybeSent: false, failureClass: 'transient' });
    });

    it('stops at the deadline: before the data nothing was sent, after it maybe', async () => {
      const before = new AbortController();
      before.abort();
      const early = await failureOf(plainText().send(outbound(), sendContext({ signal: before.signal })));
      expect(early).toMatchObject({ code: 'DeadlineExceeded', maybeSent: false });

      server.reject({ stage: 'data', lostReply: 'hang' });
      const late = new AbortController();
      const waiting = plainText({ connectionTimeoutMs: 60_000 }).send(
        outbound(),
        sendContext({ signal: late.signal }),
      );
      await vi.waitUntil(() => server.received.length === 1, { timeout: 60_000 });
      late.abort();
      expect(await failureOf(waiting)).toMatchObject({ code: 'DeadlineExceeded', maybeSent: true });
    });
  });

  describe('a named connection (its own provider name and session pool)', () => {
    let server: SmtpPeer;
    beforeAll(async () => {
      server = await peer({ tls: 'none' });
    });
    afterEach(() => server.reset());
    const named = (settings: Partial<SmtpSettings> = {}) =>
      provider(server, {
        name: 'smtp:billing-ovh',
        mode: 'smarthost',
        tls: 'none',
        requireTls: false,
        ...settings,
      });

    /**
     * Hand-offs that each wait (inside DATA, holding their session) until `sessions` transactions are
     * there at once; after 5 s they give up, saying how many there were, so a smaller pool fails the
     * test instead of hanging it.
     */
    function handOffsHeldUntil(sessions: number): () => Promise<void> {
      let inside = 0;
      let allInside: () => void = () => undefined;
      const together = new Promise<void>((resolve) => {
        allInside = resolve;
      });
      return async () => {
        inside += 1;
        if (inside >= sessions) allInside();
        await Promise.race([
          together,
          new Promise((_, reject) =>
            setTimeout(() => reject(new Error(`only ${inside} of ${sessions} sessions at once`)), 5_000),
          ),
        ]);
      };
    }

    it.each([4, 10])(
      'opens up to maxConnections (%i) sessions for 10 concurrent sends, not 2',
      async (maxConnections) => {
        const relay = named({ maxConnections });
        const handOff = handOffsHeldUntil(maxConnections);

        await Promise.all(
          Array.from({ length: 10 }, (_, n) =>
            relay.send(outbound({ subject: `Concurrent ${n}` }), sendContext({ handOff })),
          ),
        );

        expect(server.received).toHaveLength(10);
        expect(server.connections).toBe(maxConnections);
      },
    );

    it('names its receipts and its failures by the connection, classified by the smtp rules', async () => {
      const relay = named();
      expect(relay.name).toBe('smtp:billing-ovh');

      const receipt = await relay.send(outbound(), sendContext());
      server.reject({
        stage: 'mailFrom',
        reply: '550 5.7.708 Service unavailable. Access denied, traffic not accepted from this IP.',
      });
      const failure = await failureOf(relay.send(outbound({ subject: 'Refused' }), sendContext()));

      expect(receipt.provider).toBe('smtp:billing-ovh');
      expect(failure).toMatchObject({
        provider: 'smtp:billing-ovh',
        code: '5.7.708',
        failureClass: 'provider',
        hint: expect.stringContaining('inbound connector'),
      });
    });

    it('names its own maxMessageBytes when it refuses a message before connecting', async () => {
      const failure = await failureOf(
        named({ maxMessageBytes: 1024 }).send(outbound({ text: 'x'.repeat(5_000) }), sendContext()),
      );

      expect(failure).toMatchObject({ provider: 'smtp:billing-ovh', code: 'MessageTooLarge' });
      expect(failure.reason).toContain('(smtp.connections.billing-ovh.maxMessageBytes)');
      expect(server.connections).toBe(0);
    });
  });

  describe('smarthost mode (user and password from Secrets Manager)', () => {
    let smarthost: SmtpPeer;
    beforeAll(async () => {
      smarthost = await peer({
        tls: 'starttls',
        authMethods: ['PLAIN', 'LOGIN'],
        users: [{ username: 'relay-user', password: 'relay-pass' }],
      });
    });

    it.each(['plain', 'login'] as const)('authenticates with AUTH %s', async (auth) => {
      smarthost.reset();
      await provider(
        smarthost,
        { mode: 'smarthost', port: smarthost.port, auth },
        { credentials: async () => ({ username: 'relay-user', password: 'relay-pass' }) },
      ).send(outbound(), sendContext());
      expect(smarthost.received[0]).toMatchObject({
        authenticatedUser: 'relay-user',
        authMethod: auth.toUpperCase(),
      });
    });

    it('classifies refused credentials as provider-level', async () => {
      const failure = await failureOf(
        provider(
          smarthost,
          { mode: 'smarthost', auth: 'plain' },
          { credentials: async () => ({ username: 'relay-user', password: 'wrong' }) },
        ).send(outbound(), sendContext()),
      );
      expect(failure).toMatchObject({ code: 'AuthenticationFailed', failureClass: 'provider' });
    });

    it('passes an unreadable credential on as the credential failure, and retries reading it', async () => {
      let reads = 0;
      const relay = provider(
        smarthost,
        { mode: 'smarthost', auth: 'plain' },
        {
          credentials: async () => {
            reads += 1;
            if (reads === 1) throw parseFailure();
            return { username: 'relay-user', password: 'relay-pass' };
          },
        },
      );
      const failure = await failureOf(relay.send(outbound(), sendContext()));
      expect(failure).toMatchObject({
        code: 'SmtpCredentialNotSet',
        failureClass: 'provider',
        provider: 'smtp',
      });
      await relay.send(outbound({ subject: 'After the secret was filled' }), sendContext());
      expect(reads).toBe(2);
    });

    it('speaks implicit TLS (port 465 style)', async () => {
      const implicit = await peer({ tls: 'implicit' });
      await provider(implicit, { mode: 'smarthost', tls: 'implicit' }).send(outbound(), sendContext());
      expect(implicit.received[0]?.secure).toBe(true);
    });
  });

  describe('submission mode (Microsoft 365, XOAUTH2 with a token from Entra ID)', () => {
    const tenantId = 'contoso.onmicrosoft.com';
    const clientId = '5a4b3c2d-0000-4000-8000-00000000abcd';
    const clientSecret = `smtp-test-${Math.random().toString(36).slice(2)}`;
    let graphPeer: GraphPeer;
    let submission: SmtpPeer;

    beforeAll(async () => {
      graphPeer = await startGraphPeer({ tenantId, clients: [{ clientId, clientSecret }] });
      submission = await peer({
        tls: 'starttls',
        authMethods: ['XOAUTH2'],
        verifyBearerToken: (token) => graphPeer.isIssuedToken(token) !== undefined,
      });
    });
    afterAll(() => graphPeer.close());

    /** Tokens from the Entra ID peer, as the relay gets them from the Graph app registration. */
    const tokenSource = () =>
      new MsalTokenSource(
        {
          tenantId,
          clientId,
          authorityHost: graphPeer.authorityHost,
          graphEndpoint: graphPeer.graphEndpoint,
        },
        { get: async () => ({ kind: 'secret', clientSecret }), invalidate: () => {} },
        createHttpTransport({ ca: graphPeer.caCertificate }),
      );

    it('authenticates as the sending mailbox with a token the token endpoint issued', async () => {
      const tokens = tokenSource();
      const relay = provider(submission, { mode: 'submission', auth: 'xoauth2' }, { tokens });
      await relay.send(outbound(), sendContext());
      await relay.send(outbound({ from: 'billing@contoso.com' }), sendContext());

      expect(submission.received.map((message) => message.authenticatedUser)).toEqual([
        'scanner@contoso.com',
        'billing@contoso.com',
      ]);
      expect(submission.received.every((message) => message.authMethod === 'XOAUTH2')).toBe(true);
      expect(graphPeer.tokenRequests).toHaveLength(1);
    });

    it('sends concurrently from one mailbox over pooled connections', async () => {
      submission.reset();
      const tokens = tokenSource();
      const relay = provider(submission, { mode: 'submission', auth: 'xoauth2' }, { tokens });
      await Promise.all(
        [1, 2, 3, 4, 5, 6].map((n) => relay.send(outbound({ subject: `Concurrent ${n}` }), sendContext())),
      );
      expect(submission.received).toHaveLength(6);
      expect(submission.connections).toBeLessThanOrEqual(2);
    });

    it('reports a token Entra ID refuses as the Entra ID failure, before connecting', async () => {
      graphPeer.injectFault({ operation: 'token', status: 401, code: 'invalid_client' });
      const tokens = tokenSource();
      const connectionsBefore = submission.connections;
      const failure = await failureOf(
        provider(submission, { mode: 'submission', auth: 'xoauth2' }, { tokens }).send(
          outbound(),
          sendContext(),
        ),
      );
      expect(failure).toMatchObject({ code: 'AADSTS7000215', failureClass: 'provider', provider: 'graph' });
      expect(submission.connections).toBe(connectionsBefore);
    });

    it('is refused with a token the token endpoint did not issue', async () => {
      const failure = await failureOf(
        provider(
          submission,
          { mode: 'submission', auth: 'xoauth2' },
          { tokens: { getToken: async () => 'forged' } },
        ).send(outbound(), sendContext()),
      );
      expect(failure).toMatchObject({ code: 'AuthenticationFailed', failureClass: 'provider' });
    });
  });
});
