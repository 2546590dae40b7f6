import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describeDelivery } from '../../cli/status.ts';
import { DynamoDeliveryLedger } from '../../lambda/core/dynamo-ledger.ts';
import type { DeliveryRecord } from '../../lambda/core/ledger.ts';
import { type DynamoPeer, startDynamo } from '../helpers/dynamo.ts';

const run = promisify(execFile);

const sent: DeliveryRecord = {
  key: 'invoice-42',
  state: 'sent',
  version: 3,
  messageId: '7c1e',
  bodyHash: 'h',
  route: 'contoso',
  providerIndex: 1,
  attempts: 0,
  failures: [
    {
      provider: 'graph',
      code: 'InvalidAuthenticationToken',
      failureClass: 'provider',
      reason: 'Access token validation failure',
      at: '2026-11-22T10:00:00.000Z',
    },
  ],
  provider: 'ses',
  providerMessageId: '0100-abc',
  fallbackFrom: ['graph'],
  createdAt: '2026-11-22T10:00:00.000Z',
  updatedAt: '2026-11-22T10:00:01.000Z',
  sentAt: '2026-11-22T10:00:01.000Z',
  expiresAt: Math.floor(Date.now() / 1000) + 3600,
};

describe('mail-relay status', () => {
  it('says who sent it, when, on which route, and what failed first', () => {
    expect(describeDelivery(sent)).toBe(
      [
        'sent by ses at 2026-11-22T10:00:01.000Z (provider id 0100-abc), route contoso, after graph failed',
        '  failed tries:',
        '    2026-11-22T10:00:00.000Z  graph  provider  InvalidAuthenticationToken: Access token validation failure',
        '  key invoice-42, SQS message 7c1e, first seen 2026-11-22T10:00:00.000Z',
      ].join('\n'),
    );
  });

  it('describes dead-lettered and suppressed messages', () => {
    const dead = describeDelivery({ ...sent, state: 'dead-lettered', provider: undefined });
    expect(dead.split('\n')[0]).toBe(
      'dead-lettered at 2026-11-22T10:00:01.000Z, route contoso: InvalidAuthenticationToken: Access token validation failure',
    );
    const suppressed = describeDelivery({
      ...sent,
      state: 'suppressed',
      suppressedRecipients: ['a@example.org'],
      failures: [],
    });
    expect(suppressed.split('\n')[0]).toBe(
      'not sent: every recipient is suppressed (a@example.org), route contoso',
    );
  });

  describe('against the DynamoDB emulator', () => {
    let dynamo: DynamoPeer;
    beforeAll(async () => {
      dynamo = await startDynamo();
      const ledger = new DynamoDeliveryLedger(dynamo.client, dynamo.ledgerTableName);
      await ledger.put(sent, undefined);
      await ledger.put({ ...sent, key: 'sqs:9f00', messageId: '9f00' }, undefined);
    });
    afterAll(() => dynamo.stop());

    const status = (...args: string[]) =>
      run(
        process.execPath,
        [
          'cli/mail-relay.js',
          'status',
          ...args,
          '--endpoint',
          dynamo.endpoint,
          '--table',
          dynamo.ledgerTableName,
        ],
        {
          env: {
            ...process.env,
            AWS_REGION: 'us-east-1',
            AWS_ACCESS_KEY_ID: 'x',
            AWS_SECRET_ACCESS_KEY: 'x',
          },
        },
      );

    it('finds a message by idempotency key or by SQS message id', async () => {
      expect((await status('invoice-42')).stdout).toContain('sent by ses at 2026-11-22T10:00:01.000Z');
      expect((await status('9f00')).stdout).toContain('key sqs:9f00, SQS message 9f00');
      // The id `mail-relay send` printed, for a message keyed by its idempotency key.
      expect((await status('7c1e')).stdout).toContain('key invoice-42, SQS message 7c1e');
      expect(JSON.parse((await status('invoice-42', '--json')).stdout)).toMatchObject({ provider: 'ses' });
    });

    it('exits 1 and says so when nothing is recorded', async () => {
      const failed = await status('nope').catch((error: { code: number; stderr: string }) => error);
      expect(failed).toMatchObject({ code: 1 });
      expect((failed as { stderr: string }).stderr).toContain('No delivery recorded for nope');
    });
  });
});
