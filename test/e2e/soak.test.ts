import { describe, expect, it } from 'vitest';
import { formatSoakReport, runSoak } from '../../scripts/soak/soak.ts';

// The soak of `npm run soak`, smaller: 500 messages through three send-function processes that are
// SIGKILLed at random, with throttling, 5xx, lost answers and SMTP silence after DATA at the peers.

describe('soak: never twice, never lost', () => {
  it('ends every message sent exactly once or in the dead-letter queue with its reason', async () => {
    const report = await runSoak({ messages: 500, workers: 3, killEveryMs: 2_000, faultRate: 0.02, seed: 7 });
    const table = formatSoakReport(report);

    expect(report.lost, table).toEqual([]);
    expect(report.duplicated, table).toEqual([]);
    // A function killed between its DLQ write and its ledger write can leave a second copy; the copies
    // say the same and `mail-relay dlq` shows them as one message. Anything else is a bug.
    const unlikeCopies = report.problems.filter(
      ({ id, deadLetters }) =>
        report.deadLetteredTwice.includes(id) && new Set(deadLetters.map(({ code }) => code)).size > 1,
    );
    expect(unlikeCopies, table).toEqual([]);
    expect(report.deadLetteredWithoutReason, table).toEqual([]);
    expect(report.sentAndDeadLettered, table).toEqual([]);
    // The faults and kills really happened, or the above would prove nothing.
    expect(report.kills, table).toBeGreaterThan(0);
    for (const provider of ['graph answer lost', 'ses answer lost', 'smtp no reply after data']) {
      const injected = Object.entries(report.faults).filter(([kind]) => kind.startsWith(provider));
      expect(
        injected.reduce((sum, [, count]) => sum + count, 0),
        `${provider}\n${table}`,
      ).toBeGreaterThan(0);
    }
    expect(report.outcomeUnknownReached, table).toBeGreaterThan(0);
  }, 300_000);
});
