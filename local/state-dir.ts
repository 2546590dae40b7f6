import { mkdir, open, readdir, readFile, rm } from 'node:fs/promises';
import path from 'node:path';

/** Where local mode keeps what survives a restart, relative to the working directory (git-ignored). */
export const DEFAULT_STATE_DIR = '.local';
/** The outbox and DLQ messages, written by queue-snapshot.ts. */
export const QUEUE_SNAPSHOT_FILE = 'queues.json';
/** dynalite's LevelDB directory: the delivery ledger and the suppression list. */
export const DYNAMODB_DATA_DIR = 'dynamodb';
/** The SMTP capture's .eml files: output for people to look at, not state, so --fresh keeps them. */
export const SMTP_CAPTURE_SUBDIR = 'smtp';
/** The passwords local mode generated for the ingress clients: kept, so configured apps keep working. */
export const INGRESS_CREDENTIALS_FILE = 'ingress-credentials.json';
/** Holds the process id of the local mode using the directory. */
const LOCK_FILE = 'local-mode.pid';

export interface StateDirectory {
  /** Absolute. */
  readonly directory: string;
  readonly queueSnapshotPath: string;
  readonly dynamoDbPath: string;
  readonly smtpCaptureDir: string;
  readonly ingressCredentialsPath: string;
  /** Lets the next local mode use the directory. */
  release(): Promise<void>;
}

/**
 * Takes the state directory for this process, creating it if needed. One local mode at a time:
 * two would overwrite each other's queue snapshot, and dynalite crashes the second process that
 * opens the same LevelDB. With `fresh`, the persisted queues, ledger and suppression list are
 * deleted first.
 */
export async function claimStateDirectory(
  directory: string,
  { fresh = false }: { fresh?: boolean } = {},
): Promise<StateDirectory> {
  const absolute = path.resolve(directory);
  await mkdir(absolute, { recursive: true });
  const lockPath = path.join(absolute, LOCK_FILE);
  await lock(lockPath, absolute);
  const state: StateDirectory = {
    directory: absolute,
    queueSnapshotPath: path.join(absolute, QUEUE_SNAPSHOT_FILE),
    dynamoDbPath: path.join(absolute, DYNAMODB_DATA_DIR),
    smtpCaptureDir: path.join(absolute, SMTP_CAPTURE_SUBDIR),
    ingressCredentialsPath: path.join(absolute, INGRESS_CREDENTIALS_FILE),
    release: () => unlock(lockPath),
  };
  // A snapshot write cut short by a kill leaves its temporary file: never read, so remove it.
  for (const name of await readdir(absolute)) {
    if (name.startsWith(`${QUEUE_SNAPSHOT_FILE}.`) && name.endsWith('.tmp')) {
      await rm(path.join(absolute, name), { force: true });
    }
  }
  if (fresh) {
    try {
      await rm(state.queueSnapshotPath, { force: true });
      await rm(state.dynamoDbPath, { recursive: true, force: true });
    } catch (error) {
      await state.release();
      throw error;
    }
  }
  return state;
}

async function lock(lockPath: string, directory: string): Promise<void> {
  // Two rounds: the second runs after a stale lock (a killed local mode's) was removed.
  for (let round = 0; round < 2; round += 1) {
    try {
      const handle = await open(lockPath, 'wx');
      try {
        await handle.writeFile(`${process.pid}\n`);
      } finally {
        await handle.close();
      }
      return;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    const holder = await lockHolder(lockPath);
    if (holder !== undefined && isRunning(holder)) {
      throw new Error(
        `${directory} is in use by another local mode (process ${holder}): stop it, or give this one its own --state-dir`,
      );
    }
    await rm(lockPath, { force: true });
  }
  throw new Error(`could not take ${lockPath}: another local mode is starting with the same --state-dir`);
}

async function unlock(lockPath: string): Promise<void> {
  // Only our own lock: after a takeover it may belong to someone else.
  if ((await lockHolder(lockPath)) === process.pid) await rm(lockPath, { force: true });
}

async function lockHolder(lockPath: string): Promise<number | undefined> {
  const text = await readFile(lockPath, 'utf8').catch(() => '');
  const pid = Number(text.trim());
  return Number.isInteger(pid) && pid > 0 ? pid : undefined;
}

/** Whether a process with this id exists (the state dir's lock, and the CLI's endpoints file). */
export function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0); // signal 0: only checks that the process exists
    return true;
  } catch (error) {
    // EPERM: it exists, but belongs to another user.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
