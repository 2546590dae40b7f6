import { Aws, Duration, Stack, Validations } from 'aws-cdk-lib';
import { type Grant, type IGrantable, PolicyStatement } from 'aws-cdk-lib/aws-iam';
import { SqsEventSource } from 'aws-cdk-lib/aws-lambda-event-sources';
import type { RetentionDays } from 'aws-cdk-lib/aws-logs';
import type { CfnBucket } from 'aws-cdk-lib/aws-s3';
import type { ISecret } from 'aws-cdk-lib/aws-secretsmanager';
import type { Queue } from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import type {
  GraphCloud,
  ProviderName,
  SMTP_AUTH_METHODS,
  SMTP_MODES,
  SMTP_TLS_MODES,
  UNKNOWN_OUTCOME_ACTIONS,
} from '../lambda/core/settings.ts';
import { AttachmentBucket } from './attachment-bucket.ts';
import { BounceReportReader } from './bounce-report-reader.ts';
import {
  type EGRESS_NAT_KINDS,
  parseRelayConfig,
  providerNamesOf,
  type RelayConfig,
  type RelayConfigInput,
  relaySettingsFor,
  smtpConnectionsOf,
  smtpSettingsFor,
} from './config.ts';
import { DeliveryLedger } from './delivery-ledger.ts';
import { importExistingSecret } from './existing-secret.ts';
import { GraphCredential } from './graph-credential.ts';
import { OutboxQueue } from './outbox-queue.ts';
import { RelayMonitoring } from './relay-monitoring.ts';
import { SendFunction } from './send-function.ts';
import { SesFeedback } from './ses-feedback.ts';
import { SmtpIngress } from './smtp-ingress.ts';
import { StaticEgress } from './static-egress.ts';
import { SuppressionList } from './suppression-list.ts';

/**
 * AWS guidance for SQS event sources: the visibility timeout should be at least 6 x the function
 * timeout, so a batch that is retried by the poller is not delivered a second time meanwhile.
 */
const VISIBILITY_TIMEOUT_PER_FUNCTION_TIMEOUT = 6;

/** HTTPS: SQS, SES, Secrets Manager, S3, CloudWatch Logs, the Entra ID token endpoint and Microsoft Graph. */
const HTTPS_PORT = 443;

/**
 * The TCP ports the send function connects to, which are all its security group lets out when it
 * runs behind static egress. Add a provider's ports here (each SMTP connection's port) when it is configured.
 */
export function sendFunctionEgressPorts(config: RelayConfig): number[] {
  const ports = [HTTPS_PORT];
  for (const connection of smtpConnectionsOf(config.smtp)) {
    ports.push(smtpSettingsFor(connection.config, connection.path).port);
  }
  return [...new Set(ports)].sort((a, b) => a - b);
}

/** Amazon SES settings. */
export interface MailRelaySesProps {
  /** Identities verified in SES that the relay may send from: domains (`example.com`) or addresses. */
  readonly identities: string[];

  /**
   * An existing SES configuration set for every message (dedicated IPs, your own event destinations).
   * The relay adds an EventBridge event destination to it for its feedback function.
   *
   * @default - the stack creates a configuration set (with reputation metrics)
   */
  readonly configurationSetName?: string;
}

/** Microsoft Graph, app-only: sends as Exchange Online mailboxes of one Microsoft 365 tenant. */
export interface MailRelayGraphProps {
  /** Directory (tenant) ID, a GUID, or a verified domain of the tenant (`contoso.onmicrosoft.com`). */
  readonly tenantId: string;

  /** Application (client) ID of the app registration holding the `Mail.Send` application permission. */
  readonly clientId: string;

  /** From addresses sent through Graph: mailboxes (`soporte@contoso.com`) or whole domains (`contoso.com`). */
  readonly senders: string[];

  /**
   * Complete ARN (with the 6-character suffix) of an existing Secrets Manager secret, in the stack's
   * region, holding the app credential as JSON: `{"clientSecret": "…"}` or
   * `{"certificate": "<PEM>", "privateKey": "<PEM>"}`.
   *
   * @default - a secret holding a placeholder is created (and kept when the stack is deleted)
   */
  readonly credentialSecretArn?: string;

  /**
   * Keep a copy of each message in the sending mailbox's Sent Items.
   *
   * @default true
   */
  readonly saveToSentItems?: boolean;

  /**
   * After a lost sendMail answer, how long (seconds) the relay keeps looking for the message's copy in
   * the mailbox (by its Message-ID; needs Mail.ReadBasic.All) before concluding it was not sent.
   * 0 turns the lookups off. Needs saveToSentItems.
   *
   * @default - 300 with saveToSentItems, else 0
   */
  readonly sentItemsLookupSeconds?: number;

  /**
   * The Microsoft cloud of the tenant; picks the token authority and the Graph endpoint.
   *
   * @default 'global'
   */
  readonly cloud?: GraphCloud;

  /**
   * Entra ID token authority, scheme and host only.
   *
   * @default - the cloud's (https://login.microsoftonline.com for 'global')
   */
  readonly authorityHost?: string;

  /**
   * Microsoft Graph endpoint, scheme and host only.
   *
   * @default - the cloud's (https://graph.microsoft.com for 'global')
   */
  readonly graphEndpoint?: string;
}

/**
 * One SMTP connection: sends as the listed senders through an Exchange Online inbound connector,
 * Exchange Online SMTP AUTH client submission, or any other SMTP server. As the `smtp` prop itself it
 * is the connection named `smtp`; in `MailRelaySmtpConnectionsProps.connections`, `smtp:<name>`.
 */
export interface MailRelaySmtpProps {
  /** From addresses sent through SMTP: addresses (`scanner@contoso.com`) or whole domains (`contoso.com`). */
  readonly senders: string[];

  /**
   * `connector`: an Exchange Online inbound connector that trusts the static egress IP (needs
   * `egress`, no login). `submission`: Exchange Online SMTP AUTH client submission (XOAUTH2 with the
   * `graph` app by default). `smarthost`: any other SMTP server (`host` required).
   */
  readonly mode: (typeof SMTP_MODES)[number];

  /**
   * SMTP server host name or IP address. Required in `smarthost` mode.
   *
   * @default - connector: `<first sender's domain, dots as dashes>.mail.protection.outlook.com`;
   * submission: `smtp.office365.com`
   */
  readonly host?: string;

  /**
   * TCP port; with `egress`, the function's security group lets it out.
   *
   * @default - connector 25, submission 587, smarthost 587
   */
  readonly port?: number;

  /**
   * `starttls` upgrades a plain connection, `implicit` is TLS from the start (port 465), `none` never encrypts.
   *
   * @default 'starttls'
   */
  readonly tls?: (typeof SMTP_TLS_MODES)[number];

  /**
   * Refuse to send when the server offers no STARTTLS instead of sending in plain text; must be
   * false with `tls: 'none'`.
   *
   * @default true
   */
  readonly requireTls?: boolean;

  /**
   * `none`, `plain` or `login` (credentials from `credentialSecretArn`), or `xoauth2` (tokens of the
   * `graph` app registration, application permission SMTP.SendAsApp). Only `none` in connector mode.
   *
   * @default - connector 'none', submission 'xoauth2', smarthost 'plain' with a credentialSecretArn, else 'none'
   */
  readonly auth?: (typeof SMTP_AUTH_METHODS)[number];

  /**
   * Complete ARN of an existing Secrets Manager secret, in the stack's region, holding
   * `{"username": "…", "password": "…"}`; required for `plain` and `login`. The function may read
   * only this secret.
   *
   * @default - no SMTP credential secret
   */
  readonly credentialSecretArn?: string;

  /**
   * OAuth scope of the xoauth2 tokens.
   *
   * @default - the provider's, https://outlook.office365.com/.default
   */
  readonly oauthScope?: string;

  /**
   * The SMTP server's maximum message size in bytes, MIME-encoded; larger messages are dead-lettered
   * as MessageTooLarge without connecting.
   *
   * @default - no limit of the relay's own (the server's 552 5.3.4 is permanent)
   */
  readonly maxMessageBytes?: number;

  /**
   * Sessions to this server each warm send function keeps open at once (1-50; per sending mailbox
   * with xoauth2). The records of a batch are sent concurrently, so fewer make the rest wait.
   *
   * @default - sendFunction.batchSize
   */
  readonly maxConnections?: number;
}

/**
 * Named SMTP connections, each with its own server, senders, credentials and session pool (per-address
 * send connectors, an Exchange Online High Volume Email account, a partner's smart host).
 */
export interface MailRelaySmtpConnectionsProps {
  /**
   * The connections by name (1-32 lower-case letters, digits or hyphens, starting with a letter).
   * Routes name a connection `smtp:<name>`; without routes, the implicit chain tries them in this
   * order, after Graph and before SES.
   */
  readonly connections: Record<string, MailRelaySmtpProps>;
}

/** The S3 bucket for attachments too large to travel inside an SQS message. */
export interface MailRelayAttachmentsProps {
  /**
   * Days S3 keeps an uploaded attachment before deleting it (1-365).
   *
   * @default 7
   */
  readonly retentionDays?: number;
}

/** An application that submits over SMTP, with its own Mail Manager endpoint and password. */
export interface MailRelayIngressClientProps {
  /**
   * Unique name (1-53 letters, digits, hyphens, underscores): names its endpoint, its stack outputs
   * (`Ingress<Name>Host` …) and its S3 prefix `ingress/<name>/`.
   */
  readonly name: string;

  /** The public CIDR blocks the client connects from (IPv4 or IPv6; no /0); every other address is refused. */
  readonly allowedCidrs: string[];

  /** From patterns the client may use: one address, `*@domain` or `*`. */
  readonly senders: string[];

  /**
   * The route every message of this client takes; it must allow all of the client's senders.
   *
   * @default - the route the From address selects
   */
  readonly route?: string;
}

/** The SMTP front door on Amazon SES Mail Manager (docs/smtp-ingress.md). */
export interface MailRelayIngressProps {
  /** The applications that submit over SMTP, at most 40; each endpoint costs about $50/month. */
  readonly clients: MailRelayIngressClientProps[];

  /**
   * Largest submission in bytes, MIME-encoded with headers; at most `message.maxMessageBytes` and 41943040.
   *
   * @default - the smaller of message.maxMessageBytes and 41943040 (Mail Manager's 40 MB)
   */
  readonly maxMessageBytes?: number;

  /**
   * Days S3 keeps a stored submission; at least `queue.retentionDays`.
   *
   * @default 14
   */
  readonly retentionDays?: number;

  /**
   * Submissions up to this many bytes travel inside the outbox message (0-700000).
   *
   * @default 49152
   */
  readonly inlineMaxBytes?: number;
}

/** Limits applied to every message before it is sent. */
export interface MailRelayMessageProps {
  /**
   * Most recipients (to + cc + bcc) in one message.
   *
   * @default 50 (the SES maximum)
   */
  readonly maxRecipients?: number;

  /**
   * Most bytes of decoded body and attachments in one message; above 41943040 (SES's limit) only
   * with `graph`, up to 157286400 (150 MiB, Graph's limit).
   *
   * @default 41943040 (40 MiB, the SES limit)
   */
  readonly maxMessageBytes?: number;
}

/** Sends as the route's service mailbox, for servers that refuse send-as (550 5.7.1). */
export interface MailRelayRewriteFromProps {
  /** The service mailbox the message leaves from; the route's providers must be able to send as it. */
  readonly address: string;

  /**
   * Shown after "via": `"Original Name via <name>" <address>`.
   *
   * @default - the address
   */
  readonly name?: string;
}

/** A route: the senders it allows and the providers that send for them, in order. */
export interface MailRelayRouteProps {
  /** Unique name; a message may ask for the route by it (`"route"`), if the route allows its From. */
  readonly name: string;

  /** Allowed senders: one address, `*@domain` (every address at exactly that domain) or `*` (anyone). */
  readonly from: string[];

  /**
   * The provider chain, in order: a provider-level failure moves the message to the next at once.
   * `graph`, `ses`, `smtp` (the single-form smtp prop) or `smtp:<name>` (one of `smtp.connections`).
   */
  readonly providers: ProviderName[];

  /**
   * Send from a service mailbox, with the original sender as Reply-To.
   *
   * @default - the message's own From
   */
  readonly rewriteFrom?: MailRelayRewriteFromProps;

  /**
   * A message a provider may have sent (its answer was lost) and nobody can check: `dead-letter` never
   * sends it twice (an operator decides), `resend` never loses it (it may arrive twice).
   *
   * @default 'dead-letter'
   */
  readonly onUnknownOutcome?: (typeof UNKNOWN_OUTCOME_ACTIONS)[number];
}

/** Retries of transient failures on one provider. */
export interface MailRelayRetryProps {
  /**
   * Tries on one provider before moving to the next in the chain (or to the dead-letter queue).
   *
   * @default 3
   */
  readonly maxAttempts?: number;

  /**
   * First retry delay in seconds; doubles with each try, with jitter. A provider's Retry-After wins.
   *
   * @default 30
   */
  readonly baseDelaySeconds?: number;

  /**
   * Longest retry delay in seconds.
   *
   * @default 900
   */
  readonly maxDelaySeconds?: number;
}

/** Skips a provider that keeps failing at provider level, per warm function. */
export interface MailRelayCircuitBreakerProps {
  /**
   * Consecutive provider-level failures after which the provider is skipped.
   *
   * @default 5
   */
  readonly failureThreshold?: number;

  /**
   * Seconds the provider is skipped before one trial message goes through.
   *
   * @default 60
   */
  readonly cooldownSeconds?: number;
}

/** The delivery ledger (DynamoDB): no message sent twice, and `mail-relay status`. */
export interface MailRelayLedgerProps {
  /**
   * Days an entry is kept: the window in which a repeated idempotency key is recognised.
   *
   * @default 14
   */
  readonly retentionDays?: number;
}

/** Bounce rate alarms per provider, from the relay's own Bounced and Sent metrics. */
export interface MailRelayBounceRateProps {
  /**
   * Bounced / Sent at which the warning alarm fires.
   *
   * @default 0.02
   */
  readonly warning?: number;

  /**
   * Bounced / Sent at which the critical alarm fires (SES reviews accounts at 5%).
   *
   * @default 0.05
   */
  readonly critical?: number;

  /**
   * A period with fewer sent messages is not judged.
   *
   * @default 100
   */
  readonly minimumSent?: number;

  /**
   * The window the bounce and complaint rates are computed over, in minutes.
   *
   * @default 60
   */
  readonly periodMinutes?: number;
}

/** Alarms on the SES account's reputation metrics. */
export interface MailRelaySesReputationProps {
  /**
   * AWS/SES Reputation.BounceRate threshold.
   *
   * @default 0.05
   */
  readonly bounceRate?: number;

  /**
   * AWS/SES Reputation.ComplaintRate threshold.
   *
   * @default 0.001
   */
  readonly complaintRate?: number;
}

/** CloudWatch alarms (all to one SNS topic) and the dashboard. */
export interface MailRelayMonitoringProps {
  /**
   * Subscribes this address to the alarm topic.
   *
   * @default - no subscription
   */
  readonly alarmEmail?: string;

  /** @default - see MailRelayBounceRateProps */
  readonly bounceRate?: MailRelayBounceRateProps;

  /**
   * Complained / Sent at which the complaint alarm fires.
   *
   * @default 0.001
   */
  readonly complaintRate?: number;

  /** @default - see MailRelaySesReputationProps */
  readonly sesReputation?: MailRelaySesReputationProps;

  /**
   * Alarm when the oldest outbox message is older than this many minutes.
   *
   * @default 15
   */
  readonly outboxAgeMinutes?: number;

  /**
   * FallbackUsed / Sent at which the fallback alarm fires.
   *
   * @default 0.1
   */
  readonly fallbackRate?: number;

  /**
   * Pause the SES configuration set's sending when the critical bounce alarm fires.
   *
   * @default false
   */
  readonly pauseSesOnCriticalBounces?: boolean;
}

/** The suppression list. */
export interface MailRelaySuppressionProps {
  /**
   * Days a hard bounce or complaint keeps a recipient suppressed.
   *
   * @default - until removed
   */
  readonly retentionDays?: number;
}

/** The scheduled reader of non-delivery reports (bounces of Graph and SMTP sends). */
export interface MailRelayBounceReportsProps {
  /**
   * Sending mailboxes whose Inbox receives the non-delivery reports. The Graph app registration needs
   * the Mail.Read application permission for them (an application access policy or RBAC for
   * Applications can scope it to exactly these mailboxes).
   */
  readonly mailboxes: string[];

  /**
   * How often the reader looks for new reports, in minutes.
   *
   * @default 5
   */
  readonly scheduleMinutes?: number;

  /**
   * How far back the first reading of a mailbox looks, in hours.
   *
   * @default 24
   */
  readonly lookbackHours?: number;

  /**
   * Messages read per mailbox per run; the rest wait for the next run.
   *
   * @default 100
   */
  readonly maxMessagesPerMailbox?: number;
}

/** Outcome events for producing apps. */
export interface MailRelayEventsProps {
  /**
   * The EventBridge bus outcome events are published to.
   *
   * @default 'default'
   */
  readonly busName?: string;
}

/** The outbox queue and its dead-letter queue. */
export interface MailRelayQueueProps {
  /**
   * Deliveries of one message in total (retries and waits included); on the last one the relay
   * dead-letters it with the reason, and SQS's redrive stays the safety net.
   *
   * @default 10
   */
  readonly maxReceiveCount?: number;

  /**
   * Days the outbox keeps an unconsumed message (1-14). The dead-letter queue always keeps 14 days.
   *
   * @default 14
   */
  readonly retentionDays?: number;

  /**
   * Outbox visibility timeout in seconds; at least 6 x `sendFunction.timeoutSeconds`.
   *
   * @default - 6 x sendFunction.timeoutSeconds
   */
  readonly visibilityTimeoutSeconds?: number;
}

/** The send function and how SQS invokes it. */
export interface MailRelaySendFunctionProps {
  /**
   * Timeout of one invocation (one batch), in seconds.
   *
   * @default 30
   */
  readonly timeoutSeconds?: number;

  /**
   * Memory in MiB.
   *
   * @default 512
   */
  readonly memoryMiB?: number;

  /**
   * SQS records per invocation (1-10).
   *
   * @default 10
   */
  readonly batchSize?: number;

  /**
   * Most concurrent invocations the SQS event source starts (2-1000); caps the send rate.
   *
   * @default 10
   */
  readonly maxConcurrency?: number;

  /**
   * Log retention in days, one of the periods CloudWatch Logs accepts.
   *
   * @default 30
   */
  readonly logRetentionDays?: number;
}

/** Static egress: the send function leaves from fixed Elastic IPs (docs/static-egress.md). */
export interface MailRelayEgressProps {
  /**
   * `gateway`: managed NAT gateways (about $32/month each + $0.045/GB; the only kind AWS lifts the
   * port-25 block for). `instance`: EC2 NAT instances (t4g.nano about $3/month, no per-GB fee, but
   * you own their availability).
   *
   * @default 'gateway'
   */
  readonly nat?: (typeof EGRESS_NAT_KINDS)[number];

  /**
   * NATs, one per Availability Zone, so as many egress IPs (1-3). More than 2 needs a stack with an
   * explicit account and region.
   *
   * @default - the number of `elasticIpAllocationIds`, else 1
   */
  readonly natCount?: number;

  /**
   * Existing Elastic IPs (allocation IDs `eipalloc-…`), one per NAT, so the address survives
   * deleting and redeploying the stack.
   *
   * @default - Elastic IPs allocated by the stack and kept when it is deleted
   */
  readonly elasticIpAllocationIds?: string[];

  /**
   * EC2 instance type of the NAT instances (`nat: 'instance'` only).
   *
   * @default 't4g.nano'
   */
  readonly instanceType?: string;

  /**
   * IPv4 CIDR block of the relay's VPC, /16 to /24.
   *
   * @default '10.80.0.0/16'
   */
  readonly cidr?: string;
}

/**
 * Properties of a mail relay: the same shape as the `mail-relay.config.json` file, so a loaded
 * file can be passed as is. Validated at synth; every problem is reported in one error.
 */
export interface MailRelayProps {
  /**
   * Amazon SES: the verified identities the relay may send from. At least one of `ses`, `graph` and `smtp`.
   *
   * @default - no SES sending
   */
  readonly ses?: MailRelaySesProps;

  /**
   * Microsoft Graph: the tenant, app registration and mailboxes the relay may send as.
   * At least one of `ses`, `graph` and `smtp`.
   *
   * @default - no Graph sending
   */
  readonly graph?: MailRelayGraphProps;

  /**
   * SMTP: one connection (the server and the senders the relay sends through it; routes name it
   * `smtp`), or named connections (`{ connections: { … } }`; routes name each `smtp:<name>`).
   *
   * @default - no SMTP sending
   */
  readonly smtp?: MailRelaySmtpProps | MailRelaySmtpConnectionsProps;

  /**
   * Creates the bucket producers upload large attachments to (messages reference them as
   * `{ "s3": { "bucket", "key" } }`); SQS carries at most 1 MiB, about 700 KB of base64 files.
   *
   * @default - no attachment bucket: attachments travel inline only
   */
  readonly attachments?: MailRelayAttachmentsProps;

  /**
   * Limits applied to every message.
   *
   * @default - see MailRelayMessageProps
   */
  readonly message?: MailRelayMessageProps;

  /**
   * The outbox and dead-letter queue.
   *
   * @default - see MailRelayQueueProps
   */
  readonly queue?: MailRelayQueueProps;

  /**
   * The send function.
   *
   * @default - see MailRelaySendFunctionProps
   */
  readonly sendFunction?: MailRelaySendFunctionProps;

  /**
   * Sends from static Elastic IPs: the send function runs in a VPC whose private subnets reach the
   * internet through NATs with fixed addresses, for inbound connectors and allow lists that trust an IP.
   *
   * @default - no VPC: the function leaves from Lambda's shared, changing addresses
   */
  readonly egress?: MailRelayEgressProps;

  /**
   * An SMTP front door: each client submits to its own authenticated Amazon SES Mail Manager endpoint,
   * and its messages join the outbox like any other (stack outputs `Ingress<Name>…`).
   *
   * @default - no SMTP front door: producers use the outbox queue
   */
  readonly ingress?: MailRelayIngressProps;

  /**
   * Which senders the relay sends for, and through which providers in which order.
   *
   * @default - every sender a provider covers, with the providers that cover it (graph, smtp, ses)
   */
  readonly routes?: MailRelayRouteProps[];

  /**
   * Retries with exponential backoff on the same provider.
   *
   * @default - see MailRelayRetryProps
   */
  readonly retry?: MailRelayRetryProps;

  /**
   * Skips a failing provider for a while.
   *
   * @default - see MailRelayCircuitBreakerProps
   */
  readonly circuitBreaker?: MailRelayCircuitBreakerProps;

  /**
   * The delivery ledger.
   *
   * @default - see MailRelayLedgerProps
   */
  readonly ledger?: MailRelayLedgerProps;

  /**
   * Alarms and the dashboard.
   *
   * @default - see MailRelayMonitoringProps
   */
  readonly monitoring?: MailRelayMonitoringProps;

  /**
   * Outcome events on EventBridge.
   *
   * @default - the default bus
   */
  readonly events?: MailRelayEventsProps;

  /**
   * The suppression list.
   *
   * @default - see MailRelaySuppressionProps
   */
  readonly suppression?: MailRelaySuppressionProps;

  /**
   * Reads non-delivery reports from the sending mailboxes through Graph (Mail.Read), so bounces of
   * Graph and SMTP sends reach the suppression list, the metrics and the outcome events. Needs `graph`.
   *
   * @default - not read: only SES bounces are seen
   */
  readonly bounceReports?: MailRelayBounceReportsProps;
}

// Compile-time guard that the props mirror the config file key for key (the constructor's typed
// assignment checks the value types; together a drift in either direction fails to compile).
type SameKeys<A, B> = [keyof A] extends [keyof B] ? ([keyof B] extends [keyof A] ? true : false) : false;
type AssertTrue<T extends true> = T;
type ConfigFileShape = Omit<RelayConfigInput, '$schema'>;
/** The named-connections form of the smtp section (the other is one connection). */
type SmtpConnectionsShape = { readonly connections: unknown };
type _PropsMirrorConfigFile = AssertTrue<
  | SameKeys<MailRelayProps, ConfigFileShape>
  | SameKeys<MailRelaySesProps, NonNullable<ConfigFileShape['ses']>>
  | SameKeys<MailRelayGraphProps, NonNullable<ConfigFileShape['graph']>>
  | SameKeys<MailRelaySmtpProps, Exclude<NonNullable<ConfigFileShape['smtp']>, SmtpConnectionsShape>>
  | SameKeys<
      MailRelaySmtpConnectionsProps,
      Extract<NonNullable<ConfigFileShape['smtp']>, SmtpConnectionsShape>
    >
  | SameKeys<
      MailRelaySmtpProps,
      Extract<NonNullable<ConfigFileShape['smtp']>, SmtpConnectionsShape>['connections'][string]
    >
  | SameKeys<MailRelayAttachmentsProps, NonNullable<ConfigFileShape['attachments']>>
  | SameKeys<MailRelayMessageProps, NonNullable<ConfigFileShape['message']>>
  | SameKeys<MailRelayQueueProps, NonNullable<ConfigFileShape['queue']>>
  | SameKeys<MailRelaySendFunctionProps, NonNullable<ConfigFileShape['sendFunction']>>
  | SameKeys<MailRelayEgressProps, NonNullable<ConfigFileShape['egress']>>
  | SameKeys<MailRelayIngressProps, NonNullable<ConfigFileShape['ingress']>>
  | SameKeys<MailRelayIngressClientProps, NonNullable<ConfigFileShape['ingress']>['clients'][number]>
  | SameKeys<MailRelayRouteProps, NonNullable<ConfigFileShape['routes']>[number]>
  | SameKeys<
      MailRelayRewriteFromProps,
      NonNullable<NonNullable<ConfigFileShape['routes']>[number]['rewriteFrom']>
    >
  | SameKeys<MailRelayRetryProps, NonNullable<ConfigFileShape['retry']>>
  | SameKeys<MailRelayCircuitBreakerProps, NonNullable<ConfigFileShape['circuitBreaker']>>
  | SameKeys<MailRelayLedgerProps, NonNullable<ConfigFileShape['ledger']>>
  | SameKeys<MailRelayMonitoringProps, NonNullable<ConfigFileShape['monitoring']>>
  | SameKeys<MailRelayBounceRateProps, NonNullable<NonNullable<ConfigFileShape['monitoring']>['bounceRate']>>
  | SameKeys<
      MailRelaySesReputationProps,
      NonNullable<NonNullable<ConfigFileShape['monitoring']>['sesReputation']>
    >
  | SameKeys<MailRelayEventsProps, NonNullable<ConfigFileShape['events']>>
  | SameKeys<MailRelaySuppressionProps, NonNullable<ConfigFileShape['suppression']>>
  | SameKeys<MailRelayBounceReportsProps, NonNullable<ConfigFileShape['bounceReports']>>
>;

/**
 * A serverless mail relay: producers put mail requests on the `outbox` queue, the send function
 * sends them through the configured providers (Microsoft Graph, SMTP, Amazon SES), and requests that
 * cannot be sent end up in the `deadLetterQueue`.
 */
export class MailRelay extends Construct {
  /** The queue producers send mail requests to (see `grantEnqueue`). */
  readonly outbox: Queue;
  /** Requests that failed `maxReceiveCount` times, or that the send function rejected as invalid. */
  readonly deadLetterQueue: Queue;
  /** The function that consumes the outbox. */
  readonly sendFunction: SendFunction;
  /** The secret with the Microsoft Graph app credential, when `graph` is configured. */
  readonly graphCredential?: GraphCredential;
  /** The secret with the SMTP username and password, when the single-form `smtp.credentialSecretArn` is set. */
  readonly smtpCredential?: ISecret;
  /**
   * The secret of each SMTP connection that has a `credentialSecretArn`, by provider name (`smtp`,
   * `smtp:<name>`); connections that name the same secret share it.
   */
  readonly smtpCredentials: ReadonlyMap<string, ISecret>;
  /** The bucket producers upload large attachments to, when `attachments` is configured. */
  readonly attachmentBucket?: AttachmentBucket;
  /** The SMTP front door (Mail Manager endpoints, bucket, ingest function), when `ingress` is configured. */
  readonly smtpIngress?: SmtpIngress;
  /** The VPC, NATs and Elastic IPs the send function leaves from, when `egress` is configured. */
  readonly staticEgress?: StaticEgress;
  /** What happened to each message: no second send, and `mail-relay status`. */
  readonly deliveryLedger: DeliveryLedger;
  /** Recipients the relay drops from every message (hard bounces, complaints). */
  readonly suppressionList: SuppressionList;
  /** The SES configuration set, its events and the feedback function, when `ses` is configured. */
  readonly sesFeedback?: SesFeedback;
  /** The scheduled reader of non-delivery reports, when `bounceReports` is configured. */
  readonly bounceReportReader?: BounceReportReader;
  /** The validated properties, with every default filled in. */
  readonly config: RelayConfig;
  /** The alarms, the topic they notify (and the SES brake, when configured), and the dashboard. */
  readonly monitoring: RelayMonitoring;

  constructor(scope: Construct, id: string, props: MailRelayProps) {
    super(scope, id);
    // Typed assignment: the props' value types must fit the config file (the keys: _PropsMirrorConfigFile).
    const input: RelayConfigInput = props;
    const config = parseRelayConfig(input, `MailRelay props at ${this.node.path}`);
    this.config = config;

    const queues = new OutboxQueue(this, 'Outbox', {
      maxReceiveCount: config.queue.maxReceiveCount,
      retentionPeriod: Duration.days(config.queue.retentionDays),
      visibilityTimeout: Duration.seconds(
        config.queue.visibilityTimeoutSeconds ??
          VISIBILITY_TIMEOUT_PER_FUNCTION_TIMEOUT * config.sendFunction.timeoutSeconds,
      ),
    });
    this.outbox = queues.queue;
    this.deadLetterQueue = queues.deadLetterQueue;

    if (config.graph) {
      this.graphCredential = new GraphCredential(this, 'GraphCredential', {
        secretArn: config.graph.credentialSecretArn,
      });
    }
    this.smtpCredentials = this.importSmtpCredentials(config);
    this.smtpCredential = this.smtpCredentials.get('smtp');
    if (config.attachments) {
      this.attachmentBucket = new AttachmentBucket(this, 'Attachments', {
        retentionPeriod: Duration.days(config.attachments.retentionDays),
      });
    }

    if (config.ingress) {
      this.smtpIngress = new SmtpIngress(this, 'Ingress', {
        config,
        outbox: this.outbox,
        // The schema accepts only the periods CloudWatch Logs knows, which are exactly RetentionDays' values.
        logRetention: config.sendFunction.logRetentionDays as RetentionDays,
      });
    }

    if (config.egress) {
      this.staticEgress = new StaticEgress(this, 'StaticEgress', {
        ...config.egress,
        egressPorts: sendFunctionEgressPorts(config),
        // The schema accepts only the periods CloudWatch Logs knows, which are exactly RetentionDays' values.
        flowLogRetention: config.sendFunction.logRetentionDays as RetentionDays,
      });
    }

    this.deliveryLedger = new DeliveryLedger(this, 'DeliveryLedger');
    this.suppressionList = new SuppressionList(this, 'SuppressionList');

    // Where both feedback functions (SES events, bounce reports) put what they learn.
    const feedbackTargets = {
      suppressionList: this.suppressionList,
      deliveryLedger: this.deliveryLedger,
      ...(config.suppression.retentionDays !== undefined && {
        suppressionRetentionDays: config.suppression.retentionDays,
      }),
      outcomeBusName: config.events.busName,
      logRetention: config.sendFunction.logRetentionDays as RetentionDays,
    };
    if (config.ses) {
      this.sesFeedback = new SesFeedback(this, 'SesFeedback', {
        ...feedbackTargets,
        ...(config.ses.configurationSetName !== undefined && {
          existingConfigurationSetName: config.ses.configurationSetName,
        }),
      });
    }
    const configurationSetName = this.sesFeedback?.configurationSet.configurationSetName;

    const settings = relaySettingsFor(config, {
      queueUrl: this.outbox.queueUrl,
      deadLetterQueueUrl: this.deadLetterQueue.queueUrl,
      ...(this.graphCredential && { graphCredentialSecretId: this.graphCredential.secret.secretArn }),
      ...(this.attachmentBucket && { attachmentBucketName: this.attachmentBucket.bucket.bucketName }),
      ...(this.smtpIngress && { ingressBucketName: this.smtpIngress.bucket.bucketName }),
      ledgerTableName: this.deliveryLedger.table.tableName,
      suppressionTableName: this.suppressionList.table.tableName,
      // Every SES send uses the relay's configuration set, so its events reach the feedback function.
      ...(configurationSetName !== undefined && { sesConfigurationSetName: configurationSetName }),
    });
    this.sendFunction = new SendFunction(this, 'SendFunction', {
      settings,
      timeout: Duration.seconds(config.sendFunction.timeoutSeconds),
      memorySize: config.sendFunction.memoryMiB,
      // The schema accepts only the periods CloudWatch Logs knows, which are exactly RetentionDays' values.
      logRetention: config.sendFunction.logRetentionDays as RetentionDays,
      ...(this.staticEgress && {
        vpc: this.staticEgress.vpc,
        vpcSubnets: this.staticEgress.subnets,
        securityGroups: [this.staticEgress.securityGroup],
      }),
    });
    if (this.staticEgress) this.grantVpcNetworking();

    // Also grants sqs:ChangeMessageVisibility on the outbox, which the function uses to delay a
    // record by the provider's Retry-After.
    this.sendFunction.addEventSource(
      new SqsEventSource(this.outbox, {
        batchSize: config.sendFunction.batchSize,
        // The handler reports the failed records only, so one bad message does not retry the batch.
        reportBatchItemFailures: true,
        maxConcurrency: config.sendFunction.maxConcurrency,
      }),
    );
    // Invalid requests are moved to the dead-letter queue at once, with the reason as attributes.
    this.deadLetterQueue.grantSendMessages(this.sendFunction);
    if (config.ses) {
      this.sendFunction.addToRolePolicy(
        new PolicyStatement({
          actions: ['ses:SendEmail', 'ses:SendRawEmail'],
          resources: sesResourceArns(config.ses, configurationSetName),
        }),
      );
    }
    this.sendFunction.allowOutcomeEvents(config.events.busName);
    this.deliveryLedger.grantClaims(this.sendFunction);
    this.suppressionList.grantLookup(this.sendFunction);
    this.graphCredential?.grantRead(this.sendFunction);
    // Each secret once, also when several connections name it.
    for (const secret of new Set(this.smtpCredentials.values())) secret.grantRead(this.sendFunction);
    if (this.attachmentBucket) {
      this.attachmentBucket.grantRead(this.sendFunction);
      const bucketId = Stack.of(this).getLogicalId(
        this.attachmentBucket.bucket.node.defaultChild as CfnBucket,
      );
      Validations.of(this.sendFunction.role ?? this.sendFunction).acknowledge({
        id: `AwsSolutions-IAM5[Resource::<${bucketId}.Arn>/*]`,
        reason:
          'The function downloads objects by the keys producers chose, which are only known per message; ' +
          "the grant is s3:GetObject on the objects of the relay's own attachment bucket and nothing else.",
      });
    }

    // Messages too large to travel inline reference their stored submission.
    this.smtpIngress?.grantRead(this.sendFunction);

    if (config.bounceReports && settings.graph && this.graphCredential) {
      this.bounceReportReader = new BounceReportReader(this, 'BounceReports', {
        config: config.bounceReports,
        graph: settings.graph,
        graphCredential: this.graphCredential,
        ...feedbackTargets,
      });
    }

    this.monitoring = new RelayMonitoring(this, 'Monitoring', {
      config: config.monitoring,
      outbox: this.outbox,
      deadLetterQueue: this.deadLetterQueue,
      sendFunction: this.sendFunction,
      providers: providerNamesOf(config),
      sesConfigured: config.ses !== undefined,
      ...(configurationSetName !== undefined && { sesConfigurationSetName: configurationSetName }),
      ...(this.sesFeedback && { feedbackDeadLetterQueue: this.sesFeedback.deadLetterQueue }),
      ...(this.bounceReportReader && { bounceReportFunction: this.bounceReportReader.readerFunction }),
      ...(this.smtpIngress && { ingestDeadLetterQueue: this.smtpIngress.deadLetterQueue }),
    });
  }

  /**
   * The existing secrets of the SMTP connections, by provider name: one import per distinct ARN (the
   * single form keeps the construct ID `SmtpCredential`), each checked to be in the stack's region.
   */
  private importSmtpCredentials(config: RelayConfig): Map<string, ISecret> {
    const byArn = new Map<string, ISecret>();
    const byProvider = new Map<string, ISecret>();
    for (const connection of smtpConnectionsOf(config.smtp)) {
      const arn = connection.config.credentialSecretArn;
      if (arn === undefined) continue;
      let secret = byArn.get(arn);
      if (!secret) {
        secret = importExistingSecret(
          this,
          connection.name === undefined ? 'SmtpCredential' : `SmtpCredential-${connection.name}`,
          arn,
          `Invalid MailRelay props at ${this.node.path}`,
          [...connection.path, 'credentialSecretArn'].join('.'),
        );
        byArn.set(arn, secret);
      }
      byProvider.set(connection.provider, secret);
    }
    return byProvider;
  }

  /**
   * Lambda creates and deletes the function's network interfaces in the VPC with the function's own
   * role, which has no managed policy: these are the EC2 actions of AWSLambdaVPCAccessExecutionRole.
   * The role's policy is created before the function (CloudFormation dependency), as Lambda checks it.
   */
  private grantVpcNetworking(): void {
    this.sendFunction.addToRolePolicy(
      new PolicyStatement({
        actions: [
          'ec2:CreateNetworkInterface',
          'ec2:DescribeNetworkInterfaces',
          'ec2:DescribeSubnets',
          'ec2:DeleteNetworkInterface',
          'ec2:AssignPrivateIpAddresses',
          'ec2:UnassignPrivateIpAddresses',
        ],
        resources: ['*'],
      }),
    );
    Validations.of(this.sendFunction.role ?? this.sendFunction).acknowledge({
      id: 'AwsSolutions-IAM5[Resource::*]',
      reason:
        "Lambda manages the function's VPC network interfaces with the function's role: the interfaces' IDs " +
        'exist only once Lambda creates them and the EC2 Describe actions support no resource-level ' +
        'permissions, so these are the EC2 actions of the AWS managed AWSLambdaVPCAccessExecutionRole on *.',
    });
  }

  /**
   * Lets a producer (a role, a function, …) put mail requests on the outbox and, when there is an
   * attachment bucket, upload the attachments those requests reference.
   */
  grantEnqueue(grantee: IGrantable): Grant {
    const grant = this.outbox.grantSendMessages(grantee);
    return this.attachmentBucket ? grant.combine(this.attachmentBucket.grantPut(grantee)) : grant;
  }
}

/** SES authorises a send against the identity used and the configuration set, so grant exactly those. */
function sesResourceArns(
  ses: NonNullable<RelayConfig['ses']>,
  configurationSetName: string | undefined,
): string[] {
  const arnPrefix = `arn:${Aws.PARTITION}:ses:${Aws.REGION}:${Aws.ACCOUNT_ID}`;
  const arns = ses.identities.map((identity) => `${arnPrefix}:identity/${identity}`);
  if (configurationSetName !== undefined) arns.push(`${arnPrefix}:configuration-set/${configurationSetName}`);
  return arns;
}
