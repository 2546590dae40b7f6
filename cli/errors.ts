import { ConfigurationError } from '../lambda/core/validation.ts';
import { OUTBOX_QUEUE_NAME } from '../local/local-names.ts';
import {
  endpointsPath,
  localDynamoDbEndpoint,
  localQueueUrl,
  readLocalEndpoints,
} from './local-endpoints.ts';

/** SQS takes messages up to 1 MiB (message body and attributes). */
export const SQS_MAX_MESSAGE_BYTES = 1024 * 1024;

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '::1', '[::1]']);

/** The loopback address a connection was refused at (`127.0.0.1:4566`), searching causes and aggregates. */
export function refusedLoopbackAddress(error: unknown, depth = 0): string | undefined {
  if (typeof error !== 'object' || error === null || depth > 4) return undefined;
  const { code, address, port, cause, errors } = error as {
    code?: unknown;
    address?: unknown;
    port?: unknown;
    cause?: unknown;
    errors?: unknown;
  };
  if (code === 'ECONNREFUSED' && typeof address === 'string' && LOOPBACK.has(address)) {
    return address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
  }
  for (const inner of [cause, ...(Array.isArray(errors) ? errors : [])]) {
    const found = refusedLoopbackAddress(inner, depth + 1);
    if (found) return found;
  }
  return undefined;
}

/**
 * Which of local mode's services listens (or should) at a loopback port, for the CLI's state directory.
 * `tables` first: for the commands that read tables (status ID, suppression), when both share a port.
 */
function serviceAt(port: string, stateDir: string | undefined, tablesFirst: boolean): string {
  const portOf = (url: string) => new URL(url).port;
  const services: [string, string][] = [
    [portOf(localQueueUrl(OUTBOX_QUEUE_NAME, stateDir)), 'the SQS and S3 endpoint'],
    [portOf(localDynamoDbEndpoint(stateDir)), 'the DynamoDB endpoint'],
  ];
  if (tablesFirst) services.reverse();
  return services.find(([candidate]) => candidate === port)?.[1] ?? 'the endpoint';
}

/** The sentence for local mode not answering: what to do, and where the CLI looked. */
export function localModeNotRunning(
  address: string,
  stateDir: string | undefined,
  tablesFirst = false,
): string {
  const port = address.slice(address.lastIndexOf(':') + 1);
  const found = readLocalEndpoints(stateDir) !== undefined;
  const where = found
    ? ''
    : ` No running local mode wrote ${endpointsPath(stateDir)}: if it runs with another --state-dir, pass the same --state-dir here.`;
  return `local mode is not running: start it with \`npm start\` (tried ${serviceAt(port, stateDir, tablesFirst)} http://${address}: connection refused).${where}`;
}

/** An error as the CLI prints it: the fix when there is a known one. */
export function describeError(error: unknown, stateDir: string | undefined, command?: string): string {
  if (error instanceof ConfigurationError) return error.message;
  const refused = refusedLoopbackAddress(error);
  if (refused) {
    const tablesFirst = command === 'status' || command === 'suppression';
    return `Error: ${localModeNotRunning(refused, stateDir, tablesFirst)}`;
  }
  return `Error: ${(error as Error).message}`;
}

/** SQS said the message is too long (a queue with a lower maximum size than the CLI checks for). */
export function isMessageTooLong(error: unknown): boolean {
  const { name, message } = error as { name?: string; message?: string };
  return (
    name === 'MessageTooLong' ||
    (name === 'InvalidParameterValue' && /too long|shorter than|maximum.*size/i.test(message ?? ''))
  );
}

/** Why a message is too big for the queue, and what to send it with instead. */
export function tooLargeAdvice(bytes: number | undefined, inlineFiles: readonly string[]): string {
  const size =
    bytes === undefined
      ? 'The message is larger than the queue takes'
      : `The message is ${bytes.toLocaleString('en-US')} bytes`;
  const files = inlineFiles.length > 0 ? inlineFiles.join(', ') : 'the large files';
  return (
    `${size}: SQS takes at most ${SQS_MAX_MESSAGE_BYTES.toLocaleString('en-US')} bytes (1 MiB), and --attach puts the file in the message (base64, a third larger). ` +
    `Send ${files} with --attach-s3 FILE instead: it uploads the file to the attachment bucket and the message carries a reference ` +
    '(--bucket NAME, the AttachmentBucketName stack output, when sending to a deployed relay).'
  );
}
