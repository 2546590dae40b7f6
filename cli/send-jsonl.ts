import { open } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { S3Client } from '@aws-sdk/client-s3';
import {
  createRelayClient,
  type RelayClient,
  type RelayClientMessage,
  RelayMessageError,
  RelayQueueError,
  SQS_MAX_BATCH_ENTRIES,
} from '../client/relay-client.ts';
import { type QueueTarget, sqsClientFor } from './send.ts';

/**
 * `mail-relay send --jsonl FILE`: one message per line in the relay's JSON contract, each validated
 * as the relay will (the typed client's validation), enqueued with SendMessageBatch through the
 * client's sendBatch. Invalid lines are reported by number and field and never sent.
 */

export interface JsonlSummary {
  /** Where the lines came from: the file, or "stdin". */
  readonly source: string;
  /** Lines that held something (blank lines are skipped). */
  readonly messages: number;
  readonly sent: readonly { readonly line: number; readonly messageId: string }[];
  /** Refused by the contract: `field: why`, as the relay reports it (values are never echoed). */
  readonly invalid: readonly { readonly line: number; readonly problems: readonly string[] }[];
  /** SQS refused the entry. */
  readonly failed: readonly { readonly line: number; readonly error: string }[];
  /** Sending stopped here: a whole SendMessageBatch call (or an upload) failed; later lines were not read. */
  readonly stopped?: { readonly line: number; readonly error: string };
}

export interface SendJsonlOptions {
  /** A file, or `-` for stdin. */
  readonly source: string;
  readonly client: RelayClient;
  /** What `-` reads. @default process.stdin */
  readonly stdin?: NodeJS.ReadableStream;
  /** Called after each batch with the progress so far; `total` when known (a file, counted first). */
  readonly onProgress?: (progress: {
    readonly done: number;
    readonly total?: number;
    readonly sent: number;
    readonly invalid: number;
    readonly failed: number;
  }) => void;
  /** Messages per sendBatch call. @default 10 (one SendMessageBatch) */
  readonly batchSize?: number;
}

interface Pending {
  readonly line: number;
  readonly message: RelayClientMessage;
}

/**
 * Reads the lines, validates and sends them in batches. Throws the error of the first call when it
 * fails as a whole before anything was sent (no queue, local mode not running): the caller explains it.
 */
export async function sendJsonl(options: SendJsonlOptions): Promise<JsonlSummary> {
  const { source, client } = options;
  const batchSize = options.batchSize ?? SQS_MAX_BATCH_ENTRIES;
  const fromStdin = source === '-';
  const total = options.onProgress && !fromStdin ? await countMessageLines(source) : undefined;
  const sent: { line: number; messageId: string }[] = [];
  const invalid: { line: number; problems: string[] }[] = [];
  const failed: { line: number; error: string }[] = [];
  let stopped: { line: number; error: string } | undefined;
  let messages = 0;

  const report = () =>
    options.onProgress?.({
      done: sent.length + invalid.length + failed.length,
      ...(total !== undefined && { total }),
      sent: sent.length,
      invalid: invalid.length,
      failed: failed.length,
    });

  const flush = async (batch: Pending[]) => {
    if (batch.length === 0) return;
    const results = await client.sendBatch(batch.map(({ message }) => message));
    for (const [index, result] of results.entries()) {
      const { line } = batch[index] as Pending;
      if (result.ok) sent.push({ line, messageId: result.messageId });
      else if (result.error instanceof RelayMessageError) {
        invalid.push({ line, problems: [...result.error.problems] });
      } else if (result.error instanceof RelayQueueError) {
        failed.push({ line, error: result.error.message });
      } else {
        // The call itself failed (network, permissions, no such queue or bucket): so would the next.
        if (sent.length === 0) throw result.error;
        stopped ??= { line, error: result.error.message };
      }
    }
    report();
  };

  // Opened first: a missing or unreadable file is an error here, not a silent empty read.
  const input = fromStdin ? (options.stdin ?? process.stdin) : (await open(source)).createReadStream();
  const lines = createInterface({ input, crlfDelay: Number.POSITIVE_INFINITY });
  let batch: Pending[] = [];
  let number = 0;
  try {
    for await (const text of lines) {
      number += 1;
      if (text.trim().length === 0) continue;
      messages += 1;
      const parsed = parseLine(text);
      if ('problems' in parsed) {
        invalid.push({ line: number, problems: parsed.problems });
        continue;
      }
      batch.push({ line: number, message: parsed.message });
      if (batch.length >= batchSize) {
        await flush(batch);
        batch = [];
        if (stopped) break;
      }
    }
    if (!stopped) await flush(batch);
  } finally {
    lines.close();
    if (!fromStdin) (input as { destroy(): void }).destroy();
  }
  // Lines read but not sent after a stop count as neither: the summary names the line it stopped at.
  return {
    source: fromStdin ? 'stdin' : source,
    messages,
    sent,
    invalid: invalid.sort((a, b) => a.line - b.line),
    failed,
    ...(stopped && { stopped }),
  };
}

/** JSON that is an object; the contract itself is the client's to check. */
function parseLine(text: string): { message: RelayClientMessage } | { problems: string[] } {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    // Not the parser's message: it can quote the line, and a line is a message's content.
    const position = /at position (\d+)/.exec((error as Error).message)?.[1];
    return {
      problems: [
        `(root): not valid JSON${position === undefined ? '' : ` (at character ${Number(position) + 1})`}`,
      ],
    };
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return { problems: ['(root): must be a JSON object (one message per line)'] };
  }
  return { message: value as RelayClientMessage };
}

async function countMessageLines(file: string): Promise<number> {
  const input = (await open(file)).createReadStream();
  const lines = createInterface({ input, crlfDelay: Number.POSITIVE_INFINITY });
  let count = 0;
  for await (const text of lines) if (text.trim().length > 0) count += 1;
  return count;
}

/** The progress line: `  120/500 sent  2 invalid` (without the total when reading stdin). */
export function progressLine(progress: Parameters<NonNullable<SendJsonlOptions['onProgress']>>[0]): string {
  const of = progress.total === undefined ? `${progress.sent}` : `${progress.sent}/${progress.total}`;
  return [
    `  ${of} sent`,
    progress.invalid > 0 ? `${progress.invalid} invalid` : '',
    progress.failed > 0 ? `${progress.failed} failed` : '',
  ]
    .filter((part) => part.length > 0)
    .join('  ');
}

/** The summary: counts, then each invalid line with its fields, each failed line with SQS's reason. */
export function describeJsonlSummary(summary: JsonlSummary, queueUrl: string): string {
  const lines = [
    `Sent ${summary.sent.length} of ${summary.messages} message(s) from ${summary.source} to ${queueUrl}: ${summary.invalid.length} invalid, ${summary.failed.length} failed.`,
  ];
  if (summary.invalid.length > 0) {
    lines.push('Invalid (not sent; fix these lines and send them again):');
    for (const { line, problems } of summary.invalid) lines.push(`  line ${line}: ${problems.join('; ')}`);
  }
  if (summary.failed.length > 0) {
    lines.push('Failed (SQS refused them):');
    for (const { line, error } of summary.failed) lines.push(`  line ${line}: ${error}`);
  }
  if (summary.stopped) {
    lines.push(
      `Stopped at line ${summary.stopped.line}: ${summary.stopped.error}. The lines from there on were not sent.`,
    );
  }
  return lines.join('\n');
}

/** 0 when every message was enqueued, 1 otherwise. */
export function exitCodeOf(summary: JsonlSummary): number {
  return summary.sent.length === summary.messages && !summary.stopped ? 0 : 1;
}

export interface SendJsonlTarget extends QueueTarget {
  /** The attachment bucket for messages too big for SQS (the claim check). */
  readonly bucket?: string;
  readonly s3Endpoint?: string;
}

/** What `mail-relay send --jsonl` runs: builds the client, sends, prints the summary; the exit code. */
export async function runSendJsonl(
  source: string,
  target: SendJsonlTarget,
  io: {
    readonly out: (text: string) => void;
    /** Rewrites the progress line in place; absent when stderr is not a terminal. */
    readonly progress?: (text: string) => void;
    readonly stdin?: NodeJS.ReadableStream;
  },
): Promise<number> {
  const sqs = sqsClientFor(target);
  const s3 =
    target.s3Endpoint === undefined
      ? undefined
      : new S3Client({
          region: target.region ?? 'us-east-1',
          endpoint: target.s3Endpoint,
          forcePathStyle: true,
          // Emulators accept any credentials; never pick up a real profile for a local bucket.
          ...(isLoopback(target.s3Endpoint) && {
            credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
          }),
        });
  const client = createRelayClient({
    queueUrl: target.queueUrl,
    sqs,
    ...(s3 && { s3 }),
    ...(target.bucket !== undefined && { attachmentBucket: target.bucket }),
  });
  try {
    const summary = await sendJsonl({
      source,
      client,
      ...(io.stdin && { stdin: io.stdin }),
      ...(io.progress && { onProgress: (progress) => io.progress?.(progressLine(progress)) }),
    });
    io.out(describeJsonlSummary(summary, target.queueUrl));
    return exitCodeOf(summary);
  } finally {
    sqs.destroy();
    s3?.destroy();
  }
}

function isLoopback(url: string): boolean {
  return ['127.0.0.1', 'localhost', '[::1]'].includes(new URL(url).hostname);
}
