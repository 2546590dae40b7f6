import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { PutItemCommand } from '@aws-sdk/client-dynamodb';
import {
  CreateQueueCommand,
  ReceiveMessageCommand,
  SendMessageCommand,
  SQSClient,
} from '@aws-sdk/client-sqs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configuredLimits, describeFleetStatus, summarizePacing } from '../../cli/fleet-status.ts';
import { DynamoPacingStore } from '../../lambda/core/pacing/dynamo-pacing-store.ts';
import { parseRelayConfig } from '../../lib/config.ts';
import { startSqsEmulator } from '../../local/emulators.ts';
import {
  DEAD_LETTER_QUEUE_NAME,
  LEDGER_TABLE_NAME,
  OUTBOX_QUEUE_NAME,
  PACING_TABLE_NAME,
  SUPPRESSION_TABLE_NAME,
} from '../../local/local-names.ts';
import { createRelayTables } from '../../local/relay-tables.ts';
import { type DynamoPeer, startDynamo } from '../helpers/dynamo.ts';
import { createQueue, eventually, REGION } from '../helpers/peers.ts';

// `mail-relay status` without an id, as an operator runs it: a child process against the DynamoDB
// emulator (a pacing table written as the send functions write it, through DynamoPacingStore) and the
// SQS emulator (an outbox with waiting, in-flight and delayed messages, and a dead-letter queue).

const run = promisify(execFile);
const CLI = path.resolve('cli/mail-relay.js');
const DAY_MS = 86_400_000;
const today = () => new Date().toISOString().slice(0, 10);
const yesterday = () => new Date(Date.now() - DAY_MS).toISOString().slice(0, 10);
/** Day counters expire two days after their day, as the pacer writes them. */
const dayExpiry = () => Math.ceil((Math.floor(Date.now() / DAY_MS) + 3) * (DAY_MS / 1000));

const CONFIG = {
  graph: {
    tenantId: '00000000-0000-4000-8000-00000000a11c',
    clientId: '00000000-0000-4000-8000-0000000c11e7',
    senders: ['contoso.com'],
    // The fleet-wide concurrency lease is opt-in: this relay has it, so leases are shown against 4.
    pacing: {
      perMailbox: { concurrentRequests: 4 },
      mailboxes: { 'Ana@contoso.com': { recipientsPerDay: 5 } },
    },
  },
  ses: { identities: ['fabrikam.com'] },
};

/** Writes the pacing state of a busy day into a pacing table, as the send functions' pacer does. */
async function seedPacing(dynamo: DynamoPeer, table: string): Promise<void> {
  const store = new DynamoPacingStore(dynamo.client, table);
  const now = Date.now();
  const ana = 'graph|mailbox|ana@contoso.com';
  // Ana's day is full (her limit is 5), her minute's schedule runs a minute ahead, one lease is held.
  expect(await store.add(`${ana}|day|${today()}`, 5, 5, dayExpiry())).toEqual({ added: true, total: 5 });
  expect((await store.reserve(`${ana}|messages`, 60_000, now, now)).reserved).toBe(true);
  expect(await store.lease(`${ana}|concurrent`, 1, 'function-1', now, now + 60_000)).toBe(0);
  // Bob sent to three recipients today; his schedule is free again; a lease run out is not held.
  const bob = 'graph|mailbox|bob@contoso.com';
  await store.add(`${bob}|day|${today()}`, 3, 10_000, dayExpiry());
  await store.reserve(`${bob}|messages`, 1, now - 10_000, now - 10_000);
  await store.lease(`${bob}|concurrent`, 1, 'function-2', now - 10_000, now - 5_000);
  // SES's account rate, busy for two minutes.
  await store.reserve('ses|provider|recipients', 120_000, now, now);
  // Carol sent only yesterday: not part of today's picture.
  await store.add(`graph|mailbox|carol@contoso.com|day|${yesterday()}`, 7, 10_000, dayExpiry());
  // Something that is not pacing state is left alone.
  await dynamo.client.send(new PutItemCommand({ TableName: table, Item: { key: { S: 'not-a-scope' } } }));
}

/** 2 waiting, 1 in flight, 1 delayed in the outbox; 1 message in the dead-letter queue. */
async function seedQueues(sqs: SQSClient, outboxUrl: string, dlqUrl: string): Promise<void> {
  const send = (queueUrl: string, delay = 0) =>
    sqs.send(new SendMessageCommand({ QueueUrl: queueUrl, MessageBody: '{}', DelaySeconds: delay }));
  await Promise.all([send(outboxUrl), send(outboxUrl), send(outboxUrl), send(outboxUrl, 900), send(dlqUrl)]);
  // One received and held: what a send function is working on.
  await eventually(async () => {
    const { Messages = [] } = await sqs.send(
      new ReceiveMessageCommand({ QueueUrl: outboxUrl, MaxNumberOfMessages: 1, VisibilityTimeout: 300 }),
    );
    return Messages.length === 1 ? true : undefined;
  });
}

describe('mail-relay status without an id: the fleet', () => {
  let dynamo: DynamoPeer;
  let sqsEmulator: Awaited<ReturnType<typeof startSqsEmulator>>;
  let sqs: SQSClient;
  let directory: string;
  let configPath: string;
  let outboxUrl: string;
  let dlqUrl: string;

  beforeAll(async () => {
    [dynamo, sqsEmulator] = await Promise.all([startDynamo(), startSqsEmulator(0)]);
    sqs = new SQSClient({
      region: REGION,
      endpoint: sqsEmulator.endpoint,
      credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
    });
    directory = await mkdtemp(path.join(tmpdir(), 'mail-relay-status-'));
    configPath = path.join(directory, 'relay.config.json');
    await writeFile(configPath, JSON.stringify(CONFIG));
    [outboxUrl, dlqUrl] = [(await createQueue(sqs)).url, (await createQueue(sqs)).url];
    await Promise.all([seedPacing(dynamo, dynamo.pacingTableName), seedQueues(sqs, outboxUrl, dlqUrl)]);
  });
  afterAll(async () => {
    sqs.destroy();
    await Promise.all([dynamo.stop(), sqsEmulator.stop()]);
    await rm(directory, { recursive: true, force: true });
  });

  /** Runs the CLI with no usable AWS credentials: every endpoint is an emulator. */
  async function cli(args: string[], options: { env?: NodeJS.ProcessEnv; cwd?: string } = {}) {
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      AWS_PROFILE: 'mail-relay-test-no-such-profile',
      AWS_CONFIG_FILE: '/nonexistent/config',
      AWS_SHARED_CREDENTIALS_FILE: '/nonexistent/credentials',
      ...options.env,
    };
    for (const name of ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN', 'AWS_REGION']) {
      delete env[name];
    }
    try {
      const { stdout, stderr } = await run(process.execPath, [CLI, 'status', ...args], {
        env,
        cwd: options.cwd ?? process.cwd(),
      });
      return { code: 0, stdout, stderr };
    } catch (error) {
      const failed = error as { code: number; stdout: string; stderr: string };
      return { code: failed.code, stdout: failed.stdout, stderr: failed.stderr };
    }
  }

  const stackFlags = () => [
    '--pacing-table',
    dynamo.pacingTableName,
    '--endpoint',
    dynamo.endpoint,
    '--outbox-url',
    outboxUrl,
    '--dlq-url',
    dlqUrl,
    '--sqs-endpoint',
    sqsEmulator.endpoint,
    '--config',
    configPath,
  ];

  it('names each mailbox paced today, its count, its cap, its schedules and leases, and the queue depths', async () => {
    const [human, json] = await Promise.all([cli(stackFlags()), cli([...stackFlags(), '--json'])]);

    expect(human).toMatchObject({ code: 0, stderr: '' });
    const lines = human.stdout.trimEnd().split('\n');
    expect(lines[0]).toBe(
      `Pacing, UTC day ${today()} (table ${dynamo.pacingTableName}; limits from ${configPath}):`,
    );
    const ana = lines.indexOf('  graph mailbox ana@contoso.com');
    expect(lines.slice(ana, ana + 4)).toEqual([
      '  graph mailbox ana@contoso.com',
      '    recipients today: 5 of 5: cap reached, sends wait until 00:00 UTC',
      expect.stringMatching(
        /^ {4}messages per minute \(limit 30\): busy, next free in (60|[1-5]\d|[1-9]) s$/,
      ),
      '    concurrent requests: 1 of 4 held now',
    ]);
    const bob = lines.indexOf('  graph mailbox bob@contoso.com');
    expect(lines.slice(bob, bob + 4)).toEqual([
      '  graph mailbox bob@contoso.com',
      '    recipients today: 3 of 10,000',
      '    messages per minute (limit 30): free',
      '    concurrent requests: 0 of 4 held now',
    ]);
    const ses = lines.indexOf('  ses (whole provider)');
    expect(lines[ses + 1]).toMatch(
      /^ {4}recipients per second \(limit: the provider account's, read when the function starts\): busy, next free in \d+ s$/,
    );
    expect(human.stdout).not.toContain('carol');
    expect(human.stdout).not.toContain('not-a-scope');
    expect(lines.slice(-3)).toEqual([
      'Outbox: 2 waiting, 1 in flight (being sent or retried), 1 delayed (waiting for their turn)',
      expect.stringContaining('age of the oldest message: '),
      'Dead-letter queue: 1 message(s) (mail-relay dlq list)',
    ]);
    expect(lines.at(-2)).toContain('ApproximateAgeOfOldestMessage');

    expect(json).toMatchObject({ code: 0, stderr: '' });
    const status = JSON.parse(json.stdout);
    expect(status).toMatchObject({
      day: today(),
      pacing: { table: dynamo.pacingTableName, error: null },
      limits: { known: true, config: configPath, note: null },
      queues: {
        outbox: { url: outboxUrl, visible: 2, inFlight: 1, delayed: 1 },
        deadLetter: { url: dlqUrl, visible: 1, inFlight: 0, delayed: 0 },
        oldestAgeSeconds: null,
      },
    });
    expect(status.pacing.scopes.map((scope: { scope: string }) => scope.scope)).toEqual([
      'graph|mailbox|ana@contoso.com',
      'graph|mailbox|bob@contoso.com',
      'ses|provider',
    ]);
    expect(status.pacing.scopes[0]).toMatchObject({
      provider: 'graph',
      kind: 'mailbox',
      mailbox: 'ana@contoso.com',
      limits: { concurrentRequests: 4, messagesPerMinute: 30, recipientsPerDay: 5 },
      today: { recipients: 5, limit: 5, capReached: true },
      rates: [{ limit: 'messagesPerMinute', value: 30, busy: true, fromAccount: false }],
      leases: { held: 1, limit: 4 },
    });
    expect(status.pacing.scopes[0].rates[0].nextFreeInSeconds).toBeGreaterThan(0);
    expect(status.pacing.scopes[1].today).toEqual({ recipients: 3, limit: 10_000, capReached: false });
    expect(status.pacing.scopes[2]).toMatchObject({
      mailbox: null,
      limits: {},
      today: { recipients: 0, limit: null, capReached: null },
      rates: [{ limit: 'recipientsPerSecond', value: null, busy: true, fromAccount: true }],
    });
  }, 60_000);

  it("reads local mode's table and queues by default; without a configuration the limits are unknown", async () => {
    await createRelayTables(dynamo.client, {
      ledgerTableName: LEDGER_TABLE_NAME,
      suppressionTableName: SUPPRESSION_TABLE_NAME,
      pacingTableName: PACING_TABLE_NAME,
    });
    await new DynamoPacingStore(dynamo.client, PACING_TABLE_NAME).add(
      `graph|mailbox|local@contoso.com|day|${today()}`,
      2,
      10_000,
      dayExpiry(),
    );
    for (const name of [OUTBOX_QUEUE_NAME, DEAD_LETTER_QUEUE_NAME]) {
      await sqs.send(new CreateQueueCommand({ QueueName: name }));
    }
    const local = await cli([], {
      env: {
        MAIL_RELAY_DYNAMODB_PORT: new URL(dynamo.endpoint).port,
        MAIL_RELAY_SQS_PORT: new URL(sqsEmulator.endpoint).port,
      },
      // No mail-relay.config.json there.
      cwd: directory,
    });

    expect(local).toMatchObject({ code: 0, stderr: '' });
    expect(local.stdout.split('\n')).toEqual([
      `Pacing, UTC day ${today()} (table ${PACING_TABLE_NAME}; no mail-relay.config.json here: limits unknown (pass --config PATH)):`,
      '  graph mailbox local@contoso.com',
      '    recipients today: 2 (limit: see config)',
      'Outbox: 0 waiting, 0 in flight (being sent or retried), 0 delayed (waiting for their turn)',
      expect.stringContaining('age of the oldest message: '),
      'Dead-letter queue: 0 message(s) (mail-relay dlq list)',
      '',
    ]);
  }, 60_000);

  it('refuses a mix of one relay and another, and the flags of the other form', async () => {
    const [partial, ledgerTable, idWithFleetFlag, missingConfig] = await Promise.all([
      cli(['--pacing-table', dynamo.pacingTableName, '--endpoint', dynamo.endpoint]),
      cli(['--table', dynamo.ledgerTableName]),
      cli(['some-id', '--pacing-table', dynamo.pacingTableName]),
      cli([...stackFlags(), '--config', path.join(directory, 'missing.json')]),
    ]);
    // Port 9 (discard) is closed: nothing of local mode answers.
    const notRunning = await cli([], {
      env: { MAIL_RELAY_DYNAMODB_PORT: '9', MAIL_RELAY_SQS_PORT: '9' },
      cwd: directory,
    });
    expect(partial.code).toBe(1);
    expect(partial.stderr).toContain('pass --outbox-url and --dlq-url too');
    expect(ledgerTable.code).toBe(1);
    expect(ledgerTable.stderr).toContain('status without an id does not take --table');
    expect(idWithFleetFlag.code).toBe(1);
    expect(idWithFleetFlag.stderr).toContain('status ID does not take --pacing-table');
    expect(missingConfig.code).toBe(1);
    expect(missingConfig.stderr).toContain('Cannot read mail-relay configuration');
    expect(notRunning.code).toBe(1);
    expect(notRunning.stderr).toContain(
      'local mode is not running: start it with `npm start` (tried the SQS endpoint http://127.0.0.1:9 and the DynamoDB endpoint http://127.0.0.1:9',
    );
  }, 60_000);
});

describe("the fleet's pacing state in words", () => {
  const now = Date.parse('2026-11-22T10:00:00.000Z');
  const limits = configuredLimits(
    parseRelayConfig({
      smtp: {
        connections: {
          partner: {
            mode: 'smarthost',
            host: 'smtp.partner.example',
            senders: ['avisos@contoso.com'],
            pacing: { perProvider: { messagesPerMinute: 100, concurrentRequests: 5 } },
          },
        },
      },
    }),
  );

  it('resolves a named SMTP connection limits from the configuration, per provider', () => {
    const [partner] = summarizePacing(
      [
        { key: { S: 'smtp:partner|provider|messages' }, at: { N: String(now + 1_500) } },
        { key: { S: 'smtp:partner|provider|concurrent|3' }, leaseUntil: { N: String(now + 30_000) } },
        { key: { S: 'smtp:partner|provider|concurrent|4' }, leaseUntil: { N: String(now + 30_000) } },
      ],
      now,
      limits,
    );
    expect(partner).toMatchObject({
      scope: 'smtp:partner|provider',
      kind: 'provider',
      today: { recipients: 0, limit: null, capReached: null },
      rates: [{ limit: 'messagesPerMinute', value: 100, busy: true, nextFreeInSeconds: 2 }],
      leases: { held: 2, limit: 5 },
    });
  });

  it('says when nothing was paced today and when the pacing table cannot be read', () => {
    const words = describeFleetStatus({
      now: new Date(now).toISOString(),
      day: '2026-11-22',
      pacing: { table: 'relay-pacing', error: 'no such table', scopes: [] },
      limits: { known: false, config: null, note: 'no configuration' },
      queues: {
        outbox: { url: 'https://sqs/outbox', visible: 0, inFlight: 0, delayed: 0 },
        deadLetter: { url: 'https://sqs/dlq', error: 'no such queue' },
        staticEgress: { url: 'https://sqs/static-egress', visible: 3, inFlight: 1, delayed: 0 },
        oldestAgeSeconds: null,
        oldestAgeNote: 'on the dashboard',
      },
    });
    expect(words.split('\n')).toEqual([
      'Pacing, UTC day 2026-11-22 (table relay-pacing; no configuration):',
      '  cannot read the pacing table: no such table',
      'Outbox: 0 waiting, 0 in flight (being sent or retried), 0 delayed (waiting for their turn)',
      '  age of the oldest message: on the dashboard',
      'Static-egress queue (the providers that leave from the Elastic IPs): 3 waiting, 1 in flight (being sent or retried), 0 delayed (waiting for their turn)',
      'Dead-letter queue: cannot read https://sqs/dlq: no such queue',
    ]);
    expect(summarizePacing([], now, undefined)).toEqual([]);
  });
});
