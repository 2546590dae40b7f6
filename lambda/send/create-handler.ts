import { BatchProcessor, EventType, processPartialResponse } from '@aws-lambda-powertools/batch';
import { Logger } from '@aws-lambda-powertools/logger';
import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { S3Client } from '@aws-sdk/client-s3';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { SQSClient } from '@aws-sdk/client-sqs';
import middy from '@middy/core';
import type { Context, SQSBatchResponse, SQSEvent, SQSRecord } from 'aws-lambda';
import { S3AttachmentStore } from '../core/attachments.ts';
import { SqsDeadLetterQueue } from '../core/dead-letter.ts';
import { SqsRecordDelay } from '../core/record-delay.ts';
import { createRelay } from '../core/relay.ts';
import { type GraphSettings, type RelaySettings, readSettings } from '../core/settings.ts';
import { cachedCredential, secretsManagerReader } from '../providers/graph/credentials.ts';
import { GraphProvider } from '../providers/graph/graph-provider.ts';
import { createHttpsTransport, type HttpTransport } from '../providers/graph/https-transport.ts';
import { MsalTokenSource } from '../providers/graph/token-source.ts';
import type { MailProvider } from '../providers/provider.ts';
import { createSesClient, SesProvider } from '../providers/ses.ts';

export interface SendHandlerOptions {
  /** HTTPS for Entra ID and Graph; local mode passes one that trusts its Graph peer's certificate. */
  readonly graphTransport?: HttpTransport;
}

export type SendHandler = (event: SQSEvent, context: Context) => Promise<SQSBatchResponse>;

/**
 * Builds the send function's handler from its environment: settings validated once (cold start),
 * clients created once and reused across invocations. AWS endpoints come from the SDK's standard
 * configuration (AWS_ENDPOINT_URL_SQS / _SESV2), which is how local mode points it at emulators.
 */
export function createSendHandler(
  env: Readonly<Record<string, string | undefined>> = process.env,
  options: SendHandlerOptions = {},
): SendHandler {
  const settings = readSettings(env);
  const logger = new Logger({ serviceName: env.POWERTOOLS_SERVICE_NAME ?? 'mail-relay' });
  const sqs = new SQSClient({});
  const relay = createRelay({
    providers: createProviders(settings, options),
    deadLetters: new SqsDeadLetterQueue(sqs, settings.deadLetterQueueUrl),
    recordDelay: new SqsRecordDelay(sqs, settings.queueUrl),
    ...(settings.attachments && {
      // Path-style addressing for custom endpoints (local mode's emulator); AWS itself takes either.
      attachmentStore: new S3AttachmentStore(
        new S3Client({ forcePathStyle: Boolean(env.AWS_ENDPOINT_URL_S3) }),
      ),
    }),
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

/** Graph first: a sender configured for Graph wants its mail to leave from its Microsoft 365 mailbox. */
function createProviders(settings: RelaySettings, options: SendHandlerOptions): MailProvider[] {
  const providers: MailProvider[] = [];
  if (settings.graph) providers.push(createGraphProvider(settings.graph, options));
  if (settings.ses) providers.push(new SesProvider(createSesClient(), settings.ses));
  return providers;
}

function createGraphProvider(graph: GraphSettings, options: SendHandlerOptions): GraphProvider {
  const transport = options.graphTransport ?? createHttpsTransport();
  // The credential is read from Secrets Manager on first use, once per cold start.
  const credential = cachedCredential(
    secretsManagerReader(new SecretsManagerClient({})),
    graph.credentialSecretId,
  );
  return new GraphProvider({
    settings: graph,
    tokens: new MsalTokenSource(graph, credential, transport),
    transport,
  });
}
