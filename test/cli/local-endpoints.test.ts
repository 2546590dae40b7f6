import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ENDPOINTS_FILE, type LocalEndpoints, readLocalEndpoints } from '../../cli/local-endpoints.ts';
import { DEFAULT_DYNAMODB_PORT, DEFAULT_SQS_PORT } from '../../local/local-names.ts';
import { runBin as cli, newcomerEnvironment } from '../helpers/cli.ts';
import { eventually } from '../helpers/peers.ts';
import { isolatedLocalMode } from '../local/isolated-local-mode.ts';

const _run = promisify(execFile);
const bin = path.resolve('cli/mail-relay.js');

describe('the CLI follows the ports `mail-relay start` was given', () => {
  const workDir = mkdtempSync(path.join(tmpdir(), 'mail-relay-endpoints-'));
  const stateDir = path.join(workDir, '.local');
  const endpointsFile = path.join(stateDir, ENDPOINTS_FILE);
  let child: ChildProcess;
  let output = '';

  beforeAll(async () => {
    writeFileSync(
      path.join(workDir, 'mail-relay.config.json'),
      JSON.stringify({
        ses: { identities: ['example.com'] },
        // Only this sender is allowed: the banner's Try: line must use it.
        routes: [{ name: 'billing', from: ['billing@example.com'], providers: ['ses'] }],
      }),
    );
    // Every port picked by the system, the state directory the default one of the working directory.
    const { stateDir: _isolatedState, ...ports } = isolatedLocalMode(workDir);
    const portArgs = [
      ['--sqs-port', ports.sqsPort],
      ['--ses-port', ports.sesPort],
      ['--dynamodb-port', ports.dynamoDbPort],
      ['--smtp-port', ports.smtpPort],
      ['--graph-peer-port', ports.graphPeerPort],
      ['--smtp-ingress-port', ports.smtpIngressPort],
    ].flatMap(([flag, value]) => [String(flag), String(value)]);
    child = spawn(process.execPath, [bin, 'start', ...portArgs], {
      cwd: workDir,
      env: newcomerEnvironment(),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
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
    await Promise.race([eventually(async () => (output.includes('\nTry:') ? true : undefined)), exited]);
  });

  afterAll(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await once(child, 'exit');
    }
    rmSync(workDir, { recursive: true, force: true });
  });

  const endpoints = (): LocalEndpoints => JSON.parse(readFileSync(endpointsFile, 'utf8')) as LocalEndpoints;

  it('writes where everything listens to <state dir>/endpoints.json, and names it in the banner', () => {
    const written = endpoints();
    expect(written.pid).toBe(child.pid);
    expect(written.stateDir).toBe(stateDir);
    expect(output).toContain(`Outbox queue:      ${written.queueUrl}`);
    expect(output).toContain(`Dead-letter queue: ${written.deadLetterQueueUrl}`);
    expect(output).toContain(`SQS endpoint:      ${written.sqsEndpoint}`);
    expect(output).toContain(`at ${written.dynamoDbEndpoint}`);
    expect(output).toContain(`Endpoints file:    ${endpointsFile}`);
    expect(written.sesEndpoint).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(written.ledgerTableName).toBe('mail-relay-ledger');
    // Not the defaults: what follows only works through the file.
    expect(new URL(written.sqsEndpoint).port).not.toBe(String(DEFAULT_SQS_PORT));
    expect(new URL(written.dynamoDbEndpoint).port).not.toBe(String(DEFAULT_DYNAMODB_PORT));
  });

  it('sends what the banner says to try, and reads the status, suppression list and dead-letter queue, with no port flag or variable', async () => {
    const tryLine = /^ {2}npx mail-relay (send .*)$/m.exec(output)?.[1];
    expect(tryLine).toBe(
      'send --from billing@example.com --to you@example.org --subject Hello --text "It works"',
    );
    const sent = await cli(workDir, [
      'send',
      '--from',
      'billing@example.com',
      '--to',
      'you@example.org',
      '--subject',
      'Hello',
      '--text',
      'It works',
    ]);
    expect(sent).toMatchObject({ code: 0, stderr: '' });
    const id = sent.stdout.trim();
    expect(id).not.toBe('');

    const delivered = await eventually(async () => {
      const status = await cli(workDir, ['status', id]);
      return status.code === 0 && status.stdout.startsWith('sent by ses') ? status : undefined;
    });
    expect(delivered.stdout).toContain(`SQS message ${id}`);

    const fleet = await cli(workDir, ['status']);
    expect(fleet.code).toBe(0);
    expect(fleet.stdout).toContain('Outbox: ');
    expect(fleet.stdout).not.toContain('cannot read');

    const suppressions = await cli(workDir, ['suppression', 'list']);
    expect(suppressions).toMatchObject({ code: 0, stdout: 'The suppression list is empty.\n' });

    const dead = await cli(workDir, ['dlq', 'list']);
    expect(dead.code).toBe(0);
    expect(dead.stdout).toContain(`No messages in the dead-letter queue ${endpoints().deadLetterQueueUrl}`);
  });

  it('finds it from another directory with --state-dir or MAIL_RELAY_STATE_DIR', async () => {
    const elsewhere = path.join(workDir, 'elsewhere');
    await mkdir(elsewhere, { recursive: true });
    expect((await cli(elsewhere, ['suppression', 'list', '--state-dir', stateDir])).code).toBe(0);
    expect((await cli(elsewhere, ['suppression', 'list'], { MAIL_RELAY_STATE_DIR: stateDir })).code).toBe(0);
  });

  it('lets explicit variables and flags win over the file', async () => {
    // Port 9 (discard) is closed: the variable is followed, so nothing answers.
    const byVariable = await cli(workDir, ['suppression', 'list'], { MAIL_RELAY_DYNAMODB_PORT: '9' });
    expect(byVariable.code).toBe(1);
    expect(byVariable.stderr).toContain(
      'local mode is not running: start it with `npm start` (tried the DynamoDB endpoint http://127.0.0.1:9: connection refused)',
    );
    const byFlag = await cli(workDir, [
      'send',
      '--from',
      'app@example.com',
      '--to',
      'you@example.org',
      '--subject',
      'Hi',
      '--text',
      'x',
      '--queue-url',
      'http://127.0.0.1:9/000000000000/mail-relay-outbox',
    ]);
    expect(byFlag.code).toBe(1);
    // The queue the flag names is the one tried, not the file's.
    expect(byFlag.stderr).toContain('local mode is not running: start it with `npm start` (tried ');
    expect(byFlag.stderr).toContain('http://127.0.0.1:9: connection refused');
  });

  it('removes the file when local mode stops', async () => {
    child.kill('SIGTERM');
    const [code] = await once(child, 'exit');
    expect(code).toBe(0);
    expect(existsSync(endpointsFile)).toBe(false);
    expect(readLocalEndpoints(stateDir)).toBeUndefined();
  });
});

describe('readLocalEndpoints', () => {
  const workDir = mkdtempSync(path.join(tmpdir(), 'mail-relay-endpoints-stale-'));
  afterAll(() => rmSync(workDir, { recursive: true, force: true }));

  it('ignores a file left by a local mode that no longer runs (killed), and a file that is not one', async () => {
    const gone = spawn(process.execPath, ['-e', '']);
    const [,] = await once(gone, 'exit');
    const stale = path.join(workDir, 'stale');
    await mkdir(stale);
    await writeFile(
      path.join(stale, ENDPOINTS_FILE),
      JSON.stringify({ pid: gone.pid, sqsEndpoint: 'http://127.0.0.1:1234', queueUrl: 'x' }),
    );
    expect(readLocalEndpoints(stale)).toBeUndefined();

    const garbled = path.join(workDir, 'garbled');
    await mkdir(garbled);
    await writeFile(path.join(garbled, ENDPOINTS_FILE), '{"pid":');
    expect(readLocalEndpoints(garbled)).toBeUndefined();

    const live = path.join(workDir, 'live');
    await mkdir(live);
    await writeFile(
      path.join(live, ENDPOINTS_FILE),
      JSON.stringify({ pid: process.pid, sqsEndpoint: 'http://127.0.0.1:1234', queueUrl: 'q' }),
    );
    expect(readLocalEndpoints(live)).toMatchObject({ sqsEndpoint: 'http://127.0.0.1:1234' });
  });
});
