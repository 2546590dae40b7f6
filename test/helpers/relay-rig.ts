import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { DeleteMessageCommand, PurgeQueueCommand, ReceiveMessageCommand } from '@aws-sdk/client-sqs';
import type { Context, SQSRecord } from 'aws-lambda';
import { DEAD_LETTER_ATTRIBUTES } from '../../lambda/core/dead-letter.ts';
import { DynamoDeliveryLedger } from '../../lambda/core/dynamo-ledger.ts';
import { createHttpTransport } from '../../lambda/providers/http-transport.ts';
import { createSendHandler, type SendHandlerOptions } from '../../lambda/send/create-handler.ts';
import { createClientCertificate } from '../../local/peers/certificates.ts';
import { startGraphPeer } from '../../local/peers/graph-peer.ts';
import { type SmtpFaultPlan, startSmtpPeer } from '../../local/peers/smtp-peer.ts';
import { startSecretsManagerEmulator } from '../../local/secrets-manager-emulator.ts';
import {
  type RouteDomains,
  sendFunctionEnvironment,
  threeRouteSettings,
} from '../../scripts/soak/send-function-wiring.ts';
import { startDynamo } from './dynamo.ts';
import { createQueue, drain, eventually, sqsRecord, startPeers } from './peers.ts';

const TENANT_ID = '00000000-0000-4000-8000-0000000e2e01';
const CLIENT_ID = '00000000-0000-4000-8000-0000000e2e02';
/** Short, so a message whose function died comes back quickly; long enough for a cold first send. */
const LEASE_SECONDS = 3;
const VISIBILITY_TIMEOUT_SECONDS = 4;
/** Busy CI machines: conditions are awaited, never timed; this only bounds a broken run. */
export const SLOW = 120_000;

/** The From domains the rig's routes use. */
export const RIG_DOMAINS: RouteDomains = {
  graph: 'contoso.com',
  smtp: 'example.com',
  ses: 'ses.example.com',
};

/**
 * The real send handler's world on loopback, for the never-twice end-to-end tests: the SQS, SES,
 * DynamoDB and Secrets Manager emulators, the Entra ID + Graph peer and the SMTP peer, an outbox with
 * its DLQ, and ways to run the handler in this process or as a send function in its own process.
 */
export async function startRelayRig() {
  const peers = await startPeers();
  const dynamo = await startDynamo();
  let smtpPlan: SmtpFaultPlan | undefined;
  const smtp = await startSmtpPeer({
    tls: 'none',
    faultPlan: (stage, context) => smtpPlan?.(stage, context),
  });
  const certificate = await createClientCertificate();
  const graph = await startGraphPeer({
    tenantId: TENANT_ID,
    clients: [{ clientId: CLIENT_ID, certificatePem: certificate.certificatePem }],
  });
  const secrets = await startSecretsManagerEmulator(0);
  const dlq = await createQueue(peers.sqs);
  const outbox = await createQueue(peers.sqs, {
    VisibilityTimeout: String(VISIBILITY_TIMEOUT_SECONDS),
    RedrivePolicy: JSON.stringify({ deadLetterTargetArn: dlq.arn, maxReceiveCount: 10 }),
  });
  const settings = threeRouteSettings(
    {
      queueUrl: outbox.url,
      deadLetterQueueUrl: dlq.url,
      ledgerTableName: dynamo.ledgerTableName,
      suppressionTableName: dynamo.suppressionTableName,
      leaseSeconds: LEASE_SECONDS,
      graph,
      graphTenantId: TENANT_ID,
      graphClientId: CLIENT_ID,
      graphCredentialSecretId: secrets.putSecret(
        'e2e/graph',
        JSON.stringify({ certificate: certificate.certificatePem, privateKey: certificate.privateKeyPem }),
      ),
      sentItemsLookupSeconds: 60,
      smtp,
    },
    RIG_DOMAINS,
  );
  const env = sendFunctionEnvironment(
    settings,
    {
      sqs: peers.sqsEndpoint,
      ses: peers.sesEndpoint,
      dynamodb: dynamo.endpoint,
      secretsManager: secrets.endpoint,
    },
    { MAIL_RELAY_QUEUE_ARN: outbox.arn },
  );
  const workers: ChildProcess[] = [];
  const saved = { ...process.env };
  // The in-process handler builds its SDK clients from the standard AWS environment, as in Lambda.
  Object.assign(process.env, env);

  const withSubject = (subject: string) => (raw: Buffer) => raw.toString().includes(`Subject: ${subject}`);
  return {
    peers,
    smtp,
    graph,
    settings,
    setSmtpPlan(plan: SmtpFaultPlan | undefined) {
      smtpPlan = plan;
    },
    ledger: () => new DynamoDeliveryLedger(dynamo.client, dynamo.ledgerTableName),

    /** The handler as Lambda runs it, in this process, with `remainingMs` left in the invocation. */
    invoke(record: SQSRecord, remainingMs = 30_000, options: SendHandlerOptions = {}) {
      const handler = createSendHandler(env, {
        graphTransport: createHttpTransport({ ca: graph.caCertificate, timeoutMs: 500 }),
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
    },

    /** A send function in its own process (test/helpers/relay-worker.ts), polling the outbox. */
    async startWorker(): Promise<ChildProcess> {
      const worker = spawn(process.execPath, ['--import', 'tsx', 'test/helpers/relay-worker.ts'], {
        env,
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      workers.push(worker);
      let output = '';
      await new Promise<void>((resolve, reject) => {
        worker.stdout?.on('data', (chunk: Buffer) => {
          output += chunk.toString();
          if (process.env.RIG_DEBUG) process.stderr.write(chunk);
          if (output.includes('ready')) resolve();
        });
        worker.once('exit', (code) => reject(new Error(`relay worker exited early (${code})`)));
      });
      return worker;
    },

    /** Takes the next outbox message as the event source would hand it to a function. */
    async receiveOne(): Promise<SQSRecord> {
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
    },

    /** Deletes a record from the outbox, as the event source does once a function is done with it. */
    async deleteRecord(record: SQSRecord): Promise<void> {
      await peers.sqs.send(
        new DeleteMessageCommand({ QueueUrl: settings.queueUrl, ReceiptHandle: record.receiptHandle }),
      );
    },

    smtpCopies: (subject: string) => smtp.received.filter((message) => withSubject(subject)(message.raw)),
    sesCopies: (subject: string) => peers.capture.sent.filter((send) => withSubject(subject)(send.raw)),
    graphCopies: (subject: string) =>
      graph.delivered.filter((message) => message.message.subject === subject),

    /** What the DLQ holds, taken out of it, so each test sees only its own dead letters. */
    async deadLetters() {
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
    },

    codeOf: (message: { MessageAttributes?: Record<string, { StringValue?: string }> } | undefined) =>
      message?.MessageAttributes?.[DEAD_LETTER_ATTRIBUTES.code]?.StringValue,

    /** Between tests: no fault plan, no worker left, an empty DLQ. */
    async reset(): Promise<void> {
      smtpPlan = undefined;
      graph.clearFaults();
      for (const worker of workers.splice(0)) {
        if (worker.exitCode === null && worker.signalCode === null) {
          worker.kill('SIGKILL');
          await once(worker, 'exit');
        }
      }
      // A message a killed worker left behind must not reach the next test.
      for (const queueUrl of [settings.queueUrl, settings.deadLetterQueueUrl]) {
        await peers.sqs.send(new PurgeQueueCommand({ QueueUrl: queueUrl }));
      }
    },

    /** Forgets a worker the test killed itself. */
    forget(worker: ChildProcess): void {
      const index = workers.indexOf(worker);
      if (index >= 0) workers.splice(index, 1);
    },

    async stop(): Promise<void> {
      await this.reset();
      process.env = saved;
      await smtp.close();
      await graph.close();
      await secrets.stop();
      await dynamo.stop();
      await peers.stop();
    },
  };
}

export type RelayRig = Awaited<ReturnType<typeof startRelayRig>>;
