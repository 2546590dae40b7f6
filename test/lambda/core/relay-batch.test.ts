import { beforeEach, describe, expect, it } from 'vitest';
import { DEAD_LETTER_ATTRIBUTES } from '../../../lambda/core/dead-letter.ts';
import { bodyHashOf } from '../../../lambda/core/delivery.ts';
import { createRelay, type RelayCoreSettings } from '../../../lambda/core/relay.ts';
import { MemoryLedger, MemorySuppressionList } from '../../helpers/memory-ledger.ts';
import { sqsRecord, validMessage } from '../../helpers/peers.ts';
import { Recorder, ScriptedProvider } from '../../helpers/scripted-relay.ts';

// A batch reads what its records need once; the decisions are the same as record by record (the
// never-twice and routing suites run through processRecord, the end-to-end ones through the handler).

const SETTINGS: RelayCoreSettings = {
  limits: { maxRecipients: 50, maxMessageBytes: 1024 * 1024 },
  maxReceiveCount: 10,
  retry: { maxAttempts: 3, baseDelaySeconds: 10, maxDelaySeconds: 600 },
  circuitBreaker: { failureThreshold: 3, cooldownSeconds: 60 },
  ledger: { tableName: 'ledger', leaseSeconds: 30, retentionDays: 14 },
};

describe('relay: a batch of records', () => {
  let ses: ScriptedProvider;
  let ledger: MemoryLedger;
  let suppressions: MemorySuppressionList;
  let recorder: Recorder;

  const relay = () =>
    createRelay({
      providers: [ses],
      deadLetters: recorder,
      recordDelay: recorder,
      logger: recorder,
      ledger,
      suppressions,
      settings: SETTINGS,
    });

  beforeEach(() => {
    ses = new ScriptedProvider('ses');
    ledger = new MemoryLedger();
    suppressions = new MemorySuppressionList();
    recorder = new Recorder();
  });

  const batch = (count: number) =>
    Array.from({ length: count }, (_, index) =>
      sqsRecord(validMessage({ to: [`r${index}@example.org`, 'shared@example.org'] }), {
        messageId: `b-${index}`,
      }),
    );

  it('reads the ledger entries of all its records in one request and the suppression list once', async () => {
    const results = await relay().processBatch(batch(10));

    expect(results.map((result) => result.status)).toEqual(Array(10).fill('fulfilled'));
    expect(ses.sent).toHaveLength(10);
    expect(ledger.batchReads).toBe(1);
    expect(ledger.reads).toBe(0);
    expect(suppressions.lookups).toHaveLength(1);
    // Every recipient once: ten of their own and the one they share.
    expect(suppressions.lookups[0]).toHaveLength(11);
  });

  it('drops a suppressed recipient found by the batch lookup, for every record that has it', async () => {
    suppressions.add('Shared@Example.org');

    const results = await relay().processBatch(batch(3));

    expect(results.map((result) => result.status === 'fulfilled' && result.value.outcome)).toEqual([
      'sent',
      'sent',
      'sent',
    ]);
    expect(results.map((result) => result.status === 'fulfilled' && result.value)).toEqual(
      Array(3).fill(expect.objectContaining({ suppressedRecipients: ['shared@example.org'] })),
    );
  });

  it('sends a message already sent (same idempotency key) never again, from the batch read', async () => {
    const first = sqsRecord(validMessage({ idempotencyKey: 'order-1' }), { messageId: 'first' });
    await relay().processBatch([first]);
    const again = sqsRecord(validMessage({ idempotencyKey: 'order-1' }), { messageId: 'again' });

    const [result] = await relay().processBatch([again]);

    expect(result).toMatchObject({ status: 'fulfilled', value: { outcome: 'duplicate' } });
    expect(ses.sent).toHaveLength(1);
    expect(ledger.reads).toBe(0);
  });

  it('finds a redriven copy by the id it had, through the batch read', async () => {
    const body = validMessage({ subject: 'Redriven' });
    await relay().processBatch([sqsRecord(body, { messageId: 'original' })]);
    const copy = sqsRecord(body, { messageId: 'copy' });
    copy.messageAttributes = {
      [DEAD_LETTER_ATTRIBUTES.sourceMessageId]: { stringValue: 'original', dataType: 'String' },
    } as typeof copy.messageAttributes;

    const [result] = await relay().processBatch([copy]);

    expect(result).toMatchObject({ status: 'fulfilled', value: { outcome: 'duplicate' } });
    expect(ledger.records.get('sqs:original')?.bodyHash).toBe(bodyHashOf(copy.body));
    expect(ledger.reads).toBe(0);
  });

  it('reads entry by entry when the batch read fails, and still sends each message once', async () => {
    ledger.failBatchReads = true;

    const results = await relay().processBatch(batch(4));

    expect(results.map((result) => result.status)).toEqual(Array(4).fill('fulfilled'));
    expect(ses.sent).toHaveLength(4);
    expect(ledger.reads).toBe(4);
    // Visible, so a missing permission (BatchGetItem) does not silently cost a read per message.
    expect(recorder.lines).toContainEqual(
      expect.objectContaining({
        message: 'Could not read the ledger entries for the whole batch; each record reads its own',
        records: 4,
      }),
    );
  });

  it('dead-letters an invalid record of the batch and sends the others', async () => {
    const records = [...batch(2), sqsRecord(validMessage({ to: [] }), { messageId: 'bad' })];

    const results = await relay().processBatch(records);

    expect(results.map((result) => result.status === 'fulfilled' && result.value.outcome)).toEqual([
      'sent',
      'sent',
      'dead-lettered',
    ]);
    expect(recorder.deadLetters.map((entry) => entry.failure.code)).toEqual(['InvalidMessage']);
  });
});
