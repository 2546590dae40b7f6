import type { SQSRecord } from 'aws-lambda';
import type { MailProvider, SendReceipt } from '../providers/provider.ts';
import { type AttachmentStore, resolveAttachments } from './attachments.ts';
import type { DeadLetterSink } from './dead-letter.ts';
import { type FailureClass, RelayFailure, toRelayFailure } from './failures.ts';
import { createMessageSchema, parseMessage, type RelayMessage, recipientsOf } from './message.ts';
import type { RecordDelay } from './record-delay.ts';
import type { RelaySettings } from './settings.ts';

/** The slice of a structured logger the core needs (Powertools Logger fits). */
export interface RelayLogger {
  info(message: string, attributes: Record<string, unknown>): void;
  warn(message: string, attributes: Record<string, unknown>): void;
}

export interface RelayDependencies {
  readonly providers: readonly MailProvider[];
  readonly deadLetters: DeadLetterSink;
  readonly settings: Pick<RelaySettings, 'limits' | 'maxReceiveCount' | 'attachments'>;
  readonly logger: RelayLogger;
  /** Reads S3-referenced attachments; needed when settings.attachments is set. */
  readonly attachmentStore?: AttachmentStore;
  /** Delays a record's retry when the provider asked for it (Retry-After). */
  readonly recordDelay?: RecordDelay;
}

export type RecordOutcome =
  | { readonly outcome: 'sent'; readonly receipt: SendReceipt }
  | { readonly outcome: 'dead-lettered'; readonly failure: RelayFailure };

export interface Relay {
  /**
   * Resolves when the record is finished (sent, or safely in the DLQ) and may be deleted;
   * throws a RelayFailure when it must be retried (the batch reports it as a failed item).
   */
  processRecord(record: SQSRecord): Promise<RecordOutcome>;
}

export function createRelay({
  providers,
  deadLetters,
  settings,
  logger,
  attachmentStore,
  recordDelay,
}: RelayDependencies): Relay {
  const schema = createMessageSchema(settings.limits);

  const send = async (message: RelayMessage): Promise<SendReceipt> => {
    const provider = providers.find((candidate) => candidate.canSendAs(message.from.address));
    if (!provider) {
      throw new RelayFailure({
        failureClass: 'permanent',
        code: 'SenderNotConfigured',
        reason: `from: ${message.from.address} is not covered by any configured sender`,
        hint: 'Add the address or its domain to graph.senders or ses.identities (verified in SES) in the relay configuration.',
      });
    }
    // Only once a provider will take it: S3 attachments can be large.
    const outbound = await resolveAttachments(message, {
      maxMessageBytes: settings.limits.maxMessageBytes,
      ...(settings.attachments && { settings: settings.attachments }),
      ...(attachmentStore && { store: attachmentStore }),
    });
    return provider.send(outbound);
  };

  return {
    async processRecord(record) {
      const attempt = Number(record.attributes.ApproximateReceiveCount) || 1;
      // Ids, counts, tags and failure reasons only: bodies, subjects and attachments never reach the logs.
      const keys: Record<string, unknown> = { messageId: record.messageId, attempt };
      try {
        const parsed = parseMessage(record.body, schema);
        if (!parsed.ok) {
          throw new RelayFailure({
            failureClass: 'permanent',
            code: 'InvalidMessage',
            reason: parsed.problems.join('; '),
            hint: 'Fix the message to match the contract (schema/message.schema.json) and send it again.',
          });
        }
        const { message } = parsed;
        Object.assign(keys, {
          recipients: recipientsOf(message).length,
          ...(message.idempotencyKey && { idempotencyKey: message.idempotencyKey }),
          ...(message.tags && { tags: message.tags }),
        });
        const receipt = await send(message);
        logger.info('Message sent', {
          ...keys,
          provider: receipt.provider,
          providerMessageId: receipt.providerMessageId,
        });
        if (receipt.rejectedRecipients) {
          // Sent to the others: reported, not retried (a retry would send it to them twice).
          logger.warn('Some recipients were refused', {
            ...keys,
            provider: receipt.provider,
            rejectedRecipients: receipt.rejectedRecipients,
          });
        }
        return { outcome: 'sent', receipt };
      } catch (error) {
        const failure = toRelayFailure(error);
        const failureKeys = { ...keys, ...describeFailure(failure) };
        if (failure.failureClass !== 'permanent' && attempt < settings.maxReceiveCount) {
          const retryAfterSeconds = failure.retryAfterSeconds;
          if (retryAfterSeconds !== undefined && recordDelay) {
            // Best effort: if this fails, the queue's visibility timeout still brings the record back.
            await recordDelay
              .delay(record, retryAfterSeconds)
              .catch((error: unknown) =>
                logger.warn('Could not delay the retry', { ...keys, error: String(error) }),
              );
          }
          logger.warn('Send failed, will retry', {
            ...failureKeys,
            ...(retryAfterSeconds !== undefined && { retryAfterSeconds }),
          });
          throw failure;
        }
        // Dead-letter ourselves on the last attempt too, so the DLQ always says why. If this
        // throws, the record is retried and SQS's own redrive remains the safety net.
        const final = failure.failureClass === 'permanent' ? failure : exhausted(failure, attempt);
        await deadLetters.deadLetter(record, final, attempt);
        logger.warn('Message dead-lettered', { ...keys, ...describeFailure(final) });
        return { outcome: 'dead-lettered', failure: final };
      }
    },
  };
}

function exhausted(failure: RelayFailure, attempts: number): RelayFailure {
  return new RelayFailure(
    {
      failureClass: failure.failureClass,
      code: failure.code,
      reason: `gave up after ${attempts} attempts: ${failure.reason}`,
      ...(failure.hint !== undefined && { hint: failure.hint }),
      ...(failure.provider !== undefined && { provider: failure.provider }),
    },
    { cause: failure },
  );
}

function describeFailure(failure: RelayFailure): {
  failureClass: FailureClass;
  code: string;
  reason: string;
  provider?: string;
} {
  return {
    failureClass: failure.failureClass,
    code: failure.code,
    reason: failure.reason,
    ...(failure.provider !== undefined && { provider: failure.provider }),
  };
}
