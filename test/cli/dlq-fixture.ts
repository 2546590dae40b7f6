import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { type Message, ReceiveMessageCommand, SendMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import type { SQSRecord } from 'aws-lambda';
import { expect } from 'vitest';
import { SqsDeadLetterQueue } from '../../lambda/core/dead-letter.ts';
import { bodyHashOf } from '../../lambda/core/delivery.ts';
import { DynamoDeliveryLedger } from '../../lambda/core/dynamo-ledger.ts';
import { RelayFailure } from '../../lambda/core/failures.ts';
import type { DeliveryRecord } from '../../lambda/core/ledger.ts';
import { startSqsEmulator } from '../../local/emulators.ts';
import { createRelayTables } from '../../local/relay-tables.ts';
import { startDynamo } from '../helpers/dynamo.ts';
import { createQueue, eventually, REGION, sqsRecord, validMessage } from '../helpers/peers.ts';

// What the `mail-relay dlq` tests share: real peers (the SQS emulator fauxqs and the DynamoDB emulator
// dynalite), a DLQ seeded as the relay writes it (SqsDeadLetterQueue, DynamoDeliveryLedger), and the
// CLI run as a child process, as an operator runs it.

const execFileAsync = promisify(execFile);
/** Each CLI spawn costs about a second (more on a busy machine): tests group assertions around few. */
export const SPAWN_HEAVY = 120_000;

export interface World {
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
export const bodyOf = (fields: Record<string, unknown>) =>
  JSON.stringify(
    validMessage({ from: 'Billing <billing@contoso.com>', text: 'SECRET BODY TEXT', ...fields }),
  );

/** Starts the emulators; every world (queues and a ledger table) is fresh. */
export async function startDlqFixture() {
  const [sqsEmulator, dynamo] = await Promise.all([startSqsEmulator(0), startDynamo()]);
  const sqs = new SQSClient({
    region: REGION,
    endpoint: sqsEmulator.endpoint,
    credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
  });
  let worlds = 0;

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

  return {
    sqs,
    dynamo,
    newWorld,
    cli,
    peek,
    receiveOne,
    isEmpty,
    entry,
    outcomeUnknown,
    lostBody,
    sentBody,
    busyBody,
    rejectedBody,
    crashedBody,
    seed,
    async stop() {
      sqs.destroy();
      await Promise.all([sqsEmulator.stop(), dynamo.stop()]);
    },
  };
}

export type DlqFixture = Awaited<ReturnType<typeof startDlqFixture>>;
