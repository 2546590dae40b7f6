import {
  type AttributeValue,
  BatchGetItemCommand,
  DeleteItemCommand,
  type DynamoDBClient,
  PutItemCommand,
  ScanCommand,
} from '@aws-sdk/client-dynamodb';
import type { Suppression, SuppressionList } from './suppression.ts';

/** BatchGetItem reads at most 100 keys per call. */
const BATCH_GET_MAX_KEYS = 100;
const UNPROCESSED_RETRIES = 4;

/**
 * The suppression list in DynamoDB: one item per address (lower-cased), partition key `address`,
 * optional TTL attribute `expiresAt`. Expired items are ignored here, as TTL deletes them lazily.
 */
export class DynamoSuppressionList implements SuppressionList {
  constructor(
    private readonly client: DynamoDBClient,
    private readonly tableName: string,
    private readonly now: () => number = Date.now,
  ) {}

  async find(addresses: readonly string[], signal?: AbortSignal): Promise<Map<string, Suppression>> {
    const unique = [...new Set(addresses.map((address) => address.toLowerCase()))];
    const found = new Map<string, Suppression>();
    for (let start = 0; start < unique.length; start += BATCH_GET_MAX_KEYS) {
      let keys: Record<string, AttributeValue>[] = unique
        .slice(start, start + BATCH_GET_MAX_KEYS)
        .map((address) => ({ address: { S: address } }));
      for (let round = 0; keys.length > 0; round += 1) {
        if (round > UNPROCESSED_RETRIES) {
          throw new Error(`the suppression list did not answer for ${keys.length} addresses (throttled)`);
        }
        if (round > 0) await new Promise((resolve) => setTimeout(resolve, 50 * 2 ** round));
        const response = await this.client.send(
          new BatchGetItemCommand({ RequestItems: { [this.tableName]: { Keys: keys } } }),
          { ...(signal && { abortSignal: signal }) },
        );
        for (const item of response.Responses?.[this.tableName] ?? []) {
          const entry = fromItem(item);
          if (this.isLive(entry)) found.set(entry.address, entry);
        }
        keys = response.UnprocessedKeys?.[this.tableName]?.Keys ?? [];
      }
    }
    return found;
  }

  async suppress(entry: Suppression): Promise<void> {
    const item: Record<string, AttributeValue> = {
      address: { S: entry.address.toLowerCase() },
      reason: { S: entry.reason },
      since: { S: entry.since },
    };
    if (entry.expiresAt !== undefined) item.expiresAt = { N: String(entry.expiresAt) };
    await this.client.send(new PutItemCommand({ TableName: this.tableName, Item: item }));
  }

  async remove(address: string): Promise<void> {
    await this.client.send(
      new DeleteItemCommand({ TableName: this.tableName, Key: { address: { S: address.toLowerCase() } } }),
    );
  }

  async list(): Promise<Suppression[]> {
    const entries: Suppression[] = [];
    let startKey: Record<string, AttributeValue> | undefined;
    do {
      const page = await this.client.send(
        new ScanCommand({ TableName: this.tableName, ...(startKey && { ExclusiveStartKey: startKey }) }),
      );
      entries.push(...(page.Items ?? []).map(fromItem).filter((entry) => this.isLive(entry)));
      startKey = page.LastEvaluatedKey;
    } while (startKey);
    return entries.sort((a, b) => a.address.localeCompare(b.address));
  }

  private isLive(entry: Suppression): boolean {
    return entry.expiresAt === undefined || entry.expiresAt * 1000 >= this.now();
  }
}

function fromItem(item: Record<string, AttributeValue>): Suppression {
  const expiresAt = item.expiresAt?.N;
  return {
    address: item.address?.S ?? '',
    reason: item.reason?.S ?? '',
    since: item.since?.S ?? '',
    ...(expiresAt !== undefined && { expiresAt: Number(expiresAt) }),
  };
}
