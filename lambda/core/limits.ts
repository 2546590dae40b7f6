/** Hard limits of the providers and AWS services the relay sits on (see docs/ or shared limits). */
export const SES_MAX_RECIPIENTS_PER_MESSAGE = 50;
/** SES v2 accepts up to 40 MB per message after MIME encoding. */
export const SES_MAX_MESSAGE_BYTES = 40 * 1024 * 1024;
/** An SQS message body is capped at 1 MiB; base64 attachments inside it decode to ~75% of that. */
export const SQS_MAX_MESSAGE_BYTES = 1024 * 1024;
/** SQS allows at most 10 message attributes per message. */
export const SQS_MAX_MESSAGE_ATTRIBUTES = 10;

export const DEFAULT_MAX_RECIPIENTS = SES_MAX_RECIPIENTS_PER_MESSAGE;
export const DEFAULT_MAX_MESSAGE_BYTES = SQS_MAX_MESSAGE_BYTES;
export const DEFAULT_MAX_RECEIVE_COUNT = 5;
