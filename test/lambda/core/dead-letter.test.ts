import type { SQSMessageAttributes, SQSRecord } from 'aws-lambda';
import { describe, expect, it } from 'vitest';
import { DEAD_LETTER_ATTRIBUTES, deadLetterAttributes } from '../../../lambda/core/dead-letter.ts';
import { type FailureDetails, RelayFailure } from '../../../lambda/core/failures.ts';
import { SQS_MAX_MESSAGE_ATTRIBUTES } from '../../../lambda/core/limits.ts';

function sqsRecord(
  overrides: { messageId?: string; messageAttributes?: SQSMessageAttributes } = {},
): SQSRecord {
  return {
    messageId: overrides.messageId ?? 'source-message-1',
    receiptHandle: 'receipt-handle',
    body: '{"v":1}',
    attributes: {
      ApproximateReceiveCount: '5',
      SentTimestamp: '1700000000000',
      SenderId: '000000000000',
      ApproximateFirstReceiveTimestamp: '1700000000001',
    },
    messageAttributes: overrides.messageAttributes ?? {},
    md5OfBody: '',
    eventSource: 'aws:sqs',
    eventSourceARN: 'arn:aws:sqs:eu-west-1:000000000000:outbox',
    awsRegion: 'eu-west-1',
  };
}

const failure = (overrides: Partial<FailureDetails> = {}) =>
  new RelayFailure({
    failureClass: 'permanent',
    code: 'MessageRejected',
    reason: 'Rejected by SES',
    ...overrides,
  });

/** Seven of the relay's own attributes: the failure has a hint and a provider. */
const fullFailure = failure({ hint: 'Check the content', provider: 'ses' });

const producerAttributes = (count: number): SQSMessageAttributes =>
  Object.fromEntries(
    Array.from({ length: count }, (_, index) => [
      `Producer${index}`,
      { dataType: 'String', stringValue: `v${index}` },
    ]),
  );

describe('deadLetterAttributes', () => {
  it('sets the class, code, reason, source message id and attempts', () => {
    const attributes = deadLetterAttributes(sqsRecord({ messageId: 'abc-123' }), failure(), 5);
    expect(attributes).toEqual({
      'MailRelay.FailureClass': { DataType: 'String', StringValue: 'permanent' },
      'MailRelay.FailureCode': { DataType: 'String', StringValue: 'MessageRejected' },
      'MailRelay.Reason': { DataType: 'String', StringValue: 'Rejected by SES' },
      'MailRelay.SourceMessageId': { DataType: 'String', StringValue: 'abc-123' },
      'MailRelay.Attempts': { DataType: 'Number', StringValue: '5' },
    });
  });

  it('keeps naming the original message when a copy moved back from the DLQ is dead-lettered again', () => {
    const redriven = sqsRecord({
      messageId: 'redriven-7',
      messageAttributes: { 'MailRelay.SourceMessageId': { dataType: 'String', stringValue: 'abc-123' } },
    });
    const attributes = deadLetterAttributes(redriven, failure(), 1);
    expect(attributes[DEAD_LETTER_ATTRIBUTES.sourceMessageId]).toEqual({
      DataType: 'String',
      StringValue: 'abc-123',
    });
  });

  it('sets the hint and provider when the failure has them', () => {
    const attributes = deadLetterAttributes(sqsRecord(), fullFailure, 1);
    expect(attributes[DEAD_LETTER_ATTRIBUTES.hint]).toEqual({
      DataType: 'String',
      StringValue: 'Check the content',
    });
    expect(attributes[DEAD_LETTER_ATTRIBUTES.provider]).toEqual({ DataType: 'String', StringValue: 'ses' });
  });

  it('truncates a long reason to 2000 characters', () => {
    const attributes = deadLetterAttributes(sqsRecord(), failure({ reason: 'r'.repeat(5000) }), 1);
    expect(attributes[DEAD_LETTER_ATTRIBUTES.reason]?.StringValue).toBe('r'.repeat(2000));
  });

  it('never cuts a reason in the middle of a character that takes two UTF-16 units', () => {
    const attributes = deadLetterAttributes(sqsRecord(), failure({ reason: `${'a'.repeat(1999)}😀` }), 1);
    const reason = attributes[DEAD_LETTER_ATTRIBUTES.reason]?.StringValue ?? '';
    expect(reason).toBe('a'.repeat(1999));
    expect(reason.isWellFormed()).toBe(true);
  });

  it('replaces characters SQS refuses in attribute values, so the move to the DLQ cannot fail on them', () => {
    const attributes = deadLetterAttributes(
      sqsRecord(),
      failure({ reason: 'bad\u0000byte \ud83d and\ttab' }),
      1,
    );
    expect(attributes[DEAD_LETTER_ATTRIBUTES.reason]?.StringValue).toBe('bad\uFFFDbyte \uFFFD and\ttab');
  });

  it('uses the code as the reason when the reason is empty', () => {
    const attributes = deadLetterAttributes(sqsRecord(), failure({ reason: '' }), 1);
    expect(attributes[DEAD_LETTER_ATTRIBUTES.reason]?.StringValue).toBe('MessageRejected');
  });

  it("keeps the producer's string attributes in the SDK's shape", () => {
    const record = sqsRecord({
      messageAttributes: {
        TenantId: { dataType: 'String', stringValue: 'acme' },
        Priority: { dataType: 'Number', stringValue: '3' },
      },
    });
    const attributes = deadLetterAttributes(record, failure(), 1);
    expect(attributes.TenantId).toEqual({ DataType: 'String', StringValue: 'acme' });
    expect(attributes.Priority).toEqual({ DataType: 'Number', StringValue: '3' });
  });

  it("decodes the producer's binary attributes from the record's base64 into bytes", () => {
    const bytes = Buffer.from([0, 1, 2, 254, 255]);
    const record = sqsRecord({
      messageAttributes: { Signature: { dataType: 'Binary', binaryValue: bytes.toString('base64') } },
    });
    const signature = deadLetterAttributes(record, failure(), 1).Signature;
    expect(signature?.DataType).toBe('Binary');
    expect(signature?.StringValue).toBeUndefined();
    expect(Buffer.from(signature?.BinaryValue ?? new Uint8Array())).toEqual(bytes);
  });

  it("does not let a producer's attribute overwrite the relay's own", () => {
    const record = sqsRecord({
      messageAttributes: { [DEAD_LETTER_ATTRIBUTES.code]: { dataType: 'String', stringValue: 'Forged' } },
    });
    const attributes = deadLetterAttributes(record, failure(), 1);
    expect(attributes[DEAD_LETTER_ATTRIBUTES.code]?.StringValue).toBe('MessageRejected');
    expect(Object.keys(attributes)).toHaveLength(5);
  });

  it("keeps only as many producer attributes as fit in SQS's limit of 10, in order", () => {
    const attributes = deadLetterAttributes(
      sqsRecord({ messageAttributes: producerAttributes(9) }),
      fullFailure,
      1,
    );
    expect(Object.keys(attributes)).toHaveLength(SQS_MAX_MESSAGE_ATTRIBUTES);
    expect(Object.keys(attributes).filter((name) => name.startsWith('Producer'))).toEqual([
      'Producer0',
      'Producer1',
      'Producer2',
    ]);
  });

  it('makes room for more producer attributes when the failure has no hint or provider', () => {
    const attributes = deadLetterAttributes(
      sqsRecord({ messageAttributes: producerAttributes(9) }),
      failure(),
      1,
    );
    expect(Object.keys(attributes)).toHaveLength(SQS_MAX_MESSAGE_ATTRIBUTES);
    expect(Object.keys(attributes).filter((name) => name.startsWith('Producer'))).toHaveLength(5);
  });
});
