import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { startDynamoDbEmulator } from '../../local/emulators.ts';
import { createRelayTables } from '../../local/relay-tables.ts';
import { REGION } from './peers.ts';

/** The DynamoDB emulator (dynalite) on a free loopback port, with the relay's tables. */
export interface DynamoPeer {
  readonly client: DynamoDBClient;
  readonly endpoint: string;
  readonly ledgerTableName: string;
  readonly suppressionTableName: string;
  readonly pacingTableName: string;
  stop(): Promise<void>;
}

let tableCounter = 0;

export async function startDynamo(): Promise<DynamoPeer> {
  const emulator = await startDynamoDbEmulator(0);
  const client = new DynamoDBClient({
    region: REGION,
    endpoint: emulator.endpoint,
    credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
    maxAttempts: 1,
  });
  tableCounter += 1;
  const names = {
    ledgerTableName: `ledger-${tableCounter}`,
    suppressionTableName: `suppression-${tableCounter}`,
    pacingTableName: `pacing-${tableCounter}`,
  };
  await createRelayTables(client, names);
  return {
    client,
    endpoint: emulator.endpoint,
    ...names,
    async stop() {
      client.destroy();
      await emulator.stop();
    },
  };
}
