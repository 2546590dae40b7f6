import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { ReceiveMessageCommand } from '@aws-sdk/client-sqs';
import type { Context, SQSRecord } from 'aws-lambda';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { DEAD_LETTER_ATTRIBUTES } from '../../lambda/core/dead-letter.ts';
import { DynamoDeliveryLedger } from '../../lambda/core/dynamo-ledger.ts';
import { type RelaySettings, SETTINGS_ENV_VAR } from '../../lambda/core/settings.ts';
import { createSendHandler } from '../../lambda/send/create-handler.ts';
import { type ReceivedMessage, type SmtpPeer, startSmtpPeer } from '../../local/peers/smtp-peer.ts';
import { type DynamoPeer, startDynamo } from '../helpers/dynamo.ts';
import {
  approximateCount,
  createQueue,
  drain,
  enqueue,
  eventually,
  type Peers,
  startPeers,
  validMessage,
} from '../helpers/peers.ts';

// "Never twice" across a crash: a send function really dies (SIGKILL, as Lambda ends a timed-out or
// crashed function) right after the SMTP server accepted a message, and another takes over.

const LEASE_SECONDS = 2;
const VISIBILITY_TIMEOUT_SECONDS = 3;

describe('a send function that dies after the provider accepted the message', () => {
  let peers: Peers;
  let dynamo: DynamoPeer;
  let smtp: SmtpPeer;
  let onReceived: ((message: ReceivedMessage) => void) | undefined;
  let settings: RelaySettings;
  let env: Record<string, string>;
  let queueArn: string;
  const workers: ChildProcess[] = [];

  beforeAll(async () => {
    peers = await startPeers();
    dynamo = await startDynamo();
    smtp = await startSmtpPeer({ tls: 'none', onReceived: (message) => onReceived?.(message) });
    const dlq = await createQueue(peers.sqs);
    const outbox = await createQueue(peers.sqs, {
      VisibilityTimeout: String(VISIBILITY_TIMEOUT_SECONDS),
      RedrivePolicy: JSON.stringify({ deadLetterTargetArn: dlq.arn, maxReceiveCount: 10 }),
    });
    queueArn = outbox.arn;
    settings = {
      queueUrl: outbox.url,
      deadLetterQueueUrl: dlq.url,
      maxReceiveCount: 10,
      limits: { maxRecipients: 50, maxMessageBytes: 1024 * 1024 },
      smtp: {
        senders: ['example.com'],
        mode: 'smarthost',
        host: smtp.host,
        port: smtp.port,
        tls: 'none',
        requireTls: false,
        auth: 'none',
      },
      retry: { maxAttempts: 3, baseDelaySeconds: 1, maxDelaySeconds: 2 },
      circuitBreaker: { failureThreshold: 5, cooldownSeconds: 60 },
      ledger: { tableName: dynamo.ledgerTableName, leaseSeconds: LEASE_SECONDS, retentionDays: 1 },
      suppression: { tableName: dynamo.suppressionTableName },
    };
    env = {
      PATH: process.env.PATH ?? '',
      [SETTINGS_ENV_VAR]: JSON.stringify(settings),
      MAIL_RELAY_QUEUE_ARN: queueArn,
      AWS_REGION: 'us-east-1',
      AWS_ACCESS_KEY_ID: 'test',
      AWS_SECRET_ACCESS_KEY: 'test',
      AWS_ENDPOINT_URL_SQS: peers.sqsEndpoint,
      AWS_ENDPOINT_URL_DYNAMODB: dynamo.endpoint,
      AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
      POWERTOOLS_LOG_LEVEL: 'ERROR',
    };
  });
  afterEach(async () => {
    onReceived = undefined;
    for (const worker of workers.splice(0)) {
      if (worker.exitCode === null && worker.signalCode === null) {
        worker.kill('SIGKILL');
        await once(worker, 'exit');
      }
    }
  });
  afterAll(async () => {
    await smtp.close();
    await dynamo.stop();
    await peers.stop();
  });

  const startWorker = async (): Promise<ChildProcess> => {
    const worker = spawn(process.execPath, ['--import', 'tsx', 'test/helpers/relay-worker.ts'], {
      env,
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    workers.push(worker);
    let output = '';
    await new Promise<void>((resolve, reject) => {
      worker.stdout?.on('data', (chunk: Buffer) => {
        output += chunk.toString();
        if (output.includes('ready')) resolve();
      });
      worker.once('exit', (code) => reject(new Error(`relay worker exited early (${code})`)));
    });
    return worker;
  };

  const ledger = () => new DynamoDeliveryLedger(dynamo.client, dynamo.ledgerTableName);
  const receivedWithSubject = (subject: string) =>
    smtp.received.filter((message) => message.raw.toString().includes(`Subject: ${subject}`));

  it('does not send it again: the next function dead-letters it as OutcomeUnknown', async () => {
    const first = await startWorker();
    // The moment the server has the whole message, before its reply reaches the function.
    onReceived = () => first.kill('SIGKILL');
    const messageId = await enqueue(
      peers.sqs,
      settings.queueUrl,
      validMessage({ subject: 'Killed mid-send', idempotencyKey: 'crash-1' }),
    );
    await once(first, 'exit');
    onReceived = undefined;
    expect(receivedWithSubject('Killed mid-send')).toHaveLength(1);

    await startWorker();
    const dead = await eventually(async () => {
      const [message] = await drain(peers.sqs, settings.deadLetterQueueUrl, { polls: 1 });
      return message;
    }, 20_000);

    expect(dead.MessageAttributes?.[DEAD_LETTER_ATTRIBUTES.code]?.StringValue).toBe('OutcomeUnknown');
    expect(dead.MessageAttributes?.[DEAD_LETTER_ATTRIBUTES.sourceMessageId]?.StringValue).toBe(messageId);
    expect(receivedWithSubject('Killed mid-send')).toHaveLength(1);
    expect(await ledger().get('crash-1')).toMatchObject({
      state: 'dead-lettered',
      failures: [expect.objectContaining({ code: 'OutcomeUnknown' })],
    });
  }, 40_000);

  it('does not send it again when it died after recording the send but before deleting the record', async () => {
    // The first function runs in this process and returns without the record being deleted, as if it
    // died between the ledger write and the event source's delete.
    Object.assign(process.env, env);
    const handler = createSendHandler(env);
    await enqueue(peers.sqs, settings.queueUrl, validMessage({ subject: 'Died before delete' }));
    const received = await peers.sqs.send(
      new ReceiveMessageCommand({
        QueueUrl: settings.queueUrl,
        MaxNumberOfMessages: 1,
        WaitTimeSeconds: 5,
        MessageSystemAttributeNames: ['All'],
      }),
    );
    const [message] = received.Messages ?? [];
    const record = {
      messageId: message?.MessageId ?? '',
      receiptHandle: message?.ReceiptHandle ?? '',
      body: message?.Body ?? '',
      attributes: { ApproximateReceiveCount: '1' },
      messageAttributes: {},
    } as unknown as SQSRecord;
    const response = await handler({ Records: [record] }, {} as Context);
    expect(response.batchItemFailures).toEqual([]);
    expect(await ledger().get(`sqs:${record.messageId}`)).toMatchObject({ state: 'sent', provider: 'smtp' });

    // The record comes back after its visibility timeout; the next function finds it sent and deletes it.
    await startWorker();
    await eventually(
      async () => ((await approximateCount(peers.sqs, settings.queueUrl)) === 0 ? true : undefined),
      20_000,
    );

    expect(receivedWithSubject('Died before delete')).toHaveLength(1);
    expect(await drain(peers.sqs, settings.deadLetterQueueUrl, { polls: 1 })).toHaveLength(0);
  }, 40_000);
});
