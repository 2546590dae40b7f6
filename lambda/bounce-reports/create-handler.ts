import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import middy from '@middy/core';
import type { Context } from 'aws-lambda';
import { identityCovers } from '../core/address.ts';
import { DynamoDeliveryLedger } from '../core/dynamo-ledger.ts';
import { type MailboxResult, readBounceReports } from '../core/feedback/bounce-reports.ts';
import { parseDeliveryReport } from '../core/feedback/delivery-report.ts';
import { DynamoReportCursors } from '../core/feedback/dynamo-report-cursors.ts';
import type { FeedbackEvent } from '../core/feedback/feedback-event.ts';
import { processFeedback } from '../core/feedback/process-feedback.ts';
import { relayLogger } from '../core/relay-logger.ts';
import { readSettingsWith } from '../core/settings.ts';
import { createFeedbackDependencies } from '../feedback/create-handler.ts';
import { cachedCredential, graphSecretReader } from '../providers/graph/credentials.ts';
import { GraphMailboxReader } from '../providers/graph/mailbox-reader.ts';
import { MsalTokenSource } from '../providers/graph/token-source.ts';
import { createHttpTransport, type HttpTransport } from '../providers/http-transport.ts';
import { bounceReportSettingsSchema } from './settings.ts';

export interface BounceReportHandlerOptions {
  /** HTTPS for Entra ID and Graph; tests pass one that trusts the Graph peer's certificate. */
  readonly graphTransport?: HttpTransport;
}

export type BounceReportHandler = (event: unknown, context: Context) => Promise<MailboxResult[]>;

/**
 * The bounce report reader, run on a schedule: reads new non-delivery reports from the sending
 * mailboxes through Graph (Mail.Read) and acts on them as on SES events (suppress hard bounces,
 * count, publish). Where each mailbox's reading stopped is kept in the ledger table.
 */
export function createBounceReportHandler(
  env: Readonly<Record<string, string | undefined>> = process.env,
  options: BounceReportHandlerOptions = {},
): BounceReportHandler {
  const settings = readSettingsWith(bounceReportSettingsSchema, env);
  const logger = relayLogger(env);
  const dynamo = new DynamoDBClient({});
  const transport = options.graphTransport ?? createHttpTransport();
  const credential = cachedCredential(
    graphSecretReader(new SecretsManagerClient({})),
    settings.graph.credentialSecretId,
  );
  const reader = new GraphMailboxReader({
    graphEndpoint: settings.graph.graphEndpoint,
    tokens: new MsalTokenSource(settings.graph, credential, transport),
    transport,
  });
  const ledger = new DynamoDeliveryLedger(dynamo, settings.ledger.tableName);
  const feedback = createFeedbackDependencies(settings, logger, dynamo);

  /**
   * The provider that sent the reported message: the ledger knows; else the mailbox's own path, and
   * the report is unverified.
   */
  async function attribute(events: readonly FeedbackEvent[], mailbox: string): Promise<FeedbackEvent[]> {
    const fallback = settings.graph.senders.some((sender) => identityCovers(sender, mailbox))
      ? 'graph'
      : 'smtp';
    return Promise.all(
      events.map(async (event) => {
        const lookup = event.idempotencyKey
          ? ledger.get(event.idempotencyKey)
          : event.sourceMessageId
            ? ledger.findByMessageId(event.sourceMessageId)
            : Promise.resolve(undefined);
        // A ledger that cannot answer fails the report, which the next run reads again.
        const record = await lookup;
        // A report naming no message the ledger knows may be forged: it must not suppress anyone.
        return { ...event, provider: record?.provider ?? fallback, ...(!record && { unverified: true }) };
      }),
    );
  }

  const handler = middy(() =>
    readBounceReports(
      {
        mailboxes: settings.mailboxes,
        lookbackMinutes: settings.lookbackMinutes,
        maxMessagesPerMailbox: settings.maxMessagesPerMailbox,
      },
      {
        reader,
        cursors: new DynamoReportCursors(dynamo, settings.ledger.tableName),
        parse: async (mime, { mailbox, receivedAt }) => {
          const events = await parseDeliveryReport(mime, { provider: 'graph', receivedAt });
          return events && attribute(events, mailbox);
        },
        process: (events) => processFeedback(events, feedback),
        logger,
      },
    ).finally(() => feedback.telemetry.flush()),
  ).use(injectLambdaContext(logger, { logEvent: false }));
  return handler as BounceReportHandler;
}
