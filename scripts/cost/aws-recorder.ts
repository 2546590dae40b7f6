import { createServer, request as forward, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A recording proxy in front of the AWS stand-ins the measured function calls: DynamoDB requests go to
 * the DynamoDB emulator (dynalite, which really applies conditions and knows item sizes), everything
 * else to the benchmark's AWS stub. Per API it records what is billed: calls, request and answer
 * bytes (what a NAT would process), DynamoDB capacity units (asked of the emulator by adding
 * ReturnConsumedCapacity: TOTAL to each request), failed conditions, EventBridge entries and their
 * sizes, SQS message sizes.
 */
export interface AwsRecorder {
  readonly endpoint: string;
  /** What was recorded since the start or the last reset. */
  snapshot(): AwsRecord;
  reset(): void;
  /** The input of the last SESv2 SendEmail request, if any. */
  lastSesSend(): Record<string, unknown> | undefined;
  close(): Promise<void>;
}

export interface ApiRecord {
  calls: number;
  requestBytes: number;
  responseBytes: number;
}

export interface AwsRecord {
  /** By API, such as `DynamoDB.PutItem` or `SESv2.SendEmail`. */
  readonly apis: Readonly<Record<string, ApiRecord>>;
  readonly dynamo: {
    readonly writeUnits: number;
    /** Strongly consistent and eventually consistent reads as DynamoDB bills them (0.5 per 4 KB). */
    readonly readUnits: number;
    /** Writes refused by their condition: they still consume write capacity (1 unit assumed each). */
    readonly conditionFailures: number;
    readonly consistentReads: number;
    readonly eventualReads: number;
  };
  /** Size in bytes of every PutEvents entry (billed per started 64 KB). */
  readonly eventEntryBytes: readonly number[];
  /** Every message the function put on a queue (SendMessage): a retry, a wait, a hand-over. */
  readonly queuedMessages: readonly { readonly queueUrl: string; readonly body: string }[];
}

/** Read operations, whose capacity is read capacity. */
const DYNAMO_READS = new Set(['GetItem', 'BatchGetItem', 'Query', 'Scan', 'TransactGetItems']);
/** A header block of a signed AWS request is about this large (SigV4, host, user agent …). */
export const SIGNED_HEADER_BYTES = 1_100;

export async function startAwsRecorder(targets: { dynamo: string; others: string }): Promise<AwsRecorder> {
  let record = emptyRecord();
  let lastSesSend: Record<string, unknown> | undefined;

  const server = createServer((req, res) => {
    void readBody(req).then((body) => {
      const target = String(req.headers['x-amz-target'] ?? '');
      const [prefix = '', operation = ''] = target.split('.');
      const api = target ? `${SERVICE_NAMES[prefix] ?? prefix}.${operation}` : restApi(req);
      const isDynamo = prefix === 'DynamoDB_20120810';
      const input = body.length > 0 && (target || api === 'SESv2.SendEmail') ? parseJson(body) : {};
      if (api === 'SESv2.SendEmail') lastSesSend = input;
      const sent = isDynamo
        ? Buffer.from(JSON.stringify({ ...input, ReturnConsumedCapacity: 'TOTAL' }))
        : body;
      noteRequest(api, operation, input, body.length);

      const upstream = new URL(isDynamo ? targets.dynamo : targets.others);
      const headers = { ...req.headers, host: upstream.host, 'content-length': String(sent.length) };
      const outgoing = forward(
        { host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers },
        (answer) => {
          void readBody(answer).then((payload) => {
            const status = answer.statusCode ?? 500;
            const entry = record.apis[api];
            if (entry) entry.responseBytes += payload.length + SIGNED_HEADER_BYTES / 2;
            if (isDynamo) noteCapacity(operation, status, payload);
            res.writeHead(status, answer.headers).end(payload);
          });
        },
      );
      outgoing.on('error', (error) => {
        if (!res.headersSent) res.writeHead(502).end(String(error));
      });
      outgoing.end(sent);
    });
  });

  function noteRequest(api: string, operation: string, input: Record<string, unknown>, bytes: number): void {
    const entry = record.apis[api] ?? { calls: 0, requestBytes: 0, responseBytes: 0 };
    record.apis[api] = entry;
    entry.calls += 1;
    entry.requestBytes += bytes + SIGNED_HEADER_BYTES;
    if (api === 'EventBridge.PutEvents') {
      for (const item of (input.Entries ?? []) as Record<string, unknown>[]) {
        record.eventEntryBytes.push(eventEntrySize(item));
      }
    }
    if (api === 'SQS.SendMessage') {
      record.queuedMessages.push({
        queueUrl: String(input.QueueUrl ?? ''),
        body: String(input.MessageBody ?? ''),
      });
    }
    if (DYNAMO_READS.has(operation)) {
      const consistent = readsConsistently(operation, input);
      if (consistent) record.dynamo.consistentReads += 1;
      else record.dynamo.eventualReads += 1;
    }
  }

  function noteCapacity(operation: string, status: number, payload: Buffer): void {
    if (status >= 400) {
      // A refused condition consumes the write (at least one unit); other errors are not billed.
      if (payload.includes('ConditionalCheckFailed')) {
        record.dynamo.conditionFailures += 1;
        record.dynamo.writeUnits += 1;
      }
      return;
    }
    const answer = JSON.parse(payload.toString('utf8')) as { ConsumedCapacity?: unknown };
    const consumed = [answer.ConsumedCapacity].flat() as ({ CapacityUnits?: number } | undefined)[];
    // Per item, from its size (a key not found still costs the minimum, as dynalite counts too).
    const units = consumed.reduce((sum, item) => sum + (item?.CapacityUnits ?? 0), 0);
    if (DYNAMO_READS.has(operation)) record.dynamo.readUnits += units;
    else record.dynamo.writeUnits += units;
  }

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    snapshot: () => structuredClone(record),
    lastSesSend: () => lastSesSend,
    reset: () => {
      record = emptyRecord();
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

const SERVICE_NAMES: Readonly<Record<string, string>> = {
  DynamoDB_20120810: 'DynamoDB',
  AmazonSQS: 'SQS',
  AWSEvents: 'EventBridge',
  secretsmanager: 'SecretsManager',
};

/** The REST APIs the function may call: SES v2 and S3. */
function restApi(req: IncomingMessage): string {
  const path = req.url?.split('?')[0] ?? '';
  if (req.method === 'POST' && path.startsWith('/v2/email/outbound-emails')) return 'SESv2.SendEmail';
  if (path.startsWith('/v2/email/')) return `SESv2.${req.method} ${path}`;
  return `S3.${req.method}`;
}

function readsConsistently(operation: string, input: Record<string, unknown>): boolean {
  if (operation === 'BatchGetItem') {
    const tables = Object.values((input.RequestItems ?? {}) as Record<string, { ConsistentRead?: boolean }>);
    return tables.every((table) => table.ConsistentRead === true);
  }
  return input.ConsistentRead === true;
}

/** EventBridge bills an entry by its Source, DetailType, Detail and Resources (UTF-8) plus 14 bytes of time. */
function eventEntrySize(entry: Record<string, unknown>): number {
  const text = (value: unknown) => (typeof value === 'string' ? Buffer.byteLength(value) : 0);
  const resources = Array.isArray(entry.Resources) ? entry.Resources.reduce((sum, r) => sum + text(r), 0) : 0;
  return 14 + text(entry.Source) + text(entry.DetailType) + text(entry.Detail) + resources;
}

function emptyRecord() {
  return {
    apis: {} as Record<string, ApiRecord>,
    dynamo: { writeUnits: 0, readUnits: 0, conditionFailures: 0, consistentReads: 0, eventualReads: 0 },
    eventEntryBytes: [] as number[],
    queuedMessages: [] as { queueUrl: string; body: string }[],
  };
}

function parseJson(body: Buffer): Record<string, unknown> {
  return JSON.parse(body.toString('utf8')) as Record<string, unknown>;
}

async function readBody(stream: AsyncIterable<unknown>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}
