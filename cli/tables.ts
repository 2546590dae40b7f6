import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { LOCAL_REGION } from '../local/local-names.ts';
import { localDynamoDbEndpoint } from './local-endpoints.ts';

export interface TableOptions {
  /** A table of a deployed stack (a stack output); default: local mode's table. */
  readonly table?: string;
  readonly endpoint?: string;
  readonly region?: string;
  /** Where to look for a running local mode's endpoints file (--state-dir); default: MAIL_RELAY_STATE_DIR or .local. */
  readonly stateDir?: string;
}

/**
 * A DynamoDB client for local mode's emulator (no table given) or for AWS (a table given, with the
 * standard credential chain unless the endpoint is a local emulator).
 */
export function tableClient(options: TableOptions): DynamoDBClient {
  const local = options.table === undefined;
  // Local mode: MAIL_RELAY_DYNAMODB_PORT, else the port the running local mode wrote down, else the default.
  const endpoint = options.endpoint ?? (local ? localDynamoDbEndpoint(options.stateDir) : undefined);
  const isLocal = endpoint !== undefined && ['127.0.0.1', 'localhost'].includes(new URL(endpoint).hostname);
  const region = options.region ?? (isLocal ? LOCAL_REGION : undefined);
  return new DynamoDBClient({
    ...(region && { region }),
    ...(endpoint && { endpoint }),
    // Emulators accept any credentials; never pick up a real profile for a local table.
    ...(isLocal && { credentials: { accessKeyId: 'local', secretAccessKey: 'local' } }),
  });
}
