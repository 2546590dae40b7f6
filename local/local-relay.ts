import { randomBytes, randomUUID } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { GetSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { CreateQueueCommand, GetQueueAttributesCommand, SQSClient } from '@aws-sdk/client-sqs';
import { Ingest } from '../lambda/core/ingest.ts';
import { FEEDBACK_OUTCOME_KINDS } from '../lambda/core/outcomes.ts';
import { SETTINGS_ENV_VAR } from '../lambda/core/settings.ts';
import { createFeedbackHandler } from '../lambda/feedback/create-handler.ts';
import { S3SubmissionStore, SqsOutbox } from '../lambda/ingest/adapters.ts';
import { type GraphConfig, graphSettingsFor } from '../lambda/providers/graph/config.ts';
import type { GraphSettings } from '../lambda/providers/graph/settings.ts';
import { createHttpTransport, type HttpTransport } from '../lambda/providers/http-transport.ts';
import { smtpConnectionsOf, smtpSettingsListFor } from '../lambda/providers/smtp/config.ts';
import type { SmtpSettings } from '../lambda/providers/smtp/settings.ts';
import { createSendHandler } from '../lambda/send/create-handler.ts';
import type { RelaySettings } from '../lambda/send/settings.ts';
import {
  DEFAULT_CONFIG_PATH,
  ingestSettingsFor,
  loadRelayConfig,
  outcomeEventSettingsFor,
  type RelayConfig,
  relaySettingsFor,
} from '../lib/config.ts';
import { localZoneFor } from './dns-zone.ts';
import { startDynamoDbEmulator, startSesEmulator, startSqsEmulator } from './emulators.ts';
import {
  ATTACHMENT_BUCKET_NAME,
  DEAD_LETTER_QUEUE_NAME,
  DEFAULT_DYNAMODB_PORT,
  DEFAULT_GRAPH_PEER_PORT,
  DEFAULT_LOCAL_VISIBILITY_TIMEOUT_SECONDS,
  DEFAULT_SES_PORT,
  DEFAULT_SMTP_INGRESS_PORT,
  DEFAULT_SMTP_PORT,
  DEFAULT_SQS_PORT,
  INGEST_DEAD_LETTER_QUEUE_NAME,
  INGRESS_BUCKET_NAME,
  LEDGER_TABLE_NAME,
  LOCAL_REGION,
  OUTBOX_QUEUE_NAME,
  PACING_TABLE_NAME,
  SUPPRESSION_TABLE_NAME,
} from './local-names.ts';
import { createOutcomeLog, type OutcomeLog, type OutcomePrinter } from './outcome-log.ts';
import { createClientCertificate } from './peers/certificates.ts';
import { type DnsPeer, startDnsPeer } from './peers/dns-peer.ts';
import { type EventBridgePeer, startEventBridgePeer } from './peers/eventbridge-peer.ts';
import { type GraphPeer, startGraphPeer } from './peers/graph-peer.ts';
import { type SmtpAuthMethod, type SmtpPeer, startSmtpPeer } from './peers/smtp-peer.ts';
import { QueueSnapshots, restoreQueues } from './queue-snapshot.ts';
import { createRelayTables } from './relay-tables.ts';
import { startSecretsManagerEmulator } from './secrets-manager-emulator.ts';
import { SesCapture } from './ses-capture.ts';
import { simulatedSesEvents } from './ses-simulator.ts';
import { startSmtpIngress } from './smtp-ingress.ts';
import { LocalSqsEventSource, localLambdaContext } from './sqs-event-source.ts';
import { claimStateDirectory, DEFAULT_STATE_DIR } from './state-dir.ts';

/** Where local mode's stand-ins see the relay come from: its "egress IP". */
const LOOPBACK_IP = '127.0.0.1';
const SMTP_CREDENTIAL_SECRET_NAME = 'mail-relay/smtp-credential';
/** The user local mode's SMTP capture accepts for plain/login routes. */
const LOCAL_SMTP_USER = { username: 'local', password: 'local' };
const LOCAL_SMTP_AUTH: Record<SmtpSettings['auth'], SmtpAuthMethod[]> = {
  none: [],
  plain: ['PLAIN', 'LOGIN'],
  login: ['PLAIN', 'LOGIN'],
  xoauth2: ['XOAUTH2'],
};
const GRAPH_CREDENTIAL_SECRET_NAME = 'mail-relay/graph-credential';
/** What the deployed stack puts in the secret it creates: the handler reports "credential not set". */
const PLACEHOLDER_CREDENTIAL = JSON.stringify({ placeholder: 'no Graph credential given to local mode' });
/** Used with --graph-peer when the configuration has no graph section. */
const LOCAL_GRAPH_APP = {
  tenantId: '00000000-0000-4000-8000-00000000a11c',
  clientId: '00000000-0000-4000-8000-0000000c11e7',
} as const;

export interface LocalRelayOptions {
  /** 0 picks a free port. @default 4566 */
  readonly sqsPort?: number;
  /** 0 picks a free port. @default 8005 */
  readonly sesPort?: number;
  /** @default mail-relay.config.json */
  readonly configPath?: string;
  /** @default 10 */
  readonly visibilityTimeoutSeconds?: number;
  /** Powertools log level of the handler. @default INFO */
  readonly logLevel?: string;
  /**
   * Starts the project's Entra ID + Graph peer on 127.0.0.1 and sends Graph mail there: the Graph
   * route works with no tenant. Senders: graph.senders, or the SES identities without a graph section.
   */
  readonly graphPeer?: boolean;
  /** 0 picks a free port. @default 8443 */
  readonly graphPeerPort?: number;
  /**
   * A JSON file with a real Graph credential ({"clientSecret"} or {"certificate", "privateKey"}), for
   * sending through the real Microsoft Graph of the configured tenant (this leaves the machine).
   */
  readonly graphCredentialPath?: string;
  /**
   * SMTP capture server standing in for the configured SMTP server (the first connection's; the others
   * listen on free ports). 0 picks a free port. @default 1025
   */
  readonly smtpPort?: number;
  /**
   * Where the SMTP captures save what they receive, one .eml per message: the single smtp section's
   * here, a named connection's in a subdirectory named after it. @default <stateDir>/smtp
   */
  readonly smtpCaptureDir?: string;
  /** DynamoDB emulator (delivery ledger, suppression list). 0 picks a free port. @default 4569 */
  readonly dynamoDbPort?: number;
  /**
   * What survives a restart lives here: the outbox and DLQ (a snapshot file) and the delivery ledger
   * and suppression list (the DynamoDB emulator's files). One local mode at a time per directory.
   * @default .local (in the working directory)
   */
  readonly stateDir?: string;
  /** Deletes the queues, ledger and suppression list kept in stateDir before starting. */
  readonly fresh?: boolean;
  /** The SMTP submission listener, when the configuration has an ingress section. 0 picks a free port. @default 2587 */
  readonly smtpIngressPort?: number;
  /**
   * One human line per message outcome (sent, retried, dead-lettered…) printed through this, instead
   * of the functions' JSON logs and EMF metrics on stdout. Absent: the JSON, as Lambda writes it.
   */
  readonly outcomeLines?: OutcomePrinter;
}

/** The SMTP capture standing in for one SMTP connection's server. */
export interface LocalSmtpCapture {
  /** The connection's provider name: `smtp`, or `smtp:<name>`. */
  readonly provider: string;
  readonly peer: SmtpPeer;
  /** Where it saves each message it receives, as an .eml file. */
  readonly directory: string;
}

/** How an application logs in to local mode's SMTP submission listener. */
export interface LocalIngressCredential {
  readonly client: string;
  readonly username: string;
  readonly password: string;
}

export interface LocalRelay {
  readonly queueUrl: string;
  readonly deadLetterQueueUrl: string;
  readonly sqsEndpoint: string;
  /** SES endpoint the handler uses: the emulator behind a capture of exactly what was sent. */
  readonly sesEndpoint: string;
  readonly capture: SesCapture;
  readonly config: RelayConfig;
  /** The settings the handler runs with. */
  readonly settings: RelaySettings;
  /** Running when `graphPeer` was asked for. */
  readonly graphPeer?: GraphPeer;
  /**
   * Running when the configuration has an smtp section: the capture of its first (or only) connection,
   * which receives whatever that connection sends.
   */
  readonly smtpCapture?: LocalSmtpCapture;
  /** One capture per SMTP connection, in the configuration's order. */
  readonly smtpCaptures: readonly LocalSmtpCapture[];
  /** S3 endpoint and bucket for large attachments, when the configuration enables them. */
  readonly attachmentBucket?: { readonly name: string; readonly endpoint: string };
  /** The SMTP submission listener (STARTTLS, AUTH PLAIN/LOGIN), when the configuration has an ingress section. */
  readonly smtpIngress?: {
    readonly host: string;
    readonly port: number;
    readonly certificatePem: string;
    readonly credentials: readonly LocalIngressCredential[];
  };
  /** The DynamoDB emulator holding the delivery ledger and the suppression list. */
  readonly dynamoDbEndpoint: string;
  /** The configuration file it was started with (absolute). */
  readonly configPath: string;
  /** The Secrets Manager emulator holding the providers' local credentials. */
  readonly secretsManagerEndpoint: string;
  /**
   * DNS for `mail-relay doctor`: SPF, DMARC and MX of the senders' domains as a correct setup
   * publishes them (the relay itself never asks it).
   */
  readonly dnsPeer: DnsPeer;
  /** Receives the outcome events (EventBridge PutEvents); GET <endpoint>/mail-relay/events lists them. */
  readonly eventBridge: EventBridgePeer;
  readonly ledgerTableName: string;
  readonly suppressionTableName: string;
  /** The state directory (absolute), and how many messages each queue got back from it at start. */
  readonly state: {
    readonly directory: string;
    readonly restored: { readonly outbox: number; readonly deadLetterQueue: number };
  };
  /**
   * Stops receiving, lets the invocations in progress finish (each bounded by the function
   * timeout), writes the final queue snapshot, then stops the emulators.
   */
  stop(): Promise<void>;
}

/**
 * The whole relay on this machine: SQS and SES emulators on 127.0.0.1, the outbox and its DLQ,
 * and the real send handler driven by a local SQS event source. Needs no AWS account.
 * It configures the handler through process environment variables, so run one per process.
 * The queues, the delivery ledger and the suppression list are kept in the state directory.
 */
export async function startLocalRelay(options: LocalRelayOptions = {}): Promise<LocalRelay> {
  const config = loadRelayConfig(options.configPath ?? DEFAULT_CONFIG_PATH);
  const configPath = path.resolve(options.configPath ?? DEFAULT_CONFIG_PATH);
  // Whatever has started, stopped one after the other in reverse order (also when a later step
  // fails): the final queue snapshot is taken before the SQS emulator goes, and the state directory
  // is released only once the DynamoDB emulator has closed its files.
  const stops: (() => Promise<void>)[] = [];
  const stopAll = async () => {
    for (const stop of stops.reverse()) await stop().catch(() => undefined);
  };
  try {
    // First: a second local mode on the same directory must stop here, before it touches anything.
    const state = await claimStateDirectory(options.stateDir ?? DEFAULT_STATE_DIR, {
      fresh: options.fresh ?? false,
    });
    stops.push(state.release);
    const sqs = await withPortHint(
      startSqsEmulator(options.sqsPort ?? DEFAULT_SQS_PORT),
      '--sqs-port or MAIL_RELAY_SQS_PORT (is LocalStack or another local mode running?)',
    );
    stops.push(sqs.stop);
    const ses = await startSesEmulator(0);
    stops.push(ses.stop);
    const capture = new SesCapture(ses.endpoint);
    const sesEndpoint = await withPortHint(
      capture.listen(options.sesPort ?? DEFAULT_SES_PORT),
      '--ses-port or MAIL_RELAY_SES_PORT',
    );
    stops.push(() => capture.close());

    const secrets = await startSecretsManagerEmulator(0);
    stops.push(secrets.stop);
    const dynamoDb = await withPortHint(
      startDynamoDbEmulator(options.dynamoDbPort ?? DEFAULT_DYNAMODB_PORT, { path: state.dynamoDbPath }),
      '--dynamodb-port or MAIL_RELAY_DYNAMODB_PORT',
    );
    stops.push(dynamoDb.stop);
    const eventBridge = await startEventBridgePeer(0);
    stops.push(() => eventBridge.close());
    pointAwsSdkAtEmulators({
      AWS_ENDPOINT_URL_EVENTBRIDGE: eventBridge.endpoint,
      AWS_ENDPOINT_URL_SQS: sqs.endpoint,
      AWS_ENDPOINT_URL_SESV2: sesEndpoint,
      AWS_ENDPOINT_URL_S3: sqs.endpoint,
      AWS_ENDPOINT_URL_SECRETS_MANAGER: secrets.endpoint,
      AWS_ENDPOINT_URL_DYNAMODB: dynamoDb.endpoint,
    });
    const client = new SQSClient({});
    const queues = await createQueues(client, config, options.visibilityTimeoutSeconds);
    // Restored before anything can receive, and before the first snapshot could overwrite the file.
    const restored = await restoreQueues(sqs.store, state.queueSnapshotPath, QUEUE_NAMES);
    const snapshots = new QueueSnapshots({
      store: sqs.store,
      queueNames: QUEUE_NAMES,
      file: state.queueSnapshotPath,
      writeThrough: [DEAD_LETTER_QUEUE_NAME],
      onError: (error) =>
        console.error(`[local queues] could not write ${state.queueSnapshotPath}: ${String(error)}`),
    });
    snapshots.start();
    stops.push(() => snapshots.stop());
    const tables = {
      ledgerTableName: LEDGER_TABLE_NAME,
      suppressionTableName: SUPPRESSION_TABLE_NAME,
      // Every local send function paces in it, as the deployed ones do in theirs.
      ...(config.pacing.enabled && { pacingTableName: PACING_TABLE_NAME }),
    };
    const dynamo = new DynamoDBClient({});
    await createRelayTables(dynamo, tables).finally(() => dynamo.destroy());

    let graphPeer: GraphPeer | undefined;
    let graphTransport: HttpTransport | undefined;
    let graph: GraphSettings | undefined;
    const graphConfig: GraphConfig | undefined =
      config.graph ??
      (options.graphPeer
        ? {
            ...LOCAL_GRAPH_APP,
            senders: sesSenders(config),
            saveToSentItems: true,
            cloud: 'global',
            mailboxAccess: 'consent',
          }
        : undefined);
    if (graphConfig) {
      let credential = PLACEHOLDER_CREDENTIAL;
      if (options.graphPeer) {
        const certificate = await createClientCertificate();
        const peer = await withPortHint(
          startGraphPeer({
            port: options.graphPeerPort ?? DEFAULT_GRAPH_PEER_PORT,
            tenantId: graphConfig.tenantId,
            clients: [{ clientId: graphConfig.clientId, certificatePem: certificate.certificatePem }],
          }),
          '--graph-peer-port or MAIL_RELAY_GRAPH_PEER_PORT',
        );
        stops.push(() => peer.close());
        graphPeer = peer;
        graphTransport = createHttpTransport({ ca: peer.caCertificate });
        credential = JSON.stringify({
          certificate: certificate.certificatePem,
          privateKey: certificate.privateKeyPem,
        });
      } else if (options.graphCredentialPath) {
        credential = await readFile(options.graphCredentialPath, 'utf8');
      }
      const secretArn = secrets.putSecret(GRAPH_CREDENTIAL_SECRET_NAME, credential);
      // The same settings the construct writes, with the peer's hosts when it stands in for Microsoft.
      graph = {
        ...graphSettingsFor(graphConfig, secretArn),
        ...(graphPeer && { authorityHost: graphPeer.authorityHost, graphEndpoint: graphPeer.graphEndpoint }),
      };
    }

    // One capture per SMTP connection, standing in for its server with its TLS and auth: the first on
    // --smtp-port, the others on free ports. The single smtp section's saves to <state dir>/smtp/ as
    // it always did; a named connection's to <state dir>/smtp/<name>/.
    const smtp: SmtpSettings[] = [];
    const smtpCaptures: LocalSmtpCapture[] = [];
    const captureRoot = path.resolve(options.smtpCaptureDir ?? state.smtpCaptureDir);
    const configuredSmtp = config.smtp ? smtpSettingsListFor(config.smtp, config.sendFunction.batchSize) : [];
    for (const [index, connection] of smtpConnectionsOf(config.smtp).entries()) {
      const configured = configuredSmtp[index];
      if (!configured) continue;
      const directory = connection.name === undefined ? captureRoot : path.join(captureRoot, connection.name);
      await mkdir(directory, { recursive: true });
      const peer = await withPortHint(
        startSmtpPeer({
          port: index === 0 ? (options.smtpPort ?? DEFAULT_SMTP_PORT) : 0,
          tls: configured.tls,
          requireTls: configured.requireTls,
          authMethods: LOCAL_SMTP_AUTH[configured.auth],
          users: [LOCAL_SMTP_USER],
          // With the Graph peer, only its tokens pass, as with Exchange Online; otherwise any token.
          verifyBearerToken: (token) => (graphPeer ? graphPeer.isIssuedToken(token) : true),
          onReceived: (message) => {
            const file = path.join(
              directory,
              `${new Date(message.at).toISOString().replaceAll(':', '-')}-${randomUUID().slice(0, 8)}.eml`,
            );
            void writeFile(file, message.raw).catch(() => undefined);
          },
        }),
        '--smtp-port or MAIL_RELAY_SMTP_PORT',
      );
      stops.push(() => peer.close());
      smtpCaptures.push({ provider: connection.provider, peer, directory });
      smtp.push({
        ...configured,
        host: peer.host,
        port: peer.port,
        // The capture accepts a local user: the real credential never comes near local mode.
        ...((configured.auth === 'plain' || configured.auth === 'login') && {
          credentialSecretId: secrets.putSecret(
            connection.name === undefined
              ? SMTP_CREDENTIAL_SECRET_NAME
              : `${SMTP_CREDENTIAL_SECRET_NAME}/${connection.name}`,
            JSON.stringify(LOCAL_SMTP_USER),
          ),
        }),
        ...(configured.auth === 'xoauth2' &&
          graphPeer && { oauthScope: `${graphPeer.graphEndpoint}/.default` }),
      });
    }
    const [smtpCapture] = smtpCaptures;

    let attachmentBucket: LocalRelay['attachmentBucket'];
    const s3 = new S3Client({ forcePathStyle: true });
    stops.push(async () => s3.destroy());
    if (config.attachments) {
      await s3.send(new CreateBucketCommand({ Bucket: ATTACHMENT_BUCKET_NAME }));
      attachmentBucket = { name: ATTACHMENT_BUCKET_NAME, endpoint: sqs.endpoint };
    }
    if (config.ingress) await s3.send(new CreateBucketCommand({ Bucket: INGRESS_BUCKET_NAME }));

    // The settings the construct writes, with local stand-ins for Microsoft and the SMTP server.
    const settings: RelaySettings = {
      ...relaySettingsFor(config, {
        queueUrl: queues.queueUrl,
        deadLetterQueueUrl: queues.deadLetterQueueUrl,
        ...(graph && { credentialSecretIds: new Map([['graph', graph.credentialSecretId]]) }),
        ...(attachmentBucket && { attachmentBucketName: attachmentBucket.name }),
        ...(config.ingress && { ingressBucketName: INGRESS_BUCKET_NAME }),
        ...tables,
      }),
      ...(graph && { graph }),
      ...(smtp.length > 0 && { smtp }),
    };
    process.env[SETTINGS_ENV_VAR] = JSON.stringify(settings);
    const dnsPeer = await startDnsPeer({ port: 0, records: localZoneFor(settings, [LOOPBACK_IP]) });
    stops.push(() => dnsPeer.close());
    process.env.POWERTOOLS_LOG_LEVEL = options.logLevel ?? 'INFO';
    process.env.POWERTOOLS_SERVICE_NAME = 'mail-relay';
    // After the variables above: the loggers read the log level when they are made.
    const outcomeLog = options.outcomeLines && createOutcomeLog(options.outcomeLines);
    const sendHandler = createSendHandler(process.env, {
      ...(graphTransport && { graphTransport }),
      // Each capture has its own self-signed certificate: each connection trusts its capture's.
      ...(smtpCapture && {
        smtpCa: Object.fromEntries(
          smtpCaptures.map((capture) => [capture.provider, capture.peer.caCertificate]),
        ),
      }),
      ...outcomeLog?.functionOutput(),
    });

    const source = new LocalSqsEventSource({
      client,
      queueUrl: queues.queueUrl,
      queueArn: queues.queueArn,
      region: LOCAL_REGION,
      handler: outcomeLog ? outcomeLog.timed(sendHandler) : sendHandler,
      batchSize: config.sendFunction.batchSize,
      // A few pollers exercise concurrency; hundreds would only load a laptop, not change behaviour.
      maxConcurrency: Math.min(config.sendFunction.maxConcurrency, 4),
      functionTimeoutMs: config.sendFunction.timeoutSeconds * 1000,
      onInvocationError: (error) => console.error(`[local event source] invocation failed: ${String(error)}`),
    });
    source.start();
    let smtpIngress: LocalRelay['smtpIngress'];
    let stopListener = async () => undefined;
    if (config.ingress) {
      const ingestQueue = await client.send(
        new CreateQueueCommand({ QueueName: INGEST_DEAD_LETTER_QUEUE_NAME }),
      );
      const ingest = new Ingest(
        ingestSettingsFor(config, {
          queueUrl: queues.queueUrl,
          deadLetterQueueUrl: required(ingestQueue.QueueUrl, 'ingest DLQ URL'),
          bucket: INGRESS_BUCKET_NAME,
        }),
        { store: new S3SubmissionStore(s3), outbox: new SqsOutbox(client, queues.queueUrl) },
      );
      const credentials = await localIngressCredentials(
        state.ingressCredentialsPath,
        config.ingress.clients.map((ingressClient) => ingressClient.name),
      );
      // As deployed: each client's password in Secrets Manager ({"password"}), read when it logs in.
      const secretsClient = new SecretsManagerClient({});
      stops.push(async () => secretsClient.destroy());
      const listener = await withPortHint(
        startSmtpIngress({
          port: options.smtpIngressPort ?? DEFAULT_SMTP_INGRESS_PORT,
          ingest,
          s3,
          clients: config.ingress.clients.map((ingressClient) => {
            const secretId = secrets.putSecret(
              `mail-relay/ingress/${ingressClient.name}`,
              JSON.stringify({ password: credentials.get(ingressClient.name) }),
            );
            return {
              name: ingressClient.name,
              allowedCidrs: ingressClient.allowedCidrs,
              password: async () => {
                const secret = await secretsClient.send(new GetSecretValueCommand({ SecretId: secretId }));
                return (JSON.parse(secret.SecretString ?? '{}') as { password?: string }).password ?? '';
              },
            };
          }),
        }),
        '--smtp-ingress-port or MAIL_RELAY_SMTP_INGRESS_PORT',
      );
      let closing: Promise<void> | undefined;
      stopListener = async () => {
        closing ??= listener.close();
        await closing;
      };
      stops.push(stopListener);
      smtpIngress = {
        host: listener.host,
        port: listener.port,
        certificatePem: listener.certificatePem,
        credentials: [...credentials].map(([name, password]) => ({ client: name, username: name, password })),
      };
    }
    const feedbackInProgress = config.ses
      ? simulateSesFeedback(capture, config, outcomeLog)
      : async () => undefined;
    let stopping: Promise<void> | undefined;

    return {
      ...queues,
      sqsEndpoint: sqs.endpoint,
      sesEndpoint,
      capture,
      config,
      settings,
      ...(graphPeer && { graphPeer }),
      ...(smtpCapture && { smtpCapture }),
      smtpCaptures,
      ...(attachmentBucket && { attachmentBucket }),
      ...(smtpIngress && { smtpIngress }),
      dynamoDbEndpoint: dynamoDb.endpoint,
      configPath,
      secretsManagerEndpoint: secrets.endpoint,
      dnsPeer,
      eventBridge,
      ...tables,
      state: {
        directory: state.directory,
        restored: {
          outbox: restored[OUTBOX_QUEUE_NAME] ?? 0,
          deadLetterQueue: restored[DEAD_LETTER_QUEUE_NAME] ?? 0,
        },
      },
      stop() {
        stopping ??= (async () => {
          // Nothing new comes in while the queues drain.
          await stopListener();
          await source.stop();
          await feedbackInProgress();
          client.destroy();
          await stopAll();
        })();
        return stopping;
      },
    };
  } catch (error) {
    await stopAll();
    throw error;
  }
}

/**
 * The ingress clients' local passwords: generated once per state directory and kept there, so an
 * application configured against local mode keeps working across restarts.
 */
async function localIngressCredentials(
  file: string,
  clients: readonly string[],
): Promise<Map<string, string>> {
  let stored: Record<string, string> = {};
  try {
    stored = JSON.parse(await readFile(file, 'utf8')) as Record<string, string>;
  } catch {
    // first start, or an unreadable file: new passwords
  }
  const credentials = new Map(
    clients.map((name) => [name, stored[name] ?? randomBytes(18).toString('base64url')] as const),
  );
  await writeFile(file, `${JSON.stringify(Object.fromEntries(credentials), null, 2)}\n`, { mode: 0o600 });
  return credentials;
}

/** The queues local mode keeps across restarts. */
const QUEUE_NAMES = [OUTBOX_QUEUE_NAME, DEAD_LETTER_QUEUE_NAME] as const;

/**
 * Standard AWS SDK settings, so the handler runs unmodified. Dummy credentials: the emulators
 * ignore them, and a developer's real profile must never be used by local mode.
 */
function pointAwsSdkAtEmulators(endpoints: Record<`AWS_ENDPOINT_URL_${string}`, string>): void {
  for (const name of ['AWS_PROFILE', 'AWS_SESSION_TOKEN', 'AWS_ENDPOINT_URL']) delete process.env[name];
  Object.assign(process.env, {
    AWS_REGION: LOCAL_REGION,
    AWS_ACCESS_KEY_ID: 'local',
    AWS_SECRET_ACCESS_KEY: 'local',
    ...endpoints,
  });
}

/** Without a graph section, --graph-peer sends for whatever SES would have sent for. */
function sesSenders(config: RelayConfig): string[] {
  return config.ses?.identities ?? ['example.com'];
}

async function createQueues(client: SQSClient, config: RelayConfig, visibilityTimeoutSeconds?: number) {
  const retention = String(config.queue.retentionDays * 24 * 3600);
  const dlq = await client.send(
    new CreateQueueCommand({
      QueueName: DEAD_LETTER_QUEUE_NAME,
      Attributes: { MessageRetentionPeriod: retention },
    }),
  );
  const dlqArn = await queueArn(client, dlq.QueueUrl);
  const outbox = await client.send(
    new CreateQueueCommand({
      QueueName: OUTBOX_QUEUE_NAME,
      Attributes: {
        MessageRetentionPeriod: retention,
        VisibilityTimeout: String(visibilityTimeoutSeconds ?? DEFAULT_LOCAL_VISIBILITY_TIMEOUT_SECONDS),
        RedrivePolicy: JSON.stringify({
          deadLetterTargetArn: dlqArn,
          maxReceiveCount: config.queue.maxReceiveCount,
        }),
      },
    }),
  );
  return {
    queueUrl: required(outbox.QueueUrl, 'outbox queue URL'),
    queueArn: await queueArn(client, outbox.QueueUrl),
    deadLetterQueueUrl: required(dlq.QueueUrl, 'DLQ URL'),
  };
}

async function queueArn(client: SQSClient, queueUrl: string | undefined): Promise<string> {
  const attributes = await client.send(
    new GetQueueAttributesCommand({
      QueueUrl: required(queueUrl, 'queue URL'),
      AttributeNames: ['QueueArn'],
    }),
  );
  return required(attributes.Attributes?.QueueArn, 'queue ARN');
}

/** A busy port is the usual reason local mode cannot start: say which option moves it. */
async function withPortHint<T>(starting: Promise<T>, option: string): Promise<T> {
  try {
    return await starting;
  } catch (error) {
    const { code, port } = error as { code?: string; port?: number };
    if (code !== 'EADDRINUSE') throw error;
    throw new Error(`port ${port} on 127.0.0.1 is already in use; choose another with ${option}`, {
      cause: error,
    });
  }
}

function required<T>(value: T | undefined, what: string): T {
  if (value === undefined) throw new Error(`The SQS emulator returned no ${what}`);
  return value;
}

/**
 * SES's mailbox simulator, locally: a send to bounce@, complaint@, success@, ooto@ or
 * suppressionlist@simulator.amazonses.com produces the SES events AWS would publish, handed to the
 * real feedback handler as the EventBridge rule does (suppression list, metrics, outcome events,
 * ledger notes). Asynchronous, as in AWS: the send has long returned when the event arrives.
 * Returns a function that waits for the feedback still to come (local mode's stop lets it finish).
 */
function simulateSesFeedback(
  capture: SesCapture,
  config: RelayConfig,
  outcomeLog?: OutcomeLog,
): () => Promise<void> {
  const feedbackEvents = outcomeEventSettingsFor(config.events, FEEDBACK_OUTCOME_KINDS);
  const handler = createFeedbackHandler(
    {
      ...process.env,
      [SETTINGS_ENV_VAR]: JSON.stringify({
        suppression: {
          tableName: SUPPRESSION_TABLE_NAME,
          ...(config.suppression.retentionDays !== undefined && {
            retentionDays: config.suppression.retentionDays,
          }),
        },
        ...(feedbackEvents && { events: feedbackEvents }),
        ledger: { tableName: LEDGER_TABLE_NAME },
      }),
    },
    outcomeLog?.functionOutput(),
  );
  const inProgress = new Set<Promise<unknown>>();
  capture.onSent((send) => {
    // Later, as SES's events come after its answer (and after the relay has recorded the send).
    const delivery = new Promise((resolve) => setTimeout(resolve, 200)).then(() =>
      Promise.all(
        simulatedSesEvents(send)
          // The configuration set publishes delivery events only when delivered outcomes are asked for.
          .filter((event) => config.events.publish.delivered || !isSesDelivery(event))
          .map((event) =>
            handler(event, localLambdaContext('mail-relay-feedback-local', LOCAL_REGION, 30_000)).catch(
              (error: unknown) =>
                console.error(`[local SES feedback] the feedback function failed: ${String(error)}`),
            ),
          ),
      ),
    );
    inProgress.add(delivery);
    void delivery.finally(() => inProgress.delete(delivery));
  });
  return async () => {
    await Promise.allSettled([...inProgress]);
  };
}

function isSesDelivery(event: Record<string, unknown>): boolean {
  const detail = event.detail as { eventType?: unknown } | undefined;
  return detail?.eventType === 'Delivery';
}
