import { closeSync, fsyncSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { open, readFile, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import type { SqsQueueStore, StoredSqsMessage, StoredSqsQueue } from './emulators.ts';

/**
 * fauxqs keeps its queues in memory only, so local mode writes the outbox and the DLQ to a JSON file
 * and puts them back on the next start. Messages keep their ids (the delivery ledger keys messages
 * without an idempotency key by SQS message id: that is what stops a restored copy of a message
 * already sent from going out twice), bodies, attributes, sent timestamps and receive counts (so
 * the redrive policy still counts earlier tries). Messages that were in flight come back visible.
 */

const SNAPSHOT_VERSION = 1;
/** How often a changed queue is written while running; also the most a hard kill can lose. */
export const DEFAULT_SNAPSHOT_INTERVAL_MS = 500;

const storedMessageSchema = z.object({
  messageId: z.string().min(1),
  body: z.string(),
  md5OfBody: z.string(),
  messageAttributes: z.record(
    z.string(),
    z.object({
      DataType: z.string(),
      StringValue: z.string().optional(),
      BinaryValue: z.string().optional(),
    }),
  ),
  md5OfMessageAttributes: z.string(),
  sentTimestamp: z.number(),
  approximateReceiveCount: z.int().min(0),
  approximateFirstReceiveTimestamp: z.number().optional(),
  /** A delayed message stays delayed until then. */
  delayUntil: z.number().optional(),
});

const snapshotSchema = z.object({
  version: z.literal(SNAPSHOT_VERSION),
  writtenAt: z.string(),
  /** Queue name → its messages, in the order they were due (in flight first, then ready, then delayed). */
  queues: z.record(z.string(), z.array(storedMessageSchema)),
});
type QueueSnapshotFile = z.infer<typeof snapshotSchema>;
type SnapshotMessage = z.infer<typeof storedMessageSchema>;

/**
 * Puts the messages of the snapshot file back on the named queues (which must exist), with their
 * ids. No file: nothing to restore. Returns how many messages each queue got back. A message
 * already on its queue (same id) is not added twice.
 */
export async function restoreQueues(
  store: SqsQueueStore,
  file: string,
  queueNames: readonly string[],
): Promise<Record<string, number>> {
  const restored = Object.fromEntries(queueNames.map((name) => [name, 0]));
  const snapshot = await readSnapshot(file);
  if (!snapshot) return restored;
  for (const name of queueNames) {
    const queue = queueNamed(store, name);
    const present = idsOn(queue);
    for (const message of snapshot.queues[name] ?? []) {
      if (present.has(message.messageId)) continue;
      queue.enqueue(toStoredMessage(message));
      restored[name] = (restored[name] ?? 0) + 1;
    }
  }
  return restored;
}

export interface QueueSnapshotsOptions {
  readonly store: SqsQueueStore;
  readonly queueNames: readonly string[];
  readonly file: string;
  /** @default 500 */
  readonly intervalMs?: number;
  /**
   * Queues whose every new message is on disk before the emulator acknowledges it. The DLQ: once it
   * has a message, the relay records so in its ledger and drops a repeated copy of that message from
   * the outbox, so after a hard kill the DLQ copy must still be there.
   */
  readonly writeThrough?: readonly string[];
  /** A failed write (the next change tries again). */
  readonly onError?: (error: unknown) => void;
}

/**
 * Writes the queues to the snapshot file whenever they changed, at most once per interval, and
 * once more on stop. Each write replaces the file atomically (temporary file, fsync, rename): a
 * kill at any moment leaves the previous snapshot or the new one, never a torn file.
 */
export class QueueSnapshots {
  private timer: NodeJS.Timeout | undefined;
  private writing: Promise<void> | undefined;
  /** The state last written, so an unchanged state is not written again. Nothing yet: the first tick writes. */
  private writtenFingerprint: string | undefined;
  private lastErrorMessage: string | undefined;

  constructor(private readonly options: QueueSnapshotsOptions) {}

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => this.tick(), this.options.intervalMs ?? DEFAULT_SNAPSHOT_INTERVAL_MS);
    // The snapshot must never be what keeps a stopping process alive.
    this.timer.unref();
    for (const name of this.options.writeThrough ?? [])
      this.writeThroughOn(queueNamed(this.options.store, name));
  }

  /**
   * fauxqs enqueues synchronously and answers SendMessage (or finishes a redrive move) right after:
   * writing the snapshot synchronously here puts the message on disk before anyone hears it arrived.
   * Dead letters are rare, so the cost of a synchronous write each time does not matter.
   */
  private writeThroughOn(queue: StoredSqsQueue): void {
    const enqueue = queue.enqueue.bind(queue);
    queue.enqueue = (message) => {
      enqueue(message);
      try {
        const { fingerprint, queues } = this.capture();
        writeFileAtomicallySync(this.options.file, JSON.stringify(this.snapshotOf(queues)));
        this.writtenFingerprint = fingerprint;
      } catch (error) {
        // The periodic write tries again; the message is in the queue either way.
        this.report(error);
      }
    };
  }

  private snapshotOf(queues: Record<string, SnapshotMessage[]>): QueueSnapshotFile {
    return { version: SNAPSHOT_VERSION, writtenAt: new Date().toISOString(), queues };
  }

  /** Stops the timer and writes the final state (after a write still in progress). */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    await this.writing;
    await this.writeIfChanged();
  }

  private tick(): void {
    if (this.writing) return;
    this.writing = this.writeIfChanged()
      .catch((error: unknown) => this.report(error))
      .finally(() => {
        this.writing = undefined;
      });
  }

  private async writeIfChanged(): Promise<void> {
    const { fingerprint, queues } = this.capture();
    if (fingerprint === this.writtenFingerprint) return;
    await writeFileAtomically(this.options.file, JSON.stringify(this.snapshotOf(queues)));
    this.writtenFingerprint = fingerprint;
    this.lastErrorMessage = undefined;
  }

  /**
   * Both queues at one instant, serialised before anything can change them (fauxqs changes them
   * synchronously: a message its redrive policy moves is in exactly one of them). The fingerprint
   * covers what a restore depends on: which messages, and their receive counts (bodies and
   * attributes of a message never change).
   */
  private capture(): { fingerprint: string; queues: Record<string, SnapshotMessage[]> } {
    const queues: Record<string, SnapshotMessage[]> = {};
    const parts: string[] = [];
    for (const name of this.options.queueNames) {
      const { ready, delayed, inflight } = queueNamed(this.options.store, name).inspectMessages();
      // In flight first: they were received before the ready ones, and come back visible.
      const messages = [...inflight.map((entry) => entry.message), ...ready, ...delayed].map(
        toSnapshotMessage,
      );
      queues[name] = messages;
      parts.push(
        `${name}:${messages.map((message) => `${message.messageId}/${message.approximateReceiveCount}`).join(',')}`,
      );
    }
    return { fingerprint: parts.join('\n'), queues };
  }

  private report(error: unknown): void {
    const message = String(error);
    // Once per distinct problem, not twice a second.
    if (message === this.lastErrorMessage) return;
    this.lastErrorMessage = message;
    this.options.onError?.(error);
  }
}

async function readSnapshot(file: string): Promise<QueueSnapshotFile | undefined> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
  let parsed: z.ZodSafeParseResult<QueueSnapshotFile>;
  try {
    parsed = snapshotSchema.safeParse(JSON.parse(text));
  } catch (error) {
    throw unreadable(file, String(error));
  }
  if (!parsed.success) throw unreadable(file, z.prettifyError(parsed.error));
  return parsed.data;
}

/** Never silently dropped: the messages in it may be the only copy. */
function unreadable(file: string, reason: string): Error {
  return new Error(
    `${file} is not a queue snapshot local mode can read (${reason}). Move it away to keep its messages and start with empty queues, or start with --fresh.`,
  );
}

function queueNamed(store: SqsQueueStore, name: string): StoredSqsQueue {
  const queue = store.getQueueByName(name);
  if (!queue) throw new Error(`the SQS emulator has no queue ${name}`);
  return queue;
}

function idsOn(queue: StoredSqsQueue): Set<string> {
  const { ready, delayed, inflight } = queue.inspectMessages();
  return new Set(
    [...ready, ...delayed, ...inflight.map((entry) => entry.message)].map((message) => message.messageId),
  );
}

/** Only the fields of a standard queue's message (the relay's queues are not FIFO). */
function toSnapshotMessage(message: StoredSqsMessage): SnapshotMessage {
  return {
    messageId: message.messageId,
    body: message.body,
    md5OfBody: message.md5OfBody,
    messageAttributes: message.messageAttributes,
    md5OfMessageAttributes: message.md5OfMessageAttributes,
    sentTimestamp: message.sentTimestamp,
    approximateReceiveCount: message.approximateReceiveCount,
    ...(message.approximateFirstReceiveTimestamp !== undefined && {
      approximateFirstReceiveTimestamp: message.approximateFirstReceiveTimestamp,
    }),
    ...(message.delayUntil !== undefined && { delayUntil: message.delayUntil }),
  };
}

function toStoredMessage(message: SnapshotMessage): StoredSqsMessage {
  return { ...message };
}

async function writeFileAtomically(file: string, contents: string): Promise<void> {
  const temporary = `${file}.${process.pid}.tmp`;
  try {
    const handle = await open(temporary, 'w');
    try {
      await handle.writeFile(contents);
      // On disk before the rename makes it the snapshot: a power loss cannot leave an empty file.
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temporary, file);
  } catch (error) {
    await rm(temporary, { force: true });
    throw error;
  }
  await syncDirectory(path.dirname(file));
}

/** writeFileAtomically for the synchronous path (see QueueSnapshots.writeThroughOn). */
function writeFileAtomicallySync(file: string, contents: string): void {
  const temporary = `${file}.${process.pid}.sync.tmp`;
  try {
    const descriptor = openSync(temporary, 'w');
    try {
      writeSync(descriptor, contents);
      fsyncSync(descriptor);
    } finally {
      closeSync(descriptor);
    }
    renameSync(temporary, file);
  } catch (error) {
    rmSync(temporary, { force: true });
    throw error;
  }
}

/** Makes the rename itself durable. Best effort: not every platform can open a directory. */
async function syncDirectory(directory: string): Promise<void> {
  const handle = await open(directory, 'r').catch(() => undefined);
  if (!handle) return;
  try {
    await handle.sync();
  } catch {
    // Nothing more to do: the file is written either way.
  } finally {
    await handle.close();
  }
}
