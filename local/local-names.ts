/**
 * The names and default ports of local mode, in a module of their own: the CLI's other commands
 * (send, status, suppression, dlq) reach local mode's queues and tables without loading it.
 */
export const LOCAL_REGION = 'us-east-1';
export const OUTBOX_QUEUE_NAME = 'mail-relay-outbox';
export const DEAD_LETTER_QUEUE_NAME = 'mail-relay-dlq';
export const DEFAULT_SQS_PORT = 4566;
export const DEFAULT_SES_PORT = 8005;
export const DEFAULT_GRAPH_PEER_PORT = 8443;
export const ATTACHMENT_BUCKET_NAME = 'mail-relay-attachments';
export const DEFAULT_SMTP_PORT = 1025;
/** Local mode's SMTP submission listener (the deployed relay's Mail Manager ingress endpoint). */
export const DEFAULT_SMTP_INGRESS_PORT = 2587;
export const INGRESS_BUCKET_NAME = 'mail-relay-ingress';
/** Where a submission the ingest function refuses goes (local mode refuses during the SMTP session instead). */
export const INGEST_DEAD_LETTER_QUEUE_NAME = 'mail-relay-ingest-dlq';
export const DEFAULT_DYNAMODB_PORT = 4569;
export const LEDGER_TABLE_NAME = 'mail-relay-ledger';
export const SUPPRESSION_TABLE_NAME = 'mail-relay-suppression';
export const PACING_TABLE_NAME = 'mail-relay-pacing';
/** Locally a failed message comes back after this long instead of 6 x the function timeout. */
export const DEFAULT_LOCAL_VISIBILITY_TIMEOUT_SECONDS = 10;
