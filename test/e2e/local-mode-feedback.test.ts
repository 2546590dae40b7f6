import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { SQSClient } from '@aws-sdk/client-sqs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DynamoDeliveryLedger } from '../../lambda/core/dynamo-ledger.ts';
import { DynamoSuppressionList } from '../../lambda/core/dynamo-suppression.ts';
import { type LocalRelay, startLocalRelay } from '../../local/local-relay.ts';
import { enqueue, eventually, producerClient, validMessage } from '../helpers/peers.ts';
import { isolatedLocalMode } from '../local/isolated-local-mode.ts';

// SES's mailbox simulator in local mode: the send handler sends through the SES emulator, the
// capture turns simulator recipients into the SES events AWS would publish, and the real feedback
// handler acts on them against dynalite and the EventBridge peer.

describe('local mode: SES feedback from the mailbox simulator', () => {
  let relay: LocalRelay;
  let sqs: SQSClient;
  let dynamo: DynamoDBClient;
  const workDir = mkdtempSync(path.join(tmpdir(), 'mail-relay-feedback-e2e-'));

  beforeAll(async () => {
    const configPath = path.join(workDir, 'config.json');
    writeFileSync(
      configPath,
      JSON.stringify({
        ses: { identities: ['example.com'] },
        suppression: { retentionDays: 30 },
        // Opt-in kinds too: this test follows every event the feedback publishes.
        events: { publish: { sent: true, delivered: true } },
      }),
    );
    relay = await startLocalRelay({ ...isolatedLocalMode(workDir), configPath, logLevel: 'ERROR' });
    sqs = producerClient(relay.sqsEndpoint);
    dynamo = new DynamoDBClient({
      region: 'us-east-1',
      endpoint: relay.dynamoDbEndpoint,
      credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
    });
  });
  afterAll(async () => {
    sqs?.destroy();
    dynamo?.destroy();
    await relay?.stop();
  });

  it('suppresses bounce@ and complaint@, publishes Mail Bounced, Complained and Delivered, notes them for status', async () => {
    await enqueue(
      sqs,
      relay.queueUrl,
      validMessage({
        to: [
          'bounce@simulator.amazonses.com',
          'complaint@simulator.amazonses.com',
          'success@simulator.amazonses.com',
        ],
        idempotencyKey: 'simulated-1',
        tags: { app: 'billing' },
      }),
    );

    const list = new DynamoSuppressionList(dynamo, relay.suppressionTableName);
    const suppressed = await eventually(async () => {
      const found = await list.find(['bounce@simulator.amazonses.com', 'complaint@simulator.amazonses.com']);
      return found.size === 2 ? found : undefined;
    });
    expect(suppressed.get('bounce@simulator.amazonses.com')?.reason).toMatch(/^hard bounce 5\.1\.1 via ses/);
    expect(suppressed.get('complaint@simulator.amazonses.com')?.reason).toBe('complaint (abuse) via ses');
    expect(suppressed.get('bounce@simulator.amazonses.com')?.expiresAt).toBeGreaterThan(
      Date.now() / 1000 + 29 * 86_400,
    );
    expect((await list.find(['success@simulator.amazonses.com'])).size).toBe(0);

    const feedbackEvents = await eventually(async () => {
      const kinds = relay.eventBridge.events.filter((event) => event.detailType !== 'Mail Sent');
      return kinds.length >= 4 ? kinds : undefined;
    });
    expect(feedbackEvents.map((event) => event.detailType).sort()).toEqual([
      'Mail Bounced',
      'Mail Complained',
      'Mail Delivered',
      'Mail Delivered',
    ]);
    expect(feedbackEvents.find((event) => event.detailType === 'Mail Bounced')?.detail).toMatchObject({
      idempotencyKey: 'simulated-1',
      tags: { app: 'billing' },
      provider: 'ses',
      bounceType: 'hard',
      recipients: ['bounce@simulator.amazonses.com'],
    });

    const ledger = new DynamoDeliveryLedger(dynamo, relay.ledgerTableName);
    const notes = await eventually(async () => {
      const feedback = (await ledger.get('simulated-1'))?.feedback;
      return feedback && feedback.length >= 4 ? feedback : undefined;
    });
    expect(notes.map((note) => note.kind).sort()).toEqual([
      'bounced',
      'complained',
      'delivered',
      'delivered',
    ]);
  });

  it('then drops the suppressed recipients from the next message, before SES sees it', async () => {
    const before = relay.capture.sent.length;
    await enqueue(
      sqs,
      relay.queueUrl,
      validMessage({
        to: ['bounce@simulator.amazonses.com', 'customer@example.org'],
        idempotencyKey: 'after-1',
      }),
    );

    const sent = await eventually(async () => relay.capture.sent.slice(before).at(0));
    expect(sent.destination.to).toEqual(['customer@example.org']);
  });
});
