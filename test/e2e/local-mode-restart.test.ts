import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { SQSClient } from '@aws-sdk/client-sqs';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { DynamoDeliveryLedger } from '../../lambda/core/dynamo-ledger.ts';
import { DynamoSuppressionList } from '../../lambda/core/dynamo-suppression.ts';
import { type LocalRelay, type LocalRelayOptions, startLocalRelay } from '../../local/local-relay.ts';
import {
  approximateCount,
  drain,
  enqueue,
  eventually,
  producerClient,
  validMessage,
} from '../helpers/peers.ts';
import { isolatedLocalMode } from '../local/isolated-local-mode.ts';

// Local mode keeps its queues, delivery ledger and suppression list in its state directory: a
// restart (same directory) finds them as they were, and a stop lets the batch in progress finish.

/** One running local mode, with clients for what it exposes. */
interface Running {
  readonly relay: LocalRelay;
  readonly sqs: SQSClient;
  readonly ledger: DynamoDeliveryLedger;
  readonly suppressions: DynamoSuppressionList;
  stop(): Promise<void>;
}

describe('local mode across a restart', () => {
  const running = new Set<Running>();
  const workDirs: string[] = [];
  afterEach(async () => {
    for (const instance of running) await instance.stop();
  });
  afterAll(() => {
    for (const workDir of workDirs) rmSync(workDir, { recursive: true, force: true });
  });

  function setUp(config: Record<string, unknown>): LocalRelayOptions {
    const workDir = mkdtempSync(path.join(tmpdir(), 'mail-relay-restart-e2e-'));
    workDirs.push(workDir);
    const configPath = path.join(workDir, 'config.json');
    writeFileSync(configPath, JSON.stringify(config));
    return { ...isolatedLocalMode(workDir), configPath, logLevel: 'ERROR' };
  }

  async function start(options: LocalRelayOptions): Promise<Running> {
    const relay = await startLocalRelay(options);
    const sqs = producerClient(relay.sqsEndpoint);
    const dynamo = new DynamoDBClient({
      region: 'us-east-1',
      endpoint: relay.dynamoDbEndpoint,
      credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
    });
    const instance: Running = {
      relay,
      sqs,
      ledger: new DynamoDeliveryLedger(dynamo, relay.ledgerTableName),
      suppressions: new DynamoSuppressionList(dynamo, relay.suppressionTableName),
      async stop() {
        running.delete(instance);
        sqs.destroy();
        dynamo.destroy();
        await relay.stop();
      },
    };
    running.add(instance);
    return instance;
  }

  it('finds its dead letters, waiting messages, ledger and suppression list again, and sends what waited', async () => {
    const options = setUp({
      ses: { identities: ['example.com'] },
      // No Graph credential in the first run: contoso.com mail waits on the outbox for Graph.
      graph: {
        tenantId: 'contoso.onmicrosoft.com',
        clientId: '6f1e2d3c-0000-4000-8000-00000000e2e7',
        senders: ['contoso.com'],
      },
      queue: { maxReceiveCount: 5 },
      retry: { maxAttempts: 3, baseDelaySeconds: 600, maxDelaySeconds: 600 },
    });
    const before = await start(options);
    const invalidIds = [
      await enqueue(before.sqs, before.relay.queueUrl, '{"v":1,'),
      await enqueue(before.sqs, before.relay.queueUrl, validMessage({ from: 'ceo@not-ours.example' })),
    ];
    const waitingId = await enqueue(
      before.sqs,
      before.relay.queueUrl,
      validMessage({ from: 'billing@contoso.com', subject: 'Waited for Graph' }),
    );
    const sentId = await enqueue(before.sqs, before.relay.queueUrl, validMessage({ subject: 'Sent once' }));
    const suppressed = {
      address: 'gone@example.org',
      reason: 'hard bounce: 550 5.1.1',
      since: new Date().toISOString(),
    };
    await before.suppressions.suppress(suppressed);
    await eventually(async () =>
      (await before.ledger.get(`sqs:${sentId}`))?.state === 'sent' ? true : undefined,
    );
    await eventually(async () =>
      (await before.ledger.get(`sqs:${waitingId}`))?.state === 'retrying' ? true : undefined,
    );
    await eventually(async () =>
      (await approximateCount(before.sqs, before.relay.deadLetterQueueUrl)) === 2 ? true : undefined,
    );
    // Reading the dead letters leaves them in flight: they must come back visible all the same.
    const deadBefore = await drain(before.sqs, before.relay.deadLetterQueueUrl, { polls: 1 });
    expect(deadBefore).toHaveLength(2);
    await before.stop();

    const after = await start({ ...options, graphPeer: true });
    expect(after.relay.state.restored).toEqual({ outbox: 1, deadLetterQueue: 2 });
    // One local mode per state directory.
    await expect(startLocalRelay(options)).rejects.toThrow(/is in use by another local mode/);

    const deadAfter = await drain(after.sqs, after.relay.deadLetterQueueUrl, { polls: 1 });
    expect(deadAfter.map((message) => message.MessageId).sort()).toEqual(
      deadBefore.map((message) => message.MessageId).sort(),
    );
    for (const message of deadBefore) {
      const restored = deadAfter.find((candidate) => candidate.MessageId === message.MessageId);
      expect(restored?.Body).toBe(message.Body);
      expect(restored?.MessageAttributes).toEqual(message.MessageAttributes);
      expect(restored?.Attributes?.SentTimestamp).toBe(message.Attributes?.SentTimestamp);
      expect(restored?.Attributes?.ApproximateReceiveCount).toBe('2');
    }
    expect(
      deadAfter
        .map((message) => message.MessageAttributes?.['MailRelay.SourceMessageId']?.StringValue)
        .sort(),
    ).toEqual([...invalidIds].sort());

    expect((await after.suppressions.find([suppressed.address])).get(suppressed.address)).toEqual(suppressed);
    expect(await after.ledger.get(`sqs:${sentId}`)).toMatchObject({ state: 'sent', provider: 'ses' });

    // The message that waited goes out now, through the Graph peer, under the same ledger entry.
    const graph = after.relay.graphPeer;
    await eventually(async () =>
      graph?.delivered.find((message) => message.message.subject === 'Waited for Graph'),
    );
    await eventually(async () =>
      (await after.ledger.get(`sqs:${waitingId}`))?.state === 'sent' ? true : undefined,
    );
    expect(await after.ledger.get(`sqs:${waitingId}`)).toMatchObject({ state: 'sent', provider: 'graph' });
    await eventually(async () =>
      (await approximateCount(after.sqs, after.relay.queueUrl)) === 0 ? true : undefined,
    );
    // Nothing went out a second time.
    expect(after.relay.capture.sent).toEqual([]);
    expect(graph?.delivered).toHaveLength(1);
  });

  it('starts empty with fresh', async () => {
    const options = setUp({ ses: { identities: ['example.com'] } });
    const before = await start(options);
    const invalidId = await enqueue(before.sqs, before.relay.queueUrl, '{"v":1,');
    const sentId = await enqueue(before.sqs, before.relay.queueUrl, validMessage());
    await eventually(async () =>
      (await approximateCount(before.sqs, before.relay.deadLetterQueueUrl)) === 1 ? true : undefined,
    );
    await eventually(async () =>
      (await before.ledger.get(`sqs:${sentId}`))?.state === 'sent' ? true : undefined,
    );
    await before.stop();

    const after = await start({ ...options, fresh: true });
    expect(after.relay.state.restored).toEqual({ outbox: 0, deadLetterQueue: 0 });
    expect(await approximateCount(after.sqs, after.relay.deadLetterQueueUrl)).toBe(0);
    expect(await after.ledger.get(`sqs:${sentId}`)).toBeUndefined();
    expect(await after.ledger.get(`sqs:${invalidId}`)).toBeUndefined();
  });

  it('lets the batch in progress finish when stopped: sent, recorded, off the outbox', async () => {
    const options = setUp({ ses: { identities: ['example.com'] } });
    const before = await start(options);
    // SES takes the message at once but answers only after two seconds: the send is in progress.
    before.relay.capture.injectFault({ lostAnswer: 'hang', answerAfterMs: 2000 });
    const messageId = await enqueue(
      before.sqs,
      before.relay.queueUrl,
      validMessage({ subject: 'Slow answer' }),
    );
    await eventually(async () =>
      before.relay.capture.sent.find((send) => send.raw.toString().includes('Subject: Slow answer')),
    );
    await before.stop();

    // Had the stop abandoned the batch, the message would still be on the outbox, in the snapshot.
    const after = await start(options);
    expect(after.relay.state.restored).toEqual({ outbox: 0, deadLetterQueue: 0 });
    expect(await after.ledger.get(`sqs:${messageId}`)).toMatchObject({ state: 'sent', provider: 'ses' });
    expect(await approximateCount(after.sqs, after.relay.queueUrl)).toBe(0);
    expect(after.relay.capture.sent).toEqual([]);
  });
});
