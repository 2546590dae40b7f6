import { checkDns } from './dns-checks.ts';
import { DOCTOR_EXIT, describeFindings, exitCodeOf, type Finding, findingsJson } from './findings.ts';
import { checkGraph } from './graph-checks.ts';
import { DoctorCannotRun, type DoctorOptions, resolveDoctorTarget } from './resolve-target.ts';
import { checkSes } from './ses-checks.ts';
import { checkSmtp } from './smtp-checks.ts';
import type { DoctorCheck, DoctorTarget } from './target.ts';

/** The areas doctor checks, in the order the report shows them. */
export const DOCTOR_AREAS = ['graph', 'smtp', 'ses', 'dns'] as const;
export type DoctorArea = (typeof DOCTOR_AREAS)[number];

const CHECKS: Readonly<Record<DoctorArea, DoctorCheck>> = {
  graph: checkGraph,
  smtp: checkSmtp,
  ses: checkSes,
  dns: checkDns,
};

/** Runs the areas side by side (each waits on the network) and reports them in a fixed order. */
export async function diagnose(
  target: DoctorTarget,
  areas: readonly DoctorArea[] = DOCTOR_AREAS,
): Promise<Finding[]> {
  const results = await Promise.all(
    areas.map(async (area) => {
      try {
        return await CHECKS[area](target);
      } catch (error) {
        // A check is written not to throw; if one does, the report still says what the others found.
        const finding: Finding = {
          area,
          subject: area,
          check: 'doctor',
          verdict: 'problem',
          detail: `the ${area} checks stopped: ${(error as Error).message}`,
        };
        return [finding];
      }
    }),
  );
  return results.flat();
}

/**
 * `mail-relay doctor`: prints the report (or JSON) and returns the exit code: 0 nothing wrong
 * (warnings allowed), 1 a problem found, 2 doctor could not run.
 */
export async function runDoctor(
  options: DoctorOptions & { readonly json: boolean; readonly areas?: readonly DoctorArea[] },
  print: (text: string) => void = console.log,
  printError: (text: string) => void = console.error,
): Promise<number> {
  let resolved: ReturnType<typeof resolveDoctorTarget>;
  try {
    resolved = resolveDoctorTarget(options);
  } catch (error) {
    if (!(error instanceof DoctorCannotRun)) throw error;
    printError(`mail-relay doctor could not run: ${error.message}`);
    return DOCTOR_EXIT.couldNotRun;
  }
  try {
    const { target } = resolved;
    const areas = options.areas ?? DOCTOR_AREAS;
    const missing = await missingAwsCredentials(target, areas);
    if (missing !== undefined) {
      printError(`mail-relay doctor could not run: ${missing}`);
      return DOCTOR_EXIT.couldNotRun;
    }
    const findings = [
      ...resolved.findings.filter((finding) => areas.includes(finding.area as DoctorArea)),
      ...(await diagnose(target, areas)),
    ];
    if (findings.length === 0) {
      printError(`mail-relay doctor: nothing to check in ${target.description} (${areas.join(', ')})`);
      return DOCTOR_EXIT.couldNotRun;
    }
    print(
      options.json
        ? findingsJson(target.description, findings)
        : describeFindings(target.description, findings),
    );
    return exitCodeOf(findings);
  } finally {
    resolved.close();
  }
}

/**
 * The deployed relay's secrets and SES are read with the caller's AWS credentials: without any,
 * every such check would fail for a reason that is doctor's, not the relay's.
 */
async function missingAwsCredentials(
  target: DoctorTarget,
  areas: readonly DoctorArea[],
): Promise<string | undefined> {
  if (target.local) return undefined;
  const { graph, smtp, ses } = target.settings;
  const needsAws =
    (areas.includes('graph') && graph !== undefined) ||
    (areas.includes('smtp') &&
      (smtp ?? []).some((connection) => connection.credentialSecretId !== undefined)) ||
    (areas.includes('ses') && ses !== undefined);
  if (!needsAws) return undefined;
  try {
    await target.secrets.config.credentials();
    return undefined;
  } catch (error) {
    return `it reads the provider secrets and SES with your AWS credentials, and found none (${(error as Error).message.split('\n')[0]}): set AWS_PROFILE or the AWS_ACCESS_KEY_ID variables, or check local mode with npm start and no --config`;
  }
}
