import { BatchProcessor, EventType, processPartialResponse } from '@aws-lambda-powertools/batch';
import { Logger } from '@aws-lambda-powertools/logger';
import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { SQSClient } from '@aws-sdk/client-sqs';
import middy from '@middy/core';
import type { Context, SQSBatchResponse, SQSEvent, SQSRecord } from 'aws-lambda';
import { SqsDeadLetterQueue } from '../core/dead-letter.ts';
import { createRelay } from '../core/relay.ts';
import { readSettings } from '../core/settings.ts';
import { createSesClient, SesProvider } from '../providers/ses.ts';

export type SendHandler = (event: SQSEvent, context: Context) => Promise<SQSBatchResponse>;

/**
 * Builds the send function's handler from its environment: settings validated once (cold start),
 * clients created once and reused across invocations. AWS endpoints come from the SDK's standard
 * configuration (AWS_ENDPOINT_URL_SQS / _SESV2), which is how local mode points it at emulators.
 */
export function createSendHandler(
  env: Readonly<Record<string, string | undefined>> = process.env,
): SendHandler {
  const settings = readSettings(env);
  const logger = new Logger({ serviceName: env.POWERTOOLS_SERVICE_NAME ?? 'mail-relay' });
  const relay = createRelay({
    providers: [new SesProvider(createSesClient(), settings.ses)],
    deadLetters: new SqsDeadLetterQueue(new SQSClient({}), settings.deadLetterQueueUrl),
    settings,
    logger,
  });
  const processor = new BatchProcessor(EventType.SQS);

  // logEvent pinned off: the event holds message bodies, which must never reach the logs, even if
  // POWERTOOLS_LOGGER_LOG_EVENT is set on the function.
  const loggerContext = injectLambdaContext(logger, { logEvent: false });
  const handler = middy(async (event: SQSEvent, context: Context) =>
    // A batch where every record failed is still a partial response: Lambda then retries exactly
    // those records instead of treating the invocation as an error.
    processPartialResponse(event, (record: SQSRecord) => relay.processRecord(record), processor, {
      context,
      throwOnFullBatchFailure: false,
    }),
  ).use(loggerContext);
  return handler as SendHandler;
}
