/**
 * `npm run bench [-- --batches N --warmup N --answer-ms MS --only graph-1,ses --out FILE --cpu-prof DIR]`
 * `npm run bench -- --only pacing-1,pacing-5 [--pacing-messages N --pacing-instances N --pacing-count N
 *   --pacing-window-ms MS --pacing-max-wait S]`
 * `npm run bench -- --only cold-start [--config FILE --cold-runs N]`
 *
 * The real send function side by side with what a user would write by hand, in one run, as ratios:
 *
 * - The relay is the send bundle exactly as `cdk synth` builds it (bundles.ts synthesizes the
 *   project's SendFunction construct, rebuilt on every run so it measures the code as it is now). It
 *   runs as one warm Lambda instance (lambda-worker.ts): a process that imports the bundle once and
 *   invokes its `handler` with SQS batches of 10 back to back, configured only the way Lambda
 *   configures it (MAIL_RELAY_SETTINGS made by lib/config.ts from a configuration, the standard
 *   AWS_ENDPOINT_URL_* variables, NODE_EXTRA_CA_CERTS for the local peers' certificates).
 * - The yardstick is hand-written-handler.ts: a sequential loop per provider (fetch for Graph, SESv2
 *   SendEmail, nodemailer without pooling), bundled by the same construct and run the same way.
 * - The peers run in their own process (peers.ts), so the measured process's CPU is the function's
 *   alone: the project's Graph and SMTP peers, and a zero-cost stub for DynamoDB, SQS, EventBridge,
 *   Secrets Manager and SES (aws-stub.ts) that counts every call by API. Each provider answers a send
 *   after a fixed time (50 ms); AWS APIs answer at once, so their latency in AWS is not in the figures.
 *
 * Bounds, per batch of 10 with answers after T: Graph with one mailbox may have 4 requests in flight
 * (Graph's limit per mailbox), so 3 waves: 10 / (3 T) ≈ 67 msg/s at 50 ms; every other scenario could
 * send the whole batch at once: 10 / T = 200 msg/s. CPU per message is process.cpuUsage() over the
 * measured batches (waiting for an answer costs none), log bytes what the function wrote to stdout and
 * stderr (its CloudWatch Logs volume, EMF metrics included).
 *
 * Prints the table (stdout) and writes the figures as JSON to bench-results.json (or --out). A
 * measurement for comparing code on one machine, not a test: nothing here asserts on time, and it is
 * not part of `npm test`. Runs offline and takes about a minute.
 *
 * The pacing scenarios (pacing.ts, after the others) measure fleet-wide pacing instead: a backlog of
 * 2,000 messages from one Graph mailbox (pacing-1) or five (pacing-5), sent by 5 instances of the
 * send bundle that poll a real queue (the SQS emulator), pacing through the DynamoDB emulator, against
 * the Graph peer enforcing Exchange's limits scaled down in time (30 per second instead of per
 * minute). They print their own table: achieved rate against the allowed one, 429s, peak requests
 * open, messages delivered once, DynamoDB calls per message. They take about three minutes.
 *
 * The cold-start section (cold-start.ts, last) measures every function of a configuration (default
 * examples/full.config.json) as deployed: bundle size and import time in fresh processes, as a ratio
 * to an empty handler bundled the same way. It takes about a minute.
 *
 * --cpu-prof DIR also writes a V8 CPU profile of the relay's measured batches per scenario to DIR and
 * prints where its CPU goes (by area, package and function, mapped through the bundle's source map).
 * The profiler costs CPU itself: compare figures of runs without it.
 */
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { REPO_ROOT } from '../../lib/relay-function.ts';
import { type SqsEmulator, startSqsEmulator } from '../../local/emulators.ts';
import { buildBundles } from './bundles.ts';
import { DEFAULT_COLD_START_CONFIG, formatColdStartReport, measureColdStart } from './cold-start.ts';
import {
  formatPacingReport,
  PACING_SCENARIOS,
  type PacingReport,
  type PacingSettings,
  runPacingScenario,
} from './pacing.ts';
import { formatProfileSummary, summarizeProfile } from './profile-summary.ts';
import {
  type BenchSettings,
  formatReport,
  type Machine,
  machineLine,
  type ScenarioReport,
  scenarioReport,
} from './report.ts';
import { type FunctionRun, type Peers, type RunOptions, runFunction, startPeers } from './run.ts';
import { GRAPH_MAILBOX_CONCURRENCY, type Provider, SCENARIOS } from './scenarios.ts';

const BATCH_SIZE = 10;
/** The construct's default function timeout (sendFunction.timeoutSeconds). */
const FUNCTION_TIMEOUT_MS = 30_000;
/** Exchange Online's recipient rate limit per mailbox and day (the relay's default too). */
const EXCHANGE_RECIPIENTS_PER_DAY = 10_000;
/** A pacing scenario that has not delivered everything by then is reported as it stands. */
const PACING_TIMEOUT_MS = 10 * 60_000;

const { values } = parseArgs({
  options: {
    batches: { type: 'string', default: '20' },
    warmup: { type: 'string', default: '5' },
    'answer-ms': { type: 'string', default: '50' },
    only: { type: 'string' },
    out: { type: 'string', default: 'bench-results.json' },
    'cpu-prof': { type: 'string' },
    'pacing-messages': { type: 'string', default: '2000' },
    'pacing-instances': { type: 'string', default: '5' },
    'pacing-count': { type: 'string', default: '30' },
    'pacing-window-ms': { type: 'string', default: '1000' },
    'pacing-max-wait': { type: 'string' },
    config: { type: 'string' },
    'cold-runs': { type: 'string', default: '9' },
  },
});
const positive = (value: string, flag: string) => {
  const parsed = Number(value);
  if (!Number.isInteger(parsed) || parsed < 1) throw new Error(`--${flag} must be a whole number >= 1`);
  return parsed;
};
const settings: BenchSettings = {
  batchSize: BATCH_SIZE,
  measuredBatches: positive(values.batches, 'batches'),
  warmupBatches: positive(values.warmup, 'warmup'),
  answerMs: positive(values['answer-ms'], 'answer-ms'),
  profiled: values['cpu-prof'] !== undefined,
};
const pacingSettings: PacingSettings = {
  messages: positive(values['pacing-messages'], 'pacing-messages'),
  instances: positive(values['pacing-instances'], 'pacing-instances'),
  batchSize: BATCH_SIZE,
  count: positive(values['pacing-count'], 'pacing-count'),
  windowMs: positive(values['pacing-window-ms'], 'pacing-window-ms'),
  concurrentRequests: GRAPH_MAILBOX_CONCURRENCY,
  recipientsPerDay: EXCHANGE_RECIPIENTS_PER_DAY,
  ...(values['pacing-max-wait'] !== undefined && {
    maxWaitSeconds: positive(values['pacing-max-wait'], 'pacing-max-wait'),
  }),
  functionTimeoutMs: FUNCTION_TIMEOUT_MS,
  timeoutMs: PACING_TIMEOUT_MS,
};
/** The `--only` name of the cold-start section (cold-start.ts). */
const COLD_START = 'cold-start';
const only = values.only?.split(',').map((id) => id.trim());
const scenarios = SCENARIOS.filter((scenario) => !only || only.includes(scenario.id));
const pacingScenarios = PACING_SCENARIOS.filter((scenario) => !only || only.includes(scenario.id));
const coldStart = !only || only.includes(COLD_START);
if (scenarios.length + pacingScenarios.length === 0 && !coldStart) {
  const ids = [...SCENARIOS, ...PACING_SCENARIOS].map(({ id }) => id).concat(COLD_START);
  throw new Error(`--only names no scenario; there are ${ids.join(', ')}`);
}
const log = (line: string) => console.error(`[bench] ${line}`);
const cpuProfileDirectory = values['cpu-prof'] !== undefined ? resolve(values['cpu-prof']) : undefined;

const directory = mkdtempSync(join(tmpdir(), 'mail-relay-bench-'));
// The children go with the IPC channel; the temporary directory is removed here.
process.once('SIGINT', () => {
  rmSync(directory, { recursive: true, force: true });
  process.exit(130);
});
let peers: Peers | undefined;
let sqs: SqsEmulator | undefined;
try {
  const reports: ScenarioReport[] = [];
  const pacingReports: PacingReport[] = [];
  let relayBundle: string | undefined;
  if (scenarios.length + pacingScenarios.length > 0) {
    log('building the send bundle and the hand-written loop (cdk synth of the constructs) …');
    const bundles = await buildBundles(directory, { sourceMaps: cpuProfileDirectory !== undefined });
    relayBundle = bundles.relay;
    log(`starting the peers (answers after ${settings.answerMs} ms) …`);
    peers = await startPeers(settings.answerMs);
    const options: RunOptions = {
      directory,
      workerScript: bundles.worker,
      peers,
      batchSize: settings.batchSize,
      warmupBatches: settings.warmupBatches,
      measuredBatches: settings.measuredBatches,
      timeoutMs: FUNCTION_TIMEOUT_MS,
      ...(cpuProfileDirectory !== undefined && { cpuProfileDirectory }),
    };
    if (options.cpuProfileDirectory !== undefined)
      mkdirSync(options.cpuProfileDirectory, { recursive: true });
    // One loop per provider: sequential, it does not care how many mailboxes send.
    const loops = new Map<Provider, FunctionRun>();
    for (const scenario of scenarios) {
      log(`${scenario.title}: relay …`);
      const relay = await runFunction('relay', scenario, bundles.relay, options);
      let loop = loops.get(scenario.provider);
      if (!loop) {
        log(`${scenario.title}: hand-written loop …`);
        loop = await runFunction('hand-written', scenario, bundles.handWritten, options);
        loops.set(scenario.provider, loop);
      }
      reports.push(scenarioReport(scenario, settings, relay, loop));
    }
    if (pacingScenarios.length > 0) {
      log('starting the SQS emulator for the pacing scenarios …');
      sqs = await startSqsEmulator(0);
      for (const scenario of pacingScenarios) {
        pacingReports.push(
          await runPacingScenario(scenario, pacingSettings, {
            directory,
            pollerScript: bundles.pacingWorker,
            bundle: bundles.relay,
            peers,
            sqs,
            log,
          }),
        );
      }
    }
  }
  const coldStartReport =
    coldStart &&
    (await measureColdStart({
      directory,
      configPath: resolve(values.config ?? DEFAULT_COLD_START_CONFIG),
      runs: positive(values['cold-runs'], 'cold-runs'),
      log,
    }));
  const [cpu] = cpus();
  const machine: Machine = {
    cpu: cpu?.model.trim() ?? 'unknown CPU',
    cores: cpus().length,
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    node: process.version,
    platform: `${process.platform} ${process.arch}`,
    loadAverage: loadavg(),
  };
  if (reports.length > 0) console.log(formatReport(machine, settings, reports));
  else console.log(machineLine(machine));
  if (pacingReports.length > 0) console.log(`\n${formatPacingReport(pacingSettings, pacingReports)}`);
  if (coldStartReport) console.log(`\n${formatColdStartReport(coldStartReport)}`);
  if (cpuProfileDirectory !== undefined && relayBundle !== undefined) {
    for (const report of reports) {
      const profile = join(cpuProfileDirectory, `${report.id}.cpuprofile`);
      const summary = summarizeProfile(profile, relayBundle, REPO_ROOT);
      console.log(`\n${formatProfileSummary(report.title, summary, report.relay.messages)}`);
    }
    log(`CPU profiles in ${cpuProfileDirectory} (open them in Chrome DevTools or speedscope)`);
  }
  const out = resolve(values.out);
  writeFileSync(
    out,
    `${JSON.stringify(
      {
        at: new Date().toISOString(),
        machine,
        settings,
        scenarios: reports,
        ...(pacingReports.length > 0 && { pacing: { settings: pacingSettings, scenarios: pacingReports } }),
        ...(coldStartReport && { coldStart: coldStartReport }),
      },
      null,
      2,
    )}\n`,
  );
  log(`figures written to ${out}`);
} catch (error) {
  log(`failed: ${error instanceof Error ? error.message : String(error)}`);
  process.exitCode = 1;
} finally {
  await peers?.stop();
  await sqs?.stop();
  rmSync(directory, { recursive: true, force: true });
}
