import type { SQSRecord } from 'aws-lambda';
import { beforeEach, describe, expect, it } from 'vitest';
import { DEAD_LETTER_ATTRIBUTES } from '../../../../lambda/core/dead-letter.ts';
import type { DeliveryRecord } from '../../../../lambda/core/ledger.ts';
import { createMessageSchema } from '../../../../lambda/core/message.ts';
import {
  type BatchReads,
  readBatch,
  readLedger,
  sourceMessageIdOf,
  suppressionsFromBatch,
} from '../../../../lambda/core/relay/batch-reads.ts';
import { MemoryLedger, MemorySuppressionList } from '../../../helpers/memory-ledger.ts';
import { sqsRecord, validMessage } from '../../../helpers/peers.ts';
import { Recorder } from '../../../helpers/scripted-relay.ts';

const NEVER = new AbortController().signal;
const SCHEMA = createMessageSchema({ maxRecipients: 50, maxMessageBytes: 1024 * 1024 });

function entry(key: string): DeliveryRecord {
  return {
    key,
    state: 'sent',
    version: 1,
    messageId: 'first',
    bodyHash: 'hash',
    providerIndex: 0,
    attempts: 0,
    failures: [],
    createdAt: new Date(0).toISOString(),
    updatedAt: new Date(0).toISOString(),
    expiresAt: 0,
  };
}

function redriven(record: SQSRecord, sourceMessageId: string): SQSRecord {
  return {
    ...record,
    messageAttributes: {
      [DEAD_LETTER_ATTRIBUTES.sourceMessageId]: { stringValue: sourceMessageId, dataType: 'String' },
    },
  };
}

describe('relay batch reads', () => {
  let ledger: MemoryLedger;
  let suppressions: MemorySuppressionList;
  let logger: Recorder;
  const read = (records: readonly SQSRecord[]) =>
    readBatch(records, NEVER, { schema: SCHEMA, ledger, suppressions, logger });

  beforeEach(() => {
    ledger = new MemoryLedger();
    suppressions = new MemorySuppressionList();
    logger = new Recorder();
  });

  it('reads every record’s ledger key and every recipient’s suppression in one request each', async () => {
    const keyed = sqsRecord(validMessage({ idempotencyKey: 'order-1', to: ['A@example.com'] }));
    const unkeyed = sqsRecord(validMessage({ to: ['b@example.com'] }), { messageId: 'm-2' });

    const reads = await read([keyed, unkeyed]);

    expect(ledger.batchReads).toBe(1);
    expect([...(reads.ledger?.keys ?? [])]).toEqual(['order-1', 'sqs:m-2']);
    expect(suppressions.lookups).toEqual([['a@example.com', 'b@example.com']]);
  });

  it('also reads the entry a redriven copy had under its former message id', async () => {
    const copy = redriven(sqsRecord(validMessage(), { messageId: 'm-new' }), 'm-old');

    const reads = await read([copy]);

    expect([...(reads.ledger?.keys ?? [])]).toEqual(['sqs:m-new', 'sqs:m-old']);
  });

  it('leaves the ledger to each record when the batch read fails, and says so', async () => {
    ledger.failBatchReads = true;

    const reads = await read([sqsRecord(validMessage())]);

    expect(reads.ledger).toBeUndefined();
    expect(reads.suppressed).toBeDefined();
    expect(logger.lines).toContainEqual(
      expect.objectContaining({ message: expect.stringContaining('Could not read the ledger entries') }),
    );
  });

  it('answers a key the batch covered from the batch, an entry or none, without reading again', async () => {
    ledger.records.set('order-1', entry('order-1'));
    const reads = await read([
      sqsRecord(validMessage({ idempotencyKey: 'order-1' })),
      sqsRecord(validMessage(), { messageId: 'm-2' }),
    ]);
    ledger.records.delete('order-1');

    expect(await readLedger(ledger, 'order-1', NEVER, reads)).toMatchObject({ key: 'order-1' });
    expect(await readLedger(ledger, 'sqs:m-2', NEVER, reads)).toBeUndefined();
    expect(ledger.reads).toBe(0);
  });

  it('reads a key the batch did not cover', async () => {
    ledger.records.set('order-2', entry('order-2'));
    const reads: BatchReads = { parsed: new Map(), ledger: { keys: new Set(['order-1']), found: new Map() } };

    expect(await readLedger(ledger, 'order-2', NEVER, reads)).toMatchObject({ key: 'order-2' });
    expect(ledger.reads).toBe(1);
  });

  it('gives the batch’s suppressions only when it covered every address', async () => {
    suppressions.add('a@example.com');
    const reads = await read([sqsRecord(validMessage({ to: ['a@example.com'] }))]);

    expect([...(suppressionsFromBatch(['a@example.com'], reads)?.keys() ?? [])]).toEqual(['a@example.com']);
    expect(suppressionsFromBatch(['a@example.com', 'c@example.com'], reads)).toBeUndefined();
    expect(suppressionsFromBatch(['a@example.com'], undefined)).toBeUndefined();
  });

  it('takes no former message id that is the record’s own', () => {
    const record = sqsRecord(validMessage(), { messageId: 'm-1' });

    expect(sourceMessageIdOf(redriven(record, 'm-1'))).toBeUndefined();
    expect(sourceMessageIdOf(redriven(record, 'm-0'))).toBe('m-0');
  });
});
