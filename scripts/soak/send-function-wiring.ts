import { SETTINGS_ENV_VAR } from '../../lambda/core/settings.ts';
import type { RelaySettings } from '../../lambda/send/settings.ts';
import type { GraphPeer } from '../../local/peers/graph-peer.ts';
import type { SmtpPeer } from '../../local/peers/smtp-peer.ts';

// How the soak and the end-to-end tests wire a send function to the local peers: the same settings
// and environment, whether the function runs in this process or its own.

/** The From domains of the three routes: graph (falling back to SES), smtp and ses. */
export interface RouteDomains {
  readonly graph: string;
  readonly smtp: string;
  readonly ses: string;
}

/** Where the send function finds everything: queues, tables and the two peers it talks to besides SES. */
export interface RelayWiring {
  readonly queueUrl: string;
  readonly deadLetterQueueUrl: string;
  readonly ledgerTableName: string;
  readonly suppressionTableName: string;
  readonly leaseSeconds: number;
  readonly graph: GraphPeer;
  readonly graphTenantId: string;
  readonly graphClientId: string;
  readonly graphCredentialSecretId: string;
  readonly sentItemsLookupSeconds: number;
  readonly smtp: SmtpPeer;
}

/**
 * Settings with every provider and three routes: Graph senders fall back to SES, SMTP and SES senders
 * have one provider each. Short retries, as tests and the soak want them.
 */
export function threeRouteSettings(wiring: RelayWiring, domains: RouteDomains): RelaySettings {
  const { graph, smtp } = wiring;
  return {
    queueUrl: wiring.queueUrl,
    deadLetterQueueUrl: wiring.deadLetterQueueUrl,
    maxReceiveCount: 10,
    limits: { maxRecipients: 50, maxMessageBytes: 1024 * 1024 },
    // SES also covers the Graph senders: it is their fallback.
    ses: { identities: [domains.ses, domains.graph] },
    graph: {
      tenantId: wiring.graphTenantId,
      clientId: wiring.graphClientId,
      senders: [domains.graph],
      credentialSecretId: wiring.graphCredentialSecretId,
      saveToSentItems: true,
      sentItemsLookupSeconds: wiring.sentItemsLookupSeconds,
      authorityHost: graph.authorityHost,
      graphEndpoint: graph.graphEndpoint,
    },
    smtp: [
      {
        name: 'smtp',
        senders: [domains.smtp],
        mode: 'smarthost',
        host: smtp.host,
        port: smtp.port,
        tls: 'none',
        requireTls: false,
        auth: 'none',
        // As the construct sizes it by default: the batch size.
        maxConnections: 10,
      },
    ],
    routes: [
      { name: 'graph', from: [`*@${domains.graph}`], providers: ['graph', 'ses'] },
      { name: 'smtp', from: [`*@${domains.smtp}`], providers: ['smtp'] },
      { name: 'ses', from: [`*@${domains.ses}`], providers: ['ses'] },
    ],
    retry: { maxAttempts: 3, baseDelaySeconds: 1, maxDelaySeconds: 2 },
    circuitBreaker: { failureThreshold: 1000, cooldownSeconds: 1 },
    ledger: { tableName: wiring.ledgerTableName, leaseSeconds: wiring.leaseSeconds, retentionDays: 1 },
    suppression: { tableName: wiring.suppressionTableName },
  };
}

/** The environment of a send function in its own process: its settings and the emulators' endpoints. */
export function sendFunctionEnvironment(
  settings: RelaySettings,
  endpoints: { sqs: string; ses: string; dynamodb: string; secretsManager: string },
  extra: Record<string, string> = {},
): Record<string, string> {
  return {
    PATH: process.env.PATH ?? '',
    [SETTINGS_ENV_VAR]: JSON.stringify(settings),
    AWS_REGION: 'us-east-1',
    AWS_ACCESS_KEY_ID: 'test',
    AWS_SECRET_ACCESS_KEY: 'test',
    AWS_ENDPOINT_URL_SQS: endpoints.sqs,
    AWS_ENDPOINT_URL_SESV2: endpoints.ses,
    AWS_ENDPOINT_URL_DYNAMODB: endpoints.dynamodb,
    AWS_ENDPOINT_URL_SECRETS_MANAGER: endpoints.secretsManager,
    AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
    // RIG_DEBUG=1 when debugging a test: the send functions log everything, and their logs are shown.
    POWERTOOLS_LOG_LEVEL: process.env.RIG_DEBUG ? 'DEBUG' : 'ERROR',
    POWERTOOLS_METRICS_DISABLED: 'true',
    ...extra,
  };
}
