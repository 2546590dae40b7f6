import { createHash, randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * The AWS services the send function calls, as one zero-cost HTTP stub on 127.0.0.1 for the benchmark:
 * every AWS_ENDPOINT_URL_* of the function points here. It answers at once with valid, empty or "ok"
 * responses (nothing is stored: every message of the benchmark is new, so an empty GetItem is the
 * truthful answer) and counts every call by API, which is what the benchmark reports per message.
 *
 * - JSON protocols, told apart by X-Amz-Target: DynamoDB (DynamoDB_20120810.*), SQS (AmazonSQS.*),
 *   EventBridge (AWSEvents.*), Secrets Manager (secretsmanager.*). An operation it does not know gets
 *   `{}` and is still counted, so a new call shows up in the report rather than failing the run.
 * - SES v2 (REST): SendEmail (POST /v2/email/outbound-emails) is the provider, not an AWS overhead
 *   call: it is answered exactly `sesAnswerMs` after the request arrived, the fixed provider answer
 *   time the benchmark's bounds assume. Not aws-ses-v2-local behind SesCapture (local mode's SES): it
 *   parses every message with mailparser before answering, and 10 concurrent sends of the benchmark's
 *   message took it 15-25 ms here, which would come on top of the fixed answer time.
 */
export interface AwsStubOptions {
  /** How long SES takes to answer SendEmail, from the request's arrival. */
  readonly sesAnswerMs: number;
  /** Secrets served by GetSecretValue: name -> SecretString. */
  readonly secrets: Readonly<Record<string, string>>;
}

export interface AwsStub {
  readonly endpoint: string;
  /** Calls so far by API, such as `DynamoDB.GetItem` or `SESv2.SendEmail`. */
  counts(): Record<string, number>;
  /** The ARN GetSecretValue answers for a secret name (what settings name). */
  secretArn(name: string): string;
  close(): Promise<void>;
}

const REGION = 'us-east-1';
const ACCOUNT = '000000000000';
const SEND_EMAIL_PATH = '/v2/email/outbound-emails';

/** The service prefix of X-Amz-Target and the name the report uses. */
const SERVICES: Readonly<Record<string, string>> = {
  DynamoDB_20120810: 'DynamoDB',
  AmazonSQS: 'SQS',
  AWSEvents: 'EventBridge',
  secretsmanager: 'SecretsManager',
};

export async function startAwsStub(options: AwsStubOptions): Promise<AwsStub> {
  const counts = new Map<string, number>();
  const count = (api: string) => counts.set(api, (counts.get(api) ?? 0) + 1);
  const secretArn = (name: string) => `arn:aws:secretsmanager:${REGION}:${ACCOUNT}:secret:${name}-AbCdEf`;

  const server = createServer((req, res) => {
    const arrived = performance.now();
    void serve(req, res, arrived).catch((error: unknown) => {
      if (!res.headersSent) json(res, 500, 'application/json', { message: `aws stub: ${String(error)}` });
    });
  });

  async function serve(req: IncomingMessage, res: ServerResponse, arrived: number): Promise<void> {
    const body = await readBody(req);
    const target = req.headers['x-amz-target'];
    if (typeof target === 'string') {
      const [prefix = '', operation = ''] = target.split('.');
      const service = SERVICES[prefix] ?? prefix;
      count(`${service}.${operation}`);
      const input = body.length > 0 ? (JSON.parse(body.toString('utf8')) as Record<string, unknown>) : {};
      const contentType = String(req.headers['content-type'] ?? 'application/x-amz-json-1.0');
      return json(res, 200, contentType, answer(service, operation, input));
    }
    if (req.method === 'POST' && req.url?.startsWith(SEND_EMAIL_PATH)) {
      count('SESv2.SendEmail');
      await sleep(Math.max(0, options.sesAnswerMs - (performance.now() - arrived)));
      return json(res, 200, 'application/json', { MessageId: `${randomUUID()}-000000` });
    }
    count(`unknown ${req.method} ${req.url?.split('?')[0]}`);
    json(res, 404, 'application/json', { message: 'not modelled by the benchmark stub' });
  }

  function answer(service: string, operation: string, input: Record<string, unknown>): unknown {
    switch (`${service}.${operation}`) {
      case 'DynamoDB.BatchGetItem':
        return {
          Responses: Object.fromEntries(
            Object.keys(asRecord(input.RequestItems)).map((table) => [table, []]),
          ),
          UnprocessedKeys: {},
        };
      case 'DynamoDB.BatchWriteItem':
        return { UnprocessedItems: {} };
      case 'DynamoDB.Query':
      case 'DynamoDB.Scan':
        return { Items: [], Count: 0, ScannedCount: 0 };
      case 'DynamoDB.TransactGetItems':
        return { Responses: asArray(input.TransactItems).map(() => ({})) };
      case 'SQS.SendMessage':
        return {
          MessageId: randomUUID(),
          MD5OfMessageBody: md5(String(input.MessageBody ?? '')),
        };
      case 'SQS.SendMessageBatch':
        return {
          Successful: asArray(input.Entries).map((entry) => ({
            Id: asRecord(entry).Id,
            MessageId: randomUUID(),
            MD5OfMessageBody: md5(String(asRecord(entry).MessageBody ?? '')),
          })),
          Failed: [],
        };
      case 'EventBridge.PutEvents': {
        const entries = asArray(input.Entries);
        return { FailedEntryCount: 0, Entries: entries.map(() => ({ EventId: randomUUID() })) };
      }
      case 'SecretsManager.GetSecretValue': {
        const id = String(input.SecretId ?? '');
        const name = Object.keys(options.secrets).find((key) => key === id || secretArn(key) === id);
        if (name === undefined) throw new Error(`no secret ${id}`);
        return {
          ARN: secretArn(name),
          Name: name,
          SecretString: options.secrets[name],
          VersionId: randomUUID(),
          VersionStages: ['AWSCURRENT'],
          CreatedDate: Date.now() / 1000,
        };
      }
      default:
        // GetItem (no item), PutItem, UpdateItem, DeleteItem, TransactWriteItems, DeleteMessage,
        // ChangeMessageVisibility …: an empty success.
        return {};
    }
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  return {
    endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    counts: () => Object.fromEntries(counts),
    secretArn,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

function json(res: ServerResponse, status: number, contentType: string, value: unknown): void {
  res.writeHead(status, { 'content-type': contentType }).end(JSON.stringify(value));
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

function md5(text: string): string {
  return createHash('md5').update(text, 'utf8').digest('hex');
}

function asRecord(value: unknown): Record<string, unknown> {
  return typeof value === 'object' && value !== null ? (value as Record<string, unknown>) : {};
}

function asArray(value: unknown): unknown[] {
  return Array.isArray(value) ? value : [];
}
