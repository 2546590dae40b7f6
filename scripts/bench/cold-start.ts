/**
 * The cold-start section of `npm run bench` (`npm run bench -- --only cold-start [--config FILE
 * --cold-runs N]`): each function's bundle as deployed, its size and how long Node takes to import it,
 * against an empty handler bundled the same way (the floor), as ratios measured in one run.
 *
 * - The bundles come from a synth of the MailRelay construct for the configuration (default
 *   examples/full.config.json, every function), plus scripts/bench/empty-handler.ts bundled by the
 *   same RelayFunction construct. The asset directory is what Lambda unpacks: size is every file in it
 *   but the source map (index.mjs plus any chunks or data files), eager the part an import loads.
 * - Import time is measured in a fresh `node` process per run, with the function's environment from
 *   the template (NODE_OPTIONS and MAIL_RELAY_SETTINGS included; references to resources replaced by
 *   names of the right form), from just before `import()` of index.mjs to the `handler` being
 *   exported: module loading and evaluation, which is where the settings are validated and the
 *   clients built, i.e. the part of Lambda's init the bundle decides. The ratio is of the init: from
 *   spawning the process to the handler being there, as Lambda's init duration counts from starting
 *   the runtime; the floor is then Node's own start plus an import of nothing. The runs go round the functions
 *   in turn, so a busy moment of the machine spreads over all of them; the median of each is reported.
 *
 * A measurement for comparing code on one machine (this one's Node, not Lambda's), not a test.
 */
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { App, type CfnResource, Stack } from 'aws-cdk-lib';
import { NodejsFunction } from 'aws-cdk-lib/aws-lambda-nodejs';
import { loadRelayConfig } from '../../lib/config.ts';
import { MailRelay } from '../../lib/mail-relay.ts';
import { REPO_ROOT, RelayFunction } from '../../lib/relay-function.ts';

/** The targets of issue 17: every bundle at most 1 MB, its import at most twice the empty handler's. */
export const COLD_START_TARGETS = { maxBundleBytes: 1_000_000, maxImportRatio: 2 } as const;

export const DEFAULT_COLD_START_CONFIG = join(REPO_ROOT, 'examples', 'full.config.json');

const EMPTY_ENTRY = fileURLToPath(new URL('./empty-handler.ts', import.meta.url));
const EMPTY = 'empty handler';
const ACCOUNT = '123456789012';
const REGION = 'us-east-1';

export interface ColdStartOptions {
  /** Where the synth writes its assembly. */
  readonly directory: string;
  /** The relay configuration whose functions are measured. */
  readonly configPath: string;
  /** Fresh processes per function. */
  readonly runs: number;
  readonly log?: (line: string) => void;
}

export interface FunctionColdStart {
  /** The construct path below the stack, e.g. `Relay/SendFunction`. */
  readonly name: string;
  /** Every file of the asset but source maps. */
  readonly bundleBytes: number;
  /** What an import loads before the first invocation: index.mjs and the chunks it imports statically. */
  readonly eagerBytes: number;
  readonly sourceMapBytes: number;
  readonly files: number;
  readonly nodeOptions: string;
  /** From spawning the process to the handler exported: Node's start, then the import (Lambda's init). */
  readonly initMs: Spread;
  /** The import alone. */
  readonly importMs: Spread;
  /** CPU time of the process up to the handler exported (all threads): less swayed by a busy machine. */
  readonly cpuMs: Spread;
  /** Median CPU time over the empty handler's. */
  readonly cpuRatio: number;
  /** Median init time over the empty handler's. */
  readonly importRatio: number;
  readonly targets: { readonly size: boolean; readonly import: boolean };
}

export interface ColdStartReport {
  readonly config: string;
  readonly runs: number;
  /** The empty handler: its bundle and median init and import times. */
  readonly floor: {
    readonly bundleBytes: number;
    readonly initMs: number;
    readonly importMs: number;
    readonly cpuMs: number;
  };
  readonly functions: FunctionColdStart[];
}

interface Spread {
  readonly median: number;
  readonly min: number;
  readonly max: number;
}

interface Timing {
  readonly initMs: number;
  readonly importMs: number;
  readonly cpuMs: number;
}

interface MeasuredFunction {
  readonly name: string;
  readonly assetDirectory: string;
  readonly env: Record<string, string>;
}

export async function measureColdStart(options: ColdStartOptions): Promise<ColdStartReport> {
  const log = options.log ?? (() => {});
  log(`cold start: synthesizing ${options.configPath} and the empty handler …`);
  const measured = synthesize(options);
  const timings = new Map<string, Timing[]>(measured.map(({ name }) => [name, []]));
  log(`cold start: ${options.runs} fresh imports of each of ${measured.length} bundles …`);
  for (let run = 0; run < options.runs; run++) {
    for (const fn of measured) timings.get(fn.name)?.push(await coldInit(fn));
  }
  const summary = (name: string, of: keyof Timing) => {
    const sorted = (timings.get(name) ?? []).map((timing) => timing[of]).sort((a, b) => a - b);
    return { median: median(sorted), min: sorted[0] ?? 0, max: sorted.at(-1) ?? 0 };
  };
  const floor = summary(EMPTY, 'initMs').median;
  const floorCpu = summary(EMPTY, 'cpuMs').median;
  const functions = measured.map((fn): FunctionColdStart => {
    const files = assetFiles(fn.assetDirectory);
    const code = files.filter((file) => !file.name.endsWith('.map'));
    const bundleBytes = sum(code.map((file) => file.bytes));
    const initMs = summary(fn.name, 'initMs');
    const importRatio = initMs.median / floor;
    return {
      name: fn.name,
      bundleBytes,
      eagerBytes: eagerBytes(fn.assetDirectory),
      sourceMapBytes: sum(files.filter((file) => file.name.endsWith('.map')).map((file) => file.bytes)),
      files: code.length,
      nodeOptions: fn.env.NODE_OPTIONS ?? '',
      initMs,
      importMs: summary(fn.name, 'importMs'),
      importRatio,
      cpuMs: summary(fn.name, 'cpuMs'),
      cpuRatio: summary(fn.name, 'cpuMs').median / floorCpu,
      targets: {
        size: bundleBytes <= COLD_START_TARGETS.maxBundleBytes,
        import: importRatio <= COLD_START_TARGETS.maxImportRatio,
      },
    };
  });
  const empty = functions.find((fn) => fn.name === EMPTY);
  return {
    config: options.configPath,
    runs: options.runs,
    floor: {
      bundleBytes: empty?.bundleBytes ?? 0,
      initMs: floor,
      importMs: empty?.importMs.median ?? 0,
      cpuMs: floorCpu,
    },
    functions: functions.filter((fn) => fn.name !== EMPTY),
  };
}

export function formatColdStartReport(report: ColdStartReport): string {
  const kb = (bytes: number) => `${(bytes / 1000).toFixed(0)} KB`;
  const ms = (value: number) => value.toFixed(1);
  const rows = [
    [
      'function',
      'bundle',
      'eager',
      'files',
      'map',
      'init ms (min–max)',
      'import ms',
      'init ÷ floor',
      'CPU ms',
      'CPU ÷ floor',
      'NODE_OPTIONS',
      'targets',
    ],
    ...report.functions.map((fn) => [
      fn.name,
      kb(fn.bundleBytes),
      kb(fn.eagerBytes),
      String(fn.files),
      fn.sourceMapBytes > 0 ? kb(fn.sourceMapBytes) : '-',
      `${ms(fn.initMs.median)} (${fn.initMs.min.toFixed(0)}–${fn.initMs.max.toFixed(0)})`,
      ms(fn.importMs.median),
      `${fn.importRatio.toFixed(2)}×`,
      ms(fn.cpuMs.median),
      `${fn.cpuRatio.toFixed(2)}×`,
      fn.nodeOptions || '-',
      `${fn.targets.size ? 'size ok' : 'SIZE'}, ${fn.targets.import ? 'init ok' : 'INIT'}`,
    ]),
  ];
  const widths = rows[0]?.map((_, column) => Math.max(...rows.map((row) => row[column]?.length ?? 0))) ?? [];
  const pad = (cell: string, column: number) =>
    column === 0 ? cell.padEnd(widths[column] ?? 0) : cell.padStart(widths[column] ?? 0);
  return [
    `Cold start (${report.config}): median of ${report.runs} fresh node processes per bundle; init is the`,
    `spawning the process to the handler exported (Node's start, then the import). Floor: the empty handler,`,
    `${kb(report.floor.bundleBytes)}, init ${ms(report.floor.initMs)} ms (import ${ms(report.floor.importMs)} ms, CPU ${ms(report.floor.cpuMs)} ms). Targets: bundle ≤ ${kb(COLD_START_TARGETS.maxBundleBytes)}, init ≤ ${COLD_START_TARGETS.maxImportRatio}× the floor.`,
    ...rows.map((row) => row.map(pad).join('  ')),
  ].join('\n');
}

/** One App: the relay for the configuration and a stack with the empty handler. */
function synthesize(options: ColdStartOptions): MeasuredFunction[] {
  process.env.CDK_VALIDATION = 'false';
  const outdir = join(options.directory, 'cold-start.out');
  const cdkJson = JSON.parse(readFileSync(join(REPO_ROOT, 'cdk.json'), 'utf8')) as {
    context: Record<string, unknown>;
  };
  const app = new App({ outdir, context: cdkJson.context });
  const env = { account: ACCOUNT, region: REGION };
  // The relay construct alone: the stack's outputs add no function.
  const relay = new Stack(app, 'MailRelay', { env });
  new MailRelay(relay, 'Relay', loadRelayConfig(options.configPath));
  const floorStack = new Stack(app, 'ColdStartFloor', { env });
  new RelayFunction(floorStack, 'Empty', {
    entry: EMPTY_ENTRY,
    name: EMPTY,
    description: 'The cold-start floor: a handler that imports nothing',
    settings: {},
  });
  const assembly = app.synth();
  const functionsOf = (stack: Stack, name: (fn: NodejsFunction) => string): MeasuredFunction[] => {
    const template = assembly.getStackByName(stack.stackName).template as Template;
    return stack.node
      .findAll()
      .filter((construct): construct is NodejsFunction => construct instanceof NodejsFunction)
      .map((fn) => {
        const logicalId = stack.getLogicalId(fn.node.defaultChild as CfnResource);
        const properties = template.Resources[logicalId]?.Properties;
        const key = properties?.Code?.S3Key;
        if (typeof key !== 'string') throw new Error(`cold start: ${fn.node.path} has no asset`);
        const variables = properties?.Environment?.Variables ?? {};
        return {
          name: name(fn),
          assetDirectory: join(outdir, `asset.${key.replace(/\.zip$/, '')}`),
          env: Object.fromEntries(
            Object.entries(variables).map(([variable, value]) => [variable, resolve(value, template)]),
          ),
        };
      });
  };
  return [
    ...functionsOf(floorStack, () => EMPTY),
    ...functionsOf(relay, (fn) => fn.node.path.replace(/^MailRelay\/(Relay\/)?/, '')),
  ];
}

interface Template {
  readonly Resources: Record<
    string,
    {
      readonly Type: string;
      readonly Properties?: {
        readonly Code?: { readonly S3Key?: unknown };
        readonly Environment?: { readonly Variables?: Record<string, unknown> };
      };
    }
  >;
}

/**
 * A template value as a string: references become values of the form the settings expect (a queue's
 * URL, a secret's ARN, otherwise a name), so the function's settings validate as they do in AWS.
 */
function resolve(value: unknown, template: Template): string {
  if (typeof value === 'string') return value;
  if (typeof value !== 'object' || value === null) return String(value);
  const intrinsic = value as Record<string, unknown>;
  if ('Fn::Join' in intrinsic) {
    const [separator, parts] = intrinsic['Fn::Join'] as [string, unknown[]];
    return parts.map((part) => resolve(part, template)).join(separator);
  }
  if ('Ref' in intrinsic) {
    const id = String(intrinsic.Ref);
    if (id === 'AWS::Region') return REGION;
    if (id === 'AWS::AccountId') return ACCOUNT;
    if (id === 'AWS::Partition') return 'aws';
    if (id === 'AWS::URLSuffix') return 'amazonaws.com';
    const type = template.Resources[id]?.Type;
    if (type === 'AWS::SQS::Queue') return `https://sqs.${REGION}.amazonaws.com/${ACCOUNT}/${id}`;
    if (type === 'AWS::SecretsManager::Secret')
      return `arn:aws:secretsmanager:${REGION}:${ACCOUNT}:secret:${id}-AbCdEf`;
    return id.toLowerCase();
  }
  if ('Fn::GetAtt' in intrinsic) {
    const [id, attribute] = intrinsic['Fn::GetAtt'] as [string, string];
    if (attribute === 'Arn') return `arn:aws:lambda:${REGION}:${ACCOUNT}:${id}`;
    if (attribute === 'QueueUrl') return `https://sqs.${REGION}.amazonaws.com/${ACCOUNT}/${id}`;
    return id.toLowerCase();
  }
  throw new Error(`cold start: cannot resolve ${JSON.stringify(value)} in a function's environment`);
}

/** Imports the bundle in a fresh process, as Lambda's runtime does, and says how long that took. */
function coldInit(fn: MeasuredFunction): Promise<Timing> {
  const url = pathToFileURL(join(fn.assetDirectory, 'index.mjs')).href;
  const script = [
    'const started = performance.now();',
    `const module = await import(${JSON.stringify(url)});`,
    'const ended = performance.now();',
    "if (typeof module.handler !== 'function') throw new Error('no handler exported');",
    'const cpu = process.cpuUsage();',
    'process.stdout.write(JSON.stringify({ importMs: ended - started, cpuMs: (cpu.user + cpu.system) / 1000 }));',
    // The init may have started calls (an account's limits); the measurement is done.
    'process.exit(0);',
  ].join('\n');
  const env = {
    PATH: process.env.PATH ?? '',
    ...fn.env,
    AWS_REGION: REGION,
    AWS_DEFAULT_REGION: REGION,
    AWS_ACCESS_KEY_ID: 'AKIDCOLDSTART',
    AWS_SECRET_ACCESS_KEY: 'cold-start',
    AWS_LAMBDA_FUNCTION_NAME: 'cold-start',
    AWS_LAMBDA_FUNCTION_MEMORY_SIZE: '512',
    // Nothing listens there: a call the init starts fails at once instead of leaving the machine.
    AWS_ENDPOINT_URL: 'http://127.0.0.1:9',
    AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
    LAMBDA_TASK_ROOT: fn.assetDirectory,
  };
  return new Promise((resolvePromise, reject) => {
    const spawned = performance.now();
    let initMs: number | undefined;
    const child = spawn(process.execPath, ['--input-type=module', '--eval', script], {
      cwd: fn.assetDirectory,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => {
      // Like Lambda's init duration: from starting the process to the handler being there.
      initMs ??= performance.now() - spawned;
      stdout += chunk.toString();
    });
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    child.on('error', reject);
    child.on('close', (code) => {
      try {
        const { importMs, cpuMs } = JSON.parse(stdout) as { importMs: number; cpuMs: number };
        resolvePromise({ initMs: initMs ?? 0, importMs, cpuMs });
      } catch {
        reject(new Error(`cold start: importing ${fn.name} failed (exit ${code}): ${stderr.slice(0, 2000)}`));
      }
    });
  });
}

/** index.mjs and what it imports statically (`import … from "./chunk-….mjs"`), transitively. */
function eagerBytes(directory: string): number {
  const seen = new Set<string>();
  const visit = (file: string) => {
    if (seen.has(file)) return;
    seen.add(file);
    const text = readFileSync(join(directory, file), 'utf8');
    // Static imports of chunks only: a dynamic import("./chunk-….mjs") loads when its feature runs.
    for (const match of text.matchAll(
      /(?:^|[;}\s])(?:import|export)\s*(?:[\w${},*\s]+from\s*)?["']\.\/([^"']+\.mjs)["']/g,
    )) {
      if (match[1]) visit(match[1]);
    }
  };
  visit('index.mjs');
  return sum([...seen].map((file) => statSync(join(directory, file)).size));
}

function assetFiles(directory: string): { name: string; bytes: number }[] {
  return readdirSync(directory, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile())
    .map((entry) => {
      const path = join(entry.parentPath, entry.name);
      return { name: path.slice(directory.length + 1), bytes: statSync(path).size };
    });
}

function median(sorted: readonly number[]): number {
  if (sorted.length === 0) return 0;
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1
    ? (sorted[middle] ?? 0)
    : ((sorted[middle - 1] ?? 0) + (sorted[middle] ?? 0)) / 2;
}

function sum(values: readonly number[]): number {
  return values.reduce((total, value) => total + value, 0);
}
