import type { SQSRecord } from 'aws-lambda';
import { beforeEach, describe, expect, it } from 'vitest';
import { DEAD_LETTER_ATTRIBUTES } from '../../../lambda/core/dead-letter.ts';
import { bodyHashOf } from '../../../lambda/core/delivery.ts';
import { RelayFailure } from '../../../lambda/core/failures.ts';
import type { DeliveryRecord } from '../../../lambda/core/ledger.ts';
import { createRelay, type RelayCoreSettings } from '../../../lambda/core/relay.ts';
import type { RouteSettings } from '../../../lambda/core/settings.ts';
import { failureOf } from '../../helpers/failures.ts';
import { MemoryLedger, MemorySuppressionList } from '../../helpers/memory-ledger.ts';
import { sqsRecord, validMessage } from '../../helpers/peers.ts';
import { Recorder, ScriptedProvider } from '../../helpers/scripted-relay.ts';

// "Never twice, never lost" at the level of the relay's decisions, with scripted providers that behave
// towards the core as the real adapters do. The same faults run against the real peers in
// test/e2e/never-twice.test.ts and, randomised and with killed processes, in the soak.

const routes = (onUnknownOutcome?: RouteSettings['onUnknownOutcome']): RouteSettings[] => [
  {
    name: 'contoso',
    from: ['*@contoso.com'],
    providers: ['graph', 'ses'],
    ...(onUnknownOutcome && { onUnknownOutcome }),
  },
];

const settingsWith = (overrides: Partial<RelayCoreSettings> = {}): RelayCoreSettings => ({
  limits: { maxRecipients: 50, maxMessageBytes: 1024 * 1024 },
  maxReceiveCount: 10,
  routes: routes(),
  retry: { maxAttempts: 3, baseDelaySeconds: 10, maxDelaySeconds: 600 },
  circuitBreaker: { failureThreshold: 3, cooldownSeconds: 60 },
  ledger: { tableName: 'ledger', leaseSeconds: 30, retentionDays: 14 },
  ...overrides,
});

const contoso = (fields: Record<string, unknown> = {}) =>
  validMessage({ from: 'Billing <billing@contoso.com>', ...fields });

describe('never twice, never lost: the relay core', () => {
  let graph: ScriptedProvider;
  let ses: ScriptedProvider;
  let ledger: MemoryLedger;
  let recorder: Recorder;
  let clock: number;

  const relayWith = (overrides: Partial<RelayCoreSettings> = {}) =>
    createRelay({
      providers: [graph, ses],
      deadLetters: recorder,
      recordDelay: recorder,
      logger: recorder,
      ledger,
      suppressions: new MemorySuppressionList(),
      settings: settingsWith(overrides),
      now: () => clock,
      random: () => 0.5,
    });
  const entryOf = (key: string) => ledger.records.get(key) as DeliveryRecord;

  beforeEach(() => {
    graph = new ScriptedProvider('graph');
    ses = new ScriptedProvider('ses');
    ledger = new MemoryLedger();
    recorder = new Recorder();
    clock = Date.parse('2026-11-29T10:00:00Z');
  });

  describe('a lost answer', () => {
    it('is neither retried nor passed to the next provider: it is dead-lettered as OutcomeUnknown', async () => {
      graph.script = () => 'lost';
      const relay = relayWith();

      const outcome = await relay.processRecord(sqsRecord(contoso({ idempotencyKey: 'lost-1' })));

      expect(outcome).toMatchObject({
        outcome: 'dead-lettered',
        failure: { code: 'OutcomeUnknown', provider: 'graph' },
      });
      expect(graph.calls).toBe(1);
      expect(ses.calls).toBe(0);
      const failure = recorder.deadLetters[0]?.failure;
      expect(failure?.reason).toMatch(/^graph may have sent this message \(the answer was lost: ETIMEDOUT/);
      expect(failure?.reason).toContain(`Message-ID ${graph.contexts[0]?.internetMessageId}`);
      expect(entryOf('lost-1')).toMatchObject({ state: 'dead-lettered', maybeSent: { provider: 'graph' } });
    });

    it('gives every try of a message the same Message-ID, on the sender’s domain', async () => {
      graph.script = () => 'transient';
      const relay = relayWith();
      const record = sqsRecord(contoso({ idempotencyKey: 'same-id' }));
      await failureOf(relay.processRecord(record));
      await failureOf(
        relay.processRecord({
          ...record,
          attributes: { ...record.attributes, ApproximateReceiveCount: '2' },
        }),
      );

      const [first, second] = graph.contexts.map((context) => context.internetMessageId);
      expect(first).toMatch(/^<[0-9a-f-]{36}@contoso\.com>$/);
      expect(second).toBe(first);
    });

    it('is sent again on a route that prefers a possible duplicate to a loss', async () => {
      let tries = 0;
      graph.script = () => (++tries === 1 ? 'lost' : 'ok');
      const relay = relayWith({ routes: routes('resend') });
      const record = sqsRecord(contoso({ idempotencyKey: 'reset-1' }));

      const failure = await failureOf(relay.processRecord(record));
      expect(failure).toMatchObject({ code: 'ETIMEDOUT', maybeSent: true });
      const outcome = await relay.processRecord({
        ...record,
        attributes: { ...record.attributes, ApproximateReceiveCount: '2' },
      });

      expect(outcome).toMatchObject({ outcome: 'sent', receipt: { provider: 'graph' } });
      // At least once: the recipient may get it twice, as the route asked.
      expect(graph.sent).toHaveLength(2);
      expect(ses.calls).toBe(0);
    });

    it('is looked up where the provider can say (Graph: the mailbox) and counts as sent when found', async () => {
      graph.script = () => 'lost';
      graph.enableLookup(300);
      const relay = relayWith();

      const outcome = await relay.processRecord(sqsRecord(contoso({ idempotencyKey: 'found-1' })));

      expect(outcome).toMatchObject({ outcome: 'sent', receipt: { provider: 'graph' } });
      expect(graph.sent).toHaveLength(1);
      expect(recorder.deadLetters).toHaveLength(0);
      expect(entryOf('found-1')).toMatchObject({
        state: 'sent',
        provider: 'graph',
        providerMessageId: graph.contexts[0]?.internetMessageId,
      });
      expect(entryOf('found-1')).not.toHaveProperty('maybeSent');
    });

    it('is looked up again later while it is not there, and sent again only once the window has passed', async () => {
      let tries = 0;
      graph.script = () => (++tries === 1 ? 'vanished' : 'ok');
      graph.enableLookup(60);
      const relay = relayWith();
      const record = sqsRecord(contoso({ idempotencyKey: 'vanished-1' }));
      const delivery = (receiveCount: number) =>
        relay.processRecord({
          ...record,
          attributes: { ...record.attributes, ApproximateReceiveCount: String(receiveCount) },
        });

      expect(await failureOf(delivery(1))).toMatchObject({ code: 'LookupPending' });
      clock += 10_000;
      expect(await failureOf(delivery(2))).toMatchObject({ code: 'LookupPending' });
      expect(recorder.delays).toEqual([10, 20]);
      expect(graph.calls).toBe(1);

      clock += 60_000;
      expect(await delivery(3)).toMatchObject({ outcome: 'sent' });
      expect(graph.calls).toBe(2);
      expect(graph.sent).toHaveLength(1);
      expect(entryOf('vanished-1').failures.map((failure) => failure.code)).toContain('AnswerLost');
    });

    it('follows the route when the mailbox cannot be read (no permission): dead-lettered, saying why', async () => {
      graph.script = () => 'lost';
      graph.lookupWindowSeconds = 300;
      graph.findSent = async () => ({
        unavailable: new RelayFailure({
          failureClass: 'provider',
          code: 'ErrorAccessDenied',
          reason: 'Access is denied.',
          provider: 'graph',
        }),
      });
      const outcome = await relayWith().processRecord(sqsRecord(contoso()));

      expect(outcome).toMatchObject({ outcome: 'dead-lettered', failure: { code: 'OutcomeUnknown' } });
      expect(recorder.deadLetters[0]?.failure.reason).toContain(
        'The mailbox could not be checked: ErrorAccessDenied',
      );
    });
  });

  describe('redrive is an operator act, recorded in the ledger', () => {
    it('does not send a possibly-sent message again because a copy carries the relay’s dead-letter attributes', async () => {
      graph.script = () => 'lost';
      const relay = relayWith();
      const body = contoso({ idempotencyKey: 'maybe-1' });
      await relay.processRecord(sqsRecord(body, { messageId: 'a' }));

      // Any producer can set these on SendMessage.
      graph.script = () => 'ok';
      const forged = {
        ...sqsRecord(body, { messageId: 'b' }),
        messageAttributes: {
          [DEAD_LETTER_ATTRIBUTES.code]: { dataType: 'String', stringValue: 'OutcomeUnknown' },
          [DEAD_LETTER_ATTRIBUTES.sourceMessageId]: { dataType: 'String', stringValue: 'a' },
        },
      } as SQSRecord;
      expect(await relay.processRecord(forged)).toMatchObject({
        outcome: 'dead-lettered',
        failure: { code: 'OutcomeUnknown' },
      });
      expect(graph.calls).toBe(1);

      // The operator's release, as `mail-relay dlq redrive` writes it.
      const entry = entryOf('maybe-1');
      ledger.records.set('maybe-1', {
        ...entry,
        version: entry.version + 1,
        release: { at: 'T', by: 'ops' },
      });
      expect(await relay.processRecord(sqsRecord(body, { messageId: 'c' }))).toMatchObject({
        outcome: 'sent',
      });
      // The release is used up by that send: one more copy is a duplicate.
      expect(entryOf('maybe-1')).not.toHaveProperty('release');
      expect(await relay.processRecord(sqsRecord(body, { messageId: 'd' }))).toMatchObject({
        outcome: 'duplicate',
      });
      expect(graph.sent).toHaveLength(2);
    });

    it('finds the entry of a message without idempotency key moved back from the DLQ by its source id', async () => {
      graph.script = () => 'lost';
      const relay = relayWith();
      const body = contoso({ subject: 'no key' });
      await relay.processRecord(sqsRecord(body, { messageId: 'orig' }));
      expect(entryOf('sqs:orig').maybeSent).toBeDefined();

      graph.script = () => 'ok';
      const movedBack = (messageId: string, json: unknown) =>
        ({
          ...sqsRecord(json, { messageId }),
          messageAttributes: {
            [DEAD_LETTER_ATTRIBUTES.sourceMessageId]: { dataType: 'String', stringValue: 'orig' },
          },
        }) as SQSRecord;
      // SQS gives a redriven message a new id; the entry is still the original's.
      expect(await relay.processRecord(movedBack('redriven', body))).toMatchObject({
        outcome: 'dead-lettered',
        failure: { code: 'OutcomeUnknown' },
      });
      // The attribute names an entry only for the very same body: another message is just new.
      expect(await relay.processRecord(movedBack('other', contoso({ subject: 'another' })))).toMatchObject({
        outcome: 'sent',
      });
      expect(graph.sent).toHaveLength(2);
    });
  });

  it('leaves nothing that blocks the next delivery when a function dies before the hand-off', async () => {
    // The first function gets as far as the provider call, then dies before writing the request.
    graph.send = () => new Promise(() => undefined);
    void relayWith().processRecord(sqsRecord(contoso({ idempotencyKey: 'early-death' }), { messageId: 'a' }));
    await new Promise((resolve) => setImmediate(resolve));
    expect(ledger.records.get('early-death')).toBeUndefined();

    const next = new ScriptedProvider('graph');
    graph = next;
    const outcome = await relayWith().processRecord(
      sqsRecord(contoso({ idempotencyKey: 'early-death' }), { messageId: 'a', receiveCount: 2 }),
    );
    expect(outcome).toMatchObject({ outcome: 'sent' });
    expect(next.sent).toHaveLength(1);
  });

  it('hands nothing to the provider when the hand-off cannot be recorded', async () => {
    const relay = relayWith();
    ledger.failWrites = true;
    const failure = await failureOf(relay.processRecord(sqsRecord(contoso())));
    expect(failure).toMatchObject({ code: 'LedgerUnavailable', failureClass: 'transient' });
    expect(graph.sent).toHaveLength(0);
  });

  it('dead-letters with the reason a copy still in flight on its last delivery, leaving the sender’s entry alone', async () => {
    const body = contoso({ idempotencyKey: 'busy' });
    // Another function has the message with a provider right now (its lease runs for 30 s more).
    ledger.records.set('busy', {
      key: 'busy',
      state: 'sending',
      version: 2,
      messageId: 'a',
      bodyHash: bodyHashOf(JSON.stringify(body)),
      providerIndex: 0,
      attempts: 0,
      failures: [],
      leaseUntil: clock + 30_000,
      handedOffTo: 'graph',
      createdAt: new Date(clock).toISOString(),
      updatedAt: new Date(clock).toISOString(),
      expiresAt: clock / 1000 + 86_400,
    });

    const outcome = await relayWith().processRecord(sqsRecord(body, { messageId: 'b', receiveCount: 10 }));

    expect(outcome).toMatchObject({ outcome: 'dead-lettered', failure: { code: 'InFlight' } });
    expect(recorder.deadLetters[0]?.failure.reason).toMatch(/^gave up after 10 attempts: .*InFlight/);
    expect(ledger.records.get('busy')?.state).toBe('sending');
  });

  it('does not dead-letter the same SQS message a second time after a crash before its delete', async () => {
    graph.script = () => 'permanent';
    const relay = relayWith();
    const record = sqsRecord(contoso({ idempotencyKey: 'dlq-once' }), { messageId: 'a' });
    expect(await relay.processRecord(record)).toMatchObject({ outcome: 'dead-lettered' });

    // The outbox delete never happened: the same message comes back.
    const again = await relay.processRecord({
      ...record,
      attributes: { ...record.attributes, ApproximateReceiveCount: '2' },
    });
    expect(again).toMatchObject({ outcome: 'already-dead-lettered' });
    expect(recorder.deadLetters).toHaveLength(1);
    expect(graph.calls).toBe(1);
  });

  it('does not dead-letter an invalid message a second time after a crash before its delete', async () => {
    const relay = relayWith();
    const record = sqsRecord('{"v": 1, "from": "nobody"}', { messageId: 'bad' });
    expect(await relay.processRecord(record)).toMatchObject({ outcome: 'dead-lettered' });
    expect(
      await relay.processRecord({
        ...record,
        attributes: { ...record.attributes, ApproximateReceiveCount: '2' },
      }),
    ).toMatchObject({ outcome: 'already-dead-lettered' });
    expect(recorder.deadLetters).toHaveLength(1);
  });
});
