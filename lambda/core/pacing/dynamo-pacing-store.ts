import {
  type AttributeValue,
  ConditionalCheckFailedException,
  DeleteItemCommand,
  type DynamoDBClient,
  GetItemCommand,
  PutItemCommand,
  UpdateItemCommand,
} from '@aws-sdk/client-dynamodb';
import type { PacingStore } from './pacing-store.ts';

/** A schedule's item outlives its last reservation by an hour, then TTL removes it. */
const SCHEDULE_RETENTION_SECONDS = 3600;

/**
 * The pacing state in DynamoDB: partition key `key`, TTL attribute `expiresAt` (seconds). A schedule
 * holds `at` (ms: when its capacity is free), a counter `total`, a lease `holder` and `leaseUntil`.
 * Every change is one conditional write, which DynamoDB applies one at a time per item.
 */
export class DynamoPacingStore implements PacingStore {
  constructor(
    private readonly client: DynamoDBClient,
    private readonly tableName: string,
  ) {}

  async reserve(key: string, costMs: number, now: number, latestStart: number, signal?: AbortSignal) {
    const expiresAt = (at: number) => ({ N: String(Math.ceil(at / 1000) + SCHEDULE_RETENTION_SECONDS) });
    // Free now: the reservation starts now.
    const immediate = await this.update(
      {
        Key: { key: { S: key } },
        UpdateExpression: 'SET #at = :end, expiresAt = :expires',
        ConditionExpression: 'attribute_not_exists(#at) OR #at <= :now',
        ExpressionAttributeNames: { '#at': 'at' },
        ExpressionAttributeValues: {
          ':end': { N: String(now + costMs) },
          ':now': { N: String(now) },
          ':expires': expiresAt(now + costMs),
        },
      },
      signal,
    );
    if (immediate) return { reserved: true as const, start: now };
    // Busy: queue behind the reservations already made, if the turn comes soon enough.
    const queued = await this.update(
      {
        Key: { key: { S: key } },
        UpdateExpression: 'ADD #at :cost SET expiresAt = :expires',
        ConditionExpression: '#at <= :latest',
        ExpressionAttributeNames: { '#at': 'at' },
        ExpressionAttributeValues: {
          ':cost': { N: String(costMs) },
          ':latest': { N: String(latestStart) },
          ':expires': expiresAt(latestStart + costMs),
        },
        ReturnValues: 'UPDATED_NEW',
      },
      signal,
    );
    if (queued) {
      const end = Number(queued.at?.N ?? now + costMs);
      return { reserved: true as const, start: Math.max(end - costMs, now) };
    }
    const item = await this.get(key, signal);
    return { reserved: false as const, freeAt: Math.max(Number(item?.at?.N ?? now), now) };
  }

  async pushBack(key: string, until: number, signal?: AbortSignal): Promise<void> {
    await this.update(
      {
        Key: { key: { S: key } },
        UpdateExpression: 'SET #at = :until, expiresAt = :expires',
        ConditionExpression: 'attribute_not_exists(#at) OR #at < :until',
        ExpressionAttributeNames: { '#at': 'at' },
        ExpressionAttributeValues: {
          ':until': { N: String(until) },
          ':expires': { N: String(Math.ceil(until / 1000) + SCHEDULE_RETENTION_SECONDS) },
        },
      },
      signal,
    );
  }

  async add(key: string, amount: number, limit: number, expiresAt: number, signal?: AbortSignal) {
    const added = await this.update(
      {
        Key: { key: { S: key } },
        UpdateExpression: 'ADD #total :amount SET expiresAt = :expires',
        ConditionExpression: 'attribute_not_exists(#total) OR #total <= :room',
        ExpressionAttributeNames: { '#total': 'total' },
        ExpressionAttributeValues: {
          ':amount': { N: String(amount) },
          ':room': { N: String(limit - amount) },
          ':expires': { N: String(expiresAt) },
        },
        ReturnValues: 'UPDATED_NEW',
      },
      signal,
    );
    if (added) return { added: true, total: Number(added.total?.N ?? amount) };
    const item = await this.get(key, signal);
    return { added: false, total: Number(item?.total?.N ?? limit) };
  }

  async subtract(key: string, amount: number, signal?: AbortSignal): Promise<void> {
    await this.update(
      {
        Key: { key: { S: key } },
        UpdateExpression: 'ADD #total :amount',
        ConditionExpression: 'attribute_exists(#total)',
        ExpressionAttributeNames: { '#total': 'total' },
        ExpressionAttributeValues: { ':amount': { N: String(-amount) } },
      },
      signal,
    );
  }

  async lease(
    key: string,
    slots: number,
    holder: string,
    now: number,
    leaseUntil: number,
    signal?: AbortSignal,
  ): Promise<number | undefined> {
    // From a random slot, so functions do not all queue on slot 0.
    const first = Math.floor(Math.random() * slots);
    for (let offset = 0; offset < slots; offset += 1) {
      const slot = (first + offset) % slots;
      try {
        await this.client.send(
          new PutItemCommand({
            TableName: this.tableName,
            Item: {
              key: { S: `${key}|${slot}` },
              holder: { S: holder },
              leaseUntil: { N: String(leaseUntil) },
              expiresAt: { N: String(Math.ceil(leaseUntil / 1000) + SCHEDULE_RETENTION_SECONDS) },
            },
            ConditionExpression: 'attribute_not_exists(#key) OR leaseUntil < :now',
            ExpressionAttributeNames: { '#key': 'key' },
            ExpressionAttributeValues: { ':now': { N: String(now) } },
          }),
          { ...(signal && { abortSignal: signal }) },
        );
        return slot;
      } catch (error) {
        if (!conditionFailed(error)) throw error;
      }
    }
    return undefined;
  }

  async unlease(key: string, slot: number, holder: string): Promise<void> {
    try {
      await this.client.send(
        new DeleteItemCommand({
          TableName: this.tableName,
          Key: { key: { S: `${key}|${slot}` } },
          ConditionExpression: 'holder = :holder',
          ExpressionAttributeValues: { ':holder': { S: holder } },
        }),
      );
    } catch (error) {
      // Expired and taken by another function meanwhile: it is theirs now.
      if (!conditionFailed(error)) throw error;
    }
  }

  /** Reads an item (the slow path only: after a refused write). */
  async get(key: string, signal?: AbortSignal): Promise<Record<string, AttributeValue> | undefined> {
    const output = await this.client.send(
      new GetItemCommand({ TableName: this.tableName, Key: { key: { S: key } }, ConsistentRead: true }),
      { ...(signal && { abortSignal: signal }) },
    );
    return output.Item;
  }

  /** A conditional update: the new values when it applied, undefined when its condition failed. */
  private async update(
    input: Omit<ConstructorParameters<typeof UpdateItemCommand>[0], 'TableName'>,
    signal?: AbortSignal,
  ): Promise<Record<string, AttributeValue> | undefined> {
    try {
      const output = await this.client.send(new UpdateItemCommand({ TableName: this.tableName, ...input }), {
        ...(signal && { abortSignal: signal }),
      });
      return output.Attributes ?? {};
    } catch (error) {
      if (conditionFailed(error)) return undefined;
      throw error;
    }
  }
}

/** A conditional write that did not apply (the SDK's class, or the name alone from an emulator's error). */
function conditionFailed(error: unknown): boolean {
  return (
    error instanceof ConditionalCheckFailedException ||
    (error as { name?: string }).name === 'ConditionalCheckFailedException'
  );
}
