import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import {
  CreateQueueCommand,
  GetQueueAttributesCommand,
  type Message,
  ReceiveMessageCommand,
  SendMessageBatchCommand,
  SQSClient,
} from '@aws-sdk/client-sqs';
import { DEAD_LETTER_ATTRIBUTES } from '../../lambda/core/dead-letter.ts';
import { OUTCOME_UNKNOWN } from '../../lambda/core/delivery.ts';
import { startDynamoDbEmulator, startSesEmulator, startSqsEmulator } from '../../local/emulators.ts';
import { createClientCertificate } from '../../local/peers/certificates.ts';
import { type GraphFault, startGraphPeer } from '../../local/peers/graph-peer.ts';
import { type SmtpFault, startSmtpPeer } from '../../local/peers/smtp-peer.ts';
import { createRelayTables } from '../../local/relay-tables.ts';
import { startSecretsManagerEmulator } from '../../local/secrets-manager-emulator.ts';
import { type InjectedFault, SesCapture } from '../../local/ses-capture.ts';
import { sendFunctionEnvironment, threeRouteSettings } from './send-function-wiring.ts';

/**
 * The soak: many messages through the real send handler in several child processes, with faults
 * injected at every peer (throttling, 5xx, answers lost after the provider took the message, SMTP
 * silence after DATA) and send functions killed with SIGKILL mid-batch. Afterwards every message is
 * reconciled against what the peers received and what the dead-letter queue holds.
 */
export interface SoakOptions {
  readonly messages: number;
  /** Send function processes. */
  readonly workers: number;
  /** SIGKILL a random worker this often (it is restarted at once); 0: no kills. */
  readonly killEveryMs: number;
  /** Seeds the fault plans and the kills, so a run can be repeated. */
  readonly seed: number;
  /** Share of each fault kind per provider request. */
  readonly faultRate: number;
  /** Called with progress lines. */
  readonly log?: (line: string) => void;
}

export const DEFAULT_SOAK_OPTIONS: SoakOptions = {
  messages: 10_000,
  workers: 4,
  killEveryMs: 2_500,
  seed: 1,
  faultRate: 0.01,
};

export interface SoakReport {
  readonly options: SoakOptions;
  readonly durationMs: number;
  readonly kills: number;
  readonly faults: Readonly<Record<string, number>>;
  /** Messages a peer received exactly once and that are not in the DLQ. */
  readonly sentOnce: number;
  /** Per provider that received them. */
  readonly sentBy: Readonly<Record<string, number>>;
  readonly outcomeUnknownReached: number;
  /** By the provider the DLQ names: the function died between recording the hand-off and the request. */
  readonly outcomeUnknownNotReached: Readonly<Record<string, number>>;
  /** Dead-lettered with another reason, by failure code. */
  readonly deadLettered: Readonly<Record<string, number>>;
  readonly lost: readonly number[];
  readonly duplicated: readonly number[];
  /** Received by a peer and also dead-lettered for a reason other than OutcomeUnknown. */
  readonly sentAndDeadLettered: readonly number[];
  /** In the DLQ more than once. */
  readonly deadLetteredTwice: readonly number[];
  /** Moved to the DLQ by SQS itself, without the relay's reason. */
  readonly deadLetteredWithoutReason: readonly number[];
  /** What happened to each message in one of the lists above: the peers that had it, its DLQ copies. */
  readonly problems: readonly SoakProblem[];
}

export interface SoakProblem {
  readonly id: number;
  readonly peers: readonly string[];
  readonly deadLetters: readonly { code: string | undefined; reason: string | undefined }[];
}

const SOAK_HEADER = 'X-Soak-Id';
const REGION = 'us-east-1';
const credentials = { accessKeyId: 'soak', secretAccessKey: 'soak' };
const TENANT_ID = '00000000-0000-4000-8000-00000000500a';
const CLIENT_ID = '00000000-0000-4000-8000-00000000c11e';
/** Short, so lost answers and killed batches come back quickly; the lease is the function timeout (the shortest the configuration allows). */
const FUNCTION_TIMEOUT_SECONDS = 5;
const VISIBILITY_TIMEOUT_SECONDS = 6;
const PROVIDER_TIMEOUT_MS = 1_000;
const MAX_RECEIVE_COUNT = 10;
const WORKER = fileURLToPath(new URL('./soak-worker.ts', import.meta.url));

export async function runSoak(options: SoakOptions): Promise<SoakReport> {
  const log = options.log ?? (() => undefined);
  const random = seeded(options.seed);
  const faults: Record<string, number> = {};
  const pick = <T>(table: readonly [string, T][]): T | undefined => {
    // One draw per request: each listed fault has `faultRate` of the requests.
    const draw = random();
    const index = Math.floor(draw / options.faultRate);
    const chosen = table[index];
    if (!chosen) return undefined;
    faults[chosen[0]] = (faults[chosen[0]] ?? 0) + 1;
    return chosen[1];
  };
  const stops: (() => Promise<unknown>)[] = [];
  const startedAt = Date.now();
  try {
    const sqsEmulator = await startSqsEmulator(0);
    stops.push(sqsEmulator.stop);
    const sesEmulator = await startSesEmulator(0);
    stops.push(sesEmulator.stop);
    const sesFaults: [string, InjectedFault][] = [
      ['ses 429 TooManyRequests', { status: 429, code: 'TooManyRequestsException' }],
      ['ses 503', { status: 503, code: 'ServiceUnavailable' }],
      ['ses answer lost (hang)', { lostAnswer: 'hang' }],
      ['ses answer lost (reset)', { lostAnswer: 'reset' }],
    ];
    const capture = new SesCapture(sesEmulator.endpoint, { faultPlan: () => pick(sesFaults) });
    const sesEndpoint = await capture.listen(0);
    stops.push(() => capture.close());
    const dynamo = await startDynamoDbEmulator(0);
    stops.push(dynamo.stop);
    const secrets = await startSecretsManagerEmulator(0);
    stops.push(secrets.stop);

    const certificate = await createClientCertificate();
    const graphFaults: [string, GraphFault][] = [
      ['graph 429 Retry-After 1', { status: 429, code: 'TooManyRequests', retryAfterSeconds: 1 }],
      ['graph 503', { status: 503, code: 'ServiceUnavailable' }],
      ['graph answer lost (hang)', { lostAnswer: 'hang' }],
      ['graph answer lost (reset)', { lostAnswer: 'reset' }],
    ];
    const graph = await startGraphPeer({
      tenantId: TENANT_ID,
      clients: [{ clientId: CLIENT_ID, certificatePem: certificate.certificatePem }],
      faultPlan: ({ operation }) => (operation === 'sendMail' ? pick(graphFaults) : undefined),
    });
    stops.push(() => graph.close());
    const smtpFaults: [string, SmtpFault][] = [
      ['smtp 451 at end of data', { stage: 'data', reply: '451 4.3.0 Temporary server error' }],
      ['smtp no reply after data (hang)', { stage: 'data', lostReply: 'hang' }],
      ['smtp no reply after data (close)', { stage: 'data', lostReply: 'close' }],
    ];
    const smtp = await startSmtpPeer({
      tls: 'none',
      faultPlan: (stage) => (stage === 'data' ? pick(smtpFaults) : undefined),
    });
    stops.push(() => smtp.close());

    const sqs = new SQSClient({ region: REGION, endpoint: sqsEmulator.endpoint, credentials });
    stops.push(async () => sqs.destroy());
    const dlq = await createQueue(sqs, 'soak-dlq', {});
    const outbox = await createQueue(sqs, 'soak-outbox', {
      VisibilityTimeout: String(VISIBILITY_TIMEOUT_SECONDS),
      RedrivePolicy: JSON.stringify({ deadLetterTargetArn: dlq.arn, maxReceiveCount: MAX_RECEIVE_COUNT }),
    });
    const tables = { ledgerTableName: 'soak-ledger', suppressionTableName: 'soak-suppression' };
    const dynamoClient = new DynamoDBClient({ region: REGION, endpoint: dynamo.endpoint, credentials });
    await createRelayTables(dynamoClient, tables);
    dynamoClient.destroy();

    const settings = threeRouteSettings(
      {
        queueUrl: outbox.url,
        deadLetterQueueUrl: dlq.url,
        ...tables,
        leaseSeconds: FUNCTION_TIMEOUT_SECONDS,
        graph,
        graphTenantId: TENANT_ID,
        graphClientId: CLIENT_ID,
        graphCredentialSecretId: secrets.putSecret(
          'soak/graph',
          JSON.stringify({ certificate: certificate.certificatePem, privateKey: certificate.privateKeyPem }),
        ),
        // Longer than a killed batch takes to come back, so a lookup still finds what Graph took.
        sentItemsLookupSeconds: 3 * VISIBILITY_TIMEOUT_SECONDS,
        smtp,
      },
      { graph: 'graph.example', smtp: 'smtp.example', ses: 'ses.example' },
    );
    const env = sendFunctionEnvironment(
      settings,
      {
        sqs: sqsEmulator.endpoint,
        ses: sesEndpoint,
        dynamodb: dynamo.endpoint,
        secretsManager: secrets.endpoint,
      },
      {
        SOAK_QUEUE_ARN: outbox.arn,
        SOAK_GRAPH_CA: graph.caCertificate,
        SOAK_PROVIDER_TIMEOUT_MS: String(PROVIDER_TIMEOUT_MS),
        SOAK_BATCH_SIZE: '10',
        SOAK_CONCURRENCY: '2',
        POWERTOOLS_LOG_LEVEL: 'CRITICAL',
      },
    );

    const workers = new Set<ChildProcess>();
    const startWorker = () => spawnWorker(env, workers);
    stops.push(async () => {
      await Promise.all([...workers].map((worker) => stopWorker(worker)));
    });
    await Promise.all(Array.from({ length: options.workers }, startWorker));
    log(`${options.workers} send functions running; enqueueing ${options.messages} messages`);

    await enqueueAll(sqs, outbox.url, options.messages, random);
    let kills = 0;
    let killing = true;
    const killer = (async () => {
      while (killing && options.killEveryMs > 0) {
        await new Promise((resolve) => setTimeout(resolve, options.killEveryMs * (0.5 + random())));
        if (!killing) return;
        const victims = [...workers];
        const victim = victims[Math.floor(random() * victims.length)];
        if (!victim) continue;
        workers.delete(victim);
        victim.kill('SIGKILL');
        await once(victim, 'exit');
        kills += 1;
        await startWorker();
      }
    })();
    await untilDrained(sqs, outbox.url, log);
    killing = false;
    await killer;
    log(`outbox drained after ${kills} kills; reconciling`);

    const deadLetters = await receiveAll(sqs, dlq.url);
    return reconcile(options, {
      durationMs: Date.now() - startedAt,
      kills,
      faults,
      graph: graph.delivered.map((message) => soakIdOfHeaders(message.message.internetMessageHeaders)),
      smtp: smtp.received.map((message) => soakIdOfMime(message.raw)),
      ses: capture.sent.map((send) => soakIdOfMime(send.raw)),
      deadLetters,
    });
  } finally {
    for (const stop of stops.reverse()) await stop().catch(() => undefined);
  }
}

/** Mulberry32: a small seeded generator, so a soak run can be repeated exactly. */
function seeded(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

async function createQueue(
  sqs: SQSClient,
  name: string,
  attributes: Record<string, string>,
): Promise<{ url: string; arn: string }> {
  const created = await sqs.send(new CreateQueueCommand({ QueueName: name, Attributes: attributes }));
  const url = created.QueueUrl ?? '';
  const described = await sqs.send(
    new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ['QueueArn'] }),
  );
  return { url, arn: described.Attributes?.QueueArn ?? '' };
}

async function spawnWorker(env: Record<string, string>, workers: Set<ChildProcess>): Promise<void> {
  const worker = spawn(process.execPath, ['--import', 'tsx', WORKER], {
    env,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let output = '';
  await new Promise<void>((resolve, reject) => {
    worker.stdout?.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      if (output.includes('ready')) resolve();
    });
    worker.once('exit', (code) => reject(new Error(`soak worker exited early (${code})`)));
  });
  workers.add(worker);
}

async function stopWorker(worker: ChildProcess): Promise<void> {
  if (worker.exitCode !== null || worker.signalCode !== null) return;
  worker.kill('SIGKILL');
  await once(worker, 'exit');
}

/** Messages across the three routes; one in five without an idempotency key. */
async function enqueueAll(
  sqs: SQSClient,
  queueUrl: string,
  count: number,
  random: () => number,
): Promise<void> {
  const domains = ['graph.example', 'smtp.example', 'ses.example'];
  for (let start = 0; start < count; start += 10) {
    const entries = Array.from({ length: Math.min(10, count - start) }, (_, offset) => {
      const id = start + offset;
      const body = {
        v: 1,
        from: `App <app@${domains[id % domains.length]}>`,
        to: [`user${id}@example.org`],
        subject: `Soak ${id}`,
        text: `Message ${id} of the soak.`,
        headers: { [SOAK_HEADER]: String(id) },
        ...(random() >= 0.2 && { idempotencyKey: `soak-${id}` }),
      };
      return { Id: String(offset), MessageBody: JSON.stringify(body) };
    });
    await sqs.send(new SendMessageBatchCommand({ QueueUrl: queueUrl, Entries: entries }));
  }
}

/** Waits until the outbox has been empty (nothing visible, nothing in flight) for a few polls in a row. */
async function untilDrained(sqs: SQSClient, queueUrl: string, log: (line: string) => void): Promise<void> {
  let emptyPolls = 0;
  let lastReport = 0;
  while (emptyPolls < 3) {
    await new Promise((resolve) => setTimeout(resolve, 500));
    const { Attributes = {} } = await sqs.send(
      new GetQueueAttributesCommand({
        QueueUrl: queueUrl,
        AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible'],
      }),
    );
    const left =
      Number(Attributes.ApproximateNumberOfMessages) +
      Number(Attributes.ApproximateNumberOfMessagesNotVisible);
    emptyPolls = left === 0 ? emptyPolls + 1 : 0;
    if (Date.now() - lastReport > 5_000) {
      log(`${left} messages still in the outbox`);
      lastReport = Date.now();
    }
  }
}

async function receiveAll(sqs: SQSClient, queueUrl: string): Promise<Message[]> {
  const messages: Message[] = [];
  for (;;) {
    const { Messages = [] } = await sqs.send(
      new ReceiveMessageCommand({
        QueueUrl: queueUrl,
        MaxNumberOfMessages: 10,
        VisibilityTimeout: 600,
        MessageAttributeNames: ['All'],
      }),
    );
    if (Messages.length === 0) return messages;
    messages.push(...Messages);
  }
}

function soakIdOfHeaders(headers: unknown): number | undefined {
  const list = Array.isArray(headers) ? (headers as { name?: string; value?: string }[]) : [];
  const value = list.find((header) => header.name?.toLowerCase() === SOAK_HEADER.toLowerCase())?.value;
  return value === undefined ? undefined : Number(value);
}

function soakIdOfMime(raw: Buffer): number | undefined {
  const match = new RegExp(`^${SOAK_HEADER}: (\\d+)\\r?$`, 'im').exec(raw.toString('latin1'));
  return match ? Number(match[1]) : undefined;
}

interface Observed {
  readonly durationMs: number;
  readonly kills: number;
  readonly faults: Record<string, number>;
  readonly graph: (number | undefined)[];
  readonly smtp: (number | undefined)[];
  readonly ses: (number | undefined)[];
  readonly deadLetters: Message[];
}

function reconcile(options: SoakOptions, observed: Observed): SoakReport {
  const received = new Map<number, string[]>();
  for (const provider of ['graph', 'smtp', 'ses'] as const) {
    for (const id of observed[provider]) {
      if (id === undefined) continue;
      received.set(id, [...(received.get(id) ?? []), provider]);
    }
  }
  const deadLettered = new Map<
    number,
    { code: string | undefined; provider: string | undefined; reason: string | undefined }[]
  >();
  for (const message of observed.deadLetters) {
    const body = JSON.parse(message.Body ?? '{}') as { headers?: Record<string, string> };
    const id = Number(body.headers?.[SOAK_HEADER]);
    const attribute = (name: string) => message.MessageAttributes?.[name]?.StringValue;
    deadLettered.set(id, [
      ...(deadLettered.get(id) ?? []),
      {
        code: attribute(DEAD_LETTER_ATTRIBUTES.code),
        provider: attribute(DEAD_LETTER_ATTRIBUTES.provider),
        reason: attribute(DEAD_LETTER_ATTRIBUTES.reason),
      },
    ]);
  }
  const report = {
    sentOnce: 0,
    sentBy: {} as Record<string, number>,
    outcomeUnknownReached: 0,
    outcomeUnknownNotReached: {} as Record<string, number>,
    deadLettered: {} as Record<string, number>,
    lost: [] as number[],
    duplicated: [] as number[],
    sentAndDeadLettered: [] as number[],
    deadLetteredTwice: [] as number[],
    deadLetteredWithoutReason: [] as number[],
  };
  for (let id = 0; id < options.messages; id += 1) {
    const peers = received.get(id) ?? [];
    const copies = deadLettered.get(id) ?? [];
    const codes = copies.map((copy) => copy.code);
    if (peers.length > 1) report.duplicated.push(id);
    if (codes.length > 1) report.deadLetteredTwice.push(id);
    if (peers.length === 0 && codes.length === 0) report.lost.push(id);
    const [code] = codes;
    if (codes.length === 0) {
      if (peers.length === 1) {
        report.sentOnce += 1;
        const [provider = 'unknown'] = peers;
        report.sentBy[provider] = (report.sentBy[provider] ?? 0) + 1;
      }
    } else if (code === undefined) {
      report.deadLetteredWithoutReason.push(id);
    } else if (code === OUTCOME_UNKNOWN) {
      if (peers.length > 0) report.outcomeUnknownReached += 1;
      else {
        const provider = copies[0]?.provider ?? 'unknown';
        report.outcomeUnknownNotReached[provider] = (report.outcomeUnknownNotReached[provider] ?? 0) + 1;
      }
    } else {
      report.deadLettered[code] = (report.deadLettered[code] ?? 0) + 1;
      if (peers.length > 0) report.sentAndDeadLettered.push(id);
    }
  }
  const problemIds = new Set([
    ...report.lost,
    ...report.duplicated,
    ...report.sentAndDeadLettered,
    ...report.deadLetteredTwice,
    ...report.deadLetteredWithoutReason,
  ]);
  const problems = [...problemIds].map((id) => ({
    id,
    peers: received.get(id) ?? [],
    deadLetters: (deadLettered.get(id) ?? []).map(({ code, reason }) => ({ code, reason })),
  }));
  return {
    options,
    durationMs: observed.durationMs,
    kills: observed.kills,
    faults: observed.faults,
    ...report,
    problems,
  };
}

/** The reconciliation as a table, for `npm run soak` and for test failures. */
export function formatSoakReport(report: SoakReport): string {
  const { options } = report;
  const rows: [string, string | number][] = [
    ['sent exactly once', `${report.sentOnce}${describeCounts(report.sentBy)}`],
    ['dead-lettered as OutcomeUnknown, and a peer had it', report.outcomeUnknownReached],
    [
      'dead-lettered as OutcomeUnknown, and no peer had it',
      `${total(report.outcomeUnknownNotReached)}${describeCounts(report.outcomeUnknownNotReached)}`,
    ],
    ...Object.entries(report.deadLettered).map(([code, count]): [string, number] => [
      `dead-lettered with reason ${code}`,
      count,
    ]),
    ['LOST (at no peer, not in the DLQ)', report.lost.length],
    ['DUPLICATED (a peer received it more than once)', report.duplicated.length],
    ['received by a peer and dead-lettered for another reason', report.sentAndDeadLettered.length],
    ['in the DLQ more than once', report.deadLetteredTwice.length],
    ['in the DLQ without a reason (moved by SQS)', report.deadLetteredWithoutReason.length],
  ];
  const width = Math.max(...rows.map(([label]) => label.length));
  const faults = Object.entries(report.faults)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([kind, count]) => `  ${kind}: ${count}`)
    .join('\n');
  return [
    `soak: ${options.messages} messages, ${options.workers} send functions, ${report.kills} killed with SIGKILL, seed ${options.seed}, ${Math.round(report.durationMs / 1000)} s`,
    `faults injected (${options.faultRate * 100}% of requests each):`,
    faults || '  none',
    '',
    `| ${'outcome'.padEnd(width)} | messages |`,
    `| ${'-'.repeat(width)} | -------- |`,
    ...rows.map(([label, value]) => `| ${label.padEnd(width)} | ${String(value).padStart(8)} |`),
    ...(report.problems.length > 0 ? ['', 'to look at:'] : []),
    ...report.problems
      .slice(0, 20)
      .map(
        ({ id, peers, deadLetters }) =>
          `  message ${id}: received by [${peers.join(', ')}]; in the DLQ: ${
            deadLetters.map(({ code, reason }) => `${code ?? '(no reason)'}: ${reason ?? ''}`).join(' || ') ||
            'no'
          }`,
      ),
  ].join('\n');
}

const total = (counts: Readonly<Record<string, number>>) =>
  Object.values(counts).reduce((sum, count) => sum + count, 0);

const describeCounts = (counts: Readonly<Record<string, number>>) => {
  const parts = Object.entries(counts).map(([name, count]) => `${name} ${count}`);
  return parts.length > 0 ? ` (${parts.join(', ')})` : '';
};
