import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import {
  DeleteMessageCommand,
  type Message,
  ReceiveMessageCommand,
  SendMessageCommand,
  SQSClient,
} from '@aws-sdk/client-sqs';
import type { SQSRecord } from 'aws-lambda';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEAD_LETTER_ATTRIBUTES, SqsDeadLetterQueue } from '../../lambda/core/dead-letter.ts';
import { bodyHashOf } from '../../lambda/core/delivery.ts';
import { DynamoDeliveryLedger } from '../../lambda/core/dynamo-ledger.ts';
import { RelayFailure } from '../../lambda/core/failures.ts';
import type { DeliveryRecord } from '../../lambda/core/ledger.ts';
import { createRelay } from '../../lambda/core/relay.ts';
import { type SqsEmulator, startSqsEmulator } from '../../local/emulators.ts';
import { createRelayTables } from '../../local/relay-tables.ts';
import { type DynamoPeer, startDynamo } from '../helpers/dynamo.ts';
import { MemorySuppressionList } from '../helpers/memory-ledger.ts';
import { createQueue, eventually, REGION, sqsRecord, validMessage } from '../helpers/peers.ts';
import { Recorder, ScriptedProvider } from '../helpers/scripted-relay.ts';

// `mail-relay dlq` against real peers: the SQS emulator (fauxqs) and the DynamoDB emulator (dynalite).
// The DLQ messages and ledger entries are written as the relay writes them (SqsDeadLetterQueue,
// DynamoDeliveryLedger); the CLI runs as a child process, as an operator runs it. Each spawn costs a
// second or two (tsx), so each test groups its assertions around few spawns.

const execFileAsync = promisify(execFile);
const SPAWN_HEAVY = 120_000;

interface World {
  readonly dlqUrl: string;
  readonly outboxUrl: string;
  readonly table: string;
  readonly ledger: DynamoDeliveryLedger;
}

interface CliResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** A body as a producer sends it; the text body is something the CLI must never print. */
const bodyOf = (fields: Record<string, unknown>) =>
  JSON.stringify(
    validMessage({ from: 'Billing <billing@contoso.com>', text: 'SECRET BODY TEXT', ...fields }),
  );

describe('mail-relay dlq', () => {
  let sqsEmulator: SqsEmulator;
  let sqs: SQSClient;
  let dynamo: DynamoPeer;
  let worlds = 0;

  beforeAll(async () => {
    [sqsEmulator, dynamo] = await Promise.all([startSqsEmulator(0), startDynamo()]);
    sqs = new SQSClient({
      region: REGION,
      endpoint: sqsEmulator.endpoint,
      credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
    });
  });
  afterAll(async () => {
    sqs.destroy();
    await Promise.all([sqsEmulator.stop(), dynamo.stop()]);
  });

  /** Fresh queues and a fresh ledger table, so each test starts from what it seeds. */
  async function newWorld(): Promise<World> {
    worlds += 1;
    const [dlq, outbox] = [await createQueue(sqs), await createQueue(sqs)];
    const table = `dlq-ledger-${worlds}`;
    await createRelayTables(dynamo.client, {
      ledgerTableName: table,
      suppressionTableName: `dlq-supp-${worlds}`,
    });
    return {
      dlqUrl: dlq.url,
      outboxUrl: outbox.url,
      table,
      ledger: new DynamoDeliveryLedger(dynamo.client, table),
    };
  }

  /** Runs `mail-relay dlq ...` against the world, with no usable AWS credentials in its environment. */
  async function cli(world: World, ...args: string[]): Promise<CliResult> {
    const env: NodeJS.ProcessEnv = { ...process.env, AWS_PROFILE: 'mail-relay-test-no-such-profile' };
    for (const name of ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN']) delete env[name];
    const flags = [
      '--dlq-url',
      world.dlqUrl,
      '--outbox-url',
      world.outboxUrl,
      '--sqs-endpoint',
      sqsEmulator.endpoint,
      '--endpoint',
      dynamo.endpoint,
      '--table',
      world.table,
    ];
    try {
      const { stdout, stderr } = await execFileAsync(
        process.execPath,
        ['cli/mail-relay.js', 'dlq', ...args, ...flags],
        { env },
      );
      return { code: 0, stdout, stderr };
    } catch (error) {
      const failed = error as { code: number; stdout: string; stderr: string };
      return { code: failed.code, stdout: failed.stdout, stderr: failed.stderr };
    }
  }

  /**
   * The messages in a queue, received with visibility 0 so the queue stays as it is: polls until at
   * least `expected` were seen, then once more, so the caller can assert there are no more than that.
   */
  async function peek(queueUrl: string, expected: number): Promise<Message[]> {
    const seen = new Map<string, Message>();
    const poll = async () => {
      const { Messages = [] } = await sqs.send(
        new ReceiveMessageCommand({
          QueueUrl: queueUrl,
          MaxNumberOfMessages: 10,
          VisibilityTimeout: 0,
          MessageAttributeNames: ['All'],
        }),
      );
      for (const message of Messages) seen.set(message.MessageId ?? '', message);
    };
    await eventually(async () => {
      await poll();
      return seen.size >= expected ? true : undefined;
    });
    await poll();
    return [...seen.values()];
  }

  /** One message, received as the event source receives it (hidden while the relay works on it). */
  async function receiveOne(queueUrl: string): Promise<Message> {
    return eventually(async () => {
      const { Messages = [] } = await sqs.send(
        new ReceiveMessageCommand({
          QueueUrl: queueUrl,
          VisibilityTimeout: 60,
          MessageAttributeNames: ['All'],
        }),
      );
      return Messages[0];
    });
  }

  /** Nothing in the queue (a receive with visibility 0 finds nothing). */
  async function isEmpty(queueUrl: string): Promise<boolean> {
    const { Messages = [] } = await sqs.send(
      new ReceiveMessageCommand({ QueueUrl: queueUrl, MaxNumberOfMessages: 10, VisibilityTimeout: 0 }),
    );
    return Messages.length === 0;
  }

  const entry = (key: string, body: string, fields: Partial<DeliveryRecord>): DeliveryRecord => ({
    key,
    state: 'dead-lettered',
    version: 3,
    messageId: 'out-unknown',
    bodyHash: bodyHashOf(body),
    route: 'contoso',
    providerIndex: 0,
    attempts: 0,
    failures: [],
    createdAt: '2026-11-29T10:00:00.000Z',
    updatedAt: '2026-11-29T10:00:05.000Z',
    expiresAt: Math.floor(Date.now() / 1000) + 3600,
    ...fields,
  });

  const outcomeUnknown = new RelayFailure({
    failureClass: 'permanent',
    code: 'OutcomeUnknown',
    reason:
      'graph may have sent this message (the answer was lost: ETIMEDOUT: no answer); not sending it again',
    hint: 'Look for its Message-ID in the Sent Items. To send it anyway, release it with `mail-relay dlq redrive`.',
    provider: 'graph',
  });

  const lostBody = bodyOf({
    idempotencyKey: 'invoice-lost',
    to: ['Ana <ana@example.org>', 'bob@example.org'],
    subject: 'Invoice 42',
    tags: { tenant: 'acme' },
    attachments: [
      {
        filename: 'invoice-42.pdf',
        contentType: 'application/pdf',
        content: Buffer.alloc(1234, 7).toString('base64'),
      },
    ],
  });
  const sentBody = bodyOf({ idempotencyKey: 'invoice-sent', subject: 'Invoice 43' });
  const busyBody = bodyOf({ idempotencyKey: 'invoice-busy', subject: 'Invoice 44' });
  const rejectedBody = bodyOf({ subject: 'No key, rejected' });
  const crashedBody = bodyOf({ subject: 'No key, crashed the function' });

  /**
   * What a DLQ holds after a few bad days, written as the relay writes it:
   * - invoice-lost: a provider may have sent it (maybeSent), dead-lettered twice (the relay stopped
   *   between its DLQ write and deleting it from the outbox), with a producer attribute;
   * - invoice-sent: dead-lettered as OutcomeUnknown, later found sent;
   * - invoice-busy: a function holds it right now;
   * - out-rejected: no idempotency key, SES refused it;
   * - a message SQS moved itself after maxReceiveCount (no reason attributes), not in the ledger.
   */
  async function seed(world: World): Promise<{ crashedId: string; rejectedDlqId: string }> {
    const deadLetters = new SqsDeadLetterQueue(sqs, world.dlqUrl);
    const producerAttributes = { tenant: { dataType: 'String', stringValue: 'acme' } };
    const lost = { ...sqsRecord(lostBody, { messageId: 'out-lost', receiveCount: 3 }) };
    lost.messageAttributes = producerAttributes as SQSRecord['messageAttributes'];
    await deadLetters.deadLetter(lost, outcomeUnknown, 3);
    await deadLetters.deadLetter(lost, outcomeUnknown, 3);
    await world.ledger.put(
      entry('invoice-lost', lostBody, {
        messageId: 'out-lost',
        handedOffTo: 'graph',
        maybeSent: { provider: 'graph', since: '2026-11-29T10:00:01.000Z', reason: 'the answer was lost' },
        failures: [
          {
            provider: 'graph',
            code: 'OutcomeUnknown',
            failureClass: 'permanent',
            reason: 'graph may have sent this message',
            at: '2026-11-29T10:00:05.000Z',
          },
        ],
      }),
      undefined,
    );

    await deadLetters.deadLetter(sqsRecord(sentBody, { messageId: 'out-sent' }), outcomeUnknown, 2);
    await world.ledger.put(
      entry('invoice-sent', sentBody, {
        state: 'sent',
        messageId: 'out-sent-again',
        provider: 'graph',
        providerMessageId: '<found@contoso.com>',
        sentAt: '2026-11-29T10:00:01.000Z',
      }),
      undefined,
    );

    await deadLetters.deadLetter(sqsRecord(busyBody, { messageId: 'out-busy' }), outcomeUnknown, 1);
    await world.ledger.put(
      entry('invoice-busy', busyBody, {
        state: 'sending',
        messageId: 'out-busy-again',
        handedOffTo: 'graph',
        leaseUntil: Date.now() + 600_000,
      }),
      undefined,
    );

    const rejected = new RelayFailure({
      failureClass: 'permanent',
      code: 'MessageRejected',
      reason: 'Email address is not verified.',
      provider: 'ses',
    });
    await deadLetters.deadLetter(sqsRecord(rejectedBody, { messageId: 'out-rejected' }), rejected, 1);
    await world.ledger.put(
      entry('sqs:out-rejected', rejectedBody, {
        messageId: 'out-rejected',
        failures: [
          {
            provider: 'ses',
            code: 'MessageRejected',
            failureClass: 'permanent',
            reason: 'Email address is not verified.',
            at: '2026-11-29T10:00:05.000Z',
          },
        ],
      }),
      undefined,
    );

    // SQS's own redrive policy moves a message that every delivery failed to finish.
    const source = await createQueue(sqs, {
      RedrivePolicy: JSON.stringify({ deadLetterTargetArn: arnOf(world.dlqUrl), maxReceiveCount: 1 }),
    });
    const sent = await sqs.send(new SendMessageCommand({ QueueUrl: source.url, MessageBody: crashedBody }));
    const crashedId = sent.MessageId ?? '';
    await eventually(async () => {
      const { Messages = [] } = await sqs.send(
        new ReceiveMessageCommand({ QueueUrl: source.url, VisibilityTimeout: 0 }),
      );
      return Messages.length === 0 ? true : undefined;
    });
    const copies = await peek(world.dlqUrl, 6);
    expect(copies).toHaveLength(6);
    expect(copies.map((copy) => copy.MessageId)).toContain(crashedId);
    const rejectedDlqId =
      copies.find((copy) => copy.Body === rejectedBody)?.MessageId ?? 'the rejected message is missing';
    return { crashedId, rejectedDlqId };
  }

  function arnOf(queueUrl: string): string {
    return `arn:aws:sqs:${REGION}:000000000000:${queueUrl.split('/').at(-1)}`;
  }

  it(
    'lists every message once with its copies, what the ledger says and counts by code, and leaves them in the queue',
    async () => {
      const world = await newWorld();
      const { crashedId } = await seed(world);

      const text = await cli(world, 'list');
      expect(text.code).toBe(0);
      expect(text.stdout).toContain(': 5 messages (6 copies).');
      // The two copies of invoice-lost are one message.
      expect(text.stdout.match(/^invoice-lost {2}OutcomeUnknown {2}2 copies$/gm)).toHaveLength(1);
      const block = (key: string) =>
        text.stdout.split('\n\n').find((part) => part.startsWith(`${key}  `)) ?? '';
      expect(block('invoice-lost')).toMatch(
        /failure +permanent, graph, after 3 deliveries, dead-lettered \d+ s ago/,
      );
      expect(block('invoice-lost')).toContain(
        'ledger       a provider may have sent it (OutcomeUnknown: graph has had it since 2026-11-29T10:00:01.000Z): check before redriving',
      );
      expect(block('invoice-sent')).toContain(
        'ledger       already sent by graph at 2026-11-29T10:00:01.000Z: a copy, safe to drop',
      );
      expect(block('invoice-busy')).toContain('a function is sending it right now');
      expect(block('sqs:out-rejected')).toContain('reason       Email address is not verified.');
      expect(block(`sqs:${crashedId}`)).toMatch(
        /^sqs:\S+ {2}MovedBySqs {2}1 copy\n.*\n {2}failure {6}moved by SQS after maxReceiveCount: the function crashed or timed out on every delivery/,
      );
      expect(block(`sqs:${crashedId}`)).toContain('ledger       not in the ledger');
      const counts = text.stdout.slice(text.stdout.indexOf('By failure code:'));
      expect(counts).toMatch(/^ {2}OutcomeUnknown +3 messages \(4 copies\)$/m);
      expect(counts).toMatch(/^ {2}MessageRejected +1 message$/m);
      expect(counts).toMatch(/^ {2}MovedBySqs +1 message$/m);
      expect(text.stdout).not.toContain('SECRET BODY TEXT');

      const json = await cli(world, 'list', '--json', '--reason', 'OutcomeUnknown');
      expect(json.code).toBe(0);
      const listed = JSON.parse(json.stdout);
      expect(listed).toMatchObject({
        deadLetterQueueUrl: world.dlqUrl,
        countsByCode: { OutcomeUnknown: { messages: 3, copies: 4 } },
        total: { messages: 3, copies: 4 },
        truncated: false,
      });
      const lost = listed.messages.find(
        (message: { ledgerKey: string }) => message.ledgerKey === 'invoice-lost',
      );
      expect(lost).toEqual({
        ledgerKey: 'invoice-lost',
        failureCode: 'OutcomeUnknown',
        failureClass: 'permanent',
        provider: 'graph',
        reason: outcomeUnknown.reason,
        hint: outcomeUnknown.hint,
        attempts: 3,
        movedBySqs: false,
        copies: 2,
        dlqMessageIds: [expect.any(String), expect.any(String)],
        sourceMessageIds: ['out-lost'],
        firstDeadLetteredAt: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
        lastDeadLetteredAt: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
        ageSeconds: expect.any(Number),
        ledger: { state: 'dead-lettered', verdict: 'maybe-sent', says: expect.any(String), release: null },
      });
      expect(
        listed.messages.map((message: { ledger: { verdict: string } }) => message.ledger.verdict).sort(),
      ).toEqual(['in-flight', 'maybe-sent', 'sent']);

      // Listing consumed nothing: every copy can still be received.
      expect(await peek(world.dlqUrl, 6)).toHaveLength(6);
    },
    SPAWN_HEAVY,
  );

  it(
    'shows one message by its key, its DLQ message id or its original SQS message id, never its body',
    async () => {
      const world = await newWorld();
      const { crashedId, rejectedDlqId } = await seed(world);

      // One at a time: a command holds the messages it reads (SQS has no peek), so two would each see part.
      const byKey = await cli(world, 'show', 'invoice-lost');
      const byDlqId = await cli(world, 'show', crashedId, '--json');
      const bySourceId = await cli(world, 'show', 'out-rejected');
      const nothing = await cli(world, 'show', 'no-such-message');

      expect(byKey.code).toBe(0);
      const lines = byKey.stdout.split('\n');
      expect(lines[0]).toBe('invoice-lost  OutcomeUnknown  2 copies in the dead-letter queue');
      expect(lines.filter((line) => line.startsWith('Copy '))).toHaveLength(2);
      expect(byKey.stdout).toMatch(/failure code \(MailRelay\.FailureCode\) +OutcomeUnknown/);
      expect(byKey.stdout).toMatch(/failure class \(MailRelay\.FailureClass\) +permanent: it cannot succeed/);
      expect(byKey.stdout).toMatch(/what to do \(MailRelay\.Hint\) +Look for its Message-ID/);
      expect(byKey.stdout).toMatch(
        /outbox message \(MailRelay\.SourceMessageId\) +out-lost \(its SQS message id/,
      );
      expect(byKey.stdout).toMatch(/deliveries \(MailRelay\.Attempts\) +3 /);
      expect(byKey.stdout).toContain("producer's attributes: tenant (String) = acme");
      expect(byKey.stdout).toContain(
        'Ledger (key invoice-lost): a provider may have sent it (OutcomeUnknown',
      );
      expect(byKey.stdout).toContain(
        '  dead-lettered at 2026-11-29T10:00:05.000Z, route contoso: OutcomeUnknown',
      );
      expect(byKey.stdout).toContain(
        '  maybe sent: graph since 2026-11-29T10:00:01.000Z: the answer was lost',
      );
      expect(byKey.stdout).toContain('  from:           Billing <billing@contoso.com>');
      expect(byKey.stdout).toContain('  recipients:     2: to Ana <ana@example.org>, bob@example.org');
      expect(byKey.stdout).toContain('  subject:        Invoice 42');
      expect(byKey.stdout).toContain('  attachments:    invoice-42.pdf (1234 bytes, application/pdf)');
      expect(byKey.stdout).toContain('  tags:           tenant=acme');
      expect(byKey.stdout).toContain('  idempotencyKey: invoice-lost');
      expect(byKey.stdout).toContain('  body:           text, 16 characters');
      expect(byKey.stdout).not.toContain('SECRET BODY TEXT');

      expect(byDlqId.code).toBe(0);
      const [crashed, ...others] = JSON.parse(byDlqId.stdout).matches;
      expect(others).toEqual([]);
      expect(crashed).toMatchObject({
        ledgerKey: `sqs:${crashedId}`,
        failureCode: 'MovedBySqs',
        movedBySqs: true,
        reason: 'moved by SQS after maxReceiveCount: the function crashed or timed out on every delivery',
        ledger: { state: null, verdict: 'no-entry' },
        copyDetails: [{ dlqMessageId: crashedId, sourceMessageId: crashedId, relayAttributes: {} }],
        ledgerEntry: null,
        message: { subject: 'No key, crashed the function', recipients: 1, textCharacters: 16 },
      });
      expect(byDlqId.stdout).not.toContain('SECRET BODY TEXT');

      expect(bySourceId.code).toBe(0);
      expect(bySourceId.stdout).toMatch(/^sqs:out-rejected {2}MessageRejected {2}1 copy/);
      expect(bySourceId.stdout).toContain(`Copy 1 of 1: DLQ message ${rejectedDlqId}`);
      expect(bySourceId.stdout).toContain('Ledger (key sqs:out-rejected): not sent (ledger: dead-lettered)');

      expect(nothing).toMatchObject({ code: 1, stdout: '' });
      expect(nothing.stderr).toContain('No message in the dead-letter queue matches no-such-message');

      // Showing consumed nothing either.
      expect(await peek(world.dlqUrl, 6)).toHaveLength(6);
    },
    SPAWN_HEAVY,
  );

  it(
    'redrives: a dry run changes nothing; then the release is recorded, one copy goes back, sent ones are dropped',
    async () => {
      const world = await newWorld();
      const { crashedId } = await seed(world);
      const before = await world.ledger.get('invoice-lost');

      const dryRun = await cli(world, 'redrive', '--dry-run', '--by', 'alice');
      expect(dryRun.code).toBe(0);
      expect(dryRun.stdout).toMatch(
        /^ {2}would redrive +invoice-lost +OutcomeUnknown: a provider may have sent it/m,
      );
      expect(dryRun.stdout).toContain(
        'would record the release by alice in the ledger, send 1 copy to the outbox and delete 2 copies from the DLQ',
      );
      expect(dryRun.stdout).toMatch(/^ {2}would drop +invoice-sent +OutcomeUnknown: already sent/m);
      expect(dryRun.stdout).toMatch(
        /^ {2}would skip +invoice-busy +OutcomeUnknown: a function is sending it/m,
      );
      expect(dryRun.stdout).toContain('Would redrive 3, drop 1 (already sent), skip 1.');
      expect(await world.ledger.get('invoice-lost')).toEqual(before);
      expect(await isEmpty(world.outboxUrl)).toBe(true);
      expect(await peek(world.dlqUrl, 6)).toHaveLength(6);

      const noMatch = await cli(world, 'redrive', '--id', 'no-such-message');
      const byReason = await cli(world, 'redrive', '--reason', 'OutcomeUnknown', '--by', 'alice');
      expect(noMatch.code).toBe(1);
      expect(noMatch.stderr).toContain('No message in the dead-letter queue matches no-such-message');

      expect(byReason.code).toBe(0);
      expect(byReason.stdout).toMatch(
        /^ {2}redriven +invoice-lost +OutcomeUnknown: released by alice in the ledger; sent to the outbox as \S+; 2 DLQ copies deleted$/m,
      );
      expect(byReason.stdout).toMatch(
        /^ {2}dropped +invoice-sent +OutcomeUnknown: already sent .*; 1 DLQ copy deleted$/m,
      );
      expect(byReason.stdout).toMatch(
        /^ {2}skipped +invoice-busy +OutcomeUnknown: a function is sending it/m,
      );
      expect(byReason.stdout).toContain('Redriven 1, dropped 1 (already sent), skipped 1, failed 0.');

      // The operator's decision is where the relay looks for it: the ledger entry, written on its version.
      const released = await world.ledger.get('invoice-lost');
      expect(released).toMatchObject({
        version: (before?.version ?? 0) + 1,
        state: 'dead-lettered',
        maybeSent: before?.maybeSent,
        release: { by: 'alice', at: expect.stringMatching(/^\d{4}-\d\d-\d\dT.*Z$/) },
      });
      expect((await world.ledger.get('invoice-sent'))?.release).toBeUndefined();
      expect((await world.ledger.get('invoice-busy'))?.release).toBeUndefined();

      // Exactly one copy on the outbox: same body, the producer's attribute, the original SQS message id.
      const outboxed = await peek(world.outboxUrl, 1);
      expect(outboxed).toHaveLength(1);
      const [redriven] = outboxed;
      expect(redriven?.Body).toBe(lostBody);
      expect(redriven?.MessageAttributes).toEqual({
        tenant: { DataType: 'String', StringValue: 'acme' },
        [DEAD_LETTER_ATTRIBUTES.sourceMessageId]: { DataType: 'String', StringValue: 'out-lost' },
      });
      // Left in the DLQ: the busy one, and the two of other codes.
      const left = await peek(world.dlqUrl, 3);
      expect(left).toHaveLength(3);
      expect(left.map((message) => message.Body).sort()).toEqual(
        [busyBody, rejectedBody, crashedBody].sort(),
      );

      // The rest: a message without idempotency key gets its ledger entry's id as its source.
      const rest = await cli(world, 'redrive', '--by', 'bob');
      expect(rest.code).toBe(0);
      expect(rest.stdout).toContain('Redriven 2, dropped 0 (already sent), skipped 1, failed 0.');
      expect(rest.stdout).toMatch(/^ {2}redriven +sqs:out-rejected +MessageRejected: released by bob/m);
      expect(rest.stdout).toMatch(/^ {2}redriven +sqs:\S+ +MovedBySqs: no ledger entry to release/m);
      expect((await world.ledger.get('sqs:out-rejected'))?.release?.by).toBe('bob');
      const outbox = await peek(world.outboxUrl, 3);
      expect(outbox).toHaveLength(3);
      const sourceOf = (body: string) =>
        outbox.find((message) => message.Body === body)?.MessageAttributes?.[
          DEAD_LETTER_ATTRIBUTES.sourceMessageId
        ]?.StringValue;
      expect(sourceOf(rejectedBody)).toBe('out-rejected');
      expect(sourceOf(crashedBody)).toBe(crashedId);
      expect((await peek(world.dlqUrl, 1)).map((message) => message.Body)).toEqual([busyBody]);
    },
    SPAWN_HEAVY,
  );

  it(
    'lets the relay send a possibly-sent message exactly once after the release, and not before',
    async () => {
      const world = await newWorld();
      const graph = new ScriptedProvider('graph', () => 'lost');
      const recorder = new Recorder();
      const relay = createRelay({
        providers: [graph],
        deadLetters: new SqsDeadLetterQueue(sqs, world.dlqUrl),
        recordDelay: recorder,
        logger: recorder,
        ledger: world.ledger,
        suppressions: new MemorySuppressionList(),
        settings: {
          limits: { maxRecipients: 50, maxMessageBytes: 1024 * 1024 },
          maxReceiveCount: 10,
          routes: [{ name: 'contoso', from: ['*@contoso.com'], providers: ['graph'] }],
          retry: { maxAttempts: 3, baseDelaySeconds: 10, maxDelaySeconds: 600 },
          circuitBreaker: { failureThreshold: 3, cooldownSeconds: 60 },
          ledger: { tableName: world.table, leaseSeconds: 30, retentionDays: 14 },
        },
      });
      // No idempotency key: the entry is keyed by the SQS message id, sqs:orig-1.
      const body = bodyOf({ subject: 'Password reset' });
      const original = sqsRecord(body, { messageId: 'orig-1' });
      original.messageAttributes = {
        tenant: { dataType: 'String', stringValue: 'acme' },
      } as SQSRecord['messageAttributes'];
      expect(await relay.processRecord(original)).toMatchObject({
        outcome: 'dead-lettered',
        failure: { code: 'OutcomeUnknown' },
      });
      expect(graph.calls).toBe(1);

      // Moved back as SQS's own redrive would (attributes and all): the relay still does not send it.
      graph.script = () => 'ok';
      const [deadLettered] = await peek(world.dlqUrl, 1);
      const movedBack = await sqs.send(
        new SendMessageCommand({
          QueueUrl: world.outboxUrl,
          MessageBody: deadLettered?.Body,
          MessageAttributes: deadLettered?.MessageAttributes,
        }),
      );
      const unreleased = await receiveOne(world.outboxUrl);
      expect(unreleased.MessageId).toBe(movedBack.MessageId);
      expect(await relay.processRecord(toRecord(unreleased))).toMatchObject({
        outcome: 'dead-lettered',
        failure: { code: 'OutcomeUnknown' },
      });
      expect(graph.calls).toBe(1);
      // Finished, so the event source deletes it from the outbox.
      await sqs.send(
        new DeleteMessageCommand({ QueueUrl: world.outboxUrl, ReceiptHandle: unreleased.ReceiptHandle }),
      );

      // Two DLQ copies of one message now (the second names the moved-back copy's id): one redrive.
      const redrive = await cli(world, 'redrive', '--id', 'orig-1', '--by', 'ops');
      expect(redrive.code).toBe(0);
      expect(redrive.stdout).toMatch(
        /^ {2}redriven +sqs:orig-1 +OutcomeUnknown: released by ops in the ledger; sent to the outbox as \S+; 2 DLQ copies deleted$/m,
      );
      expect(await isEmpty(world.dlqUrl)).toBe(true);
      const empty = await cli(world, 'list');
      expect(empty).toMatchObject({
        code: 0,
        stdout: `No messages in the dead-letter queue ${world.dlqUrl}.\n`,
      });
      const redriven = await peek(world.outboxUrl, 1);
      expect(redriven).toHaveLength(1);
      const [copy] = redriven;
      expect(copy?.MessageAttributes?.[DEAD_LETTER_ATTRIBUTES.sourceMessageId]?.StringValue).toBe('orig-1');
      expect(copy?.MessageAttributes?.tenant?.StringValue).toBe('acme');
      expect(copy?.MessageAttributes?.[DEAD_LETTER_ATTRIBUTES.code]).toBeUndefined();

      const record = toRecord(copy as Message);
      expect(await relay.processRecord(record)).toMatchObject({
        outcome: 'sent',
        receipt: { provider: 'graph' },
      });
      expect(graph.calls).toBe(2);
      const sent = await world.ledger.get('sqs:orig-1');
      expect(sent).toMatchObject({ state: 'sent', messageId: record.messageId });
      expect(sent?.release).toBeUndefined();
      // The release was used up: the same copy delivered again (SQS is at least once) is a duplicate.
      expect(await relay.processRecord(record)).toMatchObject({ outcome: 'duplicate' });
      expect(graph.calls).toBe(2);
    },
    SPAWN_HEAVY,
  );
});

/** An SQS message as the Lambda event source hands it to the function. */
function toRecord(message: Message): SQSRecord {
  return {
    ...sqsRecord(message.Body ?? '', { messageId: message.MessageId ?? '' }),
    messageAttributes: Object.fromEntries(
      Object.entries(message.MessageAttributes ?? {}).map(([name, value]) => [
        name,
        { dataType: value.DataType ?? 'String', stringValue: value.StringValue },
      ]),
    ) as SQSRecord['messageAttributes'],
  };
}
