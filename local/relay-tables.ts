import {
  CreateTableCommand,
  type DynamoDBClient,
  type KeySchemaElement,
  ResourceInUseException,
} from '@aws-sdk/client-dynamodb';
import { MESSAGE_ID_INDEX } from '../lambda/core/dynamo-ledger.ts';

export interface RelayTableNames {
  readonly ledgerTableName: string;
  readonly suppressionTableName: string;
  /** The pacing table, when the relay paces its sends. */
  readonly pacingTableName?: string;
}

/** Creates the delivery ledger, suppression list (and pacing) tables as the stack does (keys, on demand). */
export async function createRelayTables(client: DynamoDBClient, names: RelayTableNames): Promise<void> {
  await createTable(client, names.ledgerTableName, 'key', MESSAGE_ID_INDEX);
  await createTable(client, names.suppressionTableName, 'address');
  if (names.pacingTableName !== undefined) await createTable(client, names.pacingTableName, 'key');
}

async function createTable(
  client: DynamoDBClient,
  tableName: string,
  partitionKey: string,
  keysOnlyIndexOn?: string,
): Promise<void> {
  const hashKey = (name: string): KeySchemaElement[] => [{ AttributeName: name, KeyType: 'HASH' }];
  try {
    await client.send(
      new CreateTableCommand({
        TableName: tableName,
        BillingMode: 'PAY_PER_REQUEST',
        AttributeDefinitions: [partitionKey, ...(keysOnlyIndexOn ? [keysOnlyIndexOn] : [])].map((name) => ({
          AttributeName: name,
          AttributeType: 'S',
        })),
        KeySchema: hashKey(partitionKey),
        ...(keysOnlyIndexOn && {
          GlobalSecondaryIndexes: [
            {
              IndexName: keysOnlyIndexOn,
              KeySchema: hashKey(keysOnlyIndexOn),
              Projection: { ProjectionType: 'KEYS_ONLY' },
            },
          ],
        }),
      }),
    );
  } catch (error) {
    // Already there (a restarted local mode against a kept emulator): nothing to do.
    if (
      !(error instanceof ResourceInUseException) &&
      (error as { name?: string }).name !== 'ResourceInUseException'
    ) {
      throw error;
    }
  }
}
