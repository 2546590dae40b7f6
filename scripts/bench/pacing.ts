/**
 * The pacing scenarios (issue 15): a backlog of messages from Graph mailboxes sent by several send
 * function instances at once, against a Graph peer that enforces Exchange Online's limits scaled
 * down in time, with the relay configured to the equivalent limits and fleet-wide pacing on.
 *
 * - Instances: `instances` processes (pacing-worker.ts), each the real send bundle polling the outbox
 *   with batches of 10, one invocation at a time, as Lambda's event source mapping runs one instance.
 *   Pacing puts messages back on the queue (a delayed copy), so the outbox is a real queue: the SQS
 *   emulator (fauxqs), in the benchmark's own process.
 * - DynamoDB: all of it (pacing table, ledger, suppression list) is the DynamoDB emulator (dynalite)
 *   behind a counting proxy (dynamodb-store.ts), in its own process: pacing needs conditional writes
 *   that really hold. EventBridge and Secrets Manager stay on the AWS stub.
 * - The scale: the peer allows `count` sends per sliding `windowMs` per mailbox (Exchange: 30 per
 *   60 s), 4 requests at once (Graph) and 10,000 recipients a day. The relay spreads a minute's sends
 *   over the minute plus 500 ms (an allowance for jitter between functions), so the equivalent relay
 *   setting is messagesPerMinute = floor(count × 60,000 / (windowMs + 500)): the same 500 ms of slack
 *   per window as in production, which costs windowMs / (windowMs + 500) of the allowed rate (0.99 at
 *   60 s, 0.67 at 1 s).
 *
 * What it reports is what the peer saw: achieved rate (messages ÷ time from the first to the last
 * accepted send) against the allowed one, 429s by code, the most requests open at once, messages
 * delivered once, and what the store saw: calls per message to each table.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath, pathToFileURL } from 'node:url';
import {
  CreateQueueCommand,
  GetQueueAttributesCommand,
  SendMessageBatchCommand,
  SQSClient,
} from '@aws-sdk/client-sqs';
import { SETTINGS_ENV_VAR } from '../../lambda/core/settings.ts';
import { parseRelayConfig, relaySettingsFor } from '../../lib/config.ts';
import type { SqsEmulator } from '../../local/emulators.ts';
import type { RelayTableNames } from '../../local/relay-tables.ts';
import type {
  PeerMailboxPacing,
  PollerMessage,
  PollerPlan,
  PollerRequest,
  PollerResult,
  StoreCounts,
  StoreMessage,
  StoreRequest,
} from './protocol.ts';
import { table } from './report.ts';
import { nextMessage, type Peers, stopWorker, tailOf } from './run.ts';
import { ACCOUNT, functionEnvironment, messageBody, REGION } from './scenarios.ts';

const STORE_ENTRY = fileURLToPath(new URL('./dynamodb-store.ts', import.meta.url));
const DOMAIN = 'graph.example';
/** The relay's allowance per minute of sends (lambda/core/pacing/pacer.ts MINUTE_ALLOWANCE_MS). */
const RELAY_MINUTE_ALLOWANCE_MS = 500;
const TABLES = {
  ledgerTableName: 'mail-relay-bench-ledger',
  suppressionTableName: 'mail-relay-bench-suppression',
  pacingTableName: 'mail-relay-bench-pacing',
} as const satisfies RelayTableNames;

export interface PacingScenario {
  readonly id: string;
  readonly title: string;
  /** From addresses ("Name <address>"), used in turn. */
  readonly senders: readonly string[];
}

export const PACING_SCENARIOS: readonly PacingScenario[] = [
  { id: 'pacing-1', title: 'Pacing, 1 mailbox', senders: [`Pacing <pace@${DOMAIN}>`] },
  {
    id: 'pacing-5',
    title: 'Pacing, 5 mailboxes',
    senders: Array.from({ length: 5 }, (_, index) => `Pacing ${index} <pace${index}@${DOMAIN}>`),
  },
];

export interface PacingSettings {
  readonly messages: number;
  readonly instances: number;
  readonly batchSize: number;
  /** The peer's message rate per mailbox: `count` per sliding `windowMs` (Exchange: 30 per 60,000). */
  readonly count: number;
  readonly windowMs: number;
  /** Graph's requests at once per mailbox. */
  readonly concurrentRequests: number;
  readonly recipientsPerDay: number;
  /** pacing.maxWaitSeconds of the relay (the configuration's default when absent). */
  readonly maxWaitSeconds?: number;
  readonly functionTimeoutMs: number;
  /** Gives up (and reports what was delivered) after this long. */
  readonly timeoutMs: number;
}

export interface PacingRunOptions {
  readonly directory: string;
  readonly pollerScript: string;
  readonly bundle: string;
  readonly peers: Peers;
  readonly sqs: SqsEmulator;
  readonly log: (line: string) => void;
}

export interface PacingReport {
  readonly id: string;
  readonly title: string;
  readonly mailboxes: number;
  readonly messages: number;
  readonly instances: number;
  /** The peer's limit per mailbox, and the relay's configured equivalent. */
  readonly peerLimit: {
    readonly count: number;
    readonly windowMs: number;
    readonly concurrentRequests: number;
  };
  readonly relayMessagesPerMinute: number;
  readonly maxWaitSeconds: number;
  /** All mailboxes together, msg/s: what the peer allows, what the relay's schedule allows, what was reached. */
  readonly allowedRate: number;
  readonly relayScheduleRate: number;
  readonly achievedRate: number;
  readonly achievedToAllowed: number;
  readonly achievedToSchedule: number;
  /** The lowest of the mailboxes' own achieved ÷ allowed. */
  readonly worstMailboxToAllowed: number;
  /** Most sends of one mailbox accepted within any one window (the peer allows `count`). */
  readonly busiestWindow: number;
  readonly throttledByCode: Readonly<Record<string, number>>;
  readonly throttled: number;
  /** When they came: seconds after the first accepted send. */
  readonly throttledAtSeconds: readonly number[];
  readonly peakRequestsOpen: number;
  readonly delivered: number;
  readonly deliveredUnique: number;
  readonly deadLettered: number;
  /** From the instances' start until everything was delivered and the outbox was empty. */
  readonly wallMs: number;
  /** First to last accepted send at the peer. */
  readonly sendSpanMs: number;
  readonly complete: boolean;
  /** DynamoDB calls per message, by table: reads, writes, refused conditional writes. */
  readonly storePerMessage: Readonly<
    Record<'pacing' | 'ledger' | 'suppression', { reads: number; writes: number; refused: number }>
  >;
  readonly storeCalls: StoreCounts;
  /** Records received beyond one per message (requeued copies, retries), per message. */
  readonly extraReceivesPerMessage: number;
  /** Log lines of the instances worth knowing about (warnings, errors, waits on the queue), by message. */
  readonly notableLogs: Readonly<Record<string, number>>;
  readonly instanceCpuMsPerMessage: number;
  readonly pollers: readonly PollerResult[];
}

/** The relay's per-minute setting equivalent to the peer's window (see the file's comment). */
export function relayMessagesPerMinute(count: number, windowMs: number): number {
  return Math.floor((count * 60_000) / (windowMs + RELAY_MINUTE_ALLOWANCE_MS));
}

export async function runPacingScenario(
  scenario: PacingScenario,
  settings: PacingSettings,
  options: PacingRunOptions,
): Promise<PacingReport> {
  const { peers, log } = options;
  const mailboxes = scenario.senders.map(addressOf);
  const perMinute = relayMessagesPerMinute(settings.count, settings.windowMs);
  const sqs = new SQSClient({
    endpoint: options.sqs.endpoint,
    region: REGION,
    credentials: { accessKeyId: 'bench', secretAccessKey: 'bench' },
  });
  const store = await startStore();
  const pollers: ChildProcess[] = [];
  const logs: Record<string, number> = {};
  try {
    const queues = await createQueues(sqs, scenario.id, settings.functionTimeoutMs);
    const config = parseRelayConfig(
      {
        graph: {
          tenantId: peers.endpoints.graph.tenantId,
          clientId: peers.endpoints.graph.clientId,
          senders: [DOMAIN],
          credentialSecretArn: peers.endpoints.graph.credentialSecretArn,
          authorityHost: peers.endpoints.graph.url,
          graphEndpoint: peers.endpoints.graph.url,
          pacing: {
            perMailbox: {
              messagesPerMinute: perMinute,
              concurrentRequests: settings.concurrentRequests,
              recipientsPerDay: settings.recipientsPerDay,
            },
          },
        },
        pacing: {
          enabled: true,
          ...(settings.maxWaitSeconds !== undefined && { maxWaitSeconds: settings.maxWaitSeconds }),
        },
      },
      `benchmark scenario ${scenario.id}`,
    );
    const relaySettings = relaySettingsFor(config, {
      queueUrl: queues.outbox.url,
      deadLetterQueueUrl: queues.deadLetter.url,
      credentialSecretIds: new Map([['graph', peers.endpoints.graph.credentialSecretArn]]),
      ...TABLES,
    });
    await peers.setGraphLimits({
      concurrentRequestsPerMailbox: settings.concurrentRequests,
      messagesPerMailbox: { count: settings.count, windowMs: settings.windowMs },
      recipientsPerMailboxPerDay: settings.recipientsPerDay,
    });

    log(`${scenario.title}: ${settings.messages} messages onto the outbox …`);
    await enqueue(sqs, queues.outbox.url, scenario, settings.messages);

    const caFile = join(options.directory, 'ca-graph.pem');
    writeFileSync(caFile, peers.endpoints.caCertificates.graph);
    const plan: PollerPlan = {
      bundle: pathToFileURL(options.bundle).href,
      sqsEndpoint: options.sqs.endpoint,
      queueUrl: queues.outbox.url,
      queueArn: queues.outbox.arn,
      region: REGION,
      batchSize: settings.batchSize,
      functionName: 'mail-relay-send',
      timeoutMs: settings.functionTimeoutMs,
    };
    const planFile = join(options.directory, `plan-${scenario.id}.json`);
    writeFileSync(planFile, JSON.stringify(plan));
    log(`${scenario.title}: ${settings.instances} send function instances …`);
    const tails: (() => string)[] = [];
    for (let index = 0; index < settings.instances; index += 1) {
      const poller = spawn(process.execPath, [options.pollerScript, planFile], {
        env: functionEnvironment(peers.endpoints, plan.functionName, {
          [SETTINGS_ENV_VAR]: JSON.stringify(relaySettings),
          NODE_EXTRA_CA_CERTS: caFile,
          AWS_ENDPOINT_URL_DYNAMODB: store.endpoint,
          AWS_ENDPOINT_URL_SQS: options.sqs.endpoint,
        }),
        stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
      });
      pollers.push(poller);
      tails.push(tailOf(poller));
      countLogs(poller, logs);
    }
    const what = (index: number) => `${scenario.id} instance ${index}`;
    const failed = (index: number, error: unknown) =>
      new Error(`${(error as Error).message}\n--- its last output ---\n${tails[index]?.().trim()}`);
    await Promise.all(
      pollers.map(async (poller, index) => {
        const ready = await nextMessage<PollerMessage>(poller, () => true, what(index)).catch((error) => {
          throw failed(index, error);
        });
        if (ready.type !== 'ready') {
          throw failed(
            index,
            new Error(`${what(index)}: ${ready.type === 'error' ? ready.error : ready.type}`),
          );
        }
      }),
    );

    const storeBefore = await store.counts();
    const deliveredBefore = (await peers.counts()).graphDelivered;
    const started = performance.now();
    for (const poller of pollers) poller.send({ type: 'start' } satisfies PollerRequest);
    let complete = false;
    let lastProgress = '';
    while (performance.now() - started < settings.timeoutMs) {
      await sleep(500);
      const delivered = (await peers.counts()).graphDelivered - deliveredBefore;
      const waiting = await queued(sqs, queues.outbox.url);
      const progress = `${delivered} delivered, ${waiting} on the outbox`;
      if (progress !== lastProgress && Math.round((performance.now() - started) / 500) % 20 === 0) {
        log(`${scenario.title}: ${progress} after ${((performance.now() - started) / 1000).toFixed(0)} s`);
      }
      lastProgress = progress;
      if (delivered >= settings.messages && waiting === 0) {
        complete = true;
        break;
      }
    }
    const wallMs = performance.now() - started;
    if (!complete) log(`${scenario.title}: gave up after ${(wallMs / 1000).toFixed(0)} s (${lastProgress})`);
    const results = await Promise.all(
      pollers.map(async (poller, index) => {
        poller.send({ type: 'stop' } satisfies PollerRequest);
        const stopped = await nextMessage<PollerMessage>(
          poller,
          (message) => message.type !== 'ready',
          what(index),
          settings.functionTimeoutMs + 10_000,
        );
        if (stopped.type !== 'stopped') throw failed(index, new Error(`${what(index)} did not stop cleanly`));
        return stopped.result;
      }),
    );
    const storeAfter = await store.counts();
    const pacing = await peers.graphPacing(mailboxes);
    const deadLettered = await queued(sqs, queues.deadLetter.url);
    return pacingReport(scenario, settings, {
      perMinute,
      maxWaitSeconds: config.pacing.maxWaitSeconds,
      pacing,
      storeCalls: difference(storeAfter, storeBefore),
      deadLettered,
      wallMs,
      complete,
      pollers: results,
      logs,
    });
  } finally {
    await peers.setGraphLimits({});
    await Promise.all(pollers.map((poller) => stopWorker(poller)));
    await store.stop();
    sqs.destroy();
  }
}

function pacingReport(
  scenario: PacingScenario,
  settings: PacingSettings,
  run: {
    readonly perMinute: number;
    readonly maxWaitSeconds: number;
    readonly pacing: Readonly<Record<string, PeerMailboxPacing>>;
    readonly storeCalls: StoreCounts;
    readonly deadLettered: number;
    readonly wallMs: number;
    readonly complete: boolean;
    readonly pollers: readonly PollerResult[];
    readonly logs: Readonly<Record<string, number>>;
  },
): PacingReport {
  const stats = Object.values(run.pacing);
  const mailboxes = stats.length;
  const allowedPerMailbox = (settings.count * 1000) / settings.windowMs;
  // The relay's schedule spaces sends (60,000 + 500) ms ÷ messagesPerMinute apart.
  const schedulePerMailbox = (run.perMinute * 1000) / (60_000 + RELAY_MINUTE_ALLOWANCE_MS);
  const accepted = stats.flatMap((mailbox) => mailbox.acceptedAt).sort((a, b) => a - b);
  const spanMs = (accepted.at(-1) ?? 0) - (accepted[0] ?? 0);
  const rate = (count: number, span: number) => (span > 0 ? count / (span / 1000) : 0);
  const achievedRate = rate(accepted.length, spanMs);
  const worstMailboxToAllowed = Math.min(
    ...stats.map((mailbox) => {
      const times = mailbox.acceptedAt;
      return rate(times.length, (times.at(-1) ?? 0) - (times[0] ?? 0)) / allowedPerMailbox;
    }),
  );
  const throttledByCode: Record<string, number> = {};
  for (const mailbox of stats) {
    for (const [code, count] of Object.entries(mailbox.throttledByCode)) {
      throttledByCode[code] = (throttledByCode[code] ?? 0) + count;
    }
  }
  const messages = settings.messages;
  const perMessage = (value: number) => value / messages;
  const storePerMessage = {
    pacing: tableCalls(run.storeCalls, TABLES.pacingTableName, perMessage),
    ledger: tableCalls(run.storeCalls, TABLES.ledgerTableName, perMessage),
    suppression: tableCalls(run.storeCalls, TABLES.suppressionTableName, perMessage),
  };
  const records = run.pollers.reduce((sum, poller) => sum + poller.records, 0);
  const cpuMs = run.pollers.reduce((sum, poller) => sum + poller.cpuMs, 0);
  return {
    id: scenario.id,
    title: scenario.title,
    mailboxes,
    messages,
    instances: settings.instances,
    peerLimit: {
      count: settings.count,
      windowMs: settings.windowMs,
      concurrentRequests: settings.concurrentRequests,
    },
    relayMessagesPerMinute: run.perMinute,
    maxWaitSeconds: run.maxWaitSeconds,
    allowedRate: allowedPerMailbox * mailboxes,
    relayScheduleRate: schedulePerMailbox * mailboxes,
    achievedRate,
    achievedToAllowed: achievedRate / (allowedPerMailbox * mailboxes),
    achievedToSchedule: achievedRate / (schedulePerMailbox * mailboxes),
    worstMailboxToAllowed,
    busiestWindow: Math.max(...stats.map((mailbox) => busiestWindow(mailbox.acceptedAt, settings.windowMs))),
    throttledByCode,
    throttled: Object.values(throttledByCode).reduce((sum, count) => sum + count, 0),
    throttledAtSeconds: stats
      .flatMap((mailbox) => mailbox.throttledAt)
      .sort((a, b) => a - b)
      .map((at) => Number(((at - (accepted[0] ?? at)) / 1000).toFixed(2))),
    peakRequestsOpen: Math.max(...stats.map((mailbox) => mailbox.peakSendRequestsOpen)),
    delivered: stats.reduce((sum, mailbox) => sum + mailbox.delivered, 0),
    deliveredUnique: stats.reduce((sum, mailbox) => sum + mailbox.uniqueSubjects, 0),
    deadLettered: run.deadLettered,
    wallMs: run.wallMs,
    sendSpanMs: spanMs,
    complete: run.complete,
    storePerMessage,
    storeCalls: run.storeCalls,
    extraReceivesPerMessage: perMessage(records - messages),
    notableLogs: run.logs,
    instanceCpuMsPerMessage: perMessage(cpuMs),
    pollers: run.pollers,
  };
}

const READS = new Set(['GetItem', 'BatchGetItem', 'Query', 'Scan', 'TransactGetItems']);

/** A table's calls per message: reads, writes, and the writes whose condition failed. */
function tableCalls(
  counts: StoreCounts,
  table: string,
  perMessage: (value: number) => number,
): { reads: number; writes: number; refused: number } {
  let reads = 0;
  let writes = 0;
  let refused = 0;
  for (const [name, count] of Object.entries(counts.calls)) {
    const [tables = '', operation = ''] = name.split(' ');
    if (!tables.split('+').includes(table)) continue;
    if (READS.has(operation)) reads += count;
    else writes += count;
    refused += counts.conditionFailed[name] ?? 0;
  }
  return { reads: perMessage(reads), writes: perMessage(writes), refused: perMessage(refused) };
}

/** The most accepted sends within any window of `windowMs` (times sorted). */
function busiestWindow(times: readonly number[], windowMs: number): number {
  let most = 0;
  let first = 0;
  for (let last = 0; last < times.length; last += 1) {
    while ((times[first] ?? 0) <= (times[last] ?? 0) - windowMs) first += 1;
    most = Math.max(most, last - first + 1);
  }
  return most;
}

function addressOf(sender: string): string {
  return (/<([^>]+)>/.exec(sender)?.[1] ?? sender).toLowerCase();
}

async function createQueues(sqs: SQSClient, id: string, functionTimeoutMs: number) {
  const create = async (name: string, attributes: Record<string, string>) => {
    const created = await sqs.send(new CreateQueueCommand({ QueueName: name, Attributes: attributes }));
    const url = created.QueueUrl ?? '';
    const described = await sqs.send(
      new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ['QueueArn'] }),
    );
    return { url, arn: described.Attributes?.QueueArn ?? `arn:aws:sqs:${REGION}:${ACCOUNT}:${name}` };
  };
  const name = `mail-relay-bench-${id}-${Date.now()}`;
  const deadLetter = await create(`${name}-dlq`, {});
  const outbox = await create(name, {
    // As the stack sets it: six times the function's timeout (AWS's advice for event sources).
    VisibilityTimeout: String(Math.ceil((6 * functionTimeoutMs) / 1000)),
    RedrivePolicy: JSON.stringify({ deadLetterTargetArn: deadLetter.arn, maxReceiveCount: 5 }),
  });
  return { outbox, deadLetter };
}

async function enqueue(sqs: SQSClient, queueUrl: string, scenario: PacingScenario, messages: number) {
  for (let start = 0; start < messages; start += 10) {
    const entries = Array.from({ length: Math.min(10, messages - start) }, (_, offset) => ({
      Id: String(offset),
      MessageBody: messageBody(scenario, start + offset),
    }));
    await sqs.send(new SendMessageBatchCommand({ QueueUrl: queueUrl, Entries: entries }));
  }
}

/** Messages on the queue: visible, in flight and delayed. */
async function queued(sqs: SQSClient, queueUrl: string): Promise<number> {
  const described = await sqs.send(
    new GetQueueAttributesCommand({
      QueueUrl: queueUrl,
      AttributeNames: [
        'ApproximateNumberOfMessages',
        'ApproximateNumberOfMessagesNotVisible',
        'ApproximateNumberOfMessagesDelayed',
      ],
    }),
  );
  const attributes = described.Attributes ?? {};
  return (
    Number(attributes.ApproximateNumberOfMessages ?? 0) +
    Number(attributes.ApproximateNumberOfMessagesNotVisible ?? 0) +
    Number(attributes.ApproximateNumberOfMessagesDelayed ?? 0)
  );
}

/** Counts the instances' warnings and errors, and the waits on the queue, by log message. */
function countLogs(child: ChildProcess, logs: Record<string, number>): void {
  for (const stream of [child.stdout, child.stderr]) {
    let rest = '';
    stream?.on('data', (chunk: Buffer) => {
      const lines = (rest + chunk.toString('utf8')).split('\n');
      rest = lines.pop() ?? '';
      for (const line of lines) {
        if (!line.startsWith('{') || line.includes('"_aws"')) continue;
        try {
          const entry = JSON.parse(line) as {
            level?: string;
            message?: string;
            code?: string;
            limit?: string;
          };
          const message = entry.message ?? '';
          if (entry.level === 'WARN' || entry.level === 'ERROR' || message.includes('waits on the queue')) {
            const detail = entry.code ?? entry.limit;
            const name = `${entry.level} ${message}${detail === undefined ? '' : ` (${detail})`}`;
            logs[name] = (logs[name] ?? 0) + 1;
          }
        } catch {
          // Not a log entry of the function.
        }
      }
    });
  }
}

function difference(after: StoreCounts, before: StoreCounts): StoreCounts {
  const minus = (a: Readonly<Record<string, number>>, b: Readonly<Record<string, number>>) =>
    Object.fromEntries(
      Object.entries(a)
        .map(([name, count]): [string, number] => [name, count - (b[name] ?? 0)])
        .filter(([, count]) => count !== 0),
    );
  return {
    calls: minus(after.calls, before.calls),
    conditionFailed: minus(after.conditionFailed, before.conditionFailed),
    errors: minus(after.errors, before.errors),
  };
}

interface Store {
  readonly endpoint: string;
  counts(): Promise<StoreCounts>;
  stop(): Promise<void>;
}

async function startStore(): Promise<Store> {
  const child = spawn(process.execPath, ['--import', 'tsx', STORE_ENTRY], {
    env: { ...process.env, BENCH_TABLES: JSON.stringify(TABLES) },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const ready = await nextMessage<StoreMessage>(
    child,
    (message) => message.type === 'ready',
    'the DynamoDB store',
  );
  if (ready.type !== 'ready') throw new Error('unreachable');
  let nextId = 0;
  return {
    endpoint: ready.endpoint,
    async counts() {
      const id = nextId++;
      child.send({ type: 'counts', id } satisfies StoreRequest);
      const reply = await nextMessage<StoreMessage>(
        child,
        (message) => message.type === 'counts' && message.id === id,
        'the DynamoDB store',
      );
      if (reply.type !== 'counts') throw new Error('unreachable');
      return reply.counts;
    },
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = once(child, 'exit');
      child.send({ type: 'stop' } satisfies StoreRequest);
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** The pacing table, as text: the issue's figures first, then where the store calls go. */
export function formatPacingReport(settings: PacingSettings, reports: readonly PacingReport[]): string {
  const number = (value: number, digits = 0) => value.toFixed(digits);
  const first = reports[0];
  const lines = [
    `Pacing: ${settings.messages} messages, ${settings.instances} send function instances (batches of ${settings.batchSize}); the Graph peer allows ${settings.count} sends per ${settings.windowMs} ms per mailbox (Exchange's 30 per minute, ${number(60_000 / settings.windowMs, 0)}× faster), ${settings.concurrentRequests} requests at once, ${settings.recipientsPerDay} recipients a day; the relay: messagesPerMinute ${first?.relayMessagesPerMinute ?? relayMessagesPerMinute(settings.count, settings.windowMs)}, concurrentRequests ${settings.concurrentRequests}, maxWaitSeconds ${first?.maxWaitSeconds ?? '-'}; all DynamoDB on the emulator`,
    '',
    table(
      [
        'scenario',
        'allowed msg/s',
        'relay schedule msg/s',
        'achieved msg/s',
        'achieved ÷ allowed',
        'achieved ÷ schedule',
        '429s at the peer',
        'peak requests open',
        'delivered (unique)',
        'pacing table reads / writes per msg',
        'wall s',
      ],
      reports.map((report) => [
        report.title + (report.complete ? '' : ' (INCOMPLETE)'),
        number(report.allowedRate, 1),
        number(report.relayScheduleRate, 1),
        number(report.achievedRate, 1),
        number(report.achievedToAllowed, 2),
        number(report.achievedToSchedule, 2),
        report.throttled === 0
          ? '0'
          : Object.entries(report.throttledByCode)
              .filter(([, count]) => count > 0)
              .map(([code, count]) => `${count} ${code}`)
              .join(', '),
        String(report.peakRequestsOpen),
        `${report.delivered} (${report.deliveredUnique})`,
        `${number(report.storePerMessage.pacing.reads, 2)} / ${number(report.storePerMessage.pacing.writes, 2)}`,
        number(report.wallMs / 1000, 1),
      ]),
    ),
    '',
    table(
      [
        'scenario',
        'worst mailbox ÷ allowed',
        'busiest window',
        'refused writes/msg (pacing)',
        'ledger r / w per msg',
        'extra receives/msg',
        'dead-lettered',
        'CPU ms/msg (all instances)',
      ],
      reports.map((report) => [
        report.title,
        number(report.worstMailboxToAllowed, 2),
        `${report.busiestWindow} of ${report.peerLimit.count}`,
        number(report.storePerMessage.pacing.refused, 2),
        `${number(report.storePerMessage.ledger.reads + report.storePerMessage.suppression.reads, 2)} / ${number(report.storePerMessage.ledger.writes + report.storePerMessage.suppression.writes, 2)}`,
        number(report.extraReceivesPerMessage, 2),
        String(report.deadLettered),
        number(report.instanceCpuMsPerMessage, 1),
      ]),
    ),
  ];
  const logs = reports.flatMap((report) =>
    Object.entries(report.notableLogs)
      .sort(([, a], [, b]) => b - a)
      .map(([message, count]) => `  ${report.title}: ${count} × ${message}`),
  );
  const throttles = reports
    .filter((report) => report.throttled > 0)
    .map((report) => `  ${report.title}: ${report.throttledAtSeconds.join(', ')}`);
  if (throttles.length > 0)
    lines.push('', "The peer's 429s, seconds after the first accepted send:", ...throttles);
  if (logs.length > 0) lines.push('', 'Instance log lines (warnings, errors, waits on the queue):', ...logs);
  const calls = reports.flatMap((report) =>
    Object.entries(report.storeCalls.calls)
      .filter(([name]) => name.startsWith(TABLES.pacingTableName))
      .sort(([a], [b]) => a.localeCompare(b))
      .map(
        ([name, count]) =>
          `  ${report.title}: ${name.split(' ')[1]} ${number(count / report.messages, 2)}/msg (refused ${number((report.storeCalls.conditionFailed[name] ?? 0) / report.messages, 2)})`,
      ),
  );
  if (calls.length > 0) lines.push('', 'Pacing table calls by operation:', ...calls);
  lines.push(
    '',
    `Targets: achieved ÷ allowed ≥ 0.95, no 429, ≤ ${settings.concurrentRequests} requests open, every message delivered once.`,
  );
  return lines.join('\n');
}
