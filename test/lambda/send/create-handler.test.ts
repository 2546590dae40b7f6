import type { Context } from 'aws-lambda';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { DynamoDeliveryLedger } from '../../../lambda/core/dynamo-ledger.ts';
import { DynamoSuppressionList } from '../../../lambda/core/dynamo-suppression.ts';
import { SETTINGS_ENV_VAR } from '../../../lambda/core/settings.ts';
import { ConfigurationError } from '../../../lambda/core/validation.ts';
import { createHttpTransport } from '../../../lambda/providers/http-transport.ts';
import { createSendHandler } from '../../../lambda/send/create-handler.ts';
import { startEventBridgePeer } from '../../../local/peers/eventbridge-peer.ts';
import { type GraphPeer, startGraphPeer } from '../../../local/peers/graph-peer.ts';
import { type SmtpPeer, startSmtpPeer } from '../../../local/peers/smtp-peer.ts';
import {
  type SecretsManagerEmulator,
  startSecretsManagerEmulator,
} from '../../../local/secrets-manager-emulator.ts';
import { type DynamoPeer, startDynamo } from '../../helpers/dynamo.ts';
import { captureStdout, emfPoints } from '../../helpers/emf.ts';
import { createQueue, drain, type Peers, sqsRecord, startPeers, validMessage } from '../../helpers/peers.ts';

const context = {
  functionName: 'send',
  awsRequestId: 'request-1',
  getRemainingTimeInMillis: () => 30_000,
} as unknown as Context;

function catching(run: () => unknown): unknown {
  try {
    run();
  } catch (error) {
    return error;
  }
  return undefined;
}

describe('the send handler (middy + Powertools over the relay core)', () => {
  let peers: Peers;
  let dynamo: DynamoPeer;
  let dlqUrl: string;
  let outboxUrl: string;
  const saved = { ...process.env };

  beforeAll(async () => {
    peers = await startPeers();
    dynamo = await startDynamo();
    dlqUrl = (await createQueue(peers.sqs)).url;
    outboxUrl = (await createQueue(peers.sqs)).url;
    // The handler builds its SDK clients from the standard AWS environment, as in Lambda.
    Object.assign(process.env, {
      AWS_REGION: 'us-east-1',
      AWS_ACCESS_KEY_ID: 'test',
      AWS_SECRET_ACCESS_KEY: 'test',
      AWS_ENDPOINT_URL_SQS: peers.sqsEndpoint,
      AWS_ENDPOINT_URL_SESV2: peers.sesEndpoint,
      AWS_ENDPOINT_URL_DYNAMODB: dynamo.endpoint,
    });
  });
  afterAll(async () => {
    process.env = saved;
    await dynamo.stop();
    await peers.stop();
  });
  afterEach(() => {
    vi.restoreAllMocks();
    vi.unstubAllEnvs();
  });

  const environment = (overrides: Record<string, string> = {}) => ({
    ...process.env,
    [SETTINGS_ENV_VAR]: JSON.stringify({
      queueUrl: outboxUrl,
      deadLetterQueueUrl: dlqUrl,
      maxReceiveCount: 5,
      limits: { maxRecipients: 50, maxMessageBytes: 1_048_576 },
      ses: { identities: ['example.com'] },
      retry: { maxAttempts: 3, baseDelaySeconds: 1, maxDelaySeconds: 2 },
      circuitBreaker: { failureThreshold: 5, cooldownSeconds: 60 },
      ledger: { tableName: dynamo.ledgerTableName, leaseSeconds: 30, retentionDays: 1 },
      suppression: { tableName: dynamo.suppressionTableName },
    }),
    ...overrides,
  });

  it('fails at cold start with every settings problem listed', () => {
    const broken = {
      [SETTINGS_ENV_VAR]: JSON.stringify({
        deadLetterQueueUrl: 'nope',
        maxReceiveCount: 0,
        limits: {},
        ses: {},
      }),
    };

    const error = catching(() => createSendHandler(broken));

    expect(error).toBeInstanceOf(ConfigurationError);
    const problems = (error as ConfigurationError).problems.join('\n');
    for (const field of ['deadLetterQueueUrl', 'maxReceiveCount', 'limits.maxRecipients', 'ses.identities']) {
      expect(problems).toContain(`${SETTINGS_ENV_VAR}.${field}`);
    }
  });

  it('reports only the record that must be retried as a batch item failure', async () => {
    vi.stubEnv('POWERTOOLS_LOG_LEVEL', 'ERROR');
    const handler = createSendHandler(environment());
    // The function's SES client retries within the invocation (3 attempts): an outage must outlast them.
    peers.capture.injectFault({ status: 503, code: 'ServiceUnavailable', times: 3 });
    const retried = sqsRecord(validMessage({ subject: 'Retry me' }), { messageId: 'retry-1' });
    const first = await handler({ Records: [retried] }, context);
    const second = await handler(
      { Records: [sqsRecord(validMessage(), { messageId: 'ok-1' }), sqsRecord('{', { messageId: 'bad-1' })] },
      context,
    );

    expect(first).toEqual({ batchItemFailures: [{ itemIdentifier: 'retry-1' }] });
    expect(peers.capture.sendAttempts).toBe(4);
    expect(second).toEqual({ batchItemFailures: [] });
    const [dead] = await drain(peers.sqs, dlqUrl);
    expect(dead?.Body).toBe('{');
  });

  it('by default writes one EMF document per invocation, no Route dimension, and publishes only failures', async () => {
    const events = await startEventBridgePeer();
    vi.stubEnv('AWS_ENDPOINT_URL_EVENTBRIDGE', events.endpoint);
    vi.stubEnv('POWERTOOLS_LOG_LEVEL', 'ERROR');
    const written: string[] = [];
    vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
      written.push(String(chunk));
      return true;
    });
    try {
      const settings = JSON.parse(environment()[SETTINGS_ENV_VAR] ?? '{}') as Record<string, unknown>;
      const handler = createSendHandler({
        ...environment(),
        [SETTINGS_ENV_VAR]: JSON.stringify({ ...settings, events: { busName: 'relay-bus' } }),
      });
      const result = await handler(
        {
          Records: [
            sqsRecord(validMessage(), { messageId: 'default-ok-1' }),
            sqsRecord(validMessage(), { messageId: 'default-ok-2' }),
            sqsRecord(validMessage({ to: [] }), { messageId: 'default-bad' }),
          ],
        },
        context,
      );
      vi.restoreAllMocks();

      expect(result).toEqual({ batchItemFailures: [] });
      // Accepted, Sent and the latencies per Provider, DeadLettered per FailureClass: their values agree,
      // so one document holds them all.
      expect(written.filter((chunk) => chunk.includes('"_aws"'))).toHaveLength(1);
      const points = emfPoints(written);
      expect(points.filter((point) => 'Route' in point.dimensions)).toEqual([]);
      expect(points).toEqual(
        expect.arrayContaining([
          {
            namespace: 'MailRelay',
            name: 'Sent',
            dimensions: { service: 'mail-relay', Provider: 'ses' },
            value: 2,
          },
          {
            namespace: 'MailRelay',
            name: 'DeadLettered',
            dimensions: { service: 'mail-relay', FailureClass: 'permanent' },
            value: 1,
          },
        ]),
      );
      // Sent is opt-in: the two sent messages publish nothing, the dead-lettered one its event.
      expect(events.putEventsCalls).toBe(1);
      expect(events.events.map((event) => event.detailType)).toEqual(['Mail Dead-Lettered']);
    } finally {
      await events.close();
    }
  });

  it('writes its metrics as EMF and publishes each final outcome to EventBridge, Route and sent when asked', async () => {
    const events = await startEventBridgePeer();
    vi.stubEnv('AWS_ENDPOINT_URL_EVENTBRIDGE', events.endpoint);
    vi.stubEnv('POWERTOOLS_LOG_LEVEL', 'ERROR');
    const written: string[] = [];
    vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
      written.push(String(chunk));
      return true;
    });
    try {
      const settings = JSON.parse(environment()[SETTINGS_ENV_VAR] ?? '{}') as Record<string, unknown>;
      const handler = createSendHandler({
        ...environment(),
        [SETTINGS_ENV_VAR]: JSON.stringify({
          ...settings,
          events: { busName: 'relay-bus', kinds: ['sent', 'dead-lettered'] },
          routeMetrics: true,
        }),
      });
      const sent = sqsRecord(
        validMessage({ subject: 'Measured', idempotencyKey: 'emf-1', tags: { app: 'billing' } }),
        { messageId: 'emf-ok' },
      );
      const result = await handler(
        { Records: [sent, sqsRecord(validMessage({ to: [] }), { messageId: 'emf-bad' })] },
        context,
      );
      vi.restoreAllMocks();

      expect(result).toEqual({ batchItemFailures: [] });
      const points = emfPoints(written);
      const service = { service: 'mail-relay' };
      expect(points).toEqual(
        expect.arrayContaining([
          { namespace: 'MailRelay', name: 'Accepted', dimensions: service, value: 1 },
          { namespace: 'MailRelay', name: 'Sent', dimensions: { ...service, Provider: 'ses' }, value: 1 },
          {
            namespace: 'MailRelay',
            name: 'Sent',
            dimensions: { ...service, Provider: 'ses', Route: 'default' },
            value: 1,
          },
          {
            namespace: 'MailRelay',
            name: 'DeadLettered',
            dimensions: { ...service, FailureClass: 'permanent' },
            value: 1,
          },
          // For the relay as a whole: per provider only with the dashboard (latencyByProvider).
          expect.objectContaining({ name: 'SendLatency', dimensions: service }),
          expect.objectContaining({ name: 'EndToEndLatency', dimensions: service }),
        ]),
      );
      expect(points.filter((point) => point.name === 'Accepted')).toHaveLength(1);
      // The records of a batch are processed concurrently: any order; their events go out together.
      expect(events.events).toHaveLength(2);
      expect(events.putEventsCalls).toBe(1);
      expect(events.events).toEqual(
        expect.arrayContaining([
          expect.objectContaining({
            source: 'mail-relay',
            detailType: 'Mail Sent',
            busName: 'relay-bus',
            detail: expect.objectContaining({
              outcome: 'sent',
              messageId: 'emf-ok',
              idempotencyKey: 'emf-1',
              tags: { app: 'billing' },
              provider: 'ses',
              route: 'default',
            }),
          }),
          expect.objectContaining({
            detailType: 'Mail Dead-Lettered',
            detail: expect.objectContaining({
              outcome: 'dead-lettered',
              messageId: 'emf-bad',
              code: 'InvalidMessage',
              failureClass: 'permanent',
              reason: expect.stringContaining('no recipient'),
            }),
          }),
        ]),
      );
      // Outcome events never carry the subject or the body.
      expect(JSON.stringify(events.events)).not.toContain('Measured');
    } finally {
      await events.close();
    }
  });

  it('still finishes the message when EventBridge refuses the outcome event', async () => {
    const events = await startEventBridgePeer();
    vi.stubEnv('AWS_ENDPOINT_URL_EVENTBRIDGE', events.endpoint);
    vi.stubEnv('POWERTOOLS_LOG_LEVEL', 'ERROR');
    events.failNext(1);
    try {
      const settings = JSON.parse(environment()[SETTINGS_ENV_VAR] ?? '{}') as Record<string, unknown>;
      const handler = createSendHandler({
        ...environment(),
        [SETTINGS_ENV_VAR]: JSON.stringify({ ...settings, events: { busName: 'default', kinds: ['sent'] } }),
      });
      const result = await handler(
        { Records: [sqsRecord(validMessage(), { messageId: 'no-event' })] },
        context,
      );
      expect(result).toEqual({ batchItemFailures: [] });
      expect(events.events).toHaveLength(0);
    } finally {
      await events.close();
    }
  });

  it('answers within the invocation when EventBridge does not answer at all, the message finished', async () => {
    const events = await startEventBridgePeer();
    vi.stubEnv('AWS_ENDPOINT_URL_EVENTBRIDGE', events.endpoint);
    vi.stubEnv('POWERTOOLS_LOG_LEVEL', 'ERROR');
    events.hangNext(1);
    try {
      const settings = JSON.parse(environment()[SETTINGS_ENV_VAR] ?? '{}') as Record<string, unknown>;
      const handler = createSendHandler({
        ...environment(),
        [SETTINGS_ENV_VAR]: JSON.stringify({ ...settings, events: { busName: 'default', kinds: ['sent'] } }),
      });
      // Four seconds left: the outcome events may wait until half a second before the timeout.
      const shortInvocation = { ...context, getRemainingTimeInMillis: () => 4_000 };

      const result = await handler(
        { Records: [sqsRecord(validMessage(), { messageId: 'bus-hangs' })] },
        shortInvocation,
      );

      expect(result).toEqual({ batchItemFailures: [] });
      expect(events.putEventsCalls).toBe(1);
      expect(events.events).toHaveLength(0);
    } finally {
      await events.close();
    }
  });

  it('logs a record it could not finish for a reason the relay does not report itself, and retries it', async () => {
    const written: string[] = [];
    for (const stream of [process.stdout, process.stderr]) {
      vi.spyOn(stream, 'write').mockImplementation((chunk: string | Uint8Array) => {
        written.push(String(chunk));
        return true;
      });
    }
    vi.stubEnv('POWERTOOLS_LOG_LEVEL', 'ERROR');
    // The DLQ is gone: an invalid message cannot be put there, so it must stay on the outbox.
    const settings = JSON.parse(environment()[SETTINGS_ENV_VAR] ?? '{}') as Record<string, unknown>;
    const handler = createSendHandler({
      ...environment(),
      [SETTINGS_ENV_VAR]: JSON.stringify({ ...settings, deadLetterQueueUrl: `${dlqUrl}-deleted` }),
    });

    const response = await handler({ Records: [sqsRecord('{', { messageId: 'no-dlq-1' })] }, context);

    expect(response).toEqual({ batchItemFailures: [{ itemIdentifier: 'no-dlq-1' }] });
    const logged = written.flatMap((chunk) =>
      chunk.startsWith('{') ? [JSON.parse(chunk) as Record<string, unknown>] : [],
    );
    expect(logged).toContainEqual(
      expect.objectContaining({
        level: 'ERROR',
        message: 'The record could not be processed',
        messageId: 'no-dlq-1',
        error: expect.stringMatching(/queue/i),
      }),
    );
  });

  it('never logs the event, even when POWERTOOLS_LOGGER_LOG_EVENT asks for it', async () => {
    const written: string[] = [];
    vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
      written.push(String(chunk));
      return true;
    });
    // Powertools reads these from the process environment itself.
    vi.stubEnv('POWERTOOLS_LOGGER_LOG_EVENT', 'true');
    vi.stubEnv('POWERTOOLS_LOG_LEVEL', 'INFO');
    const handler = createSendHandler(environment());

    await handler({ Records: [sqsRecord(validMessage({ text: 'Private-body-7781' }))] }, context);

    const output = written.join('');
    expect(output).toContain('Message sent');
    expect(output).not.toContain('Private-body-7781');
  });

  it('sends through one SMTP provider per connection, in configuration order before SES, each its own Provider', async () => {
    vi.stubEnv('POWERTOOLS_LOG_LEVEL', 'ERROR');
    const first = await startSmtpPeer({ tls: 'none' });
    const second = await startSmtpPeer({ tls: 'none' });
    const stdout = captureStdout();
    try {
      const connection = (name: string, peer: SmtpPeer) => ({
        name,
        senders: ['example.com'],
        mode: 'smarthost',
        host: peer.host,
        port: peer.port,
        tls: 'none',
        requireTls: false,
        auth: 'none',
        maxConnections: 2,
      });
      const settings = JSON.parse(environment()[SETTINGS_ENV_VAR] ?? '{}') as Record<string, unknown>;
      const handler = createSendHandler({
        ...environment(),
        [SETTINGS_ENV_VAR]: JSON.stringify({
          ...settings,
          smtp: [connection('smtp:first', first), connection('smtp:second', second)],
        }),
      });
      const sesSendsBefore = peers.capture.sent.length;

      // No routes: the implicit chain is smtp:first, smtp:second, ses. The first refuses at provider level.
      first.reject({
        stage: 'mailFrom',
        reply: '550 5.7.708 Service unavailable. Access denied, traffic not accepted from this IP.',
      });
      const result = await handler(
        { Records: [sqsRecord(validMessage({ subject: 'Chained' }), { messageId: 'chain-1' })] },
        context,
      );
      stdout.stop();

      expect(result).toEqual({ batchItemFailures: [] });
      expect(first.received).toHaveLength(0);
      expect(second.received).toHaveLength(1);
      expect(peers.capture.sent.length).toBe(sesSendsBefore);
      const service = { service: 'mail-relay' };
      expect(emfPoints(stdout.written)).toEqual(
        expect.arrayContaining([
          {
            namespace: 'MailRelay',
            name: 'Sent',
            dimensions: { ...service, Provider: 'smtp:second' },
            value: 1,
          },
          {
            namespace: 'MailRelay',
            name: 'FallbackUsed',
            dimensions: { ...service, Provider: 'smtp:second' },
            value: 1,
          },
        ]),
      );
    } finally {
      stdout.stop();
      await Promise.all([first.close(), second.close()]);
    }
  });

  it('keeps its ledger and reads its suppression list in the configured DynamoDB tables', async () => {
    vi.stubEnv('POWERTOOLS_LOG_LEVEL', 'ERROR');
    vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
    const ledger = new DynamoDeliveryLedger(dynamo.client, dynamo.ledgerTableName);
    const suppressions = new DynamoSuppressionList(dynamo.client, dynamo.suppressionTableName);
    await suppressions.suppress({ address: 'Gone@Example.org', reason: 'hard bounce', since: 'then' });
    const handler = createSendHandler(environment());
    const before = peers.capture.sent.length;

    const once = validMessage({
      idempotencyKey: 'ledger-wired-1',
      to: ['customer@example.org', 'gone@example.org'],
    });
    // The same message delivered twice (a producer retry): one send, the second is a duplicate.
    await handler({ Records: [sqsRecord(once, { messageId: 'first' })] }, context);
    await handler({ Records: [sqsRecord(once, { messageId: 'second' })] }, context);
    const onlySuppressed = validMessage({ to: ['GONE@example.org'] });
    const result = await handler({ Records: [sqsRecord(onlySuppressed, { messageId: 'gone-1' })] }, context);

    expect(result).toEqual({ batchItemFailures: [] });
    const sends = peers.capture.sent.slice(before);
    expect(sends.map((send) => send.destination.to)).toEqual([['customer@example.org']]);
    expect(await ledger.get('ledger-wired-1')).toMatchObject({
      state: 'sent',
      provider: 'ses',
      messageId: 'first',
      suppressedRecipients: ['gone@example.org'],
    });
    expect(await ledger.get('sqs:gone-1')).toMatchObject({
      state: 'suppressed',
      suppressedRecipients: ['gone@example.org'],
    });
  });

  describe('with Microsoft Graph configured', () => {
    const tenantId = 'contoso.onmicrosoft.com';
    const clientId = '3c2b1a00-0000-4000-8000-0000000000c1';
    const clientSecret = `handler-test-${Math.random().toString(36).slice(2)}`;
    let graphPeer: GraphPeer;
    let secrets: SecretsManagerEmulator;

    beforeAll(async () => {
      graphPeer = await startGraphPeer({ tenantId, clients: [{ clientId, clientSecret }] });
      secrets = await startSecretsManagerEmulator(0);
    });
    afterAll(async () => {
      await Promise.all([graphPeer.close(), secrets.stop()]);
    });

    it('reads its credential from Secrets Manager and sends Graph senders through Graph, others through SES', async () => {
      vi.stubEnv('POWERTOOLS_LOG_LEVEL', 'ERROR');
      const secretArn = secrets.putSecret('relay/graph', JSON.stringify({ clientSecret }));
      const settings = JSON.parse(environment()[SETTINGS_ENV_VAR] ?? '{}') as Record<string, unknown>;
      // The SDK takes the endpoint from the process environment, as in Lambda.
      vi.stubEnv('AWS_ENDPOINT_URL_SECRETS_MANAGER', secrets.endpoint);
      const handler = createSendHandler(
        {
          ...environment(),
          [SETTINGS_ENV_VAR]: JSON.stringify({
            ...settings,
            graph: {
              tenantId,
              clientId,
              senders: ['contoso.com'],
              credentialSecretId: secretArn,
              saveToSentItems: true,
              authorityHost: graphPeer.authorityHost,
              graphEndpoint: graphPeer.graphEndpoint,
            },
          }),
        },
        { graphTransport: createHttpTransport({ ca: graphPeer.caCertificate }) },
      );
      const sesBefore = peers.capture.sent.length;

      const response = await handler(
        {
          Records: [
            sqsRecord(validMessage({ from: 'billing@contoso.com', subject: 'Via Graph' })),
            sqsRecord(validMessage({ from: 'billing@contoso.com', subject: 'Via Graph too' })),
            sqsRecord(validMessage({ subject: 'Via SES' })),
          ],
        },
        context,
      );

      expect(response).toEqual({ batchItemFailures: [] });
      expect(graphPeer.delivered.map((message) => message.message.subject).sort()).toEqual([
        'Via Graph',
        'Via Graph too',
      ]);
      expect(peers.capture.sent.length - sesBefore).toBe(1);
      expect(secrets.reads.get('relay/graph')).toBe(1);
      expect(graphPeer.tokenRequests).toHaveLength(1);
    });
  });
});
