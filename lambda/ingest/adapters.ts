import { DeleteObjectCommand, GetObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { SendMessageCommand, type SQSClient } from '@aws-sdk/client-sqs';
import type { Outbox, StoredSubmission, SubmissionStore } from '../core/ingest.ts';

/** Submissions as Mail Manager (or local mode's listener) wrote them to the ingress bucket. */
export class S3SubmissionStore implements SubmissionStore {
  constructor(private readonly client: S3Client) {}

  async read(bucket: string, key: string, signal?: AbortSignal): Promise<StoredSubmission | undefined> {
    try {
      const output = await this.client.send(new GetObjectCommand({ Bucket: bucket, Key: key }), {
        ...(signal && { abortSignal: signal }),
      });
      if (!output.Body) throw new Error(`S3 returned no body for ${key}`);
      return { bytes: Buffer.from(await output.Body.transformToByteArray()) };
    } catch (error) {
      if ((error as { name?: string }).name === 'NoSuchKey') return undefined;
      throw error;
    }
  }

  async delete(bucket: string, key: string): Promise<void> {
    await this.client.send(new DeleteObjectCommand({ Bucket: bucket, Key: key }));
  }
}

/** The relay's outbox queue. */
export class SqsOutbox implements Outbox {
  constructor(
    private readonly client: SQSClient,
    private readonly queueUrl: string,
  ) {}

  async send(body: string, signal?: AbortSignal): Promise<string> {
    const output = await this.client.send(
      new SendMessageCommand({ QueueUrl: this.queueUrl, MessageBody: body }),
      {
        ...(signal && { abortSignal: signal }),
      },
    );
    return output.MessageId ?? '';
  }
}
