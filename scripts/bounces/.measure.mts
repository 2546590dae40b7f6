import { readFileSync } from 'node:fs';
import { parseDeliveryReport } from '/work/main/lambda/core/feedback/delivery-report.ts';
const dir = '/work/main/test/fixtures/bounces/';
const expected = JSON.parse(readFileSync(dir + 'expected.json', 'utf8')).fixtures;
async function main() {
let softHard = 0, hardTotal = 0, hardFound = 0, unread = 0, recMiss = 0;
const lines: string[] = [];
for (const [name, fx] of Object.entries<any>(expected)) {
  const events = await parseDeliveryReport(readFileSync(dir + name), { provider: 'smtp', receivedAt: '2026-01-01T00:00:00.000Z' });
  const exp = fx.recipients as any[];
  const bounces = exp.filter((r) => r.reason !== 'delivered' && r.reason !== 'feedback' && r.reason !== 'vacation');
  const got = (events ?? []).filter((e) => e.kind === 'bounced').flatMap((e) => e.recipients.map((r) => ({ r, t: e.bounceType, s: e.status, c: e.cause, d: e.diagnostic })));
  if (bounces.length && !events) unread++;
  if (bounces.length !== got.length) { recMiss++; lines.push(`COUNT ${name} exp ${bounces.length} got ${got.length} ${events ? '' : 'UNDEF'}`); }
  for (let i = 0; i < bounces.length; i++) {
    const e = bounces[i], g = got[i];
    if (!e.hard && g?.t === 'hard') { softHard++; lines.push(`SOFT->HARD ${name} ${JSON.stringify(e)} ${JSON.stringify(g)}`); }
    if (e.hard && e.status.startsWith('5')) { hardTotal++; if (g?.t === 'hard') hardFound++; else lines.push(`MISSHARD ${name} ${JSON.stringify(e)} ${JSON.stringify(g)}`); }
  }
  if (!bounces.length && events) lines.push(`NOTBOUNCE ${name} ${JSON.stringify(events)}`);
}
console.log(lines.join('\n'));
console.log({ softHard, hardTotal, hardFound, pct: hardFound / hardTotal, unread, recMiss });
}
main();
