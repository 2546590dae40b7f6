import {
  CompleteMultipartUploadCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type AttachmentStore,
  resolveAttachments,
  S3AttachmentStore,
} from '../../../lambda/core/attachments.ts';
import { type ComposedMessage, defaultMessageSchema, parseMessage } from '../../../lambda/core/message.ts';
import { type RunningEmulator, startSqsEmulator } from '../../../local/emulators.ts';
import { failureOf } from '../../helpers/failures.ts';

const BUCKET = 'relay-attachments';
const LIMIT = 40 * 1024 * 1024;

function message(attachments: unknown[]): ComposedMessage {
  const parsed = parseMessage(
    JSON.stringify({
      v: 1,
      from: 'a@contoso.com',
      to: 'b@example.org',
      subject: 's',
      text: 'body',
      attachments,
    }),
    defaultMessageSchema,
  );
  if (!parsed.ok) throw new Error(parsed.problems.join('; '));
  return parsed.message as ComposedMessage;
}

/** Multipart, as a producer uploads a large file (the emulator, like S3 tools, caps single PUTs). */
async function uploadLarge(s3: S3Client, key: string, bytes: Buffer): Promise<void> {
  const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket: BUCKET, Key: key }));
  const parts = [];
  const partSize = 8 * 1024 * 1024;
  for (let start = 0, number = 1; start < bytes.length; start += partSize, number += 1) {
    const part = await s3.send(
      new UploadPartCommand({
        Bucket: BUCKET,
        Key: key,
        UploadId,
        PartNumber: number,
        Body: bytes.subarray(start, start + partSize),
      }),
    );
    parts.push({ ETag: part.ETag, PartNumber: number });
  }
  await s3.send(
    new CompleteMultipartUploadCommand({
      Bucket: BUCKET,
      Key: key,
      UploadId,
      MultipartUpload: { Parts: parts },
    }),
  );
}

describe('resolveAttachments', () => {
  let emulator: RunningEmulator;
  let s3: S3Client;
  let store: AttachmentStore;
  const settings = { bucket: BUCKET };

  beforeAll(async () => {
    emulator = await startSqsEmulator(0);
    s3 = new S3Client({
      region: 'us-east-1',
      endpoint: emulator.endpoint,
      forcePathStyle: true,
      credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
    });
    await s3.send(new CreateBucketCommand({ Bucket: BUCKET }));
    store = new S3AttachmentStore(s3);
  });
  afterAll(async () => {
    s3.destroy();
    await emulator.stop();
  });

  it('decodes inline attachments and reads S3 ones byte for byte, keeping order and metadata', async () => {
    const large = Buffer.alloc(12 * 1024 * 1024);
    for (let index = 0; index < large.length; index += 4096) large[index] = index % 251;
    await uploadLarge(s3, 'reports/q3.bin', large);
    const inline = Buffer.from('inline bytes');
    const resolved = await resolveAttachments(
      message([
        { filename: 'note.txt', contentType: 'text/plain', content: inline.toString('base64') },
        { filename: 'q3.bin', s3: { bucket: BUCKET, key: 'reports/q3.bin' }, contentId: 'q3' },
      ]),
      { maxMessageBytes: LIMIT, settings, store },
    );
    expect(
      resolved.attachments?.map(({ filename, contentType, contentId }) => ({
        filename,
        contentType,
        contentId,
      })),
    ).toEqual([
      { filename: 'note.txt', contentType: 'text/plain', contentId: undefined },
      { filename: 'q3.bin', contentType: 'application/octet-stream', contentId: 'q3' },
    ]);
    expect(resolved.attachments?.[0]?.content.equals(inline)).toBe(true);
    expect(resolved.attachments?.[1]?.content.equals(large)).toBe(true);
  });

  it('refuses a bucket other than the relay’s own, naming the field', async () => {
    const failure = await failureOf(
      resolveAttachments(message([{ filename: 'x.pdf', s3: { bucket: 'someone-elses', key: 'x.pdf' } }]), {
        maxMessageBytes: LIMIT,
        settings,
        store,
      }),
    );
    expect(failure).toMatchObject({
      failureClass: 'permanent',
      code: 'AttachmentBucketNotAllowed',
      reason: "attachments[0].s3.bucket: must be the relay's attachment bucket",
    });
    expect(failure.hint).toContain(BUCKET);
  });

  it('refuses S3 references when the relay has no attachment bucket', async () => {
    const failure = await failureOf(
      resolveAttachments(message([{ filename: 'x.pdf', s3: { bucket: BUCKET, key: 'x.pdf' } }]), {
        maxMessageBytes: LIMIT,
      }),
    );
    expect(failure).toMatchObject({ failureClass: 'permanent', code: 'AttachmentBucketNotConfigured' });
  });

  it('reports a missing object as permanent with a hint', async () => {
    const failure = await failureOf(
      resolveAttachments(message([{ filename: 'gone.pdf', s3: { bucket: BUCKET, key: 'gone.pdf' } }]), {
        maxMessageBytes: LIMIT,
        settings,
        store,
      }),
    );
    expect(failure).toMatchObject({ failureClass: 'permanent', code: 'NoSuchKey', provider: 's3' });
    expect(failure.reason).toContain('gone.pdf');
    expect(failure.hint).toMatch(/Upload the attachment before enqueueing/);
  });

  it('applies the size limit to S3 attachments before downloading them', async () => {
    await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'big.bin', Body: Buffer.alloc(64 * 1024) }));
    let reads = 0;
    const countingStore: AttachmentStore = {
      async open(bucket, key) {
        const object = await store.open(bucket, key);
        return {
          ...object,
          read: () => {
            reads += 1;
            return object.read();
          },
        };
      },
    };
    const failure = await failureOf(
      resolveAttachments(message([{ filename: 'big.bin', s3: { bucket: BUCKET, key: 'big.bin' } }]), {
        maxMessageBytes: 32 * 1024,
        settings,
        store: countingStore,
      }),
    );
    expect(failure).toMatchObject({ failureClass: 'permanent', code: 'MessageTooLarge' });
    expect(failure.reason).toMatch(/the limit is 32768 \(message\.maxMessageBytes\)/);
    expect(reads).toBe(0);
  });
});
