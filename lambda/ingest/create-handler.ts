import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { S3Client } from '@aws-sdk/client-s3';
import { SendMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import middy from '@middy/core';
import type { Context, S3Event } from 'aws-lambda';
import { Ingest, type IngestResult } from '../core/ingest.ts';
import { relayLogger } from '../core/relay-logger.ts';
import { readIngestSettings } from '../core/settings.ts';
import { toSqsText } from '../core/text.ts';
import { S3SubmissionStore, SqsOutbox } from './adapters.ts';

export type IngestHandler = (event: S3Event, context: Context) => Promise<void>;

/** What the ingest function puts in its dead-letter queue for a submission it refuses. */
export interface RefusedSubmission {
  readonly bucket: string;
  readonly key: string;
  readonly client: string | undefined;
  readonly code: string;
  /** The SMTP reply the client would have got, had the refusal been possible during the session. */
  readonly reply: string;
  readonly reason: string;
  readonly at: string;
}

/**
 * The ingest function: each object Mail Manager writes under the ingress prefix becomes a raw relay
 * message on the outbox. A submission that can never be relayed (a sender the client may not use,
 * broken MIME) goes to the ingest DLQ with its reason, and its object stays for inspection; anything
 * that fails for now fails the invocation, which Lambda retries and then hands to the same DLQ.
 * Repeated S3 events are harmless: the object key is the message's idempotency key.
 */
export function createIngestHandler(
  env: Readonly<Record<string, string | undefined>> = process.env,
  clients: { readonly s3?: S3Client; readonly sqs?: SQSClient } = {},
): IngestHandler {
  const settings = readIngestSettings(env);
  const logger = relayLogger(env);
  // Path-style addressing for custom endpoints (local mode's emulator); AWS itself takes either.
  const s3 = clients.s3 ?? new S3Client({ forcePathStyle: Boolean(env.AWS_ENDPOINT_URL_S3) });
  const sqs = clients.sqs ?? new SQSClient({});
  const ingest = new Ingest(settings, {
    store: new S3SubmissionStore(s3),
    outbox: new SqsOutbox(sqs, settings.queueUrl),
    onDeleteFailed: (key, error) =>
      logger.warn('Could not delete an ingested submission; it expires with the bucket rule', {
        key,
        error: String(error),
      }),
  });
  const handler = middy(async (event: S3Event) => {
    for (const record of event.Records ?? []) {
      const bucket = record.s3.bucket.name;
      // S3 event keys are URL-encoded, with + for spaces.
      const key = decodeURIComponent(record.s3.object.key.replace(/\+/g, ' '));
      const result = await ingest.ingest(bucket, key);
      await report(result, { bucket, key });
    }
  }).use(injectLambdaContext(logger, { logEvent: false }));

  async function report(result: IngestResult, where: { bucket: string; key: string }): Promise<void> {
    switch (result.kind) {
      case 'enqueued':
        logger.info('Submission enqueued', {
          key: where.key,
          client: result.client,
          outboxMessageId: result.outboxMessageId,
          idempotencyKey: result.idempotencyKey,
          inline: result.inline,
          recipients: result.recipients,
          normalised: result.changes,
        });
        return;
      case 'gone':
        logger.info('Submission already ingested (its object is gone)', {
          key: where.key,
          client: result.client,
        });
        return;
      case 'refused': {
        const { refusal } = result;
        const refused: RefusedSubmission = {
          ...where,
          client: result.client,
          code: refusal.code,
          reply: `${refusal.replyCode} ${refusal.enhancedCode}`,
          reason: refusal.reason,
          at: new Date().toISOString(),
        };
        await sqs.send(
          new SendMessageCommand({
            QueueUrl: settings.deadLetterQueueUrl,
            MessageBody: toSqsText(JSON.stringify(refused), 200_000),
          }),
        );
        logger.warn('Submission refused', { ...refused });
        return;
      }
    }
  }

  return handler as IngestHandler;
}
