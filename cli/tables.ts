import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DEFAULT_DYNAMODB_PORT, LOCAL_REGION } from '../local/local-names.ts';

export interface TableOptions {
  /** A table of a deployed stack (a stack output); default: local mode's table. */
  readonly table?: string;
  readonly endpoint?: string;
  readonly region?: string;
}

/**
 * A DynamoDB client for local mode's emulator (no table given) or for AWS (a table given, with the
 * standard credential chain unless the endpoint is a local emulator).
 */
export function tableClient(options: TableOptions): DynamoDBClient {
  const local = options.table === undefined;
  const port = process.env.MAIL_RELAY_DYNAMODB_PORT ?? String(DEFAULT_DYNAMODB_PORT);
  const endpoint = options.endpoint ?? (local ? `http://127.0.0.1:${port}` : undefined);
  const isLocal = endpoint !== undefined && ['127.0.0.1', 'localhost'].includes(new URL(endpoint).hostname);
  const region = options.region ?? (isLocal ? LOCAL_REGION : undefined);
  return new DynamoDBClient({
    ...(region && { region }),
    ...(endpoint && { endpoint }),
    // Emulators accept any credentials; never pick up a real profile for a local table.
    ...(isLocal && { credentials: { accessKeyId: 'local', secretAccessKey: 'local' } }),
  });
}
