import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { vi } from 'vitest';
import { main } from '../../cli/main.ts';

/** What a CLI run printed, and its exit code. */
export interface CliResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs the CLI's main in this process, capturing what it prints. */
export async function runMain(...argv: string[]): Promise<CliResult> {
  const out: string[] = [];
  const err: string[] = [];
  const log = vi.spyOn(console, 'log').mockImplementation((...args: unknown[]) => {
    out.push(args.join(' '));
  });
  const error = vi.spyOn(console, 'error').mockImplementation((...args: unknown[]) => {
    err.push(args.join(' '));
  });
  try {
    const code = await main(argv);
    return { code, stdout: out.join('\n'), stderr: err.join('\n') };
  } finally {
    log.mockRestore();
    error.mockRestore();
  }
}

/**
 * The environment of a newcomer's shell: no port variables, no AWS credentials, profile or region,
 * and no instance metadata to ask (the test machine is not an EC2 instance).
 */
export function newcomerEnvironment(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const environment: NodeJS.ProcessEnv = {
    ...process.env,
    AWS_CONFIG_FILE: '/nonexistent/config',
    AWS_SHARED_CREDENTIALS_FILE: '/nonexistent/credentials',
    AWS_EC2_METADATA_DISABLED: 'true',
  };
  for (const name of Object.keys(environment)) {
    if (
      name.startsWith('MAIL_RELAY_') ||
      name.startsWith('AWS_ENDPOINT_URL') ||
      /^AWS_(REGION|DEFAULT_REGION|ACCESS_KEY_ID|SECRET_ACCESS_KEY|PROFILE)$/.test(name)
    ) {
      delete environment[name];
    }
  }
  return { ...environment, ...extra };
}

const run = promisify(execFile);
const BIN = path.resolve('cli/mail-relay.js');

/** Runs `mail-relay ARGS` as a user would, in its own process, from `cwd`, in a newcomer's shell. */
export async function runBin(
  cwd: string,
  args: readonly string[],
  extraEnv: Record<string, string> = {},
): Promise<CliResult> {
  try {
    const { stdout, stderr } = await run(process.execPath, [BIN, ...args], {
      cwd,
      env: newcomerEnvironment(extraEnv),
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code: number; stdout: string; stderr: string };
    return { code: failed.code, stdout: failed.stdout, stderr: failed.stderr };
  }
}
