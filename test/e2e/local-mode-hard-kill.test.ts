import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { DynamoDeliveryLedger } from '../../lambda/core/dynamo-ledger.ts';
import { QUEUE_SNAPSHOT_FILE } from '../../local/state-dir.ts';
import { drain, enqueue, eventually, producerClient, validMessage } from '../helpers/peers.ts';
import { killLocalModes, spawnLocalMode } from '../local/isolated-local-mode.ts';

// `mail-relay start` in its own process, killed with SIGKILL (no shutdown, no final snapshot): the
// next start finds the queues as the last snapshot taken while running had them.

interface StartedCli {
  readonly child: ChildProcess;
  /** Everything it printed so far. */
  output(): string;
  readonly outboxUrl: string;
  readonly deadLetterQueueUrl: string;
  readonly sqsEndpoint: string;
  readonly ledger: DynamoDeliveryLedger;
}

interface SnapshotMessage {
  readonly messageId: string;
  readonly approximateReceiveCount: number;
  readonly messageAttributes: Record<string, { StringValue?: string }>;
}

describe('local mode killed without warning', () => {
  const children: ChildProcess[] = [];
  const clients: DynamoDBClient[] = [];
  const workDir = mkdtempSync(path.join(tmpdir(), 'mail-relay-kill-e2e-'));
  afterAll(() => rmSync(workDir, { recursive: true, force: true }));
  afterEach(async () => {
    for (const client of clients.splice(0)) client.destroy();
    await killLocalModes(children);
  });

  /** Starts `mail-relay start` and reads where everything is from its banner (all ports are 0). */
  async function startCli(workDir: string, configPath: string, ...extra: string[]): Promise<StartedCli> {
    const started = await spawnLocalMode(workDir, children, ['--config', configPath, ...extra]);
    const { child } = started;
    const field = (label: string) => started.bannerUrl(label);
    const dynamo = new DynamoDBClient({
      region: 'us-east-1',
      endpoint: /Delivery ledger:\s+\S+ at (http:\/\/\S+)/.exec(started.output())?.[1] ?? '',
      credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
    });
    clients.push(dynamo);
    return {
      child,
      output: started.output,
      outboxUrl: field('Outbox queue:'),
      deadLetterQueueUrl: field('Dead-letter queue:'),
      sqsEndpoint: field('SQS endpoint:'),
      ledger: new DynamoDeliveryLedger(dynamo, 'mail-relay-ledger'),
    };
  }

  it('restarts from the snapshot written while running, and a graceful stop after that saves the rest', async () => {
    const configPath = path.join(workDir, 'config.json');
    writeFileSync(
      configPath,
      JSON.stringify({
        ses: { identities: ['example.com'] },
        // No Graph credential in the first run: contoso.com mail waits on the outbox for Graph.
        graph: {
          tenantId: 'contoso.onmicrosoft.com',
          clientId: '6f1e2d3c-0000-4000-8000-00000000e2e8',
          senders: ['contoso.com'],
        },
        retry: { maxAttempts: 3, baseDelaySeconds: 600, maxDelaySeconds: 600 },
      }),
    );
    const snapshotPath = path.join(workDir, 'state', QUEUE_SNAPSHOT_FILE);
    const snapshot = (): Record<string, SnapshotMessage[]> => {
      if (!existsSync(snapshotPath)) return {};
      return (JSON.parse(readFileSync(snapshotPath, 'utf8')) as { queues: Record<string, SnapshotMessage[]> })
        .queues;
    };

    const first = await startCli(workDir, configPath);
    const sqs = producerClient(first.sqsEndpoint);
    try {
      const invalidId = await enqueue(sqs, first.outboxUrl, '{"v":1,');
      const waitingId = await enqueue(
        sqs,
        first.outboxUrl,
        validMessage({ from: 'billing@contoso.com', subject: 'Outlived a SIGKILL' }),
      );
      await eventually(async () =>
        (await first.ledger.get(`sqs:${waitingId}`))?.state === 'retrying' ? true : undefined,
      );
      // The snapshot taken while running: the waiting message (received once) alone in the outbox (the
      // invalid one deleted once dead-lettered), and the dead letter.
      const deadLetter = await eventually(async () => {
        const queues = snapshot();
        const outbox = queues['mail-relay-outbox'] ?? [];
        const waiting = outbox.find((message) => message.messageId === waitingId);
        const dead = queues['mail-relay-dlq']?.find(
          (message) => message.messageAttributes['MailRelay.SourceMessageId']?.StringValue === invalidId,
        );
        return outbox.length === 1 && waiting && waiting.approximateReceiveCount >= 1 ? dead : undefined;
      });
      first.child.kill('SIGKILL');
      await once(first.child, 'exit');
      sqs.destroy();

      const second = await startCli(workDir, configPath, '--graph-peer');
      expect(second.output()).toContain('1 message(s) in the outbox, 1 in the dead-letter queue');
      const restartedSqs = producerClient(second.sqsEndpoint);
      try {
        const [dead] = await drain(restartedSqs, second.deadLetterQueueUrl, { polls: 1 });
        expect(dead?.MessageId).toBe(deadLetter.messageId);
        expect(dead?.Body).toBe('{"v":1,');
        expect(dead?.MessageAttributes?.['MailRelay.FailureCode']?.StringValue).toBe('InvalidMessage');
        // The waiting message goes out through the Graph peer this time, under its ledger entry.
        await eventually(async () =>
          (await second.ledger.get(`sqs:${waitingId}`))?.state === 'sent' ? true : undefined,
        );
        expect(await second.ledger.get(`sqs:${waitingId}`)).toMatchObject({ provider: 'graph' });
      } finally {
        restartedSqs.destroy();
      }

      // Ctrl-C: a clean exit, the final snapshot written and the directory released.
      second.child.kill('SIGINT');
      const [code] = await once(second.child, 'exit');
      expect(code).toBe(0);
      expect(second.output()).toContain('Stopped.');
      expect(snapshot()['mail-relay-outbox']).toEqual([]);
      expect(snapshot()['mail-relay-dlq']?.map((message) => message.messageId)).toEqual([
        deadLetter.messageId,
      ]);
      expect(existsSync(path.join(workDir, 'state', 'local-mode.pid'))).toBe(false);
    } finally {
      sqs.destroy();
    }
  });
});
