import { describe, expect, it } from 'vitest';
import type { FeedbackEvent } from '../../../../lambda/core/feedback/feedback-event.ts';
import { processFeedback } from '../../../../lambda/core/feedback/process-feedback.ts';
import type { RelayTelemetry } from '../../../../lambda/core/metrics.ts';
import type { OutcomeEvent } from '../../../../lambda/core/outcomes.ts';
import type { Suppression } from '../../../../lambda/core/suppression.ts';

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
      },
    ]);
    expect(run.counts).toEqual([
      { name: 'Bounced', dimensions: { Provider: 'graph' }, value: 1 },
      { name: 'Bounced', dimensions: { Provider: 'graph', BounceType: 'hard' }, value: 1 },
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
    expect(run.counts.map((count) => count.dimensions)).toEqual([
      { Provider: 'graph' },
      { Provider: 'graph', BounceType: 'soft' },
    ]);
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
    expect(run.counts).toEqual([{ name: 'Complained', dimensions: { Provider: 'ses' }, value: 1 }]);
    // Without the trace header, the provider's id is the only id there is.
    expect(run.published[0]).toMatchObject({ outcome: 'complained', messageId: 'ses-1' });
  });

  it('counts a message once per kind even when its recipients bounced for different reasons', async () => {
    const run = harness();
    await processFeedback(
      [hardBounce, { ...hardBounce, recipients: ['other@fabrikam.com'], status: '5.1.1' }],
      run.dependencies,
    );
    expect(run.counts.filter((count) => count.name === 'Bounced')).toHaveLength(2);
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
});
