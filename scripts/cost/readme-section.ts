import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT } from '../../lib/relay-function.ts';
import { type Assumptions, priceConfig } from './cost-model.ts';
import type { ConfigMeasurement } from './measurement.ts';
import { formatMarkdown, README_HEADING } from './report.ts';

/** What the README's section is generated from: committed, so the section reads the same every time. */
export interface ReadmeInputs {
  /** The day the work was measured. */
  readonly measuredOn: string;
  readonly assumptions: Assumptions;
  /** The first is shown in detail (the full example). */
  readonly measurements: readonly ConfigMeasurement[];
  /** Examples that failed to synthesize or send when the inputs were measured. */
  readonly notMeasured?: readonly string[];
}

export const README_PATH = join(REPO_ROOT, 'README.md');
export const README_INPUTS_PATH = join(REPO_ROOT, 'scripts', 'cost', 'readme-inputs.json');
/** The section goes right before this heading. */
const NEXT_HEADING = '## Configuration reference';

export function readmeSectionFor(inputs: ReadmeInputs): string {
  const costs = inputs.measurements.map((measurement) => priceConfig(measurement, inputs.assumptions));
  return formatMarkdown(costs, inputs.assumptions, inputs.measuredOn, inputs.notMeasured ?? []);
}

export function readReadmeInputs(): ReadmeInputs {
  return JSON.parse(readFileSync(README_INPUTS_PATH, 'utf8')) as ReadmeInputs;
}

/** The README's cost section as committed (heading to the next heading), or undefined. */
export function committedReadmeSection(readme = readFileSync(README_PATH, 'utf8')): string | undefined {
  const start = readme.indexOf(`\n${README_HEADING}\n`);
  if (start < 0) return undefined;
  const end = readme.indexOf(`\n${NEXT_HEADING}\n`, start);
  return readme.slice(start + 1, end < 0 ? undefined : end + 1).replace(/\n+$/, '\n');
}

/** Writes the inputs and puts the section generated from them in the README (replacing the old one). */
export function updateReadme(inputs: ReadmeInputs): void {
  writeFileSync(README_INPUTS_PATH, `${JSON.stringify(inputs, null, 2)}\n`);
  // In the layout `npm run lint` checks, so a regenerated file passes it as written.
  execFileSync(join(REPO_ROOT, 'node_modules', '.bin', 'biome'), ['format', '--write', README_INPUTS_PATH], {
    stdio: 'ignore',
  });
  const readme = readFileSync(README_PATH, 'utf8');
  const section = readmeSectionFor(inputs);
  const old = committedReadmeSection(readme);
  let updated: string;
  if (old !== undefined) {
    const start = readme.indexOf(`\n${README_HEADING}\n`) + 1;
    updated = `${readme.slice(0, start)}${section}${readme.slice(start + old.length)}`;
  } else {
    const at = readme.indexOf(`\n${NEXT_HEADING}\n`);
    if (at < 0) throw new Error(`README.md has no "${NEXT_HEADING}" heading to put the cost section before`);
    updated = `${readme.slice(0, at + 1)}${section}\n${readme.slice(at + 1)}`;
  }
  writeFileSync(README_PATH, updated);
}
