import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { claimStateDirectory } from '../../local/state-dir.ts';

const newDirectory = () => path.join(mkdtempSync(path.join(tmpdir(), 'mail-relay-state-')), 'state');

describe('the state directory', () => {
  it('belongs to one local mode at a time, and to the next once released', async () => {
    const directory = newDirectory();
    const state = await claimStateDirectory(directory);

    await expect(claimStateDirectory(directory)).rejects.toThrow(
      `${directory} is in use by another local mode (process ${process.pid})`,
    );
    await state.release();
    const next = await claimStateDirectory(directory);
    await next.release();
  });

  it('is taken over from a local mode that was killed', async () => {
    const directory = newDirectory();
    mkdirSync(directory, { recursive: true });
    // A process id that is certainly gone: a child that has exited.
    const child = spawn(process.execPath, ['-e', '']);
    const [code] = await once(child, 'exit');
    expect(code).toBe(0);
    writeFileSync(path.join(directory, 'local-mode.pid'), `${child.pid}\n`);
    // It died in the middle of writing a snapshot.
    writeFileSync(path.join(directory, `queues.json.${child.pid}.tmp`), '{"version":1,"queu');

    const state = await claimStateDirectory(directory);
    await state.release();
    expect(readdirSync(directory)).toEqual([]);
  });

  it('with fresh, forgets the queues, ledger and suppression list but keeps the captured mail', async () => {
    const directory = newDirectory();
    const state = await claimStateDirectory(directory);
    writeFileSync(state.queueSnapshotPath, '{}');
    mkdirSync(state.dynamoDbPath);
    writeFileSync(path.join(state.dynamoDbPath, 'CURRENT'), 'MANIFEST-000001\n');
    mkdirSync(state.smtpCaptureDir);
    writeFileSync(path.join(state.smtpCaptureDir, 'sent.eml'), 'Subject: kept\r\n\r\n');
    await state.release();

    const fresh = await claimStateDirectory(directory, { fresh: true });
    await fresh.release();

    expect(existsSync(fresh.queueSnapshotPath)).toBe(false);
    expect(existsSync(fresh.dynamoDbPath)).toBe(false);
    expect(readdirSync(fresh.smtpCaptureDir)).toEqual(['sent.eml']);
    expect(readdirSync(directory).sort()).toEqual(['smtp']);
  });
});
