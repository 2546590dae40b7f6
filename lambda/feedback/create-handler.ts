import type { Logger } from '@aws-lambda-powertools/logger';
import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { EventBridgeClient } from '@aws-sdk/client-eventbridge';
import middy from '@middy/core';
import type { Context } from 'aws-lambda';
import { DynamoDeliveryLedger } from '../core/dynamo-ledger.ts';
import { DynamoSuppressionList } from '../core/dynamo-suppression.ts';
import { EventBridgeOutcomes } from '../core/eventbridge-outcomes.ts';
import { type FeedbackDependencies, processFeedback } from '../core/feedback/process-feedback.ts';
import { parseSesEvent } from '../core/feedback/ses-events.ts';
import { METRICS_NAMESPACE, METRICS_SERVICE } from '../core/metrics.ts';
import { relayLogger } from '../core/relay-logger.ts';
import { type FeedbackSettings, feedbackSettingsSchema, readSettingsWith } from '../core/settings.ts';
import { EmfTelemetry } from '../send/telemetry.ts';

export type FeedbackHandler = (event: unknown, context: Context) => Promise<void>;

export interface FeedbackHandlerOptions {
  /** The function's logger. Default: a Powertools Logger writing JSON to stdout, as Lambda wants. */
  readonly logger?: Logger;
  /** Where the EMF metric documents go. Default: stdout, where Lambda reads them. */
  readonly writeMetrics?: (line: string) => void;
}

/**
 * The feedback function: SES events (EventBridge rule on the configuration set's events) become
 * suppressions, metrics and outcome events. A payload it cannot read, or a suppression it cannot
 * write, fails the invocation: Lambda retries it twice, then keeps it in the feedback dead-letter
 * queue (on-failure destination) with the error.
 */
export function createFeedbackHandler(
  env: Readonly<Record<string, string | undefined>> = process.env,
  options: FeedbackHandlerOptions = {},
): FeedbackHandler {
  const settings = readSettingsWith(feedbackSettingsSchema, env);
  const logger = options.logger ?? relayLogger(env);
  const dependencies = createFeedbackDependencies(
    settings,
    logger,
    new DynamoDBClient({}),
    options.writeMetrics,
  );
  const handler = middy(async (event: unknown) => {
    try {
      await processFeedback(parseSesEvent(event), dependencies);
    } finally {
      dependencies.telemetry.flush();
    }
  }).use(injectLambdaContext(logger, { logEvent: false }));
  return handler as FeedbackHandler;
}

/** What acting on feedback needs (suppression list, EMF metrics, outcome events), shared with the bounce report reader. */
export function createFeedbackDependencies(
  settings: FeedbackSettings,
  logger: Logger,
  dynamo: DynamoDBClient,
  writeMetrics?: (line: string) => void,
): FeedbackDependencies & { readonly telemetry: EmfTelemetry } {
  const suppressions = new DynamoSuppressionList(dynamo, settings.suppression.tableName);
  return {
    suppressions,
    ...(settings.suppression.softBounces && {
      // The counters live in the suppression table, next to the entries they may lead to.
      softBounces: { threshold: settings.suppression.softBounces, counter: suppressions },
    }),
    // The service dimension is fixed: the stack's alarms and dashboard look the metrics up by it.
    telemetry: new EmfTelemetry({
      namespace: METRICS_NAMESPACE,
      service: METRICS_SERVICE,
      ...(writeMetrics && { write: writeMetrics }),
    }),
    ...(settings.events && {
      outcomes: new EventBridgeOutcomes(new EventBridgeClient({}), settings.events),
    }),
    ...(settings.ledger && { notes: new DynamoDeliveryLedger(dynamo, settings.ledger.tableName) }),
    logger,
    ...(settings.suppression.retentionDays !== undefined && {
      suppressionDays: settings.suppression.retentionDays,
    }),
  };
}
