import type { Logger } from '@aws-lambda-powertools/logger';
import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { EventBridgeClient } from '@aws-sdk/client-eventbridge';
import { S3Client } from '@aws-sdk/client-s3';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { SQSClient } from '@aws-sdk/client-sqs';
import middy from '@middy/core';
import type { Context, SQSBatchResponse, SQSEvent } from 'aws-lambda';
import { identityCovers } from '../core/address.ts';
import { S3AttachmentStore } from '../core/attachments.ts';
import { SqsDeadLetterQueue } from '../core/dead-letter.ts';
import { invocationDeadlines, untilAborted } from '../core/deadline.ts';
import { DynamoDeliveryLedger } from '../core/dynamo-ledger.ts';
import { DynamoSuppressionList } from '../core/dynamo-suppression.ts';
import { EventBridgeOutcomes } from '../core/eventbridge-outcomes.ts';
import { providerFamily, RelayFailure } from '../core/failures.ts';
import type { MailProvider } from '../core/mail-provider.ts';
import { METRICS_NAMESPACE, METRICS_SERVICE } from '../core/metrics.ts';
import { DynamoPacingStore } from '../core/pacing/dynamo-pacing-store.ts';
import type { ProviderPacing } from '../core/pacing/limits.ts';
import { Pacer } from '../core/pacing/pacer.ts';
import { SqsRecordDelay, SqsRecordRequeue } from '../core/record-delay.ts';
import { createRelay } from '../core/relay.ts';
import { relayLogger } from '../core/relay-logger.ts';
import type { HttpTransport } from '../providers/http-transport.ts';
import type { ProviderRuntime } from '../providers/provider-definition.ts';
import { configuredSections, PROVIDERS } from '../providers/registry.ts';
import { BufferedOutcomes } from './buffered-outcomes.ts';
import { type RelaySettings, readSettings } from './settings.ts';
import { EmfTelemetry } from './telemetry.ts';

export interface SendHandlerOptions {
  /** HTTPS for Entra ID and Graph; local mode passes one that trusts its Graph peer's certificate. */
  readonly graphTransport?: HttpTransport;
  /**
   * Extra CA for SMTP servers (PEM): one for every connection, or one per connection by provider name
   * (`smtp`, `smtp:<name>`). Local mode's SMTP captures have self-signed certificates, one each, all
   * for localhost: one bundle of them would not do, since TLS looks a certificate's issuer up by name.
   */
  readonly smtpCa?: string | Readonly<Record<string, string>>;
  /**
   * How long a provider may stay silent before a call counts as failed (SES requests, SMTP connect and
   * greeting; Graph's comes with graphTransport). Tests and the soak shorten it. @default 15000 (SES), 10000 (SMTP)
   */
  readonly providerTimeoutMs?: number;
  /**
   * The function's logger. Default: a Powertools Logger writing JSON to stdout, as Lambda wants; local
   * mode passes one that turns the records into a line per outcome.
   */
  readonly logger?: Logger;
  /** Where the EMF metric documents go. Default: stdout, where Lambda reads them. */
  readonly writeMetrics?: (line: string) => void;
}

export type SendHandler = (event: SQSEvent, context: Context) => Promise<SQSBatchResponse>;

/**
 * Builds the send function's handler from its environment: settings validated once (cold start),
 * clients created once and reused across invocations. AWS endpoints come from the SDK's standard
 * configuration (AWS_ENDPOINT_URL_SQS / _SESV2 / _DYNAMODB …), which is how local mode points it at emulators.
 */
export function createSendHandler(
  env: Readonly<Record<string, string | undefined>> = process.env,
  options: SendHandlerOptions = {},
): SendHandler {
  const settings = readSettings(env);
  const logger = options.logger ?? relayLogger(env);
  const sqs = new SQSClient({});
  const dynamo = new DynamoDBClient({});
  // Gathered over an invocation and written at its end: a few EMF lines and one PutEvents per batch.
  // The service dimension is fixed: the stack's alarms and dashboard look the metrics up by it.
  const telemetry = new EmfTelemetry({
    namespace: METRICS_NAMESPACE,
    service: METRICS_SERVICE,
    routeMetrics: settings.routeMetrics === true,
    latencyByProvider: settings.latencyByProvider === true,
    ...(options.writeMetrics && { write: options.writeMetrics }),
  });
  const outcomes =
    settings.events &&
    new BufferedOutcomes(new EventBridgeOutcomes(new EventBridgeClient({}), settings.events));
  const runtime = providerRuntime(settings, options);
  const relay = createRelay({
    providers: createProviders(settings, runtime),
    ledger: new DynamoDeliveryLedger(dynamo, settings.ledger.tableName),
    suppressions: new DynamoSuppressionList(dynamo, settings.suppression.tableName),
    telemetry,
    ...(outcomes && { outcomes }),
    deadLetters: new SqsDeadLetterQueue(sqs, settings.deadLetterQueueUrl),
    recordDelay: new SqsRecordDelay(sqs, settings.queueUrl),
    ...(settings.pacing && {
      pacer: createPacer(settings, settings.pacing, dynamo, runtime, logger),
      requeue: new SqsRecordRequeue(sqs, settings.queueUrl),
    }),
    ...(settings.staticEgress && {
      staticEgressQueue: new SqsRecordRequeue(sqs, settings.staticEgress.queueUrl),
    }),
    ...((settings.attachments ?? settings.ingress) && {
      // Path-style addressing for custom endpoints (local mode's emulator); AWS itself takes either.
      attachmentStore: new S3AttachmentStore(
        new S3Client({ forcePathStyle: Boolean(env.AWS_ENDPOINT_URL_S3) }),
      ),
    }),
    settings,
    logger,
  });
  // logEvent pinned off: the event holds message bodies, which must never reach the logs, even if
  // POWERTOOLS_LOGGER_LOG_EVENT is set on the function.
  const loggerContext = injectLambdaContext(logger, { logEvent: false });
  const handler = middy(async (event: SQSEvent, context: Context) => {
    // Deadlines from the time Lambda says is left, one set for the batch: nothing runs into the
    // function's timeout.
    const deadlines = invocationDeadlines(
      context.getRemainingTimeInMillis?.() ?? settings.ledger.leaseSeconds * 1000,
    );
    try {
      const records = event.Records ?? [];
      const results = await relay.processBatch(records, deadlines);
      // A batch where every record failed is still a partial response: Lambda then retries exactly
      // those records instead of treating the invocation as an error.
      const batchItemFailures = results.flatMap((result, index) => {
        if (result.status === 'fulfilled') return [];
        const record = records[index];
        // The relay reports its own failures; anything else must not make the record retry silently.
        if (!(result.reason instanceof RelayFailure)) {
          logger.error('The record could not be processed', {
            messageId: record?.messageId,
            error: String(result.reason),
          });
        }
        return record ? [{ itemIdentifier: record.messageId }] : [];
      });
      return { batchItemFailures };
    } finally {
      telemetry.flush();
      if (outcomes) {
        // Within the invocation's time: a bus that does not answer must not hold the batch's response.
        await untilAborted(
          outcomes.flush(),
          deadlines.wrapUp,
          () => new Error('no time left to publish them'),
        ).catch((error: unknown) =>
          logger.error('Could not publish the outcome events', { error: String(error) }),
        );
      }
    }
  }).use(loggerContext);
  return handler as SendHandler;
}

/**
 * Every configured provider's adapters, in the registry's order, which decides who sends for a From
 * address more than one covers: Graph (the sender's own Microsoft 365 mailbox), then each SMTP
 * connection in the configuration's order, then SES.
 */
function createProviders(settings: RelaySettings, runtime: ProviderRuntime): MailProvider[] {
  const passedOn = new Map(
    (settings.staticEgress?.providers ?? []).map((provider) => [provider.name, provider.senders] as const),
  );
  const providers = [
    // A section whose providers are all passed on is not in these settings: nothing of it is built
    // here (no secret read, no client).
    ...configuredSections(settings).flatMap(({ definition, section }) =>
      definition.createProviders(section, runtime).filter((provider) => !passedOn.has(provider.name)),
    ),
    ...[...passedOn].map(([name, senders]) => staticEgressStandIn(name, senders)),
  ];
  // The registry's order (graph, smtp, ses) decides who sends for an address several cover.
  const rank = (name: string) => PROVIDER_FAMILIES.indexOf(providerFamily(name));
  return providers
    .map((provider, index) => ({ provider, index }))
    .sort((a, b) => rank(a.provider.name) - rank(b.provider.name) || a.index - b.index)
    .map(({ provider }) => provider);
}

/** The provider sections in the registry's order. */
const PROVIDER_FAMILIES: readonly string[] = PROVIDERS.map((definition) => definition.section);

/**
 * Stands in for a provider the static-egress function sends through: it routes like the provider
 * (the same senders) and never sends; the relay passes its messages to that function instead.
 */
function staticEgressStandIn(name: string, senders: readonly string[]): MailProvider {
  return {
    name,
    canSendAs: (address) => senders.some((sender) => identityCovers(sender, address)),
    send: () => Promise.reject(new Error(`${name} sends from the static-egress function, not this one`)),
  };
}

/** What every provider's factory shares: one Secrets Manager client, the overrides, shared values. */
function providerRuntime(settings: RelaySettings, options: SendHandlerOptions): ProviderRuntime {
  const shared = new Map<string, unknown>();
  return {
    secrets: new SecretsManagerClient({}),
    settings,
    ...options,
    shared<T>(key: string, create: () => T): T {
      if (!shared.has(key)) shared.set(key, create());
      return shared.get(key) as T;
    },
  };
}

/**
 * The fleet-wide pacer over the pacing table, with each provider's limits from its settings. A limit a
 * provider reads from its account (SES's send rate) joins when the answer comes; until then, and if
 * it never does, that provider is paced by its other limits only.
 */
function createPacer(
  settings: RelaySettings,
  pacing: NonNullable<RelaySettings['pacing']>,
  dynamo: DynamoDBClient,
  runtime: ProviderRuntime,
  logger: Logger,
): Pacer {
  const limits = new Map<string, ProviderPacing | undefined>();
  for (const { definition, section } of configuredSections(settings)) {
    for (const entry of definition.pacingOf(section)) limits.set(entry.provider, entry.pacing);
    definition
      .readPacing?.(section, runtime)
      .then((read) => {
        for (const entry of read) limits.set(entry.provider, entry.pacing);
        logger.info('Pacing limits read from the provider account', { limits: read });
      })
      .catch((error: unknown) =>
        logger.warn('Could not read the provider account limits; pacing by the configured ones', {
          section: definition.section,
          error: String(error),
        }),
      );
  }
  return new Pacer({
    store: new DynamoPacingStore(dynamo, pacing.tableName),
    pacingOf: (provider) => limits.get(provider),
    maxWaitMs: pacing.maxWaitSeconds * 1000,
    // A lease whose function stopped frees when the function would have timed out.
    leaseMs: settings.ledger.leaseSeconds * 1000,
  });
}
