import { GetObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { classifyFault, RelayFailure } from './failures.ts';
import { decodedSizeOf, type RelayMessage } from './message.ts';
import type { AttachmentSettings } from './settings.ts';
import { truncate } from './text.ts';

/** An attachment with its bytes in hand, whichever way it travelled. */
export interface OutboundAttachment {
  readonly filename: string;
  readonly contentType: string;
  readonly contentId?: string;
  readonly content: Buffer;
}

/** A validated message ready for a provider: every attachment resolved to bytes. */
export type OutboundMessage = Omit<RelayMessage, 'attachments'> & {
  readonly attachments?: readonly OutboundAttachment[];
};

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
  message: RelayMessage,
  { maxMessageBytes, settings, store, signal }: ResolveOptions,
): Promise<OutboundMessage> {
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
    const field = `attachments[${index}].s3`;
    if (!settings || !store) {
      throw permanent('AttachmentBucketNotConfigured', `${field}: this relay has no attachment bucket`, {
        hint: 'Enable attachments in the relay configuration, or send the file inline as base64 content.',
      });
    }
    if (reference.bucket !== settings.bucket) {
      throw permanent(
        'AttachmentBucketNotAllowed',
        `${field}.bucket: must be the relay's attachment bucket`,
        {
          hint: `Upload the file to ${settings.bucket} (the AttachmentBucketName stack output) and reference it there.`,
        },
      );
    }
    const object = await store.open(reference.bucket, reference.key, signal);
    if (object.size !== undefined && size + object.size > maxMessageBytes) {
      object.discard();
      throw tooLarge(size + object.size, maxMessageBytes);
    }
    const content = await object.read();
    size += content.length;
    if (size > maxMessageBytes) throw tooLarge(size, maxMessageBytes);
    resolved.push({ ...common, content });
  }
  return { ...rest, attachments: resolved };
}

/** For messages known to carry only inline attachments (tests, tools). */
export function inlineAttachments(message: RelayMessage): OutboundMessage {
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

export function attachmentBytes(message: OutboundMessage): number {
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
  return classifyFault(
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
