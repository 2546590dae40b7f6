import { BatchGetItemCommand, DynamoDBClient, ScanCommand } from '@aws-sdk/client-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DynamoSuppressionList } from '../../../lambda/core/dynamo-suppression.ts';
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

/** A client of its own, so middleware added for one test leaves the shared one alone. */
function clientFor(dynamo: DynamoPeer): DynamoDBClient {
  return new DynamoDBClient({
    region: REGION,
    endpoint: dynamo.endpoint,
    credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
    maxAttempts: 1,
  });
}
