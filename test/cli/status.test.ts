import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describeDelivery } from '../../cli/status.ts';
import { DynamoDeliveryLedger } from '../../lambda/core/dynamo-ledger.ts';
import type { DeliveryRecord } from '../../lambda/core/ledger.ts';
import { LEDGER_TABLE_NAME, SUPPRESSION_TABLE_NAME } from '../../local/local-names.ts';
import { createRelayTables } from '../../local/relay-tables.ts';
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

  it('lists what happened after sending: bounces (and whether they suppressed), complaints, deliveries', () => {
    const lines = describeDelivery({
      ...sent,
      failures: [],
      fallbackFrom: undefined,
      feedback: [
        {
          kind: 'bounced',
          provider: 'ses',
          recipients: ['nobody@fabrikam.com'],
          bounceType: 'hard',
          status: '5.1.1',
          diagnostic: '550 5.1.1 User unknown',
          suppressed: true,
          at: '2026-11-22T10:00:05.000Z',
        },
        {
          kind: 'delivered',
          provider: 'ses',
          recipients: ['ana@fabrikam.com'],
          suppressed: false,
          at: '2026-11-22T10:00:03.000Z',
        },
      ],
    }).split('\n');

    expect(lines.slice(1, 4)).toEqual([
      '  after sending:',
      '    2026-11-22T10:00:05.000Z  ses  bounced (hard): nobody@fabrikam.com: 5.1.1 550 5.1.1 User unknown, now suppressed',
      '    2026-11-22T10:00:03.000Z  ses  delivered: ana@fabrikam.com',
    ]);
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
      'suppressed: not sent, every recipient is on the suppression list (a@example.org), route contoso',
    );
  });

  it('says which provider has a message being sent, and which may have sent one, with its Message-ID', () => {
    const sending = describeDelivery({
      ...sent,
      state: 'sending',
      handedOffTo: 'smtp',
      handedOffAt: '2026-11-22T10:00:02.000Z',
      leaseUntil: Date.parse('2026-11-22T10:00:32.000Z'),
      failures: [],
    });
    expect(sending.split('\n')[0]).toBe(
      'sending: handed to smtp at 2026-11-22T10:00:02.000Z, route contoso (the function holds it until 2026-11-22T10:00:32.000Z)',
    );
    const unknown = describeDelivery({
      ...sent,
      state: 'dead-lettered',
      failures: [],
      internetMessageId: '<4f1c@contoso.com>',
      maybeSent: {
        provider: 'smtp',
        since: '2026-11-22T10:00:02.000Z',
        reason: 'the answer was lost: ETIMEDOUT',
      },
      release: { at: '2026-11-22T11:00:00.000Z', by: 'ana' },
    }).split('\n');
    expect(unknown.slice(1, 4)).toEqual([
      '  smtp may have sent it (the answer was lost: ETIMEDOUT), since 2026-11-22T10:00:02.000Z',
      '  its Message-ID: <4f1c@contoso.com>',
      '  released by ana at 2026-11-22T11:00:00.000Z: the next delivery sends it',
    ]);
  });

  it('names the provider the next try goes to while a message is retrying', () => {
    const retrying: DeliveryRecord = {
      ...sent,
      state: 'retrying',
      providerIndex: 0,
      attempts: 1,
      provider: undefined,
      providerMessageId: undefined,
      fallbackFrom: undefined,
      sentAt: undefined,
    };
    expect(describeDelivery(retrying).split('\n')).toEqual([
      'retrying: next try on graph (attempt 2 of the provider), route contoso',
      '  failed tries:',
      '    2026-11-22T10:00:00.000Z  graph  provider  InvalidAuthenticationToken: Access token validation failure',
      '  key invoice-42, SQS message 7c1e, first seen 2026-11-22T10:00:00.000Z',
    ]);
    // Not tried yet where the chain stands (a failure before any provider call): only its place is known.
    expect(describeDelivery({ ...retrying, providerIndex: 1, attempts: 0 }).split('\n')[0]).toBe(
      "retrying: next try on provider #2 of the route's chain (attempt 1 of the provider), route contoso",
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

    it("reads local mode's ledger without --table, with dummy credentials, never a profile", async () => {
      await createRelayTables(dynamo.client, {
        ledgerTableName: LEDGER_TABLE_NAME,
        suppressionTableName: SUPPRESSION_TABLE_NAME,
      });
      await new DynamoDeliveryLedger(dynamo.client, LEDGER_TABLE_NAME).put(
        { ...sent, key: 'local-1' },
        undefined,
      );
      const environment: NodeJS.ProcessEnv = {
        ...process.env,
        MAIL_RELAY_DYNAMODB_PORT: new URL(dynamo.endpoint).port,
        // The standard chain would fail on this: local mode must not consult it.
        AWS_PROFILE: 'mail-relay-test-no-such-profile',
        AWS_CONFIG_FILE: '/nonexistent/config',
        AWS_SHARED_CREDENTIALS_FILE: '/nonexistent/credentials',
      };
      for (const name of ['AWS_REGION', 'AWS_DEFAULT_REGION', 'AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY']) {
        delete environment[name];
      }
      const local = await run(process.execPath, ['cli/mail-relay.js', 'status', 'local-1'], {
        env: environment,
      });
      expect(local.stdout).toContain('key local-1, SQS message 7c1e');
    });

    it('exits 1 and says so when nothing is recorded', async () => {
      const failed = await status('nope').catch((error: { code: number; stderr: string }) => error);
      expect(failed).toMatchObject({ code: 1 });
      expect((failed as { stderr: string }).stderr).toContain(
        'No delivery recorded for nope (the ledger keeps entries for ledger.retentionDays).',
      );
    });
  });
});
