import { ChangeMessageVisibilityCommand, type SQSClient } from '@aws-sdk/client-sqs';
import type { SQSRecord } from 'aws-lambda';
import { SQS_MAX_VISIBILITY_TIMEOUT_SECONDS } from './limits.ts';

/** Postpones the next delivery of a record that is about to be reported as failed. */
export interface RecordDelay {
  delay(record: SQSRecord, seconds: number, signal?: AbortSignal): Promise<void>;
}

/**
 * A failed record normally comes back after the queue's visibility timeout. When the provider said
 * how long to wait (Retry-After), the record's visibility is set to exactly that instead, so the
 * retry neither hammers a throttled mailbox nor waits longer than needed.
 */
export class SqsRecordDelay implements RecordDelay {
  constructor(
    private readonly client: SQSClient,
    private readonly queueUrl: string,
  ) {}

  async delay(record: SQSRecord, seconds: number, signal?: AbortSignal): Promise<void> {
    await this.client.send(
      new ChangeMessageVisibilityCommand({
        QueueUrl: this.queueUrl,
        ReceiptHandle: record.receiptHandle,
        VisibilityTimeout: Math.min(Math.max(Math.ceil(seconds), 0), SQS_MAX_VISIBILITY_TIMEOUT_SECONDS),
      }),
      { ...(signal && { abortSignal: signal }) },
    );
  }
}
