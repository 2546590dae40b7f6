import {
  type AttributeValue,
  BatchGetItemCommand,
  ConditionalCheckFailedException,
  DeleteItemCommand,
  type DynamoDBClient,
  GetItemCommand,
  PutItemCommand,
  ScanCommand,
  UpdateItemCommand,
} from '@aws-sdk/client-dynamodb';
import { BOUNCE_CAUSES } from './feedback/feedback-event.ts';
import {
  diagnosticExcerpt,
  type SoftBounce,
  type SoftBounceCounter,
  type Suppression,
  type SuppressionCause,
  type SuppressionEvidence,
  type SuppressionList,
} from './suppression.ts';

/** BatchGetItem reads at most 100 keys per call. */
const BATCH_GET_MAX_KEYS = 100;
const UNPROCESSED_RETRIES = 4;

/**
 * The key prefix of an address's soft-bounce counter, kept in the suppression table: `:` cannot
 * appear unquoted in an address, so no recipient's lookup ever finds a counter. Counter items also
 * carry `kind = soft-bounces`, and reads skip them.
 */
export const SOFT_BOUNCE_KEY_PREFIX = 'soft-bounces:';
const SOFT_BOUNCE_KIND = 'soft-bounces';
const SOFT_BOUNCE_ATTEMPTS = 3;

const SUPPRESSION_CAUSES: ReadonlySet<string> = new Set<SuppressionCause>([
  ...BOUNCE_CAUSES,
  'complaint',
  'operator',
]);

/**
 * The suppression list in DynamoDB: one item per address (lower-cased), partition key `address`,
 * optional TTL attribute `expiresAt`, with its `reason`, `since`, and since causes are kept its
 * `cause` and `evidence` (a map: status, diagnostic, provider); older items without them still read.
 * Expired items are ignored here, as TTL deletes them lazily. The same table holds each address's
 * soft-bounce counter (key `soft-bounces:<address>`, expiring with its window).
 */
export class DynamoSuppressionList implements SuppressionList, SoftBounceCounter {
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
          if (isCounter(item)) continue;
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
    if (entry.cause !== undefined) item.cause = { S: entry.cause };
    const evidence = evidenceItem(entry.evidence);
    if (evidence) item.evidence = { M: evidence };
    await this.client.send(new PutItemCommand({ TableName: this.tableName, Item: item }));
  }

  /** Takes the address off the list, and forgets its soft bounces so counting starts afresh. */
  async remove(address: string): Promise<void> {
    const lower = address.toLowerCase();
    for (const key of [lower, `${SOFT_BOUNCE_KEY_PREFIX}${lower}`]) {
      await this.client.send(
        new DeleteItemCommand({ TableName: this.tableName, Key: { address: { S: key } } }),
      );
    }
  }

  /**
   * One conditional UpdateItem per soft bounce in the common case: it opens the window at the first
   * bounce (firstAt, expiresAt = now + windowDays, which is also the item's TTL) and adds one, unless
   * the window is over or the message was counted already. Then a consistent read tells which: a
   * message counted already returns the count as it is; an expired window is replaced by a new one
   * (conditionally, so two bounces at once do not both start it).
   */
  async countSoftBounce(address: string, bounce: SoftBounce, windowDays: number): Promise<number> {
    const key = { address: { S: `${SOFT_BOUNCE_KEY_PREFIX}${address.toLowerCase()}` } };
    const names = {
      '#address': 'address',
      '#kind': 'kind',
      '#bounces': 'bounces',
      '#firstAt': 'firstAt',
      '#expiresAt': 'expiresAt',
      ...(bounce.messageId !== undefined && { '#messages': 'messages' }),
    };
    for (let attempt = 0; attempt < SOFT_BOUNCE_ATTEMPTS; attempt += 1) {
      const nowSeconds = Math.floor(this.now() / 1000);
      const end = { N: String(nowSeconds + windowDays * 86_400) };
      try {
        const updated = await this.client.send(
          new UpdateItemCommand({
            TableName: this.tableName,
            Key: key,
            UpdateExpression: `SET #kind = :kind, #firstAt = if_not_exists(#firstAt, :at), #expiresAt = if_not_exists(#expiresAt, :end) ADD #bounces :one${bounce.messageId !== undefined ? ', #messages :ids' : ''}`,
            ConditionExpression: `(attribute_not_exists(#address) OR #expiresAt > :now)${bounce.messageId !== undefined ? ' AND NOT contains(#messages, :id)' : ''}`,
            ExpressionAttributeNames: names,
            ExpressionAttributeValues: {
              ':kind': { S: SOFT_BOUNCE_KIND },
              ':at': { S: bounce.at },
              ':end': end,
              ':one': { N: '1' },
              ':now': { N: String(nowSeconds) },
              ...(bounce.messageId !== undefined && {
                ':ids': { SS: [bounce.messageId] },
                ':id': { S: bounce.messageId },
              }),
            },
            ReturnValues: 'UPDATED_NEW',
          }),
        );
        return Number(updated.Attributes?.bounces?.N ?? 1);
      } catch (error) {
        if (!(error instanceof ConditionalCheckFailedException)) throw error;
      }
      const current = (
        await this.client.send(
          new GetItemCommand({ TableName: this.tableName, Key: key, ConsistentRead: true }),
        )
      ).Item;
      if (current && Number(current.expiresAt?.N ?? 0) > nowSeconds) {
        // Counted already (a retried batch): the count as it is. Otherwise a new window just opened.
        if (bounce.messageId !== undefined && current.messages?.SS?.includes(bounce.messageId)) {
          return Number(current.bounces?.N ?? 1);
        }
        continue;
      }
      try {
        await this.client.send(
          new PutItemCommand({
            TableName: this.tableName,
            Item: {
              ...key,
              kind: { S: SOFT_BOUNCE_KIND },
              bounces: { N: '1' },
              firstAt: { S: bounce.at },
              expiresAt: end,
              ...(bounce.messageId !== undefined && { messages: { SS: [bounce.messageId] } }),
            },
            ConditionExpression: 'attribute_not_exists(#address) OR #expiresAt <= :now',
            ExpressionAttributeNames: { '#address': 'address', '#expiresAt': 'expiresAt' },
            ExpressionAttributeValues: { ':now': { N: String(nowSeconds) } },
          }),
        );
        return 1;
      } catch (error) {
        if (!(error instanceof ConditionalCheckFailedException)) throw error;
      }
    }
    throw new Error(`could not count a soft bounce of ${address.toLowerCase()}: its counter kept changing`);
  }

  async list(): Promise<Suppression[]> {
    const entries: Suppression[] = [];
    let startKey: Record<string, AttributeValue> | undefined;
    do {
      const page = await this.client.send(
        new ScanCommand({ TableName: this.tableName, ...(startKey && { ExclusiveStartKey: startKey }) }),
      );
      entries.push(
        ...(page.Items ?? [])
          .filter((item) => !isCounter(item))
          .map(fromItem)
          .filter((entry) => this.isLive(entry)),
      );
      startKey = page.LastEvaluatedKey;
    } while (startKey);
    return entries.sort((a, b) => a.address.localeCompare(b.address));
  }

  private isLive(entry: Suppression): boolean {
    return entry.expiresAt === undefined || entry.expiresAt * 1000 >= this.now();
  }
}

function isCounter(item: Record<string, AttributeValue>): boolean {
  return item.kind?.S === SOFT_BOUNCE_KIND || (item.address?.S ?? '').startsWith(SOFT_BOUNCE_KEY_PREFIX);
}

function evidenceItem(evidence: SuppressionEvidence | undefined): Record<string, AttributeValue> | undefined {
  if (!evidence) return undefined;
  const fields: Record<string, AttributeValue> = {};
  if (evidence.status) fields.status = { S: evidence.status };
  if (evidence.diagnostic) fields.diagnostic = { S: diagnosticExcerpt(evidence.diagnostic) };
  if (evidence.provider) fields.provider = { S: evidence.provider };
  return Object.keys(fields).length > 0 ? fields : undefined;
}

/** Reads entries of every age: those written before causes were kept have only reason, since, expiresAt. */
function fromItem(item: Record<string, AttributeValue>): Suppression {
  const expiresAt = item.expiresAt?.N;
  const cause = item.cause?.S;
  const stored = item.evidence?.M;
  const evidence: { status?: string; diagnostic?: string; provider?: string } = {
    ...(stored?.status?.S && { status: stored.status.S }),
    ...(stored?.diagnostic?.S && { diagnostic: stored.diagnostic.S }),
    ...(stored?.provider?.S && { provider: stored.provider.S }),
  };
  return {
    address: item.address?.S ?? '',
    reason: item.reason?.S ?? '',
    since: item.since?.S ?? '',
    ...(expiresAt !== undefined && { expiresAt: Number(expiresAt) }),
    // A cause this version does not know (written by a newer one) is left out rather than misread.
    ...(cause !== undefined && SUPPRESSION_CAUSES.has(cause) && { cause: cause as SuppressionCause }),
    ...(Object.keys(evidence).length > 0 && { evidence }),
  };
}
