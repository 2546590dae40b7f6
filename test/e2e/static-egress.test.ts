import { SendMessageCommand } from '@aws-sdk/client-sqs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SETTINGS_ENV_VAR } from '../../lambda/core/settings.ts';
import { createSendHandler } from '../../lambda/send/create-handler.ts';
import type { RelaySettings } from '../../lambda/send/settings.ts';
import { passingOnSettingsFor } from '../../lib/config.ts';
import { type SmtpPeer, startSmtpPeer } from '../../local/peers/smtp-peer.ts';
import { LocalSqsEventSource } from '../../local/sqs-event-source.ts';
import { type DynamoPeer, startDynamo } from '../helpers/dynamo.ts';
import { createQueue, drain, eventually, type Peers, startPeers, validMessage } from '../helpers/peers.ts';

// The two send functions of a relay with static egress, each on its own queue as the stack wires
// them: the send function outside the VPC passes the SMTP routes to the static-egress function,
// which sends them; SES mail never leaves the first. Real SQS, DynamoDB, SES and SMTP peers.

const SLOW = 60_000;

describe('static egress: the send function passes SMTP routes to the static-egress function', () => {
  let peers: Peers;
  let dynamo: DynamoPeer;
  let smtp: SmtpPeer;
  const sources: LocalSqsEventSource[] = [];
  let outboxUrl: string;
  let dlqUrl: string;
  const saved = { ...process.env };

  beforeAll(async () => {
    peers = await startPeers();
    dynamo = await startDynamo();
    smtp = await startSmtpPeer({ tls: 'none', greetingDelayMs: 0 });
    const dlq = await createQueue(peers.sqs);
    const redrive = JSON.stringify({ deadLetterTargetArn: dlq.arn, maxReceiveCount: 5 });
    const outbox = await createQueue(peers.sqs, { VisibilityTimeout: '5', RedrivePolicy: redrive });
    const egressQueue = await createQueue(peers.sqs, { VisibilityTimeout: '5', RedrivePolicy: redrive });
    outboxUrl = outbox.url;
    dlqUrl = dlq.url;

    // The static-egress function's settings hold every provider; the send function's come from them
    // exactly as the construct makes them.
    const everything: RelaySettings = {
      queueUrl: egressQueue.url,
      deadLetterQueueUrl: dlq.url,
      maxReceiveCount: 5,
      limits: { maxRecipients: 50, maxMessageBytes: 1024 * 1024 },
      ses: { identities: ['example.com'] },
      smtp: [
        {
          name: 'smtp',
          senders: ['scanner@contoso.com'],
          mode: 'smarthost',
          host: smtp.host,
          port: smtp.port,
          tls: 'none',
          requireTls: false,
          auth: 'none',
          maxConnections: 2,
        },
      ],
      retry: { maxAttempts: 3, baseDelaySeconds: 1, maxDelaySeconds: 2 },
      circuitBreaker: { failureThreshold: 100, cooldownSeconds: 1 },
      ledger: { tableName: dynamo.ledgerTableName, leaseSeconds: 10, retentionDays: 1 },
      suppression: { tableName: dynamo.suppressionTableName },
    };
    const passingOn = passingOnSettingsFor(
      { ...everything, queueUrl: outbox.url },
      ['smtp'],
      egressQueue.url,
    );
    expect(passingOn.smtp).toBeUndefined();

    Object.assign(process.env, {
      AWS_REGION: 'us-east-1',
      AWS_ACCESS_KEY_ID: 'test',
      AWS_SECRET_ACCESS_KEY: 'test',
      AWS_ENDPOINT_URL_SQS: peers.sqsEndpoint,
      AWS_ENDPOINT_URL_SESV2: peers.sesEndpoint,
      AWS_ENDPOINT_URL_DYNAMODB: dynamo.endpoint,
      POWERTOOLS_LOG_LEVEL: 'ERROR',
    });
    for (const [queue, settings] of [
      [outbox, passingOn],
      [egressQueue, everything],
    ] as const) {
      const source = new LocalSqsEventSource({
        client: peers.sqs,
        queueUrl: queue.url,
        queueArn: queue.arn,
        region: 'us-east-1',
        handler: createSendHandler({ ...process.env, [SETTINGS_ENV_VAR]: JSON.stringify(settings) }),
        batchSize: 10,
        maxConcurrency: 2,
        functionTimeoutMs: 30_000,
      });
      source.start();
      sources.push(source);
    }
  }, SLOW);

  afterAll(async () => {
    for (const source of sources) await source.stop();
    process.env = saved;
    await smtp?.close();
    await dynamo?.stop();
    await peers?.stop();
  });

  const enqueue = (message: object) =>
    peers.sqs.send(new SendMessageCommand({ QueueUrl: outboxUrl, MessageBody: JSON.stringify(message) }));

  it('sends an SMTP route through the static-egress function, once, and SES mail from the send function', async () => {
    await enqueue(validMessage({ from: 'scanner@contoso.com', subject: 'Scan 1' }));
    await enqueue(validMessage({ from: 'app@example.com', subject: 'Invoice 1' }));

    const scanned = await eventually(
      async () => smtp.received.find((message) => message.raw.toString().includes('Subject: Scan 1')),
      SLOW,
    );
    expect(scanned.envelope.mailFrom).toBe('scanner@contoso.com');
    await eventually(
      async () => peers.capture.sent.find((send) => send.raw.toString().includes('Subject: Invoice 1')),
      SLOW,
    );
    // Sent once, and nothing went to the dead-letter queue.
    expect(
      smtp.received.filter((message) => message.raw.toString().includes('Subject: Scan 1')),
    ).toHaveLength(1);
    expect(peers.capture.sent.some((send) => send.raw.toString().includes('Subject: Scan 1'))).toBe(false);
    expect(await drain(peers.sqs, dlqUrl, { polls: 1 })).toEqual([]);
  });
});
