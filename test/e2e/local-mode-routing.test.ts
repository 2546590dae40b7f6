import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { Message, SQSClient } from '@aws-sdk/client-sqs';
import { simpleParser } from 'mailparser';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { DEAD_LETTER_ATTRIBUTES } from '../../lambda/core/dead-letter.ts';
import { DynamoDeliveryLedger } from '../../lambda/core/dynamo-ledger.ts';
import { DynamoSuppressionList } from '../../lambda/core/dynamo-suppression.ts';
import { type LocalRelay, startLocalRelay } from '../../local/local-relay.ts';
import type { GraphPeer } from '../../local/peers/graph-peer.ts';
import type { SmtpPeer } from '../../local/peers/smtp-peer.ts';
import {
  approximateCount,
  drain,
  enqueue,
  eventually,
  producerClient,
  validMessage,
} from '../helpers/peers.ts';
import { isolatedLocalMode } from '../local/isolated-local-mode.ts';

const run = promisify(execFile);

// Fault injection end to end: SQS emulator → the real handler → the Entra ID + Graph peer, the SMTP
// capture and the SES emulator, with the delivery ledger and suppression list in the DynamoDB emulator.

const CIRCUIT_THRESHOLD = 3;

/** Local mode with Graph, SMTP and SES behind four routes; retries come back within seconds. */
async function startRoutingRelay(workDir: string, circuitThreshold: number): Promise<LocalRelay> {
  const configPath = path.join(workDir, `config-${circuitThreshold}.json`);
  writeFileSync(
    configPath,
    JSON.stringify({
      // Sent events are opt-in: this test follows them.
      events: { publish: { sent: true } },
      ses: { identities: ['contoso.com', 'fabrikam.com', 'example.com'] },
      graph: {
        tenantId: 'contoso.onmicrosoft.com',
        clientId: '6f1e2d3c-0000-4000-8000-00000000e2e5',
        senders: ['contoso.com', 'alerts@fabrikam.com'],
      },
      smtp: {
        senders: ['fabrikam.com', 'crm@contoso.com'],
        mode: 'smarthost',
        host: 'smtp.fabrikam.com',
      },
      routes: [
        { name: 'contoso', from: ['*@contoso.com'], providers: ['graph', 'ses'] },
        { name: 'scanner', from: ['*@fabrikam.com'], providers: ['smtp', 'ses'] },
        { name: 'alerts', from: ['alerts@fabrikam.com'], providers: ['graph', 'smtp'] },
        {
          name: 'crm',
          from: ['*@crm.example.com'],
          providers: ['smtp'],
          rewriteFrom: { address: 'crm@contoso.com', name: 'Contoso CRM' },
        },
      ],
      retry: { maxAttempts: 3, baseDelaySeconds: 1, maxDelaySeconds: 2 },
      circuitBreaker: { failureThreshold: circuitThreshold, cooldownSeconds: 600 },
      queue: { maxReceiveCount: 8 },
    }),
  );
  // A long visibility timeout: a retry that comes back in seconds can only be the relay's delay.
  return startLocalRelay({
    ...isolatedLocalMode(workDir),
    graphPeer: true,
    smtpCaptureDir: path.join(workDir, `smtp-${circuitThreshold}`),
    configPath,
    visibilityTimeoutSeconds: 60,
    logLevel: 'ERROR',
  });
}

describe('local mode: routes, fallback, retries, idempotency and sender policy', () => {
  let relay: LocalRelay;
  let graph: GraphPeer;
  let smtp: SmtpPeer;
  let sqs: SQSClient;
  let dynamo: DynamoDBClient;
  let ledger: DynamoDeliveryLedger;
  const workDir = mkdtempSync(path.join(tmpdir(), 'mail-relay-routing-e2e-'));

  beforeAll(async () => {
    relay = await startRoutingRelay(workDir, 100);
    if (!relay.graphPeer || !relay.smtpCapture) throw new Error('local mode did not start the peers');
    graph = relay.graphPeer;
    smtp = relay.smtpCapture.peer;
    sqs = producerClient(relay.sqsEndpoint);
    dynamo = new DynamoDBClient({
      region: 'us-east-1',
      endpoint: relay.dynamoDbEndpoint,
      credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
    });
    ledger = new DynamoDeliveryLedger(dynamo, relay.ledgerTableName);
  });
  afterAll(async () => {
    sqs.destroy();
    dynamo.destroy();
    await relay.stop();
  });
  beforeEach(() => {
    graph.clearFaults();
    smtp.reset();
  });

  const sendMailRequests = (mailbox: string) =>
    graph.requests.filter((request) => request.operation === 'sendMail' && request.mailbox === mailbox);
  const graphDelivered = (subject: string) =>
    graph.delivered.filter((message) => message.message.subject === subject);
  const sesDelivered = (subject: string) =>
    relay.capture.sent.filter((sent) => sent.raw.toString().includes(`Subject: ${subject}`));
  const smtpDelivered = (subject: string) =>
    smtp.received.filter((message) => message.raw.toString().includes(`Subject: ${subject}`));
  const deadLetter = (subject: string) =>
    eventually(async () => {
      const messages: Message[] = await drain(sqs, relay.deadLetterQueueUrl, { polls: 1 });
      return messages.find((message) => JSON.parse(message.Body ?? '{}').subject === subject);
    });
  const attribute = (message: Message, name: string) => message.MessageAttributes?.[name]?.StringValue;

  it('retries Graph after two 503s, honouring the delays, and sends through Graph once', async () => {
    graph.injectFault({ operation: 'sendMail', status: 503, code: 'ServiceNotAvailable', times: 2 });
    const messageId = await enqueue(
      sqs,
      relay.queueUrl,
      validMessage({ from: 'ventas@contoso.com', subject: 'Graph 503 twice' }),
    );

    await eventually(async () => (graphDelivered('Graph 503 twice').length === 1 ? true : undefined));

    const tries = sendMailRequests('ventas@contoso.com');
    expect(tries.map((request) => request.status)).toEqual([503, 503, 202]);
    // Backoff from 1 s with equal jitter: each retry waits at least half a step (0.5 s, then 1 s).
    expect((tries[1]?.startedAt ?? 0) - (tries[0]?.endedAt ?? 0)).toBeGreaterThanOrEqual(450);
    expect((tries[2]?.startedAt ?? 0) - (tries[1]?.endedAt ?? 0)).toBeGreaterThanOrEqual(950);
    expect(sesDelivered('Graph 503 twice')).toHaveLength(0);
    const entry = await eventually(async () => {
      const found = await ledger.get(`sqs:${messageId}`);
      return found?.state === 'sent' ? found : undefined;
    });
    expect(entry).toMatchObject({ provider: 'graph', attempts: 2 });
  });

  it('falls back to SES at once when Graph refuses the app (401)', async () => {
    graph.injectFault({ operation: 'sendMail', status: 401, code: 'InvalidAuthenticationToken' });
    const messageId = await enqueue(
      sqs,
      relay.queueUrl,
      validMessage({ from: 'ventas@contoso.com', subject: 'Graph 401', idempotencyKey: 'graph-401' }),
    );

    await eventually(async () => (sesDelivered('Graph 401').length === 1 ? true : undefined));

    expect(graphDelivered('Graph 401')).toHaveLength(0);
    // The ledger is written right after the provider accepted.
    const entry = await eventually(async () => {
      const found = await ledger.get('graph-401');
      return found?.state === 'sent' ? found : undefined;
    });
    expect(entry).toMatchObject({
      state: 'sent',
      provider: 'ses',
      messageId,
      fallbackFrom: ['graph'],
      failures: [expect.objectContaining({ provider: 'graph', code: 'InvalidAuthenticationToken' })],
    });
    // Producing apps learn it from the outcome event (published right after the ledger write; earlier
    // tests' events are there too, so wait for this one).
    await eventually(async () =>
      relay.eventBridge.events.find((event) => event.detail.idempotencyKey === 'graph-401'),
    );
    expect(relay.eventBridge.events).toContainEqual(
      expect.objectContaining({
        source: 'mail-relay',
        detailType: 'Mail Sent',
        detail: expect.objectContaining({
          idempotencyKey: 'graph-401',
          provider: 'ses',
          fallbackFrom: ['graph'],
        }),
      }),
    );
    // `mail-relay status` answers "was it sent, by which provider, when".
    const { stdout } = await run(
      process.execPath,
      [
        'cli/mail-relay.js',
        'status',
        'graph-401',
        '--endpoint',
        relay.dynamoDbEndpoint,
        '--table',
        relay.ledgerTableName,
      ],
      {
        env: { ...process.env, AWS_REGION: 'us-east-1', AWS_ACCESS_KEY_ID: 'x', AWS_SECRET_ACCESS_KEY: 'x' },
      },
    );
    expect(stdout).toMatch(/sent by ses at \d{4}-\d\d-\d\dT/);
    expect(stdout).toContain('graph');
  });

  it('falls back to SES when the SMTP connector refuses the IP (550 5.7.708)', async () => {
    smtp.reject({
      stage: 'mailFrom',
      reply: '550 5.7.708 Service unavailable. Access denied, traffic not accepted from this IP.',
    });
    await enqueue(
      sqs,
      relay.queueUrl,
      validMessage({ from: 'scanner@fabrikam.com', subject: 'SMTP 5.7.708' }),
    );

    await eventually(async () => (sesDelivered('SMTP 5.7.708').length === 1 ? true : undefined));
    expect(smtpDelivered('SMTP 5.7.708')).toHaveLength(0);
  });

  it('dead-letters with every reason once every provider in the chain is down', async () => {
    graph.injectFault({
      operation: 'sendMail',
      mailbox: 'alerts@fabrikam.com',
      status: 401,
      code: 'InvalidAuthenticationToken',
      times: Infinity,
    });
    smtp.reject({
      stage: 'mailFrom',
      reply: '550 5.7.708 Service unavailable. Access denied, traffic not accepted from this IP.',
      times: Infinity,
    });
    await enqueue(sqs, relay.queueUrl, validMessage({ from: 'alerts@fabrikam.com', subject: 'All down' }));

    const dead = await deadLetter('All down');

    expect(attribute(dead, DEAD_LETTER_ATTRIBUTES.provider)).toBe('smtp');
    expect(attribute(dead, DEAD_LETTER_ATTRIBUTES.code)).toBe('5.7.708');
    expect(attribute(dead, DEAD_LETTER_ATTRIBUTES.attempts)).toBe('3');
    expect(attribute(dead, DEAD_LETTER_ATTRIBUTES.reason)).toMatch(
      /^gave up after 3 attempts: graph InvalidAuthenticationToken: .*\| smtp 5\.7\.708: .*\| smtp 5\.7\.708: .*\| smtp 5\.7\.708/,
    );
    // Published right after the dead-letter queue has it.
    const event = await eventually(async () =>
      relay.eventBridge.events.find((candidate) => candidate.detailType === 'Mail Dead-Lettered'),
    );
    expect(event.detail).toMatchObject({ code: '5.7.708', provider: 'smtp', route: 'alerts' });
    // Graph once (fallback moves on), SMTP retry.maxAttempts times.
    expect(sendMailRequests('alerts@fabrikam.com')).toHaveLength(1);
    expect(smtp.transcript.filter((entry) => entry.stage === 'mailFrom')).toHaveLength(3);
  });

  it('sends one message for two requests with the same idempotency key', async () => {
    const body = validMessage({
      from: 'ventas@contoso.com',
      subject: 'Same key',
      idempotencyKey: 'order-77',
    });
    await enqueue(sqs, relay.queueUrl, body);
    await enqueue(sqs, relay.queueUrl, body);

    await eventually(async () => (graphDelivered('Same key').length === 1 ? true : undefined));
    // Both requests are finished and deleted (none in flight, none waiting for a retry): nothing can
    // go out any more, and no second copy did.
    await eventually(async () => ((await approximateCount(sqs, relay.queueUrl)) === 0 ? true : undefined));
    expect(graphDelivered('Same key')).toHaveLength(1);
    expect(sesDelivered('Same key')).toHaveLength(0);
  });

  it('dead-letters a sender no route allows at once, without calling a provider', async () => {
    const requestsBefore = graph.requests.length;
    await enqueue(sqs, relay.queueUrl, validMessage({ from: 'ceo@contoso.org', subject: 'Not allowed' }));

    const dead = await deadLetter('Not allowed');

    expect(attribute(dead, DEAD_LETTER_ATTRIBUTES.code)).toBe('SenderNotAllowed');
    expect(attribute(dead, DEAD_LETTER_ATTRIBUTES.attempts)).toBe('1');
    expect(graph.requests.length).toBe(requestsBefore);
  });

  it("rewrites the From to the route's service mailbox, visible in the delivered headers", async () => {
    await enqueue(
      sqs,
      relay.queueUrl,
      validMessage({ from: 'Luis Gómez <luis@crm.example.com>', subject: 'CRM rewrite' }),
    );

    const [delivered] = await eventually(async () => {
      const found = smtpDelivered('CRM rewrite');
      return found.length > 0 ? found : undefined;
    });
    const parsed = await simpleParser(delivered?.raw ?? Buffer.alloc(0));
    expect(parsed.from?.value).toEqual([{ name: 'Luis Gómez via Contoso CRM', address: 'crm@contoso.com' }]);
    expect(parsed.replyTo?.value).toEqual([{ name: 'Luis Gómez', address: 'luis@crm.example.com' }]);
    expect(delivered?.envelope.mailFrom).toBe('crm@contoso.com');
  });

  it('drops suppressed recipients, and sends nothing when none is left', async () => {
    const suppressions = new DynamoSuppressionList(dynamo, relay.suppressionTableName);
    await suppressions.suppress({
      address: 'bounced@example.org',
      reason: 'hard bounce: 550 5.1.1 user unknown',
      since: new Date().toISOString(),
    });
    await enqueue(
      sqs,
      relay.queueUrl,
      validMessage({
        from: 'scanner@fabrikam.com',
        to: ['bounced@example.org', 'ok@example.org'],
        subject: 'Partly suppressed',
      }),
    );
    const allSuppressed = await enqueue(
      sqs,
      relay.queueUrl,
      validMessage({ from: 'scanner@fabrikam.com', to: ['Bounced@Example.org'], subject: 'All suppressed' }),
    );

    const [partly] = await eventually(async () => {
      const found = smtpDelivered('Partly suppressed');
      return found.length > 0 ? found : undefined;
    });
    expect(partly?.envelope.rcptTo).toEqual(['ok@example.org']);
    const entry = await eventually(async () => {
      const found = await ledger.get(`sqs:${allSuppressed}`);
      return found?.state === 'suppressed' ? found : undefined;
    });
    expect(entry.suppressedRecipients).toEqual(['bounced@example.org']);
    // Published right after the ledger write.
    const event = await eventually(async () =>
      relay.eventBridge.events.find((candidate) => candidate.detail.messageId === allSuppressed),
    );
    expect(event).toMatchObject({
      detailType: 'Mail Suppressed',
      detail: { outcome: 'suppressed', suppressedRecipients: ['bounced@example.org'] },
    });
    expect(smtpDelivered('All suppressed')).toHaveLength(0);
  });
});

describe('local mode: the circuit breaker', () => {
  let relay: LocalRelay;
  let sqs: SQSClient;
  const workDir = mkdtempSync(path.join(tmpdir(), 'mail-relay-circuit-e2e-'));

  beforeAll(async () => {
    relay = await startRoutingRelay(workDir, CIRCUIT_THRESHOLD);
    sqs = producerClient(relay.sqsEndpoint);
  });
  afterAll(async () => {
    sqs.destroy();
    await relay.stop();
  });

  it('stops calling a dead provider once its circuit opens (counted at the peer)', async () => {
    const graph = relay.graphPeer as GraphPeer;
    graph.injectFault({
      operation: 'sendMail',
      status: 401,
      code: 'InvalidAuthenticationToken',
      times: Infinity,
    });
    const sesDelivered = (subject: string) =>
      relay.capture.sent.filter((sent) => sent.raw.toString().includes(`Subject: ${subject}`));
    // One at a time, so the count is exact: sends already in flight when it opens would also count.
    for (let index = 0; index < 8; index += 1) {
      const subject = `Circuit ${index}`;
      await enqueue(sqs, relay.queueUrl, validMessage({ from: 'circuit@contoso.com', subject }));
      await eventually(async () => (sesDelivered(subject).length === 1 ? true : undefined));
    }

    const calls = graph.requests.filter((request) => request.operation === 'sendMail');
    expect(calls).toHaveLength(CIRCUIT_THRESHOLD);
    expect(graph.delivered).toHaveLength(0);
  });
});
