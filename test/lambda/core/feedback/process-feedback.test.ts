import { describe, expect, it } from 'vitest';
import type { FeedbackEvent } from '../../../../lambda/core/feedback/feedback-event.ts';
import { processFeedback } from '../../../../lambda/core/feedback/process-feedback.ts';
import type { RelayTelemetry } from '../../../../lambda/core/metrics.ts';
import type { OutcomeEvent } from '../../../../lambda/core/outcomes.ts';
import type { Suppression } from '../../../../lambda/core/suppression.ts';
import { MemorySuppressionList } from '../../../helpers/memory-ledger.ts';

const NOW = Date.parse('2026-11-22T12:00:00Z');

function harness(options: { failPublish?: boolean; failSuppress?: boolean } = {}) {
  const suppressions: Suppression[] = [];
  const counts: { name: string; dimensions: Record<string, string>; value: number }[] = [];
  const published: OutcomeEvent[] = [];
  const logs: { level: string; message: string; attributes: Record<string, unknown> }[] = [];
  const telemetry: RelayTelemetry = {
    count: (name, dimensions, value = 1) => counts.push({ name, dimensions: { ...dimensions }, value }),
    milliseconds: () => undefined,
  };
  const log = (level: string) => (message: string, attributes: Record<string, unknown>) =>
    logs.push({ level, message, attributes });
  return {
    suppressions,
    counts,
    published,
    logs,
    dependencies: {
      suppressions: {
        suppress: async (entry: Suppression) => {
          if (options.failSuppress) throw new Error('ProvisionedThroughputExceededException');
          suppressions.push(entry);
        },
      },
      telemetry,
      outcomes: {
        publish: async (events: readonly OutcomeEvent[]) => {
          if (options.failPublish) throw new Error('EventBridge refused 1 of 1 events');
          published.push(...events);
        },
      },
      logger: { info: log('info'), warn: log('warn'), error: log('error') },
      now: () => NOW,
    },
  };
}

const hardBounce: FeedbackEvent = {
  kind: 'bounced',
  provider: 'graph',
  recipients: ['nobody@fabrikam.com'],
  bounceType: 'hard',
  cause: 'user-unknown',
  status: '5.1.10',
  diagnostic: '550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup',
  providerMessageId: 'AM0PR01MB0001.example@contoso.com',
  sourceMessageId: '0b9e1c52-6f0e-4c1a-9a55-3f1d2b7e8c40',
  idempotencyKey: 'order-1234',
  at: '2026-11-22T11:59:00.000Z',
};

describe('processFeedback', () => {
  it('suppresses a hard bounce with its reason and time, counts it and publishes Mail Bounced', async () => {
    const run = harness();
    const summary = await processFeedback([hardBounce], { ...run.dependencies, suppressionDays: 30 });
    expect(run.suppressions).toEqual([
      {
        address: 'nobody@fabrikam.com',
        reason:
          'hard bounce 5.1.10 via graph: 550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup',
        since: '2026-11-22T11:59:00.000Z',
        expiresAt: NOW / 1000 + 30 * 86_400,
        cause: 'user-unknown',
        evidence: {
          status: '5.1.10',
          diagnostic: '550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup',
          provider: 'graph',
        },
      },
    ]);
    expect(run.counts).toEqual([
      { name: 'SuppressionAdded', dimensions: { Cause: 'user-unknown' }, value: 1 },
      { name: 'Bounced', dimensions: { Provider: 'graph' }, value: 1 },
    ]);
    expect(run.published).toEqual([
      expect.objectContaining({
        outcome: 'bounced',
        messageId: '0b9e1c52-6f0e-4c1a-9a55-3f1d2b7e8c40',
        idempotencyKey: 'order-1234',
        provider: 'graph',
        bounceType: 'hard',
        code: '5.1.10',
        recipients: ['nobody@fabrikam.com'],
        suppressedRecipients: ['nobody@fabrikam.com'],
      }),
    ]);
    expect(summary).toEqual({ suppressed: ['nobody@fabrikam.com'], published: 1 });
  });

  it('keeps a suppression without expiry when no retention is configured', async () => {
    const run = harness();
    await processFeedback([hardBounce], run.dependencies);
    expect(run.suppressions[0]).not.toHaveProperty('expiresAt');
  });

  it('never suppresses a soft bounce, but counts and publishes it', async () => {
    const run = harness();
    await processFeedback([{ ...hardBounce, bounceType: 'soft', status: '5.2.2' }], run.dependencies);
    expect(run.suppressions).toEqual([]);
    expect(run.counts.map((count) => count.dimensions)).toEqual([{ Provider: 'graph' }]);
    expect(run.published[0]).toMatchObject({ outcome: 'bounced', bounceType: 'soft' });
    expect(run.published[0]).not.toHaveProperty('suppressedRecipients');
    expect(run.logs).toContainEqual(
      expect.objectContaining({
        message: 'Bounce received',
        attributes: expect.objectContaining({ suppressed: false }),
      }),
    );
  });

  it('suppresses every complainer, counts Complained, publishes Mail Complained', async () => {
    const run = harness();
    await processFeedback(
      [
        {
          kind: 'complained',
          provider: 'ses',
          recipients: ['a@fabrikam.com', 'b@fabrikam.com'],
          diagnostic: 'abuse',
          at: '2026-11-22T11:00:00Z',
          providerMessageId: 'ses-1',
        },
      ],
      run.dependencies,
    );
    expect(run.suppressions.map((entry) => [entry.address, entry.reason])).toEqual([
      ['a@fabrikam.com', 'complaint (abuse) via ses'],
      ['b@fabrikam.com', 'complaint (abuse) via ses'],
    ]);
    expect(run.suppressions.map((entry) => [entry.cause, entry.evidence])).toEqual([
      ['complaint', { diagnostic: 'abuse', provider: 'ses' }],
      ['complaint', { diagnostic: 'abuse', provider: 'ses' }],
    ]);
    expect(run.counts).toEqual([
      { name: 'SuppressionAdded', dimensions: { Cause: 'complaint' }, value: 1 },
      { name: 'SuppressionAdded', dimensions: { Cause: 'complaint' }, value: 1 },
      { name: 'Complained', dimensions: { Provider: 'ses' }, value: 1 },
    ]);
    // Without the trace header, the provider's id is the only id there is.
    expect(run.published[0]).toMatchObject({ outcome: 'complained', messageId: 'ses-1' });
  });

  it('counts a message once per kind even when its recipients bounced for different reasons', async () => {
    const run = harness();
    await processFeedback(
      [hardBounce, { ...hardBounce, recipients: ['other@fabrikam.com'], status: '5.1.1' }],
      run.dependencies,
    );
    // One Bounced for the message (per provider), one SuppressionAdded per address.
    expect(run.counts.filter((count) => count.name === 'Bounced')).toHaveLength(1);
    expect(run.counts.filter((count) => count.name === 'SuppressionAdded')).toHaveLength(2);
    expect(run.suppressions.map((entry) => entry.address)).toEqual([
      'nobody@fabrikam.com',
      'other@fabrikam.com',
    ]);
    expect(run.published).toHaveLength(2);
  });

  it('counts and publishes deliveries, and only logs delays, rejects and sends', async () => {
    const run = harness();
    const base = { provider: 'ses', recipients: ['r@fabrikam.com'], at: '2026-11-22T11:00:00Z' };
    await processFeedback(
      [
        { ...base, kind: 'delivered', providerMessageId: 'm1' },
        { ...base, kind: 'delayed', providerMessageId: 'm2', status: '4.4.1' },
        { ...base, kind: 'rejected', providerMessageId: 'm3', diagnostic: 'Bad content' },
        { ...base, kind: 'sent', providerMessageId: 'm4' },
      ],
      run.dependencies,
    );
    expect(run.counts).toEqual([{ name: 'Delivered', dimensions: { Provider: 'ses' }, value: 1 }]);
    expect(run.published.map((event) => event.outcome)).toEqual(['delivered']);
    expect(run.suppressions).toEqual([]);
    expect(run.logs.map((entry) => entry.message)).toEqual([
      'Delivery delayed',
      'Provider rejected the message',
    ]);
  });

  it('fails when a suppression cannot be written, so the feedback is retried', async () => {
    const run = harness({ failSuppress: true });
    await expect(processFeedback([hardBounce], run.dependencies)).rejects.toThrow(/ProvisionedThroughput/);
  });

  it('logs, and does not fail, when outcome events cannot be published', async () => {
    const run = harness({ failPublish: true });
    const summary = await processFeedback([hardBounce], run.dependencies);
    expect(summary).toEqual({ suppressed: ['nobody@fabrikam.com'], published: 0 });
    expect(run.logs).toContainEqual(
      expect.objectContaining({ level: 'error', message: 'Could not publish the outcome events' }),
    );
  });

  it('notes bounces on the ledger entry of their request (idempotency key, else sqs:<id>), never unverified ones', async () => {
    const run = harness();
    const notes: { key: string; kind: string; suppressed: boolean }[] = [];
    const dependencies = {
      ...run.dependencies,
      notes: {
        noteFeedback: async (key: string, note: { kind: string; suppressed: boolean }) => {
          notes.push({ key, kind: note.kind, suppressed: note.suppressed });
          return true;
        },
      },
    };
    await processFeedback(
      [
        hardBounce,
        { ...hardBounce, idempotencyKey: undefined, bounceType: 'soft', sourceMessageId: 'sqs-77' },
        { ...hardBounce, idempotencyKey: undefined, sourceMessageId: 'forged', unverified: true },
      ],
      dependencies,
    );
    expect(notes).toEqual([
      { key: 'order-1234', kind: 'bounced', suppressed: true },
      { key: 'sqs:sqs-77', kind: 'bounced', suppressed: false },
    ]);
    // The unverified one is counted but suppresses no one.
    expect(run.suppressions.map((entry) => entry.address)).toEqual(['nobody@fabrikam.com']);
  });

  it('goes on when the ledger cannot take the note: the suppression and event already carry the bounce', async () => {
    const run = harness();
    const summary = await processFeedback([hardBounce], {
      ...run.dependencies,
      notes: {
        noteFeedback: async () => {
          throw new Error('ProvisionedThroughputExceededException');
        },
      },
    });
    expect(summary).toEqual({ suppressed: ['nobody@fabrikam.com'], published: 1 });
    expect(run.logs).toContainEqual(
      expect.objectContaining({
        level: 'warn',
        message: 'Could not note the feedback in the delivery ledger',
      }),
    );
  });

  it('keeps an excerpt of at most 200 characters of the diagnostic as evidence, and cause other when the bounce names none', async () => {
    const run = harness();
    const long = `550 5.1.1 ${'no such user here '.repeat(30)}`;
    await processFeedback([{ ...hardBounce, cause: undefined, diagnostic: long }], run.dependencies);
    const [entry] = run.suppressions;
    expect(entry?.cause).toBe('other');
    expect(entry?.evidence?.diagnostic).toHaveLength(200);
    expect(entry?.evidence?.diagnostic).toMatch(/^550 5\.1\.1 no such user here .*…$/);
    // The reason keeps more of the words (up to 500 characters), as before.
    expect(entry?.reason.length).toBeGreaterThan(200);
    expect(run.counts[0]).toEqual({ name: 'SuppressionAdded', dimensions: { Cause: 'other' }, value: 1 });
  });
});

describe('processFeedback with a soft-bounce threshold', () => {
  const softBounce: FeedbackEvent = {
    ...hardBounce,
    bounceType: 'soft',
    cause: 'over-quota',
    status: '4.2.2',
    diagnostic: '452 4.2.2 The email account that you tried to reach is over quota',
    idempotencyKey: undefined,
    recipients: ['full@fabrikam.com'],
  };
  const bounceOf = (message: number, fields: Partial<FeedbackEvent> = {}): FeedbackEvent => ({
    ...softBounce,
    providerMessageId: `message-${message}`,
    sourceMessageId: `sqs-${message}`,
    ...fields,
  });

  function thresholdRun(threshold = { count: 3, days: 7 }) {
    const clock = { now: NOW };
    const list = new MemorySuppressionList(() => clock.now);
    const run = harness();
    const dependencies = {
      ...run.dependencies,
      suppressions: list,
      softBounces: { threshold, counter: list },
      now: () => clock.now,
    };
    return { clock, list, run, dependencies };
  }

  it('suppresses after N soft bounces of an address within D days, with the last cause and a reason naming them', async () => {
    const { list, run, dependencies } = thresholdRun();
    await processFeedback([bounceOf(1), bounceOf(2)], dependencies);
    expect(list.entries.size).toBe(0);

    const summary = await processFeedback(
      [bounceOf(3, { cause: 'expired', status: '4.4.7', diagnostic: '421 4.4.7 Message expired' })],
      dependencies,
    );
    expect(summary.suppressed).toEqual(['full@fabrikam.com']);
    expect(list.entries.get('full@fabrikam.com')).toEqual({
      address: 'full@fabrikam.com',
      reason: '3 soft bounces in 7 days, the last 4.4.7 via graph: 421 4.4.7 Message expired',
      since: softBounce.at,
      cause: 'expired',
      evidence: { status: '4.4.7', diagnostic: '421 4.4.7 Message expired', provider: 'graph' },
    });
    expect(run.counts).toContainEqual({
      name: 'SuppressionAdded',
      dimensions: { Cause: 'expired' },
      value: 1,
    });
    expect(run.published.at(-1)).toMatchObject({ suppressedRecipients: ['full@fabrikam.com'] });
    expect(run.logs.at(-1)).toMatchObject({
      message: 'Bounce received',
      attributes: expect.objectContaining({ suppressed: true, cause: 'expired' }),
    });
  });

  it('counts a retried bounce of the same message once', async () => {
    const { list, dependencies } = thresholdRun();
    await processFeedback([bounceOf(1), bounceOf(1), bounceOf(2)], dependencies);
    await processFeedback([bounceOf(2)], dependencies);
    expect(list.softBounces.get('full@fabrikam.com')?.count).toBe(2);
    expect(list.entries.size).toBe(0);
  });

  it('never counts unverified soft bounces, nor those whose cause is about the sender or the message', async () => {
    const { list, run, dependencies } = thresholdRun({ count: 2, days: 7 });
    await processFeedback(
      [
        bounceOf(1, { unverified: true }),
        bounceOf(2, { cause: 'rate-limited' }),
        bounceOf(3, { cause: 'blocked' }),
        bounceOf(4, { cause: 'policy' }),
        bounceOf(5, { cause: 'content' }),
        bounceOf(6, { unverified: true }),
      ],
      dependencies,
    );
    expect(list.softBounces.size).toBe(0);
    expect(list.entries.size).toBe(0);
    expect(run.counts.filter((count) => count.name === 'SuppressionAdded')).toEqual([]);
  });

  it('counts soft bounces with no cause or an address cause, per address', async () => {
    const { list, dependencies } = thresholdRun({ count: 2, days: 7 });
    await processFeedback(
      [
        bounceOf(1, { cause: undefined, recipients: ['a@fabrikam.com', 'b@fabrikam.com'] }),
        bounceOf(2, { cause: 'user-unknown', status: '4.1.1', recipients: ['a@fabrikam.com'] }),
      ],
      dependencies,
    );
    expect(list.softBounces.get('a@fabrikam.com')?.count).toBe(2);
    expect(list.softBounces.get('b@fabrikam.com')?.count).toBe(1);
    expect([...list.entries.keys()]).toEqual(['a@fabrikam.com']);
    expect(list.entries.get('a@fabrikam.com')?.cause).toBe('user-unknown');
  });

  it('starts counting afresh once the window from the first soft bounce has passed', async () => {
    const { clock, list, dependencies } = thresholdRun({ count: 3, days: 7 });
    await processFeedback([bounceOf(1), bounceOf(2)], dependencies);
    clock.now += 7 * 86_400_000 + 1000;
    await processFeedback([bounceOf(3), bounceOf(4)], dependencies);
    expect(list.softBounces.get('full@fabrikam.com')?.count).toBe(2);
    expect(list.entries.size).toBe(0);
  });

  it('fails when a soft bounce cannot be counted, so the feedback is retried', async () => {
    const { list, dependencies } = thresholdRun();
    list.failWrites = true;
    await expect(processFeedback([bounceOf(1)], dependencies)).rejects.toThrow(
      'suppression list unreachable',
    );
  });

  it('never counts soft bounces when no threshold is configured', async () => {
    const list = new MemorySuppressionList(() => NOW);
    const run = harness();
    await processFeedback([bounceOf(1), bounceOf(2), bounceOf(3), bounceOf(4), bounceOf(5)], {
      ...run.dependencies,
      suppressions: list,
    });
    expect(list.softBounces.size).toBe(0);
    expect(list.entries.size).toBe(0);
  });
});
