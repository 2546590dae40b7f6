import { type DynamoDBClient, GetItemCommand, PutItemCommand } from '@aws-sdk/client-dynamodb';
import type { ReportCursor, ReportCursorStore } from './bounce-reports.ts';

/** Key prefix of the cursor items; the reader's write permission is limited to it. */
export const REPORT_CURSOR_PREFIX = 'bounce-reports#';

/**
 * Where each mailbox's bounce report reading stopped, kept in the delivery ledger table (one item
 * per mailbox, key `bounce-reports#<mailbox>`, no expiry): a few items of relay state do not need a
 * table of their own, its encryption, backups and grants. The prefix cannot collide with a message
 * entry: those are an idempotency key the producer chose or `sqs:<message id>`, and status lookups
 * never list the table.
 */
export class DynamoReportCursors implements ReportCursorStore {
  constructor(
    private readonly client: DynamoDBClient,
    private readonly tableName: string,
  ) {}

  async get(mailbox: string): Promise<ReportCursor | undefined> {
    const { Item } = await this.client.send(
      new GetItemCommand({
        TableName: this.tableName,
        Key: { key: { S: keyOf(mailbox) } },
        ConsistentRead: true,
      }),
    );
    const receivedAt = Item?.receivedAt?.S;
    if (receivedAt === undefined) return undefined;
    return {
      receivedAt,
      seenIds: (Item?.seenIds?.L ?? []).flatMap((id) => (id.S === undefined ? [] : [id.S])),
    };
  }

  async put(mailbox: string, cursor: ReportCursor): Promise<void> {
    await this.client.send(
      new PutItemCommand({
        TableName: this.tableName,
        Item: {
          key: { S: keyOf(mailbox) },
          receivedAt: { S: cursor.receivedAt },
          seenIds: { L: cursor.seenIds.map((id) => ({ S: id })) },
          updatedAt: { S: new Date().toISOString() },
        },
      }),
    );
  }
}

/** Deleting this item makes the next run read the mailbox's look-back window again. */
function keyOf(mailbox: string): string {
  return `${REPORT_CURSOR_PREFIX}${mailbox.toLowerCase()}`;
}
