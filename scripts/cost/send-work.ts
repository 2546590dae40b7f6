import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { PacingConfig } from '../../lambda/core/pacing/limits.ts';
import { SETTINGS_ENV_VAR } from '../../lambda/core/settings.ts';
import type { RelaySettings } from '../../lambda/send/settings.ts';
import type { RelayConfig } from '../../lib/config.ts';
import type { WorkerMessage, WorkerPlan, WorkerRequest, WorkerResult } from '../bench/protocol.ts';
import { nextMessage, type Peers, stopWorker, tailOf } from '../bench/run.ts';
import { functionEnvironment, QUEUE_ARN } from '../bench/scenarios.ts';
import type { AwsRecord, AwsRecorder } from './aws-recorder.ts';
import type { RelayStackModel, StackFunction } from './stack-functions.ts';

/** The provider families a workload can send through (an SMTP workload uses the first SMTP connection). */
export type ProviderFamily = 'graph' | 'ses' | 'smtp';

/** What one function did for a workload's messages (per workload message where it says so). */
export interface StageWork {
  /** Logical ID of the function in the template. */
  readonly functionId: string;
  readonly batchSize: number;
  /** Records it took in the measured batches (the workload's, or those an earlier function passed on). */
  readonly records: number;
  /** It called the provider (its traffic to the provider leaves from where it runs). */
  readonly sentToProvider: boolean;
  readonly cpuMsPerMessage: number;
  readonly logBytesPerMessage: number;
  readonly emfBytesPerMessage: number;
  readonly logLinesPerMessage: number;
  /** EMF documents per message, over every invocation of the run (warm-up included). */
  readonly emfDocumentsPerMessage: number;
  /** Every metric (name and dimension values) the run's EMF documents defined. */
  readonly metrics: readonly string[];
  /** The AWS calls of the measured batches, as the recorder saw them. */
  readonly aws: AwsRecord;
  /** Invocations per workload message. */
  readonly invocationsPerMessage: number;
}

/** What the relay's send functions did for a workload of one provider. */
export interface SendWork {
  readonly provider: ProviderFamily;
  /** The provider name the workload's messages were routed to first (graph, ses, smtp:<name> …). */
  readonly providerName: string;
  readonly senders: readonly string[];
  readonly route?: string;
  /** Messages of the measured batches. */
  readonly messages: number;
  readonly messageBytes: number;
  /** The send function, then the function it passed the messages on to (static egress), if any. */
  readonly stages: readonly StageWork[];
  /** Bytes of the SES SendEmail requests, per message (the SES provider payload), when SES sent. */
  readonly sesRequestBytesPerMessage?: number;
  /** The last SendEmail input, from which the feedback measurement builds its SES events. */
  readonly lastSesSend?: Record<string, unknown>;
}

export interface SendWorkOptions {
  readonly directory: string;
  readonly workerScript: string;
  readonly bundle: string;
  readonly peers: Peers;
  readonly recorder: AwsRecorder;
  readonly messageKb: number;
  readonly warmupBatches: number;
  readonly measuredBatches: number;
}

const FUNCTION_NAME = 'mail-relay-cost-send';

/**
 * Runs the real send bundle as one warm Lambda instance (the benchmark's worker) on a workload of
 * ~messageKb messages for one provider of the configuration, with the settings the template gives
 * the send function (Graph and SMTP pointed at the benchmark's peers). When it passes the messages on
 * to another function's queue (the static-egress sender), that function runs next on what it passed.
 */
export async function measureSendWork(
  config: RelayConfig,
  stack: RelayStackModel,
  provider: ProviderFamily,
  options: SendWorkOptions,
): Promise<SendWork> {
  const target = workloadTarget(config, provider);
  const send = stack.sendFunction;
  const total = (options.warmupBatches + options.measuredBatches) * send.batchSize;
  const bodies = Array.from({ length: total }, (_, index) =>
    messageOfSize(target.senders, index, options.messageKb),
  );
  const stages: StageWork[] = [];
  let sesBytes: number | undefined;
  let lastSesSend: Record<string, unknown> | undefined;
  let next: { fn: StackFunction; bodies: string[] } | undefined = { fn: send, bodies };
  let measuredMessages = 0;
  while (next) {
    const fn: StackFunction = next.fn;
    const run = await runStage(fn, next.bodies, provider, options);
    if (stages.length === 0) measuredMessages = run.result.messages;
    const per = (value: number) => value / measuredMessages;
    stages.push({
      functionId: fn.id,
      batchSize: fn.batchSize,
      records: run.result.messages,
      sentToProvider: run.delivered > 0,
      cpuMsPerMessage: per(run.result.cpuUserMs + run.result.cpuSystemMs),
      logBytesPerMessage: per(run.result.logBytes),
      emfBytesPerMessage: per(run.result.emfBytes),
      logLinesPerMessage: per(run.result.logLines),
      emfDocumentsPerMessage:
        (run.emf.documents / next.bodies.length) * (run.result.messages / measuredMessages),
      metrics: run.emf.metrics,
      aws: run.aws,
      invocationsPerMessage: per(Math.ceil(run.result.messages / fn.batchSize)),
    });
    sesBytes ??= run.aws.apis['SESv2.SendEmail']?.requestBytes;
    lastSesSend ??= options.recorder.lastSesSend();
    // Messages handed to a queue another function consumes (not retries or waits on its own queue).
    const handedOver: StageRun['allQueued'] = run.allQueued.filter((message) => {
      const consumer = stack.consumerOf(message.queueUrl);
      return consumer !== undefined && consumer.id !== fn.id;
    });
    const consumer: StackFunction | undefined = handedOver[0] && stack.consumerOf(handedOver[0].queueUrl);
    next = consumer ? { fn: consumer, bodies: handedOver.map((message) => message.body) } : undefined;
    if (stages.length > 3) throw new Error('the workload was passed on more than three times');
  }
  if (!stages.some((stage) => stage.sentToProvider)) {
    throw new Error(`no function of the ${provider} workload sent to the provider`);
  }
  return {
    provider,
    providerName: target.providerName,
    senders: target.senders,
    ...(target.route !== undefined && { route: target.route }),
    messages: measuredMessages,
    messageBytes: Buffer.byteLength(bodies[0] ?? ''),
    stages,
    ...(sesBytes !== undefined && { sesRequestBytesPerMessage: sesBytes / measuredMessages }),
    ...(lastSesSend && { lastSesSend }),
  };
}

interface StageRun {
  readonly result: WorkerResult;
  readonly aws: AwsRecord;
  /** Messages it queued over the whole run, warm-up included (what a next function takes). */
  readonly allQueued: AwsRecord['queuedMessages'];
  readonly emf: { documents: number; metrics: string[] };
  /** Messages the provider received from it during the measured batches. */
  readonly delivered: number;
}

async function runStage(
  fn: StackFunction,
  bodies: readonly string[],
  provider: ProviderFamily,
  options: SendWorkOptions,
): Promise<StageRun> {
  const { peers, recorder } = options;
  const batches: string[][] = [];
  for (let start = 0; start < bodies.length; start += fn.batchSize) {
    batches.push(bodies.slice(start, start + fn.batchSize));
  }
  const warmupBatches = Math.min(options.warmupBatches, batches.length - 1);
  const plan: WorkerPlan = {
    bundle: pathToFileURL(options.bundle).href,
    warmupBatches,
    measuredBatches: batches.length - warmupBatches,
    batches,
    queueArn: QUEUE_ARN,
    functionName: FUNCTION_NAME,
    timeoutMs: fn.timeoutSeconds * 1000,
  };
  const planFile = join(options.directory, `plan-${provider}-${fn.id}.json`);
  writeFileSync(planFile, JSON.stringify(plan));
  const ca = provider === 'ses' ? undefined : peers.endpoints.caCertificates[provider];
  const caFile = join(options.directory, `ca-${provider}.pem`);
  if (ca !== undefined) writeFileSync(caFile, ca);
  const settings = pointAtPeers(fn.settings(recorder.endpoint) as RelaySettings, peers);
  recorder.reset();
  const worker = spawn(process.execPath, [options.workerScript, planFile], {
    env: functionEnvironment({ ...peers.endpoints, aws: recorder.endpoint }, FUNCTION_NAME, {
      ...fn.environment,
      AWS_LAMBDA_FUNCTION_MEMORY_SIZE: String(fn.memoryMiB),
      [SETTINGS_ENV_VAR]: JSON.stringify(settings),
      ...(ca !== undefined && { NODE_EXTRA_CA_CERTS: caFile }),
    }),
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
  });
  const output = collectLines(worker.stdout);
  const tail = tailOf(worker);
  const what = `${fn.id} (${provider} workload)`;
  try {
    const warmed = await nextMessage<WorkerMessage>(worker, () => true, what);
    if (warmed.type !== 'warmed') throw new Error(`${what} failed: ${JSON.stringify(warmed)}`);
    const warmupQueued = recorder.snapshot().queuedMessages;
    const before = await peers.counts();
    recorder.reset();
    worker.send({ type: 'measure' } satisfies WorkerRequest);
    const done = await nextMessage<WorkerMessage>(worker, () => true, what);
    if (done.type !== 'result') throw new Error(`${what} failed: ${JSON.stringify(done)}`);
    const aws = recorder.snapshot();
    const after = await peers.counts();
    const result = done.result;
    if (result.failedRecords > 0) throw new Error(`${what}: ${result.failedRecords} records failed`);
    const delivered = {
      graph: after.graphDelivered - before.graphDelivered,
      smtp: after.smtpReceived - before.smtpReceived,
      ses: aws.apis['SESv2.SendEmail']?.calls ?? 0,
    }[provider];
    await stopWorker(worker);
    const emf = emfOf(await output);
    return { result, aws, allQueued: [...warmupQueued, ...aws.queuedMessages], emf, delivered };
  } catch (error) {
    throw new Error(`${(error as Error).message}\n--- its last output ---\n${tail().trim()}`);
  } finally {
    await stopWorker(worker);
  }
}

/**
 * Who the workload sends as: the first route whose chain starts with the provider (so the Route
 * dimension and the chain are the configuration's own), else the provider's own senders. A wildcard
 * sender becomes ten mailboxes, as ten apps would send, so no one mailbox meets Graph's limits.
 */
export function workloadTarget(
  config: RelayConfig,
  provider: ProviderFamily,
): { providerName: string; senders: string[]; route?: string } {
  const familyOf = (name: string) => name.split(':')[0];
  for (const route of config.routes ?? []) {
    const first = route.providers[0];
    const pattern = route.from.find((from) => from !== '*');
    if (first === undefined || familyOf(first) !== provider || pattern === undefined) continue;
    return { providerName: first, senders: sendersFor(pattern), route: route.name };
  }
  const own = {
    graph: config.graph?.senders[0],
    ses: config.ses?.identities[0],
    smtp: smtpSendersOf(config)[0],
  }[provider];
  if (own === undefined) throw new Error(`the configuration has no ${provider} provider`);
  const providerName = provider === 'smtp' ? (smtpNamesOf(config)[0] ?? 'smtp') : provider;
  return { providerName, senders: sendersFor(own.includes('@') ? own : `*@${own}`) };
}

function sendersFor(pattern: string): string[] {
  if (!pattern.includes('*')) return [pattern];
  return Array.from({ length: 10 }, (_, index) => pattern.replace('*', `app${index}`));
}

function smtpSendersOf(config: RelayConfig): string[] {
  const smtp = config.smtp as unknown as {
    senders?: string[];
    connections?: Record<string, { senders: string[] }>;
  };
  if (!smtp) return [];
  return smtp.senders ?? Object.values(smtp.connections ?? {})[0]?.senders ?? [];
}

function smtpNamesOf(config: RelayConfig): string[] {
  const smtp = config.smtp as unknown as { connections?: Record<string, unknown> } | undefined;
  if (!smtp?.connections) return ['smtp'];
  return Object.keys(smtp.connections).map((name) => `smtp:${name}`);
}

/** The stack's settings with Graph and every SMTP connection pointed at the benchmark's peers. */
function pointAtPeers(settings: RelaySettings, peers: Peers): RelaySettings {
  const { graph, smtp } = peers.endpoints;
  return {
    ...settings,
    ...(settings.graph && {
      graph: {
        ...settings.graph,
        tenantId: graph.tenantId,
        clientId: graph.clientId,
        credentialSecretId: graph.credentialSecretArn,
        authorityHost: graph.url,
        graphEndpoint: graph.url,
        pacing: withoutRateLimit(settings.graph.pacing),
      },
    }),
    ...(settings.smtp && {
      smtp: settings.smtp.map(({ credentialSecretId: _secret, oauthScope: _scope, ...connection }) => ({
        ...connection,
        mode: 'smarthost' as const,
        host: smtp.host,
        port: smtp.port,
        tls: 'starttls' as const,
        requireTls: true,
        auth: 'none' as const,
      })),
    }),
  };
}

/**
 * Graph's pacing with the per-mailbox message rate lifted: a workload sends a burst from each mailbox
 * that Exchange's 30 a minute would make wait; the pacing table's calls are the same for a message
 * within its limits, which is what a relay within them does for every message.
 */
function withoutRateLimit(pacing: PacingConfig | undefined): PacingConfig {
  if (pacing === false) return false;
  return { ...pacing, perMailbox: { ...pacing?.perMailbox, messagesPerMinute: 100_000 } };
}

/**
 * A mail request of about `kb` KB (its JSON on the queue): a transactional mail's text and HTML,
 * grown with paragraphs to the size.
 */
export function messageOfSize(senders: readonly string[], index: number, kb: number): string {
  const from = senders[index % senders.length] ?? '';
  const order = 100_000 + index;
  const paragraph =
    'Thank you for your order. We are preparing it for shipping and will let you know when it is on its way. ';
  const base = {
    v: 1,
    from,
    to: [`customer${index}@example.org`],
    subject: `Your order ${order} has been received`,
  };
  const fixed = Buffer.byteLength(JSON.stringify({ ...base, text: '', html: '' }));
  // A third text, two thirds HTML, as a mail with both parts usually is.
  const room = Math.max(0, kb * 1024 - fixed);
  const text = `Hello,\n\n${paragraph.repeat(Math.ceil(room / 3 / paragraph.length))}`.slice(
    0,
    Math.floor(room / 3),
  );
  const htmlBody = `<p>${paragraph}</p>`.repeat(Math.ceil(room / paragraph.length));
  const html = `<!doctype html><html><body>${htmlBody}`.slice(0, room - text.length - 20) + '</body></html>';
  return JSON.stringify({ ...base, text, html });
}

/** Lines a child writes to stdout, until it closes it. */
function collectLines(stream: NodeJS.ReadableStream | null): Promise<string[]> {
  return new Promise((resolve) => {
    let text = '';
    if (!stream) return resolve([]);
    stream.on('data', (chunk: Buffer) => {
      text += chunk.toString('utf8');
    });
    stream.on('end', () => resolve(text.split('\n').filter((line) => line.length > 0)));
  });
}

/** EMF documents among the lines, and every metric they define (name with its dimension values). */
export function emfOf(lines: readonly string[]): { documents: number; metrics: string[] } {
  let documents = 0;
  const metrics = new Set<string>();
  for (const line of lines) {
    if (!line.includes('"_aws"')) continue;
    const document = JSON.parse(line) as Record<string, unknown> & {
      _aws: { CloudWatchMetrics: { Dimensions: string[][]; Metrics: { Name: string }[] }[] };
    };
    documents += 1;
    for (const directive of document._aws.CloudWatchMetrics) {
      for (const dimensions of directive.Dimensions) {
        const values = dimensions.map((name) => `${name}=${String(document[name])}`).join(',');
        for (const metric of directive.Metrics) metrics.add(`${metric.Name}{${values}}`);
      }
    }
  }
  return { documents, metrics: [...metrics].sort() };
}
