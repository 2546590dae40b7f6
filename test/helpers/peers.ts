import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { SESv2Client } from '@aws-sdk/client-sesv2';
import {
  CreateQueueCommand,
  GetQueueAttributesCommand,
  type Message,
  ReceiveMessageCommand,
  SendMessageCommand,
  SQSClient,
} from '@aws-sdk/client-sqs';
import type { SQSRecord } from 'aws-lambda';
import { type RunningEmulator, startSesEmulator, startSqsEmulator } from '../../local/emulators.ts';
import { SesCapture } from '../../local/ses-capture.ts';

const credentials = { accessKeyId: 'test', secretAccessKey: 'test' };
export const REGION = 'us-east-1';

/** An AWS client configuration whose every call fails with ECONNREFUSED (port 9, discard, is closed). */
export const UNREACHABLE_CLIENT_CONFIG = {
  region: REGION,
  endpoint: 'http://127.0.0.1:9',
  credentials,
  maxAttempts: 1,
};

/** Real local peers on free loopback ports: fauxqs (SQS) and aws-ses-v2-local behind a capture. */
export interface Peers {
  readonly sqs: SQSClient;
  readonly ses: SESv2Client;
  readonly sqsEndpoint: string;
  /** The capture front of the SES emulator: what the relay should talk to. */
  readonly sesEndpoint: string;
  readonly sesEmulator: RunningEmulator;
  readonly capture: SesCapture;
  stop(): Promise<void>;
}

export async function startPeers(): Promise<Peers> {
  const sqsEmulator = await startSqsEmulator(0);
  const sesEmulator = await startSesEmulator(0);
  const capture = new SesCapture(sesEmulator.endpoint);
  const captureEndpoint = await capture.listen(0);
  const sqs = new SQSClient({ region: REGION, endpoint: sqsEmulator.endpoint, credentials });
  // One attempt: tests observe every request the relay makes.
  const ses = new SESv2Client({ region: REGION, endpoint: captureEndpoint, credentials, maxAttempts: 1 });
  return {
    sqs,
    ses,
    sqsEndpoint: sqsEmulator.endpoint,
    sesEndpoint: captureEndpoint,
    sesEmulator,
    capture,
    async stop() {
      sqs.destroy();
      ses.destroy();
      await capture.close();
      await Promise.all([sqsEmulator.stop(), sesEmulator.stop()]);
    },
  };
}

let queueCounter = 0;

/** The SQS emulator (fauxqs, which also speaks S3) with one bucket, for producers that offload to S3. */
export interface QueueAndBucket {
  readonly endpoint: string;
  readonly sqs: SQSClient;
  readonly s3: S3Client;
  stop(): Promise<void>;
}

export async function startQueueAndBucket(bucket: string): Promise<QueueAndBucket> {
  const emulator = await startSqsEmulator(0);
  const sqs = new SQSClient({ region: REGION, endpoint: emulator.endpoint, credentials });
  const s3 = new S3Client({ region: REGION, endpoint: emulator.endpoint, credentials, forcePathStyle: true });
  await s3.send(new CreateBucketCommand({ Bucket: bucket }));
  return {
    endpoint: emulator.endpoint,
    sqs,
    s3,
    async stop() {
      sqs.destroy();
      s3.destroy();
      await emulator.stop();
    },
  };
}

export async function createQueue(
  sqs: SQSClient,
  attributes: Record<string, string> = {},
): Promise<{ url: string; arn: string }> {
  queueCounter += 1;
  const created = await sqs.send(
    new CreateQueueCommand({ QueueName: `test-${process.pid}-${queueCounter}`, Attributes: attributes }),
  );
  const url = created.QueueUrl ?? '';
  const described = await sqs.send(
    new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ['QueueArn'] }),
  );
  return { url, arn: described.Attributes?.QueueArn ?? '' };
}

/** Receives everything currently visible (several polls, as SQS may return partial sets). */
export async function drain(sqs: SQSClient, queueUrl: string, { polls = 3 } = {}): Promise<Message[]> {
  const messages: Message[] = [];
  for (let poll = 0; poll < polls; poll += 1) {
    const received = await sqs.send(
      new ReceiveMessageCommand({
        QueueUrl: queueUrl,
        MaxNumberOfMessages: 10,
        WaitTimeSeconds: 0,
        VisibilityTimeout: 30,
        MessageAttributeNames: ['All'],
        MessageSystemAttributeNames: ['All'],
      }),
    );
    messages.push(...(received.Messages ?? []));
  }
  return messages;
}

export async function approximateCount(sqs: SQSClient, queueUrl: string): Promise<number> {
  const described = await sqs.send(
    new GetQueueAttributesCommand({
      QueueUrl: queueUrl,
      AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible'],
    }),
  );
  const attributes = described.Attributes ?? {};
  return (
    Number(attributes.ApproximateNumberOfMessages ?? 0) +
    Number(attributes.ApproximateNumberOfMessagesNotVisible ?? 0)
  );
}

export async function enqueue(sqs: SQSClient, queueUrl: string, body: unknown): Promise<string> {
  const sent = await sqs.send(
    new SendMessageCommand({
      QueueUrl: queueUrl,
      MessageBody: typeof body === 'string' ? body : JSON.stringify(body),
    }),
  );
  return sent.MessageId ?? '';
}

/**
 * Polls until `check` returns a value (not undefined), or fails after `timeoutMs`. The limit only ends
 * a broken run: a busy machine makes conditions slow, and a passing test never waits for the limit.
 */
export async function eventually<T>(check: () => Promise<T | undefined>, timeoutMs = 90_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** An SQS Lambda record as the event source delivers it. */
export function sqsRecord(
  body: unknown,
  overrides: { receiveCount?: number; messageId?: string } = {},
): SQSRecord {
  return {
    messageId: overrides.messageId ?? `msg-${Math.random().toString(36).slice(2)}`,
    receiptHandle: 'handle',
    body: typeof body === 'string' ? body : JSON.stringify(body),
    attributes: {
      ApproximateReceiveCount: String(overrides.receiveCount ?? 1),
      SentTimestamp: String(Date.now()),
      SenderId: '000000000000',
      ApproximateFirstReceiveTimestamp: String(Date.now()),
    },
    messageAttributes: {},
    md5OfBody: '',
    eventSource: 'aws:sqs',
    eventSourceARN: `arn:aws:sqs:${REGION}:000000000000:outbox`,
    awsRegion: REGION,
  };
}

/** A contract-valid message; override any field. */
export function validMessage(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    v: 1,
    from: 'Billing <billing@example.com>',
    to: ['customer@example.org'],
    subject: 'Invoice 42',
    text: 'Your invoice is attached.',
    ...overrides,
  };
}

/** An SQS client as a producing application would use it against local mode. */
export function producerClient(endpoint: string): SQSClient {
  return new SQSClient({
    region: REGION,
    endpoint,
    credentials: { accessKeyId: 'producer', secretAccessKey: 'producer' },
  });
}
