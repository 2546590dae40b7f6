import type { SQSBatchResponse, SQSEvent } from 'aws-lambda';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { LocalSqsEventSource } from '../../local/sqs-event-source.ts';
import {
  approximateCount,
  createQueue,
  drain,
  enqueue,
  eventually,
  type Peers,
  REGION,
  startPeers,
} from '../helpers/peers.ts';

describe('LocalSqsEventSource (Lambda SQS event source semantics on fauxqs)', () => {
  let peers: Peers;
  let source: LocalSqsEventSource | undefined;

  beforeAll(async () => {
    peers = await startPeers();
  });
  afterAll(() => peers.stop());
  afterEach(async () => {
    await source?.stop();
    source = undefined;
  });

  async function queuesWithRedrive(maxReceiveCount: number) {
    const dlq = await createQueue(peers.sqs);
    const outbox = await createQueue(peers.sqs, {
      VisibilityTimeout: '1',
      RedrivePolicy: JSON.stringify({ deadLetterTargetArn: dlq.arn, maxReceiveCount }),
    });
    return { dlq, outbox };
  }

  function run(
    outbox: { url: string; arn: string },
    handler: (event: SQSEvent) => Promise<SQSBatchResponse>,
  ) {
    source = new LocalSqsEventSource({
      client: peers.sqs,
      queueUrl: outbox.url,
      queueArn: outbox.arn,
      region: REGION,
      handler,
      batchSize: 10,
      maxConcurrency: 1,
      functionTimeoutMs: 2000,
    });
    source.start();
  }

  it('deletes the records that succeeded and redelivers only the reported failures', async () => {
    const { outbox } = await queuesWithRedrive(5);
    const bodies = ['ok-1', 'fail-once', 'ok-2'];
    for (const body of bodies) await enqueue(peers.sqs, outbox.url, body);
    const deliveries: string[] = [];
    const failedOnce = new Set<string>();

    run(outbox, async (event) => {
      const batchItemFailures = [];
      for (const record of event.Records) {
        deliveries.push(record.body);
        if (record.body === 'fail-once' && !failedOnce.has(record.body)) {
          failedOnce.add(record.body);
          batchItemFailures.push({ itemIdentifier: record.messageId });
        }
      }
      return { batchItemFailures };
    });

    await eventually(async () =>
      deliveries.filter((body) => body === 'fail-once').length === 2 ? true : undefined,
    );
    await eventually(async () => ((await approximateCount(peers.sqs, outbox.url)) === 0 ? true : undefined));
    expect(deliveries.filter((body) => body.startsWith('ok-')).sort()).toEqual(['ok-1', 'ok-2']);
  });

  it('passes receive counts and message attributes the way Lambda does', async () => {
    const { outbox } = await queuesWithRedrive(5);
    await enqueue(peers.sqs, outbox.url, 'x');
    const counts: string[] = [];

    run(outbox, async (event) => {
      const record = event.Records[0];
      counts.push(record?.attributes.ApproximateReceiveCount ?? '');
      expect(record?.eventSourceARN).toBe(outbox.arn);
      return { batchItemFailures: counts.length < 2 ? [{ itemIdentifier: record?.messageId ?? '' }] : [] };
    });

    await eventually(async () => (counts.length >= 2 ? true : undefined));
    expect(counts.slice(0, 2)).toEqual(['1', '2']);
  });

  it('leaves a message that keeps failing to the queue redrive policy, which moves it to the DLQ', async () => {
    const { outbox, dlq } = await queuesWithRedrive(2);
    await enqueue(peers.sqs, outbox.url, 'always-fails');

    run(outbox, async (event) => ({
      batchItemFailures: event.Records.map((record) => ({ itemIdentifier: record.messageId })),
    }));

    const moved = await eventually(async () => {
      const messages = await drain(peers.sqs, dlq.url, { polls: 1 });
      return messages.length > 0 ? messages : undefined;
    });
    expect(moved[0]?.Body).toBe('always-fails');
  });

  it('stops receiving but lets the batch in progress finish: its successes deleted, its failures left', async () => {
    const { outbox } = await queuesWithRedrive(5);
    await enqueue(peers.sqs, outbox.url, 'done');
    await enqueue(peers.sqs, outbox.url, 'retry-me');
    let release: () => void = () => undefined;
    const released = new Promise<void>((resolve) => {
      release = resolve;
    });
    const bodies: string[] = [];

    run(outbox, async (event) => {
      bodies.push(...event.Records.map((record) => record.body));
      await released;
      return {
        batchItemFailures: event.Records.filter((record) => record.body === 'retry-me').map((record) => ({
          itemIdentifier: record.messageId,
        })),
      };
    });
    // Both in one batch, whose invocation is still running when stop is called.
    await eventually(async () => (bodies.length === 2 ? true : undefined));
    const stopping = source?.stop();
    release();
    await stopping;

    // Done by the time stop returns: the success deleted, the failure still there for its retry.
    expect(await approximateCount(peers.sqs, outbox.url)).toBe(1);
  });

  it('retries the whole batch when the handler throws or names an unknown record', async () => {
    const { outbox } = await queuesWithRedrive(5);
    await enqueue(peers.sqs, outbox.url, 'a');
    let invocations = 0;

    run(outbox, async () => {
      invocations += 1;
      if (invocations === 1) throw new Error('boom');
      if (invocations === 2) return { batchItemFailures: [{ itemIdentifier: 'not-in-this-batch' }] };
      return { batchItemFailures: [] };
    });

    await eventually(async () => (invocations >= 3 ? true : undefined));
    await eventually(async () => ((await approximateCount(peers.sqs, outbox.url)) === 0 ? true : undefined));
    expect(invocations).toBe(3);
  });
});
