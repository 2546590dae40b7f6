import { randomBytes } from 'node:crypto';
import { request as httpsRequest } from 'node:https';
import { connect as netConnect } from 'node:net';
import { simpleParser } from 'mailparser';
import { createTransport } from 'nodemailer';
import SMTPConnection from 'nodemailer/lib/smtp-connection';
import type SMTPTransport from 'nodemailer/lib/smtp-transport';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { startGraphPeer } from '../../../local/peers/graph-peer.ts';
import {
  type SmtpFaultContext,
  type SmtpPeer,
  type SmtpPeerOptions,
  type SmtpStage,
  startSmtpPeer,
} from '../../../local/peers/smtp-peer.ts';

const FROM = 'noreply@contoso.com';
const TO = 'alice@fabrikam.com';

type SendError = Error & {
  code?: string;
  command?: string;
  responseCode?: number;
  response?: string;
  rejected?: string[];
  rejectedErrors?: SendError[];
};

const peers: SmtpPeer[] = [];
afterEach(async () => {
  await Promise.all(peers.splice(0).map((peer) => peer.close()));
});

async function peerWith(options: SmtpPeerOptions = {}): Promise<SmtpPeer> {
  const peer = await startSmtpPeer(options);
  peers.push(peer);
  return peer;
}

function transportFor(peer: SmtpPeer, extra: SMTPTransport.Options = {}) {
  return createTransport({
    host: peer.host,
    port: peer.port,
    secure: false,
    tls: { ca: peer.caCertificate, servername: 'localhost' },
    connectionTimeout: 5000,
    greetingTimeout: 5000,
    socketTimeout: 5000,
    ...extra,
  });
}

async function sendError(promise: Promise<unknown>): Promise<SendError> {
  try {
    await promise;
  } catch (error) {
    return error as SendError;
  }
  throw new Error('expected the send to fail');
}

/** A raw exchange: writes each command after the previous reply, returns every reply line block. */
async function rawExchange(port: number, commands: string[]): Promise<string[]> {
  const socket = netConnect(port, '127.0.0.1');
  const replies: string[] = [];
  let buffer = '';
  let pending = ['', ...commands];
  await new Promise<void>((resolve, reject) => {
    socket.on('error', reject);
    socket.on('data', (chunk: Buffer) => {
      buffer += chunk.toString('latin1');
      // A complete reply ends with a line "ddd <text>\r\n".
      while (/(^|\r\n)\d{3} [^\r\n]*\r\n/.test(buffer)) {
        const end = buffer.search(/(^|\r\n)\d{3} [^\r\n]*\r\n/);
        const stop = buffer.indexOf('\r\n', end + (end === 0 ? 0 : 2)) + 2;
        replies.push(buffer.slice(0, stop).trimEnd());
        buffer = buffer.slice(stop);
        pending = pending.slice(1);
        const next = pending[0];
        if (next === undefined) {
          socket.end();
          resolve();
          return;
        }
        socket.write(`${next}\r\n`);
      }
    });
  });
  socket.destroy();
  return replies;
}

describe('smtp peer', () => {
  it('takes a message over STARTTLS with its exact bytes and envelope', async () => {
    const peer = await peerWith();
    const attachment = randomBytes(3000);
    const info = await transportFor(peer, { requireTLS: true }).sendMail({
      from: FROM,
      to: [TO, 'bob@fabrikam.com'],
      subject: 'Invoice 42',
      text: 'See attached.',
      attachments: [{ filename: 'invoice.bin', content: attachment }],
    });

    expect(info.accepted).toEqual([TO, 'bob@fabrikam.com']);
    expect(info.response).toMatch(/^250 2\.6\.0 <.+> \[InternalId=1\] Queued mail for delivery$/);
    expect(peer.connections).toBe(1);
    expect(peer.received).toHaveLength(1);
    const message = peer.received[0];
    expect(message?.secure).toBe(true);
    expect(message?.authenticatedUser).toBeUndefined();
    expect(message?.envelope).toEqual({ mailFrom: FROM, rcptTo: [TO, 'bob@fabrikam.com'] });
    const parsed = await simpleParser(message?.raw ?? Buffer.alloc(0));
    expect(parsed.subject).toBe('Invoice 42');
    expect(parsed.attachments[0]?.filename).toBe('invoice.bin');
    expect(Buffer.compare(parsed.attachments[0]?.content ?? Buffer.alloc(0), attachment)).toBe(0);
    expect(message?.raw.toString('latin1')).toContain(`Message-ID: ${parsed.messageId}`);
    expect(peer.transcript.map((entry) => entry.stage)).toEqual([
      'connect',
      'starttls',
      'mailFrom',
      'rcptTo',
      'rcptTo',
      'data',
    ]);
  });

  it('requireTls refuses MAIL FROM from a client that does not upgrade with 530 5.7.0', async () => {
    const peer = await peerWith({ requireTls: true });
    const error = await sendError(
      transportFor(peer, { ignoreTLS: true }).sendMail({ from: FROM, to: TO, text: 'x' }),
    );
    expect(error.responseCode).toBe(530);
    expect(error.response).toBe('530 5.7.0 Must issue a STARTTLS command first');
    expect(error.command).toBe('MAIL FROM');
    expect(error.code).toBe('EENVELOPE');
    expect(peer.received).toHaveLength(0);
  });

  it('AUTH PLAIN accepts the configured user and refuses a bad password with 535 5.7.3', async () => {
    const peer = await peerWith({
      authMethods: ['PLAIN', 'LOGIN'],
      users: [{ username: 'relay@contoso.com', password: 'right' }],
    });
    await transportFor(peer, {
      authMethod: 'PLAIN',
      auth: { user: 'relay@contoso.com', pass: 'right' },
    }).sendMail({ from: FROM, to: TO, text: 'x' });
    expect(peer.received[0]?.authenticatedUser).toBe('relay@contoso.com');
    expect(peer.received[0]?.authMethod).toBe('PLAIN');

    const error = await sendError(
      transportFor(peer, {
        authMethod: 'PLAIN',
        auth: { user: 'relay@contoso.com', pass: 'wrong' },
      }).sendMail({
        from: FROM,
        to: TO,
        text: 'x',
      }),
    );
    expect(error.code).toBe('EAUTH');
    expect(error.responseCode).toBe(535);
    expect(error.response).toBe('535 5.7.3 Authentication unsuccessful');
    expect(error.command).toBe('AUTH PLAIN');
    expect(peer.received).toHaveLength(1);
    expect(peer.transcript.filter((entry) => entry.stage === 'auth').map((entry) => entry.accepted)).toEqual([
      true,
      false,
    ]);
  });

  it('XOAUTH2 accepts a token verifyBearerToken accepts and refuses others', async () => {
    const peer = await peerWith({
      authMethods: ['XOAUTH2'],
      verifyBearerToken: (token, username) => token === 'good-token' && username === 'relay@contoso.com',
    });
    const oauth = (accessToken: string) =>
      transportFor(peer, { auth: { type: 'OAuth2', user: 'relay@contoso.com', accessToken } });

    await oauth('good-token').sendMail({ from: FROM, to: TO, text: 'x' });
    expect(peer.received[0]?.authMethod).toBe('XOAUTH2');
    expect(peer.received[0]?.authenticatedUser).toBe('relay@contoso.com');

    const error = await sendError(oauth('bad-token').sendMail({ from: FROM, to: TO, text: 'x' }));
    expect(error.code).toBe('EAUTH');
    expect(error.responseCode).toBe(535);
    expect(error.response).toBe('535 5.7.3 Authentication unsuccessful');
    expect(error.command).toBe('AUTH XOAUTH2');
  });

  it('refuses with 550 5.7.708 at connect and at MAIL FROM, 451 4.7.500 at MAIL FROM', async () => {
    const peer = await peerWith();
    const reply = '550 5.7.708 Service unavailable. Access denied, traffic not accepted from this IP.';

    peer.reject({ stage: 'connect', reply });
    const atConnect = await sendError(transportFor(peer).sendMail({ from: FROM, to: TO, text: 'x' }));
    expect(atConnect.responseCode).toBe(550);
    expect(atConnect.response).toBe(reply);
    expect(atConnect.command).toBe('CONN');

    peer.reject({ stage: 'mailFrom', reply });
    const atMailFrom = await sendError(transportFor(peer).sendMail({ from: FROM, to: TO, text: 'x' }));
    expect(atMailFrom.responseCode).toBe(550);
    expect(atMailFrom.response).toContain('5.7.708');
    expect(atMailFrom.response).toBe(reply);
    expect(atMailFrom.command).toBe('MAIL FROM');

    peer.reject({
      stage: 'mailFrom',
      address: FROM.toUpperCase(),
      reply: '451 4.7.500 Server busy. Please try again later.',
    });
    const busy = await sendError(transportFor(peer).sendMail({ from: FROM, to: TO, text: 'x' }));
    expect(busy.responseCode).toBe(451);
    expect(busy.response).toBe('451 4.7.500 Server busy. Please try again later.');

    // Each was used once: the next message goes through.
    await transportFor(peer).sendMail({ from: FROM, to: TO, text: 'x' });
    expect(peer.received).toHaveLength(1);
    expect(
      peer.transcript.filter((entry) => !entry.accepted).map((entry) => [entry.stage, entry.reply]),
    ).toEqual([
      ['connect', reply],
      ['mailFrom', reply],
      ['mailFrom', '451 4.7.500 Server busy. Please try again later.'],
    ]);
  });

  it('refuses one recipient of three with 550 5.1.1 and delivers to the other two', async () => {
    const peer = await peerWith();
    const unknown = 'ghost@fabrikam.com';
    const reply = '550 5.1.1 RESOLVER.ADR.RecipNotFound; Recipient not found by SMTP address lookup';
    peer.reject({ stage: 'rcptTo', address: 'GHOST@fabrikam.com', reply });

    const info = await transportFor(peer).sendMail({
      from: FROM,
      to: [TO, unknown, 'bob@fabrikam.com'],
      text: 'x',
    });
    expect(info.accepted).toEqual([TO, 'bob@fabrikam.com']);
    expect(info.rejected).toEqual([unknown]);
    const rejectedErrors = (info as { rejectedErrors?: SendError[] }).rejectedErrors ?? [];
    expect(rejectedErrors).toHaveLength(1);
    expect(rejectedErrors[0]?.responseCode).toBe(550);
    expect(rejectedErrors[0]?.response).toBe(reply);
    expect(rejectedErrors[0]?.command).toBe('RCPT TO');
    expect(peer.received[0]?.envelope.rcptTo).toEqual([TO, 'bob@fabrikam.com']);

    // With an address, the rejection stays (times defaults to Infinity); all rejected -> the send fails.
    const error = await sendError(transportFor(peer).sendMail({ from: FROM, to: unknown, text: 'x' }));
    expect(error.code).toBe('EENVELOPE');
    expect(error.command).toBe('RCPT TO');
    expect(error.responseCode).toBe(550);
    expect(error.response).toBe(reply);
    expect(error.rejected).toEqual([unknown]);
    expect(error.rejectedErrors?.[0]?.response).toBe(reply);
    expect(peer.received).toHaveLength(1);
  });

  it('implicit TLS: TLS from the first byte; pooled messages share one connection', async () => {
    const peer = await peerWith({ tls: 'implicit' });
    const transport = createTransport({
      host: peer.host,
      port: peer.port,
      secure: true,
      pool: true,
      maxConnections: 1,
      tls: { ca: peer.caCertificate, servername: 'localhost' },
    });
    await transport.sendMail({ from: FROM, to: TO, subject: 'one', text: 'x' });
    await transport.sendMail({ from: FROM, to: TO, subject: 'two', text: 'x' });
    transport.close();
    expect(peer.received.map((message) => message.secure)).toEqual([true, true]);
    expect(peer.connections).toBe(1);
    expect(peer.transcript.some((entry) => entry.stage === 'starttls')).toBe(false);
  });

  it('refuses a message over maxMessageBytes with 552 5.3.4, at DATA and at MAIL FROM SIZE=', async () => {
    const peer = await peerWith({ tls: 'none', maxMessageBytes: 2048 });
    const error = await sendError(
      transportFor(peer).sendMail({
        from: FROM,
        to: TO,
        text: 'x',
        attachments: [{ filename: 'big.bin', content: randomBytes(4096) }],
      }),
    );
    expect(error.code).toBe('EMESSAGE');
    expect(error.command).toBe('DATA');
    expect(error.responseCode).toBe(552);
    expect(error.response).toBe('552 5.3.4 Message size exceeds fixed maximum message size');
    expect(peer.received).toHaveLength(0);

    // smtp-server's own SIZE= check answers the same way.
    const replies = await rawExchange(peer.port, [
      'EHLO client.local',
      `MAIL FROM:<${FROM}> SIZE=999999`,
      'QUIT',
    ]);
    expect(replies[1]).toContain('SIZE 2048');
    expect(replies[1]).not.toContain('STARTTLS');
    expect(replies[1]).not.toContain('AUTH');
    expect(replies[2]).toBe('552 5.3.4 Message size exceeds fixed maximum message size');
  });
});

describe('smtp peer lost replies and fault plan', () => {
  it("'hang' after DATA: records the message, never replies, and keeps the connection until the client closes it", async () => {
    const peer = await peerWith();
    peer.reject({ stage: 'data', lostReply: 'hang' });

    // nodemailer's connection class: the test decides when the client gives up.
    const client = new SMTPConnection({
      host: peer.host,
      port: peer.port,
      secure: false,
      tls: { ca: peer.caCertificate, servername: 'localhost' },
    });
    client.on('error', () => {});
    await new Promise<void>((resolve, reject) =>
      client.connect((error) => (error ? reject(error) : resolve())),
    );
    let ended = false;
    client.once('end', () => {
      ended = true;
    });
    let replied = false;
    client.send({ from: FROM, to: [TO] }, 'Subject: lost\r\n\r\nbody\r\n', () => {
      replied = true;
    });

    await vi.waitUntil(() => peer.received.length === 1, { timeout: 60_000, interval: 5 });
    expect(peer.received[0]?.envelope).toEqual({ mailFrom: FROM, rcptTo: [TO] });
    expect(peer.received[0]?.secure).toBe(true);
    expect(peer.transcript.at(-1)).toEqual({ stage: 'data', accepted: true, lostReply: 'hang' });

    // Another client is served meanwhile; the first still has neither a reply nor a closed connection.
    await transportFor(peer).sendMail({ from: FROM, to: TO, text: 'next' });
    expect(peer.received).toHaveLength(2);
    expect(replied).toBe(false);
    expect(ended).toBe(false);

    client.close();
    expect(replied).toBe(false);
  });

  it("'close' after DATA: records the message and drops the connection without a reply, for the matching recipient only", async () => {
    const peer = await peerWith();
    peer.reject({ stage: 'data', address: 'BOB@fabrikam.com', lostReply: 'close' });

    await transportFor(peer).sendMail({ from: FROM, to: TO, text: 'to alice' });
    const error = await sendError(
      transportFor(peer).sendMail({ from: FROM, to: 'bob@fabrikam.com', text: 'to bob' }),
    );
    expect(error.code).toBe('ECONNECTION');
    expect(error.message).toMatch(/Connection closed unexpectedly/);
    expect(error.responseCode).toBeUndefined();
    expect(peer.received.map((message) => message.envelope.rcptTo)).toEqual([[TO], ['bob@fabrikam.com']]);
    expect(peer.transcript.filter((entry) => entry.stage === 'data')).toEqual([
      { stage: 'data', accepted: true },
      { stage: 'data', accepted: true, lostReply: 'close' },
    ]);

    // Used once (times defaults to 1): the next message to bob is answered.
    const info = await transportFor(peer).sendMail({ from: FROM, to: 'bob@fabrikam.com', text: 'again' });
    expect(info.response).toMatch(/^250 2\.6\.0 /);
    expect(peer.received).toHaveLength(3);
  });

  it('refuses to queue a lostReply for a stage other than data', async () => {
    const peer = await peerWith();
    expect(() =>
      peer.reject({ stage: 'rcptTo', lostReply: 'hang' } as unknown as Parameters<SmtpPeer['reject']>[0]),
    ).toThrow(/stage data/);
  });

  it('asks the fault plan at each stage no queued fault matches, until it is removed', async () => {
    const asked: [SmtpStage, SmtpFaultContext][] = [];
    const peer = await peerWith();
    peer.setFaultPlan((stage, context) => {
      asked.push([stage, context]);
      if (stage === 'rcptTo' && context.address === 'ghost@fabrikam.com') {
        return {
          stage,
          reply: '550 5.1.1 RESOLVER.ADR.RecipNotFound; Recipient not found by SMTP address lookup',
        };
      }
      if (stage === 'data' && context.recipients?.includes('carol@fabrikam.com')) {
        return { stage, lostReply: 'close' };
      }
      if (stage === 'mailFrom' && context.address === 'misplaced@contoso.com') {
        return { stage: 'data', lostReply: 'hang' };
      }
      if (stage === 'mailFrom' && context.address === 'garbled@contoso.com') {
        return { stage, reply: 'busy, come back later' };
      }
      return undefined;
    });

    const info = await transportFor(peer).sendMail({ from: FROM, to: [TO, 'ghost@fabrikam.com'], text: 'x' });
    expect(info.rejected).toEqual(['ghost@fabrikam.com']);
    expect(asked).toEqual([
      ['connect', {}],
      ['mailFrom', { address: FROM }],
      ['rcptTo', { address: TO }],
      ['rcptTo', { address: 'ghost@fabrikam.com' }],
      ['data', { recipients: [TO] }],
    ]);

    const lost = await sendError(
      transportFor(peer).sendMail({ from: FROM, to: 'carol@fabrikam.com', text: 'x' }),
    );
    expect(lost.code).toBe('ECONNECTION');
    expect(peer.received.map((message) => message.envelope.rcptTo)).toEqual([[TO], ['carol@fabrikam.com']]);

    // A queued rejection comes first: the plan is not asked about that MAIL FROM.
    peer.reject({ stage: 'mailFrom', reply: '451 4.7.500 Server busy. Please try again later.' });
    asked.length = 0;
    const busy = await sendError(transportFor(peer).sendMail({ from: FROM, to: TO, text: 'x' }));
    expect(busy.response).toBe('451 4.7.500 Server busy. Please try again later.');
    expect(asked.map(([stage]) => stage)).toEqual(['connect']);

    // A lostReply before DATA cannot be honoured; the peer says so in its reply.
    const misplaced = await sendError(
      transportFor(peer).sendMail({ from: 'misplaced@contoso.com', to: TO, text: 'x' }),
    );
    expect(misplaced.responseCode).toBe(451);
    expect(misplaced.response).toMatch(/^451 4\.3\.0 smtp peer: .*lostReply/);
    const garbled = await sendError(
      transportFor(peer).sendMail({ from: 'garbled@contoso.com', to: TO, text: 'x' }),
    );
    expect(garbled.response).toMatch(/^451 4\.3\.0 smtp peer: .*not an SMTP reply/);

    peer.setFaultPlan(undefined);
    asked.length = 0;
    await transportFor(peer).sendMail({
      from: FROM,
      to: ['ghost@fabrikam.com', 'carol@fabrikam.com'],
      text: 'x',
    });
    expect(asked).toEqual([]);
    expect(peer.received).toHaveLength(3);
  });

  it('takes its fault plan from the start options, and tells it the AUTH username', async () => {
    const reply = '454 4.7.0 Temporary authentication failure';
    const peer = await peerWith({
      authMethods: ['PLAIN'],
      users: [
        { username: 'relay@contoso.com', password: 'right' },
        { username: 'other@contoso.com', password: 'right' },
      ],
      faultPlan: (stage, { address }) =>
        stage === 'auth' && address === 'relay@contoso.com' ? { stage, reply } : undefined,
    });
    const as = (user: string) =>
      transportFor(peer, { authMethod: 'PLAIN', auth: { user, pass: 'right' } }).sendMail({
        from: FROM,
        to: TO,
        text: 'x',
      });
    const error = await sendError(as('relay@contoso.com'));
    expect(error.code).toBe('EAUTH');
    expect(error.response).toBe(reply);
    await as('other@contoso.com');
    expect(peer.received.map((message) => message.authenticatedUser)).toEqual(['other@contoso.com']);
  });
});

describe('graph peer isIssuedToken', () => {
  it('knows the access tokens its token endpoint issued', async () => {
    const clientId = '0a1b2c3d-0000-4000-8000-0000000000c2';
    const graph = await startGraphPeer({
      tenantId: '72f988bf-0000-4000-8000-00000000beef',
      clients: [{ clientId, clientSecret: 'peer-test-secret' }],
    });
    try {
      const form = new URLSearchParams({
        grant_type: 'client_credentials',
        client_id: clientId,
        client_secret: 'peer-test-secret',
        scope: `${graph.url}/.default`,
      }).toString();
      const body = await new Promise<string>((resolve, reject) => {
        const request = httpsRequest(
          graph.tokenEndpoint,
          {
            method: 'POST',
            ca: graph.caCertificate,
            headers: {
              'content-type': 'application/x-www-form-urlencoded',
              'content-length': String(Buffer.byteLength(form)),
            },
          },
          (response) => {
            const chunks: Buffer[] = [];
            response.on('data', (chunk: Buffer) => chunks.push(chunk));
            response.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
            response.on('error', reject);
          },
        );
        request.on('error', reject);
        request.end(form);
      });
      const token = (JSON.parse(body) as { access_token?: string }).access_token ?? '';
      expect(token).not.toBe('');
      expect(graph.isIssuedToken(token)).toEqual({ clientId });
      expect(graph.isIssuedToken('nope')).toBeUndefined();

      // As the XOAUTH2 check of an SMTP peer playing Microsoft 365 client submission.
      const smtp = await peerWith({ authMethods: ['XOAUTH2'], verifyBearerToken: graph.isIssuedToken });
      const submit = (accessToken: string) =>
        transportFor(smtp, { auth: { type: 'OAuth2', user: 'relay@contoso.com', accessToken } }).sendMail({
          from: FROM,
          to: TO,
          text: 'x',
        });
      await submit(token);
      expect(smtp.received[0]?.authMethod).toBe('XOAUTH2');
      expect((await sendError(submit('nope'))).response).toBe('535 5.7.3 Authentication unsuccessful');
    } finally {
      await graph.close();
    }
  });
});
