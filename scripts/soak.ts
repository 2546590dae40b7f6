/**
 * `npm run soak [-- --messages N --workers K --kill-every MS --fault-rate R --seed S]`: the "never
 * twice, never lost" soak (scripts/soak/soak.ts) with its reconciliation table. Exits 1 when a message
 * was lost or sent twice.
 */
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

import { parseArgs } from 'node:util';
import { DEFAULT_SOAK_OPTIONS, formatSoakReport, runSoak } from './soak/soak.ts';

const { values } = parseArgs({
  options: {
    messages: { type: 'string' },
    workers: { type: 'string' },
    'kill-every': { type: 'string' },
    'fault-rate': { type: 'string' },
    seed: { type: 'string' },
  },
});
const number = (value: string | undefined, fallback: number, flag: string) => {
  if (value === undefined) return fallback;
  const parsed = Number(value);
  if (!Number.isFinite(parsed) || parsed < 0) throw new Error(`--${flag} must be a non-negative number`);
  return parsed;
};

const report = await runSoak({
  messages: number(values.messages, DEFAULT_SOAK_OPTIONS.messages, 'messages'),
  workers: Math.max(1, number(values.workers, DEFAULT_SOAK_OPTIONS.workers, 'workers')),
  killEveryMs: number(values['kill-every'], DEFAULT_SOAK_OPTIONS.killEveryMs, 'kill-every'),
  faultRate: number(values['fault-rate'], DEFAULT_SOAK_OPTIONS.faultRate, 'fault-rate'),
  seed: number(values.seed, DEFAULT_SOAK_OPTIONS.seed, 'seed'),
  log: (line) => console.error(`[soak] ${line}`),
});
console.log(formatSoakReport(report));
process.exitCode = report.lost.length > 0 || report.duplicated.length > 0 ? 1 : 0;
