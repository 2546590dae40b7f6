import {
  CreateTableCommand,
  type DynamoDBClient,
  type KeySchemaElement,
  ResourceInUseException,
} from '@aws-sdk/client-dynamodb';

export interface RelayTableNames {
  readonly ledgerTableName: string;
  readonly suppressionTableName: string;
}

/** Creates the delivery ledger and suppression list tables as the stack does (keys, on demand). */
export async function createRelayTables(client: DynamoDBClient, names: RelayTableNames): Promise<void> {
  await createTable(client, names.ledgerTableName, 'key');
  await createTable(client, names.suppressionTableName, 'address');
}

async function createTable(client: DynamoDBClient, tableName: string, partitionKey: string): Promise<void> {
  const keySchema: KeySchemaElement[] = [{ AttributeName: partitionKey, KeyType: 'HASH' }];
  try {
    await client.send(
      new CreateTableCommand({
        TableName: tableName,
        BillingMode: 'PAY_PER_REQUEST',
        AttributeDefinitions: [{ AttributeName: partitionKey, AttributeType: 'S' }],
        KeySchema: keySchema,
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
