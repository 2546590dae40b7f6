import {
  ChangeMessageVisibilityCommand,
  type MessageAttributeValue,
  SendMessageCommand,
  type SQSClient,
} from '@aws-sdk/client-sqs';
import type { SQSRecord } from 'aws-lambda';
import { DEAD_LETTER_ATTRIBUTES } from './dead-letter.ts';
import { SQS_MAX_MESSAGE_ATTRIBUTES, SQS_MAX_VISIBILITY_TIMEOUT_SECONDS } from './limits.ts';

/** SQS delays a message by at most 15 minutes. */
export const SQS_MAX_DELAY_SECONDS = 900;
const SOURCE_MESSAGE_ID = DEAD_LETTER_ATTRIBUTES.sourceMessageId;

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

/**
 * Puts a copy of a record back on the outbox to be received after `seconds` (at most SQS's 15
 * minutes), so that waiting for a provider's limit is not a receive: the copy starts with a receive
 * count of 0 and never reaches maxReceiveCount by waiting. The copy names the original
 * (MailRelay.SourceMessageId), which keeps its ledger entry: if the original comes back too (its
 * function stopped before deleting it), both are one message to the ledger, sent once.
 */
export interface RecordRequeue {
  /**
   * Resolves once the copy is stored; false when it cannot be copied faithfully (then nothing was
   * sent). `reservations` are the rate slots the message keeps while it waits (see core/pacing).
   */
  requeue(
    record: SQSRecord,
    seconds: number,
    reservations?: Readonly<Record<string, number>>,
    signal?: AbortSignal,
  ): Promise<boolean>;
}

/** The message attribute a waiting copy keeps its reserved rate slots in (JSON: schedule key → start). */
export const PACING_RESERVATIONS_ATTRIBUTE = 'MailRelay.PacingReservations';

/** The rate slots a copy reserved before it went back on the queue, if it carries any (and they parse). */
export function reservationsOf(record: SQSRecord): Record<string, number> | undefined {
  const text = record.messageAttributes?.[PACING_RESERVATIONS_ATTRIBUTE]?.stringValue;
  if (!text) return undefined;
  try {
    const parsed: unknown = JSON.parse(text);
    if (typeof parsed !== 'object' || parsed === null) return undefined;
    const entries = Object.entries(parsed).filter(
      (entry): entry is [string, number] => typeof entry[1] === 'number' && Number.isFinite(entry[1]),
    );
    return Object.fromEntries(entries);
  } catch {
    // Not ours to trust: the message asks for its turn again.
    return undefined;
  }
}

export class SqsRecordRequeue implements RecordRequeue {
  constructor(
    private readonly client: SQSClient,
    private readonly queueUrl: string,
  ) {}

  async requeue(
    record: SQSRecord,
    seconds: number,
    reservations?: Readonly<Record<string, number>>,
    signal?: AbortSignal,
  ): Promise<boolean> {
    const attributes = requeuedAttributes(record, reservations);
    if (!attributes) return false;
    await this.client.send(
      new SendMessageCommand({
        QueueUrl: this.queueUrl,
        MessageBody: record.body,
        MessageAttributes: attributes,
        DelaySeconds: Math.min(Math.max(Math.ceil(seconds), 0), SQS_MAX_DELAY_SECONDS),
      }),
      { ...(signal && { abortSignal: signal }) },
    );
    return true;
  }
}

/**
 * The record's attributes plus the name of the original and, where SQS's limit of 10 leaves room,
 * the reserved slots (without them the copy asks for its turn again); undefined when there is no
 * room even for the name.
 */
export function requeuedAttributes(
  record: SQSRecord,
  reservations?: Readonly<Record<string, number>>,
): Record<string, MessageAttributeValue> | undefined {
  const attributes: Record<string, MessageAttributeValue> = {};
  for (const [name, attribute] of Object.entries(record.messageAttributes ?? {})) {
    if (name === PACING_RESERVATIONS_ATTRIBUTE) continue;
    attributes[name] = {
      DataType: attribute.dataType,
      ...(attribute.stringValue !== undefined && { StringValue: attribute.stringValue }),
      ...(attribute.binaryValue !== undefined && {
        BinaryValue: Buffer.from(attribute.binaryValue, 'base64'),
      }),
    };
  }
  if (!(SOURCE_MESSAGE_ID in attributes)) {
    if (Object.keys(attributes).length >= SQS_MAX_MESSAGE_ATTRIBUTES) return undefined;
    attributes[SOURCE_MESSAGE_ID] = { DataType: 'String', StringValue: record.messageId };
  }
  if (
    reservations &&
    Object.keys(reservations).length > 0 &&
    Object.keys(attributes).length < SQS_MAX_MESSAGE_ATTRIBUTES
  ) {
    attributes[PACING_RESERVATIONS_ATTRIBUTE] = {
      DataType: 'String',
      StringValue: JSON.stringify(reservations),
    };
  }
  return attributes;
}
