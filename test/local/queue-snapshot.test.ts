import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  CreateQueueCommand,
  DeleteMessageCommand,
  GetQueueAttributesCommand,
  type Message,
  ReceiveMessageCommand,
  SendMessageCommand,
  type SQSClient,
} from '@aws-sdk/client-sqs';
import { afterEach, describe, expect, it } from 'vitest';
import { type SqsEmulator, startSqsEmulator } from '../../local/emulators.ts';
import { QueueSnapshots, restoreQueues } from '../../local/queue-snapshot.ts';
import { eventually, producerClient } from '../helpers/peers.ts';

// The queue snapshot against the real fauxqs: what one emulator held, the next one gets back, as an
// SQS client sees it (ids, bodies and attributes with the MD5s the SDK checks, timestamps, counts).

const QUEUE_NAMES = ['outbox', 'dlq'] as const;

interface Queues {
  readonly emulator: SqsEmulator;
  readonly sqs: SQSClient;
  readonly outbox: string;
  readonly dlq: string;
}

describe('queue snapshots (fauxqs keeps its queues in memory only)', () => {
  const started: Queues[] = [];
  afterEach(async () => {
    for (const { emulator, sqs } of started.splice(0)) {
      sqs.destroy();
      await emulator.stop();
    }
  });

  /** A fresh emulator with the two queues, as local mode creates them on every start. */
  async function startQueues(): Promise<Queues> {
    const emulator = await startSqsEmulator(0);
    const sqs = producerClient(emulator.endpoint);
    const urls = [];
    for (const name of QUEUE_NAMES) {
      const created = await sqs.send(
        new CreateQueueCommand({ QueueName: name, Attributes: { VisibilityTimeout: '300' } }),
      );
      urls.push(created.QueueUrl ?? '');
    }
    const [outbox = '', dlq = ''] = urls;
    const queues = { emulator, sqs, outbox, dlq };
    started.push(queues);
    return queues;
  }
  const snapshotFile = () =>
    path.join(mkdtempSync(path.join(tmpdir(), 'mail-relay-snapshot-')), 'queues.json');

  async function receive(queues: Queues, queueUrl: string, max = 10): Promise<Message[]> {
    const received = await queues.sqs.send(
      new ReceiveMessageCommand({
        QueueUrl: queueUrl,
        MaxNumberOfMessages: max,
        WaitTimeSeconds: 0,
        MessageAttributeNames: ['All'],
        MessageSystemAttributeNames: ['All'],
      }),
    );
    return received.Messages ?? [];
  }

  it('gives the next emulator the same messages: ids, bodies, attributes, timestamps, receive counts', async () => {
    const file = snapshotFile();
    const first = await startQueues();
    const send = (queueUrl: string, body: string, attributes = {}, delaySeconds?: number) =>
      first.sqs.send(
        new SendMessageCommand({
          QueueUrl: queueUrl,
          MessageBody: body,
          MessageAttributes: attributes,
          ...(delaySeconds !== undefined && { DelaySeconds: delaySeconds }),
        }),
      );
    const withAttributes = await send(first.outbox, 'Ünïcode body ✓ {"v":1}', {
      'X-Tenant': { DataType: 'String', StringValue: 'acme' },
      Blob: { DataType: 'Binary', BinaryValue: Buffer.from([0, 1, 2, 255]) },
      Count: { DataType: 'Number', StringValue: '42' },
    });
    // Received once before the "restart": it was in flight, and comes back visible.
    const [inFlight] = await receive(first, first.outbox, 1);
    expect(inFlight?.MessageId).toBe(withAttributes.MessageId);
    const plain = await send(first.outbox, 'never received');
    const delayed = await send(first.outbox, 'delayed by its producer', {}, 600);
    const dead = await send(first.dlq, 'dead', {
      'MailRelay.FailureCode': { DataType: 'String', StringValue: 'InvalidMessage' },
    });
    const sentTimestamps = new Map(
      first.emulator.store
        .getQueueByName('outbox')
        ?.inspectMessages()
        .ready.map((message) => [message.messageId, String(message.sentTimestamp)]),
    );

    const snapshots = new QueueSnapshots({ store: first.emulator.store, queueNames: QUEUE_NAMES, file });
    await snapshots.stop();

    const second = await startQueues();
    expect(await restoreQueues(second.emulator.store, file, QUEUE_NAMES)).toEqual({ outbox: 3, dlq: 1 });
    // Restoring again (the same file) adds nothing twice.
    expect(await restoreQueues(second.emulator.store, file, QUEUE_NAMES)).toEqual({ outbox: 0, dlq: 0 });

    const outbox = await receive(second, second.outbox);
    // The SDK checks MD5OfBody and MD5OfMessageAttributes itself: a receive that returns checked them.
    expect(outbox.map((message) => message.MessageId).sort()).toEqual(
      [withAttributes.MessageId, plain.MessageId].sort(),
    );
    const restored = outbox.find((message) => message.MessageId === withAttributes.MessageId);
    expect(restored?.Body).toBe('Ünïcode body ✓ {"v":1}');
    expect(restored?.MD5OfMessageAttributes).toBe(withAttributes.MD5OfMessageAttributes);
    expect(restored?.MessageAttributes).toEqual({
      'X-Tenant': { DataType: 'String', StringValue: 'acme' },
      Blob: { DataType: 'Binary', BinaryValue: new Uint8Array([0, 1, 2, 255]) },
      Count: { DataType: 'Number', StringValue: '42' },
    });
    expect(restored?.Attributes).toMatchObject({
      SentTimestamp: inFlight?.Attributes?.SentTimestamp,
      ApproximateFirstReceiveTimestamp: inFlight?.Attributes?.ApproximateFirstReceiveTimestamp,
      ApproximateReceiveCount: '2',
    });
    expect(outbox.find((message) => message.MessageId === plain.MessageId)?.Attributes).toMatchObject({
      SentTimestamp: sentTimestamps.get(plain.MessageId ?? ''),
      ApproximateReceiveCount: '1',
    });
    // The delayed one is still delayed.
    const attributes = await second.sqs.send(
      new GetQueueAttributesCommand({
        QueueUrl: second.outbox,
        AttributeNames: ['ApproximateNumberOfMessagesDelayed'],
      }),
    );
    expect(attributes.Attributes?.ApproximateNumberOfMessagesDelayed).toBe('1');
    expect(outbox.some((message) => message.MessageId === delayed.MessageId)).toBe(false);

    const [deadLetter] = await receive(second, second.dlq);
    expect(deadLetter).toMatchObject({
      MessageId: dead.MessageId,
      Body: 'dead',
      MessageAttributes: { 'MailRelay.FailureCode': { DataType: 'String', StringValue: 'InvalidMessage' } },
    });
  });

  it('writes each change within its interval, through a temporary file it never leaves behind', async () => {
    const file = snapshotFile();
    const queues = await startQueues();
    const snapshots = new QueueSnapshots({
      store: queues.emulator.store,
      queueNames: QUEUE_NAMES,
      file,
      intervalMs: 50,
    });
    snapshots.start();
    try {
      const idsInFile = () => {
        const text = (() => {
          try {
            return readFileSync(file, 'utf8');
          } catch {
            return '{"queues":{}}';
          }
        })();
        const snapshot = JSON.parse(text) as { queues: Record<string, { messageId: string }[]> };
        return (snapshot.queues.outbox ?? []).map((message) => message.messageId);
      };
      const sent = await queues.sqs.send(
        new SendMessageCommand({ QueueUrl: queues.outbox, MessageBody: 'a' }),
      );
      await eventually(async () => (idsInFile().includes(sent.MessageId ?? '') ? true : undefined));

      const [received] = await receive(queues, queues.outbox);
      await queues.sqs.send(
        new DeleteMessageCommand({ QueueUrl: queues.outbox, ReceiptHandle: received?.ReceiptHandle }),
      );
      await eventually(async () => (idsInFile().length === 0 ? true : undefined));
      expect(readdirSync(path.dirname(file))).toEqual(['queues.json']);
    } finally {
      await snapshots.stop();
    }
  });

  it('has a dead letter on disk before the emulator acknowledges it (write-through queues)', async () => {
    const file = snapshotFile();
    const queues = await startQueues();
    // An interval no test waits for: only the write-through can have written the file.
    const snapshots = new QueueSnapshots({
      store: queues.emulator.store,
      queueNames: QUEUE_NAMES,
      file,
      intervalMs: 3_600_000,
      writeThrough: ['dlq'],
    });
    snapshots.start();
    try {
      const sent = await queues.sqs.send(
        new SendMessageCommand({ QueueUrl: queues.dlq, MessageBody: 'dead' }),
      );
      const snapshot = JSON.parse(readFileSync(file, 'utf8')) as {
        queues: Record<string, { messageId: string }[]>;
      };
      expect(snapshot.queues.dlq?.map((message) => message.messageId)).toEqual([sent.MessageId]);
    } finally {
      await snapshots.stop();
    }
  });

  it('refuses a snapshot it cannot read, and leaves the file as it was', async () => {
    const file = snapshotFile();
    writeFileSync(file, '{"version":1,"queues":{"outbox":[{"messageId":');
    const queues = await startQueues();

    await expect(restoreQueues(queues.emulator.store, file, QUEUE_NAMES)).rejects.toThrow(
      /is not a queue snapshot local mode can read .*--fresh/,
    );
    expect(readFileSync(file, 'utf8')).toBe('{"version":1,"queues":{"outbox":[{"messageId":');
  });
});
