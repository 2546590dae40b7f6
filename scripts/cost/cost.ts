/**
 * `npm run cost -- [--config FILE …] [--message-kb 50] [--messages-per-month 1000000] [--markdown] [--json]
 *   [--update-readme]`
 *
 * The cost model: for each configuration (default: every examples/*.config.json), synthesizes the
 * stack offline and counts what costs money in the template (template-inventory.ts), runs the real
 * send bundle on a workload for each of its providers and records every AWS call, capacity unit,
 * event and log byte (send-work.ts, feedback-work.ts), and prices it all at the list prices in
 * prices.ts (cost-model.ts). Nothing is hard-coded per message: a change to the code shows up here.
 *
 * --markdown prints the README section for the measured configurations; --update-readme measures the
 * examples (full first), writes scripts/cost/readme-inputs.json and regenerates the README's
 * "What it costs" section from it. Runs offline; about 10 s per configuration.
 */
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

import { readdirSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { REPO_ROOT } from '../../lib/relay-function.ts';
import { type Assumptions, DEFAULT_ASSUMPTIONS, priceConfig } from './cost-model.ts';
import { CostBench } from './measure.ts';
import type { ConfigMeasurement } from './measurement.ts';
import { readmeSectionFor, updateReadme } from './readme-section.ts';
import { formatText } from './report.ts';

/** The workload: small, since every count is per message and steady after the first invocation. */
export const WORKLOAD = { warmupBatches: 1, measuredBatches: 4 } as const;
/** The example shown in detail in the README comes first. */
const DETAIL_EXAMPLE = 'full.config.json';

const { values } = parseArgs({
  options: {
    config: { type: 'string', multiple: true },
    'message-kb': { type: 'string', default: String(DEFAULT_ASSUMPTIONS.messageKb) },
    'messages-per-month': { type: 'string', default: String(DEFAULT_ASSUMPTIONS.messagesPerMonth) },
    markdown: { type: 'boolean', default: false },
    json: { type: 'boolean', default: false },
    'update-readme': { type: 'boolean', default: false },
  },
});
const positive = (value: string, flag: string) => {
  const parsed = Number(value);
  if (!Number.isFinite(parsed) || parsed <= 0) throw new Error(`--${flag} must be a number > 0`);
  return parsed;
};
const assumptions: Assumptions = {
  ...DEFAULT_ASSUMPTIONS,
  messageKb: positive(values['message-kb'], 'message-kb'),
  messagesPerMonth: positive(values['messages-per-month'], 'messages-per-month'),
};
if (values['update-readme'] && (values.config || assumptions !== DEFAULT_ASSUMPTIONS)) {
  // The README states the defaults for the examples; other inputs would make it say something else.
  if (values.config || values['message-kb'] !== '50' || values['messages-per-month'] !== '1000000') {
    throw new Error('--update-readme takes no --config, --message-kb or --messages-per-month');
  }
}
const configs = values.config?.map((file) => resolve(file)) ?? exampleConfigs();
const log = (line: string) => console.error(`[cost] ${line}`);

const bench = await CostBench.start({ messageKb: assumptions.messageKb, ...WORKLOAD, log });
try {
  const measurements: ConfigMeasurement[] = [];
  const failed: string[] = [];
  for (const config of configs) {
    // One configuration that does not synthesize or send (say, mid-change) does not hide the others.
    try {
      measurements.push(await bench.measure(config));
    } catch (error) {
      failed.push(config);
      log(`${config} failed: ${error instanceof Error ? error.message : String(error)}`);
    }
  }
  if (failed.length > 0) process.exitCode = 1;
  const costs = measurements.map((measurement) => priceConfig(measurement, assumptions));
  const measuredOn = new Date().toISOString().slice(0, 10);
  const left = failed.map((config) => relative(REPO_ROOT, config));
  if (values['update-readme']) {
    // Written anyway (a failing example is usually mid-change), saying which were left out.
    updateReadme({ measuredOn, assumptions, measurements, ...(left.length > 0 && { notMeasured: left }) });
    log('README.md "What it costs" and scripts/cost/readme-inputs.json updated');
  }
  if (values.json) console.log(JSON.stringify({ assumptions, costs }, null, 2));
  else if (values.markdown) {
    console.log(
      readmeSectionFor({
        measuredOn,
        assumptions,
        measurements,
        ...(left.length > 0 && { notMeasured: left }),
      }),
    );
  } else console.log(formatText(costs, assumptions));
} catch (error) {
  log(`failed: ${error instanceof Error ? error.message : String(error)}`);
  process.exitCode = 1;
} finally {
  await bench.stop();
}

function exampleConfigs(): string[] {
  const directory = join(REPO_ROOT, 'examples');
  const files = readdirSync(directory)
    .filter((name) => name.endsWith('.config.json'))
    .sort((a, b) => Number(b === DETAIL_EXAMPLE) - Number(a === DETAIL_EXAMPLE) || a.localeCompare(b));
  return files.map((name) => join(directory, name));
}
