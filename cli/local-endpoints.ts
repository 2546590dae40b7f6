import { readFileSync, rmSync } from 'node:fs';
import { rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import {
  DEAD_LETTER_QUEUE_NAME,
  DEFAULT_DYNAMODB_PORT,
  DEFAULT_SQS_PORT,
  OUTBOX_QUEUE_NAME,
} from '../local/local-names.ts';
import type { LocalRelay } from '../local/local-relay.ts';
import { DEFAULT_STATE_DIR, isRunning } from '../local/state-dir.ts';
import type { DoctorSettings } from './doctor/target.ts';

/**
 * Where a running local mode says it listens: `mail-relay start` writes it into the state directory
 * once everything is up and removes it when it stops, so `send`, `status`, `suppression` and `dlq`
 * find local mode on whatever ports it was given. A file left by a killed local mode names a process
 * that no longer runs, and is ignored.
 */
export const ENDPOINTS_FILE = 'endpoints.json';

export interface LocalEndpoints {
  /** The process running local mode: the file is stale once it is gone. */
  readonly pid: number;
  readonly startedAt: string;
  readonly stateDir: string;
  readonly sqsEndpoint: string;
  readonly queueUrl: string;
  readonly deadLetterQueueUrl: string;
  readonly sesEndpoint: string;
  readonly dynamoDbEndpoint: string;
  readonly ledgerTableName: string;
  readonly suppressionTableName: string;
  readonly eventsEndpoint: string;
  readonly attachmentBucket: { readonly name: string; readonly endpoint: string } | null;
  readonly graphPeer: string | null;
  readonly smtpIngress: string | null;
  readonly smtpCaptures: readonly { readonly provider: string; readonly address: string }[];
  /** What `mail-relay doctor` checks in local mode: the settings the handler runs with and the stand-ins' details. */
  readonly doctor?: {
    /** The configuration file local mode was started with (absolute). */
    readonly configPath: string;
    /** The provider sections of the handler's settings (secret ARNs of the local emulator, no secret values). */
    readonly settings: DoctorSettings;
    readonly secretsManagerEndpoint: string;
    /** The DNS peer that answers for the senders' domains (host:port). */
    readonly dnsServer?: string;
    /** The Graph peer's certificate (public), when it runs. */
    readonly graphCa?: string;
    /** Each SMTP capture's certificate (public), by provider name. */
    readonly smtpCa: Readonly<Record<string, string>>;
  };
}

/** The state directory of the CLI's commands: --state-dir, else MAIL_RELAY_STATE_DIR, else .local. */
export function stateDirectoryOf(flag: string | undefined): string {
  return flag ?? process.env.MAIL_RELAY_STATE_DIR ?? DEFAULT_STATE_DIR;
}

export function endpointsPath(stateDir: string | undefined): string {
  return path.resolve(stateDirectoryOf(stateDir), ENDPOINTS_FILE);
}

export function endpointsOf(relay: LocalRelay, pid = process.pid): LocalEndpoints {
  return {
    pid,
    startedAt: new Date().toISOString(),
    stateDir: relay.state.directory,
    sqsEndpoint: relay.sqsEndpoint,
    queueUrl: relay.queueUrl,
    deadLetterQueueUrl: relay.deadLetterQueueUrl,
    sesEndpoint: relay.sesEndpoint,
    dynamoDbEndpoint: relay.dynamoDbEndpoint,
    ledgerTableName: relay.ledgerTableName,
    suppressionTableName: relay.suppressionTableName,
    eventsEndpoint: relay.eventBridge.endpoint,
    attachmentBucket: relay.attachmentBucket
      ? { name: relay.attachmentBucket.name, endpoint: relay.attachmentBucket.endpoint }
      : null,
    graphPeer: relay.graphPeer?.url ?? null,
    smtpIngress: relay.smtpIngress ? `${relay.smtpIngress.host}:${relay.smtpIngress.port}` : null,
    smtpCaptures: relay.smtpCaptures.map(({ provider, peer }) => ({
      provider,
      address: `${peer.host}:${peer.port}`,
    })),
    doctor: {
      configPath: relay.configPath,
      settings: {
        ...(relay.settings.graph && { graph: relay.settings.graph }),
        ...(relay.settings.smtp && { smtp: relay.settings.smtp }),
        ...(relay.settings.ses && { ses: relay.settings.ses }),
        ...(relay.settings.routes && { routes: relay.settings.routes }),
      },
      secretsManagerEndpoint: relay.secretsManagerEndpoint,
      ...(relay.dnsPeer && { dnsServer: relay.dnsPeer.address }),
      ...(relay.graphPeer && { graphCa: relay.graphPeer.caCertificate }),
      smtpCa: Object.fromEntries(
        relay.smtpCaptures.map(({ provider, peer }) => [provider, peer.caCertificate]),
      ),
    },
  };
}

/** Writes the endpoints file into the relay's state directory (whole or not at all); returns its path. */
export async function writeLocalEndpoints(relay: LocalRelay): Promise<string> {
  const file = path.join(relay.state.directory, ENDPOINTS_FILE);
  const temporary = `${file}.${process.pid}.tmp`;
  await writeFile(temporary, `${JSON.stringify(endpointsOf(relay), null, 2)}\n`);
  await rename(temporary, file);
  return file;
}

/** Removes the endpoints file of a state directory, if this process wrote it. Synchronous: also runs on a hard exit. */
export function removeLocalEndpoints(directory: string): void {
  const file = path.join(directory, ENDPOINTS_FILE);
  if (readEndpointsFile(file)?.pid === process.pid) rmSync(file, { force: true });
}

function readEndpointsFile(file: string): LocalEndpoints | undefined {
  try {
    const parsed = JSON.parse(readFileSync(file, 'utf8')) as Partial<LocalEndpoints>;
    return typeof parsed.pid === 'number' && typeof parsed.sqsEndpoint === 'string'
      ? (parsed as LocalEndpoints)
      : undefined;
  } catch {
    return undefined;
  }
}

const cache = new Map<string, LocalEndpoints | undefined>();

/**
 * The endpoints of the local mode running on a state directory (--state-dir, MAIL_RELAY_STATE_DIR or
 * .local); undefined when none is running there (no file, or one left by a process that is gone).
 */
export function readLocalEndpoints(stateDir?: string): LocalEndpoints | undefined {
  const file = endpointsPath(stateDir);
  if (!cache.has(file)) {
    const endpoints = readEndpointsFile(file);
    cache.set(file, endpoints && isRunning(endpoints.pid) ? endpoints : undefined);
  }
  return cache.get(file);
}

/** A port from an environment variable, when it is set. */
function envPort(name: string): string | undefined {
  const value = process.env[name];
  return value === undefined || value === '' ? undefined : value;
}

/**
 * Local mode's queue URL: MAIL_RELAY_SQS_PORT wins, then the endpoints file of the running local
 * mode, then the default port.
 */
export function localQueueUrl(name: string, stateDir?: string): string {
  const port = envPort('MAIL_RELAY_SQS_PORT');
  if (port === undefined) {
    const running = readLocalEndpoints(stateDir);
    if (running && name === OUTBOX_QUEUE_NAME) return running.queueUrl;
    if (running && name === DEAD_LETTER_QUEUE_NAME) return running.deadLetterQueueUrl;
    if (running) return `${running.sqsEndpoint}/000000000000/${name}`;
  }
  return `http://127.0.0.1:${port ?? DEFAULT_SQS_PORT}/000000000000/${name}`;
}

/** Local mode's DynamoDB endpoint: MAIL_RELAY_DYNAMODB_PORT, then the endpoints file, then the default port. */
export function localDynamoDbEndpoint(stateDir?: string): string {
  const port = envPort('MAIL_RELAY_DYNAMODB_PORT');
  if (port === undefined) {
    const running = readLocalEndpoints(stateDir);
    if (running) return running.dynamoDbEndpoint;
  }
  return `http://127.0.0.1:${port ?? DEFAULT_DYNAMODB_PORT}`;
}
