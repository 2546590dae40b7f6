import { readFileSync } from 'node:fs';
import { SourceMap, type SourceMapping } from 'node:module';
import { dirname, relative, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

/** The parts of a V8 CPU profile (Profiler.stop) read here. */
interface CpuProfile {
  readonly nodes: readonly {
    readonly id: number;
    readonly callFrame: {
      readonly functionName: string;
      readonly url: string;
      readonly lineNumber: number;
      readonly columnNumber: number;
    };
  }[];
  readonly samples: readonly number[];
  readonly timeDeltas: readonly number[];
}

export interface Share {
  readonly name: string;
  readonly ms: number;
}

export interface ProfileSummary {
  /** Sampled CPU time, idle left out, ms. */
  readonly totalMs: number;
  /** Self time by area: the AWS SDK, Node (JS and native), the relay's own code, other packages. */
  readonly byArea: readonly Share[];
  /** Self time by origin: a package, a folder of the repository, Node's internals. */
  readonly byOrigin: readonly Share[];
  /** Self time by function, the hottest first. */
  readonly byFunction: readonly Share[];
}

/**
 * Self time of a CPU profile of a bundle, mapped back through the bundle's source map to the original
 * files: where the function's CPU goes, by area, by package or folder, and by function.
 */
export function summarizeProfile(profileFile: string, bundleFile: string, repoRoot: string): ProfileSummary {
  const profile = JSON.parse(readFileSync(profileFile, 'utf8')) as CpuProfile;
  const map = new SourceMap(JSON.parse(readFileSync(`${bundleFile}.map`, 'utf8')));
  const bundleUrl = pathToFileURL(bundleFile).href;
  const fromRepo = (source: string) => relative(repoRoot, resolve(dirname(bundleFile), source));
  const selfMs = new Map<number, number>();
  profile.samples.forEach((node, index) => {
    selfMs.set(node, (selfMs.get(node) ?? 0) + (profile.timeDeltas[index] ?? 0) / 1000);
  });
  const byArea = new Map<string, number>();
  const byOrigin = new Map<string, number>();
  const byFunction = new Map<string, number>();
  const add = (shares: Map<string, number>, name: string, ms: number) =>
    shares.set(name, (shares.get(name) ?? 0) + ms);
  let totalMs = 0;
  for (const node of profile.nodes) {
    const ms = selfMs.get(node.id) ?? 0;
    const { functionName, url, lineNumber, columnNumber } = node.callFrame;
    if (ms === 0 || functionName === '(idle)') continue;
    totalMs += ms;
    let origin: string;
    let name: string;
    if (url === bundleUrl) {
      const entry = map.findEntry(lineNumber, columnNumber) as Partial<SourceMapping & { name: string }>;
      const source =
        entry.originalSource === undefined ? 'bundle (unmapped)' : fromRepo(entry.originalSource);
      origin = originOf(source);
      const line = entry.originalLine === undefined ? '?' : entry.originalLine + 1;
      name = `${entry.name ?? (functionName || '(anonymous)')} ${withoutModules(source)}:${line}`;
    } else if (url.startsWith('node:')) {
      origin = 'Node (node:*)';
      name = `${functionName || '(anonymous)'} ${url}:${lineNumber + 1}`;
    } else {
      // Natives (writev, the garbage collector …) have no url.
      origin = functionName.startsWith('(') ? functionName : 'Node / V8 native';
      name = `${functionName || '(anonymous)'}${url ? ` ${url}:${lineNumber + 1}` : ''}`;
    }
    add(byArea, areaOf(origin), ms);
    add(byOrigin, origin, ms);
    add(byFunction, name, ms);
  }
  const sorted = (shares: Map<string, number>) =>
    [...shares].map(([name, ms]) => ({ name, ms })).sort((a, b) => b.ms - a.ms);
  return { totalMs, byArea: sorted(byArea), byOrigin: sorted(byOrigin), byFunction: sorted(byFunction) };
}

/** `@aws-sdk/client-dynamodb`, `zod`, or the repository folder (`lambda/core`) the file is in. */
function originOf(source: string): string {
  const at = source.lastIndexOf('node_modules/');
  if (at >= 0) {
    const [first = '', second = ''] = source.slice(at + 'node_modules/'.length).split('/');
    return first.startsWith('@') ? `${first}/${second}` : first;
  }
  return dirname(source);
}

function areaOf(origin: string): string {
  if (origin.startsWith('@aws-sdk/') || origin.startsWith('@smithy/')) return 'AWS SDK (@aws-sdk, @smithy)';
  if (origin.startsWith('Node') || origin === '(program)') return 'Node (JS and native)';
  if (origin === '(garbage collector)') return 'garbage collector';
  if (origin.startsWith('lambda/')) return 'the relay (lambda/)';
  if (origin.startsWith('@aws-lambda-powertools/') || origin.startsWith('@middy/'))
    return 'Powertools, middy';
  return origin;
}

function withoutModules(source: string): string {
  const at = source.lastIndexOf('node_modules/');
  return at >= 0 ? source.slice(at + 'node_modules/'.length) : source;
}

export function formatProfileSummary(title: string, summary: ProfileSummary, messages: number): string {
  const row = ({ name, ms }: Share) =>
    `    ${((100 * ms) / summary.totalMs).toFixed(1).padStart(5)}% ${(ms / messages).toFixed(3).padStart(6)} ms/msg  ${name}`;
  return [
    `CPU profile of the relay, ${title}: ${(summary.totalMs / messages).toFixed(2)} ms/msg sampled (the profiler's own cost included)`,
    '  by area:',
    ...summary.byArea.slice(0, 8).map(row),
    '  by package or folder:',
    ...summary.byOrigin.slice(0, 12).map(row),
    '  hottest functions (self time):',
    ...summary.byFunction.slice(0, 15).map(row),
  ].join('\n');
}
