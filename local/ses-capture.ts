import { createServer, request as httpRequest, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { LOOPBACK } from './emulators.ts';

/** What the relay handed to SES for one message, byte for byte. */
export interface CapturedSend {
  readonly messageId: string;
  readonly fromEmailAddress: string | undefined;
  readonly destination: { to: string[]; cc: string[]; bcc: string[] };
  readonly raw: Buffer;
  readonly tags: Record<string, string>;
  readonly configurationSetName: string | undefined;
}

/** A scripted SES error response (e.g. 503, or 400 MessageRejected). */
export interface InjectedFault {
  readonly status: number;
  readonly code: string;
  readonly message?: string;
  /** How many consecutive sends fail this way. @default 1 */
  readonly times?: number;
}

const SEND_EMAIL_PATH = '/v2/email/outbound-emails';

/**
 * Sits in front of the SES emulator. Everything passes through; for SendEmail it keeps the raw MIME
 * and the envelope (the emulator's store drops custom headers and Bcc for raw messages), serves them
 * at /mail-relay/sent and /mail-relay/raw/<messageId>, and can answer with scripted errors.
 */
export class SesCapture {
  readonly sent: CapturedSend[] = [];
  sendAttempts = 0;
  private readonly faults: { fault: InjectedFault; remaining: number }[] = [];
  private readonly listeners: ((send: CapturedSend) => void)[] = [];
  private server: Server | undefined;

  constructor(private readonly upstream: string) {}

  /** Called with each send SES accepted (local mode's SES feedback simulator listens). */
  onSent(listener: (send: CapturedSend) => void): void {
    this.listeners.push(listener);
  }

  injectFault(fault: InjectedFault): void {
    this.faults.push({ fault, remaining: fault.times ?? 1 });
  }

  async listen(port: number): Promise<string> {
    this.server = createServer((req, res) => {
      void this.handle(req).then(
        ({ status, headers, body }) => res.writeHead(status, headers).end(body),
        (error: unknown) => res.writeHead(502).end(`ses capture: ${String(error)}`),
      );
    });
    await new Promise<void>((resolve, reject) => {
      this.server?.once('error', reject).listen(port, LOOPBACK, resolve);
    });
    return `http://${LOOPBACK}:${(this.server.address() as AddressInfo).port}`;
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server?.closeAllConnections();
      this.server?.close(() => resolve());
    });
  }

  private async handle(req: IncomingMessage): Promise<Reply> {
    const body = await readBody(req);
    const url = req.url ?? '/';
    if (req.method === 'GET' && url === '/mail-relay/sent') {
      const summary = this.sent.map(({ raw, ...rest }) => ({ ...rest, bytes: raw.length }));
      return json(200, summary);
    }
    const raw = /^\/mail-relay\/raw\/([^/?]+?)(?:\.eml)?$/.exec(url);
    if (req.method === 'GET' && raw) {
      const found = this.sent.find((send) => send.messageId === decodeURIComponent(raw[1] ?? ''));
      return found
        ? { status: 200, headers: { 'content-type': 'message/rfc822' }, body: found.raw }
        : json(404, { message: 'no such message' });
    }
    if (req.method !== 'POST' || !url.startsWith(SEND_EMAIL_PATH)) return forward(this.upstream, req, body);

    this.sendAttempts += 1;
    const scripted = this.faults[0];
    if (scripted) {
      scripted.remaining -= 1;
      if (scripted.remaining <= 0) this.faults.shift();
      const { status, code, message = `injected ${code}` } = scripted.fault;
      return {
        status,
        headers: { 'content-type': 'application/json', 'x-amzn-errortype': code },
        body: JSON.stringify({ message }),
      };
    }
    const reply = await forward(this.upstream, req, body);
    if (reply.status === 200) this.record(body, reply.body);
    return reply;
  }

  private record(requestBody: Buffer, responseBody: Buffer): void {
    const request = JSON.parse(requestBody.toString('utf8')) as SendEmailRequest;
    const { MessageId } = JSON.parse(responseBody.toString('utf8')) as { MessageId: string };
    const send: CapturedSend = {
      messageId: MessageId,
      fromEmailAddress: request.FromEmailAddress,
      destination: {
        to: request.Destination?.ToAddresses ?? [],
        cc: request.Destination?.CcAddresses ?? [],
        bcc: request.Destination?.BccAddresses ?? [],
      },
      raw: Buffer.from(request.Content?.Raw?.Data ?? '', 'base64'),
      tags: Object.fromEntries((request.EmailTags ?? []).map((tag) => [tag.Name, tag.Value])),
      configurationSetName: request.ConfigurationSetName,
    };
    this.sent.push(send);
    for (const listener of this.listeners) listener(send);
  }
}

interface SendEmailRequest {
  FromEmailAddress?: string;
  Destination?: { ToAddresses?: string[]; CcAddresses?: string[]; BccAddresses?: string[] };
  Content?: { Raw?: { Data?: string } };
  EmailTags?: { Name: string; Value: string }[];
  ConfigurationSetName?: string;
}

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer | string;
}

const json = (status: number, value: unknown): Reply => ({
  status,
  headers: { 'content-type': 'application/json' },
  body: JSON.stringify(value),
});

async function readBody(stream: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

function forward(upstream: string, req: IncomingMessage, body: Buffer): Promise<Reply & { body: Buffer }> {
  return new Promise((resolve, reject) => {
    const target = new URL(req.url ?? '/', upstream);
    const outgoing = httpRequest(
      target,
      { method: req.method, headers: { ...req.headers, host: target.host } },
      async (response) => {
        try {
          const { 'transfer-encoding': _chunked, ...headers } = response.headers;
          resolve({ status: response.statusCode ?? 502, headers, body: await readBody(response) });
        } catch (error) {
          reject(error);
        }
      },
    );
    outgoing.once('error', reject).end(body);
  });
}
