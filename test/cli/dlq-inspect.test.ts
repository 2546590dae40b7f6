import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { type DlqFixture, SPAWN_HEAVY, startDlqFixture } from './dlq-fixture.ts';

// `mail-relay dlq list` and `show` as an operator runs them: a child process against real peers, reading
// a DLQ seeded as the relay writes it (see dlq-fixture.ts). They must leave the queue as it was.

describe('mail-relay dlq list and show', () => {
  let fixture: DlqFixture;
  beforeAll(async () => {
    fixture = await startDlqFixture();
  });
  afterAll(() => fixture.stop());

  it(
    'lists every message once with its copies, what the ledger says and counts by code, and leaves them in the queue',
    async () => {
      const { newWorld, cli, peek, outcomeUnknown, seed } = fixture;
      const world = await newWorld();
      const { crashedId } = await seed(world);

      const text = await cli(world, 'list');
      expect(text.code).toBe(0);
      expect(text.stdout).toContain(': 5 messages (6 copies).');
      // The two copies of invoice-lost are one message.
      expect(text.stdout.match(/^invoice-lost {2}OutcomeUnknown {2}2 copies$/gm)).toHaveLength(1);
      const block = (key: string) =>
        text.stdout.split('\n\n').find((part) => part.startsWith(`${key}  `)) ?? '';
      expect(block('invoice-lost')).toMatch(
        /failure +permanent, graph, after 3 deliveries, dead-lettered \d+ s ago/,
      );
      expect(block('invoice-lost')).toContain(
        'ledger       a provider may have sent it (OutcomeUnknown: graph has had it since 2026-11-29T10:00:01.000Z): check before redriving',
      );
      expect(block('invoice-sent')).toContain(
        'ledger       already sent by graph at 2026-11-29T10:00:01.000Z: a copy, safe to drop',
      );
      expect(block('invoice-busy')).toContain('a function is sending it right now');
      expect(block('sqs:out-rejected')).toContain('reason       Email address is not verified.');
      expect(block(`sqs:${crashedId}`)).toMatch(
        /^sqs:\S+ {2}MovedBySqs {2}1 copy\n.*\n {2}failure {6}moved by SQS after maxReceiveCount: the function crashed or timed out on every delivery/,
      );
      expect(block(`sqs:${crashedId}`)).toContain('ledger       not in the ledger');
      const counts = text.stdout.slice(text.stdout.indexOf('By failure code:'));
      expect(counts).toMatch(/^ {2}OutcomeUnknown +3 messages \(4 copies\)$/m);
      expect(counts).toMatch(/^ {2}MessageRejected +1 message$/m);
      expect(counts).toMatch(/^ {2}MovedBySqs +1 message$/m);
      expect(text.stdout).not.toContain('SECRET BODY TEXT');

      const json = await cli(world, 'list', '--json', '--reason', 'OutcomeUnknown');
      expect(json.code).toBe(0);
      const listed = JSON.parse(json.stdout);
      expect(listed).toMatchObject({
        deadLetterQueueUrl: world.dlqUrl,
        countsByCode: { OutcomeUnknown: { messages: 3, copies: 4 } },
        total: { messages: 3, copies: 4 },
        truncated: false,
      });
      const lost = listed.messages.find(
        (message: { ledgerKey: string }) => message.ledgerKey === 'invoice-lost',
      );
      expect(lost).toEqual({
        ledgerKey: 'invoice-lost',
        failureCode: 'OutcomeUnknown',
        failureClass: 'permanent',
        provider: 'graph',
        reason: outcomeUnknown.reason,
        hint: outcomeUnknown.hint,
        attempts: 3,
        movedBySqs: false,
        copies: 2,
        dlqMessageIds: [expect.any(String), expect.any(String)],
        sourceMessageIds: ['out-lost'],
        firstDeadLetteredAt: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
        lastDeadLetteredAt: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
        ageSeconds: expect.any(Number),
        ledger: { state: 'dead-lettered', verdict: 'maybe-sent', says: expect.any(String), release: null },
      });
      expect(
        listed.messages.map((message: { ledger: { verdict: string } }) => message.ledger.verdict).sort(),
      ).toEqual(['in-flight', 'maybe-sent', 'sent']);

      // Listing consumed nothing: every copy can still be received.
      expect(await peek(world.dlqUrl, 6)).toHaveLength(6);
    },
    SPAWN_HEAVY,
  );

  it(
    'shows one message by its key, its DLQ message id or its original SQS message id, never its body',
    async () => {
      const { newWorld, cli, peek, seed } = fixture;
      const world = await newWorld();
      const { crashedId, rejectedDlqId } = await seed(world);

      // One at a time: a command holds the messages it reads (SQS has no peek), so two would each see part.
      const byKey = await cli(world, 'show', 'invoice-lost');
      const byDlqId = await cli(world, 'show', crashedId, '--json');
      const bySourceId = await cli(world, 'show', 'out-rejected');
      const nothing = await cli(world, 'show', 'no-such-message');

      expect(byKey.code).toBe(0);
      const lines = byKey.stdout.split('\n');
      expect(lines[0]).toBe('invoice-lost  OutcomeUnknown  2 copies in the dead-letter queue');
      expect(lines.filter((line) => line.startsWith('Copy '))).toHaveLength(2);
      expect(byKey.stdout).toMatch(/failure code \(MailRelay\.FailureCode\) +OutcomeUnknown/);
      expect(byKey.stdout).toMatch(/failure class \(MailRelay\.FailureClass\) +permanent: it cannot succeed/);
      expect(byKey.stdout).toMatch(/what to do \(MailRelay\.Hint\) +Look for its Message-ID/);
      expect(byKey.stdout).toMatch(
        /outbox message \(MailRelay\.SourceMessageId\) +out-lost \(its SQS message id/,
      );
      expect(byKey.stdout).toMatch(/deliveries \(MailRelay\.Attempts\) +3 /);
      expect(byKey.stdout).toContain("producer's attributes: tenant (String) = acme");
      expect(byKey.stdout).toContain(
        'Ledger (key invoice-lost): a provider may have sent it (OutcomeUnknown',
      );
      expect(byKey.stdout).toContain(
        '  dead-lettered at 2026-11-29T10:00:05.000Z, route contoso: OutcomeUnknown',
      );
      expect(byKey.stdout).toContain(
        '  maybe sent: graph since 2026-11-29T10:00:01.000Z: the answer was lost',
      );
      expect(byKey.stdout).toContain('  from:           Billing <billing@contoso.com>');
      expect(byKey.stdout).toContain('  recipients:     2: to Ana <ana@example.org>, bob@example.org');
      expect(byKey.stdout).toContain('  subject:        Invoice 42');
      expect(byKey.stdout).toContain('  attachments:    invoice-42.pdf (1234 bytes, application/pdf)');
      expect(byKey.stdout).toContain('  tags:           tenant=acme');
      expect(byKey.stdout).toContain('  idempotencyKey: invoice-lost');
      expect(byKey.stdout).toContain('  body:           text, 16 characters');
      expect(byKey.stdout).not.toContain('SECRET BODY TEXT');

      expect(byDlqId.code).toBe(0);
      const [crashed, ...others] = JSON.parse(byDlqId.stdout).matches;
      expect(others).toEqual([]);
      expect(crashed).toMatchObject({
        ledgerKey: `sqs:${crashedId}`,
        failureCode: 'MovedBySqs',
        movedBySqs: true,
        reason: 'moved by SQS after maxReceiveCount: the function crashed or timed out on every delivery',
        ledger: { state: null, verdict: 'no-entry' },
        copyDetails: [{ dlqMessageId: crashedId, sourceMessageId: crashedId, relayAttributes: {} }],
        ledgerEntry: null,
        message: { subject: 'No key, crashed the function', recipients: 1, textCharacters: 16 },
      });
      expect(byDlqId.stdout).not.toContain('SECRET BODY TEXT');

      expect(bySourceId.code).toBe(0);
      expect(bySourceId.stdout).toMatch(/^sqs:out-rejected {2}MessageRejected {2}1 copy/);
      expect(bySourceId.stdout).toContain(`Copy 1 of 1: DLQ message ${rejectedDlqId}`);
      expect(bySourceId.stdout).toContain('Ledger (key sqs:out-rejected): not sent (ledger: dead-lettered)');

      expect(nothing).toMatchObject({ code: 1, stdout: '' });
      expect(nothing.stderr).toContain('No message in the dead-letter queue matches no-such-message');

      // Showing consumed nothing either.
      expect(await peek(world.dlqUrl, 6)).toHaveLength(6);
    },
    SPAWN_HEAVY,
  );
});
