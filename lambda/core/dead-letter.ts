import { type MessageAttributeValue, SendMessageCommand, type SQSClient } from '@aws-sdk/client-sqs';
import type { SQSRecord } from 'aws-lambda';
import type { RelayFailure } from './failures.ts';
import { SQS_MAX_MESSAGE_ATTRIBUTES } from './limits.ts';
import { toSqsText } from './text.ts';

/** Message attribute names the relay sets on every dead-lettered message. */
export const DEAD_LETTER_ATTRIBUTES = {
  failureClass: 'MailRelay.FailureClass',
  code: 'MailRelay.FailureCode',
  reason: 'MailRelay.Reason',
  hint: 'MailRelay.Hint',
  provider: 'MailRelay.Provider',
  sourceMessageId: 'MailRelay.SourceMessageId',
  attempts: 'MailRelay.Attempts',
} as const;

const MAX_REASON_LENGTH = 2000;
const MAX_SHORT_TEXT_LENGTH = 256;

export interface DeadLetterSink {
  /** Must resolve only once the message is safely stored: the caller deletes it from the outbox next. */
  deadLetter(record: SQSRecord, failure: RelayFailure, attempts: number, signal?: AbortSignal): Promise<void>;
}

/** Moves a message to the DLQ unchanged (so it can be redriven once fixed), with the reason as attributes. */
export class SqsDeadLetterQueue implements DeadLetterSink {
  constructor(
    private readonly client: SQSClient,
    private readonly queueUrl: string,
  ) {}

  async deadLetter(
    record: SQSRecord,
    failure: RelayFailure,
    attempts: number,
    signal?: AbortSignal,
  ): Promise<void> {
    await this.client.send(
      new SendMessageCommand({
        QueueUrl: this.queueUrl,
        MessageBody: record.body,
        MessageAttributes: deadLetterAttributes(record, failure, attempts),
      }),
      { ...(signal && { abortSignal: signal }) },
    );
  }
}

export function deadLetterAttributes(
  record: SQSRecord,
  failure: RelayFailure,
  attempts: number,
): Record<string, MessageAttributeValue> {
  const text = (value: string, max = MAX_SHORT_TEXT_LENGTH): MessageAttributeValue => ({
    DataType: 'String',
    StringValue: toSqsText(value, max),
  });
  const ours: Record<string, MessageAttributeValue> = {
    [DEAD_LETTER_ATTRIBUTES.failureClass]: text(failure.failureClass),
    [DEAD_LETTER_ATTRIBUTES.code]: text(failure.code),
    [DEAD_LETTER_ATTRIBUTES.reason]: text(failure.reason || failure.code, MAX_REASON_LENGTH),
    // A copy moved back from the DLQ keeps naming the original: that is how the relay finds the ledger
    // entry of a message without an idempotency key (and only for the very same body).
    [DEAD_LETTER_ATTRIBUTES.sourceMessageId]: text(
      record.messageAttributes?.[DEAD_LETTER_ATTRIBUTES.sourceMessageId]?.stringValue ?? record.messageId,
    ),
    [DEAD_LETTER_ATTRIBUTES.attempts]: { DataType: 'Number', StringValue: String(attempts) },
    ...(failure.hint && { [DEAD_LETTER_ATTRIBUTES.hint]: text(failure.hint, MAX_REASON_LENGTH) }),
    ...(failure.provider && { [DEAD_LETTER_ATTRIBUTES.provider]: text(failure.provider) }),
  };
  // Keep the producer's own attributes where SQS's limit of 10 leaves room.
  const room = SQS_MAX_MESSAGE_ATTRIBUTES - Object.keys(ours).length;
  const theirs = Object.entries(record.messageAttributes ?? {})
    .filter(([name]) => !(name in ours))
    .slice(0, Math.max(0, room));
  for (const [name, attribute] of theirs) {
    ours[name] = {
      DataType: attribute.dataType,
      ...(attribute.stringValue !== undefined && { StringValue: attribute.stringValue }),
      ...(attribute.binaryValue !== undefined && {
        BinaryValue: Buffer.from(attribute.binaryValue, 'base64'),
      }),
    };
  }
  return ours;
}
