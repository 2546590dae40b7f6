// The pacing scenarios' DynamoDB, in a process of its own: the project's DynamoDB emulator (dynalite,
// in memory) with the relay's tables, behind a counting proxy. Pacing needs a store that really
// applies conditional writes one at a time per item, which the zero-cost AWS stub does not; so in
// these scenarios all of the send function's DynamoDB (pacing table, delivery ledger, suppression
// list) goes here, and the proxy counts every call by table and operation, and which were refused
// (ConditionalCheckFailedException). Started by bench.ts with an IPC channel and the table names in
// BENCH_TABLES (RelayTableNames as JSON); reports its endpoint, answers count requests, stops when
// told to or when the benchmark goes away.
import { Agent, createServer, request as forward, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { startDynamoDbEmulator } from '../../local/emulators.ts';
import { createRelayTables, type RelayTableNames } from '../../local/relay-tables.ts';
import type { StoreCounts, StoreMessage, StoreRequest } from './protocol.ts';

const names = JSON.parse(process.env.BENCH_TABLES ?? '{}') as RelayTableNames;
const send = (message: StoreMessage) => process.send?.(message);

const emulator = await startDynamoDbEmulator(0);
await createRelayTables(
  new DynamoDBClient({
    endpoint: emulator.endpoint,
    region: 'us-east-1',
    credentials: { accessKeyId: 'bench', secretAccessKey: 'bench' },
  }),
  names,
);

const calls = new Map<string, number>();
const conditionFailed = new Map<string, number>();
const errors = new Map<string, number>();
const add = (counts: Map<string, number>, name: string) => counts.set(name, (counts.get(name) ?? 0) + 1);
const agent = new Agent({ keepAlive: true, maxSockets: 64 });
const target = new URL(emulator.endpoint);

const proxy = createServer((req, res) => {
  void readBody(req).then((body) => {
    const name = callName(req.headers['x-amz-target'], body);
    add(calls, name);
    const upstream = forward(
      {
        host: target.hostname,
        port: target.port,
        method: req.method,
        path: req.url,
        headers: req.headers,
        agent,
      },
      (answer) => {
        const chunks: Buffer[] = [];
        answer.on('data', (chunk: Buffer) => chunks.push(chunk));
        answer.on('end', () => {
          const payload = Buffer.concat(chunks);
          const status = answer.statusCode ?? 500;
          if (status >= 400) {
            add(payload.includes('ConditionalCheckFailed') ? conditionFailed : errors, name);
          }
          res.writeHead(status, answer.headers).end(payload);
        });
      },
    );
    upstream.on('error', (error) => {
      add(errors, name);
      if (!res.headersSent) res.writeHead(502).end(String(error));
    });
    upstream.end(body);
  });
});
await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));

/** `<table> <operation>`: the table of the request (several for a batch call, joined with +). */
function callName(targetHeader: string | string[] | undefined, body: Buffer): string {
  const operation = String(targetHeader ?? '').split('.')[1] ?? 'unknown';
  try {
    const input = JSON.parse(body.toString('utf8')) as { TableName?: string; RequestItems?: object };
    const table = input.TableName ?? Object.keys(input.RequestItems ?? {}).join('+');
    return `${table || '?'} ${operation}`;
  } catch {
    return `? ${operation}`;
  }
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

function counts(): StoreCounts {
  return {
    calls: Object.fromEntries(calls),
    conditionFailed: Object.fromEntries(conditionFailed),
    errors: Object.fromEntries(errors),
  };
}

let stopping: Promise<void> | undefined;
const stop = () => {
  stopping ??= Promise.allSettled([
    new Promise<void>((resolve) => {
      proxy.closeAllConnections();
      proxy.close(() => resolve());
    }),
    emulator.stop(),
  ]).then(() => process.exit(0));
  return stopping;
};
process.on('disconnect', () => void stop());
process.on('message', (request: StoreRequest) => {
  if (request.type === 'stop') void stop();
  else if (request.type === 'counts') send({ type: 'counts', id: request.id, counts: counts() });
});

send({ type: 'ready', endpoint: `http://127.0.0.1:${(proxy.address() as AddressInfo).port}` });
