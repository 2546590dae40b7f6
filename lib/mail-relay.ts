import { Aws, Duration, Stack, Validations } from 'aws-cdk-lib';
import { AnyPrincipal, Effect, type Grant, type IGrantable, PolicyStatement } from 'aws-cdk-lib/aws-iam';
import { SqsEventSource } from 'aws-cdk-lib/aws-lambda-event-sources';
import type { RetentionDays } from 'aws-cdk-lib/aws-logs';
import type { CfnBucket } from 'aws-cdk-lib/aws-s3';
import type { Queue } from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { SEND_OUTCOME_KINDS } from '../lambda/core/outcomes.ts';
import { configuredSections, providerNamesOf } from '../lambda/providers/registry.ts';
import type { RelaySettings } from '../lambda/send/settings.ts';
import { AttachmentBucket } from './attachment-bucket.ts';
import { BounceReportReader } from './bounce-report-reader.ts';
import {
  credentialSecretsOf,
  outcomeEventSettingsFor,
  outcomeKindsOf,
  parseRelayConfig,
  passingOnSettingsFor,
  type RelayConfig,
  type RelayConfigInput,
  relaySettingsFor,
  staticEgressProvidersOf,
} from './config.ts';
import { DeliveryLedger } from './delivery-ledger.ts';
import { OutboxQueue } from './outbox-queue.ts';
import { PacingTable } from './pacing-table.ts';
import { ProviderCredential } from './provider-credential.ts';
import { SOURCE_MAPS_CONTEXT } from './relay-function.ts';
import { dailyCapProvidersOf, RelayMonitoring } from './relay-monitoring.ts';
import { SendFunction } from './send-function.ts';
import { SesFeedback } from './ses-feedback.ts';
import { SmtpIngress } from './smtp-ingress.ts';
import { StaticEgress } from './static-egress.ts';
import { StaticEgressSender } from './static-egress-sender.ts';
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
 * runs behind static egress: HTTPS, and what each configured provider needs (each SMTP connection's port).
 */
export function sendFunctionEgressPorts(settings: RelaySettings): number[] {
  const ports = [HTTPS_PORT];
  for (const { definition, section } of configuredSections(settings))
    ports.push(...definition.egressPorts(section));
  return [...new Set(ports)].sort((a, b) => a - b);
}

/** Makes every property, item and entry of a type readonly (props are never changed by the construct). */
type DeepReadonly<T> = T extends readonly (infer Item)[]
  ? readonly DeepReadonly<Item>[]
  : T extends object
    ? { readonly [Key in keyof T]: DeepReadonly<T[Key]> }
    : T;

/**
 * Properties of a mail relay: the shape of the `mail-relay.config.json` file, derived from its schema
 * (lib/config.ts, and each provider's section in lambda/providers/<name>/config.ts), so a loaded file
 * can be passed as is. Every field and default is described in the configuration's JSON Schema
 * (schemas/mail-relay.config.schema.json, which editors show). Validated at synth; every problem is
 * reported in one error.
 */
export type MailRelayProps = DeepReadonly<Omit<RelayConfigInput, '$schema'>>;
/** Amazon SES: the verified identities the relay may send from. */
export type MailRelaySesProps = NonNullable<MailRelayProps['ses']>;
/** Microsoft Graph, app-only: the tenant, app registration and mailboxes the relay may send as. */
export type MailRelayGraphProps = NonNullable<MailRelayProps['graph']>;
/** SMTP: one connection, or named connections (`{ connections: { … } }`). */
export type MailRelaySmtpProps = NonNullable<MailRelayProps['smtp']>;
/** One route: the senders it allows and its provider chain. */
export type MailRelayRouteProps = NonNullable<MailRelayProps['routes']>[number];

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
  readonly graphCredential?: ProviderCredential;
  /**
   * The credential secret of each provider that has one, by provider name (`graph`, `smtp`,
   * `smtp:<name>`); providers that name the same secret share it.
   */
  readonly credentials: ReadonlyMap<string, ProviderCredential>;
  /** The bucket producers upload large attachments to, when `attachments` is configured. */
  readonly attachmentBucket?: AttachmentBucket;
  /** The SMTP front door (Mail Manager endpoints, bucket, ingest function), when `ingress` is configured. */
  readonly smtpIngress?: SmtpIngress;
  /** The VPC, NATs and Elastic IPs the static-egress sender leaves from, when `egress` is configured. */
  readonly staticEgress?: StaticEgress;
  /**
   * The second send function, in the VPC, with its queue: it sends for the providers that must leave
   * from the Elastic IPs (`egress.providers`), when `egress` is configured.
   */
  readonly staticEgressSender?: StaticEgressSender;
  /** What happened to each message: no second send, and `mail-relay status`. */
  readonly deliveryLedger: DeliveryLedger;
  /** Recipients the relay drops from every message (hard bounces, complaints). */
  readonly suppressionList: SuppressionList;
  /** Where the send functions pace their sends to the providers' limits, when `pacing.enabled`. */
  readonly pacingTable?: PacingTable;
  /** The SES configuration set, its events and the feedback function, when `ses` is configured. */
  readonly sesFeedback?: SesFeedback;
  /** The scheduled reader of non-delivery reports, when `bounceReports` is configured. */
  readonly bounceReportReader?: BounceReportReader;
  /** Why each send function's role has grants on * (one cdk-nag acknowledgement holds them all). */
  private readonly wildcardReasons = new Map<SendFunction, string[]>();
  /** The validated properties, with every default filled in. */
  readonly config: RelayConfig;
  /** The alarms, the topic they notify (and the SES brake, when configured), and the dashboard. */
  readonly monitoring: RelayMonitoring;

  constructor(scope: Construct, id: string, props: MailRelayProps) {
    super(scope, id);
    const config = parseRelayConfig(props, `MailRelay props at ${this.node.path}`);
    this.config = config;
    // Read by every function below (RelayFunction); set before any of them exists.
    if (config.sourceMaps) this.node.setContext(SOURCE_MAPS_CONTEXT, true);

    const visibilityTimeout = Duration.seconds(
      config.queue.visibilityTimeoutSeconds ??
        VISIBILITY_TIMEOUT_PER_FUNCTION_TIMEOUT * config.sendFunction.timeoutSeconds,
    );
    const queues = new OutboxQueue(this, 'Outbox', {
      maxReceiveCount: config.queue.maxReceiveCount,
      retentionPeriod: Duration.days(config.queue.retentionDays),
      visibilityTimeout,
    });
    this.outbox = queues.queue;
    this.deadLetterQueue = queues.deadLetterQueue;

    this.credentials = this.createCredentials(config);
    this.graphCredential = this.credentials.get('graph');
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

    this.deliveryLedger = new DeliveryLedger(this, 'DeliveryLedger');
    this.suppressionList = new SuppressionList(this, 'SuppressionList');
    if (config.pacing.enabled) this.pacingTable = new PacingTable(this, 'Pacing');

    // Where both feedback functions (SES events, bounce reports) put what they learn.
    const feedbackTargets = {
      suppressionList: this.suppressionList,
      deliveryLedger: this.deliveryLedger,
      ...(config.suppression.retentionDays !== undefined && {
        suppressionRetentionDays: config.suppression.retentionDays,
      }),
      ...(config.suppression.softBounces && { suppressionSoftBounces: config.suppression.softBounces }),
      outcomeBusName: config.events.busName,
      outcomeKinds: outcomeKindsOf(config.events),
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
      credentialSecretIds: new Map(
        [...this.credentials].map(([provider, credential]) => [provider, credential.secret.secretArn]),
      ),
      ...(this.attachmentBucket && { attachmentBucketName: this.attachmentBucket.bucket.bucketName }),
      ...(this.smtpIngress && { ingressBucketName: this.smtpIngress.bucket.bucketName }),
      ledgerTableName: this.deliveryLedger.table.tableName,
      suppressionTableName: this.suppressionList.table.tableName,
      ...(this.pacingTable && { pacingTableName: this.pacingTable.table.tableName }),
      // Every SES send uses the relay's configuration set, so its events reach the feedback function.
      ...(configurationSetName !== undefined && { sesConfigurationSetName: configurationSetName }),
    });
    const functionProps = {
      timeout: Duration.seconds(config.sendFunction.timeoutSeconds),
      memorySize: config.sendFunction.memoryMiB,
      // The schema accepts only the periods CloudWatch Logs knows, which are exactly RetentionDays' values.
      logRetention: config.sendFunction.logRetentionDays as RetentionDays,
    };
    // Only the providers that must leave from the Elastic IPs send from the VPC: the rest never pays the NAT.
    const passedOn = staticEgressProvidersOf(config);
    if (config.egress) {
      this.staticEgress = new StaticEgress(this, 'StaticEgress', {
        ...config.egress,
        egressPorts: sendFunctionEgressPorts(settings),
        // The schema accepts only the periods CloudWatch Logs knows, which are exactly RetentionDays' values.
        flowLogRetention: config.sendFunction.logRetentionDays as RetentionDays,
      });
      this.staticEgressSender = new StaticEgressSender(this, 'StaticEgressSender', {
        egress: this.staticEgress,
        deadLetterQueue: this.deadLetterQueue,
        maxReceiveCount: config.queue.maxReceiveCount,
        visibilityTimeout,
        retentionPeriod: Duration.days(config.queue.retentionDays),
        // The same settings, but its retries and waits go back on its own queue.
        settingsFor: (queueUrl) => ({ ...settings, queueUrl }),
        function: functionProps,
      });
    }

    this.sendFunction = new SendFunction(this, 'SendFunction', {
      ...functionProps,
      settings: this.staticEgressSender
        ? passingOnSettingsFor(settings, passedOn, this.staticEgressSender.queue.queueUrl)
        : settings,
    });
    // The send function never builds the providers it passes on, so it needs none of their secrets.
    this.grantSending(this.sendFunction, this.outbox, config, configurationSetName, new Set(passedOn));
    if (this.staticEgressSender) {
      const sender = this.staticEgressSender.sendFunction;
      // A route may fall back from a passed-on provider to any other: this one may send through all.
      this.grantSending(sender, this.staticEgressSender.queue, config, configurationSetName, new Set());
      this.grantVpcNetworking(sender);
      this.staticEgressSender.queue.grantSendMessages(this.sendFunction);
    }

    if (config.bounceReports && settings.graph && this.graphCredential) {
      this.bounceReportReader = new BounceReportReader(this, 'BounceReports', {
        config: config.bounceReports,
        graph: settings.graph,
        graphCredential: this.graphCredential,
        ...feedbackTargets,
      });
    }

    if (config.queue.producers) this.restrictProducers(config.queue.producers);

    this.monitoring = new RelayMonitoring(this, 'Monitoring', {
      config: config.monitoring,
      outbox: this.outbox,
      deadLetterQueue: this.deadLetterQueue,
      sendFunction: this.sendFunction,
      providers: providerNamesOf(config),
      sesConfigured: config.ses !== undefined,
      pacing: this.pacingTable !== undefined,
      // Which providers can write FallbackUsed and DailyCapReached: the alarms read only those.
      ...(config.routes && { routes: config.routes }),
      dailyCapProviders: dailyCapProvidersOf(settings),
      ...(this.staticEgressSender && { staticEgressSender: this.staticEgressSender }),
      ...(configurationSetName !== undefined && { sesConfigurationSetName: configurationSetName }),
      ...(this.sesFeedback && { feedbackDeadLetterQueue: this.sesFeedback.deadLetterQueue }),
      ...(this.bounceReportReader && { bounceReportFunction: this.bounceReportReader.readerFunction }),
      ...(this.smtpIngress && { ingestDeadLetterQueue: this.smtpIngress.deadLetterQueue }),
    });
  }

  /**
   * What a send function needs, on the queue it consumes: the event source (which also grants
   * ChangeMessageVisibility, used to delay a retry by the provider's Retry-After), the DLQ, the
   * queue itself for a message waiting for a provider's limit, each provider's send permissions and
   * secrets (but those of `elsewhere`), the ledger, the suppression list, the pacing table, the
   * attachment and ingress buckets, and the outcome events.
   */
  private grantSending(
    fn: SendFunction,
    source: Queue,
    config: RelayConfig,
    configurationSetName: string | undefined,
    elsewhere: ReadonlySet<string>,
  ): void {
    fn.addEventSource(
      new SqsEventSource(source, {
        batchSize: config.sendFunction.batchSize,
        // The handler reports the failed records only, so one bad message does not retry the batch.
        reportBatchItemFailures: true,
        maxConcurrency: config.sendFunction.maxConcurrency,
      }),
    );
    // Invalid requests are moved to the dead-letter queue at once, with the reason as attributes.
    this.deadLetterQueue.grantSendMessages(fn);
    // A message waiting for a provider's limit goes back on its queue as a copy (core/pacing).
    if (this.pacingTable) source.grantSendMessages(fn);
    const arnPrefix = `arn:${Aws.PARTITION}:`;
    for (const { definition, section } of configuredSections(config)) {
      const permissions = definition.sendPermissions(section, {
        batchSize: config.sendFunction.batchSize,
        credentialSecretIds: new Map(),
        ...(configurationSetName !== undefined && { sesConfigurationSetName: configurationSetName }),
      });
      for (const permission of permissions) {
        if (permission.resources.includes('*')) this.acknowledgeAccountWideActions(fn, permission.actions);
        fn.addToRolePolicy(
          new PolicyStatement({
            actions: [...permission.actions],
            resources: permission.resources.map((resource) =>
              resource === '*'
                ? resource
                : `${arnPrefix}${permission.service}:${Aws.REGION}:${Aws.ACCOUNT_ID}:${resource}`,
            ),
          }),
        );
      }
    }
    // Only when it publishes some kind (events.publish): by default dead-lettered and suppressed.
    if (outcomeEventSettingsFor(config.events, SEND_OUTCOME_KINDS))
      fn.allowOutcomeEvents(config.events.busName);
    this.deliveryLedger.grantClaims(fn);
    this.suppressionList.grantLookup(fn);
    this.pacingTable?.grantPacing(fn);
    // Each secret once, also when several providers name it.
    const secrets = new Set(
      [...this.credentials]
        .filter(([provider]) => !elsewhere.has(provider))
        .map(([, credential]) => credential),
    );
    for (const credential of secrets) credential.grantRead(fn);
    if (this.attachmentBucket) {
      this.attachmentBucket.grantRead(fn);
      const bucketId = Stack.of(this).getLogicalId(
        this.attachmentBucket.bucket.node.defaultChild as CfnBucket,
      );
      Validations.of(fn.role ?? fn).acknowledge({
        id: `AwsSolutions-IAM5[Resource::<${bucketId}.Arn>/*]`,
        reason:
          'The function downloads objects by the keys producers chose, which are only known per message; ' +
          "the grant is s3:GetObject on the objects of the relay's own attachment bucket and nothing else.",
      });
    }
    // Messages too large to travel inline reference their stored submission.
    this.smtpIngress?.grantRead(fn);
  }

  /**
   * The credential secrets the providers' definitions ask for, by provider name: one construct per
   * distinct secret (connections that name the same ARN share it), under the construct ID the
   * definition gives, so a created secret keeps its resource.
   */
  private createCredentials(config: RelayConfig): Map<string, ProviderCredential> {
    const byArn = new Map<string, ProviderCredential>();
    const byProvider = new Map<string, ProviderCredential>();
    for (const need of credentialSecretsOf(config)) {
      let credential = need.arn === undefined ? undefined : byArn.get(need.arn);
      if (!credential) {
        credential = new ProviderCredential(this, need.constructId, need);
        if (need.arn !== undefined) byArn.set(need.arn, credential);
      }
      byProvider.set(need.provider, credential);
    }
    return byProvider;
  }

  /**
   * Only the listed producers, and the relay's own functions (the ingest function enqueues submitted
   * mail, the send function puts waiting messages back), may put messages on the outbox: a deny in the
   * queue policy wins over any IAM policy that allows more.
   */
  private restrictProducers(producers: readonly string[]): void {
    const own = [this.sendFunction.role, this.smtpIngress?.ingestFunction.role].flatMap((role) =>
      role ? [role.roleArn] : [],
    );
    this.outbox.addToResourcePolicy(
      new PolicyStatement({
        sid: 'OnlyListedProducers',
        effect: Effect.DENY,
        principals: [new AnyPrincipal()],
        actions: ['sqs:SendMessage'],
        resources: [this.outbox.queueArn],
        conditions: { ArnNotLike: { 'aws:PrincipalArn': [...producers, ...own] } },
      }),
    );
  }

  /** cdk-nag: actions that have no resource ARN (SES GetAccount) can only be granted on *. */
  private acknowledgeAccountWideActions(fn: SendFunction, actions: readonly string[]): void {
    this.acknowledgeWildcard(
      fn,
      `${actions.join(', ')} take no resource ARN (they read the account's own settings, such as the SES send rate the relay paces to).`,
    );
  }

  /** One acknowledgement of the role's grants on *, with every reason (a second one would replace the first). */
  private acknowledgeWildcard(fn: SendFunction, reason: string): void {
    const reasons = this.wildcardReasons.get(fn) ?? [];
    if (!reasons.includes(reason)) reasons.push(reason);
    this.wildcardReasons.set(fn, reasons);
    Validations.of(fn.role ?? fn).acknowledge({
      id: 'AwsSolutions-IAM5[Resource::*]',
      reason: reasons.join(' '),
    });
  }

  /**
   * Lambda creates and deletes the function's network interfaces in the VPC with the function's own
   * role, which has no managed policy: these are the EC2 actions of AWSLambdaVPCAccessExecutionRole.
   * The role's policy is created before the function (CloudFormation dependency), as Lambda checks it.
   */
  private grantVpcNetworking(fn: SendFunction): void {
    fn.addToRolePolicy(
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
    this.acknowledgeWildcard(
      fn,
      "Lambda manages the function's VPC network interfaces with the function's role: the interfaces' IDs " +
        'exist only once Lambda creates them and the EC2 Describe actions support no resource-level ' +
        'permissions, so these are the EC2 actions of the AWS managed AWSLambdaVPCAccessExecutionRole on *.',
    );
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
