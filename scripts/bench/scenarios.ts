import type { RelaySettings } from '../../lambda/send/settings.ts';
import { parseRelayConfig, relaySettingsFor } from '../../lib/config.ts';
import type { HandWrittenSettings } from './hand-written-handler.ts';
import type { PeerEndpoints } from './protocol.ts';

/** The providers the hand-written loop exists for: one loop per provider serves its scenarios. */
export type Provider = HandWrittenSettings['provider'];

export interface Scenario {
  readonly id: string;
  readonly title: string;
  readonly provider: Provider;
  /** What the provider's configuration covers (Graph senders, SES identity, SMTP senders). */
  readonly domain: string;
  /** The From addresses, used in turn: one per record of a batch means one per mailbox. */
  readonly senders: readonly string[];
  /** How the bound is reached, for the table. */
  readonly boundNote: string;
  /** The most messages per second any sender could reach with a batch of this size and answers this slow. */
  bound(batchSize: number, answerMs: number): number;
}

/** Graph allows 4 concurrent requests per app per mailbox (more are answered 429 MailboxConcurrency). */
export const GRAPH_MAILBOX_CONCURRENCY = 4;

const allAtOnce = (batchSize: number, answerMs: number) => batchSize / (answerMs / 1000);

export const SCENARIOS: readonly Scenario[] = [
  {
    id: 'graph-1',
    title: 'Graph, 1 mailbox',
    provider: 'graph',
    domain: 'graph.example',
    senders: ['App <app@graph.example>'],
    boundNote: `${GRAPH_MAILBOX_CONCURRENCY} per mailbox`,
    // One mailbox: waves of 4 requests, each wave one answer time long.
    bound: (batchSize, answerMs) =>
      batchSize / (Math.ceil(batchSize / GRAPH_MAILBOX_CONCURRENCY) * (answerMs / 1000)),
  },
  {
    id: 'graph-10',
    title: 'Graph, 10 mailboxes',
    provider: 'graph',
    domain: 'graph.example',
    senders: Array.from({ length: 10 }, (_, index) => `App ${index} <app${index}@graph.example>`),
    boundNote: 'all at once',
    bound: allAtOnce,
  },
  {
    id: 'ses',
    title: 'SES',
    provider: 'ses',
    domain: 'ses.example',
    senders: ['App <app@ses.example>'],
    boundNote: 'all at once',
    bound: allAtOnce,
  },
  {
    id: 'smtp',
    title: 'SMTP (smarthost, STARTTLS)',
    provider: 'smtp',
    domain: 'smtp.example',
    senders: ['App <app@smtp.example>'],
    boundNote: 'all at once',
    bound: allAtOnce,
  },
];

/** The relay's message contract, with what a transactional mail usually has: text and HTML, ~3.7 KB. */
export function messageBody(scenario: Pick<Scenario, 'senders'>, index: number): string {
  const from = scenario.senders[index % scenario.senders.length] ?? '';
  const order = 100_000 + index;
  const paragraph =
    'Thank you for your order. We are preparing it for shipping and will let you know when it is on its way. ';
  return JSON.stringify({
    v: 1,
    from,
    to: [`customer${index}@example.org`],
    subject: `Your order ${order} has been received`,
    text: `Hello,\n\n${paragraph.repeat(12)}\n\nOrder ${order}\n`,
    html: `<!doctype html><html><body><p>Hello,</p>${`<p>${paragraph}</p>`.repeat(20)}<p>Order <b>${order}</b></p></body></html>`,
  });
}

const QUEUE_NAME = 'mail-relay-bench-outbox';
export const ACCOUNT = '000000000000';
export const REGION = 'us-east-1';
export const QUEUE_ARN = `arn:aws:sqs:${REGION}:${ACCOUNT}:${QUEUE_NAME}`;

/**
 * MAIL_RELAY_SETTINGS for the scenario, made the way the construct makes them: a configuration
 * validated by the config schema (defaults filled in), turned into settings by relaySettingsFor.
 */
export function relaySettings(scenario: Scenario, peers: PeerEndpoints): RelaySettings {
  const { domain } = scenario;
  const providerConfig = {
    graph: {
      graph: {
        tenantId: peers.graph.tenantId,
        clientId: peers.graph.clientId,
        senders: [domain],
        credentialSecretArn: peers.graph.credentialSecretArn,
        authorityHost: peers.graph.url,
        graphEndpoint: peers.graph.url,
      },
    },
    ses: { ses: { identities: [domain] } },
    smtp: {
      smtp: {
        senders: [domain],
        mode: 'smarthost',
        host: peers.smtp.host,
        port: peers.smtp.port,
        tls: 'starttls',
        requireTls: true,
        auth: 'none',
      },
    },
  }[scenario.provider];
  const config = parseRelayConfig(providerConfig, `benchmark scenario ${scenario.id}`);
  return relaySettingsFor(config, {
    queueUrl: `${peers.aws}/${ACCOUNT}/${QUEUE_NAME}`,
    deadLetterQueueUrl: `${peers.aws}/${ACCOUNT}/${QUEUE_NAME}-dlq`,
    ...(config.graph && { credentialSecretIds: new Map([['graph', peers.graph.credentialSecretArn]]) }),
    ledgerTableName: 'mail-relay-bench-ledger',
    suppressionTableName: 'mail-relay-bench-suppression',
    // As the stack does: every SES send goes through the relay's configuration set.
    sesConfigurationSetName: 'mail-relay-bench',
  });
}

export function handWrittenSettings(provider: Provider, peers: PeerEndpoints): HandWrittenSettings {
  switch (provider) {
    case 'graph':
      return {
        provider,
        authorityHost: peers.graph.url,
        graphEndpoint: peers.graph.url,
        tenantId: peers.graph.tenantId,
        clientId: peers.graph.clientId,
        clientSecret: peers.graph.clientSecret,
      };
    case 'ses':
      return { provider, configurationSetName: 'mail-relay-bench' };
    case 'smtp':
      return { provider, host: peers.smtp.host, port: peers.smtp.port };
  }
}

/**
 * The environment of a function process: what Lambda sets (region, credentials, function name,
 * memory) and what the construct sets (Powertools), the peers' endpoints, and the
 * function's own variables (its settings, NODE_EXTRA_CA_CERTS). Nothing else from the benchmark's
 * environment leaks in.
 */
export function functionEnvironment(
  peers: PeerEndpoints,
  functionName: string,
  own: Record<string, string>,
): Record<string, string> {
  return {
    PATH: process.env.PATH ?? '',
    AWS_REGION: REGION,
    AWS_DEFAULT_REGION: REGION,
    AWS_ACCESS_KEY_ID: 'bench',
    AWS_SECRET_ACCESS_KEY: 'bench',
    AWS_SESSION_TOKEN: 'bench',
    AWS_EXECUTION_ENV: 'AWS_Lambda_nodejs22.x',
    AWS_LAMBDA_FUNCTION_NAME: functionName,
    AWS_LAMBDA_FUNCTION_VERSION: '$LATEST',
    AWS_LAMBDA_FUNCTION_MEMORY_SIZE: '512',
    AWS_LAMBDA_LOG_GROUP_NAME: `/aws/lambda/${functionName}`,
    // What the construct sets on every function of the relay (NODE_OPTIONS only with source maps).
    POWERTOOLS_SERVICE_NAME: 'mail-relay',
    POWERTOOLS_LOG_LEVEL: 'INFO',
    // Lambda runs Node 22, where the SDK has nothing to warn about.
    AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
    AWS_ENDPOINT_URL_DYNAMODB: peers.aws,
    AWS_ENDPOINT_URL_SQS: peers.aws,
    AWS_ENDPOINT_URL_SESV2: peers.aws,
    AWS_ENDPOINT_URL_EVENTBRIDGE: peers.aws,
    AWS_ENDPOINT_URL_SECRETS_MANAGER: peers.aws,
    AWS_ENDPOINT_URL_S3: peers.aws,
    ...own,
  };
}
