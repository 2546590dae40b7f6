import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { SendMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import { defaultMessageSchema, MESSAGE_CONTRACT_VERSION, parseMessage } from '../lambda/core/message.ts';
import { DEFAULT_SQS_PORT, OUTBOX_QUEUE_NAME } from '../local/local-names.ts';

export const DEFAULT_LOCAL_QUEUE_URL = `http://127.0.0.1:${DEFAULT_SQS_PORT}/000000000000/${OUTBOX_QUEUE_NAME}`;

export interface SendFlags {
  from?: string;
  to?: string[];
  cc?: string[];
  bcc?: string[];
  'reply-to'?: string[];
  subject?: string;
  text?: string;
  html?: string;
  attach?: string[];
  /** Files already uploaded to the attachment bucket: file name on disk → S3 reference. */
  uploaded?: { file: string; bucket: string; key: string }[];
  header?: string[];
  tag?: string[];
  'idempotency-key'?: string;
}

const CONTENT_TYPES: Record<string, string> = {
  '.pdf': 'application/pdf',
  '.txt': 'text/plain',
  '.csv': 'text/csv',
  '.html': 'text/html',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.gif': 'image/gif',
  '.json': 'application/json',
  '.zip': 'application/zip',
};

function contentTypeOf(file: string): string {
  return CONTENT_TYPES[path.extname(file).toLowerCase()] ?? 'application/octet-stream';
}

/** Builds a contract message from CLI flags; problems are reported like the relay reports them. */
export async function buildMessage(flags: SendFlags): Promise<{ body: string } | { problems: string[] }> {
  const problems: string[] = [];
  const pairs = (values: string[] | undefined, separator: string, flag: string) =>
    Object.fromEntries(
      (values ?? []).flatMap((value) => {
        const index = value.indexOf(separator);
        if (index <= 0) {
          problems.push(`--${flag} ${value}: expected NAME${separator}VALUE`);
          return [];
        }
        return [[value.slice(0, index).trim(), value.slice(index + 1).trim()]];
      }),
    );
  const split = (values: string[] | undefined) => values?.flatMap(splitAddressList);
  const headers = pairs(flags.header, ':', 'header');
  const tags = pairs(flags.tag, '=', 'tag');
  const attachments = await Promise.all(
    (flags.attach ?? []).map(async (file) => {
      try {
        return {
          filename: path.basename(file),
          contentType: contentTypeOf(file),
          content: (await readFile(file)).toString('base64'),
        };
      } catch (error) {
        problems.push(`--attach ${file}: ${(error as Error).message}`);
        return undefined;
      }
    }),
  );
  const referenced = (flags.uploaded ?? []).map(({ file, bucket, key }) => ({
    filename: path.basename(file),
    contentType: contentTypeOf(file),
    s3: { bucket, key },
  }));
  const allAttachments = [...attachments.filter((attachment) => attachment !== undefined), ...referenced];
  const message = {
    v: MESSAGE_CONTRACT_VERSION,
    from: flags.from,
    ...(flags.to && { to: split(flags.to) }),
    ...(flags.cc && { cc: split(flags.cc) }),
    ...(flags.bcc && { bcc: split(flags.bcc) }),
    ...(flags['reply-to'] && { replyTo: split(flags['reply-to']) }),
    subject: flags.subject,
    ...(flags.text !== undefined && { text: flags.text }),
    ...(flags.html !== undefined && { html: flags.html }),
    ...(Object.keys(headers).length > 0 && { headers }),
    ...(Object.keys(tags).length > 0 && { tags }),
    ...(allAttachments.length > 0 && { attachments: allAttachments }),
    ...(flags['idempotency-key'] && { idempotencyKey: flags['idempotency-key'] }),
  };
  const body = JSON.stringify(message);
  // Same contract the relay enforces (with default limits), so mistakes show up here, not in the DLQ.
  const parsed = parseMessage(body, defaultMessageSchema);
  if (!parsed.ok) problems.push(...parsed.problems);
  return problems.length > 0 ? { problems } : { body };
}

export interface QueueTarget {
  queueUrl: string;
  endpoint?: string;
  region?: string;
}

/** An SQS client for the target: a local queue's own endpoint, else the region in the queue URL. */
export function sqsClientFor(target: QueueTarget): SQSClient {
  const url = new URL(target.queueUrl);
  const isLocal = ['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname);
  const endpoint = target.endpoint ?? (isLocal ? url.origin : undefined);
  const region = target.region ?? /sqs\.([a-z0-9-]+)\.amazonaws/.exec(url.hostname)?.[1] ?? 'us-east-1';
  return new SQSClient({
    region,
    ...(endpoint && { endpoint }),
    // Emulators accept any credentials; never pick up a real profile for a local queue.
    ...(isLocal && { credentials: { accessKeyId: 'local', secretAccessKey: 'local' } }),
  });
}

/** Puts a message on the outbox; returns the SQS message id. */
export async function enqueue(body: string, target: QueueTarget): Promise<string> {
  const client = sqsClientFor(target);
  try {
    const output = await client.send(
      new SendMessageCommand({ QueueUrl: target.queueUrl, MessageBody: body }),
    );
    return output.MessageId ?? '';
  } finally {
    client.destroy();
  }
}

/**
 * Splits `a@x.com, "Doe, Jane" <j@x.com>` at the commas that separate addresses, not those inside a
 * quoted display name or angle brackets. Empty entries (a trailing comma) are dropped.
 */
export function splitAddressList(list: string): string[] {
  const addresses: string[] = [];
  let current = '';
  let quoted = false;
  let angled = false;
  for (let index = 0; index < list.length; index += 1) {
    const char = list[index];
    if (char === '\\' && quoted) {
      current += char + (list[index + 1] ?? '');
      index += 1;
      continue;
    }
    if (char === '"') quoted = !quoted;
    else if (char === '<' && !quoted) angled = true;
    else if (char === '>' && !quoted) angled = false;
    if (char === ',' && !quoted && !angled) {
      addresses.push(current);
      current = '';
    } else {
      current += char;
    }
  }
  addresses.push(current);
  return addresses.map((address) => address.trim()).filter((address) => address.length > 0);
}
