import {
  type AttributeValue,
  BatchGetItemCommand,
  type BatchGetItemCommandOutput,
  ConditionalCheckFailedException,
  type DynamoDBClient,
  GetItemCommand,
  PutItemCommand,
  type PutItemCommandInput,
  QueryCommand,
  UpdateItemCommand,
} from '@aws-sdk/client-dynamodb';
import {
  DELIVERY_STATES,
  type DeliveryLedger,
  type DeliveryRecord,
  type DeliveryState,
  type FeedbackNote,
  type FeedbackNotes,
} from './ledger.ts';

const BATCH_GET_LIMIT = 100;
/** Rounds of unprocessed keys read again before the batch read gives up (each record then reads alone). */
const BATCH_GET_ROUNDS = 3;

/** Global secondary index on `messageId` (keys only), for looking a message up by its SQS message id. */
export const MESSAGE_ID_INDEX = 'messageId';

/**
 * The delivery ledger in DynamoDB: one item per message, partition key `key`, TTL attribute
 * `expiresAt`. Reads are strongly consistent and writes conditional on the version read, so two
 * functions never both claim a message. TTL deletes lazily, so expired items are filtered here too.
 */
export class DynamoDeliveryLedger implements DeliveryLedger, FeedbackNotes {
  constructor(
    private readonly client: DynamoDBClient,
    private readonly tableName: string,
    private readonly now: () => number = Date.now,
  ) {}

  async get(key: string, signal?: AbortSignal): Promise<DeliveryRecord | undefined> {
    const { Item } = await this.client.send(
      new GetItemCommand({ TableName: this.tableName, Key: { key: { S: key } }, ConsistentRead: true }),
      { ...(signal && { abortSignal: signal }) },
    );
    if (!Item) return undefined;
    const record = fromItem(Item);
    return record.expiresAt * 1000 < this.now() ? undefined : record;
  }

  async getMany(keys: readonly string[], signal?: AbortSignal): Promise<Map<string, DeliveryRecord>> {
    const found = new Map<string, DeliveryRecord>();
    // BatchGetItem takes 100 keys a request; DynamoDB may leave some unprocessed under load.
    for (let start = 0; start < keys.length; start += BATCH_GET_LIMIT) {
      let pending: Record<string, AttributeValue>[] | undefined = keys
        .slice(start, start + BATCH_GET_LIMIT)
        .map((key) => ({ key: { S: key } }));
      for (let round = 0; pending && pending.length > 0; round += 1) {
        if (round >= BATCH_GET_ROUNDS) throw new Error(`DynamoDB left ${pending.length} ledger keys unread`);
        const output: BatchGetItemCommandOutput = await this.client.send(
          new BatchGetItemCommand({
            RequestItems: { [this.tableName]: { Keys: pending, ConsistentRead: true } },
          }),
          { ...(signal && { abortSignal: signal }) },
        );
        for (const item of output.Responses?.[this.tableName] ?? []) {
          const record = fromItem(item);
          if (record.expiresAt * 1000 >= this.now()) found.set(record.key, record);
        }
        pending = output.UnprocessedKeys?.[this.tableName]?.Keys;
      }
    }
    return found;
  }

  /** The entry whose latest delivery had this SQS message id (eventually consistent, for status queries). */
  async findByMessageId(messageId: string): Promise<DeliveryRecord | undefined> {
    const { Items } = await this.client.send(
      new QueryCommand({
        TableName: this.tableName,
        IndexName: MESSAGE_ID_INDEX,
        KeyConditionExpression: '#messageId = :messageId',
        ExpressionAttributeNames: { '#messageId': 'messageId' },
        ExpressionAttributeValues: { ':messageId': { S: messageId } },
        Limit: 1,
      }),
    );
    const key = Items?.[0]?.key?.S;
    return key === undefined ? undefined : this.get(key);
  }

  async put(
    record: DeliveryRecord,
    expectedVersion: number | undefined,
    signal?: AbortSignal,
  ): Promise<boolean> {
    const condition: Pick<
      PutItemCommandInput,
      'ConditionExpression' | 'ExpressionAttributeNames' | 'ExpressionAttributeValues'
    > =
      expectedVersion === undefined
        ? {
            ConditionExpression: 'attribute_not_exists(#key) OR #expiresAt < :now',
            ExpressionAttributeNames: { '#key': 'key', '#expiresAt': 'expiresAt' },
            // Rounded up: an entry `get` calls expired (expiresAt < now in seconds) is also replaceable.
            ExpressionAttributeValues: { ':now': { N: String(Math.ceil(this.now() / 1000)) } },
          }
        : {
            ConditionExpression: '#version = :expected',
            ExpressionAttributeNames: { '#version': 'version' },
            ExpressionAttributeValues: { ':expected': { N: String(expectedVersion) } },
          };
    return conditionally(() =>
      this.client.send(
        new PutItemCommand({ TableName: this.tableName, Item: toItem(record), ...condition }),
        {
          ...(signal && { abortSignal: signal }),
        },
      ),
    );
  }

  /** One UpdateItem appending to the list, so it never races the send function's versioned writes. */
  async noteFeedback(key: string, note: FeedbackNote): Promise<boolean> {
    return conditionally(() =>
      this.client.send(
        new UpdateItemCommand({
          TableName: this.tableName,
          Key: { key: { S: key } },
          UpdateExpression: 'SET #feedback = list_append(if_not_exists(#feedback, :empty), :note)',
          ConditionExpression: 'attribute_exists(#key)',
          ExpressionAttributeNames: { '#feedback': 'feedback', '#key': 'key' },
          ExpressionAttributeValues: { ':empty': { L: [] }, ':note': { L: [{ S: JSON.stringify(note) }] } },
        }),
      ),
    );
  }
}

/** Runs a conditional write: false when its condition failed, the error for anything else. */
async function conditionally(write: () => Promise<unknown>): Promise<boolean> {
  try {
    await write();
    return true;
  } catch (error) {
    if (error instanceof ConditionalCheckFailedException) return false;
    if ((error as { name?: string }).name === 'ConditionalCheckFailedException') return false;
    throw error;
  }
}

const STRING_FIELDS = [
  'key',
  'state',
  'messageId',
  'bodyHash',
  'route',
  'provider',
  'providerMessageId',
  'handedOffTo',
  'handedOffAt',
  'internetMessageId',
  'createdAt',
  'updatedAt',
  'sentAt',
] as const;
const NUMBER_FIELDS = ['version', 'providerIndex', 'attempts', 'leaseUntil', 'expiresAt'] as const;
/** Lists kept as JSON strings: small, read whole, and never queried. */
const JSON_FIELDS = ['failures', 'fallbackFrom', 'suppressedRecipients', 'maybeSent', 'release'] as const;

function toItem(record: DeliveryRecord): Record<string, AttributeValue> {
  const item: Record<string, AttributeValue> = {};
  for (const field of STRING_FIELDS) {
    const value = record[field];
    if (value !== undefined) item[field] = { S: value };
  }
  for (const field of NUMBER_FIELDS) {
    const value = record[field];
    if (value !== undefined) item[field] = { N: String(value) };
  }
  for (const field of JSON_FIELDS) {
    const value = record[field];
    if (value !== undefined) item[field] = { S: JSON.stringify(value) };
  }
  // A list of JSON strings, so noteFeedback can append with list_append.
  if (record.feedback !== undefined)
    item.feedback = { L: record.feedback.map((note) => ({ S: JSON.stringify(note) })) };
  return item;
}

function fromItem(item: Record<string, AttributeValue>): DeliveryRecord {
  const text = (name: string) => item[name]?.S;
  const number = (name: string) => (item[name]?.N === undefined ? undefined : Number(item[name]?.N));
  const json = (name: string) => (item[name]?.S === undefined ? undefined : JSON.parse(item[name]?.S ?? ''));
  const state = text('state');
  if (!(DELIVERY_STATES as readonly (string | undefined)[]).includes(state)) {
    throw new Error(`delivery ledger item ${text('key')} has an unknown state`);
  }
  const optional = {
    route: text('route'),
    provider: text('provider'),
    providerMessageId: text('providerMessageId'),
    handedOffTo: text('handedOffTo'),
    handedOffAt: text('handedOffAt'),
    internetMessageId: text('internetMessageId'),
    sentAt: text('sentAt'),
    leaseUntil: number('leaseUntil'),
    fallbackFrom: json('fallbackFrom'),
    suppressedRecipients: json('suppressedRecipients'),
    maybeSent: json('maybeSent'),
    release: json('release'),
    feedback: item.feedback?.L?.map((note) => JSON.parse(note.S ?? '{}') as FeedbackNote),
  };
  return {
    key: text('key') ?? '',
    state: state as DeliveryState,
    version: number('version') ?? 0,
    messageId: text('messageId') ?? '',
    bodyHash: text('bodyHash') ?? '',
    providerIndex: number('providerIndex') ?? 0,
    attempts: number('attempts') ?? 0,
    failures: json('failures') ?? [],
    createdAt: text('createdAt') ?? '',
    updatedAt: text('updatedAt') ?? '',
    expiresAt: number('expiresAt') ?? 0,
    ...Object.fromEntries(Object.entries(optional).filter(([, value]) => value !== undefined)),
  };
}
