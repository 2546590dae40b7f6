import { createHash } from 'node:crypto';
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import {
  GetQueueAttributesCommand,
  SendMessageBatchCommand,
  type SendMessageBatchRequestEntry,
  SendMessageCommand,
  SQSClient,
} from '@aws-sdk/client-sqs';
import type { z } from 'zod';
import { DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_MAX_RECIPIENTS } from '../lambda/core/limits.ts';
import {
  createMessageSchema,
  isRawMessage,
  MESSAGE_CONTRACT_VERSION,
  type MessageSchema,
  parseMessage,
  type RelayMessage,
} from '../lambda/core/message.ts';
import type { MessageLimits } from '../lambda/core/settings.ts';

/** SQS's limit for one message, and for the sum of the messages of one SendMessageBatch: 1 MiB. */
export const SQS_MAX_MESSAGE_BYTES = 1_048_576;
/** SendMessageBatch takes at most 10 entries. */
export const SQS_MAX_BATCH_ENTRIES = 10;
/** Where uploaded attachments go in the bucket unless `keyPrefix` says otherwise. */
export const DEFAULT_KEY_PREFIX = 'relay-client/';

type ComposedInput = z.input<MessageSchema['composed']>;
type RawInput = z.input<MessageSchema['raw']>;
type ContractAttachment = NonNullable<ComposedInput['attachments']>[number];

/** Bytes the client encodes to base64 itself, or base64 as the contract takes it. */
export type Content = string | Uint8Array;

/** An attachment: `content` as bytes (or base64), or an `s3` reference to an object already in the bucket. */
export type ClientAttachment = Omit<ContractAttachment, 'content'> & { content?: Content };

/** The contract's composed form (README, "The message contract (v1)"); `v` may be left out. */
export type ComposedMessageInput = Omit<ComposedInput, 'v' | 'attachments'> & {
  v?: typeof MESSAGE_CONTRACT_VERSION;
  attachments?: ClientAttachment[];
};

/** The contract's raw form: MIME you built yourself, with the envelope beside it. */
export type RawMessageInput = Omit<RawInput, 'v' | 'mime'> & {
  v?: typeof MESSAGE_CONTRACT_VERSION;
  mime: { content: Content } | { s3: { bucket: string; key: string } };
};

export type RelayClientMessage = ComposedMessageInput | RawMessageInput;

export interface RelayClientOptions {
  /** The outbox (the `OutboxQueueUrl` stack output, or local mode's). */
  readonly queueUrl: string;
  /** The attachment bucket (`AttachmentBucketName`). Without it, a message too big for SQS is refused. */
  readonly attachmentBucket?: string;
  /** Default: a client for the queue URL's region; for a 127.0.0.1/localhost queue, its endpoint and dummy credentials. */
  readonly sqs?: SQSClient;
  /** Default: like `sqs` (local mode's S3 is on the SQS endpoint, path-style). */
  readonly s3?: S3Client;
  /**
   * A message whose JSON body is larger goes through the bucket: its largest inline attachments (or
   * its MIME) are uploaded and referenced, until it fits. At most 1 MiB, SQS's limit. @default 1048576
   */
  readonly maxInlineBytes?: number;
  /** The deployment's `message.maxRecipients` and `message.maxMessageBytes`. @default 50 and 40 MiB */
  readonly limits?: Partial<MessageLimits>;
  /** Prefix of the keys of uploaded attachments. @default 'relay-client/' */
  readonly keyPrefix?: string;
  /**
   * When a message has no `idempotencyKey`, set one derived from its content: `sha256:` and the hash of
   * the message in a canonical form (addresses parsed, base64 compacted, keys sorted). Sending the same
   * message twice is then one message for the relay's ledger. Give your own key for messages that
   * are meant to go out twice with the same content; `false` leaves the key unset (the relay then
   * knows a message only by its SQS message id). @default true
   */
  readonly deriveIdempotencyKey?: boolean;
}

export interface SendResult {
  /** The SQS message id. */
  readonly messageId: string;
  /** The key the message was sent with: the caller's, or the derived one. */
  readonly idempotencyKey: string | undefined;
  /** Objects uploaded to the bucket for this message (the claim check). */
  readonly uploaded: readonly S3Reference[];
}

export interface S3Reference {
  readonly bucket: string;
  readonly key: string;
}

export type BatchResult =
  | ({ readonly ok: true } & SendResult)
  | { readonly ok: false; readonly error: Error; readonly idempotencyKey?: string };

/** A message the contract refuses, or one that cannot be made to fit in SQS. Nothing was enqueued. */
export class RelayMessageError extends Error {
  /** One line per problem, `field: why`, as the relay reports them (values are never echoed). */
  readonly problems: readonly string[];

  constructor(problems: readonly string[]) {
    super(`invalid message:\n${problems.map((problem) => `  - ${problem}`).join('\n')}`);
    this.name = 'RelayMessageError';
    this.problems = problems;
  }
}

/** SQS refused one entry of a batch. */
export class RelayQueueError extends Error {
  readonly code: string;

  constructor(code: string, message: string) {
    super(`${code}: ${message}`);
    this.name = 'RelayQueueError';
    this.code = code;
  }
}

export interface RelayClient {
  /** Validates, derives the idempotency key, uploads what SQS cannot carry, enqueues. */
  send(message: RelayClientMessage): Promise<SendResult>;
  /** Each message as `send` does, enqueued with SendMessageBatch (10 at most, 1 MiB at most per call). */
  sendBatch(messages: readonly RelayClientMessage[]): Promise<BatchResult[]>;
  /** Checks that the queue exists and the credentials may read its attributes. */
  verify(): Promise<true>;
  /** Destroys the SDK clients this client created (not those it was given). */
  close(): void;
}

interface Prepared {
  readonly body: string;
  readonly idempotencyKey: string | undefined;
  readonly uploaded: S3Reference[];
}

export function createRelayClient(options: RelayClientOptions): RelayClient {
  const maxInlineBytes = options.maxInlineBytes ?? SQS_MAX_MESSAGE_BYTES;
  if (!Number.isInteger(maxInlineBytes) || maxInlineBytes < 1024 || maxInlineBytes > SQS_MAX_MESSAGE_BYTES) {
    throw new RangeError(
      `maxInlineBytes must be an integer from 1024 to ${SQS_MAX_MESSAGE_BYTES} (SQS's limit)`,
    );
  }
  const schema = createMessageSchema({
    maxRecipients: options.limits?.maxRecipients ?? DEFAULT_MAX_RECIPIENTS,
    maxMessageBytes: options.limits?.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES,
  });
  const keyPrefix = options.keyPrefix ?? DEFAULT_KEY_PREFIX;
  const derive = options.deriveIdempotencyKey ?? true;
  const defaults = defaultClientConfig(options.queueUrl);
  const sqs = options.sqs ?? new SQSClient(defaults);
  let s3 = options.s3;
  const owned: { destroy(): void }[] = options.sqs ? [] : [sqs];
  const bucketClient = () => {
    if (!s3) {
      s3 = new S3Client({ ...defaults, forcePathStyle: defaults.endpoint !== undefined });
      owned.push(s3);
    }
    return s3;
  };

  const upload = async (bytes: Buffer, contentType: string): Promise<S3Reference> => {
    const bucket = options.attachmentBucket as string;
    // Content-addressed: a retried send writes the same object again (which also restarts its expiry).
    const key = `${keyPrefix}${createHash('sha256').update(bytes).digest('hex')}`;
    await bucketClient().send(
      new PutObjectCommand({ Bucket: bucket, Key: key, Body: bytes, ContentType: contentType }),
    );
    return { bucket, key };
  };

  async function prepare(message: RelayClientMessage): Promise<Prepared> {
    if (typeof message !== 'object' || message === null || Array.isArray(message)) {
      throw new RelayMessageError(['(root): must be an object']);
    }
    let draft = encodeContent(message);
    // The relay's own parsing of the body it will receive: same JSON round trip, same schema.
    const parsed = parseMessage(toSqsBody(draft), schema);
    if (!parsed.ok) throw new RelayMessageError(parsed.problems);
    const idempotencyKey =
      (draft.idempotencyKey as string | undefined) ?? (derive ? contentKey(parsed.message) : undefined);
    if (idempotencyKey !== undefined) draft = { ...draft, idempotencyKey };

    const uploaded: S3Reference[] = [];
    let body = toSqsBody(draft);
    if (Buffer.byteLength(body) > maxInlineBytes) {
      if (options.attachmentBucket === undefined) {
        throw new RelayMessageError([
          `${'mime' in draft ? 'mime' : 'attachments'}: the message is ${Buffer.byteLength(body)} bytes as JSON and SQS takes at most ${maxInlineBytes}: give the client an attachmentBucket so large files travel through S3`,
        ]);
      }
      if ('mime' in draft) {
        const mime = draft.mime as { content?: string };
        if (mime.content !== undefined) {
          const reference = await upload(Buffer.from(mime.content, 'base64'), 'message/rfc822');
          uploaded.push(reference);
          draft = { ...draft, mime: { s3: reference } };
          body = toSqsBody(draft);
        }
      } else {
        const attachments = [...((draft.attachments as Record<string, unknown>[] | undefined) ?? [])];
        // Largest first: the fewest uploads that make the message fit.
        const order = attachments
          .map((attachment, index) => ({
            index,
            length: (attachment.content as string | undefined)?.length ?? 0,
          }))
          .filter(({ length }) => length > 0)
          .sort((a, b) => b.length - a.length);
        for (const { index } of order) {
          if (Buffer.byteLength(body) <= maxInlineBytes) break;
          const { content, ...rest } = attachments[index] as { content: string; contentType?: string };
          const reference = await upload(
            Buffer.from(content, 'base64'),
            rest.contentType ?? 'application/octet-stream',
          );
          uploaded.push(reference);
          attachments[index] = { ...rest, s3: reference };
          draft = { ...draft, attachments };
          body = toSqsBody(draft);
        }
      }
      if (Buffer.byteLength(body) > maxInlineBytes) {
        throw new RelayMessageError([
          `(root): the message is ${Buffer.byteLength(body)} bytes as JSON without its attachments, over ${maxInlineBytes}: bodies cannot go through S3 (send large content as an attachment, or as raw MIME)`,
        ]);
      }
      // What goes on the queue is what the relay will parse.
      const final = parseMessage(body, schema);
      if (!final.ok) throw new RelayMessageError(final.problems);
    }
    return { body, idempotencyKey, uploaded };
  }

  return {
    async send(message) {
      const prepared = await prepare(message);
      const output = await sqs.send(
        new SendMessageCommand({ QueueUrl: options.queueUrl, MessageBody: prepared.body }),
      );
      return {
        messageId: output.MessageId ?? '',
        idempotencyKey: prepared.idempotencyKey,
        uploaded: prepared.uploaded,
      };
    },

    async sendBatch(messages) {
      const results: BatchResult[] = new Array(messages.length);
      const ready: { index: number; prepared: Prepared; bytes: number }[] = [];
      await Promise.all(
        messages.map(async (message, index) => {
          try {
            const prepared = await prepare(message);
            ready.push({ index, prepared, bytes: Buffer.byteLength(prepared.body) });
          } catch (error) {
            results[index] = { ok: false, error: asError(error) };
          }
        }),
      );
      ready.sort((a, b) => a.index - b.index);
      for (const group of batches(ready)) {
        const entries: SendMessageBatchRequestEntry[] = group.map(({ index, prepared }) => ({
          Id: `m${index}`,
          MessageBody: prepared.body,
        }));
        try {
          const output = await sqs.send(
            new SendMessageBatchCommand({ QueueUrl: options.queueUrl, Entries: entries }),
          );
          const succeeded = new Map(
            (output.Successful ?? []).map((entry) => [entry.Id, entry.MessageId ?? '']),
          );
          const failed = new Map((output.Failed ?? []).map((entry) => [entry.Id, entry]));
          for (const { index, prepared } of group) {
            const messageId = succeeded.get(`m${index}`);
            const failure = failed.get(`m${index}`);
            results[index] =
              messageId !== undefined
                ? {
                    ok: true,
                    messageId,
                    idempotencyKey: prepared.idempotencyKey,
                    uploaded: prepared.uploaded,
                  }
                : {
                    ok: false,
                    error: new RelayQueueError(
                      failure?.Code ?? 'Unknown',
                      failure?.Message ?? 'SQS reported neither success nor failure for this entry',
                    ),
                    ...(prepared.idempotencyKey !== undefined && { idempotencyKey: prepared.idempotencyKey }),
                  };
          }
        } catch (error) {
          // The whole call failed (network, permissions, no such queue): every entry of it did.
          for (const { index, prepared } of group) {
            results[index] = {
              ok: false,
              error: asError(error),
              ...(prepared.idempotencyKey !== undefined && { idempotencyKey: prepared.idempotencyKey }),
            };
          }
        }
      }
      return results;
    },

    async verify() {
      await sqs.send(
        new GetQueueAttributesCommand({ QueueUrl: options.queueUrl, AttributeNames: ['QueueArn'] }),
      );
      return true;
    },

    close() {
      for (const client of owned.splice(0)) client.destroy();
    },
  };
}

/** Groups in order: at most 10 entries and 1 MiB of bodies per SendMessageBatch. */
function* batches<T extends { bytes: number }>(items: readonly T[]): Generator<T[]> {
  let group: T[] = [];
  let bytes = 0;
  for (const item of items) {
    if (
      group.length === SQS_MAX_BATCH_ENTRIES ||
      (group.length > 0 && bytes + item.bytes > SQS_MAX_MESSAGE_BYTES)
    ) {
      yield group;
      group = [];
      bytes = 0;
    }
    group.push(item);
    bytes += item.bytes;
  }
  if (group.length > 0) yield group;
}

/** Bytes to base64, and `v` filled in: the message as JSON would carry it. */
function encodeContent(message: RelayClientMessage): Record<string, unknown> {
  const draft: Record<string, unknown> = { v: MESSAGE_CONTRACT_VERSION, ...message };
  if (isRawMessage(message)) {
    const mime = message.mime as { content?: Content };
    if (mime.content instanceof Uint8Array) draft.mime = { ...message.mime, content: toBase64(mime.content) };
    return draft;
  }
  if (Array.isArray(message.attachments)) {
    draft.attachments = message.attachments.map((attachment) =>
      attachment?.content instanceof Uint8Array
        ? { ...attachment, content: toBase64(attachment.content) }
        : attachment,
    );
  }
  return draft;
}

function toBase64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');
}

/**
 * JSON for an SQS body. SQS refuses U+FFFE and U+FFFF in a body, and local mode's SQS emulator also
 * characters beyond the Basic Multilingual Plane (emoji): both are written as JSON escapes, which
 * parse back to the same text.
 */
export function toSqsBody(message: unknown): string {
  return JSON.stringify(message).replace(/[\uFFFE\uFFFF]|[\uD800-\uDBFF][\uDC00-\uDFFF]/g, (characters) => {
    let escaped = '';
    for (let index = 0; index < characters.length; index += 1) {
      escaped += `\\u${characters.charCodeAt(index).toString(16).padStart(4, '0')}`;
    }
    return escaped;
  });
}

/**
 * The derived idempotency key: `sha256:` and the hash of the message as the relay reads it (addresses
 * parsed, base64 without line breaks, default content types applied), with sorted keys. Two ways of
 * writing the same message (`"to": "a@x"` and `"to": ["a@x"]`) get the same key.
 */
export function contentKey(message: RelayMessage): string {
  return `sha256:${createHash('sha256').update(canonicalJson(message)).digest('hex')}`;
}

function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (typeof value === 'object' && value !== null) {
    const entries = Object.entries(value)
      .filter(([, inner]) => inner !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([key, inner]) => `${JSON.stringify(key)}:${canonicalJson(inner)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

function asError(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error));
}

/** Region from the queue URL; a loopback queue (local mode) gets its own endpoint and dummy credentials. */
function defaultClientConfig(queueUrl: string): {
  region?: string;
  endpoint?: string;
  credentials?: { accessKeyId: string; secretAccessKey: string };
} {
  const url = new URL(queueUrl);
  const local = ['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname);
  const region =
    /sqs[.-]([a-z0-9-]+)\.amazonaws/.exec(url.hostname)?.[1] ?? (local ? 'us-east-1' : undefined);
  return {
    ...(region !== undefined && { region }),
    // Emulators accept any credentials; never pick up a real profile for a local queue.
    ...(local && { endpoint: url.origin, credentials: { accessKeyId: 'local', secretAccessKey: 'local' } }),
  };
}
