import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { DeleteMessageCommand, PurgeQueueCommand, ReceiveMessageCommand } from '@aws-sdk/client-sqs';
import type { Context, SQSRecord } from 'aws-lambda';
import { DEAD_LETTER_ATTRIBUTES } from '../../lambda/core/dead-letter.ts';
import { DynamoDeliveryLedger } from '../../lambda/core/dynamo-ledger.ts';
import { type RelaySettings, SETTINGS_ENV_VAR } from '../../lambda/core/settings.ts';
import { createHttpTransport } from '../../lambda/providers/http-transport.ts';
import { createSendHandler, type SendHandlerOptions } from '../../lambda/send/create-handler.ts';
import { createClientCertificate } from '../../local/peers/certificates.ts';
import { type GraphPeer, startGraphPeer } from '../../local/peers/graph-peer.ts';
import { type SmtpFaultPlan, type SmtpPeer, startSmtpPeer } from '../../local/peers/smtp-peer.ts';
import { startSecretsManagerEmulator } from '../../local/secrets-manager-emulator.ts';
import { startDynamo } from './dynamo.ts';
import { createQueue, drain, eventually, sqsRecord, startPeers } from './peers.ts';

/** The From domains of the three routes: graph (falling back to SES), smtp and ses. */
export interface RouteDomains {
  readonly graph: string;
  readonly smtp: string;
  readonly ses: string;
}

/** Where the send function finds everything: queues, tables and the two peers it talks to besides SES. */
export interface RelayWiring {
  readonly queueUrl: string;
  readonly deadLetterQueueUrl: string;
  readonly ledgerTableName: string;
  readonly suppressionTableName: string;
  readonly leaseSeconds: number;
  readonly graph: GraphPeer;
  readonly graphTenantId: string;
  readonly graphClientId: string;
  readonly graphCredentialSecretId: string;
  readonly sentItemsLookupSeconds: number;
  readonly smtp: SmtpPeer;
}

/**
 * Settings with every provider and three routes: Graph senders fall back to SES, SMTP and SES senders
 * have one provider each. Short retries, as tests and the soak want them.
 */
export function threeRouteSettings(wiring: RelayWiring, domains: RouteDomains): RelaySettings {
  const { graph, smtp } = wiring;
  return {
    queueUrl: wiring.queueUrl,
    deadLetterQueueUrl: wiring.deadLetterQueueUrl,
    maxReceiveCount: 10,
    limits: { maxRecipients: 50, maxMessageBytes: 1024 * 1024 },
    // SES also covers the Graph senders: it is their fallback.
    ses: { identities: [domains.ses, domains.graph] },
    graph: {
      tenantId: wiring.graphTenantId,
      clientId: wiring.graphClientId,
      senders: [domains.graph],
      credentialSecretId: wiring.graphCredentialSecretId,
      saveToSentItems: true,
      sentItemsLookupSeconds: wiring.sentItemsLookupSeconds,
      authorityHost: graph.authorityHost,
      graphEndpoint: graph.graphEndpoint,
    },
    smtp: {
      senders: [domains.smtp],
      mode: 'smarthost',
      host: smtp.host,
      port: smtp.port,
      tls: 'none',
      requireTls: false,
      auth: 'none',
    },
    routes: [
      { name: 'graph', from: [`*@${domains.graph}`], providers: ['graph', 'ses'] },
      { name: 'smtp', from: [`*@${domains.smtp}`], providers: ['smtp'] },
      { name: 'ses', from: [`*@${domains.ses}`], providers: ['ses'] },
    ],
    retry: { maxAttempts: 3, baseDelaySeconds: 1, maxDelaySeconds: 2 },
    circuitBreaker: { failureThreshold: 1000, cooldownSeconds: 1 },
    ledger: { tableName: wiring.ledgerTableName, leaseSeconds: wiring.leaseSeconds, retentionDays: 1 },
    suppression: { tableName: wiring.suppressionTableName },
  };
}

/** The environment of a send function in its own process: its settings and the emulators' endpoints. */
export function sendFunctionEnvironment(
  settings: RelaySettings,
  endpoints: { sqs: string; ses: string; dynamodb: string; secretsManager: string },
  extra: Record<string, string> = {},
): Record<string, string> {
  return {
    PATH: process.env.PATH ?? '',
    [SETTINGS_ENV_VAR]: JSON.stringify(settings),
    AWS_REGION: 'us-east-1',
    AWS_ACCESS_KEY_ID: 'test',
    AWS_SECRET_ACCESS_KEY: 'test',
    AWS_ENDPOINT_URL_SQS: endpoints.sqs,
    AWS_ENDPOINT_URL_SESV2: endpoints.ses,
    AWS_ENDPOINT_URL_DYNAMODB: endpoints.dynamodb,
    AWS_ENDPOINT_URL_SECRETS_MANAGER: endpoints.secretsManager,
    AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
    // RIG_DEBUG=1 when debugging a test: the send functions log everything, and their logs are shown.
    POWERTOOLS_LOG_LEVEL: process.env.RIG_DEBUG ? 'DEBUG' : 'ERROR',
    POWERTOOLS_METRICS_DISABLED: 'true',
    ...extra,
  };
}

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
