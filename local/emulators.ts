import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import sesEmulatorModule from 'aws-ses-v2-local';
import dynaliteModule from 'dynalite';
import { buildApp, type FauxqsServer } from 'fauxqs';

export const LOOPBACK = '127.0.0.1';

export interface RunningEmulator {
  /** Base URL, e.g. http://127.0.0.1:4566 */
  readonly endpoint: string;
  readonly port: number;
  stop(): Promise<void>;
}

/** A message as fauxqs stores it (ids, body, attributes with their MD5s, timestamps, receive count). */
export type StoredSqsMessage = NonNullable<
  ReturnType<FauxqsServer['inspectQueue']>
>['messages']['ready'][number];

/** The part of one of fauxqs's queues that local mode reads and restores (fauxqs's SqsQueue). */
export interface StoredSqsQueue {
  /** A non-destructive view: visible, delayed and in-flight messages. */
  inspectMessages(): {
    readonly ready: readonly StoredSqsMessage[];
    readonly delayed: readonly StoredSqsMessage[];
    /** visibilityDeadline: epoch ms at which an in-flight message becomes visible again. */
    readonly inflight: readonly { readonly message: StoredSqsMessage; readonly visibilityDeadline: number }[];
  };
  /** Puts a message in as it is (its id, timestamps and receive count included). */
  enqueue(message: StoredSqsMessage): void;
}

/** fauxqs's in-memory queue store, which local mode snapshots to disk and restores. */
export interface SqsQueueStore {
  getQueueByName(name: string): StoredSqsQueue | undefined;
}

export interface SqsEmulator extends RunningEmulator {
  /** The emulator's queues, in this process: what local mode persists (fauxqs itself cannot). */
  readonly store: SqsQueueStore;
}

/**
 * fauxqs (SQS, JSON protocol) on loopback. Its default store names queues
 * `http://sqs.<region>.localhost:<port>/…`, which does not resolve everywhere; an empty host makes
 * queue URLs use the address the client connected to (http://127.0.0.1:<port>/000000000000/<name>).
 * We construct the store ourselves (fauxqs does not export it), which also gives us its queues.
 */
export async function startSqsEmulator(port: number): Promise<SqsEmulator> {
  const dist = path.dirname(fileURLToPath(import.meta.resolve('fauxqs')));
  const load = (file: string) => import(pathToFileURL(path.join(dist, file)).href);
  const [{ SqsStore }, { SnsStore }, { S3Store }] = await Promise.all([
    load('sqs/sqsStore.js'),
    load('sns/snsStore.js'),
    load('s3/s3Store.js'),
  ]);
  const sqsStore = new SqsStore();
  sqsStore.host = '';
  const app = buildApp({
    logger: false,
    stores: { sqsStore, snsStore: new SnsStore(), s3Store: new S3Store() },
  });
  await app.listen({ port, host: LOOPBACK });
  const bound = (app.server.address() as AddressInfo).port;
  return {
    endpoint: `http://${LOOPBACK}:${bound}`,
    port: bound,
    store: sqsStore as SqsQueueStore,
    stop: () => app.close(),
  };
}

type StartSes = (config: { host: string; port: number }) => Promise<Server>;

/** aws-ses-v2-local (SES v2 API + GET /store + a web view of captured mail) on loopback. */
export async function startSesEmulator(port: number): Promise<RunningEmulator> {
  // aws-ses-v2-local is CommonJS: depending on the loader its default export arrives as the module
  // itself (vite) or as `.default` of the module object (Node, tsx).
  const moduleOrStart = sesEmulatorModule as unknown as StartSes | { default: StartSes };
  const start = typeof moduleOrStart === 'function' ? moduleOrStart : moduleOrStart.default;
  return running(await start({ host: LOOPBACK, port }));
}

type StartDynalite = (options: Record<string, number | string>) => Server;

export interface DynamoDbEmulatorOptions {
  /**
   * A directory for the tables (LevelDB), kept across restarts; one emulator at a time may use it.
   * Absent: in memory.
   */
  readonly path?: string;
}

/** dynalite (DynamoDB API) on loopback: the delivery ledger and the suppression list. */
export async function startDynamoDbEmulator(
  port: number,
  options: DynamoDbEmulatorOptions = {},
): Promise<RunningEmulator> {
  // CommonJS too, so the same two shapes as aws-ses-v2-local.
  const moduleOrStart = dynaliteModule as unknown as StartDynalite | { default: StartDynalite };
  const start = typeof moduleOrStart === 'function' ? moduleOrStart : moduleOrStart.default;
  // Tables are ready at once, as tests and local mode create them right before use.
  const server = start({
    createTableMs: 0,
    deleteTableMs: 0,
    updateTableMs: 0,
    ...(options.path !== undefined && { path: options.path }),
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, LOOPBACK, () => {
      server.off('error', reject);
      resolve();
    });
  });
  // dynalite's close also closes its LevelDB, so the directory can be opened again.
  return running(server);
}

/** A listening HTTP server as an emulator: its loopback endpoint, and a stop that drops open connections. */
function running(server: Server): RunningEmulator {
  const bound = (server.address() as AddressInfo).port;
  return {
    endpoint: `http://${LOOPBACK}:${bound}`,
    port: bound,
    stop: () =>
      new Promise<void>((resolve, reject) => {
        server.closeAllConnections();
        server.close((error?: Error) => (error ? reject(error) : resolve()));
      }),
  };
}
