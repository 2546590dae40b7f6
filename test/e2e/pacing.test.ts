import { SendMessageBatchCommand } from '@aws-sdk/client-sqs';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { DynamoPacingStore } from '../../lambda/core/pacing/dynamo-pacing-store.ts';
import { SETTINGS_ENV_VAR } from '../../lambda/core/settings.ts';
import { createHttpTransport } from '../../lambda/providers/http-transport.ts';
import { createSendHandler } from '../../lambda/send/create-handler.ts';
import { parseRelayConfig, relaySettingsFor } from '../../lib/config.ts';
import { createClientCertificate } from '../../local/peers/certificates.ts';
import { type EventBridgePeer, startEventBridgePeer } from '../../local/peers/eventbridge-peer.ts';
import { type GraphPeer, startGraphPeer } from '../../local/peers/graph-peer.ts';
import {
  type SecretsManagerEmulator,
  startSecretsManagerEmulator,
} from '../../local/secrets-manager-emulator.ts';
import { LocalSqsEventSource } from '../../local/sqs-event-source.ts';
import { type DynamoPeer, startDynamo } from '../helpers/dynamo.ts';
import {
  approximateCount,
  createQueue,
  eventually,
  type Peers,
  REGION,
  startPeers,
  validMessage,
} from '../helpers/peers.ts';

// Five send functions (each its own handler, pacer and Graph client, as five Lambda instances) poll
// one outbox and pace through one pacing table on the DynamoDB emulator. The Graph peer enforces
// Graph's and Exchange's limits per mailbox, scaled down in time: 4 requests at once and 10 sends per
// 2 seconds (Exchange: 30 per minute), answering 429 beyond them. The SES capture enforces the account's
// send rate. What is asserted is what the providers saw: no 429, never more than 4 at once, every
// message sent once, none dead-lettered; never how fast.

const TENANT_ID = '11111111-2222-3333-4444-555555555555';
const CLIENT_ID = 'aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee';
const FUNCTIONS = 5;
const BATCH_SIZE = 10;
/** The peer's window: 10 sends per 2 seconds stands in for Exchange's 30 per minute. */
const WINDOW = { count: 10, windowMs: 2000 } as const;
const BULK = 40;
/** 10 per 2.5 s as a per-minute rate: 240. */
const SCALED_PER_MINUTE = Math.floor((WINDOW.count * 60_000) / (WINDOW.windowMs + 500));

describe('pacing across five send functions against peers that enforce the limits', () => {
  let peers: Peers;
  let dynamo: DynamoPeer;
  let graph: GraphPeer;
  let secrets: SecretsManagerEmulator;
  let events: EventBridgePeer;
  const sources: LocalSqsEventSource[] = [];
  let outboxUrl: string;
  let deadLetterUrl: string;

  beforeAll(async () => {
    peers = await startPeers();
    dynamo = await startDynamo();
    secrets = await startSecretsManagerEmulator(0);
    events = await startEventBridgePeer();
    const certificate = await createClientCertificate();
    graph = await startGraphPeer({
      tenantId: TENANT_ID,
      clients: [{ clientId: CLIENT_ID, certificatePem: certificate.certificatePem }],
      concurrentRequestsPerMailbox: 4,
      messagesPerMailbox: WINDOW,
      // Each send takes a while, so sends of several functions overlap at the peer.
      latencyMs: 150,
    });
    const dlq = await createQueue(peers.sqs);
    const outbox = await createQueue(peers.sqs, {
      VisibilityTimeout: '60',
      RedrivePolicy: JSON.stringify({ deadLetterTargetArn: dlq.arn, maxReceiveCount: 3 }),
    });
    outboxUrl = outbox.url;
    deadLetterUrl = dlq.url;
    const config = parseRelayConfig({
      graph: {
        tenantId: TENANT_ID,
        clientId: CLIENT_ID,
        senders: ['contoso.com'],
        authorityHost: graph.authorityHost,
        graphEndpoint: graph.graphEndpoint,
        saveToSentItems: false,
        pacing: {
          // Graph's 4 at once, and the peer's window as a rate: the relay spreads a minute's sends
          // over the minute plus half a second (arrival jitter); here the window is 2 s, so the same
          // allowance comes from the rate itself.
          perMailbox: { messagesPerMinute: SCALED_PER_MINUTE, concurrentRequests: 4 },
          mailboxes: { 'daily@contoso.com': { recipientsPerDay: 5 } },
        },
      },
      ses: { identities: ['contoso.com'], pacing: false },
      routes: [
        { name: 'daily', from: ['daily@contoso.com'], providers: ['graph', 'ses'], onLimit: 'next-provider' },
        { name: 'contoso', from: ['*@contoso.com'], providers: ['graph'] },
      ],
      queue: { maxReceiveCount: 3 },
      sendFunction: { batchSize: BATCH_SIZE },
      pacing: { maxWaitSeconds: 2 },
    });
    const settings = relaySettingsFor(config, {
      queueUrl: outbox.url,
      deadLetterQueueUrl: dlq.url,
      credentialSecretIds: new Map([
        [
          'graph',
          secrets.putSecret(
            'pacing/graph',
            JSON.stringify({
              certificate: certificate.certificatePem,
              privateKey: certificate.privateKeyPem,
            }),
          ),
        ],
      ]),
      ledgerTableName: dynamo.ledgerTableName,
      suppressionTableName: dynamo.suppressionTableName,
      pacingTableName: dynamo.pacingTableName,
    });
    const env = {
      [SETTINGS_ENV_VAR]: JSON.stringify(settings),
      AWS_REGION: REGION,
      AWS_ACCESS_KEY_ID: 'test',
      AWS_SECRET_ACCESS_KEY: 'test',
      AWS_ENDPOINT_URL_SQS: peers.sqsEndpoint,
      AWS_ENDPOINT_URL_SESV2: peers.sesEndpoint,
      AWS_ENDPOINT_URL_DYNAMODB: dynamo.endpoint,
      AWS_ENDPOINT_URL_SECRETS_MANAGER: secrets.endpoint,
      AWS_ENDPOINT_URL_EVENTBRIDGE: events.endpoint,
      POWERTOOLS_LOG_LEVEL: 'ERROR',
      POWERTOOLS_METRICS_DISABLED: 'true',
    };
    for (const [name, value] of Object.entries(env)) vi.stubEnv(name, value);
    for (let index = 0; index < FUNCTIONS; index += 1) {
      const source = new LocalSqsEventSource({
        client: peers.sqs,
        queueUrl: outbox.url,
        queueArn: outbox.arn,
        region: REGION,
        handler: createSendHandler(process.env, {
          graphTransport: createHttpTransport({ ca: graph.caCertificate }),
        }),
        batchSize: BATCH_SIZE,
        maxConcurrency: 1,
        functionTimeoutMs: 30_000,
        waitTimeSeconds: 1,
      });
      source.start();
      sources.push(source);
    }
  });

  afterAll(async () => {
    await Promise.all(sources.map((source) => source.stop()));
    vi.unstubAllEnvs();
    await graph?.close();
    await secrets?.stop();
    await events?.close();
    await dynamo?.stop();
    await peers?.stop();
  });

  async function enqueue(from: string, count: number, subject: string): Promise<void> {
    for (let start = 0; start < count; start += 10) {
      const entries = Array.from({ length: Math.min(10, count - start) }, (_, offset) => ({
        Id: String(start + offset),
        MessageBody: JSON.stringify(
          validMessage({
            from,
            to: [`r${start + offset}@example.org`],
            subject: `${subject} ${start + offset}`,
          }),
        ),
      }));
      await peers.sqs.send(new SendMessageBatchCommand({ QueueUrl: outboxUrl, Entries: entries }));
    }
  }

  const delivered = (subject: string) =>
    graph.delivered.filter((message) => String(message.message.subject ?? '').startsWith(`${subject} `));

  it('sends a burst from one mailbox through five functions with no 429 and never more than 4 at once', async () => {
    await enqueue('bulk@contoso.com', BULK, 'Bulk');

    await eventually(async () => (delivered('Bulk').length >= BULK ? true : undefined), 120_000);
    const stats = graph.pacingStats('bulk@contoso.com');

    expect(stats.throttledByCode).toEqual({
      MailboxConcurrency: 0,
      ApplicationThrottled: 0,
      ErrorExceededMessageLimit: 0,
    });
    expect(stats.peakSendRequestsOpen).toBeLessThanOrEqual(4);
    // Each message once: the subjects are all different.
    expect(new Set(delivered('Bulk').map((message) => message.message.subject)).size).toBe(BULK);
    expect(delivered('Bulk')).toHaveLength(BULK);
    expect(await approximateCount(peers.sqs, deadLetterUrl)).toBe(0);
  });

  it('sends through SES once a mailbox day is full, on a route that spills over', async () => {
    await enqueue('daily@contoso.com', 8, 'Daily');

    await eventually(async () => {
      const ses = peers.capture.sent.filter((send) => send.raw.toString().includes('Subject: Daily '));
      return delivered('Daily').length + ses.length >= 8 ? ses : undefined;
    }, 60_000);

    expect(delivered('Daily')).toHaveLength(5);
    expect(peers.capture.sent.filter((send) => send.raw.toString().includes('Subject: Daily '))).toHaveLength(
      3,
    );
    expect(graph.pacingStats('daily@contoso.com').throttledByCode.ErrorExceededMessageLimit).toBe(0);
  });

  it('makes every function wait out a Retry-After that one of them was given', async () => {
    graph.injectFault({
      operation: 'sendMail',
      mailbox: 'slow@contoso.com',
      status: 429,
      code: 'TooManyRequests',
      retryAfterSeconds: 2,
    });
    await enqueue('slow@contoso.com', 1, 'Slow first');
    // Once the fleet's schedule for the mailbox has moved past the Retry-After…
    const store = new DynamoPacingStore(dynamo.client, dynamo.pacingTableName);
    const until = await eventually(async () => {
      const item = await store.get('graph|mailbox|slow@contoso.com|messages');
      const at = Number(item?.at?.N ?? 0);
      return at > Date.now() + 1000 ? at : undefined;
    }, 30_000);
    // …the other functions' sends for it wait too.
    await enqueue('slow@contoso.com', 9, 'Slow next');

    await eventually(async () => (delivered('Slow').length >= 10 ? true : undefined), 60_000);
    const accepted = graph.pacingStats('slow@contoso.com').acceptedSends.map((send) => send.at);
    // The schedule is the relay's, the times the peer's: the same clock here.
    expect(Math.min(...accepted)).toBeGreaterThanOrEqual(until - 50);
    expect(graph.pacingStats('slow@contoso.com').throttledByCode.ApplicationThrottled).toBe(0);
  });
});
