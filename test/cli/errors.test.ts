import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { describeError, refusedLoopbackAddress, SQS_MAX_MESSAGE_BYTES } from '../../cli/errors.ts';
import { main } from '../../cli/main.ts';

const run = promisify(execFile);
const bin = path.resolve('cli/mail-relay.js');

async function cliFails(cwd: string, args: string[], env: Record<string, string>): Promise<string> {
  const environment: NodeJS.ProcessEnv = { ...process.env, ...env };
  delete environment.MAIL_RELAY_STATE_DIR;
  const failed = await run(process.execPath, [bin, ...args], { cwd, env: environment }).then(
    () => {
      throw new Error(`mail-relay ${args.join(' ')} succeeded`);
    },
    (error: { code: number; stderr: string }) => error,
  );
  expect(failed.code).toBe(1);
  return failed.stderr;
}

/** Runs the CLI in this process, capturing what it prints on stderr. */
async function inProcess(...argv: string[]): Promise<{ code: number; stderr: string }> {
  const lines: string[] = [];
  const error = vi.spyOn(console, 'error').mockImplementation((...args: unknown[]) => {
    lines.push(args.join(' '));
  });
  try {
    return { code: await main(argv), stderr: lines.join('\n') };
  } finally {
    error.mockRestore();
  }
}

describe('errors that name the fix', () => {
  const workDir = mkdtempSync(path.join(tmpdir(), 'mail-relay-errors-'));
  afterAll(() => rmSync(workDir, { recursive: true, force: true }));

  // Port 9 (discard) is closed: local mode is not running there.
  const closed = { MAIL_RELAY_SQS_PORT: '9', MAIL_RELAY_DYNAMODB_PORT: '9' };
  const message = ['--from', 'app@example.com', '--to', 'you@example.org', '--subject', 'Hi', '--text', 'x'];

  it('says local mode is not running, how to start it, which endpoint was tried and where the CLI looked', async () => {
    const send = await cliFails(workDir, ['send', ...message], closed);
    expect(send).toContain(
      'Error: local mode is not running: start it with `npm start` (tried the SQS and S3 endpoint http://127.0.0.1:9: connection refused).',
    );
    expect(send).toContain(
      `No running local mode wrote ${path.join(workDir, '.local', 'endpoints.json')}: if it runs with another --state-dir, pass the same --state-dir here.`,
    );
    const status = await cliFails(workDir, ['status', 'some-id'], closed);
    expect(status).toContain(
      'Error: local mode is not running: start it with `npm start` (tried the DynamoDB endpoint http://127.0.0.1:9: connection refused).',
    );
    const dlq = await cliFails(workDir, ['dlq', 'list', '--state-dir', 'elsewhere'], closed);
    expect(dlq).toContain(
      'local mode is not running: start it with `npm start` (tried the SQS and S3 endpoint',
    );
    expect(dlq).toContain(`No running local mode wrote ${path.join(workDir, 'elsewhere', 'endpoints.json')}`);
  });

  it('finds a refused connection to this machine in causes and aggregates, and only there', () => {
    const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:4566'), {
      code: 'ECONNREFUSED',
      address: '127.0.0.1',
      port: 4566,
    });
    expect(refusedLoopbackAddress(refused)).toBe('127.0.0.1:4566');
    expect(refusedLoopbackAddress(new Error('wrapped', { cause: refused }))).toBe('127.0.0.1:4566');
    expect(refusedLoopbackAddress(new AggregateError([new Error('x'), refused]))).toBe('127.0.0.1:4566');
    const remote = Object.assign(new Error('connect ECONNREFUSED 10.0.0.1:443'), {
      code: 'ECONNREFUSED',
      address: '10.0.0.1',
      port: 443,
    });
    expect(refusedLoopbackAddress(remote)).toBeUndefined();
    expect(describeError(remote, undefined)).toBe('Error: connect ECONNREFUSED 10.0.0.1:443');
  });

  it('suggests --attach-s3 for a file too large to go inline, before sending or uploading anything', async () => {
    const big = path.join(workDir, 'scan.pdf');
    writeFileSync(big, Buffer.alloc(800_000, 1)); // 1,066,668 bytes in base64
    const result = await inProcess(
      'send',
      ...message,
      '--attach',
      big,
      '--queue-url',
      'http://127.0.0.1:9/0/q',
    );
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(
      `SQS takes at most ${SQS_MAX_MESSAGE_BYTES.toLocaleString('en-US')} bytes (1 MiB)`,
    );
    expect(result.stderr).toContain(`Send ${big} with --attach-s3 FILE instead`);
    expect(result.stderr).not.toContain('not running');
  });

  it('also when the files fit but the whole message does not', async () => {
    const file = path.join(workDir, 'report.csv');
    writeFileSync(file, Buffer.alloc(600_000, 2)); // 800,000 bytes in base64
    const result = await inProcess(
      'send',
      ...message,
      '--html',
      'x'.repeat(300_000),
      '--attach',
      file,
      '--queue-url',
      'http://127.0.0.1:9/0/q',
    );
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/The message is 1,1\d\d,\d\d\d bytes: SQS takes at most 1,048,576 bytes/);
    expect(result.stderr).toContain(`Send ${file} with --attach-s3 FILE instead`);
  });
});
