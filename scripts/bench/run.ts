import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { SETTINGS_ENV_VAR } from '../../lambda/core/settings.ts';
import type {
  PeerCounts,
  PeerEndpoints,
  PeerGraphLimits,
  PeerMailboxPacing,
  PeersMessage,
  PeersRequest,
  WorkerMessage,
  WorkerPlan,
  WorkerRequest,
  WorkerResult,
} from './protocol.ts';
import {
  functionEnvironment,
  handWrittenSettings,
  messageBody,
  type Provider,
  QUEUE_ARN,
  relaySettings,
  type Scenario,
} from './scenarios.ts';

const PEERS_ENTRY = fileURLToPath(new URL('./peers.ts', import.meta.url));
/** Generous: a warm-up that takes this long is broken, not slow. */
const STEP_TIMEOUT_MS = 120_000;

export interface RunOptions {
  readonly directory: string;
  readonly workerScript: string;
  readonly peers: Peers;
  readonly batchSize: number;
  readonly warmupBatches: number;
  readonly measuredBatches: number;
  /** The construct's default function timeout: what getRemainingTimeInMillis starts from. */
  readonly timeoutMs: number;
  /** Writes a V8 CPU profile of the measured batches of each relay run here, as <scenario>.cpuprofile. */
  readonly cpuProfileDirectory?: string;
}

/** One function measured as one warm instance, with what the peers saw meanwhile. */
export interface FunctionRun {
  readonly result: WorkerResult;
  readonly importMs: number;
  /** AWS calls by API during the measured batches (the provider's SESv2.SendEmail included). */
  readonly awsCalls: Record<string, number>;
  /** Graph requests by operation during the measured batches. */
  readonly graphCalls: Record<string, number>;
  /** Mean time the Graph peer took to answer a sendMail (arrival to answer written), when there were any. */
  readonly graphAnswerMs?: number;
  /** New SMTP connections during the measured batches. */
  readonly smtpConnections: number;
}

/** The peers process (peers.ts), started once for the whole run. */
export interface Peers {
  readonly endpoints: PeerEndpoints;
  counts(): Promise<PeerCounts>;
  /** Replaces the limits the Graph peer enforces per mailbox ({} turns them off). */
  setGraphLimits(limits: PeerGraphLimits): Promise<void>;
  /** What the mailboxes' sends met at the Graph peer so far (lowercase addresses). */
  graphPacing(mailboxes: readonly string[]): Promise<Readonly<Record<string, PeerMailboxPacing>>>;
  stop(): Promise<void>;
}

export async function startPeers(answerMs: number): Promise<Peers> {
  const child = spawn(process.execPath, ['--import', 'tsx', PEERS_ENTRY], {
    env: { ...process.env, BENCH_ANSWER_MS: String(answerMs) },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const ready = await nextMessage<PeersMessage>(child, (message) => message.type === 'ready', 'the peers');
  if (ready.type !== 'ready') throw new Error('unreachable');
  let nextId = 0;
  /** Sends a request and waits for the answer of the same type and id. */
  const ask = async (request: Exclude<PeersRequest, { type: 'stop' }>): Promise<PeersMessage> => {
    child.send(request);
    return nextMessage<PeersMessage>(
      child,
      (message) => message.type === request.type && 'id' in message && message.id === request.id,
      'the peers',
    );
  };
  return {
    endpoints: ready.endpoints,
    async counts() {
      const reply = await ask({ type: 'counts', id: nextId++ });
      if (reply.type !== 'counts') throw new Error('unreachable');
      return reply.counts;
    },
    async setGraphLimits(limits) {
      await ask({ type: 'limits', id: nextId++, limits });
    },
    async graphPacing(mailboxes) {
      const reply = await ask({ type: 'pacing', id: nextId++, mailboxes });
      if (reply.type !== 'pacing') throw new Error('unreachable');
      return reply.mailboxes;
    },
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = once(child, 'exit');
      child.send({ type: 'stop' } satisfies PeersRequest);
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

export type FunctionKind = 'relay' | 'hand-written';

/**
 * Runs one function (the relay's send bundle or the hand-written loop's) for a scenario in a fresh
 * worker: warm-up batches, then the measured ones, with the peers' counts taken around them.
 */
export async function runFunction(
  kind: FunctionKind,
  scenario: Scenario,
  bundle: string,
  options: RunOptions,
): Promise<FunctionRun> {
  const { peers, batchSize, warmupBatches, measuredBatches } = options;
  const functionName = kind === 'relay' ? 'mail-relay-send' : 'hand-written-send';
  const batches = Array.from({ length: warmupBatches + measuredBatches }, (_, batch) =>
    Array.from({ length: batchSize }, (_, record) => messageBody(scenario, batch * batchSize + record)),
  );
  const plan: WorkerPlan = {
    bundle: pathToFileURL(bundle).href,
    warmupBatches,
    measuredBatches,
    batches,
    queueArn: QUEUE_ARN,
    functionName,
    timeoutMs: options.timeoutMs,
    ...(kind === 'relay' &&
      options.cpuProfileDirectory !== undefined && {
        cpuProfile: join(options.cpuProfileDirectory, `${scenario.id}.cpuprofile`),
      }),
  };
  const planFile = join(options.directory, `plan-${kind}-${scenario.id}.json`);
  writeFileSync(planFile, JSON.stringify(plan));
  const own: Record<string, string> =
    kind === 'relay'
      ? { [SETTINGS_ENV_VAR]: JSON.stringify(relaySettings(scenario, peers.endpoints)) }
      : { BENCH_HAND_WRITTEN: JSON.stringify(handWrittenSettings(scenario.provider, peers.endpoints)) };
  // The peer's self-signed certificate, trusted the way any extra CA is trusted in Lambda.
  const ca = scenario.provider === 'ses' ? undefined : peers.endpoints.caCertificates[scenario.provider];
  const caFile = join(options.directory, `ca-${scenario.provider}.pem`);
  if (ca !== undefined) writeFileSync(caFile, ca);
  const worker = spawn(process.execPath, [options.workerScript, planFile], {
    env: functionEnvironment(peers.endpoints, functionName, {
      ...own,
      ...(ca !== undefined && { NODE_EXTRA_CA_CERTS: caFile }),
    }),
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
  });
  const logs = tailOf(worker);
  const what = `${kind} ${scenario.id}`;
  try {
    const warmed = await nextMessage<WorkerMessage>(worker, () => true, what);
    if (warmed.type === 'error') throw new Error(`${what} failed: ${warmed.error}`);
    if (warmed.type !== 'warmed') throw new Error(`${what}: unexpected ${warmed.type}`);
    if (warmed.failedRecords > 0) {
      throw new Error(`${what}: ${warmed.failedRecords} records failed in the warm-up`);
    }
    const before = await peers.counts();
    worker.send({ type: 'measure' } satisfies WorkerRequest);
    const done = await nextMessage<WorkerMessage>(worker, () => true, what);
    if (done.type === 'error') throw new Error(`${what} failed: ${done.error}`);
    if (done.type !== 'result') throw new Error(`${what}: unexpected ${done.type}`);
    const after = await peers.counts();
    const result = done.result;
    if (result.failedRecords > 0) throw new Error(`${what}: ${result.failedRecords} records failed`);
    const run: FunctionRun = {
      result,
      importMs: warmed.importMs,
      awsCalls: difference(after.aws, before.aws),
      graphCalls: difference(after.graph, before.graph),
      smtpConnections: after.smtpConnections - before.smtpConnections,
      ...(after.graph.sendMail !== before.graph.sendMail && {
        graphAnswerMs:
          (after.graphSendMailMs - before.graphSendMailMs) /
          ((after.graph.sendMail ?? 0) - (before.graph.sendMail ?? 0)),
      }),
    };
    const delivered = deliveredBy(scenario.provider, before, after);
    if (delivered !== result.messages) {
      throw new Error(`${what}: the provider received ${delivered} messages, not ${result.messages}`);
    }
    return run;
  } catch (error) {
    const tail = logs().trim();
    throw new Error(`${(error as Error).message}${tail ? `\n--- its last output ---\n${tail}` : ''}`);
  } finally {
    await stopWorker(worker);
  }
}

/** Closing the IPC channel ends the worker; it is killed if it lingers. */
export async function stopWorker(worker: ChildProcess): Promise<void> {
  if (worker.exitCode !== null || worker.signalCode !== null) return;
  const exited = once(worker, 'exit');
  if (worker.connected) worker.disconnect();
  const timer = setTimeout(() => worker.kill('SIGKILL'), 5_000);
  await exited;
  clearTimeout(timer);
}

function deliveredBy(provider: Provider, before: PeerCounts, after: PeerCounts): number {
  switch (provider) {
    case 'graph':
      return after.graphDelivered - before.graphDelivered;
    case 'ses':
      return (after.aws['SESv2.SendEmail'] ?? 0) - (before.aws['SESv2.SendEmail'] ?? 0);
    case 'smtp':
      return after.smtpReceived - before.smtpReceived;
  }
}

function difference(
  after: Readonly<Record<string, number>>,
  before: Readonly<Record<string, number>>,
): Record<string, number> {
  const changed: Record<string, number> = {};
  for (const [name, count] of Object.entries(after)) {
    const delta = count - (before[name] ?? 0);
    if (delta !== 0) changed[name] = delta;
  }
  return changed;
}

/** The next IPC message that matches; rejects if the child exits first or takes too long. */
export function nextMessage<T>(
  child: ChildProcess,
  matches: (message: T) => boolean,
  what: string,
  timeoutMs = STEP_TIMEOUT_MS,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onMessage = (message: T) => {
      if (!matches(message)) return;
      cleanup();
      resolve(message);
    };
    const onExit = (code: number | null, signal: string | null) => {
      cleanup();
      reject(new Error(`${what} exited (${signal ?? code}) before answering`));
    };
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`${what} did not answer within ${timeoutMs / 1000} s`));
    }, timeoutMs);
    const cleanup = () => {
      clearTimeout(timer);
      child.off('message', onMessage);
      child.off('exit', onExit);
    };
    child.on('message', onMessage);
    child.once('exit', onExit);
  });
}

/** Keeps the last 16 KB a child wrote (stdout and stderr), for the error when it fails. */
export function tailOf(child: ChildProcess): () => string {
  let tail = '';
  const keep = (chunk: Buffer) => {
    tail = (tail + chunk.toString('utf8')).slice(-16_384);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  return () => tail;
}
