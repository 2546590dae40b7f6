/**
 * What `mail-relay doctor` found: one finding per check, each with a verdict, what was seen and,
 * when something is wrong, the plain fix. The checks (one module per area) only produce findings;
 * this module renders them and turns them into the exit code.
 */

/** ok ✓ — the check passed; problem ✗ — mail will not flow (or not all of it); warning ! — it may, see the note. */
export type Verdict = 'ok' | 'problem' | 'warning';

export interface Finding {
  /** What was checked: `graph`, `smtp`, `ses`, `dns`, `config`. */
  readonly area: string;
  /** Of what: a provider (`graph`, `smtp:billing`), a mailbox, an identity, a domain. */
  readonly subject: string;
  /** The check, short: `token`, `roles`, `mailbox`, `tcp`, `starttls`, `spf` … */
  readonly check: string;
  readonly verdict: Verdict;
  /** What was found, in a sentence (never a secret, a token or a message body). */
  readonly detail: string;
  /** What to do about it, when the verdict is not ok. */
  readonly fix?: string;
  /** The provider's own code when it gave one: AADSTS7000215, 5.7.708, ErrorAccessDenied. */
  readonly code?: string;
}

/** What a finding may add to its verdict and detail: the fix (kept only when not ok) and the provider's code. */
export interface FindingExtra {
  readonly fix?: string | undefined;
  readonly code?: string | undefined;
}

/** A finding builder for one area's checks: `finding(subject, check, verdict, detail, { fix, code })`. */
export function findingsOf(area: string) {
  return (
    subject: string,
    check: string,
    verdict: Verdict,
    detail: string,
    extra: FindingExtra = {},
  ): Finding => ({
    area,
    subject,
    check,
    verdict,
    detail,
    ...(extra.fix !== undefined && verdict !== 'ok' && { fix: extra.fix }),
    ...(extra.code !== undefined && { code: extra.code }),
  });
}

/** Exit codes: every check passed (warnings allowed); a check found a problem; doctor could not run. */
export const DOCTOR_EXIT = { ok: 0, problems: 1, couldNotRun: 2 } as const;

const SYMBOL: Readonly<Record<Verdict, string>> = { ok: '✓', problem: '✗', warning: '!' };

/** 0 when nothing is a problem, else 1. */
export function exitCodeOf(findings: readonly Finding[]): number {
  return findings.some((finding) => finding.verdict === 'problem') ? DOCTOR_EXIT.problems : DOCTOR_EXIT.ok;
}

export function countsOf(findings: readonly Finding[]): Record<Verdict, number> {
  const counts: Record<Verdict, number> = { ok: 0, problem: 0, warning: 0 };
  for (const finding of findings) counts[finding.verdict] += 1;
  return counts;
}

/** The report for a terminal: grouped by area and subject, in the order the checks ran. */
export function describeFindings(target: string, findings: readonly Finding[]): string {
  const lines = [`mail-relay doctor: ${target}`, ''];
  let group = '';
  for (const finding of findings) {
    const heading = `${finding.area} · ${finding.subject}`;
    if (heading !== group) {
      if (group !== '') lines.push('');
      lines.push(heading);
      group = heading;
    }
    const code =
      finding.code !== undefined && !finding.detail.includes(finding.code) ? ` [${finding.code}]` : '';
    lines.push(`  ${SYMBOL[finding.verdict]} ${finding.check}: ${finding.detail}${code}`);
    if (finding.fix !== undefined && finding.verdict !== 'ok') lines.push(`      fix: ${finding.fix}`);
  }
  const counts = countsOf(findings);
  lines.push(
    '',
    `${counts.ok} ok, ${counts.warning} warning(s), ${counts.problem} problem(s)${counts.problem > 0 ? ': mail will not flow as configured until they are fixed' : ''}.`,
  );
  return lines.join('\n');
}

/** The report for scripts (`--json`). */
export function findingsJson(target: string, findings: readonly Finding[]): string {
  return JSON.stringify(
    { target, exitCode: exitCodeOf(findings), counts: countsOf(findings), findings },
    null,
    2,
  );
}
