import { DeleteMessageCommand, type Message, SendMessageCommand } from '@aws-sdk/client-sqs';
import type { SQSRecord } from 'aws-lambda';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEAD_LETTER_ATTRIBUTES, SqsDeadLetterQueue } from '../../lambda/core/dead-letter.ts';
import { createRelay } from '../../lambda/core/relay.ts';
import { MemorySuppressionList } from '../helpers/memory-ledger.ts';
import { sqsRecord } from '../helpers/peers.ts';
import { Recorder, ScriptedProvider } from '../helpers/scripted-relay.ts';

import { bodyOf, type DlqFixture, SPAWN_HEAVY, startDlqFixture } from './dlq-fixture.ts';

// `mail-relay dlq redrive` as an operator runs it, and what the relay then does with the message it
// moved back: the release recorded in the ledger is what lets a possibly-sent message go out, once.

describe('mail-relay dlq redrive', () => {
  let fixture: DlqFixture;
  beforeAll(async () => {
    fixture = await startDlqFixture();
  });
  afterAll(() => fixture.stop());

  it(
    'redrives: a dry run changes nothing; then the release is recorded, one copy goes back, sent ones are dropped',
    async () => {
      const { newWorld, cli, peek, isEmpty, lostBody, busyBody, rejectedBody, crashedBody, seed } = fixture;
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
      const { sqs, newWorld, cli, peek, receiveOne, isEmpty } = fixture;
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

/** A received SQS message as the event source hands it to the send function. */
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
