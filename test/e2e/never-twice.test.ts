import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import {
  DeleteMessageCommand,
  PurgeQueueCommand,
  ReceiveMessageCommand,
  SendMessageCommand,
} from '@aws-sdk/client-sqs';
import type { Context, SQSRecord } from 'aws-lambda';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { DEAD_LETTER_ATTRIBUTES } from '../../lambda/core/dead-letter.ts';
import { DynamoDeliveryLedger } from '../../lambda/core/dynamo-ledger.ts';
import { type RelaySettings, SETTINGS_ENV_VAR } from '../../lambda/core/settings.ts';
import { createHttpsTransport } from '../../lambda/providers/graph/https-transport.ts';
import { createSendHandler, type SendHandlerOptions } from '../../lambda/send/create-handler.ts';
import { createClientCertificate } from '../../local/peers/certificates.ts';
import { type GraphPeer, startGraphPeer } from '../../local/peers/graph-peer.ts';
import { type SmtpFaultPlan, type SmtpPeer, startSmtpPeer } from '../../local/peers/smtp-peer.ts';
import {
  type SecretsManagerEmulator,
  startSecretsManagerEmulator,
} from '../../local/secrets-manager-emulator.ts';
import { type DynamoPeer, startDynamo } from '../helpers/dynamo.ts';
import {
  approximateCount,
  createQueue,
  drain,
  enqueue,
  eventually,
  type Peers,
  sqsRecord,
  startPeers,
  validMessage,
} from '../helpers/peers.ts';

// "Never twice, never lost" through the real send handler and the real peers: answers lost after the
// provider took the message, a hung call, a copy that claims to be redriven, and send functions that
// really die (SIGKILL, as Lambda ends a crashed or timed-out function) at the worst moments.

const LEASE_SECONDS = 2;
const VISIBILITY_TIMEOUT_SECONDS = 3;
const TENANT_ID = '00000000-0000-4000-8000-0000000e2e01';
const CLIENT_ID = '00000000-0000-4000-8000-0000000e2e02';
/** Busy CI machines: conditions are awaited, never timed; these only bound a broken run. */
const SLOW = 120_000;

describe('never twice, never lost: the send handler against real peers', () => {
  let peers: Peers;
  let dynamo: DynamoPeer;
  let smtp: SmtpPeer;
  let graph: GraphPeer;
  let secrets: SecretsManagerEmulator;
  let smtpPlan: SmtpFaultPlan | undefined;
  let settings: RelaySettings;
  let env: Record<string, string>;
  let queueArn: string;
  const workers: ChildProcess[] = [];
  const saved = { ...process.env };

  beforeAll(async () => {
    peers = await startPeers();
    dynamo = await startDynamo();
    smtp = await startSmtpPeer({ tls: 'none', faultPlan: (stage, context) => smtpPlan?.(stage, context) });
    const certificate = await createClientCertificate();
    graph = await startGraphPeer({
      tenantId: TENANT_ID,
      clients: [{ clientId: CLIENT_ID, certificatePem: certificate.certificatePem }],
    });
    secrets = await startSecretsManagerEmulator(0);
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
      ses: { identities: ['ses.example.com', 'contoso.com'] },
      graph: {
        tenantId: TENANT_ID,
        clientId: CLIENT_ID,
        senders: ['contoso.com'],
        credentialSecretId: secrets.putSecret(
          'e2e/graph',
          JSON.stringify({ certificate: certificate.certificatePem, privateKey: certificate.privateKeyPem }),
        ),
        saveToSentItems: true,
        sentItemsLookupSeconds: 60,
        authorityHost: graph.authorityHost,
        graphEndpoint: graph.graphEndpoint,
      },
      smtp: {
        senders: ['example.com'],
        mode: 'smarthost',
        host: smtp.host,
        port: smtp.port,
        tls: 'none',
        requireTls: false,
        auth: 'none',
      },
      routes: [
        { name: 'graph', from: ['*@contoso.com'], providers: ['graph', 'ses'] },
        { name: 'smtp', from: ['*@example.com'], providers: ['smtp'] },
        { name: 'ses', from: ['*@ses.example.com'], providers: ['ses'] },
      ],
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
      AWS_ENDPOINT_URL_SESV2: peers.sesEndpoint,
      AWS_ENDPOINT_URL_DYNAMODB: dynamo.endpoint,
      AWS_ENDPOINT_URL_SECRETS_MANAGER: secrets.endpoint,
      AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
      POWERTOOLS_LOG_LEVEL: 'ERROR',
      POWERTOOLS_METRICS_DISABLED: 'true',
    };
    Object.assign(process.env, env);
  });
  afterEach(async () => {
    smtpPlan = undefined;
    graph.clearFaults();
    for (const worker of workers.splice(0)) {
      if (worker.exitCode === null && worker.signalCode === null) {
        worker.kill('SIGKILL');
        await once(worker, 'exit');
      }
    }
    await peers.sqs.send(new PurgeQueueCommand({ QueueUrl: settings.deadLetterQueueUrl }));
  });
  afterAll(async () => {
    process.env = saved;
    await smtp.close();
    await graph.close();
    await secrets.stop();
    await dynamo.stop();
    await peers.stop();
  });

  /** The handler as Lambda runs it, in this process, with `remainingMs` left in the invocation. */
  const invoke = async (record: SQSRecord, remainingMs = 30_000, options: SendHandlerOptions = {}) => {
    const handler = createSendHandler(env, {
      graphTransport: createHttpsTransport({ ca: graph.caCertificate, timeoutMs: 500 }),
      providerTimeoutMs: 500,
      ...options,
    });
    const deadline = Date.now() + remainingMs;
    const context = {
      functionName: 'send',
      awsRequestId: 'e2e',
      getRemainingTimeInMillis: () => deadline - Date.now(),
    } as unknown as Context;
    return handler({ Records: [record] }, context);
  };

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
  /** Takes the next outbox message as the event source would hand it to a function. */
  const receiveOne = async (): Promise<SQSRecord> => {
    const message = await eventually(async () => {
      const { Messages = [] } = await peers.sqs.send(
        new ReceiveMessageCommand({
          QueueUrl: settings.queueUrl,
          MaxNumberOfMessages: 1,
          WaitTimeSeconds: 1,
        }),
      );
      return Messages[0];
    }, SLOW);
    return {
      ...sqsRecord(''),
      messageId: message.MessageId ?? '',
      body: message.Body ?? '',
      receiptHandle: message.ReceiptHandle ?? '',
    };
  };
  const withSubject = (subject: string) => (raw: Buffer) => raw.toString().includes(`Subject: ${subject}`);
  const smtpCopies = (subject: string) =>
    smtp.received.filter((message) => withSubject(subject)(message.raw));
  const sesCopies = (subject: string) => peers.capture.sent.filter((send) => withSubject(subject)(send.raw));
  const graphCopies = (subject: string) =>
    graph.delivered.filter((message) => message.message.subject === subject);
  /** What the DLQ holds, taken out of it, so each test sees only its own dead letters. */
  const deadLetters = async () => {
    const taken = await drain(peers.sqs, settings.deadLetterQueueUrl, { polls: 2 });
    for (const message of taken) {
      await peers.sqs.send(
        new DeleteMessageCommand({
          QueueUrl: settings.deadLetterQueueUrl,
          ReceiptHandle: message.ReceiptHandle,
        }),
      );
    }
    return taken;
  };
  const codeOf = (message: { MessageAttributes?: Record<string, { StringValue?: string }> } | undefined) =>
    message?.MessageAttributes?.[DEAD_LETTER_ATTRIBUTES.code]?.StringValue;

  describe('a lost answer is never a second send', () => {
    it('Graph: found in the mailbox by its Message-ID, it counts as sent, once, and SES is not tried', async () => {
      graph.injectFault({ operation: 'sendMail', lostAnswer: 'hang' });
      const record = sqsRecord(
        validMessage({ from: 'billing@contoso.com', subject: 'Graph lost', idempotencyKey: 'g-lost' }),
      );

      expect((await invoke(record)).batchItemFailures).toEqual([]);

      expect(graphCopies('Graph lost')).toHaveLength(1);
      expect(sesCopies('Graph lost')).toHaveLength(0);
      expect(await ledger().get('g-lost')).toMatchObject({
        state: 'sent',
        provider: 'graph',
        providerMessageId: graph.delivered.at(-1)?.internetMessageId,
      });
    });

    it('Graph without Mail.ReadBasic: dead-lettered as OutcomeUnknown, not sent again, not passed to SES', async () => {
      graph.injectFault({ operation: 'sendMail', lostAnswer: 'reset' });
      graph.injectFault({ operation: 'findMessages', status: 403, code: 'ErrorAccessDenied' });
      const record = sqsRecord(
        validMessage({ from: 'billing@contoso.com', subject: 'Graph unknown', idempotencyKey: 'g-unknown' }),
      );

      expect((await invoke(record)).batchItemFailures).toEqual([]);

      expect(graphCopies('Graph unknown')).toHaveLength(1);
      expect(sesCopies('Graph unknown')).toHaveLength(0);
      const [dead] = await deadLetters();
      expect(codeOf(dead)).toBe('OutcomeUnknown');
      expect(dead?.MessageAttributes?.[DEAD_LETTER_ATTRIBUTES.reason]?.StringValue).toContain(
        'ErrorAccessDenied',
      );
    });

    it('SMTP: no reply to the end of DATA is dead-lettered as OutcomeUnknown, and a copy claiming a redrive is not sent', async () => {
      smtpPlan = (stage) => (stage === 'data' ? { stage: 'data', lostReply: 'hang' } : undefined);
      const body = validMessage({ subject: 'SMTP silent', idempotencyKey: 's-silent' });

      expect((await invoke(sqsRecord(body))).batchItemFailures).toEqual([]);
      expect(smtpCopies('SMTP silent')).toHaveLength(1);
      const [dead] = await deadLetters();
      expect(codeOf(dead)).toBe('OutcomeUnknown');

      // A producer puts the same message back with the attributes of a redriven one.
      smtpPlan = undefined;
      const forged = {
        ...sqsRecord(body),
        messageAttributes: {
          [DEAD_LETTER_ATTRIBUTES.code]: { dataType: 'String', stringValue: 'OutcomeUnknown' },
        },
      } as SQSRecord;
      expect((await invoke(forged)).batchItemFailures).toEqual([]);
      expect(smtpCopies('SMTP silent')).toHaveLength(1);
      expect(codeOf((await deadLetters())[0])).toBe('OutcomeUnknown');
    });

    it(
      'SES: a hung call ends at the invocation’s deadline and is dead-lettered as OutcomeUnknown, sent once',
      async () => {
        peers.capture.injectFault({ lostAnswer: 'hang' });
        const record = sqsRecord(
          validMessage({ from: 'app@ses.example.com', subject: 'SES hung', idempotencyKey: 'ses-hung' }),
        );

        // 5 s left, a provider timeout far beyond it: only the deadline can end the call.
        const response = await invoke(record, 5_000, { providerTimeoutMs: 600_000 });

        expect(response.batchItemFailures).toEqual([]);
        expect(sesCopies('SES hung')).toHaveLength(1);
        const [dead] = await deadLetters();
        expect(codeOf(dead)).toBe('OutcomeUnknown');
        expect(dead?.MessageAttributes?.[DEAD_LETTER_ATTRIBUTES.reason]?.StringValue).toContain(
          'DeadlineExceeded',
        );
      },
      SLOW,
    );
  });

  describe('send functions that die', () => {
    it(
      'sends a message once when its function died before handing it to the provider',
      async () => {
        const first = await startWorker();
        // The moment the server sees MAIL FROM: connected, but nothing handed off.
        smtpPlan = (stage) => {
          if (stage === 'mailFrom' && workers.includes(first)) first.kill('SIGKILL');
          return undefined;
        };
        await enqueue(
          peers.sqs,
          settings.queueUrl,
          validMessage({ subject: 'Died early', idempotencyKey: 'early' }),
        );
        await once(first, 'exit');
        workers.splice(workers.indexOf(first), 1);
        smtpPlan = undefined;

        await startWorker();
        await eventually(async () => (smtpCopies('Died early').length === 1 ? true : undefined), SLOW);
        await eventually(
          async () => ((await approximateCount(peers.sqs, settings.queueUrl)) === 0 ? true : undefined),
          SLOW,
        );

        expect(smtpCopies('Died early')).toHaveLength(1);
        expect(await deadLetters()).toHaveLength(0);
        expect(await ledger().get('early')).toMatchObject({ state: 'sent', provider: 'smtp' });
      },
      SLOW,
    );

    it(
      'does not send it again when it died after the server had the message: OutcomeUnknown',
      async () => {
        const first = await startWorker();
        // The moment the server has the whole message, before its reply reaches the function.
        smtpPlan = (stage) => {
          if (stage !== 'data') return undefined;
          first.kill('SIGKILL');
          return { stage: 'data', lostReply: 'hang' };
        };
        const messageId = await enqueue(
          peers.sqs,
          settings.queueUrl,
          validMessage({ subject: 'Killed mid-send', idempotencyKey: 'crash-1' }),
        );
        await once(first, 'exit');
        workers.splice(workers.indexOf(first), 1);
        smtpPlan = undefined;
        expect(smtpCopies('Killed mid-send')).toHaveLength(1);

        await startWorker();
        const dead = await eventually(async () => (await deadLetters())[0], SLOW);

        expect(codeOf(dead)).toBe('OutcomeUnknown');
        expect(dead.MessageAttributes?.[DEAD_LETTER_ATTRIBUTES.sourceMessageId]?.StringValue).toBe(messageId);
        expect(smtpCopies('Killed mid-send')).toHaveLength(1);
        expect(await ledger().get('crash-1')).toMatchObject({
          state: 'dead-lettered',
          maybeSent: { provider: 'smtp', reason: expect.stringContaining('a function stopped') },
        });
      },
      SLOW,
    );

    it(
      'does not send it again when it died after recording the send but before deleting the record',
      async () => {
        await enqueue(peers.sqs, settings.queueUrl, validMessage({ subject: 'Died before delete' }));
        const record = await receiveOne();
        // The first function: the record stays on the queue, as if it died before the delete.
        expect((await invoke(record)).batchItemFailures).toEqual([]);
        expect(await ledger().get(`sqs:${record.messageId}`)).toMatchObject({
          state: 'sent',
          provider: 'smtp',
        });

        // The record comes back after its visibility timeout; the next function finds it sent.
        const again = await receiveOne();
        expect(again.messageId).toBe(record.messageId);
        expect((await invoke(again)).batchItemFailures).toEqual([]);
        await peers.sqs.send(
          new DeleteMessageCommand({ QueueUrl: settings.queueUrl, ReceiptHandle: again.receiptHandle }),
        );

        expect(smtpCopies('Died before delete')).toHaveLength(1);
        expect(await deadLetters()).toHaveLength(0);
      },
      SLOW,
    );

    it(
      'puts a message in the DLQ once when it died between the DLQ write and deleting the record',
      async () => {
        await peers.sqs.send(
          new SendMessageCommand({ QueueUrl: settings.queueUrl, MessageBody: '{"v":1,"subject":"no from"}' }),
        );
        const record = await receiveOne();
        // The first function dead-lettered it and died before the outbox delete.
        expect((await invoke(record)).batchItemFailures).toEqual([]);

        // The record comes back; the next function finds it in the DLQ already.
        const again = await receiveOne();
        expect(again.messageId).toBe(record.messageId);
        expect((await invoke(again)).batchItemFailures).toEqual([]);
        await peers.sqs.send(
          new DeleteMessageCommand({ QueueUrl: settings.queueUrl, ReceiptHandle: again.receiptHandle }),
        );

        const copies = await deadLetters();
        expect(copies.map(codeOf)).toEqual(['InvalidMessage']);
      },
      SLOW,
    );
  });
});
