import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A local EventBridge peer: the PutEvents action of the real JSON 1.1 protocol (what the AWS SDK's
 * EventBridgeClient speaks), keeping every entry it accepts. GET /mail-relay/events lists them.
 * Not modelled: rules, targets, other actions, and size limits beyond the 10 entries per call.
 */
export interface PutEntry {
  readonly Source: string;
  readonly DetailType: string;
  readonly Detail: string;
  readonly EventBusName?: string;
  readonly Time?: number | string;
}

export interface ReceivedEvent {
  readonly source: string;
  readonly detailType: string;
  readonly busName: string;
  readonly detail: Record<string, unknown>;
}

export interface EventBridgePeer {
  readonly endpoint: string;
  readonly events: readonly ReceivedEvent[];
  /** PutEvents calls answered so far. */
  readonly putEventsCalls: number;
  /** The next `times` PutEvents calls fail every entry with this error code (as a throttled bus does). */
  failNext(times: number, errorCode?: string): void;
  /** The next `times` PutEvents calls get no answer at all until the peer closes (a bus that hangs). */
  hangNext(times: number): void;
  close(): Promise<void>;
}

const MAX_ENTRIES = 10;

export async function startEventBridgePeer(port = 0): Promise<EventBridgePeer> {
  const events: ReceivedEvent[] = [];
  let failures: { remaining: number; code: string } | undefined;
  let putEventsCalls = 0;
  let hangs = 0;

  const reply = (res: ServerResponse, status: number, body: unknown) => {
    res.writeHead(status, { 'content-type': 'application/x-amz-json-1.1' });
    res.end(JSON.stringify(body));
  };

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    if (req.method === 'GET' && req.url === '/mail-relay/events') return reply(res, 200, events);
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    if (req.headers['x-amz-target'] !== 'AWSEvents.PutEvents') {
      return reply(res, 400, { __type: 'UnknownOperationException', message: 'only PutEvents is modelled' });
    }
    putEventsCalls += 1;
    if (hangs > 0) {
      hangs -= 1;
      return;
    }
    const { Entries } = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { Entries?: PutEntry[] };
    if (!Array.isArray(Entries) || Entries.length === 0 || Entries.length > MAX_ENTRIES) {
      return reply(res, 400, { __type: 'ValidationException', message: 'Entries must have 1 to 10 items' });
    }
    if (failures && failures.remaining > 0) {
      failures.remaining -= 1;
      const code = failures.code;
      return reply(res, 200, {
        FailedEntryCount: Entries.length,
        Entries: Entries.map(() => ({ ErrorCode: code, ErrorMessage: 'injected failure' })),
      });
    }
    for (const entry of Entries) {
      events.push({
        source: entry.Source,
        detailType: entry.DetailType,
        busName: entry.EventBusName ?? 'default',
        detail: JSON.parse(entry.Detail) as Record<string, unknown>,
      });
    }
    return reply(res, 200, { FailedEntryCount: 0, Entries: Entries.map(() => ({ EventId: randomUUID() })) });
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((error: unknown) =>
      reply(res, 500, { __type: 'InternalException', message: String(error) }),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
  const bound = (server.address() as AddressInfo).port;
  return {
    endpoint: `http://127.0.0.1:${bound}`,
    events,
    get putEventsCalls() {
      return putEventsCalls;
    },
    failNext(times, errorCode = 'ThrottlingException') {
      failures = { remaining: times, code: errorCode };
    },
    hangNext(times) {
      hangs = times;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
