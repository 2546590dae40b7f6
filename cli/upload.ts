import { open } from 'node:fs/promises';
import path from 'node:path';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
} from '@aws-sdk/client-s3';

/** S3 wants parts of at least 5 MiB; 8 MiB keeps a 150 MB file under 20 parts. */
const PART_BYTES = 8 * 1024 * 1024;

export interface BucketTarget {
  readonly bucket: string;
  /** Custom S3 endpoint (local mode: the SQS emulator's, which also speaks S3). */
  readonly endpoint?: string;
  readonly region?: string;
}

/** Uploads a file to the attachment bucket under a unique key; returns the key. */
export async function uploadAttachment(file: string, target: BucketTarget): Promise<string> {
  const key = `cli/${Date.now()}-${Math.random().toString(36).slice(2, 10)}/${path.basename(file)}`;
  const isLocal = target.endpoint !== undefined && /\/\/(127\.0\.0\.1|localhost)[:/]/.test(target.endpoint);
  const client = new S3Client({
    region: target.region ?? 'us-east-1',
    ...(target.endpoint && { endpoint: target.endpoint, forcePathStyle: true }),
    ...(isLocal && { credentials: { accessKeyId: 'local', secretAccessKey: 'local' } }),
  });
  const handle = await open(file);
  try {
    const { size } = await handle.stat();
    if (size <= PART_BYTES) {
      const body = await handle.readFile();
      await client.send(new PutObjectCommand({ Bucket: target.bucket, Key: key, Body: body }));
      return key;
    }
    const { UploadId } = await client.send(
      new CreateMultipartUploadCommand({ Bucket: target.bucket, Key: key }),
    );
    try {
      const parts = [];
      for (let offset = 0, number = 1; offset < size; offset += PART_BYTES, number += 1) {
        const buffer = Buffer.alloc(Math.min(PART_BYTES, size - offset));
        await handle.read(buffer, 0, buffer.length, offset);
        const part = await client.send(
          new UploadPartCommand({
            Bucket: target.bucket,
            Key: key,
            UploadId,
            PartNumber: number,
            Body: buffer,
          }),
        );
        parts.push({ ETag: part.ETag, PartNumber: number });
      }
      await client.send(
        new CompleteMultipartUploadCommand({
          Bucket: target.bucket,
          Key: key,
          UploadId,
          MultipartUpload: { Parts: parts },
        }),
      );
    } catch (error) {
      await client
        .send(new AbortMultipartUploadCommand({ Bucket: target.bucket, Key: key, UploadId }))
        .catch(() => undefined);
      throw error;
    }
    return key;
  } finally {
    await handle.close();
    client.destroy();
  }
}
