import { SendMessageBatchCommand } from '@aws-sdk/client-sqs';
import type { Context, SQSEvent } from 'aws-lambda';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { DynamoDeliveryLedger } from '../../lambda/core/dynamo-ledger.ts';
import { SETTINGS_ENV_VAR } from '../../lambda/core/settings.ts';
import { createSendHandler } from '../../lambda/send/create-handler.ts';
import type { RelaySettings } from '../../lambda/send/settings.ts';
import {
  type RunningEmulator,
  type SqsEmulator,
  startSesEmulator,
  startSqsEmulator,
} from '../../local/emulators.ts';
import { type SmtpPeer, startSmtpPeer } from '../../local/peers/smtp-peer.ts';
import { SesCapture } from '../../local/ses-capture.ts';
import { LocalSqsEventSource } from '../../local/sqs-event-source.ts';
import { type DynamoPeer, startDynamo } from '../helpers/dynamo.ts';
import { createQueue, drain, eventually, producerClient, REGION, validMessage } from '../helpers/peers.ts';

// Local mode runs several invocations of ONE send handler at once, in one process (Lambda never
// does). Each invocation must answer for its own batch: a record that must be retried but is missing
// from its batch's response is deleted by the event source, unsent. That is what happened while one
// Powertools batch processor served every invocation: a batch that started while another was still
// running reset the failures the other had already collected.
//
// Each round enqueues a batch with a message the SMTP server refuses once (451: retry later) and, once
// that retry is scheduled, a second batch. Both batches hold a message SES answers late, so both
// invocations are open at the same time: the second starts while the first has its failure collected
// and is still waiting for SES. Every round, the interleaving that lost the refused message.

const POLLERS = 4;
const ROUNDS = 5;
const REFUSING_BATCH = ['refused', 'slow', 'plain', 'plain'] as const;
const CLEAN_BATCH = ['slow', 'plain', 'plain', 'plain'] as const;
const BATCH_SIZE = 4;
/** Each batch stays open this long, well within the refused message's retry delay (2 to 4 s). */
const SES_ANSWER_AFTER_MS = 1000;
const BUSY_REPLY = '451 4.7.500 Server busy. Please try again later.';
/** Longer than the test: a record only comes back early through the relay's own retry delay. */
const VISIBILITY_TIMEOUT_SECONDS = 60;

type Kind = 'refused' | 'slow' | 'plain';

interface TestMessage {
  readonly index: number;
  readonly kind: Kind;
  readonly recipient: string;
  messageId?: string;
}

/** Round after round: the refusing batch, then the clean one. */
const ROUND_BATCHES: TestMessage[][][] = Array.from({ length: ROUNDS }, (_, round) =>
  [REFUSING_BATCH, CLEAN_BATCH].map((kinds, half) =>
    kinds.map((kind, position) => {
      const index = (round * 2 + half) * BATCH_SIZE + position;
      return { index, kind, recipient: `rcpt-${index}@example.org` };
    }),
  ),
);
const MESSAGES = ROUND_BATCHES.flat(2);

describe('concurrent invocations of the real send handler under the local event source', () => {
  let sqsEmulator: SqsEmulator;
  let sesEmulator: RunningEmulator;
  let ses: SesCapture;
  let dynamo: DynamoPeer;
  let smtp: SmtpPeer;
  let source: LocalSqsEventSource | undefined;
  let settings: RelaySettings;
  let queueArn: string;
  const sqs = () => producerClient(sqsEmulator.endpoint);

  beforeAll(async () => {
    sqsEmulator = await startSqsEmulator(0);
    sesEmulator = await startSesEmulator(0);
    ses = new SesCapture(sesEmulator.endpoint);
    const sesEndpoint = await ses.listen(0);
    dynamo = await startDynamo();
    smtp = await startSmtpPeer({ tls: 'none' });
    const client = sqs();
    const dlq = await createQueue(client);
    const outbox = await createQueue(client, {
      VisibilityTimeout: String(VISIBILITY_TIMEOUT_SECONDS),
      RedrivePolicy: JSON.stringify({ deadLetterTargetArn: dlq.arn, maxReceiveCount: 5 }),
    });
    client.destroy();
    queueArn = outbox.arn;
    settings = {
      queueUrl: outbox.url,
      deadLetterQueueUrl: dlq.url,
      maxReceiveCount: 5,
      limits: { maxRecipients: 50, maxMessageBytes: 1024 * 1024 },
      ses: { identities: ['example.com'] },
      smtp: [
        {
          name: 'smtp',
          senders: ['contoso.com'],
          mode: 'smarthost',
          host: smtp.host,
          port: smtp.port,
          tls: 'none',
          requireTls: false,
          auth: 'none',
          maxConnections: 2,
        },
      ],
      // The refused message comes back only after its batch is over (2 to 4 s, with jitter): had the
      // batch's answer left it out, the event source would have deleted it by then.
      retry: { maxAttempts: 3, baseDelaySeconds: 4, maxDelaySeconds: 4 },
      circuitBreaker: { failureThreshold: 1000, cooldownSeconds: 60 },
      ledger: { tableName: dynamo.ledgerTableName, leaseSeconds: 30, retentionDays: 1 },
      suppression: { tableName: dynamo.suppressionTableName },
    };
    // The handler's SDK clients read the standard AWS environment, as in Lambda and local mode.
    for (const [name, value] of Object.entries({
      AWS_REGION: REGION,
      AWS_ACCESS_KEY_ID: 'test',
      AWS_SECRET_ACCESS_KEY: 'test',
      AWS_ENDPOINT_URL_SQS: sqsEmulator.endpoint,
      AWS_ENDPOINT_URL_SESV2: sesEndpoint,
      AWS_ENDPOINT_URL_DYNAMODB: dynamo.endpoint,
      POWERTOOLS_LOG_LEVEL: 'ERROR',
      POWERTOOLS_METRICS_DISABLED: 'true',
    })) {
      vi.stubEnv(name, value);
    }
  });
  afterAll(async () => {
    await source?.stop();
    vi.unstubAllEnvs();
    await smtp?.close();
    await ses?.close();
    await sesEmulator?.stop();
    await dynamo?.stop();
    await sqsEmulator?.stop();
  });

  /** Message index → how many times a provider accepted it (SMTP server or SES). */
  const deliveries = (): Map<number, number> => {
    const counts = new Map<number, number>();
    const recipients = [
      ...smtp.received.map((message) => message.envelope.rcptTo[0]),
      ...ses.sent.map((send) => send.destination.to[0]),
    ];
    for (const recipient of recipients) {
      const index = Number(/^rcpt-(\d+)@/.exec(recipient ?? '')?.[1]);
      counts.set(index, (counts.get(index) ?? 0) + 1);
    }
    return counts;
  };

  /** The outbox as the emulator holds it, read without receiving anything. */
  const outbox = () => {
    const name = settings.queueUrl.slice(settings.queueUrl.lastIndexOf('/') + 1);
    const messages = sqsEmulator.store.getQueueByName(name)?.inspectMessages();
    if (!messages) throw new Error(`no queue ${name} in the emulator`);
    return messages;
  };
  const idsOnOutbox = (): Set<string> => {
    const { ready, delayed, inflight } = outbox();
    return new Set([...ready, ...delayed, ...inflight.map(({ message }) => message)].map((m) => m.messageId));
  };

  /**
   * The relay has scheduled the refused message's retry (it shortened the record's visibility, or
   * the record is visible again), so its invocation has counted it as failed.
   */
  const retryScheduled = (message: TestMessage): boolean => {
    const refused = smtp.transcript.some(
      (entry) => entry.stage === 'rcptTo' && !entry.accepted && entry.address === message.recipient,
    );
    if (!refused) return false;
    const { ready, inflight } = outbox();
    const held = inflight.find((entry) => entry.message.messageId === message.messageId);
    return (
      ready.some((candidate) => candidate.messageId === message.messageId) ||
      (held !== undefined &&
        (held.visibilityDeadline < Date.now() + (VISIBILITY_TIMEOUT_SECONDS / 2) * 1000 ||
          held.message.approximateReceiveCount > 1))
    );
  };

  it('retries every record its own invocation reported and loses none, with four pollers at once', async () => {
    ses.setFaultPlan(() => ({ lostAnswer: 'hang', answerAfterMs: SES_ANSWER_AFTER_MS }));
    for (const message of MESSAGES.filter(({ kind }) => kind === 'refused')) {
      smtp.reject({ stage: 'rcptTo', address: message.recipient, reply: BUSY_REPLY, times: 1 });
    }
    const handler = createSendHandler({ ...process.env, [SETTINGS_ENV_VAR]: JSON.stringify(settings) });
    let running = 0;
    let mostAtOnce = 0;
    const client = sqs();
    source = new LocalSqsEventSource({
      client,
      queueUrl: settings.queueUrl,
      queueArn,
      region: REGION,
      handler: async (event: SQSEvent, context: Context) => {
        running += 1;
        mostAtOnce = Math.max(mostAtOnce, running);
        try {
          return await handler(event, context);
        } finally {
          running -= 1;
        }
      },
      batchSize: BATCH_SIZE,
      maxConcurrency: POLLERS,
      functionTimeoutMs: 30_000,
    });
    source.start();

    const enqueueBatch = async (batch: TestMessage[]) => {
      const sent = await client.send(
        new SendMessageBatchCommand({
          QueueUrl: settings.queueUrl,
          Entries: batch.map((message) => ({
            Id: String(message.index),
            MessageBody: JSON.stringify(
              validMessage({
                from: message.kind === 'slow' ? 'billing@example.com' : 'app@contoso.com',
                to: [message.recipient],
                subject: `Concurrent ${message.index}`,
              }),
            ),
          })),
        }),
      );
      for (const entry of sent.Successful ?? []) {
        const message = MESSAGES.find(({ index }) => String(index) === entry.Id);
        if (message) message.messageId = entry.MessageId;
      }
    };
    const finished = (message: TestMessage) =>
      deliveries().has(message.index) && !idsOnOutbox().has(message.messageId ?? '');

    for (const [refusing = [], clean = []] of ROUND_BATCHES) {
      await enqueueBatch(refusing);
      const refused = refusing.find(({ kind }) => kind === 'refused') as TestMessage;
      await eventually(async () => (retryScheduled(refused) ? true : undefined));
      await enqueueBatch(clean);
      // Both invocations are over once their slow message is sent and deleted.
      const slow = [...refusing, ...clean].filter(({ kind }) => kind === 'slow');
      await eventually(async () => (slow.every(finished) ? true : undefined));
    }

    // Settled once no message is both unsent and still on the outbox: each was sent, or deleted unsent.
    await eventually(async () => {
      const sentCounts = deliveries();
      const waiting = idsOnOutbox();
      return MESSAGES.every(({ index, messageId }) => sentCounts.has(index) || !waiting.has(messageId ?? ''))
        ? true
        : undefined;
    });
    expect(mostAtOnce, 'invocations overlapped').toBeGreaterThan(1);
    const sentCounts = deliveries();
    expect(
      MESSAGES.filter(({ index }) => !sentCounts.has(index)).map(({ index }) => index),
      'deleted from the outbox without being sent',
    ).toEqual([]);

    // Whatever was sent is also deleted from the outbox (not left to its visibility timeout, as a
    // batch answered with another batch's record ids would be), and nothing went twice.
    await expect
      .poll(
        () => {
          const waiting = idsOnOutbox();
          return MESSAGES.filter(({ messageId }) => waiting.has(messageId ?? '')).map(({ index }) => index);
        },
        { timeout: 90_000, interval: 100, message: 'sent but still on the outbox' },
      )
      .toEqual([]);
    const finalCounts = deliveries();
    expect(
      MESSAGES.filter(({ index }) => (finalCounts.get(index) ?? 0) > 1).map(({ index }) => index),
      'sent more than once',
    ).toEqual([]);
    expect(await drain(client, settings.deadLetterQueueUrl, { polls: 1 })).toEqual([]);
    // The refused ones did go through a retry: refused once, then sent, and the ledger says so.
    const ledger = new DynamoDeliveryLedger(dynamo.client, dynamo.ledgerTableName);
    for (const message of MESSAGES.filter(({ kind }) => kind === 'refused')) {
      expect(await ledger.get(`sqs:${message.messageId}`)).toMatchObject({ state: 'sent', provider: 'smtp' });
    }
    await source.stop();
    source = undefined;
    client.destroy();
  });
});
