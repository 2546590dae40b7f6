import { beforeEach, describe, expect, it, vi } from 'vitest';
import type { ComposedOutbound } from '../../../lambda/core/attachments.ts';
import { bodyHashOf } from '../../../lambda/core/delivery.ts';
import { RelayFailure } from '../../../lambda/core/failures.ts';
import { createRelay, type RelayCoreSettings } from '../../../lambda/core/relay.ts';
import type { RouteSettings } from '../../../lambda/core/settings.ts';
import { classifyProviderFault as classifyFault } from '../../../lambda/providers/registry.ts';
import { failureOf } from '../../helpers/failures.ts';
import { MemoryLedger, MemorySuppressionList } from '../../helpers/memory-ledger.ts';
import { sqsRecord, validMessage } from '../../helpers/peers.ts';
import { Recorder, ScriptedProvider } from '../../helpers/scripted-relay.ts';

// Narrow unit tests of the relay's decisions with scripted providers; the same scenarios run end to
// end against the real peers and DynamoDB emulator in test/e2e/local-mode-routing.test.ts.

const ROUTES: RouteSettings[] = [
  { name: 'contoso', from: ['*@contoso.com'], providers: ['graph', 'ses'] },
  { name: 'ceo', from: ['ceo@contoso.com'], providers: ['graph'] },
  {
    name: 'crm',
    from: ['*@crm.contoso.com'],
    providers: ['smtp'],
    rewriteFrom: { address: 'crm@contoso.com', name: 'Contoso CRM' },
  },
];

const settingsWith = (overrides: Partial<RelayCoreSettings> = {}): RelayCoreSettings => ({
  limits: { maxRecipients: 50, maxMessageBytes: 1024 * 1024 },
  maxReceiveCount: 10,
  routes: ROUTES,
  retry: { maxAttempts: 3, baseDelaySeconds: 10, maxDelaySeconds: 600 },
  circuitBreaker: { failureThreshold: 3, cooldownSeconds: 60 },
  ledger: { tableName: 'ledger', leaseSeconds: 30, retentionDays: 14 },
  ...overrides,
});

describe('relay: routes, fallback, retries and the ledger', () => {
  let graph: ScriptedProvider;
  let smtp: ScriptedProvider;
  let ses: ScriptedProvider;
  let ledger: MemoryLedger;
  let suppressions: MemorySuppressionList;
  let recorder: Recorder;
  let clock: number;

  const relayWith = (overrides: Partial<RelayCoreSettings> = {}) =>
    createRelay({
      providers: [graph, smtp, ses],
      deadLetters: recorder,
      recordDelay: recorder,
      logger: recorder,
      ledger,
      suppressions,
      settings: settingsWith(overrides),
      now: () => clock,
      random: () => 0.5,
    });

  beforeEach(() => {
    graph = new ScriptedProvider('graph');
    smtp = new ScriptedProvider('smtp');
    ses = new ScriptedProvider('ses');
    ledger = new MemoryLedger();
    suppressions = new MemorySuppressionList();
    recorder = new Recorder();
    clock = Date.parse('2026-11-22T10:00:00Z');
  });

  const contoso = (overrides: Record<string, unknown> = {}) =>
    validMessage({ from: 'Ana <ana@contoso.com>', ...overrides });

  it('falls back to the next provider at once on a provider-level failure, and records who sent it', async () => {
    graph.script = () => 'provider';
    const record = sqsRecord(contoso(), { messageId: 'm-1' });

    const outcome = await relayWith().processRecord(record);

    expect(outcome).toMatchObject({ outcome: 'sent', route: 'contoso', fallbackFrom: ['graph'] });
    expect(ses.sent).toHaveLength(1);
    expect(ledger.records.get('sqs:m-1')).toMatchObject({
      state: 'sent',
      provider: 'ses',
      providerMessageId: 'ses-1',
      fallbackFrom: ['graph'],
      failures: [expect.objectContaining({ provider: 'graph', code: 'graph-provider' })],
    });
    expect(recorder.lines).toContainEqual(
      expect.objectContaining({ message: 'Message sent', provider: 'ses', fallbackFrom: ['graph'] }),
    );
  });

  it('logs one INFO line per sent message: ids, route, provider, ms and the suppressed count, never the addresses', async () => {
    suppressions.add('gone@example.org');
    const record = sqsRecord(
      contoso({ to: ['a@example.org', 'gone@example.org'], idempotencyKey: 'order-7' }),
      {
        messageId: 'm-line',
      },
    );

    await relayWith().processRecord(record);

    const lines = recorder.lines.filter((line) => line.messageId === 'm-line');
    expect(lines).toEqual([
      expect.objectContaining({
        message: 'Message sent',
        idempotencyKey: 'order-7',
        route: 'contoso',
        provider: 'graph',
        providerMessageId: 'graph-1',
        ms: expect.any(Number),
        suppressedCount: 1,
      }),
    ]);
    // The ledger key is the idempotency key, already on the line.
    expect(lines[0]).not.toHaveProperty('key');
    expect(JSON.stringify(recorder.lines)).not.toContain('gone@example.org');
    expect(recorder.debugLines).toContainEqual(
      expect.objectContaining({ message: 'Suppressed recipients dropped', messageId: 'm-line' }),
    );
  });

  it("names the ledger key on the sent line when it is not the message's own (a copy back from the dead-letter queue)", async () => {
    const copy = sqsRecord(contoso(), { messageId: 'm-copy' });
    copy.messageAttributes['MailRelay.SourceMessageId'] = {
      dataType: 'String',
      stringValue: 'm-original',
      stringListValues: [],
      binaryListValues: [],
    };

    await relayWith().processRecord(copy);

    expect(recorder.lines).toContainEqual(
      expect.objectContaining({ message: 'Message sent', messageId: 'm-copy', key: 'sqs:m-original' }),
    );
  });

  it('retries a transient failure on the same provider with growing delays, then falls back', async () => {
    graph.script = () => 'transient';
    const relay = relayWith();

    for (const receiveCount of [1, 2]) {
      const failure = await failureOf(
        relay.processRecord(sqsRecord(contoso(), { messageId: 'm-2', receiveCount })),
      );
      expect(failure.failureClass).toBe('transient');
    }
    // Equal jitter with random 0.5: 3/4 of 10 s, then of 20 s.
    expect(recorder.delays).toEqual([8, 15]);
    expect(ledger.records.get('sqs:m-2')).toMatchObject({ state: 'retrying', providerIndex: 0, attempts: 2 });

    const third = await relay.processRecord(sqsRecord(contoso(), { messageId: 'm-2', receiveCount: 3 }));

    expect(third).toMatchObject({ outcome: 'sent', fallbackFrom: ['graph'] });
    expect(graph.calls).toBe(3);
    expect(ses.calls).toBe(1);
  });

  it('records the fallback when the provider that sent it took over in an earlier delivery', async () => {
    graph.script = () => 'provider';
    ses.script = () => 'transient';
    const relay = relayWith();
    await failureOf(relay.processRecord(sqsRecord(contoso(), { messageId: 'm-5', receiveCount: 1 })));
    ses.script = () => 'ok';

    const outcome = await relay.processRecord(sqsRecord(contoso(), { messageId: 'm-5', receiveCount: 2 }));

    expect(outcome).toMatchObject({ outcome: 'sent', fallbackFrom: ['graph'] });
    expect(graph.calls).toBe(1);
    expect(ledger.records.get('sqs:m-5')).toMatchObject({ provider: 'ses', fallbackFrom: ['graph'] });
  });

  it("uses the provider's Retry-After instead of the backoff", async () => {
    graph.send = async () => {
      throw new RelayFailure({
        failureClass: 'transient',
        code: 'TooManyRequests',
        reason: 'throttled',
        provider: 'graph',
        retryAfterSeconds: 42,
      });
    };
    await failureOf(relayWith().processRecord(sqsRecord(contoso())));
    expect(recorder.delays).toEqual([42]);
  });

  it('dead-letters a permanent failure at once, without trying the next provider', async () => {
    graph.script = () => 'permanent';

    const outcome = await relayWith().processRecord(sqsRecord(contoso(), { messageId: 'm-3' }));

    expect(outcome.outcome).toBe('dead-lettered');
    expect(ses.calls).toBe(0);
    expect(recorder.deadLetters[0]?.failure).toMatchObject({ code: 'graph-permanent', provider: 'graph' });
    expect(ledger.records.get('sqs:m-3')?.state).toBe('dead-lettered');
  });

  it('retries the last provider when every provider is down, then dead-letters with every reason', async () => {
    graph.script = () => 'provider';
    ses.script = () => 'provider';
    const relay = relayWith();

    await failureOf(relay.processRecord(sqsRecord(contoso(), { messageId: 'm-4', receiveCount: 1 })));
    await failureOf(relay.processRecord(sqsRecord(contoso(), { messageId: 'm-4', receiveCount: 2 })));
    const outcome = await relay.processRecord(sqsRecord(contoso(), { messageId: 'm-4', receiveCount: 3 }));

    expect(outcome.outcome).toBe('dead-lettered');
    // Fallback only moves forward: graph is tried once, SES up to retry.maxAttempts.
    expect(graph.calls).toBe(1);
    expect(ses.calls).toBe(3);
    const { failure } = recorder.deadLetters[0] ?? {};
    expect(failure?.reason).toMatch(
      /^gave up after 3 attempts: graph graph-provider: .* \| ses ses-provider: /,
    );
    expect(failure?.provider).toBe('ses');
  });

  it('dead-letters with a reason when the queue would otherwise redrive it silently', async () => {
    graph.script = () => 'transient';
    const outcome = await relayWith({ maxReceiveCount: 2 }).processRecord(
      sqsRecord(contoso(), { receiveCount: 2 }),
    );
    expect(outcome.outcome).toBe('dead-lettered');
    expect(recorder.deadLetters[0]?.failure.reason).toMatch(
      /^gave up after 2 attempts: graph graph-transient/,
    );
  });

  it('opens the circuit after consecutive provider-level failures and stops calling that provider', async () => {
    graph.script = () => 'provider';
    const relay = relayWith();

    for (let index = 0; index < 6; index += 1) {
      await relay.processRecord(sqsRecord(contoso()));
    }

    expect(graph.calls).toBe(3);
    expect(ses.sent).toHaveLength(6);
    expect(recorder.lines).toContainEqual(
      expect.objectContaining({ code: 'CircuitOpen', provider: 'graph' }),
    );

    // After the cool-down one trial goes through, and a success closes the circuit.
    clock += 61_000;
    graph.script = () => 'ok';
    await relay.processRecord(sqsRecord(contoso()));
    await relay.processRecord(sqsRecord(contoso()));
    expect(graph.sent).toHaveLength(2);
  });

  it('sends a message once even when it arrives twice with the same idempotency key', async () => {
    const relay = relayWith();
    const body = contoso({ idempotencyKey: 'invoice-42' });

    const first = await relay.processRecord(sqsRecord(body, { messageId: 'a' }));
    const second = await relay.processRecord(sqsRecord(body, { messageId: 'b' }));

    expect(first.outcome).toBe('sent');
    expect(second).toMatchObject({ outcome: 'duplicate', record: { messageId: 'a', provider: 'graph' } });
    expect(graph.calls).toBe(1);
  });

  it('asks to come back later while another function is sending the same message', async () => {
    let release: () => void = () => undefined;
    graph.send = async (message, context) => {
      await context.handOff();
      await new Promise<void>((resolve) => {
        release = resolve;
      });
      graph.sent.push(message);
      return { provider: 'graph', providerMessageId: 'g' };
    };
    const relay = relayWith();
    const body = contoso({ idempotencyKey: 'k-inflight' });
    const sending = relay.processRecord(sqsRecord(body, { messageId: 'a' }));
    await vi.waitFor(() => expect(ledger.records.get('k-inflight')?.state).toBe('sending'), {
      timeout: 60_000,
    });

    const failure = await failureOf(relay.processRecord(sqsRecord(body, { messageId: 'b' })));
    release();

    expect(failure.code).toBe('InFlight');
    expect(recorder.delays).toEqual([30]);
    expect(await sending).toMatchObject({ outcome: 'sent' });
    expect(graph.sent).toHaveLength(1);
  });

  it('does not send again when a function died while a provider had the message', async () => {
    const relay = relayWith();
    const body = contoso({ idempotencyKey: 'k-crash' });
    // What a function leaves behind when it dies mid-send: a hand-off whose lease has run out.
    ledger.records.set('k-crash', {
      key: 'k-crash',
      state: 'sending',
      version: 1,
      messageId: 'a',
      bodyHash: bodyHashOf(JSON.stringify(body)),
      providerIndex: 0,
      attempts: 0,
      failures: [],
      leaseUntil: clock - 1,
      handedOffTo: 'graph',
      handedOffAt: new Date(clock - 30_000).toISOString(),
      createdAt: new Date(clock).toISOString(),
      updatedAt: new Date(clock).toISOString(),
      expiresAt: clock / 1000 + 86_400,
    });

    const outcome = await relay.processRecord(sqsRecord(body, { messageId: 'a', receiveCount: 2 }));

    expect(outcome).toMatchObject({ outcome: 'dead-lettered', failure: { code: 'OutcomeUnknown' } });
    expect(recorder.deadLetters[0]?.failure.reason).toContain('graph may have sent this message');
    expect(recorder.deadLetters[0]?.failure.hint).toContain('mail-relay dlq redrive');
    expect(graph.calls).toBe(0);
  });

  it('refuses an idempotency key reused for a different message', async () => {
    const relay = relayWith();
    await relay.processRecord(sqsRecord(contoso({ idempotencyKey: 'k', subject: 'one' })));
    const outcome = await relay.processRecord(sqsRecord(contoso({ idempotencyKey: 'k', subject: 'two' })));
    expect(outcome).toMatchObject({ outcome: 'dead-lettered', failure: { code: 'IdempotencyKeyReused' } });
    expect(graph.calls).toBe(1);
  });

  it('sends the message anyway when the ledger cannot be written after the provider accepted it', async () => {
    const relay = relayWith();
    graph.script = () => {
      ledger.failWrites = true;
      return 'ok';
    };
    const outcome = await relay.processRecord(sqsRecord(contoso()));
    expect(outcome.outcome).toBe('sent');
    expect(recorder.lines).toContainEqual(
      expect.objectContaining({ message: 'Could not write the delivery ledger' }),
    );
  });

  it('sends nothing and retries when the ledger cannot be read', async () => {
    ledger.failReads = true;
    const failure = await failureOf(relayWith().processRecord(sqsRecord(contoso())));
    expect(failure).toMatchObject({ failureClass: 'transient', code: 'LedgerUnavailable' });
    expect(graph.calls).toBe(0);
  });

  describe('sender policy', () => {
    it('dead-letters a From no route allows, without calling any provider, and records why', async () => {
      const outcome = await relayWith().processRecord(
        sqsRecord(validMessage({ from: 'ceo@evil.example', idempotencyKey: 'k-evil' })),
      );
      expect(outcome).toMatchObject({ outcome: 'dead-lettered', failure: { code: 'SenderNotAllowed' } });
      expect(graph.calls + smtp.calls + ses.calls).toBe(0);
      expect(ledger.records.get('k-evil')).toMatchObject({
        state: 'dead-lettered',
        failures: [expect.objectContaining({ code: 'SenderNotAllowed' })],
      });
    });

    it('never lets a refused copy overwrite the entry of a message that was sent', async () => {
      const relay = relayWith();
      await relay.processRecord(sqsRecord(contoso({ idempotencyKey: 'k-sent' })));
      await relay.processRecord(sqsRecord(contoso({ idempotencyKey: 'k-sent', to: [] })));
      await relay.processRecord(sqsRecord(contoso({ idempotencyKey: 'k-sent', from: 'x@evil.example' })));
      expect(ledger.records.get('k-sent')?.state).toBe('sent');
    });

    it('picks the most specific route: an address beats its domain', async () => {
      graph.script = () => 'provider';
      const failure = await failureOf(
        relayWith().processRecord(sqsRecord(contoso({ from: 'ceo@contoso.com' }))),
      );
      // The ceo route has no SES fallback: graph is retried later instead.
      expect(failure.provider).toBe('graph');
      expect(ses.calls).toBe(0);
    });

    it('honours a route asked for by name only when it allows the From', async () => {
      const relay = relayWith();
      const allowed = await relay.processRecord(
        sqsRecord(contoso({ from: 'ceo@contoso.com', route: 'contoso' })),
      );
      expect(allowed).toMatchObject({ outcome: 'sent', route: 'contoso' });

      const refused = await relay.processRecord(sqsRecord(contoso({ route: 'crm' })));
      expect(refused).toMatchObject({ outcome: 'dead-lettered', failure: { code: 'RouteNotAllowed' } });
      const unknown = await relay.processRecord(sqsRecord(contoso({ route: 'nope' })));
      expect(unknown).toMatchObject({ outcome: 'dead-lettered', failure: { code: 'UnknownRoute' } });
    });

    it("rewrites the From to the route's service mailbox, keeping the sender in Reply-To", async () => {
      await relayWith().processRecord(sqsRecord(validMessage({ from: 'Luis Gómez <luis@crm.contoso.com>' })));

      expect(smtp.sent[0]?.from).toEqual({ name: 'Luis Gómez via Contoso CRM', address: 'crm@contoso.com' });
      expect((smtp.sent[0] as ComposedOutbound | undefined)?.replyTo).toEqual([
        { name: 'Luis Gómez', address: 'luis@crm.contoso.com' },
      ]);
    });

    it("keeps the producer's own Reply-To when rewriting", async () => {
      await relayWith().processRecord(
        sqsRecord(validMessage({ from: 'luis@crm.contoso.com', replyTo: 'ventas@contoso.com' })),
      );
      expect(smtp.sent[0]?.from.name).toBe('luis@crm.contoso.com via Contoso CRM');
      expect((smtp.sent[0] as ComposedOutbound | undefined)?.replyTo).toEqual([
        { address: 'ventas@contoso.com' },
      ]);
    });
  });

  describe('suppression', () => {
    it('drops suppressed recipients and sends to the others', async () => {
      suppressions.add('Bounced@Example.org');
      const outcome = await relayWith().processRecord(
        sqsRecord(contoso({ to: ['bounced@example.org', 'ok@example.org'], bcc: 'BOUNCED@example.org' }), {
          messageId: 's-1',
        }),
      );

      expect(outcome).toMatchObject({ outcome: 'sent', suppressedRecipients: ['bounced@example.org'] });
      expect((graph.sent[0] as ComposedOutbound | undefined)?.to).toEqual([{ address: 'ok@example.org' }]);
      expect((graph.sent[0] as ComposedOutbound | undefined)?.bcc).toEqual([]);
      expect(ledger.records.get('sqs:s-1')?.suppressedRecipients).toEqual(['bounced@example.org']);
    });

    it('sends nothing when every recipient is suppressed', async () => {
      suppressions.add('customer@example.org');
      const outcome = await relayWith().processRecord(sqsRecord(contoso(), { messageId: 's-2' }));

      expect(outcome).toEqual({ outcome: 'suppressed', suppressedRecipients: ['customer@example.org'] });
      expect(graph.calls).toBe(0);
      expect(ledger.records.get('sqs:s-2')?.state).toBe('suppressed');
    });
  });
  describe('addresses a provider cannot carry (SMTPUTF8)', () => {
    const cannotAddress = (provider: ScriptedProvider) => {
      const send = provider.send.bind(provider);
      provider.send = async (message, context) => {
        if (message.from.address.startsWith('josé@')) {
          provider.calls += 1;
          // As the adapters report it: classified by the failure table, which says the next may.
          throw classifyFault({
            provider: provider.name,
            code: 'AddressNotSupported',
            message: `from josé@contoso.com: ${provider.name} cannot carry a non-ASCII local part (SMTPUTF8)`,
          });
        }
        return send(message, context);
      };
    };

    it("passes the message to the next provider without opening the first one's circuit", async () => {
      cannotAddress(graph);
      const relay = relayWith();
      for (let index = 0; index < 4; index += 1) {
        const outcome = await relay.processRecord(
          sqsRecord(contoso({ from: 'josé@contoso.com' }), { messageId: `u-${index}` }),
        );
        expect(outcome).toMatchObject({ outcome: 'sent', fallbackFrom: ['graph'] });
      }

      await relay.processRecord(sqsRecord(contoso(), { messageId: 'ascii' }));

      // Four refusals, over the threshold of 3: an ASCII sender still goes through Graph.
      expect(graph.sent).toHaveLength(1);
      expect(ses.sent).toHaveLength(4);
    });

    it('passes a message with more recipients than SES takes to the next provider instead of dead-lettering it', async () => {
      ses.send = async () => {
        ses.calls += 1;
        throw classifyFault({
          provider: 'ses',
          code: 'TooManyRecipients',
          message: 'the message has 60 recipients in to + cc + bcc; SES accepts at most 50',
        });
      };
      const relay = relayWith({
        routes: [{ name: 'big', from: ['*@contoso.com'], providers: ['ses', 'graph'] }],
      });

      const outcome = await relay.processRecord(sqsRecord(contoso(), { messageId: 'big-1' }));

      expect(outcome).toMatchObject({ outcome: 'sent', fallbackFrom: ['ses'] });
      expect(graph.sent).toHaveLength(1);
      expect(recorder.deadLetters).toEqual([]);
    });

    it('dead-letters a message no provider of its route can address, saying so', async () => {
      cannotAddress(graph);
      cannotAddress(ses);

      const outcome = await relayWith().processRecord(
        sqsRecord(contoso({ from: 'josé@contoso.com' }), { messageId: 'u-x' }),
      );

      expect(outcome).toMatchObject({ outcome: 'dead-lettered' });
      expect(recorder.deadLetters[0]?.failure).toMatchObject({
        failureClass: 'permanent',
        code: 'AddressNotSupported',
        reason:
          'no provider of route contoso can carry this message: from josé@contoso.com: ses cannot carry a non-ASCII local part (SMTPUTF8)',
      });
    });
  });
  it('never sends a trace header the producer wrote, so feedback cannot be tied to another message', async () => {
    await relayWith().processRecord(
      sqsRecord(
        contoso({ headers: { 'X-Mail-Relay-Idempotency-Key': 'someone-elses-key', 'X-Tenant': 'acme' } }),
        {
          messageId: 'trace-1',
        },
      ),
    );

    expect((graph.sent[0] as ComposedOutbound).headers).toEqual({
      'X-Tenant': 'acme',
      'X-Mail-Relay-Message-Id': 'trace-1',
    });
  });
});
