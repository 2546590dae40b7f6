import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import path from 'node:path';
import type { LocalRelayOptions } from '../../local/local-relay.ts';
import { eventually } from '../helpers/peers.ts';

/**
 * Local mode for a test: every port picked by the system (0) and the state in the test's own
 * directory, so two copies of the suite, or a developer's `npm start`, can run beside it.
 */
export function isolatedLocalMode(
  workDir: string,
): Required<
  Pick<
    LocalRelayOptions,
    'sqsPort' | 'sesPort' | 'dynamoDbPort' | 'smtpPort' | 'graphPeerPort' | 'smtpIngressPort' | 'stateDir'
  >
> {
  return {
    sqsPort: 0,
    sesPort: 0,
    dynamoDbPort: 0,
    smtpPort: 0,
    graphPeerPort: 0,
    smtpIngressPort: 0,
    stateDir: path.join(workDir, 'state'),
  };
}

/** The same for `mail-relay start`. */
export function isolatedStartArgs(workDir: string): string[] {
  const options = isolatedLocalMode(workDir);
  return [
    '--sqs-port',
    String(options.sqsPort),
    '--ses-port',
    String(options.sesPort),
    '--dynamodb-port',
    String(options.dynamoDbPort),
    '--smtp-port',
    String(options.smtpPort),
    '--graph-peer-port',
    String(options.graphPeerPort),
    '--smtp-ingress-port',
    String(options.smtpIngressPort),
    '--state-dir',
    options.stateDir,
  ];
}

/** `mail-relay start` in its own process, up to its banner: what it printed so far, and the process. */
export interface SpawnedLocalMode {
  readonly child: ChildProcess;
  /** Everything it wrote to stdout and stderr so far. */
  output(): string;
  /** A URL the banner names after `label` (`SQS endpoint:` …). */
  bannerUrl(label: string): string;
}

/**
 * Starts `mail-relay start` on free ports in `workDir` (isolatedStartArgs) and waits for its banner
 * (the Try: line): it fails with everything the process printed if it exits first. The process goes
 * into `children`, for the test to kill.
 */
export async function spawnLocalMode(
  workDir: string,
  children: ChildProcess[],
  args: readonly string[],
): Promise<SpawnedLocalMode> {
  const child = spawn(
    process.execPath,
    [path.resolve('cli/mail-relay.js'), 'start', ...isolatedStartArgs(workDir), ...args],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  children.push(child);
  let output = '';
  // Read everything, always: a full pipe would block the child's logging.
  child.stdout?.on('data', (chunk: Buffer) => {
    output += chunk.toString();
  });
  child.stderr?.on('data', (chunk: Buffer) => {
    output += chunk.toString();
  });
  const exited = once(child, 'exit').then(([code]) => {
    throw new Error(`mail-relay start exited (${code}) before it was running:\n${output}`);
  });
  await Promise.race([eventually(async () => (/\nTry:\n.*\n/.test(output) ? true : undefined)), exited]);
  return {
    child,
    output: () => output,
    bannerUrl(label) {
      const match = new RegExp(`${label}\\s+(http://\\S+)`).exec(output);
      if (!match?.[1]) throw new Error(`no ${label} in the banner:\n${output}`);
      return match[1];
    },
  };
}

/** Kills what spawnLocalMode started and is still running, and waits for each to exit. */
export async function killLocalModes(children: ChildProcess[]): Promise<void> {
  for (const child of children.splice(0)) {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await once(child, 'exit');
    }
  }
}
