import { Duration } from 'aws-cdk-lib';
import { Queue, QueueEncryption } from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { DEFAULT_MAX_RECEIVE_COUNT } from '../lambda/core/limits.ts';

/** The longest SQS keeps a message (14 days). */
const MAX_RETENTION = Duration.days(14);

export interface OutboxQueueProps {
  /**
   * How long the consumer may hold a received message before SQS delivers it again.
   * Must exceed the time the consumer needs for one batch (AWS recommends 6 x the function timeout).
   */
  readonly visibilityTimeout: Duration;

  /**
   * Deliveries of one message before SQS moves it to the dead-letter queue.
   *
   * @default 5
   */
  readonly maxReceiveCount?: number;

  /**
   * How long the outbox keeps a message that nobody consumed.
   *
   * @default Duration.days(14)
   */
  readonly retentionPeriod?: Duration;
}

/**
 * The outbox producers write to, and the dead-letter queue that collects what cannot be sent.
 *
 * Both queues are encrypted at rest (SQS-managed keys, so producers need no KMS grant) and refuse
 * requests that do not use TLS. CloudFormation names them, so several relays can share an account.
 */
export class OutboxQueue extends Construct {
  /** The queue producers send mail requests to. */
  readonly queue: Queue;
  /** Messages that failed `maxReceiveCount` times, or that the send function rejected as invalid. */
  readonly deadLetterQueue: Queue;

  constructor(scope: Construct, id: string, props: OutboxQueueProps) {
    super(scope, id);

    this.deadLetterQueue = new Queue(this, 'DeadLetterQueue', {
      encryption: QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      // A redriven message keeps its original enqueue time, so a dead-letter queue with the same
      // retention as the outbox could expire it moments after it arrives: keep it as long as SQS can.
      retentionPeriod: MAX_RETENTION,
    });

    this.queue = new Queue(this, 'Queue', {
      encryption: QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      retentionPeriod: props.retentionPeriod ?? MAX_RETENTION,
      visibilityTimeout: props.visibilityTimeout,
      deadLetterQueue: {
        queue: this.deadLetterQueue,
        maxReceiveCount: props.maxReceiveCount ?? DEFAULT_MAX_RECEIVE_COUNT,
      },
    });
  }
}
