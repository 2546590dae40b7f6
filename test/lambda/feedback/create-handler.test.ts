import { readFileSync } from 'node:fs';
import type { Context } from 'aws-lambda';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { DynamoDeliveryLedger } from '../../../lambda/core/dynamo-ledger.ts';
import { DynamoSuppressionList } from '../../../lambda/core/dynamo-suppression.ts';
import { FeedbackPayloadError } from '../../../lambda/core/feedback/ses-events.ts';
import { SETTINGS_ENV_VAR } from '../../../lambda/core/settings.ts';
import { ConfigurationError } from '../../../lambda/core/validation.ts';
import { createFeedbackHandler } from '../../../lambda/feedback/create-handler.ts';
import { type EventBridgePeer, startEventBridgePeer } from '../../../local/peers/eventbridge-peer.ts';
import { type DynamoPeer, startDynamo } from '../../helpers/dynamo.ts';
import { captureStdout, emfPoints } from '../../helpers/emf.ts';

const context = {
  functionName: 'feedback',
  awsRequestId: 'request-1',
  getRemainingTimeInMillis: () => 30_000,
} as unknown as Context;

function sesFixture(name: string): Record<string, unknown> {
  return JSON.parse(readFileSync(new URL(`../../fixtures/feedback/ses/${name}`, import.meta.url), 'utf8'));
}

describe('the feedback handler (SES events over EventBridge)', () => {
  let dynamo: DynamoPeer;
  let events: EventBridgePeer;
  const saved = { ...process.env };

  beforeAll(async () => {
    dynamo = await startDynamo();
    events = await startEventBridgePeer();
    Object.assign(process.env, {
      AWS_REGION: 'us-east-1',
      AWS_ACCESS_KEY_ID: 'test',
      AWS_SECRET_ACCESS_KEY: 'test',
      AWS_ENDPOINT_URL_DYNAMODB: dynamo.endpoint,
      AWS_ENDPOINT_URL_EVENTBRIDGE: events.endpoint,
      POWERTOOLS_LOG_LEVEL: 'ERROR',
    });
  });
  afterAll(async () => {
    process.env = saved;
    await events.close();
    await dynamo.stop();
  });
  afterEach(() => vi.restoreAllMocks());

  const environment = (retentionDays?: number, kinds?: readonly string[]) => ({
    ...process.env,
    [SETTINGS_ENV_VAR]: JSON.stringify({
      suppression: {
        tableName: dynamo.suppressionTableName,
        ...(retentionDays !== undefined && { retentionDays }),
      },
      events: { busName: 'relay-bus', ...(kinds && { kinds }) },
      ledger: { tableName: dynamo.ledgerTableName },
    }),
  });

  it('with suppression.softBounces, suppresses an address after that many soft bounces of different messages', async () => {
    const handler = createFeedbackHandler({
      ...process.env,
      [SETTINGS_ENV_VAR]: JSON.stringify({
        suppression: { tableName: dynamo.suppressionTableName, softBounces: { count: 2, days: 7 } },
        ledger: { tableName: dynamo.ledgerTableName },
      }),
    });
    const bounceOf = (messageId: string) => {
      const payload = sesFixture('bounce-transient.json');
      (payload.detail as { mail: { messageId: string } }).mail.messageId = messageId;
      return payload;
    };
    const list = new DynamoSuppressionList(dynamo.client, dynamo.suppressionTableName);
    const stdout = captureStdout();
    try {
      await handler(bounceOf('ses-soft-1'), context);
      // The same event again (a retry) counts once.
      await handler(bounceOf('ses-soft-1'), context);
      expect((await list.find(['full@fabrikam.com'])).size).toBe(0);
      await handler(bounceOf('ses-soft-2'), context);
    } finally {
      stdout.stop();
    }
    expect((await list.find(['full@fabrikam.com'])).get('full@fabrikam.com')).toEqual({
      address: 'full@fabrikam.com',
      reason: '2 soft bounces in 7 days, the last 5.2.2 via ses: 552 5.2.2 Mailbox full',
      since: '2026-11-20T09:20:11.004Z',
      cause: 'over-quota',
      evidence: { status: '5.2.2', diagnostic: '552 5.2.2 Mailbox full', provider: 'ses' },
    });
    expect(emfPoints(stdout.written).filter((point) => point.name === 'SuppressionAdded')).toEqual([
      expect.objectContaining({ dimensions: { service: 'mail-relay', Cause: 'over-quota' }, value: 1 }),
    ]);
    await list.remove('full@fabrikam.com');
  });

  it('turns a permanent SES bounce into a suppression, a Bounced metric and a Mail Bounced event', async () => {
    // The fixture's request (X-Mail-Relay-Idempotency-Key: order-1234), as the send function recorded it.
    const ledger = new DynamoDeliveryLedger(dynamo.client, dynamo.ledgerTableName);
    const now = new Date().toISOString();
    await ledger.put(
      {
        key: 'order-1234',
        state: 'sent',
        version: 1,
        messageId: '0b9e1c52-6f0e-4c1a-9a55-3f1d2b7e8c40',
        bodyHash: 'h',
        providerIndex: 0,
        attempts: 1,
        failures: [],
        provider: 'ses',
        createdAt: now,
        updatedAt: now,
        expiresAt: Math.floor(Date.now() / 1000) + 3600,
      },
      undefined,
    );
    const handler = createFeedbackHandler(environment(30));
    const stdout = captureStdout();
    try {
      await handler(sesFixture('bounce-permanent.json'), context);
    } finally {
      stdout.stop();
    }

    const suppressed = await new DynamoSuppressionList(dynamo.client, dynamo.suppressionTableName).find([
      'nobody@fabrikam.com',
    ]);
    const entry = suppressed.get('nobody@fabrikam.com');
    expect(entry?.reason).toMatch(/^hard bounce 5\.1\.1 via ses: 550 5\.1\.1/);
    expect(entry?.since).toBe('2026-11-20T09:14:03.912Z');
    expect(entry?.cause).toBe('user-unknown');
    expect(entry?.evidence).toEqual({
      status: '5.1.1',
      diagnostic:
        '550 5.1.1 <nobody@fabrikam.com>: Recipient address rejected: User unknown in virtual mailbox table',
      provider: 'ses',
    });
    // 30 days from now, give or take the test's own duration.
    expect(entry?.expiresAt).toBeGreaterThan(Date.now() / 1000 + 30 * 86_400 - 60);
    expect(entry?.expiresAt).toBeLessThan(Date.now() / 1000 + 30 * 86_400 + 60);

    expect(emfPoints(stdout.written)).toEqual([
      {
        namespace: 'MailRelay',
        name: 'SuppressionAdded',
        dimensions: { service: 'mail-relay', Cause: 'user-unknown' },
        value: 1,
      },
      {
        namespace: 'MailRelay',
        name: 'Bounced',
        dimensions: { service: 'mail-relay', Provider: 'ses' },
        value: 1,
      },
    ]);
    // `mail-relay status order-1234` tells the bounce.
    expect((await ledger.get('order-1234'))?.feedback).toEqual([
      expect.objectContaining({
        kind: 'bounced',
        bounceType: 'hard',
        recipients: ['nobody@fabrikam.com'],
        suppressed: true,
      }),
    ]);
    expect(events.events.at(-1)).toEqual({
      source: 'mail-relay',
      detailType: 'Mail Bounced',
      busName: 'relay-bus',
      detail: expect.objectContaining({
        outcome: 'bounced',
        messageId: '0b9e1c52-6f0e-4c1a-9a55-3f1d2b7e8c40',
        idempotencyKey: 'order-1234',
        tags: { app: 'crm', kind: 'receipt' },
        provider: 'ses',
        bounceType: 'hard',
        code: '5.1.1',
        recipients: ['nobody@fabrikam.com'],
      }),
    });
  });

  it('suppresses a complainer until removed when no retention is set, and counts Complained', async () => {
    const handler = createFeedbackHandler(environment());
    const stdout = captureStdout();
    try {
      await handler(sesFixture('complaint.json'), context);
    } finally {
      stdout.stop();
    }

    const list = new DynamoSuppressionList(dynamo.client, dynamo.suppressionTableName);
    const entry = (await list.find(['annoyed@fabrikam.com'])).get('annoyed@fabrikam.com');
    expect(entry).toMatchObject({
      reason: 'complaint (abuse) via ses',
      since: '2026-11-20T10:02:40.000Z',
      cause: 'complaint',
      evidence: { diagnostic: 'abuse', provider: 'ses' },
    });
    expect(entry).not.toHaveProperty('expiresAt');
    expect(emfPoints(stdout.written).map((point) => [point.name, point.dimensions.Cause])).toEqual([
      ['SuppressionAdded', 'complaint'],
      ['Complained', undefined],
    ]);
    expect(events.events.at(-1)?.detailType).toBe('Mail Complained');
  });

  it('does not suppress a soft bounce, counts deliveries, and publishes no Mail Delivered by default', async () => {
    const handler = createFeedbackHandler(environment());
    const before = events.putEventsCalls;
    const stdout = captureStdout();
    try {
      await handler(sesFixture('bounce-transient.json'), context);
      await handler(sesFixture('delivery.json'), context);
    } finally {
      stdout.stop();
    }

    const list = new DynamoSuppressionList(dynamo.client, dynamo.suppressionTableName);
    expect((await list.find(['full@fabrikam.com'])).size).toBe(0);
    expect(emfPoints(stdout.written).map((point) => [point.name, point.dimensions])).toEqual([
      ['Bounced', { service: 'mail-relay', Provider: 'ses' }],
      ['Delivered', { service: 'mail-relay', Provider: 'ses' }],
    ]);
    // Delivered is opt-in (events.publish.delivered): the delivery is counted, and no request is made for it.
    expect(events.events.at(-1)?.detailType).toBe('Mail Bounced');
    expect(events.putEventsCalls - before).toBe(1);
  });

  it('publishes Mail Delivered when its settings list the kind', async () => {
    const handler = createFeedbackHandler(environment(undefined, ['delivered', 'bounced', 'complained']));
    const stdout = captureStdout();
    try {
      await handler(sesFixture('delivery.json'), context);
    } finally {
      stdout.stop();
    }

    expect(events.events.at(-1)).toMatchObject({ detailType: 'Mail Delivered', busName: 'relay-bus' });
  });

  it('publishes nothing of a kind its settings leave out, and makes no request for it', async () => {
    const handler = createFeedbackHandler(environment(undefined, ['complained']));
    const before = { calls: events.putEventsCalls, events: events.events.length };
    const stdout = captureStdout();
    try {
      await handler(sesFixture('bounce-permanent.json'), context);
    } finally {
      stdout.stop();
    }

    expect(emfPoints(stdout.written).map((point) => point.name)).toContain('Bounced');
    expect(events.putEventsCalls).toBe(before.calls);
    expect(events.events).toHaveLength(before.events);
  });

  it('fails on a payload it cannot read, naming the field, so Lambda retries and then dead-letters it', async () => {
    const handler = createFeedbackHandler(environment());
    const payload = sesFixture('bounce-permanent.json');
    (payload.detail as { bounce: { bouncedRecipients: unknown } }).bounce.bouncedRecipients = 'nobody';

    await expect(handler(payload, context)).rejects.toThrow(FeedbackPayloadError);
    await expect(handler(payload, context)).rejects.toThrow(/detail\.bounce\.bouncedRecipients/);
  });

  it('fails when the suppression list cannot be written, so the bounce is not lost', async () => {
    const handler = createFeedbackHandler({
      ...environment(),
      [SETTINGS_ENV_VAR]: JSON.stringify({ suppression: { tableName: 'no-such-table' } }),
    });

    await expect(handler(sesFixture('bounce-permanent.json'), context)).rejects.toThrow(
      /resource not found/i,
    );
  });

  it('refuses to start with settings it cannot use, listing every problem', () => {
    const error = (() => {
      try {
        createFeedbackHandler({ [SETTINGS_ENV_VAR]: JSON.stringify({ suppression: { retentionDays: 0 } }) });
      } catch (caught) {
        return caught;
      }
      return undefined;
    })();
    expect(error).toBeInstanceOf(ConfigurationError);
    expect((error as ConfigurationError).problems).toEqual([
      expect.stringMatching(/^MAIL_RELAY_SETTINGS\.suppression\.tableName: required/),
      expect.stringMatching(/^MAIL_RELAY_SETTINGS\.suppression\.retentionDays: /),
    ]);
  });
});
