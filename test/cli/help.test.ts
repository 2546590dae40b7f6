import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import { usageOf } from '../../cli/main.ts';
import { runMain as cli } from '../helpers/cli.ts';

const run = promisify(execFile);

describe('mail-relay --help', () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  const commands: [string[], string][] = [
    [['start'], 'mail-relay start [--sqs-port N]'],
    [['send'], 'mail-relay send --from ADDR --to ADDR'],
    [['status'], 'mail-relay status ID [--table NAME]'],
    [['suppression'], 'mail-relay suppression list [--json] | add ADDRESS'],
    [['suppression', 'list'], 'mail-relay suppression list [--json] | add ADDRESS'],
    [['suppression', 'add'], 'mail-relay suppression list [--json] | add ADDRESS'],
    [['suppression', 'remove'], 'mail-relay suppression list [--json] | add ADDRESS'],
    [['dlq'], 'mail-relay dlq list [--reason CODE]'],
    [['dlq', 'list'], 'mail-relay dlq list [--reason CODE] [--json]'],
    [['dlq', 'show'], 'mail-relay dlq show ID [--json]'],
    [['dlq', 'redrive'], 'mail-relay dlq redrive [--reason CODE] [--id ID] [--dry-run] [--by NAME]'],
  ];

  it.each(commands)(
    '%j --help and -h print that usage and exit 0, touching nothing',
    async (words, synopsis) => {
      for (const flag of ['--help', '-h']) {
        // Next to flags that would otherwise be refused or reach for a queue: help wins over all of them.
        const result = await cli(...words, flag, '--queue-url', 'http://127.0.0.1:9/0/q', '--no-such-flag');
        expect(result).toMatchObject({ code: 0, stderr: '' });
        expect(result.stdout).toContain(synopsis);
        expect(result.stdout.startsWith('Usage:\n')).toBe(true);
      }
    },
  );

  it('prints only the command asked for; a dlq action gets its own paragraph and the shared options', async () => {
    const send = (await cli('send', '--help')).stdout;
    expect(send).toContain('--attach-s3 FILE');
    expect(send).not.toContain('mail-relay dlq');
    expect(send).not.toContain('mail-relay start');

    const redrive = (await cli('dlq', 'redrive', '--help')).stdout;
    expect(redrive).toContain('options of all three: [--dlq-url URL]');
    expect(redrive).toContain('redrive  per message');
    expect(redrive).not.toContain('list     every message');
    expect(redrive).not.toContain('mail-relay dlq show ID');

    const list = (await cli('dlq', 'list', '-h')).stdout;
    expect(list).toContain('list     every message');
    expect(list).not.toContain('redrive  per message');
  });

  it('answers `help COMMAND [ACTION]` the same way, and refuses an unknown command', async () => {
    expect(await cli('help', 'dlq', 'redrive')).toEqual(await cli('dlq', 'redrive', '--help'));
    expect(await cli('help', 'send')).toEqual({ code: 0, stdout: usageOf('send'), stderr: '' });
    const all = await cli('help');
    expect(all.code).toBe(0);
    for (const command of ['start', 'send', 'status', 'suppression', 'dlq']) {
      expect(all.stdout).toContain(`mail-relay ${command} `);
    }
    expect(await cli('--help')).toEqual(all);
    const unknown = await cli('help', 'nope');
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain('Unknown command "nope"');
  });

  it('leaves everything after `--` alone', async () => {
    // A value that happens to be "-h" after the terminator is not a request for help.
    const result = await cli('suppression', 'add', '--', '-h');
    expect(result.code).toBe(1);
    expect(result.stdout).toBe('');
  });

  it('points at --help when a flag is unknown', async () => {
    const result = await cli('send', '--bogus');
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("Unknown option '--bogus'");
    expect(result.stderr).toContain('`mail-relay send --help` shows its options.');
  });

  describe('through the bin', () => {
    const workDir = mkdtempSync(path.join(tmpdir(), 'mail-relay-help-'));
    afterAll(() => rmSync(workDir, { recursive: true, force: true }));

    it('start --help exits 0 without starting local mode (no state directory, no port taken)', async () => {
      const { stdout } = await run(
        process.execPath,
        [path.resolve('cli/mail-relay.js'), 'start', '--help', '--state-dir', path.join(workDir, 'state')],
        { cwd: workDir },
      );
      expect(stdout).toContain('mail-relay start [--sqs-port N]');
      expect(existsSync(path.join(workDir, 'state'))).toBe(false);
      expect(existsSync(path.join(workDir, '.local'))).toBe(false);
    });

    it('dlq redrive --help exits 0', async () => {
      const { stdout, stderr } = await run(process.execPath, [
        path.resolve('cli/mail-relay.js'),
        'dlq',
        'redrive',
        '--help',
      ]);
      expect(stdout).toContain('mail-relay dlq redrive');
      expect(stderr).toBe('');
    });
  });
});
