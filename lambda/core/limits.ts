/** Hard limits of the providers and AWS services the relay sits on (see docs/ or shared limits). */
export const SES_MAX_RECIPIENTS_PER_MESSAGE = 50;
/** Exchange Online (Graph, SMTP to Microsoft 365) takes up to 500 recipients per message. */
export const EXCHANGE_MAX_RECIPIENTS_PER_MESSAGE = 500;
/** SES v2 accepts up to 40 MB per message after MIME encoding. */
export const SES_MAX_MESSAGE_BYTES = 40 * 1024 * 1024;
/** Microsoft Graph accepts attachments up to 150 MB (through upload sessions). */
export const GRAPH_MAX_MESSAGE_BYTES = 150 * 1024 * 1024;
/**
 * Graph takes attachments inside a request only up to 3 MB (base64 makes that 4 MB, the request
 * cap); larger ones go through upload sessions.
 */
export const GRAPH_INLINE_ATTACHMENT_BYTES = 3_000_000;
/** Exchange Online: at most 4 concurrent requests per app per mailbox. */
export const GRAPH_MAX_CONCURRENT_REQUESTS_PER_MAILBOX = 4;
/** SQS lets a message stay invisible for at most 12 hours. */
export const SQS_MAX_VISIBILITY_TIMEOUT_SECONDS = 43_200;
/** SQS allows at most 10 message attributes per message. */
export const SQS_MAX_MESSAGE_ATTRIBUTES = 10;

export const DEFAULT_MAX_RECIPIENTS = SES_MAX_RECIPIENTS_PER_MESSAGE;
/** Inline content is capped by SQS anyway; larger messages carry attachments as S3 references. */
export const DEFAULT_MAX_MESSAGE_BYTES = SES_MAX_MESSAGE_BYTES;
/** Deliveries before SQS itself dead-letters a message: room for retries on a two-provider chain. */
export const DEFAULT_MAX_RECEIVE_COUNT = 10;
