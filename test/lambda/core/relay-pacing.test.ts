import type { SQSRecord } from 'aws-lambda';
import { beforeEach, describe, expect, it } from 'vitest';
import { RelayFailure } from '../../../lambda/core/failures.ts';
import type { ProviderPacing } from '../../../lambda/core/pacing/limits.ts';
import { Pacer } from '../../../lambda/core/pacing/pacer.ts';
import type { RecordRequeue } from '../../../lambda/core/record-delay.ts';
import { createRelay, type RelayCoreSettings } from '../../../lambda/core/relay.ts';
import type { RouteSettings } from '../../../lambda/core/settings.ts';
import { MemoryLedger, MemorySuppressionList } from '../../helpers/memory-ledger.ts';
import { MemoryPacingStore } from '../../helpers/memory-pacing-store.ts';
import { sqsRecord, validMessage } from '../../helpers/peers.ts';
import { Recorder, ScriptedProvider } from '../../helpers/scripted-relay.ts';

// The relay's decisions when a provider's limit is reached, with scripted providers and the pacing
// store in memory; test/e2e/pacing.test.ts runs several send functions against the peers that enforce
// the limits, on the DynamoDB emulator.

const START = Date.parse('2026-11-29T10:00:00Z');

class RequeueRecorder implements RecordRequeue {
  readonly copies: { record: SQSRecord; seconds: number; reservations?: Readonly<Record<string, number>> }[] =
    [];
  refuse = false;
  async requeue(record: SQSRecord, seconds: number, reservations?: Readonly<Record<string, number>>) {
    if (this.refuse) return false;
    this.copies.push({ record, seconds, ...(reservations && { reservations }) });
    return true;
  }
}

describe('relay: pacing to the providers limits', () => {
  let graph: ScriptedProvider;
  let ses: ScriptedProvider;
  let ledger: MemoryLedger;
  let recorder: Recorder;
  let requeue: RequeueRecorder;
  let store: MemoryPacingStore;
  let clock: number;
  let counts: string[];

  const relayWith = (routes: RouteSettings[], pacing: Record<string, ProviderPacing>) =>
    createRelay({
      providers: [graph, ses],
      deadLetters: recorder,
      recordDelay: recorder,
      requeue,
      logger: recorder,
      telemetry: {
        count: (name, dimensions) => counts.push(`${name} ${Object.values(dimensions).join(',')}`),
        milliseconds: () => undefined,
      },
      ledger,
      suppressions: new MemorySuppressionList(),
      pacer: new Pacer({
        store,
        pacingOf: (provider) => pacing[provider],
        maxWaitMs: 0,
        leaseMs: 30_000,
        now: () => clock,
      }),
      settings: {
        limits: { maxRecipients: 50, maxMessageBytes: 1024 * 1024 },
        maxReceiveCount: 3,
        routes,
        retry: { maxAttempts: 3, baseDelaySeconds: 10, maxDelaySeconds: 600 },
        circuitBreaker: { failureThreshold: 3, cooldownSeconds: 60 },
        ledger: { tableName: 'ledger', leaseSeconds: 30, retentionDays: 14 },
      } satisfies RelayCoreSettings,
      now: () => clock,
      random: () => 0.5,
    });

  const message = (to = 'a@example.org') => sqsRecord(validMessage({ from: 'app@contoso.com', to: [to] }));
  const delayRoute = (providers: string[]): RouteSettings[] => [{ name: 'app', from: ['*'], providers }];

  beforeEach(() => {
    graph = new ScriptedProvider('graph');
    ses = new ScriptedProvider('ses');
    ledger = new MemoryLedger();
    recorder = new Recorder();
    requeue = new RequeueRecorder();
    store = new MemoryPacingStore();
    clock = START;
    counts = [];
  });

  it('puts a message back on the queue until the limit frees, without counting an attempt', async () => {
    const relay = relayWith(delayRoute(['graph']), { graph: { perMailbox: { messagesPerMinute: 30 } } });

    await relay.processRecord(message());
    const record = message();
    const outcome = await relay.processRecord(record);

    expect(outcome).toMatchObject({ outcome: 'paced', provider: 'graph', limit: 'messagesPerMinute' });
    // Refused at the hand-off: nothing went to the provider.
    expect(graph.sent).toHaveLength(1);
    // A copy, due when the mailbox's next slot comes (just over 2 s away); the receive is not a retry.
    expect(requeue.copies).toHaveLength(1);
    expect(requeue.copies[0]?.record).toBe(record);
    expect(requeue.copies[0]?.seconds).toBe(3);
    expect(recorder.delays).toEqual([]);
    expect(recorder.deadLetters).toEqual([]);
    // Nothing was handed to a provider: the ledger knows only the first message.
    expect(ledger.records.size).toBe(1);
  });

  it('keeps the waiting message its slot: the copy, back at its time, is sent before newer messages', async () => {
    const relay = relayWith(delayRoute(['graph']), { graph: { perMailbox: { messagesPerMinute: 30 } } });
    await relay.processRecord(message());
    await relay.processRecord(message());
    const [waiting] = requeue.copies;
    if (!waiting?.reservations) throw new Error('the waiting message reserved no slot');
    const slot = Object.values(waiting.reservations)[0] ?? 0;

    clock = slot;
    const copy: SQSRecord = {
      ...waiting.record,
      messageId: 'copy-1',
      messageAttributes: {
        'MailRelay.SourceMessageId': { dataType: 'String', stringValue: waiting.record.messageId } as never,
        'MailRelay.PacingReservations': {
          dataType: 'String',
          stringValue: JSON.stringify(waiting.reservations),
        } as never,
      },
    };

    expect(await relay.processRecord(copy)).toMatchObject({ outcome: 'sent' });
    expect(graph.sent).toHaveLength(2);
    // A new message meanwhile queues behind the slot the copy kept.
    expect(await relay.processRecord(message())).toMatchObject({ outcome: 'paced' });
  });

  it('never dead-letters a message whose mailbox day is full, on its last receive either', async () => {
    const relay = relayWith(delayRoute(['graph']), { graph: { perMailbox: { recipientsPerDay: 1 } } });
    await relay.processRecord(message());

    const outcome = await relay.processRecord(
      sqsRecord(validMessage({ from: 'app@contoso.com' }), { receiveCount: 3 }),
    );

    expect(outcome).toMatchObject({ outcome: 'paced', limit: 'recipientsPerDay' });
    expect(requeue.copies[0]?.seconds).toBe(14 * 3600);
    expect(recorder.deadLetters).toEqual([]);
    expect(counts).toEqual(expect.arrayContaining(['Paced graph', 'DailyCapReached graph']));
  });

  it('spills over to the next provider at once when the route says so, without blaming the first', async () => {
    const relay = relayWith(
      [{ name: 'app', from: ['*'], providers: ['graph', 'ses'], onLimit: 'next-provider' }],
      { graph: { perMailbox: { recipientsPerDay: 1 } } },
    );
    await relay.processRecord(message());

    const spilled = message('b@example.org');
    const outcome = await relay.processRecord(spilled);

    expect(outcome).toMatchObject({ outcome: 'sent', fallbackFrom: ['graph'] });
    expect(counts).toEqual(expect.arrayContaining(['SpilledOver graph', 'DailyCapReached graph']));
    expect(counts).not.toContain('Paced graph');
    expect([graph.sent.length, ses.sent.length]).toEqual([1, 1]);
    expect(requeue.copies).toEqual([]);
    // One line for the message, naming the provider it spilled from; the spill itself is DEBUG detail.
    expect(recorder.lines.filter((line) => line.messageId === spilled.messageId)).toEqual([
      expect.objectContaining({ message: 'Message sent', provider: 'ses', fallbackFrom: ['graph'] }),
    ]);
    expect(recorder.debugLines).toContainEqual(
      expect.objectContaining({
        message: 'Provider limit reached; the next provider of the route takes the message',
        provider: 'graph',
        limit: 'recipientsPerDay',
      }),
    );
  });

  it('waits on the queue at the last provider of a spilling route', async () => {
    const relay = relayWith([{ name: 'app', from: ['*'], providers: ['graph'], onLimit: 'next-provider' }], {
      graph: { perMailbox: { recipientsPerDay: 1 } },
    });
    await relay.processRecord(message());

    expect(await relay.processRecord(message())).toMatchObject({ outcome: 'paced' });
  });

  it('retries as usual when the copy cannot be made (no room for its attribute)', async () => {
    requeue.refuse = true;
    const relay = relayWith(delayRoute(['graph']), { graph: { perMailbox: { messagesPerMinute: 30 } } });
    await relay.processRecord(message());

    await expect(relay.processRecord(message())).rejects.toMatchObject({ code: 'ProviderLimit' });
    expect(recorder.delays).toEqual([3]);
  });

  it('gives the concurrency lease back after the send, also when it fails', async () => {
    graph.script = () => 'transient';
    const relay = relayWith(delayRoute(['graph']), { graph: { perMailbox: { concurrentRequests: 1 } } });

    await expect(relay.processRecord(message())).rejects.toBeInstanceOf(RelayFailure);
    expect(store.held(clock)).toBe(0);
  });

  it('moves the whole fleet back when the provider answers with Retry-After', async () => {
    const throttled = new RelayFailure({
      failureClass: 'transient',
      code: 'TooManyRequests',
      reason: 'throttled',
      provider: 'graph',
      retryAfterSeconds: 30,
    });
    graph.send = async (_message, context) => {
      await context.handOff();
      throw throttled;
    };
    const relay = relayWith(delayRoute(['graph']), { graph: { perMailbox: { messagesPerMinute: 600 } } });

    await expect(relay.processRecord(message())).rejects.toBe(throttled);
    // Another function's next send for that mailbox waits out the 30 s.
    const other = new Pacer({
      store,
      pacingOf: () => ({ perMailbox: { messagesPerMinute: 600 } }),
      maxWaitMs: 0,
      leaseMs: 1000,
      now: () => clock,
    });
    expect(
      await other.acquire({ provider: 'graph', mailbox: 'app@contoso.com', recipients: 1 }),
    ).toMatchObject({
      kind: 'limited',
      until: START + 30_000,
    });
  });

  it('keeps a copy one message with its original in the ledger: both arriving, it is sent once', async () => {
    const relay = relayWith(delayRoute(['graph']), {});
    const original = message();
    const copy: SQSRecord = {
      ...original,
      messageId: 'copy-1',
      messageAttributes: {
        'MailRelay.SourceMessageId': { dataType: 'String', stringValue: original.messageId } as never,
      },
    };

    expect(await relay.processRecord(copy)).toMatchObject({ outcome: 'sent' });
    expect(await relay.processRecord(original)).toMatchObject({ outcome: 'duplicate' });
    expect(graph.calls).toBe(1);
  });
});
