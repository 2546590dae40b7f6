import type { FunctionRun } from './run.ts';
import type { Provider, Scenario } from './scenarios.ts';

/** The provider's own call among the AWS calls: not an overhead of the relay. */
const PROVIDER_AWS_CALLS: ReadonlySet<string> = new Set(['SESv2.SendEmail']);

/** The targets of the issue: what "good enough" means against the bound and the hand-written loop. */
export const TARGETS = {
  /** Relay throughput as a share of the bound, at least. */
  minRatioToBound: 0.9,
  /** Relay CPU per message as a multiple of the loop's, at most. */
  maxCpuRatio: 2,
  /** AWS calls per message besides the provider, at most. */
  maxAwsCallsPerMessage: 3,
} as const;

export interface Figures {
  readonly messages: number;
  readonly wallMs: number;
  readonly messagesPerSecond: number;
  /** process.cpuUsage (user + system) over the measured batches, per message. */
  readonly cpuMsPerMessage: number;
  readonly cpuUserMsPerMessage: number;
  readonly cpuSystemMsPerMessage: number;
  /** AWS calls per message by API, the provider's own (SES SendEmail) left out. */
  readonly awsCallsPerMessage: Record<string, number>;
  readonly awsCallsTotalPerMessage: number;
  /** Requests to the provider per message: Graph by operation, SES SendEmail, new SMTP connections. */
  readonly providerCallsPerMessage: Record<string, number>;
  readonly logBytesPerMessage: number;
  /** Of which Embedded Metric Format (metrics). */
  readonly emfBytesPerMessage: number;
  readonly logLinesPerMessage: number;
  /** Provider requests in flight on average: messages × answer time ÷ wall time. */
  readonly providerConcurrency: number;
  /** Measured Graph answer time (arrival to answer); the other peers answer after the fixed time. */
  readonly providerAnswerMs: number;
  readonly invocationMs: { readonly p50: number; readonly p95: number; readonly max: number };
  readonly importMs: number;
}

export interface ScenarioReport {
  readonly id: string;
  readonly title: string;
  readonly provider: Provider;
  readonly bound: number;
  readonly boundNote: string;
  readonly relay: Figures;
  readonly handWritten: Figures;
  readonly relayToBound: number;
  readonly relayToLoop: number;
  readonly cpuRatio: number;
  readonly targets: {
    readonly throughput: boolean;
    readonly cpu: boolean;
    readonly awsCalls: boolean;
  };
}

export function scenarioReport(
  scenario: Scenario,
  settings: BenchSettings,
  relay: FunctionRun,
  handWritten: FunctionRun,
): ScenarioReport {
  const bound = scenario.bound(settings.batchSize, settings.answerMs);
  const relayFigures = figures(scenario.provider, relay, settings.answerMs);
  const loopFigures = figures(scenario.provider, handWritten, settings.answerMs);
  const relayToBound = relayFigures.messagesPerSecond / bound;
  const cpuRatio = relayFigures.cpuMsPerMessage / loopFigures.cpuMsPerMessage;
  return {
    id: scenario.id,
    title: scenario.title,
    provider: scenario.provider,
    bound,
    boundNote: scenario.boundNote,
    relay: relayFigures,
    handWritten: loopFigures,
    relayToBound,
    relayToLoop: relayFigures.messagesPerSecond / loopFigures.messagesPerSecond,
    cpuRatio,
    targets: {
      throughput: relayToBound >= TARGETS.minRatioToBound,
      cpu: cpuRatio <= TARGETS.maxCpuRatio,
      awsCalls: relayFigures.awsCallsTotalPerMessage <= TARGETS.maxAwsCallsPerMessage,
    },
  };
}

function figures(provider: Provider, run: FunctionRun, answerMs: number): Figures {
  const { result } = run;
  const perMessage = (value: number) => value / result.messages;
  const awsCallsPerMessage = Object.fromEntries(
    Object.entries(run.awsCalls)
      .filter(([api]) => !PROVIDER_AWS_CALLS.has(api))
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([api, count]) => [api, perMessage(count)]),
  );
  const providerCalls: Record<string, number> =
    provider === 'graph'
      ? Object.fromEntries(
          Object.entries(run.graphCalls).map(([operation, count]) => [`Graph ${operation}`, count]),
        )
      : provider === 'ses'
        ? { 'SES SendEmail': run.awsCalls['SESv2.SendEmail'] ?? 0 }
        : { 'SMTP new connection': run.smtpConnections };
  const providerAnswerMs = run.graphAnswerMs ?? answerMs;
  const sorted = [...result.invocationMs].sort((a, b) => a - b);
  const at = (share: number) => sorted[Math.min(sorted.length - 1, Math.floor(share * sorted.length))] ?? 0;
  return {
    messages: result.messages,
    wallMs: result.wallMs,
    messagesPerSecond: result.messages / (result.wallMs / 1000),
    cpuMsPerMessage: perMessage(result.cpuUserMs + result.cpuSystemMs),
    cpuUserMsPerMessage: perMessage(result.cpuUserMs),
    cpuSystemMsPerMessage: perMessage(result.cpuSystemMs),
    awsCallsPerMessage,
    awsCallsTotalPerMessage: Object.values(awsCallsPerMessage).reduce((sum, value) => sum + value, 0),
    providerCallsPerMessage: Object.fromEntries(
      Object.entries(providerCalls).map(([name, count]) => [name, perMessage(count)]),
    ),
    logBytesPerMessage: perMessage(result.logBytes),
    emfBytesPerMessage: perMessage(result.emfBytes),
    logLinesPerMessage: perMessage(result.logLines),
    providerConcurrency: (result.messages * providerAnswerMs) / result.wallMs,
    providerAnswerMs,
    invocationMs: { p50: at(0.5), p95: at(0.95), max: sorted.at(-1) ?? 0 },
    importMs: run.importMs,
  };
}

export interface Machine {
  readonly cpu: string;
  readonly cores: number;
  readonly memoryGiB: number;
  readonly node: string;
  readonly platform: string;
  readonly loadAverage: readonly number[];
}

export interface BenchSettings {
  readonly batchSize: number;
  readonly warmupBatches: number;
  readonly measuredBatches: number;
  readonly answerMs: number;
  /** A CPU profiler ran in the relay's worker: its figures include the profiler's cost. */
  readonly profiled: boolean;
}

/** The whole run as text: the issue's table, then the details that explain it. */
export function formatReport(
  machine: Machine,
  settings: BenchSettings,
  scenarios: readonly ScenarioReport[],
): string {
  const number = (value: number, digits = 0) => value.toFixed(digits);
  const lines = [
    machineLine(machine),
    `one warm instance per function; batches of ${settings.batchSize}, ${settings.warmupBatches} warm-up + ${settings.measuredBatches} measured; providers answer after ${settings.answerMs} ms; AWS APIs answer at once`,
    ...(settings.profiled ? ['PROFILED RUN: the relay figures include the CPU profiler’s own cost'] : []),
    // The benchmark itself keeps about one core busy; much more means something else ran meanwhile.
    ...((machine.loadAverage[0] ?? 0) > machine.cores + 1
      ? ['BUSY MACHINE: other processes competed for the CPU during the run; expect lower relay figures']
      : []),
    '',
    table(
      [
        'scenario',
        'relay msg/s',
        'bound',
        'relay ÷ bound',
        'loop msg/s',
        'relay ÷ loop',
        'CPU ms/msg relay',
        'CPU ms/msg loop',
        'AWS calls/msg',
        'log bytes/msg',
      ],
      scenarios.map((scenario) => [
        scenario.title,
        number(scenario.relay.messagesPerSecond, 1),
        `${number(scenario.bound)} (${scenario.boundNote})`,
        number(scenario.relayToBound, 2),
        number(scenario.handWritten.messagesPerSecond, 1),
        `${number(scenario.relayToLoop, 1)}×`,
        number(scenario.relay.cpuMsPerMessage, 2),
        number(scenario.handWritten.cpuMsPerMessage, 2),
        number(scenario.relay.awsCallsTotalPerMessage, 1),
        `${number(scenario.relay.logBytesPerMessage)} (${number(scenario.relay.emfBytesPerMessage)} EMF)`,
      ]),
    ),
    '',
    'AWS calls per message by API (relay, happy path, the provider left out):',
    '',
    callsTable(scenarios, (scenario) => scenario.relay.awsCallsPerMessage),
    '',
    'Provider requests per message:',
    '',
    table(
      ['scenario', 'relay', 'loop'],
      scenarios.map((scenario) => [
        scenario.title,
        describeCalls(scenario.relay.providerCallsPerMessage),
        describeCalls(scenario.handWritten.providerCallsPerMessage),
      ]),
    ),
    '',
    'Details:',
    '',
    table(
      [
        'scenario',
        'function',
        'provider requests in flight',
        'provider answer ms',
        'invocation ms p50 / p95 / max',
        'log lines/msg',
        'CPU ms/msg user + system',
        'import ms',
      ],
      scenarios.flatMap((scenario) =>
        (['relay', 'handWritten'] as const).map((which) => {
          const figures = scenario[which];
          const { p50, p95, max } = figures.invocationMs;
          return [
            scenario.title,
            which === 'relay' ? 'relay' : 'loop',
            number(figures.providerConcurrency, 2),
            number(figures.providerAnswerMs, 1),
            `${number(p50)} / ${number(p95)} / ${number(max)}`,
            number(figures.logLinesPerMessage, 1),
            `${number(figures.cpuUserMsPerMessage, 2)} + ${number(figures.cpuSystemMsPerMessage, 2)}`,
            number(figures.importMs),
          ];
        }),
      ),
    ),
    '',
    `Targets: relay ≥ ${TARGETS.minRatioToBound} of the bound, CPU ≤ ${TARGETS.maxCpuRatio}× the loop's, ≤ ${TARGETS.maxAwsCallsPerMessage} AWS calls per message besides the provider:`,
    ...scenarios.map(
      (scenario) =>
        `  ${scenario.title}: throughput ${mark(scenario.targets.throughput, number(scenario.relayToBound, 2))}, CPU ${mark(scenario.targets.cpu, `${number(scenario.cpuRatio, 1)}×`)}, AWS calls ${mark(scenario.targets.awsCalls, number(scenario.relay.awsCallsTotalPerMessage, 1))}`,
    ),
  ];
  return lines.join('\n');
}

export function machineLine(machine: Machine): string {
  return `machine: ${machine.cpu}, ${machine.cores} cores, ${machine.memoryGiB} GiB, Node ${machine.node} (${machine.platform}), load ${machine.loadAverage.map((value) => value.toFixed(2)).join(' ')}`;
}

const mark = (met: boolean, value: string) => `${value} ${met ? 'met' : 'MISSED'}`;

function describeCalls(calls: Readonly<Record<string, number>>): string {
  const entries = Object.entries(calls).filter(([, count]) => count > 0);
  return entries.length === 0
    ? '-'
    : entries.map(([name, count]) => `${name} ${Number(count.toFixed(2))}`).join(', ');
}

function callsTable(
  scenarios: readonly ScenarioReport[],
  calls: (scenario: ScenarioReport) => Readonly<Record<string, number>>,
): string {
  const apis = [...new Set(scenarios.flatMap((scenario) => Object.keys(calls(scenario))))].sort();
  if (apis.length === 0) return '(none)';
  return table(
    ['API', ...scenarios.map((scenario) => scenario.title)],
    [
      ...apis.map((api) => [api, ...scenarios.map((scenario) => (calls(scenario)[api] ?? 0).toFixed(2))]),
      [
        'total',
        ...scenarios.map((scenario) =>
          Object.values(calls(scenario))
            .reduce((sum, count) => sum + count, 0)
            .toFixed(2),
        ),
      ],
    ],
  );
}

/** A Markdown table with padded columns. */
export function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((title, column) =>
    Math.max(title.length, ...rows.map((row) => (row[column] ?? '').length)),
  );
  const line = (cells: readonly string[]) =>
    `| ${cells.map((cell, column) => cell.padEnd(widths[column] ?? 0)).join(' | ')} |`;
  return [line(header), line(widths.map((width) => '-'.repeat(width))), ...rows.map(line)].join('\n');
}
