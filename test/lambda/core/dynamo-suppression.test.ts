import {
  BatchGetItemCommand,
  DynamoDBClient,
  GetItemCommand,
  PutItemCommand,
  ScanCommand,
} from '@aws-sdk/client-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DynamoSuppressionList, SOFT_BOUNCE_KEY_PREFIX } from '../../../lambda/core/dynamo-suppression.ts';
import { type DynamoPeer, startDynamo } from '../../helpers/dynamo.ts';
import { REGION } from '../../helpers/peers.ts';

const NOW = Date.parse('2026-11-22T10:00:00Z');

/**
 * Makes the emulator's BatchGetItem answers look throttled: for the next `rounds` calls every key
 * comes back in UnprocessedKeys (as DynamoDB does under load). Dynalite itself never throttles.
 * Returns the number of BatchGetItem calls made so far.
 */
function throttleBatchGets(client: DynamoDBClient, rounds: number): { calls: () => number } {
  let calls = 0;
  let left = rounds;
  client.middlewareStack.add(
    (next, context) => async (args) => {
      const result = await next(args);
      if (context.commandName !== BatchGetItemCommand.name) return result;
      calls += 1;
      if (left <= 0) return result;
      left -= 1;
      const input = args.input as BatchGetItemCommand['input'];
      Object.assign(result.output as object, { Responses: {}, UnprocessedKeys: input.RequestItems });
      return result;
    },
    { step: 'initialize', name: 'throttleBatchGets' },
  );
  return { calls: () => calls };
}

describe('the suppression list on the DynamoDB emulator', () => {
  let dynamo: DynamoPeer;
  let list: DynamoSuppressionList;

  beforeAll(async () => {
    dynamo = await startDynamo();
    list = new DynamoSuppressionList(dynamo.client, dynamo.suppressionTableName, () => NOW);
    await list.suppress({ address: 'Bounced@Example.org', reason: 'hard bounce', since: 'then' });
    await list.suppress({
      address: 'old@example.org',
      reason: 'complaint',
      since: 'then',
      expiresAt: NOW / 1000 - 1,
    });
    await list.suppress({
      address: 'later@example.org',
      reason: 'complaint',
      since: 'then',
      expiresAt: NOW / 1000 + 60,
    });
    await list.suppress({ address: 'user150@example.org', reason: 'hard bounce', since: 'then' });
  });
  afterAll(() => dynamo.stop());

  it('finds suppressed recipients in any case, across several batches, ignoring expired entries', async () => {
    const many = Array.from({ length: 250 }, (_, index) => `user${index}@example.org`);

    const found = await list.find([
      'bounced@EXAMPLE.org',
      'BOUNCED@example.org',
      'old@example.org',
      'later@example.org',
      'ok@example.org',
      ...many,
    ]);

    expect([...found.keys()].sort()).toEqual([
      'bounced@example.org',
      'later@example.org',
      'user150@example.org',
    ]);
    expect(found.get('bounced@example.org')).toEqual({
      address: 'bounced@example.org',
      reason: 'hard bounce',
      since: 'then',
    });
    expect(found.get('later@example.org')?.expiresAt).toBe(NOW / 1000 + 60);
    expect((await list.find([])).size).toBe(0);
  });

  it('asks again for keys DynamoDB left unprocessed, and gives up when it keeps leaving them', async () => {
    const throttled = startThrottledList(2);
    // The first chunk (100 keys) holds bounced@, the second (52) user150@.
    const addresses = [
      'bounced@example.org',
      ...Array.from({ length: 151 }, (_, index) => `user${index}@example.org`),
    ];
    const found = await throttled.list.find(addresses);
    expect([...found.keys()].sort()).toEqual(['bounced@example.org', 'user150@example.org']);
    // The first chunk answered only on its third call, the second at once.
    expect(throttled.calls()).toBe(4);
    throttled.client.destroy();

    const never = startThrottledList(Number.POSITIVE_INFINITY);
    await expect(never.list.find(['bounced@example.org'])).rejects.toThrow(
      'the suppression list did not answer for 1 addresses (throttled)',
    );
    never.client.destroy();
  });

  it('lists live entries across scan pages, and adds and removes in any case', async () => {
    const paged = clientFor(dynamo);
    // Two items per page, so list() has to follow LastEvaluatedKey.
    let scans = 0;
    paged.middlewareStack.add(
      (next, context) => async (args) => {
        if (context.commandName === ScanCommand.name) {
          scans += 1;
          Object.assign(args.input as object, { Limit: 2 });
        }
        return next(args);
      },
      { step: 'initialize', name: 'smallScanPages' },
    );
    const pagedList = new DynamoSuppressionList(paged, dynamo.suppressionTableName, () => NOW);

    expect((await pagedList.list()).map((entry) => entry.address)).toEqual([
      'bounced@example.org',
      'later@example.org',
      'user150@example.org',
    ]);
    expect(scans).toBeGreaterThan(1);

    await pagedList.suppress({ address: 'New@Example.org', reason: 'added by an operator', since: 'now' });
    expect((await list.find(['new@example.org'])).get('new@example.org')?.reason).toBe(
      'added by an operator',
    );
    await pagedList.remove('NEW@example.org');
    expect((await list.find(['new@example.org'])).size).toBe(0);
    paged.destroy();
  });

  function startThrottledList(rounds: number) {
    const client = clientFor(dynamo);
    const { calls } = throttleBatchGets(client, rounds);
    return { client, calls, list: new DynamoSuppressionList(client, dynamo.suppressionTableName, () => NOW) };
  }
});

describe('causes, evidence and soft-bounce counters on the DynamoDB emulator', () => {
  let dynamo: DynamoPeer;
  const clock = { now: NOW };
  let list: DynamoSuppressionList;

  beforeAll(async () => {
    dynamo = await startDynamo();
    list = new DynamoSuppressionList(dynamo.client, dynamo.suppressionTableName, () => clock.now);
  });
  afterAll(() => dynamo.stop());

  it('keeps the cause and the evidence, cutting the diagnostic to an excerpt of 200 characters', async () => {
    await list.suppress({
      address: 'Gone@Fabrikam.com',
      reason: 'hard bounce 5.1.1 via ses: 550 5.1.1 user unknown',
      since: '2026-11-22T09:00:00.000Z',
      cause: 'user-unknown',
      evidence: { status: '5.1.1', diagnostic: `550 5.1.1 user unknown ${'x'.repeat(400)}`, provider: 'ses' },
    });
    const entry = (await list.find(['gone@fabrikam.com'])).get('gone@fabrikam.com');
    expect(entry).toMatchObject({ cause: 'user-unknown', evidence: { status: '5.1.1', provider: 'ses' } });
    expect(entry?.evidence?.diagnostic).toHaveLength(200);
    expect(entry?.evidence?.diagnostic?.startsWith('550 5.1.1 user unknown xxx')).toBe(true);
    expect((await list.list()).find((listed) => listed.address === 'gone@fabrikam.com')).toEqual(entry);
  });

  it('reads entries written before causes were kept, with only reason, since and expiresAt', async () => {
    await dynamo.client.send(
      new PutItemCommand({
        TableName: dynamo.suppressionTableName,
        Item: {
          address: { S: 'legacy@fabrikam.com' },
          reason: { S: 'hard bounce 5.1.1 via graph' },
          since: { S: '2025-01-01T00:00:00.000Z' },
          expiresAt: { N: String(NOW / 1000 + 3600) },
        },
      }),
    );
    expect((await list.find(['legacy@fabrikam.com'])).get('legacy@fabrikam.com')).toEqual({
      address: 'legacy@fabrikam.com',
      reason: 'hard bounce 5.1.1 via graph',
      since: '2025-01-01T00:00:00.000Z',
      expiresAt: NOW / 1000 + 3600,
    });
  });

  it('counts soft bounces per address in one window from the first, once per message, hidden from find and list', async () => {
    const at = '2026-11-22T10:00:00.000Z';
    expect(await list.countSoftBounce('Full@Fabrikam.com', { messageId: 'm1', at }, 7)).toBe(1);
    expect(await list.countSoftBounce('full@fabrikam.com', { messageId: 'm2', at }, 7)).toBe(2);
    // A retried batch: the same message is not counted again, and its answer is the count as it is.
    expect(await list.countSoftBounce('full@fabrikam.com', { messageId: 'm2', at }, 7)).toBe(2);
    // Without a message id every report counts.
    expect(await list.countSoftBounce('full@fabrikam.com', { at }, 7)).toBe(3);
    expect(await list.countSoftBounce('other@fabrikam.com', { messageId: 'm1', at }, 7)).toBe(1);

    const counter = await dynamo.client.send(
      new GetItemCommand({
        TableName: dynamo.suppressionTableName,
        Key: { address: { S: `${SOFT_BOUNCE_KEY_PREFIX}full@fabrikam.com` } },
      }),
    );
    // The counter expires (TTL) with its window.
    expect(counter.Item?.expiresAt?.N).toBe(String(NOW / 1000 + 7 * 86_400));
    expect(counter.Item?.firstAt?.S).toBe(at);

    expect((await list.find(['full@fabrikam.com', `${SOFT_BOUNCE_KEY_PREFIX}full@fabrikam.com`])).size).toBe(
      0,
    );
    expect((await list.list()).map((entry) => entry.address)).not.toContainEqual(
      expect.stringContaining('full@fabrikam.com'),
    );
  });

  it('opens a new window once the last has passed, even before TTL deleted the counter', async () => {
    const at = '2026-11-22T10:00:00.000Z';
    clock.now = NOW;
    expect(await list.countSoftBounce('window@fabrikam.com', { messageId: 'w1', at }, 1)).toBe(1);
    expect(await list.countSoftBounce('window@fabrikam.com', { messageId: 'w2', at }, 1)).toBe(2);
    clock.now = NOW + 86_400_000 + 1000;
    try {
      // The old window's message ids are forgotten with it.
      expect(await list.countSoftBounce('window@fabrikam.com', { messageId: 'w2', at }, 1)).toBe(1);
      expect(await list.countSoftBounce('window@fabrikam.com', { messageId: 'w3', at }, 1)).toBe(2);
    } finally {
      clock.now = NOW;
    }
  });

  it('counts every one of many soft bounces written at once (conditional writes, no lost update)', async () => {
    const at = '2026-11-22T10:00:00.000Z';
    const counts = await Promise.all(
      Array.from({ length: 8 }, (_, index) =>
        list.countSoftBounce('busy@fabrikam.com', { messageId: `b${index}`, at }, 7),
      ),
    );
    expect([...counts].sort((a, b) => a - b)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
  });

  it('remove takes the address off the list and forgets its soft bounces', async () => {
    const at = '2026-11-22T10:00:00.000Z';
    await list.countSoftBounce('back@fabrikam.com', { messageId: 'r1', at }, 7);
    await list.countSoftBounce('back@fabrikam.com', { messageId: 'r2', at }, 7);
    await list.suppress({
      address: 'back@fabrikam.com',
      reason: '2 soft bounces in 7 days',
      since: at,
      cause: 'over-quota',
    });
    await list.remove('BACK@fabrikam.com');
    expect((await list.find(['back@fabrikam.com'])).size).toBe(0);
    expect(await list.countSoftBounce('back@fabrikam.com', { messageId: 'r3', at }, 7)).toBe(1);
  });
});

/** A client of its own, so middleware added for one test leaves the shared one alone. */
function clientFor(dynamo: DynamoPeer): DynamoDBClient {
  return new DynamoDBClient({
    region: REGION,
    endpoint: dynamo.endpoint,
    credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
    maxAttempts: 1,
  });
}
