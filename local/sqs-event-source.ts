import { randomUUID } from 'node:crypto';
import {
  DeleteMessageBatchCommand,
  type Message,
  ReceiveMessageCommand,
  type SQSClient,
} from '@aws-sdk/client-sqs';
import type { Context, SQSBatchResponse, SQSEvent, SQSRecord } from 'aws-lambda';

export type BatchHandler = (event: SQSEvent, context: Context) => Promise<SQSBatchResponse | undefined>;

export interface LocalSqsEventSourceOptions {
  readonly client: SQSClient;
  readonly queueUrl: string;
  readonly queueArn: string;
  readonly region: string;
  readonly handler: BatchHandler;
  /** Records per invocation, like the event source mapping's BatchSize. */
  readonly batchSize: number;
  /** Concurrent pollers, like MaximumConcurrency. */
  readonly maxConcurrency: number;
  /** An invocation running longer than this counts as failed, like a Lambda timeout. */
  readonly functionTimeoutMs: number;
  /**
   * Long-poll time of each ReceiveMessage. A process killed during one leaves it open in the queue,
   * where it can still take messages (hidden for the visibility timeout): tests that kill pollers
   * keep it short. @default 5
   */
  readonly waitTimeSeconds?: number;
  readonly functionName?: string;
  /** Called with a short description whenever an invocation fails as a whole. */
  readonly onInvocationError?: (error: unknown) => void;
}

/**
 * Behaves like Lambda's SQS event source mapping with ReportBatchItemFailures: receives batches,
 * invokes the handler, deletes the records that succeeded, and leaves failed ones to reappear after
 * the visibility timeout. Redrive to the DLQ after maxReceiveCount is the queue's own (its
 * RedrivePolicy), exactly as in AWS.
 */
export class LocalSqsEventSource {
  private running = false;
  private abort = new AbortController();
  private workers: Promise<void>[] = [];

  constructor(private readonly options: LocalSqsEventSourceOptions) {}

  start(): void {
    if (this.running) return;
    this.running = true;
    this.abort = new AbortController();
    this.workers = Array.from({ length: this.options.maxConcurrency }, () => this.poll());
  }

  /**
   * Stops receiving and waits for the batches in progress: each invocation runs to its end or to
   * the function timeout, and its records are deleted or left for a retry, exactly as while running.
   * A long poll in progress is abandoned; should the queue have handed it messages at that very
   * moment, they come back after the visibility timeout, as after a lost ReceiveMessage answer.
   */
  async stop(): Promise<void> {
    this.running = false;
    this.abort.abort();
    await Promise.allSettled(this.workers);
  }

  private async poll(): Promise<void> {
    while (this.running) {
      let messages: Message[];
      try {
        const received = await this.options.client.send(
          new ReceiveMessageCommand({
            QueueUrl: this.options.queueUrl,
            MaxNumberOfMessages: this.options.batchSize,
            WaitTimeSeconds: this.options.waitTimeSeconds ?? 5,
            MessageSystemAttributeNames: ['All'],
            MessageAttributeNames: ['All'],
          }),
          { abortSignal: this.abort.signal },
        );
        messages = received.Messages ?? [];
      } catch (error) {
        if (!this.running) return;
        this.options.onInvocationError?.(error);
        await delay(1000);
        continue;
      }
      if (messages.length > 0) await this.invoke(messages);
    }
  }

  private async invoke(messages: Message[]): Promise<void> {
    const records = messages.map((message) => this.toRecord(message));
    const failed = await this.runHandler(records);
    const done = messages.filter((message) => message.MessageId && !failed.has(message.MessageId));
    if (done.length === 0) return;
    await this.options.client.send(
      new DeleteMessageBatchCommand({
        QueueUrl: this.options.queueUrl,
        Entries: done.map((message, index) => ({ Id: String(index), ReceiptHandle: message.ReceiptHandle })),
      }),
    );
  }

  /** Returns the ids of the records to leave on the queue. */
  private async runHandler(records: SQSRecord[]): Promise<Set<string>> {
    const all = new Set(records.map((record) => record.messageId));
    let timer: NodeJS.Timeout | undefined;
    try {
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error('Task timed out')), this.options.functionTimeoutMs);
      });
      const response = await Promise.race([
        this.options.handler({ Records: records }, this.context()),
        timeout,
      ]);
      const failures = response?.batchItemFailures ?? [];
      const failed = new Set(failures.map((failure) => failure.itemIdentifier));
      // Lambda treats a response naming an unknown or empty id as a failure of the whole batch.
      if ([...failed].some((id) => !id || !all.has(id))) return all;
      return failed;
    } catch (error) {
      this.options.onInvocationError?.(error);
      return all;
    } finally {
      clearTimeout(timer);
    }
  }

  private toRecord(message: Message): SQSRecord {
    const attributes = message.Attributes ?? {};
    return {
      messageId: message.MessageId ?? '',
      receiptHandle: message.ReceiptHandle ?? '',
      body: message.Body ?? '',
      attributes: {
        ApproximateReceiveCount: attributes.ApproximateReceiveCount ?? '1',
        SentTimestamp: attributes.SentTimestamp ?? String(Date.now()),
        SenderId: attributes.SenderId ?? '000000000000',
        ApproximateFirstReceiveTimestamp: attributes.ApproximateFirstReceiveTimestamp ?? String(Date.now()),
      },
      messageAttributes: Object.fromEntries(
        Object.entries(message.MessageAttributes ?? {}).map(([name, value]) => [
          name,
          {
            dataType: value.DataType ?? 'String',
            ...(value.StringValue !== undefined && { stringValue: value.StringValue }),
            ...(value.BinaryValue !== undefined && {
              binaryValue: Buffer.from(value.BinaryValue).toString('base64'),
            }),
          },
        ]),
      ),
      md5OfBody: message.MD5OfBody ?? '',
      eventSource: 'aws:sqs',
      eventSourceARN: this.options.queueArn,
      awsRegion: this.options.region,
    };
  }

  private context(): Context {
    return localLambdaContext(
      this.options.functionName ?? 'mail-relay-send-local',
      this.options.region,
      this.options.functionTimeoutMs,
    );
  }
}

const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** What Lambda passes a handler, for local invocations: a fresh request id and the time left. */
export function localLambdaContext(functionName: string, region: string, timeoutMs: number): Context {
  const deadline = Date.now() + timeoutMs;
  return {
    callbackWaitsForEmptyEventLoop: false,
    functionName,
    functionVersion: '$LATEST',
    invokedFunctionArn: `arn:aws:lambda:${region}:000000000000:function:${functionName}`,
    memoryLimitInMB: '512',
    awsRequestId: randomUUID(),
    logGroupName: `/aws/lambda/${functionName}`,
    logStreamName: 'local',
    getRemainingTimeInMillis: () => Math.max(0, deadline - Date.now()),
    done: () => undefined,
    fail: () => undefined,
    succeed: () => undefined,
  };
}
