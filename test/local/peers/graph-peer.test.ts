import { constants, randomUUID, sign } from 'node:crypto';
import { request as httpsRequest } from 'node:https';
import { ConfidentialClientApplication, type INetworkModule, type NetworkResponse } from '@azure/msal-node';
import MailComposer from 'nodemailer/lib/mail-composer';
import type Mail from 'nodemailer/lib/mailer';
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { createClientCertificate, type GeneratedCertificate } from '../../../local/peers/certificates.ts';
import {
  type GraphFaultPlanRequest,
  type GraphPeer,
  type RecordedRequest,
  startGraphPeer,
} from '../../../local/peers/graph-peer.ts';

const TENANT = '72f988bf-0000-4000-8000-00000000beef';
const CERT_CLIENT = '0a1b2c3d-0000-4000-8000-0000000000c1';
const SECRET_CLIENT = '0a1b2c3d-0000-4000-8000-0000000000c2';
const SECRET = 'peer-test-secret~value';
const MAILBOX = 'billing@contoso.com';

interface PeerResponse {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
  json(): Record<string, unknown> & { error?: { code?: string; message?: string } };
}

interface RequestOptions {
  method?: string;
  url: string;
  headers?: Record<string, string>;
  body?: string | Buffer;
  /** Aborting closes the client's connection (the client gives up). */
  signal?: AbortSignal;
}

/** One HTTPS exchange with the peer, trusting its self-signed certificate. */
function request(
  peer: GraphPeer,
  { method = 'GET', url, headers = {}, body, signal }: RequestOptions,
): Promise<PeerResponse> {
  return new Promise((resolve, reject) => {
    const outgoing = httpsRequest(
      url.startsWith('https://') ? url : `${peer.url}${url}`,
      {
        method,
        ca: peer.caCertificate,
        ...(signal && { signal }),
        headers: {
          ...headers,
          ...(body !== undefined && { 'content-length': String(Buffer.byteLength(body)) }),
        },
      },
      (response) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('error', reject);
        response.on('end', () => {
          const collected = Buffer.concat(chunks);
          const responseHeaders: Record<string, string> = {};
          for (const [name, value] of Object.entries(response.headers)) {
            if (value !== undefined) responseHeaders[name] = Array.isArray(value) ? value.join(', ') : value;
          }
          resolve({
            status: response.statusCode ?? 0,
            headers: responseHeaders,
            body: collected,
            json: () => JSON.parse(collected.toString('utf8')),
          });
        });
      },
    );
    outgoing.on('error', reject);
    outgoing.end(body);
  });
}

const form = (fields: Record<string, string>) => ({
  method: 'POST',
  headers: { 'content-type': 'application/x-www-form-urlencoded;charset=utf-8' },
  body: new URLSearchParams(fields).toString(),
});

async function secretToken(peer: GraphPeer): Promise<string> {
  const response = await request(peer, {
    url: peer.tokenEndpoint,
    ...form({
      grant_type: 'client_credentials',
      client_id: SECRET_CLIENT,
      client_secret: SECRET,
      scope: `${peer.graphEndpoint}/.default`,
    }),
  });
  expect(response.status).toBe(200);
  return String(response.json().access_token);
}

function graphRequest(
  token: string | undefined,
  method: string,
  path: string,
  value?: unknown,
): RequestOptions {
  return {
    method,
    url: `/v1.0/users/${encodeURIComponent(MAILBOX)}/${path}`,
    headers: {
      ...(token !== undefined && { authorization: `Bearer ${token}` }),
      ...(value !== undefined && { 'content-type': 'application/json' }),
    },
    ...(value !== undefined && { body: JSON.stringify(value) }),
  };
}

function graph(peer: GraphPeer, token: string | undefined, method: string, path: string, value?: unknown) {
  return request(peer, graphRequest(token, method, path, value));
}

/** A request whose outcome is watched rather than awaited, and that the client can give up on. */
interface OpenRequest {
  /** The response, or the error the client saw; never rejects. */
  readonly outcome: Promise<{ response?: PeerResponse; error?: NodeJS.ErrnoException }>;
  readonly settled: boolean;
  giveUp(): void;
}

function openRequest(peer: GraphPeer, options: RequestOptions): OpenRequest {
  const controller = new AbortController();
  let settled = false;
  const outcome = request(peer, { ...options, signal: controller.signal })
    .then(
      (response) => ({ response }),
      (error: NodeJS.ErrnoException) => ({ error }),
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

/** Waits for the peer to record a request (it records a withheld answer as soon as it has processed it). */
function recorded(peer: GraphPeer, matches: (request: RecordedRequest) => boolean): Promise<RecordedRequest> {
  return vi.waitUntil(() => peer.requests.find(matches), { timeout: 60_000, interval: 5 });
}

/** GET a message lookup (whole mailbox or Sent Items) with Graph's OData query options. */
async function findMessages(
  peer: GraphPeer,
  token: string,
  folder: 'messages' | 'mailFolders/sentitems/messages',
  query: Record<string, string> = {},
): Promise<PeerResponse> {
  // Encoded as Graph's SDKs do: percent-encoding, %20 for spaces.
  const search = Object.entries(query)
    .map(([name, value]) => `${name}=${encodeURIComponent(value)}`)
    .join('&');
  return request(peer, {
    url: `/v1.0/users/${encodeURIComponent(MAILBOX)}/${folder}${search ? `?${search}` : ''}`,
    headers: { authorization: `Bearer ${token}` },
  });
}

/** The OData filter a client uses to look a message up by its internetMessageId. */
const byInternetMessageId = (internetMessageId: string) => ({
  $filter: `internetMessageId eq '${internetMessageId.replaceAll("'", "''")}'`,
});

/** A PS256 client assertion built by hand, as RFC 7523 and Entra ID describe it. */
function clientAssertion(
  certificate: GeneratedCertificate,
  claims: Record<string, unknown>,
  signWith: (data: Buffer) => Buffer = (data) =>
    sign('sha256', data, {
      key: certificate.privateKeyPem,
      padding: constants.RSA_PKCS1_PSS_PADDING,
      saltLength: 32,
    }),
): string {
  const now = Math.floor(Date.now() / 1000);
  const encode = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const header = encode({
    alg: 'PS256',
    typ: 'JWT',
    'x5t#S256': Buffer.from(certificate.thumbprintSha256, 'hex').toString('base64url'),
  });
  const payload = encode({
    iss: CERT_CLIENT,
    sub: CERT_CLIENT,
    jti: randomUUID(),
    nbf: now,
    exp: now + 600,
    ...claims,
  });
  return `${header}.${payload}.${signWith(Buffer.from(`${header}.${payload}`)).toString('base64url')}`;
}

/** Bytes with a position-dependent pattern, so a reordered or truncated copy cannot compare equal. */
function patterned(length: number): Buffer {
  const bytes = Buffer.alloc(length);
  for (let index = 0; index < length; index += 1) bytes[index] = (index * 31 + (index >> 12)) & 0xff;
  return bytes;
}

const message = (fields: Record<string, unknown> = {}) => ({
  subject: 'Invoice 42',
  body: { contentType: 'Text', content: 'See attached.' },
  from: { emailAddress: { address: MAILBOX } },
  toRecipients: [{ emailAddress: { address: 'ana@example.org', name: 'Ana' } }],
  ...fields,
});

describe('Graph peer', () => {
  let peer: GraphPeer;
  let certificate: GeneratedCertificate;

  beforeAll(async () => {
    certificate = await createClientCertificate();
    peer = await startGraphPeer({
      tenantId: TENANT,
      clients: [
        { clientId: CERT_CLIENT, certificatePem: certificate.certificatePem },
        { clientId: SECRET_CLIENT, clientSecret: SECRET },
      ],
      mailboxes: [MAILBOX],
    });
  });
  afterAll(() => peer.close());
  beforeEach(() => peer.reset());

  it('grants a token for the right client secret and refuses a wrong one as Entra ID does', async () => {
    await secretToken(peer);

    const refused = await request(peer, {
      url: peer.tokenEndpoint,
      ...form({
        grant_type: 'client_credentials',
        client_id: SECRET_CLIENT,
        client_secret: 'the-secret-id-not-its-value',
        scope: `${peer.graphEndpoint}/.default`,
      }),
    });
    expect(refused.status).toBe(401);
    expect(refused.headers['content-type']).toBe('application/json');
    expect(refused.json()).toMatchObject({
      error: 'invalid_client',
      error_description: expect.stringMatching(/^AADSTS7000215: Invalid client secret provided\./),
      error_codes: [7000215],
    });
    expect(peer.tokenRequests.map(({ credential, granted }) => ({ credential, granted }))).toEqual([
      { credential: 'secret', granted: true },
      { credential: 'secret', granted: false },
    ]);
  });

  it('verifies a PS256 client assertion: accepts a good one, refuses a wrong audience or a bad signature', async () => {
    const tokenWith = (assertion: string) =>
      request(peer, {
        url: peer.tokenEndpoint,
        ...form({
          grant_type: 'client_credentials',
          client_id: CERT_CLIENT,
          client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
          client_assertion: assertion,
          scope: `${peer.graphEndpoint}/.default`,
        }),
      });

    const granted = await tokenWith(clientAssertion(certificate, { aud: peer.tokenEndpoint }));
    expect(granted.status).toBe(200);
    expect(granted.json()).toMatchObject({ token_type: 'Bearer', expires_in: 3599, ext_expires_in: 3599 });
    expect(String(granted.json().access_token).length).toBeGreaterThanOrEqual(40);

    const wrongAudience = await tokenWith(
      clientAssertion(certificate, { aud: `${peer.url}/common/oauth2/token` }),
    );
    expect(wrongAudience.status).toBe(401);
    expect(wrongAudience.json()).toMatchObject({ error: 'invalid_client', error_codes: [700027] });
    expect(wrongAudience.json().error_description).toMatch(/^AADSTS700027: .*audience/);

    // Signed over other content: the header and payload are fine, the signature is not theirs.
    const forged = await tokenWith(
      clientAssertion(certificate, { aud: peer.tokenEndpoint }, (data) =>
        sign('sha256', Buffer.concat([data, Buffer.from('x')]), {
          key: certificate.privateKeyPem,
          padding: constants.RSA_PKCS1_PSS_PADDING,
          saltLength: 32,
        }),
      ),
    );
    expect(forged.status).toBe(401);
    expect(forged.json().error_description).toMatch(
      /^AADSTS700027: Client assertion failed signature validation\./,
    );
    expect(peer.tokenRequests.map(({ credential, granted }) => ({ credential, granted }))).toEqual([
      { credential: 'certificate', granted: true },
      { credential: 'certificate', granted: false },
      { credential: 'certificate', granted: false },
    ]);
  });

  it('refuses Graph calls without a token, with an unknown token, and for an unknown mailbox', async () => {
    const missing = await graph(peer, undefined, 'POST', 'sendMail', { message: message() });
    expect(missing.status).toBe(401);
    expect(missing.json().error).toMatchObject({
      code: 'InvalidAuthenticationToken',
      message: 'Access token is empty.',
    });
    expect(missing.json().error).toHaveProperty('innerError.request-id', missing.headers['request-id']);

    const forged = await graph(peer, 'not-issued-by-the-peer-0123456789abcdef0123', 'POST', 'sendMail', {
      message: message(),
    });
    expect(forged.status).toBe(401);

    const token = await secretToken(peer);
    const stranger = await request(peer, {
      method: 'POST',
      url: '/v1.0/users/nobody%40contoso.com/sendMail',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ message: message() }),
    });
    expect(stranger.status).toBe(404);
    expect(stranger.json().error).toMatchObject({
      code: 'ErrorInvalidUser',
      message: "The requested user 'nobody@contoso.com' is invalid.",
    });
    expect(peer.delivered).toHaveLength(0);
  });

  it('delivers a sendMail with its fields and decoded attachment bytes, and validates like Graph', async () => {
    const token = await secretToken(peer);
    const pdf = patterned(5000);
    const sent = await graph(peer, token, 'POST', 'sendMail', {
      message: message({
        internetMessageHeaders: [{ name: 'X-Invoice', value: '42' }],
        attachments: [
          {
            '@odata.type': '#microsoft.graph.fileAttachment',
            name: 'invoice.pdf',
            contentType: 'application/pdf',
            contentBytes: pdf.toString('base64'),
          },
        ],
      }),
      saveToSentItems: false,
    });
    expect(sent.status).toBe(202);
    expect(sent.body.length).toBe(0);
    expect(peer.delivered).toHaveLength(1);
    const [delivered] = peer.delivered;
    expect(delivered).toMatchObject({ mailbox: MAILBOX, via: 'sendMail', saveToSentItems: false });
    expect(delivered?.message).toMatchObject({
      subject: 'Invoice 42',
      internetMessageHeaders: [{ name: 'X-Invoice', value: '42' }],
    });
    expect(delivered?.message).not.toHaveProperty('attachments');
    expect(delivered?.attachments).toHaveLength(1);
    expect(delivered?.attachments[0]).toMatchObject({ name: 'invoice.pdf', isInline: false, via: 'inline' });
    expect(delivered?.attachments[0]?.bytes.equals(pdf)).toBe(true);

    const noRecipients = await graph(peer, token, 'POST', 'sendMail', {
      message: message({ toRecipients: [] }),
    });
    expect(noRecipients.json().error?.code).toBe('ErrorInvalidRecipients');
    const badHeader = await graph(peer, token, 'POST', 'sendMail', {
      message: message({ internetMessageHeaders: [{ name: 'Invoice', value: '42' }] }),
    });
    expect(badHeader.json().error?.code).toBe('InvalidInternetMessageHeader');
    const badBase64 = await graph(peer, token, 'POST', 'sendMail', {
      message: message({
        attachments: [
          { '@odata.type': '#microsoft.graph.fileAttachment', name: 'a', contentBytes: 'no*base64' },
        ],
      }),
    });
    expect(badBase64.json().error?.code).toBe('ErrorMimeContentInvalidBase64String');
    expect(peer.delivered).toHaveLength(1);
  });

  it('assembles an upload session from in-order chunks and refuses out-of-order or authenticated chunks', async () => {
    const token = await secretToken(peer);
    const bytes = patterned(3 * 1024 * 1024 + 17);
    const draft = await graph(peer, token, 'POST', 'messages', message());
    expect(draft.status).toBe(201);
    const draftPath = `messages/${encodeURIComponent(String(draft.json().id))}`;
    const session = await graph(peer, token, 'POST', `${draftPath}/attachments/createUploadSession`, {
      AttachmentItem: {
        attachmentType: 'file',
        name: 'scan.tiff',
        size: bytes.length,
        contentType: 'image/tiff',
      },
    });
    expect(session.status).toBe(201);
    expect(session.json()).toMatchObject({ nextExpectedRanges: ['0-'] });
    const uploadUrl = String(session.json().uploadUrl);
    expect(uploadUrl.startsWith(`${peer.url}/`)).toBe(true);

    const put = (start: number, end: number, headers: Record<string, string> = {}) =>
      request(peer, {
        method: 'PUT',
        url: uploadUrl,
        headers: { 'content-range': `bytes ${start}-${end}/${bytes.length}`, ...headers },
        body: bytes.subarray(start, end + 1),
      });
    const split = 2 * 1024 * 1024;

    const authenticated = await put(0, split - 1, { authorization: `Bearer ${token}` });
    expect(authenticated.status).toBe(401);
    expect(authenticated.json().error?.code).toBe('InvalidAuthenticationToken');
    const outOfOrder = await put(split, bytes.length - 1);
    expect(outOfOrder.status).toBe(416);
    expect(outOfOrder.json().error?.message).toMatch(/next expected range is 0-/);

    const first = await put(0, split - 1);
    expect(first.status).toBe(200);
    expect(first.json()).toMatchObject({ nextExpectedRanges: [`${split}-`] });
    const early = await graph(peer, token, 'POST', `${draftPath}/send`);
    expect(early.status).toBe(400);
    const last = await put(split, bytes.length - 1);
    expect(last.status).toBe(201);

    expect((await graph(peer, token, 'POST', `${draftPath}/send`)).status).toBe(202);
    const [delivered] = peer.delivered;
    expect(delivered).toMatchObject({ mailbox: MAILBOX, via: 'draft', saveToSentItems: true });
    expect(delivered?.attachments).toHaveLength(1);
    expect(delivered?.attachments[0]).toMatchObject({
      name: 'scan.tiff',
      contentType: 'image/tiff',
      via: 'uploadSession',
    });
    expect(delivered?.attachments[0]?.bytes.equals(bytes)).toBe(true);
    expect(peer.openDrafts()).toBe(0);
    expect(peer.maxConcurrency(MAILBOX)).toBe(1);
    expect(peer.requests.filter((recorded) => recorded.operation === 'uploadChunk')).toEqual(
      Array.from({ length: 4 }, () => expect.objectContaining({ mailbox: MAILBOX, method: 'PUT' })),
    );
  });

  it('counts open drafts until they are sent or deleted', async () => {
    const token = await secretToken(peer);
    const first = await graph(peer, token, 'POST', 'messages', message({ toRecipients: [] }));
    const second = await graph(peer, token, 'POST', 'messages', message());
    expect(peer.openDrafts()).toBe(2);
    expect(peer.openDrafts('BILLING@contoso.com')).toBe(2);
    expect(peer.openDrafts('ops@contoso.com')).toBe(0);

    const deleted = await graph(
      peer,
      token,
      'DELETE',
      `messages/${encodeURIComponent(String(first.json().id))}`,
    );
    expect(deleted.status).toBe(204);
    expect(peer.openDrafts()).toBe(1);
    const again = await graph(
      peer,
      token,
      'DELETE',
      `messages/${encodeURIComponent(String(first.json().id))}`,
    );
    expect(again.status).toBe(404);
    expect(again.json().error?.code).toBe('ErrorItemNotFound');

    expect(
      (await graph(peer, token, 'POST', `messages/${encodeURIComponent(String(second.json().id))}/send`))
        .status,
    ).toBe(202);
    expect(peer.openDrafts()).toBe(0);
  });

  it('answers an injected 429 with Retry-After once, then serves the next call', async () => {
    const token = await secretToken(peer);
    peer.injectFault({
      operation: 'sendMail',
      mailbox: MAILBOX,
      status: 429,
      code: 'ApplicationThrottled',
      retryAfterSeconds: 7,
    });

    const throttled = await graph(peer, token, 'POST', 'sendMail', { message: message() });
    expect(throttled.status).toBe(429);
    expect(throttled.headers['retry-after']).toBe('7');
    expect(throttled.json().error).toMatchObject({
      code: 'ApplicationThrottled',
      message: 'Application is over its MailboxConcurrency limit.',
    });

    const next = await graph(peer, token, 'POST', 'sendMail', { message: message() });
    expect(next.status).toBe(202);
    expect(peer.delivered).toHaveLength(1);
    expect(
      peer.requests
        .filter((recorded) => recorded.operation === 'sendMail')
        .map((recorded) => recorded.status),
    ).toEqual([429, 202]);
  });

  it('lists Inbox messages by receivedDateTime with $filter, $orderby, $top and nextLink, and serves their MIME', async () => {
    const token = await secretToken(peer);
    const auth = { authorization: `Bearer ${token}` };
    const mime = (subject: string) =>
      `From: Microsoft Outlook <postmaster@contoso.com>\r\nSubject: ${subject}\r\n\r\nbody\r\n`;
    const first = peer.deliverToInbox(
      MAILBOX,
      mime('Undeliverable: one'),
      new Date('2026-11-22T10:00:00.400Z'),
    );
    const second = peer.deliverToInbox(MAILBOX, mime('Undeliverable: two'), new Date('2026-11-22T10:05:00Z'));
    const third = peer.deliverToInbox(MAILBOX, mime('Hello'), new Date('2026-11-22T10:10:00Z'));
    const inbox = `/v1.0/users/${MAILBOX}/mailFolders/inbox/messages`;

    // Graph's default order is newest first; receivedDateTime has second precision.
    const all = (await request(peer, { url: inbox, headers: auth })).json();
    expect((all.value as { id: string }[]).map((message) => message.id)).toEqual([third, second, first]);
    expect((all.value as { receivedDateTime: string }[])[2]?.receivedDateTime).toBe('2026-11-22T10:00:00Z');

    const query = new URLSearchParams({
      $filter: 'receivedDateTime ge 2026-11-22T10:05:00Z',
      $orderby: 'receivedDateTime asc',
      $select: 'id,receivedDateTime',
      $top: '1',
    });
    const page = (await request(peer, { url: `${inbox}?${query}`, headers: auth })).json();
    expect(page.value).toEqual([{ id: second, receivedDateTime: '2026-11-22T10:05:00Z' }]);
    const next = (await request(peer, { url: String(page['@odata.nextLink']), headers: auth })).json();
    expect(next.value).toEqual([{ id: third, receivedDateTime: '2026-11-22T10:10:00Z' }]);
    expect(next['@odata.nextLink']).toBeUndefined();

    const content = await request(peer, {
      url: `/v1.0/users/${MAILBOX}/messages/${second}/$value`,
      headers: auth,
    });
    expect(content.status).toBe(200);
    expect(content.body.toString()).toBe(mime('Undeliverable: two'));

    const missing = await request(peer, {
      url: `/v1.0/users/${MAILBOX}/messages/AAMkADnope/$value`,
      headers: auth,
    });
    expect(missing.status).toBe(404);
    expect(missing.json().error?.code).toBe('ErrorItemNotFound');
    const badFilter = await request(peer, {
      url: `${inbox}?${new URLSearchParams({ $filter: "subject eq 'x'" })}`,
      headers: auth,
    });
    expect(badFilter.status).toBe(400);
    const unauthenticated = await request(peer, { url: inbox });
    expect(unauthenticated.status).toBe(401);
  });

  it('refuses reading a mailbox with an injected 403 ErrorAccessDenied, as Graph does without Mail.Read', async () => {
    const token = await secretToken(peer);
    peer.injectFault({ operation: 'listMessages', mailbox: MAILBOX, status: 403, code: 'ErrorAccessDenied' });

    const denied = await request(peer, {
      url: `/v1.0/users/${MAILBOX}/mailFolders/inbox/messages`,
      headers: { authorization: `Bearer ${token}` },
    });
    expect(denied.status).toBe(403);
    expect(denied.json().error?.code).toBe('ErrorAccessDenied');
  });

  it('records the client-request-id header of each request that has one', async () => {
    const token = await secretToken(peer);
    const correlation = randomUUID();
    const sent = await request(peer, {
      ...graphRequest(token, 'POST', 'sendMail', { message: message() }),
      headers: {
        authorization: `Bearer ${token}`,
        'content-type': 'application/json',
        'client-request-id': correlation,
      },
    });
    expect(sent.headers['client-request-id']).toBe(correlation);
    await graph(peer, token, 'POST', 'sendMail', { message: message() });
    expect(
      peer.requests
        .filter((recorded) => recorded.operation === 'sendMail')
        .map((recorded) => recorded.clientRequestId),
    ).toEqual([correlation, undefined]);
  });

  describe('lost answers', () => {
    it("'hang' delivers the sendMail, records it with status 0, and writes no answer until the client gives up", async () => {
      const token = await secretToken(peer);
      peer.injectFault({ operation: 'sendMail', mailbox: MAILBOX, lostAnswer: 'hang' });

      const lost = openRequest(peer, graphRequest(token, 'POST', 'sendMail', { message: message() }));
      const record = await recorded(peer, (entry) => entry.operation === 'sendMail');
      expect(record).toMatchObject({
        status: 0,
        answerWithheld: { mode: 'hang', status: 202, outcome: 'pending' },
      });
      expect(peer.delivered).toHaveLength(1);
      expect(peer.delivered[0]?.message).toMatchObject({ subject: 'Invoice 42' });

      // The peer goes on answering other requests while that one waits.
      const next = await graph(peer, token, 'POST', 'sendMail', { message: message() });
      expect(next.status).toBe(202);
      expect(lost.settled).toBe(false);
      expect(record.answerWithheld?.outcome).toBe('pending');

      lost.giveUp();
      const { response, error } = await lost.outcome;
      expect(response).toBeUndefined();
      expect(error?.name).toBe('AbortError');
      await vi.waitUntil(() => record.answerWithheld?.outcome === 'clientClosed', {
        interval: 5,
        timeout: 60_000,
      });
      expect(peer.delivered).toHaveLength(2);
    });

    it("'reset' delivers the sendMail, then drops the connection without an answer", async () => {
      const token = await secretToken(peer);
      peer.injectFault({ operation: 'sendMail', lostAnswer: 'reset' });

      const { response, error } = await openRequest(
        peer,
        graphRequest(token, 'POST', 'sendMail', { message: message() }),
      ).outcome;
      expect(response).toBeUndefined();
      expect(error?.code).toBe('ECONNRESET');
      expect(peer.delivered).toHaveLength(1);
      expect(peer.requests.find((entry) => entry.operation === 'sendMail')).toMatchObject({
        status: 0,
        answerWithheld: { mode: 'reset', status: 202, outcome: 'reset' },
      });
    });

    it('answerAfterMs: a patient client gets the real answer late; a client that gives up first never does', async () => {
      const token = await secretToken(peer);
      peer.injectFault({ operation: 'sendMail', lostAnswer: 'hang', answerAfterMs: 300 });
      const late = await graph(peer, token, 'POST', 'sendMail', { message: message() });
      expect(late.status).toBe(202);
      const lateRecord = peer.requests.find((entry) => entry.operation === 'sendMail');
      expect(lateRecord).toMatchObject({
        status: 0,
        answerWithheld: { mode: 'hang', answerAfterMs: 300, status: 202, outcome: 'answeredLate' },
      });
      // Timers fire no earlier than asked, however busy the machine.
      expect((lateRecord?.endedAt ?? 0) - (lateRecord?.startedAt ?? 0)).toBeGreaterThanOrEqual(300);

      // Far longer than this client waits: it gives up as soon as the peer has processed the request.
      peer.injectFault({ operation: 'sendMail', lostAnswer: 'hang', answerAfterMs: 600_000 });
      const impatient = openRequest(peer, graphRequest(token, 'POST', 'sendMail', { message: message() }));
      const record = await recorded(peer, (entry) => entry !== lateRecord && entry.operation === 'sendMail');
      impatient.giveUp();
      expect((await impatient.outcome).response).toBeUndefined();
      await vi.waitUntil(() => record.answerWithheld?.outcome === 'clientClosed', {
        interval: 5,
        timeout: 60_000,
      });
      expect(peer.delivered).toHaveLength(2);

      // With 'reset', answerAfterMs delays the reset instead.
      peer.injectFault({ operation: 'sendMail', lostAnswer: 'reset', answerAfterMs: 200 });
      const reset = await openRequest(peer, graphRequest(token, 'POST', 'sendMail', { message: message() }))
        .outcome;
      expect(reset.error?.code).toBe('ECONNRESET');
      const resetRecord = peer.requests.at(-1);
      expect(resetRecord?.answerWithheld).toMatchObject({
        mode: 'reset',
        answerAfterMs: 200,
        outcome: 'reset',
      });
      expect((resetRecord?.endedAt ?? 0) - (resetRecord?.startedAt ?? 0)).toBeGreaterThanOrEqual(200);
      expect(peer.delivered).toHaveLength(3);
    });

    it('loses the answer of a token request after issuing the token', async () => {
      peer.injectFault({ operation: 'token', lostAnswer: 'reset' });
      const { response, error } = await openRequest(peer, {
        url: peer.tokenEndpoint,
        ...form({
          grant_type: 'client_credentials',
          client_id: SECRET_CLIENT,
          client_secret: SECRET,
          scope: `${peer.graphEndpoint}/.default`,
        }),
      }).outcome;
      expect(response).toBeUndefined();
      expect(error?.code).toBe('ECONNRESET');
      expect(peer.tokenRequests).toEqual([
        expect.objectContaining({ clientId: SECRET_CLIENT, granted: true }),
      ]);
      expect(peer.requests).toEqual([
        expect.objectContaining({
          operation: 'token',
          status: 0,
          answerWithheld: expect.objectContaining({ status: 200 }),
        }),
      ]);
    });

    it('refuses a lost-answer fault it could not honour', () => {
      expect(() => peer.injectFault({ lostAnswer: 'hang', answerAfterMs: Number.POSITIVE_INFINITY })).toThrow(
        RangeError,
      );
      expect(() => peer.injectFault({ lostAnswer: 'hang', answerAfterMs: -1 })).toThrow(RangeError);
    });
  });

  describe('internetMessageId', () => {
    it("keeps the client's msg-id on sendMail and assigns one when it is absent", async () => {
      const token = await secretToken(peer);
      const accepted = [
        '<invoice-42.2026-11-22@contoso.com>',
        "<o'brien+1@contoso.com>",
        '<a1b2@[127.0.0.1]>',
      ];
      for (const internetMessageId of accepted) {
        const sent = await graph(peer, token, 'POST', 'sendMail', {
          message: message({ internetMessageId }),
        });
        expect(sent.status).toBe(202);
      }
      await graph(peer, token, 'POST', 'sendMail', { message: message() });
      await graph(peer, token, 'POST', 'sendMail', { message: message() });

      const ids = peer.delivered.map((delivered) => delivered.internetMessageId);
      expect(ids.slice(0, 3)).toEqual(accepted);
      for (const assigned of ids.slice(3)) expect(assigned).toMatch(/^<[0-9a-f-]{36}@[a-z0-9.-]+>$/);
      expect(ids[3]).not.toBe(ids[4]);
    });

    it('refuses a malformed msg-id with 400 ErrorInvalidInternetMessageId and delivers nothing', async () => {
      const token = await secretToken(peer);
      for (const internetMessageId of [
        'invoice-42@contoso.com',
        '<invoice-42>',
        '<two words@contoso.com>',
        '<a..b@contoso.com>',
        '<a@b@contoso.com>',
        '',
      ]) {
        const refused = await graph(peer, token, 'POST', 'sendMail', {
          message: message({ internetMessageId }),
        });
        expect(refused.status).toBe(400);
        expect(refused.json().error?.code).toBe('ErrorInvalidInternetMessageId');
        expect(refused.json().error?.message).toContain('is invalid');
        const draft = await graph(peer, token, 'POST', 'messages', message({ internetMessageId }));
        expect(draft.json().error?.code).toBe('ErrorInvalidInternetMessageId');
      }
      expect(peer.delivered).toHaveLength(0);
      expect(peer.openDrafts()).toBe(0);
    });

    it("gives a draft the client's msg-id or its own, and delivers the draft with it", async () => {
      const token = await secretToken(peer);
      const chosen = await graph(
        peer,
        token,
        'POST',
        'messages',
        message({ internetMessageId: '<draft-1@contoso.com>' }),
      );
      expect(chosen.status).toBe(201);
      expect(chosen.json()).toMatchObject({ internetMessageId: '<draft-1@contoso.com>', isDraft: true });
      const assigned = await graph(peer, token, 'POST', 'messages', message());
      const assignedId = String(assigned.json().internetMessageId);
      expect(assignedId).toMatch(/^<[0-9a-f-]{36}@[a-z0-9.-]+>$/);

      for (const draft of [chosen, assigned]) {
        const sent = await graph(
          peer,
          token,
          'POST',
          `messages/${encodeURIComponent(String(draft.json().id))}/send`,
        );
        expect(sent.status).toBe(202);
      }
      expect(peer.delivered.map((delivered) => [delivered.via, delivered.internetMessageId])).toEqual([
        ['draft', '<draft-1@contoso.com>'],
        ['draft', assignedId],
      ]);
    });
  });

  describe('mailbox store and lookup by internetMessageId', () => {
    it('keeps a sendMail in Sent Items when saveToSentItems is true, and finds it in the mailbox and in Sent Items', async () => {
      const token = await secretToken(peer);
      const saved = '<saved.1@contoso.com>';
      const unsaved = '<unsaved.1@contoso.com>';
      await graph(peer, token, 'POST', 'sendMail', {
        message: message({ internetMessageId: saved }),
        saveToSentItems: true,
      });
      await graph(peer, token, 'POST', 'sendMail', {
        message: message({ internetMessageId: unsaved }),
        saveToSentItems: false,
      });
      // sendMail's default is true.
      await graph(peer, token, 'POST', 'sendMail', { message: message({ subject: 'default' }) });

      for (const folder of ['messages', 'mailFolders/sentitems/messages'] as const) {
        const found = await findMessages(peer, token, folder, byInternetMessageId(saved));
        expect(found.status).toBe(200);
        expect(found.json().value).toEqual([
          {
            id: expect.stringMatching(/^AAMk/),
            internetMessageId: saved,
            isDraft: false,
            parentFolderId: peer.mailFolderId(MAILBOX, 'sentitems'),
            receivedDateTime: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/),
            sentDateTime: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/),
            subject: 'Invoice 42',
          },
        ]);
        expect((await findMessages(peer, token, folder, byInternetMessageId(unsaved))).json().value).toEqual(
          [],
        );
      }
      const everything = await findMessages(peer, token, 'mailFolders/sentitems/messages');
      expect((everything.json().value as { subject: string }[]).map((found) => found.subject)).toEqual([
        'default',
        'Invoice 42',
      ]);
      expect(peer.requests.filter((entry) => entry.operation === 'findMessages')).toHaveLength(5);
    });

    it('finds a draft in the mailbox (not in Sent Items) until it is sent, then in Sent Items under a new id', async () => {
      const token = await secretToken(peer);
      const internetMessageId = '<draft-lookup.7@contoso.com>';
      const draft = await graph(peer, token, 'POST', 'messages', message({ internetMessageId }));
      const draftId = String(draft.json().id);

      const asDraft = await findMessages(peer, token, 'messages', byInternetMessageId(internetMessageId));
      expect(asDraft.json().value).toEqual([
        expect.objectContaining({
          id: draftId,
          isDraft: true,
          parentFolderId: peer.mailFolderId(MAILBOX, 'drafts'),
          sentDateTime: null,
        }),
      ]);
      expect(
        (
          await findMessages(
            peer,
            token,
            'mailFolders/sentitems/messages',
            byInternetMessageId(internetMessageId),
          )
        ).json().value,
      ).toEqual([]);

      await graph(peer, token, 'POST', `messages/${encodeURIComponent(draftId)}/send`);
      const asSent = (
        await findMessages(peer, token, 'messages', byInternetMessageId(internetMessageId))
      ).json().value as Record<string, unknown>[];
      expect(asSent).toEqual([
        expect.objectContaining({
          internetMessageId,
          isDraft: false,
          parentFolderId: peer.mailFolderId(MAILBOX, 'sentitems'),
        }),
      ]);
      expect(asSent[0]?.id).not.toBe(draftId);

      // A deleted draft is gone from the mailbox.
      const discarded = await graph(
        peer,
        token,
        'POST',
        'messages',
        message({ internetMessageId: '<gone@contoso.com>' }),
      );
      await graph(peer, token, 'DELETE', `messages/${encodeURIComponent(String(discarded.json().id))}`);
      expect(
        (await findMessages(peer, token, 'messages', byInternetMessageId('<gone@contoso.com>'))).json().value,
      ).toEqual([]);
    });

    it('finds an Inbox message by the Message-ID of its MIME in the mailbox only', async () => {
      const token = await secretToken(peer);
      peer.deliverToInbox(
        MAILBOX,
        'From: ana@example.org\r\nSubject: Re: Invoice 42\r\nMessage-ID: <reply.9@example.org>\r\nDate: Sun, 22 Nov 2026 10:00:00 +0000\r\n\r\nThanks\r\n',
        new Date('2026-11-22T10:00:05Z'),
      );
      const found = await findMessages(peer, token, 'messages', byInternetMessageId('<reply.9@example.org>'));
      expect(found.json().value).toEqual([
        expect.objectContaining({
          isDraft: false,
          parentFolderId: peer.mailFolderId(MAILBOX, 'inbox'),
          sentDateTime: '2026-11-22T10:00:00Z',
          receivedDateTime: '2026-11-22T10:00:05Z',
          subject: 'Re: Invoice 42',
        }),
      ]);
      expect(
        (
          await findMessages(
            peer,
            token,
            'mailFolders/sentitems/messages',
            byInternetMessageId('<reply.9@example.org>'),
          )
        ).json().value,
      ).toEqual([]);

      // Without Message-ID and Date headers: an assigned msg-id, and the arrival time as sentDateTime.
      const bare = peer.deliverToInbox(
        MAILBOX,
        'Subject: bare\r\n\r\nbody\r\n',
        new Date('2026-11-22T11:00:00Z'),
      );
      const inbox = await request(peer, {
        url: `/v1.0/users/${MAILBOX}/mailFolders/inbox/messages?$select=internetMessageId`,
        headers: { authorization: `Bearer ${token}` },
      });
      const bareListed = (inbox.json().value as { id: string; internetMessageId: string }[]).find(
        (listed) => listed.id === bare,
      );
      expect(bareListed?.internetMessageId).toMatch(/^<[0-9a-f-]{36}@[a-z0-9.-]+>$/);
      const bareFound = await findMessages(
        peer,
        token,
        'messages',
        byInternetMessageId(bareListed?.internetMessageId ?? ''),
      );
      expect(bareFound.json().value).toEqual([
        expect.objectContaining({ id: bare, sentDateTime: '2026-11-22T11:00:00Z' }),
      ]);
    });

    it('honours $select and $top, matches a quote escaped as in OData, and refuses other filters and fields', async () => {
      const token = await secretToken(peer);
      const quoted = "<o'brien.3@contoso.com>";
      await graph(peer, token, 'POST', 'sendMail', { message: message({ internetMessageId: quoted }) });
      await graph(peer, token, 'POST', 'sendMail', {
        message: message({ internetMessageId: '<other.3@contoso.com>' }),
      });

      const selected = await findMessages(peer, token, 'messages', {
        ...byInternetMessageId(quoted),
        $select: 'internetMessageId,isDraft',
      });
      expect(selected.json().value).toEqual([
        { id: expect.any(String), internetMessageId: quoted, isDraft: false },
      ]);

      const firstPage = await findMessages(peer, token, 'mailFolders/sentitems/messages', {
        $select: 'internetMessageId',
        $top: '1',
      });
      expect(firstPage.json().value).toEqual([
        { id: expect.any(String), internetMessageId: '<other.3@contoso.com>' },
      ]);
      const secondPage = await request(peer, {
        url: String(firstPage.json()['@odata.nextLink']),
        headers: { authorization: `Bearer ${token}` },
      });
      expect(secondPage.json().value).toEqual([{ id: expect.any(String), internetMessageId: quoted }]);

      const refusedQueries: Record<string, string>[] = [
        { $filter: "subject eq 'Invoice 42'" },
        { $filter: `internetMessageId eq ${quoted}` },
        { $filter: "internetMessageId eq '<a@b.c>' or internetMessageId eq '<d@e.f>'" },
        { $select: 'id,body' },
        { $orderby: 'sentDateTime desc' },
        { $top: '0' },
      ];
      for (const query of refusedQueries) {
        const refused = await findMessages(peer, token, 'messages', query);
        expect(refused.status).toBe(400);
      }
      const unauthenticated = await request(peer, { url: `/v1.0/users/${MAILBOX}/messages` });
      expect(unauthenticated.status).toBe(401);
    });

    it('answers a lookup with an injected 403 ErrorAccessDenied, as Graph does without Mail.Read', async () => {
      const token = await secretToken(peer);
      peer.injectFault({
        operation: 'findMessages',
        mailbox: MAILBOX,
        status: 403,
        code: 'ErrorAccessDenied',
        times: 2,
      });
      for (const folder of ['messages', 'mailFolders/sentitems/messages'] as const) {
        const denied = await findMessages(peer, token, folder, byInternetMessageId('<x@contoso.com>'));
        expect(denied.status).toBe(403);
        expect(denied.json().error?.code).toBe('ErrorAccessDenied');
      }
      expect((await findMessages(peer, token, 'messages')).status).toBe(200);
    });
  });

  describe('fault plan', () => {
    it('is consulted for each token and Graph request no queued fault matches, until it is removed', async () => {
      const consulted: GraphFaultPlanRequest[] = [];
      let sendMails = 0;
      peer.setFaultPlan((planned) => {
        consulted.push(planned);
        if (planned.operation === 'sendMail') {
          sendMails += 1;
          return sendMails % 2 === 0 ? { status: 503, code: 'ServiceUnavailable' } : undefined;
        }
        if (planned.operation === 'findMessages') return { lostAnswer: 'reset' };
        return undefined;
      });
      try {
        const token = await secretToken(peer);
        const statuses = [];
        for (let index = 0; index < 3; index += 1) {
          statuses.push((await graph(peer, token, 'POST', 'sendMail', { message: message() })).status);
        }
        expect(statuses).toEqual([202, 503, 202]);
        expect(peer.delivered).toHaveLength(2);

        // A queued fault comes first; the plan is not asked about that request.
        peer.injectFault({
          operation: 'sendMail',
          status: 429,
          code: 'TooManyRequests',
          retryAfterSeconds: 1,
        });
        expect((await graph(peer, token, 'POST', 'sendMail', { message: message() })).status).toBe(429);

        // A planned lost answer: the lookup is processed, its answer lost.
        const lookup = await openRequest(peer, {
          url: `/v1.0/users/${MAILBOX}/messages`,
          headers: { authorization: `Bearer ${token}` },
        }).outcome;
        expect(lookup.error?.code).toBe('ECONNRESET');
        expect(peer.requests.at(-1)).toMatchObject({
          operation: 'findMessages',
          status: 0,
          answerWithheld: { mode: 'reset', status: 200 },
        });

        expect(consulted).toEqual([
          { operation: 'token' },
          { operation: 'sendMail', mailbox: MAILBOX },
          { operation: 'sendMail', mailbox: MAILBOX },
          { operation: 'sendMail', mailbox: MAILBOX },
          { operation: 'findMessages', mailbox: MAILBOX },
        ]);

        // reset() keeps the plan (it is configuration); setFaultPlan(undefined) removes it.
        peer.reset();
        const again = await secretToken(peer);
        expect(consulted).toHaveLength(6);
        peer.setFaultPlan(undefined);
        expect((await graph(peer, again, 'POST', 'sendMail', { message: message() })).status).toBe(202);
        expect(consulted).toHaveLength(6);
      } finally {
        peer.setFaultPlan(undefined);
      }
    });
  });

  describe('MIME sendMail', () => {
    /** POST sendMail with a text/plain body, as Graph takes MIME. */
    const mimeRequest = (token: string, body: string): RequestOptions => ({
      method: 'POST',
      url: `/v1.0/users/${encodeURIComponent(MAILBOX)}/sendMail`,
      headers: { authorization: `Bearer ${token}`, 'content-type': 'text/plain' },
      body,
    });
    const sendMime = (token: string, mime: Buffer) =>
      request(peer, mimeRequest(token, mime.toString('base64')));
    /** Real MIME as a mailer writes it; with a Bcc header, as the relay writes it for Graph. */
    const composeMime = (options: Partial<Mail.Options> = {}) => {
      const node = new MailComposer({
        from: `Billing <${MAILBOX}>`,
        to: 'Ana <ana@example.org>',
        subject: 'Invoice 42',
        text: 'See attached.',
        messageId: '<mime.42@contoso.com>',
        ...options,
      }).compile();
      node.keepBcc = true;
      return node.build();
    };

    it('delivers the MIME byte for byte and answers 202 with no body', async () => {
      const token = await secretToken(peer);
      const mime = await composeMime({
        attachments: [{ filename: 'invoice.pdf', content: patterned(5000) }],
      });

      const sent = await sendMime(token, mime);

      expect(sent.status).toBe(202);
      expect(sent.body.length).toBe(0);
      expect(peer.delivered).toHaveLength(1);
      expect(peer.delivered[0]).toMatchObject({ mailbox: MAILBOX, via: 'mime', saveToSentItems: true });
      expect(peer.delivered[0]?.mime?.equals(mime)).toBe(true);
    });

    it('summarises the subject and the To, Cc and Bcc headers as the recipients', async () => {
      const token = await secretToken(peer);
      const mime = await composeMime({ cc: 'bo@example.org', bcc: 'Audit <audit@example.org>' });

      await sendMime(token, mime);

      expect(peer.delivered[0]?.message).toEqual({
        subject: 'Invoice 42',
        from: { emailAddress: { address: MAILBOX, name: 'Billing' } },
        toRecipients: [{ emailAddress: { address: 'ana@example.org', name: 'Ana' } }],
        ccRecipients: [{ emailAddress: { address: 'bo@example.org' } }],
        bccRecipients: [{ emailAddress: { address: 'audit@example.org', name: 'Audit' } }],
      });
    });

    it('accepts base64 broken into lines', async () => {
      const token = await secretToken(peer);
      const mime = await composeMime();
      const lines = mime.toString('base64').replace(/.{76}/g, '$&\r\n');

      const sent = await request(peer, mimeRequest(token, lines));

      expect(sent.status).toBe(202);
      expect(peer.delivered[0]?.mime?.equals(mime)).toBe(true);
    });

    it('refuses a body that is not base64 with ErrorMimeContentInvalidBase64String and delivers nothing', async () => {
      const token = await secretToken(peer);

      const refused = await request(peer, mimeRequest(token, 'From: billing@contoso.com\r\n\r\nnot base64'));

      expect(refused.status).toBe(400);
      expect(refused.json().error).toMatchObject({
        code: 'ErrorMimeContentInvalidBase64String',
        message: 'Invalid base64 string for MIME content.',
      });
      expect(peer.delivered).toHaveLength(0);
    });

    it('refuses a MIME message without To, Cc or Bcc as Graph refuses one without recipients', async () => {
      const token = await secretToken(peer);

      const refused = await sendMime(token, await composeMime({ to: [] }));

      expect(refused.status).toBe(400);
      expect(refused.json().error?.code).toBe('ErrorInvalidRecipients');
      expect(peer.delivered).toHaveLength(0);
    });

    it("keeps the MIME's Message-ID, so the sent copy is found by it in the mailbox and in Sent Items", async () => {
      const token = await secretToken(peer);
      await sendMime(token, await composeMime({ messageId: '<mime.lookup@contoso.com>' }));

      expect(peer.delivered[0]?.internetMessageId).toBe('<mime.lookup@contoso.com>');
      for (const folder of ['messages', 'mailFolders/sentitems/messages'] as const) {
        const found = await findMessages(
          peer,
          token,
          folder,
          byInternetMessageId('<mime.lookup@contoso.com>'),
        );
        expect(found.json().value).toEqual([
          expect.objectContaining({
            internetMessageId: '<mime.lookup@contoso.com>',
            isDraft: false,
            subject: 'Invoice 42',
          }),
        ]);
      }
    });

    it('assigns a Message-ID to MIME that has none', async () => {
      const token = await secretToken(peer);
      const mime = Buffer.from(
        'From: billing@contoso.com\r\nTo: ana@example.org\r\nSubject: No id\r\n\r\nHello\r\n',
      );

      await sendMime(token, mime);

      expect(peer.delivered[0]?.internetMessageId).toMatch(/^<[0-9a-f-]{36}@graph-peer\.mail-relay\.local>$/);
    });

    it('loses the answer of a MIME sendMail after delivering it, as a sendMail lost-answer fault says', async () => {
      const token = await secretToken(peer);
      peer.injectFault({ operation: 'sendMail', mailbox: MAILBOX, lostAnswer: 'reset' });

      const { response, error } = await openRequest(
        peer,
        mimeRequest(token, (await composeMime()).toString('base64')),
      ).outcome;

      expect(response).toBeUndefined();
      expect(error?.code).toBe('ECONNRESET');
      expect(peer.delivered).toEqual([expect.objectContaining({ via: 'mime' })]);
      expect(peer.requests.find((entry) => entry.operation === 'sendMail')).toMatchObject({
        status: 0,
        answerWithheld: { mode: 'reset', status: 202, outcome: 'reset' },
      });
    });

    it('asks the fault plan about a MIME sendMail as about any sendMail', async () => {
      const token = await secretToken(peer);
      const consulted: GraphFaultPlanRequest[] = [];
      peer.setFaultPlan((planned) => {
        consulted.push(planned);
        return { status: 503, code: 'ServiceUnavailable' };
      });
      try {
        const refused = await sendMime(token, await composeMime());

        expect(refused.status).toBe(503);
        expect(consulted).toEqual([{ operation: 'sendMail', mailbox: MAILBOX }]);
        expect(peer.delivered).toHaveLength(0);
      } finally {
        peer.setFaultPlan(undefined);
      }
    });
  });

  describe('@azure/msal-node against the peer', () => {
    /** MSAL's network module over node:https, trusting the peer's certificate. */
    const networkClient = (): INetworkModule => {
      const send = async <T>(
        method: string,
        url: string,
        options?: { headers?: Record<string, string>; body?: string },
      ) => {
        const response = await request(peer, {
          method,
          url,
          ...(options?.headers && { headers: options.headers }),
          ...(options?.body !== undefined && { body: options.body }),
        });
        return {
          status: response.status,
          headers: response.headers,
          body: response.json() as T,
        } satisfies NetworkResponse<T>;
      };
      return {
        sendGetRequestAsync: (url, options) => send('GET', url, options),
        sendPostRequestAsync: (url, options) => send('POST', url, options),
      };
    };

    const application = (clientId: string, credential: Record<string, unknown>) => {
      const authority = `${peer.authorityHost}/${TENANT}`;
      const host = new URL(peer.authorityHost).host;
      return new ConfidentialClientApplication({
        auth: {
          clientId,
          authority,
          ...credential,
          authorityMetadata: JSON.stringify({
            token_endpoint: peer.tokenEndpoint,
            issuer: `${authority}/v2.0`,
            authorization_endpoint: `${authority}/oauth2/v2.0/authorize`,
            end_session_endpoint: `${authority}/oauth2/v2.0/logout`,
            jwks_uri: `${authority}/discovery/v2.0/keys`,
            response_types_supported: ['code', 'id_token', 'code id_token', 'id_token token'],
          }),
          cloudDiscoveryMetadata: JSON.stringify({
            tenant_discovery_endpoint: `${authority}/v2.0/.well-known/openid-configuration`,
            'api-version': '1.1',
            metadata: [{ preferred_network: host, preferred_cache: host, aliases: [host] }],
          }),
        },
        system: { networkClient: networkClient() },
      });
    };

    it('gets one token for three acquisitions with a client secret, making no discovery request', async () => {
      const client = application(SECRET_CLIENT, { clientSecret: SECRET });
      const scopes = [`${peer.graphEndpoint}/.default`];
      const tokens = [];
      for (let index = 0; index < 3; index += 1) {
        tokens.push((await client.acquireTokenByClientCredential({ scopes }))?.accessToken);
      }
      expect(tokens[0]).toEqual(expect.any(String));
      expect(new Set(tokens).size).toBe(1);
      expect(peer.tokenRequests).toEqual([
        expect.objectContaining({ clientId: SECRET_CLIENT, credential: 'secret', granted: true }),
      ]);
      expect(peer.requests.map((recorded) => recorded.operation)).toEqual(['token']);

      // The token is good for Graph.
      expect((await graph(peer, tokens[0], 'POST', 'sendMail', { message: message() })).status).toBe(202);
    });

    it("accepts MSAL's own certificate assertion", async () => {
      const client = application(CERT_CLIENT, {
        clientCertificate: {
          thumbprintSha256: certificate.thumbprintSha256,
          privateKey: certificate.privateKeyPem,
        },
      });
      const result = await client.acquireTokenByClientCredential({
        scopes: [`${peer.graphEndpoint}/.default`],
      });
      expect(result?.accessToken).toEqual(expect.any(String));
      expect(peer.tokenRequests).toEqual([
        expect.objectContaining({ clientId: CERT_CLIENT, credential: 'certificate', granted: true }),
      ]);
      expect(peer.requests.map((recorded) => recorded.operation)).toEqual(['token']);
    });
  });
});

describe('Graph peer tokens and permissions', () => {
  const APPS = {
    sendOnly: '0a1b2c3d-0000-4000-8000-0000000000d1',
    readBasicOnly: '0a1b2c3d-0000-4000-8000-0000000000d2',
    noRoles: '0a1b2c3d-0000-4000-8000-0000000000d3',
    scoped: '0a1b2c3d-0000-4000-8000-0000000000d4',
  } as const;
  const OUTSIDE = 'crm@contoso.com';
  let peer: GraphPeer;

  beforeAll(async () => {
    peer = await startGraphPeer({
      tenantId: TENANT,
      mailboxes: [MAILBOX, OUTSIDE],
      clients: [
        { clientId: SECRET_CLIENT, clientSecret: SECRET },
        { clientId: APPS.sendOnly, clientSecret: SECRET, roles: ['Mail.Send'] },
        { clientId: APPS.readBasicOnly, clientSecret: SECRET, roles: ['Mail.ReadBasic.All'] },
        { clientId: APPS.noRoles, clientSecret: SECRET, roles: [] },
        { clientId: APPS.scoped, clientSecret: SECRET, mailboxScope: [MAILBOX] },
      ],
    });
  });
  afterAll(() => peer.close());
  beforeEach(() => peer.reset());

  async function tokenFor(clientId: string): Promise<string> {
    const response = await request(peer, {
      url: peer.tokenEndpoint,
      ...form({
        grant_type: 'client_credentials',
        client_id: clientId,
        client_secret: SECRET,
        scope: `${peer.graphEndpoint}/.default`,
      }),
    });
    expect(response.status).toBe(200);
    return String(response.json().access_token);
  }

  function payloadOf(token: string): Record<string, unknown> {
    const parts = token.split('.');
    expect(parts).toHaveLength(3);
    return JSON.parse(Buffer.from(parts[1] ?? '', 'base64url').toString('utf8'));
  }

  const mailFolder = (token: string, folder: string, mailbox = MAILBOX, query = '') =>
    request(peer, {
      url: `/v1.0/users/${encodeURIComponent(mailbox)}/mailFolders/${folder}${query}`,
      headers: { authorization: `Bearer ${token}` },
    });

  it('issues JWT access tokens with the audience, tenant, app, roles and lifetime, and still knows them', async () => {
    const before = Math.floor(Date.now() / 1000);
    const token = await secretToken(peer);

    const header = JSON.parse(Buffer.from(token.split('.')[0] ?? '', 'base64url').toString('utf8'));
    expect(header).toMatchObject({ typ: 'JWT', alg: 'RS256' });
    const payload = payloadOf(token);
    expect(payload).toMatchObject({
      aud: peer.graphEndpoint,
      tid: TENANT,
      appid: SECRET_CLIENT,
      roles: ['Mail.Send', 'Mail.ReadWrite', 'Mail.ReadBasic.All', 'Mail.Read'],
      idtyp: 'app',
    });
    expect(payload.iat).toBeGreaterThanOrEqual(before);
    expect(payload.exp).toBe((payload.iat as number) + 3599);
    expect(peer.isIssuedToken(token)).toEqual({ clientId: SECRET_CLIENT });
    // A token of the same shape the peer did not issue is still refused.
    const [head, , signature] = token.split('.');
    const forged = `${head}.${Buffer.from(JSON.stringify(payload)).toString('base64url')}x.${signature}`;
    expect((await graph(peer, forged, 'POST', 'sendMail', { message: message() })).status).toBe(401);
  });

  it('leaves the roles claim out of the token of an app without application permissions', async () => {
    expect(payloadOf(await tokenFor(APPS.noRoles))).not.toHaveProperty('roles');
  });

  it('refuses a send without Mail.Send with 403 ErrorAccessDenied and delivers nothing', async () => {
    const token = await tokenFor(APPS.readBasicOnly);

    const sendMail = await graph(peer, token, 'POST', 'sendMail', { message: message() });
    const draft = await graph(peer, token, 'POST', 'messages', message());

    for (const response of [sendMail, draft]) {
      expect(response.status).toBe(403);
      expect(response.json().error).toMatchObject({
        code: 'ErrorAccessDenied',
        message: 'Access is denied. Check credentials and try again.',
      });
    }
    expect(peer.delivered).toHaveLength(0);
    expect(peer.openDrafts()).toBe(0);
  });

  it('refuses to write a draft without Mail.ReadWrite, as Graph does, even with Mail.Send', async () => {
    const token = await tokenFor(APPS.sendOnly);
    const draft = await graph(peer, token, 'POST', 'messages', message());
    expect(draft.status).toBe(403);
    expect(draft.json().error).toMatchObject({ code: 'ErrorAccessDenied' });
    expect(peer.openDrafts()).toBe(0);
    // sendMail itself needs only Mail.Send.
    expect((await graph(peer, token, 'POST', 'sendMail', { message: message() })).status).toBe(202);
  });

  it('refuses mailbox reads without a read permission, and lets Mail.ReadBasic.All read all but MIME', async () => {
    const id = peer.deliverToInbox(MAILBOX, 'From: a@example.org\r\nSubject: hi\r\n\r\nbody\r\n');
    const reads = (token: string) =>
      Promise.all([
        mailFolder(token, 'sentitems'),
        findMessages(peer, token, 'messages'),
        request(peer, graphRequest(token, 'GET', 'mailFolders/inbox/messages')),
        request(peer, graphRequest(token, 'GET', `messages/${encodeURIComponent(id)}/$value`)),
      ]);

    const sendOnly = await reads(await tokenFor(APPS.sendOnly));
    expect(sendOnly.map((response) => response.status)).toEqual([403, 403, 403, 403]);
    expect(sendOnly[0]?.json().error).toMatchObject({
      code: 'ErrorAccessDenied',
      message: 'Access is denied. Check credentials and try again.',
    });

    const readBasic = await reads(await tokenFor(APPS.readBasicOnly));
    expect(readBasic.map((response) => response.status)).toEqual([200, 200, 200, 403]);
  });

  it('refuses every request on a mailbox outside the app access policy, in Exchange wording', async () => {
    const token = await tokenFor(APPS.scoped);

    const inside = await graph(peer, token, 'POST', 'sendMail', { message: message() });
    const outside = await request(peer, {
      method: 'POST',
      url: `/v1.0/users/${encodeURIComponent(OUTSIDE)}/sendMail`,
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ message: message() }),
    });
    const outsideRead = await mailFolder(token, 'sentitems', OUTSIDE);

    expect(inside.status).toBe(202);
    for (const response of [outside, outsideRead]) {
      expect(response.status).toBe(403);
      expect(response.json().error).toMatchObject({
        code: 'ErrorAccessDenied',
        message:
          'Access to OData is disabled: [RAOP] : Blocked by tenant configured AppOnly AccessPolicy settings.',
      });
    }
    expect(peer.delivered.map((delivered) => delivered.mailbox)).toEqual([MAILBOX]);
  });

  it('serves a mail folder by well-known name or id with $select, and refuses an unknown mailbox or folder', async () => {
    const token = await secretToken(peer);

    const sentItems = await mailFolder(token, 'SentItems');
    expect(sentItems.status).toBe(200);
    expect(sentItems.json()).toMatchObject({
      id: peer.mailFolderId(MAILBOX, 'sentitems'),
      displayName: 'Sent Items',
      totalItemCount: 0,
    });
    const byId = await mailFolder(
      token,
      encodeURIComponent(peer.mailFolderId(MAILBOX, 'inbox')),
      MAILBOX,
      '?$select=id',
    );
    expect(byId.status).toBe(200);
    const { '@odata.context': context, ...fields } = byId.json();
    expect(context).toEqual(expect.stringContaining('mailFolders/$entity'));
    expect(fields).toEqual({ id: peer.mailFolderId(MAILBOX, 'inbox') });
    expect(peer.requests.at(-1)).toMatchObject({ operation: 'getMailFolder', mailbox: MAILBOX, status: 200 });

    const stranger = await mailFolder(token, 'inbox', 'nobody@contoso.com');
    expect(stranger.status).toBe(404);
    expect(stranger.json().error).toMatchObject({
      code: 'ErrorInvalidUser',
      message: "The requested user 'nobody@contoso.com' is invalid.",
    });
    const unknownFolder = await mailFolder(token, 'archive-of-nothing');
    expect(unknownFolder.status).toBe(400);
    expect(unknownFolder.json().error).toMatchObject({ code: 'ErrorInvalidIdMalformed' });
  });
});

describe('Graph peer concurrency accounting', () => {
  let peer: GraphPeer;
  /** Set to hold every answer until that many requests have arrived. */
  let holdUntilArrived = 0;

  beforeAll(async () => {
    peer = await startGraphPeer({
      tenantId: TENANT,
      clients: [{ clientId: SECRET_CLIENT, clientSecret: SECRET }],
      latencyMs: 60,
      holdAnswer: async () => {
        held += 1;
        await vi.waitUntil(() => held >= holdUntilArrived, { timeout: 60_000, interval: 5 });
      },
    });
  });
  /** Requests that reached the point where the peer answers. */
  let held = 0;
  afterAll(() => peer.close());

  it('sees six overlapping requests for one mailbox as six in flight, and one at a time as one', async () => {
    const token = await secretToken(peer);
    // Every answer waits until all six requests are in: they overlap however slow the machine is.
    holdUntilArrived = 6;
    const responses = await Promise.all(
      Array.from({ length: 6 }, () => graph(peer, token, 'POST', 'sendMail', { message: message() })),
    );
    holdUntilArrived = 0;
    expect(responses.map((response) => response.status)).toEqual(Array(6).fill(202));
    expect(peer.maxConcurrency(MAILBOX)).toBe(6);
    expect(peer.maxConcurrency('ops@contoso.com')).toBe(0);
    for (const recorded of peer.requests.filter((entry) => entry.operation === 'sendMail')) {
      expect(recorded.endedAt - recorded.startedAt).toBeGreaterThanOrEqual(50);
    }

    peer.reset();
    for (let index = 0; index < 3; index += 1) {
      await graph(peer, token, 'POST', 'sendMail', { message: message() });
    }
    expect(peer.maxConcurrency(MAILBOX)).toBe(1);
  });
});

describe('Graph peer started for one test', () => {
  it('takes its fault plan from the start options, and refuses a plan fault it could not honour with a 500', async () => {
    const peer = await startGraphPeer({
      tenantId: TENANT,
      clients: [{ clientId: SECRET_CLIENT, clientSecret: SECRET }],
      faultPlan: ({ operation }) =>
        operation === 'sendMail'
          ? { status: 503, code: 'ServiceUnavailable' }
          : operation === 'createDraft'
            ? { lostAnswer: 'hang', answerAfterMs: Number.NaN }
            : undefined,
    });
    try {
      const token = await secretToken(peer);
      const unavailable = await graph(peer, token, 'POST', 'sendMail', { message: message() });
      expect(unavailable.status).toBe(503);
      expect(unavailable.json().error?.code).toBe('ServiceUnavailable');
      const misplanned = await graph(peer, token, 'POST', 'messages', message());
      expect(misplanned.status).toBe(500);
      expect(misplanned.json().error?.message).toMatch(/answerAfterMs/);
      expect(peer.delivered).toHaveLength(0);
      expect(peer.openDrafts()).toBe(0);
    } finally {
      await peer.close();
    }
  });

  it('takes its limits from the start options', async () => {
    const peer = await startGraphPeer({
      tenantId: TENANT,
      clients: [{ clientId: SECRET_CLIENT, clientSecret: SECRET }],
      messagesPerMailbox: { count: 1, windowMs: 60_000 },
      recipientsPerMailboxPerDay: 10,
    });
    try {
      expect(peer.limits).toEqual({
        messagesPerMailbox: { count: 1, windowMs: 60_000 },
        recipientsPerMailboxPerDay: 10,
      });
      const token = await secretToken(peer);
      expect((await graph(peer, token, 'POST', 'sendMail', { message: message() })).status).toBe(202);
      const refused = await graph(peer, token, 'POST', 'sendMail', { message: message() });
      expect(refused.status).toBe(429);
      expect(refused.json().error?.code).toBe('ApplicationThrottled');
      expect(peer.delivered).toHaveLength(1);
    } finally {
      await peer.close();
    }
    await expect(
      startGraphPeer({ tenantId: TENANT, clients: [], concurrentRequestsPerMailbox: -1 }),
    ).rejects.toThrow(RangeError);
  });

  it('close() ends while an answer is still withheld', async () => {
    const peer = await startGraphPeer({
      tenantId: TENANT,
      clients: [{ clientId: SECRET_CLIENT, clientSecret: SECRET }],
    });
    const token = await secretToken(peer);
    peer.injectFault({ operation: 'sendMail', lostAnswer: 'hang' });
    const lost = openRequest(peer, graphRequest(token, 'POST', 'sendMail', { message: message() }));
    const record = await recorded(peer, (entry) => entry.operation === 'sendMail');
    await peer.close();
    expect((await lost.outcome).response).toBeUndefined();
    await vi.waitUntil(() => record.answerWithheld?.outcome === 'clientClosed', {
      interval: 5,
      timeout: 60_000,
    });
  });
});

describe('Graph peer limits', () => {
  const OTHER_MAILBOX = 'ops@contoso.com';
  let peer: GraphPeer;
  let token: string;
  /** While set, every Graph answer waits for it: requests stay in progress however fast the machine is. */
  let answersHeldUntil: Promise<void> | undefined;

  beforeAll(async () => {
    peer = await startGraphPeer({
      tenantId: TENANT,
      clients: [{ clientId: SECRET_CLIENT, clientSecret: SECRET }],
      latencyMs: 20,
      holdAnswer: () => answersHeldUntil ?? Promise.resolve(),
    });
    token = await secretToken(peer);
  });
  afterAll(() => peer.close());
  beforeEach(() => {
    peer.reset();
    peer.setLimits({});
    answersHeldUntil = undefined;
  });

  /** Holds every answer until the returned function is called. */
  function holdAnswers(): () => void {
    let release = () => {};
    answersHeldUntil = new Promise((resolve) => {
      release = resolve;
    });
    return () => {
      answersHeldUntil = undefined;
      release();
    };
  }

  const to = (...addresses: string[]) => addresses.map((address) => ({ emailAddress: { address } }));

  function send(fields: Record<string, unknown> = {}, mailbox = MAILBOX): Promise<PeerResponse> {
    return request(peer, {
      method: 'POST',
      url: `/v1.0/users/${encodeURIComponent(mailbox)}/sendMail`,
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ message: message(fields) }),
    });
  }

  /** Creates a draft and answers its id; sending it is `sendDraft`. */
  async function createDraft(): Promise<string> {
    const created = await graph(peer, token, 'POST', 'messages', message());
    expect(created.status).toBe(201);
    return String(created.json().id);
  }

  const sendDraft = (id: string) => graph(peer, token, 'POST', `messages/${encodeURIComponent(id)}/send`);

  const stats = () => peer.pacingStats(MAILBOX);
  const lastThrottle = () => {
    const throttle = stats().throttled.at(-1);
    if (!throttle) throw new Error('no throttled send recorded');
    return throttle;
  };
  const waitUntil = (condition: () => boolean) => vi.waitUntil(condition, { timeout: 60_000, interval: 5 });
  /** Waits (no longer than needed) until the refused send would fit, as the peer computed it. */
  const waitForRoom = async () => {
    const { at, retryAfterMs = 0 } = lastThrottle();
    await waitUntil(() => Date.now() >= at + retryAfterMs);
  };

  function expectThrottled(response: PeerResponse, code: string, retryAfterSeconds: number): void {
    expect(response.status).toBe(429);
    expect(response.headers['retry-after']).toBe(String(retryAfterSeconds));
    expect(response.json().error?.code).toBe(code);
  }

  /** The Retry-After a window limit owes: whole seconds until `leavesAt`, rounded up, at least 1. */
  const retryAfterUntil = (leavesAt: number, refusedAt: number) =>
    Math.max(1, Math.ceil((leavesAt - refusedAt) / 1000));

  it('enforces nothing by default', async () => {
    // All six in progress at once, however slow the machine is.
    const releaseAnswers = holdAnswers();
    const sends = Array.from({ length: 6 }, () => send());
    await waitUntil(() => peer.delivered.length === 6);
    releaseAnswers();
    const responses = await Promise.all(sends);
    expect(responses.map((response) => response.status)).toEqual(Array(6).fill(202));
    expect(peer.limits).toEqual({});
    expect(stats()).toMatchObject({ peakSendsInProgress: 6, peakSendRequestsOpen: 6, throttled: [] });
    expect(stats().acceptedSends).toHaveLength(6);
  });

  describe('concurrentRequestsPerMailbox', () => {
    it('refuses a send arriving while the limit of sends are in progress, their answer delay included', async () => {
      peer.setLimits({ concurrentRequestsPerMailbox: 2 });
      const releaseAnswers = holdAnswers();
      const admitted = [send(), send()];
      // Both are processed and wait for their answers to be written: still in progress.
      await waitUntil(() => peer.delivered.length === 2);
      expect(stats().sendsInProgress).toBe(2);

      const refused = send();
      await waitUntil(() => stats().throttledByCode.MailboxConcurrency === 1);
      // Only sends are limited, and per mailbox.
      const draft = graph(peer, token, 'POST', 'messages', message());
      const elsewhere = send({}, OTHER_MAILBOX);
      await waitUntil(() => peer.delivered.length === 3 && peer.openDrafts() === 1);
      releaseAnswers();

      expect((await Promise.all(admitted)).map((response) => response.status)).toEqual([202, 202]);
      expectThrottled(await refused, 'MailboxConcurrency', 1);
      expect((await refused).json().error?.message).toBe('Application is over its MailboxConcurrency limit.');
      expect((await draft).status).toBe(201);
      expect((await elsewhere).status).toBe(202);
      expect(peer.delivered.map((delivered) => delivered.mailbox)).toEqual([MAILBOX, MAILBOX, OTHER_MAILBOX]);
      expect(stats()).toMatchObject({
        sendsInProgress: 0,
        peakSendsInProgress: 2,
        peakSendRequestsOpen: 3,
        throttledByCode: { MailboxConcurrency: 1, ApplicationThrottled: 0, ErrorExceededMessageLimit: 0 },
        throttled: [{ code: 'MailboxConcurrency', retryAfterSeconds: 1 }],
      });
      expect(stats().acceptedSends).toHaveLength(2);
      expect(peer.pacingStats(OTHER_MAILBOX)).toMatchObject({ peakSendsInProgress: 1, throttled: [] });
      // The refusal is recorded like any answer.
      expect(peer.requests.filter((entry) => entry.status === 429)).toHaveLength(1);

      // Answered: the places are free again.
      expect((await send()).status).toBe(202);
    });

    it('never refuses a client that waits for each answer: the place frees before the answer leaves', async () => {
      peer.setLimits({ concurrentRequestsPerMailbox: 1 });
      const id = await createDraft();
      for (let index = 0; index < 3; index += 1) expect((await send()).status).toBe(202);
      expect((await sendDraft(id)).status).toBe(202);
      expect(stats()).toMatchObject({ peakSendsInProgress: 1, peakSendRequestsOpen: 1, throttled: [] });
      expect(stats().acceptedSends).toHaveLength(4);
    });
  });

  describe('messagesPerMailbox', () => {
    it('refuses the send beyond the limit with ApplicationThrottled and Retry-After, and delivers nothing for it', async () => {
      peer.setLimits({ messagesPerMailbox: { count: 3, windowMs: 60_000 } });
      const id = await createDraft();
      expect((await send()).status).toBe(202);
      expect((await sendDraft(id)).status).toBe(202);
      expect((await send()).status).toBe(202);

      const refused = await send();
      const [oldest] = stats().acceptedSends;
      const throttle = lastThrottle();
      expectThrottled(
        refused,
        'ApplicationThrottled',
        retryAfterUntil((oldest?.at ?? 0) + 60_000, throttle.at),
      );
      expect(Number(refused.headers['retry-after'])).toBeGreaterThanOrEqual(59);
      expect(refused.json().error?.message).toBe('Mailbox send rate exceeded (3 messages per 60000 ms).');
      expect(throttle).toMatchObject({
        code: 'ApplicationThrottled',
        retryAfterMs: (oldest?.at ?? 0) + 60_000 - throttle.at,
      });

      // A draft send is refused too, and the draft stays to be sent later.
      const laterId = await createDraft();
      expectThrottled(
        await sendDraft(laterId),
        'ApplicationThrottled',
        Number(refused.headers['retry-after']),
      );
      expect(peer.openDrafts()).toBe(1);
      expect(peer.delivered).toHaveLength(3);
      expect(stats().acceptedSends).toHaveLength(3);
      expect(stats().throttledByCode.ApplicationThrottled).toBe(2);

      // Limits change at runtime.
      peer.setLimits({});
      expect((await sendDraft(laterId)).status).toBe(202);
      expect(peer.delivered).toHaveLength(4);
      peer.setLimits({ messagesPerMailbox: { count: 3, windowMs: 60_000 } });
      // The sends accepted meanwhile count: the window holds 4 > 3.
      const stillFull = await send();
      expect(stillFull.status).toBe(429);
      // Room comes when the 2nd oldest leaves (the 4th send made the window one over).
      expect(lastThrottle().retryAfterMs).toBe(
        (stats().acceptedSends[1]?.at ?? 0) + 60_000 - lastThrottle().at,
      );
    });

    it('slides: a place frees when the oldest send leaves the window, not all at once', async () => {
      const windowMs = 2000;
      peer.setLimits({ messagesPerMailbox: { count: 3, windowMs } });
      expect((await send()).status).toBe(202);
      const first = stats().acceptedSends[0]?.at ?? 0;
      // The next two half a window later, so they leave half a window after the first.
      await waitUntil(() => Date.now() >= first + windowMs / 2);
      expect((await send()).status).toBe(202);
      expect((await send()).status).toBe(202);

      const refused = await send();
      expectThrottled(refused, 'ApplicationThrottled', retryAfterUntil(first + windowMs, lastThrottle().at));
      expect(lastThrottle().retryAfterMs).toBe(first + windowMs - lastThrottle().at);

      await waitForRoom();
      expect((await send()).status).toBe(202);
      // Only the first left: the second and third still fill the window with the new one.
      const second = stats().acceptedSends[1]?.at ?? 0;
      const stillFull = await send();
      expectThrottled(
        stillFull,
        'ApplicationThrottled',
        retryAfterUntil(second + windowMs, lastThrottle().at),
      );

      expect(peer.delivered).toHaveLength(4);
      expect(stats().throttledByCode.ApplicationThrottled).toBe(2);
      // Whatever the timing: no accepted send ever saw `count` others in its window.
      const accepted = stats().acceptedSends.map(({ at }) => at);
      for (const at of accepted) {
        expect(accepted.filter((other) => other <= at && other > at - windowMs).length).toBeLessThanOrEqual(
          3,
        );
      }
    });
  });

  describe('recipientsPerMailboxPerDay', () => {
    const dayMs = 2000;

    it('counts To, Cc and Bcc of accepted sends over a sliding day and refuses with ErrorExceededMessageLimit', async () => {
      peer.setLimits({ recipientsPerMailboxPerDay: 5, dayMs });
      const four = {
        toRecipients: to('ana@example.org', 'bo@example.org'),
        ccRecipients: to('cy@example.org'),
        bccRecipients: to('di@example.org'),
      };
      expect((await send(four)).status).toBe(202);
      const first = stats().acceptedSends[0]?.at ?? 0;

      const refused = await send({ toRecipients: to('ana@example.org', 'bo@example.org') });
      expectThrottled(
        refused,
        'ErrorExceededMessageLimit',
        retryAfterUntil(first + dayMs, lastThrottle().at),
      );
      expect(refused.json().error?.message).toBe(
        'Mailbox recipient rate exceeded (5 recipients per 2000 ms).',
      );
      expect(peer.delivered).toHaveLength(1);

      // One more fits exactly (a MIME send counts its headers' recipients).
      const mime = await request(peer, {
        method: 'POST',
        url: `/v1.0/users/${encodeURIComponent(MAILBOX)}/sendMail`,
        headers: { authorization: `Bearer ${token}`, 'content-type': 'text/plain' },
        body: Buffer.from(`From: ${MAILBOX}\r\nTo: ana@example.org\r\nSubject: one\r\n\r\nbody\r\n`).toString(
          'base64',
        ),
      });
      expect(mime.status).toBe(202);
      expect(stats().acceptedSends.map(({ recipients }) => recipients)).toEqual([4, 1]);
      const second = stats().acceptedSends[1]?.at ?? 0;

      // Five recipients fit only once both accepted sends are a day old: Retry-After says so.
      const five = to('a@example.org', 'b@example.org', 'c@example.org', 'd@example.org', 'e@example.org');
      const tooMany = await send({ toRecipients: five });
      expectThrottled(
        tooMany,
        'ErrorExceededMessageLimit',
        retryAfterUntil(second + dayMs, lastThrottle().at),
      );
      expect(lastThrottle().retryAfterMs).toBe(second + dayMs - lastThrottle().at);

      // One recipient fits once the oldest (four) leaves.
      await send({ toRecipients: to('ana@example.org') });
      expect(lastThrottle().retryAfterMs).toBe(first + dayMs - lastThrottle().at);
      await waitForRoom();
      expect((await send({ toRecipients: to('ana@example.org', 'bo@example.org') })).status).toBe(202);

      expect(peer.delivered).toHaveLength(3);
      expect(stats().throttledByCode.ErrorExceededMessageLimit).toBe(3);
      // Whatever the timing: no accepted send took its day beyond 5 recipients.
      for (const { at } of stats().acceptedSends) {
        const inDay = stats()
          .acceptedSends.filter((other) => other.at <= at && other.at > at - dayMs)
          .reduce((sum, other) => sum + other.recipients, 0);
        expect(inDay).toBeLessThanOrEqual(5);
      }
    });
  });

  it('serves the limits and the pacing statistics at /mail-relay/pacing, and reset() clears the statistics', async () => {
    peer.setLimits({ messagesPerMailbox: { count: 1, windowMs: 60_000 }, concurrentRequestsPerMailbox: 4 });
    expect((await send()).status).toBe(202);
    expect((await send()).status).toBe(429);
    const served = await request(peer, { url: '/mail-relay/pacing' });
    expect(served.status).toBe(200);
    expect(served.json()).toEqual(JSON.parse(JSON.stringify(peer.pacingReport())));
    expect(peer.pacingReport()).toMatchObject({
      limits: { messagesPerMailbox: { count: 1, windowMs: 60_000 }, concurrentRequestsPerMailbox: 4 },
      mailboxes: {
        [MAILBOX]: { acceptedSends: [{ recipients: 1 }], throttledByCode: { ApplicationThrottled: 1 } },
      },
    });
    // Inspection is not a Graph request.
    expect(peer.requests.map((entry) => entry.operation)).toEqual(['sendMail', 'sendMail']);

    peer.reset();
    expect(peer.pacingReport().mailboxes).toEqual({});
    // The window emptied with the statistics; the limits stay.
    expect((await send()).status).toBe(202);
    expect(peer.limits.messagesPerMailbox).toEqual({ count: 1, windowMs: 60_000 });
  });

  it('refuses limits it could not honour', () => {
    expect(() => peer.setLimits({ concurrentRequestsPerMailbox: 0 })).toThrow(RangeError);
    expect(() => peer.setLimits({ messagesPerMailbox: { count: 3, windowMs: Number.NaN } })).toThrow(
      /windowMs/,
    );
    expect(() => peer.setLimits({ recipientsPerMailboxPerDay: 2.5 })).toThrow(RangeError);
    expect(() => peer.setLimits({ dayMs: -1 })).toThrow(/dayMs/);
    expect(peer.limits).toEqual({});
  });
});
