import { GetObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import type { Mailbox } from './address.ts';
import { RelayFailure, S3_FAILURES } from './failures.ts';
import { type ComposedMessage, decodedSizeOf, type RawMessage } from './message.ts';
import type { RawMime } from './mime/raw-mime.ts';
import type { AttachmentSettings } from './settings.ts';
import { truncate } from './text.ts';

/** An attachment with its bytes in hand, whichever way it travelled. */
export interface OutboundAttachment {
  readonly filename: string;
  readonly contentType: string;
  readonly contentId?: string;
  readonly content: Buffer;
}

/** A composed message ready for a provider: every attachment resolved to bytes. */
export type ComposedOutbound = Omit<ComposedMessage, 'attachments'> & {
  readonly attachments?: readonly OutboundAttachment[];
};

/**
 * A raw message ready for a provider: its MIME read and normalised, the From checked against it. The
 * relay-owned changes (From rewrite, trace headers, Message-ID, Bcc) are applied when a provider
 * renders it (providers/mime.ts), since the Message-ID is chosen per send.
 */
export interface RawOutbound {
  /** The address it is sent as: the MIME's From, or the route's rewriteFrom. */
  readonly from: Mailbox;
  /** Set when the route rewrote the From: the From header is replaced by `from`. */
  readonly rewrittenFrom?: { readonly replyTo: readonly Mailbox[] };
  /** The envelope, without suppressed recipients. */
  readonly recipients: readonly Mailbox[];
  readonly mime: RawMime;
  /** The MIME's own Message-ID, kept when it has one. */
  readonly messageId?: string;
  /** Headers the relay sets (trace headers). */
  readonly headers: Readonly<Record<string, string>>;
  readonly tags?: Readonly<Record<string, string>>;
}

/** A validated message ready for a provider. */
export type OutboundMessage = ComposedOutbound | RawOutbound;

export interface StoredObject {
  /** Size announced before the bytes are read, so an oversized object is refused without downloading it. */
  readonly size: number | undefined;
  read(): Promise<Buffer>;
  discard(): void;
}

/** Where S3-referenced attachments are read from. */
export interface AttachmentStore {
  open(bucket: string, key: string, signal?: AbortSignal): Promise<StoredObject>;
}

export interface ResolveOptions {
  readonly maxMessageBytes: number;
  readonly settings?: AttachmentSettings;
  readonly store?: AttachmentStore;
  /** The invocation's deadline for reading S3 objects. */
  readonly signal?: AbortSignal;
}

/**
 * Turns the message's attachments into bytes: inline base64 decoded, S3 references read from the
 * relay's own bucket only (a producer must not make the relay mail out any object it can read).
 */
export async function resolveAttachments(
  message: ComposedMessage,
  { maxMessageBytes, settings, store, signal }: ResolveOptions,
): Promise<ComposedOutbound> {
  const { attachments, ...rest } = message;
  if (!attachments) return rest;
  let size = decodedSizeOf(message);
  const resolved: OutboundAttachment[] = [];
  for (const [index, attachment] of attachments.entries()) {
    const common = {
      filename: attachment.filename,
      contentType: attachment.contentType,
      ...(attachment.contentId !== undefined && { contentId: attachment.contentId }),
    };
    if (attachment.content !== undefined) {
      resolved.push({ ...common, content: Buffer.from(attachment.content, 'base64') });
      continue;
    }
    const reference = attachment.s3;
    if (!reference) continue; // the contract guarantees content or s3
    const content = await readStored(reference, `attachments[${index}].s3`, size, {
      maxMessageBytes,
      settings,
      store,
      signal,
    });
    size += content.length;
    resolved.push({ ...common, content });
  }
  return { ...rest, attachments: resolved };
}

/**
 * Reads an object of the relay's own bucket only (a producer must not make the relay mail out any
 * object it can read), refusing it unread when its announced size is over the limit.
 */
async function readStored(
  reference: { bucket: string; key: string },
  field: string,
  sizeSoFar: number,
  { maxMessageBytes, settings, store, signal }: ResolveOptions,
): Promise<Buffer> {
  if (!settings || !store) {
    throw permanent('AttachmentBucketNotConfigured', `${field}: this relay has no attachment bucket`, {
      hint: 'Enable attachments in the relay configuration, or send the content inline as base64.',
    });
  }
  if (reference.bucket !== settings.bucket) {
    throw permanent('AttachmentBucketNotAllowed', `${field}.bucket: must be the relay's attachment bucket`, {
      hint: `Upload the file to ${settings.bucket} (the AttachmentBucketName stack output) and reference it there.`,
    });
  }
  const object = await store.open(reference.bucket, reference.key, signal);
  if (object.size !== undefined && sizeSoFar + object.size > maxMessageBytes) {
    object.discard();
    throw tooLarge(sizeSoFar + object.size, maxMessageBytes);
  }
  const content = await object.read();
  if (sizeSoFar + content.length > maxMessageBytes)
    throw tooLarge(sizeSoFar + content.length, maxMessageBytes);
  return content;
}

/** What the relay sets on a raw message besides its envelope. */
export interface RawDelivery {
  /** The route's rewriteFrom: the From it leaves with, and where replies go (the original sender). */
  readonly rewrite?: { readonly from: Mailbox; readonly replyTo: readonly Mailbox[] } | undefined;
  /** The envelope still to be sent to (suppressed recipients removed). */
  readonly recipients: readonly Mailbox[];
  readonly headers: Readonly<Record<string, string>>;
}

/**
 * Reads a raw message's MIME (inline or from the relay's bucket), normalises it (line endings, 8-bit
 * content, long lines, Date: core/mime/normalise.ts) and checks it says what the message claims: its
 * From header names the message's `from`, and no header shows text that is not what it seems.
 */
export async function resolveRawMessage(
  message: RawMessage,
  delivery: RawDelivery,
  options: ResolveOptions & { readonly now: Date; readonly ingressBucket?: string | undefined },
): Promise<RawOutbound> {
  const reference = message.mime.s3;
  // What an SMTP client submitted is stored in the ingress bucket; a producer's MIME in the attachment bucket.
  const bucketOptions =
    reference && reference.bucket === options.ingressBucket
      ? { ...options, settings: { bucket: options.ingressBucket } }
      : options;
  const bytes = reference
    ? await readStored(reference, 'mime.s3', 0, bucketOptions)
    : Buffer.from(message.mime.content ?? '', 'base64');
  // Loaded with the first raw message: composed messages never pay for libmime's charset tables.
  const [{ normaliseMime }, { inspectMime }] = await Promise.all([
    import('./mime/normalise.ts'),
    import('./mime/inspect.ts'),
  ]);
  const { mime } = normaliseMime(bytes, { now: options.now });
  const summary = inspectMime(mime);
  const problems = [...summary.problems];
  const headerFrom = summary.from[0]?.address;
  if (headerFrom !== undefined && headerFrom.toLowerCase() !== message.from.address.toLowerCase()) {
    problems.push(`from: is ${message.from.address}, but the MIME From header says ${headerFrom}`);
  }
  if (problems.length > 0) {
    throw permanent('InvalidMime', problems.join('; '), {
      hint: 'Fix the MIME message the application sends (docs/smtp-ingress.md lists what the relay accepts).',
    });
  }
  return {
    from: delivery.rewrite?.from ?? message.from,
    ...(delivery.rewrite && { rewrittenFrom: { replyTo: delivery.rewrite.replyTo } }),
    recipients: delivery.recipients,
    mime,
    ...(summary.messageId !== undefined && { messageId: summary.messageId }),
    headers: delivery.headers,
    ...(message.tags && { tags: message.tags }),
  };
}

export function isRawOutbound(message: OutboundMessage): message is RawOutbound {
  return 'mime' in message;
}

/** For messages known to carry only inline attachments (tests, tools). */
export function inlineAttachments(message: ComposedMessage): ComposedOutbound {
  const { attachments, ...rest } = message;
  if (!attachments) return rest;
  return {
    ...rest,
    attachments: attachments.map((attachment) => {
      if (attachment.content === undefined) throw new Error(`${attachment.filename} is not inline`);
      return {
        filename: attachment.filename,
        contentType: attachment.contentType,
        ...(attachment.contentId !== undefined && { contentId: attachment.contentId }),
        content: Buffer.from(attachment.content, 'base64'),
      };
    }),
  };
}

export function attachmentBytes(message: ComposedOutbound): number {
  return (message.attachments ?? []).reduce((total, attachment) => total + attachment.content.length, 0);
}

function tooLarge(size: number, limit: number): RelayFailure {
  return permanent(
    'MessageTooLarge',
    `attachments: message is at least ${size} bytes with its S3 attachments; the limit is ${limit} (message.maxMessageBytes)`,
  );
}

function permanent(code: string, reason: string, extra: { hint?: string } = {}): RelayFailure {
  return new RelayFailure({ failureClass: 'permanent', code, reason, ...extra });
}

export class S3AttachmentStore implements AttachmentStore {
  constructor(private readonly client: S3Client) {}

  async open(bucket: string, key: string, signal?: AbortSignal): Promise<StoredObject> {
    try {
      const output = await this.client.send(new GetObjectCommand({ Bucket: bucket, Key: key }), {
        ...(signal && { abortSignal: signal }),
      });
      const body = output.Body;
      if (!body) throw new Error('S3 returned no body');
      return {
        size: output.ContentLength,
        read: async () => {
          try {
            return Buffer.from(await body.transformToByteArray());
          } catch (error) {
            throw s3Failure(error, key);
          }
        },
        discard: () => (body as { destroy?: () => void }).destroy?.(),
      };
    } catch (error) {
      throw s3Failure(error, key);
    }
  }
}

function s3Failure(error: unknown, key: string): RelayFailure {
  const details = (error ?? {}) as {
    name?: string;
    code?: string;
    message?: string;
    $metadata?: { httpStatusCode?: number };
  };
  const status = details.$metadata?.httpStatusCode;
  return S3_FAILURES.classify(
    {
      provider: 's3',
      code: details.code && !details.name?.endsWith('Exception') ? details.code : (details.name ?? 'Error'),
      // The key is the producer's own name for the file; it says which attachment without its content.
      message: `could not read attachment ${truncate(key, 200)}: ${truncate(details.message ?? String(error), 300)}`,
      ...(status !== undefined && { status }),
    },
    error,
  );
}
