import { join } from 'node:path';
import { Aws, Duration, RemovalPolicy, Stack } from 'aws-cdk-lib';
import {
  Alarm,
  AlarmStatusWidget,
  ComparisonOperator,
  Dashboard,
  GraphWidget,
  type HorizontalAnnotation,
  type IMetric,
  MathExpression,
  Metric,
  TreatMissingData,
} from 'aws-cdk-lib/aws-cloudwatch';
import { SnsAction } from 'aws-cdk-lib/aws-cloudwatch-actions';
import { PolicyStatement, ServicePrincipal } from 'aws-cdk-lib/aws-iam';
import { type IKey, Key } from 'aws-cdk-lib/aws-kms';
import type { IFunction } from 'aws-cdk-lib/aws-lambda';
import { RetentionDays } from 'aws-cdk-lib/aws-logs';
import { Topic } from 'aws-cdk-lib/aws-sns';
import { EmailSubscription, LambdaSubscription } from 'aws-cdk-lib/aws-sns-subscriptions';
import type { IQueue } from 'aws-cdk-lib/aws-sqs';
import { Construct, type IConstruct } from 'constructs';
import type { FailureClass } from '../lambda/core/failures.ts';
import { BOUNCE_CAUSES } from '../lambda/core/feedback/feedback-event.ts';
import {
  METRIC_DIMENSIONS,
  METRIC_NAMES,
  METRICS_NAMESPACE,
  METRICS_SERVICE,
  type MetricName,
} from '../lambda/core/metrics.ts';
import type { SesBrakeSettings } from '../lambda/core/settings.ts';
import { ConfigurationError } from '../lambda/core/validation.ts';
import { configuredSections } from '../lambda/providers/registry.ts';
import type { RelaySettings } from '../lambda/send/settings.ts';
import type { MonitoringConfig } from './config.ts';
import { REPO_ROOT, RelayFunction } from './relay-function.ts';

const SES_BRAKE_HANDLER_ENTRY = join(REPO_ROOT, 'lambda', 'ses-brake', 'handler.ts');

/** A provider as the metrics' Provider dimension names it: graph, ses, smtp or smtp:<connection>. */
export type ProviderName = string;

/** `smtp:billing-ovh` → `smtp_billing_ovh`: the provider's part of a metric math id (letters, digits, _). */
function metricIdOf(provider: ProviderName): string {
  return provider.replace(/[^A-Za-z0-9]/g, '_');
}

/** `smtp:billing-ovh` → `smtp-billing-ovh`: the provider's part of alarm names and construct IDs. */
function nameOf(provider: ProviderName): string {
  return provider.replace(/[^A-Za-z0-9-]/g, '-');
}

/** The failure classes DeadLettered is emitted with (lambda/core/failures.ts). */
const FAILURE_CLASSES: readonly FailureClass[] = ['permanent', 'transient', 'provider'];

/** The period of the alarms on queues and on the function: short, so a stuck relay is noticed soon. */
const SHORT_PERIOD = Duration.minutes(5);

/**
 * SES computes Reputation.BounceRate and Reputation.ComplaintRate itself, as a rolling rate over a
 * representative volume of recent mail, and publishes them sparsely rather than every minute. So
 * each reading is already a judgement over many messages: the alarm takes the highest reading in an
 * hour (a long period tolerates the gaps between readings) and fires on a single one above the
 * threshold, the same reading SES's own review acts on.
 */
const SES_REPUTATION_PERIOD = Duration.hours(1);

/** The daily cap alarm looks at hours. */
const DAILY_CAP_PERIOD = Duration.hours(1);

export interface RelayMonitoringProps {
  /** The validated `monitoring` section. */
  readonly config: MonitoringConfig;
  /** The outbox the send function consumes. */
  readonly outbox: IQueue;
  /** Where messages that cannot be sent end up. */
  readonly deadLetterQueue: IQueue;
  /** The function that sends the outbox. */
  readonly sendFunction: IFunction;
  /**
   * The second send function and its queue, for the providers that leave from static IPs: its
   * queue's oldest message joins the outbox age alarm, its errors the send function errors alarm
   * (one metric math alarm each, so the alarm count stays the same).
   *
   * @default - none: no static egress
   */
  readonly staticEgressSender?: { readonly queue: IQueue; readonly sendFunction: IFunction };
  /**
   * The provider names the relay is configured with (each SMTP connection is one); each gets its own
   * bounce and complaint rate alarms and its own lines on the dashboard.
   */
  readonly providers: readonly ProviderName[];
  /** Whether the send functions pace to the providers' limits: adds the daily cap alarm. */
  readonly pacing: boolean;
  /**
   * The configured routes' provider chains: a provider that is never second or later in a chain
   * cannot be a fallback, so the fallback rate alarm reads only the others (and none at all without
   * a chain of two).
   *
   * @default - no routes: each provider may follow the ones before it in `providers` (the implicit chain order)
   */
  readonly routes?: readonly { readonly providers: readonly ProviderName[] }[];
  /**
   * The providers paced to a recipients-per-day limit (`dailyCapProvidersOf`): only they can report
   * DailyCapReached, so the daily cap alarm reads only them (none: no daily cap alarm).
   *
   * @default - every provider
   */
  readonly dailyCapProviders?: readonly ProviderName[];
  /** Whether an `ses` section is configured: adds the alarms on the SES account reputation. */
  readonly sesConfigured: boolean;
  /**
   * The SES configuration set the relay sends with; required by `pauseSesOnCriticalBounces`.
   *
   * @default - none
   */
  readonly sesConfigurationSetName?: string;
  /**
   * Where feedback (SES events, bounce reports) the relay could not process ends up.
   *
   * @default - none: no feedback function
   */
  readonly feedbackDeadLetterQueue?: IQueue;
  /**
   * Where SMTP submissions the ingest function refused or could not process end up.
   *
   * @default - none: no SMTP front door
   */
  readonly ingestDeadLetterQueue?: IQueue;
  /**
   * The scheduled reader of bounce reports; a run that fails alarms.
   *
   * @default - none
   */
  readonly bounceReportFunction?: IFunction;
}

/**
 * The relay's CloudWatch alarms, the SNS topic they all notify (on ALARM and on OK), and, with
 * `monitoring.dashboard`, a dashboard.
 *
 * Rates (bounces, complaints, fallbacks) come from the relay's own metrics (namespace `MailRelay`,
 * emitted by the send function) over `bounceRate.periodMinutes`, and a window with fewer than
 * `bounceRate.minimumSent` sent messages counts as rate 0, so a handful of messages cannot page anyone.
 * They read only the `Provider` dimension (never `Route`, which the functions may leave out).
 *
 * **What it costs** (list prices, us-east-1; free tier not counted): an alarm is $0.10 a month per
 * metric it reads, a metric math alarm included, so each alarm here reads only metrics that can have
 * data: the bounce rate alarms exist for a provider whose bounces the relay learns (`ses` through its
 * events; the others only with `bounceReports`), the complaint rate alarm for `ses` alone (only SES
 * reports complaints), the fallback rate alarm only when some chain has a second provider and reads
 * FallbackUsed only of providers that can be a fallback, the daily cap alarm only providers paced to a
 * recipients-per-day limit. Metrics the functions write cost the same whether an alarm reads them or
 * not. The dashboard (`monitoring.dashboard`) is $3 a month; a customer managed key for the topics
 * (`monitoring.alarmTopicKey: create`) $1 a month. Composite alarms ($0.50 each) would cost more
 * than the metric math alarms they would replace, so there are none.
 *
 * **Automatic brake** (`pauseSesOnCriticalBounces`): the `ses` provider's critical bounce rate alarm
 * also notifies a second topic, whose small function pauses sending on the SES configuration set
 * (`ses:PutConfigurationSetSendingOptions`, that configuration set only). Messages the relay then
 * sends through SES fail at provider level and move to the next provider of their chain or are
 * retried. A pause that fails raises the `ses-brake-errors` alarm. Runbook to resume once the cause
 * is fixed (bad list cleaned, suppression list checked):
 *
 * ```sh
 * aws sesv2 put-configuration-set-sending-options --configuration-set-name <name> --sending-enabled
 * ```
 *
 * and, if messages were dead-lettered meanwhile, redrive the dead-letter queue to the outbox.
 */
export class RelayMonitoring extends Construct {
  /** Every alarm notifies this topic, on ALARM and on OK (stack output AlarmTopicArn). */
  readonly alarmTopic: Topic;
  /** The relay's dashboard, with `monitoring.dashboard`. */
  readonly dashboard?: Dashboard;
  /** The key the alarm topics are encrypted with, when `monitoring.alarmTopicKey` is not `none`. */
  readonly topicKey?: IKey;
  /** Every alarm of the relay. */
  readonly alarms: Alarm[] = [];
  /** The function that pauses the SES configuration set, when `pauseSesOnCriticalBounces` is set. */
  readonly brakeFunction?: IFunction;

  private readonly criticalBounceAlarms = new Map<ProviderName, Alarm>();

  private readonly config: MonitoringConfig;
  private readonly providers: readonly ProviderName[];
  private readonly namePrefix: string;
  private readonly sesConfigurationSetName: string | undefined;

  constructor(scope: Construct, id: string, props: RelayMonitoringProps) {
    super(scope, id);
    const { config } = props;
    this.config = config;
    this.providers = props.providers;
    this.sesConfigurationSetName = props.sesConfigurationSetName;
    if (config.pauseSesOnCriticalBounces && props.sesConfigurationSetName === undefined) {
      throw new ConfigurationError(`Invalid MailRelay props at ${scope.node.path}`, [
        'monitoring.pauseSesOnCriticalBounces: needs the ses section (the brake pauses the SES configuration set the relay sends with)',
      ]);
    }
    this.namePrefix = readableName(scope);

    this.topicKey = this.topicKeyFor(config.alarmTopicKey);
    this.alarmTopic = this.alarmTopicOf('AlarmTopic', 'Mail relay alarms');
    if (config.alarmEmail !== undefined) {
      this.alarmTopic.addSubscription(new EmailSubscription(config.alarmEmail));
    }

    this.addRateAlarms(props);
    if (props.sesConfigured) this.addSesReputationAlarms();
    this.addQueueAlarms(props);
    if (props.feedbackDeadLetterQueue) this.addFeedbackAlarm(props.feedbackDeadLetterQueue);
    if (props.bounceReportFunction) this.addBounceReportAlarm(props.bounceReportFunction);
    if (props.ingestDeadLetterQueue) this.addIngestAlarm(props.ingestDeadLetterQueue);
    this.addFunctionAlarms(props);
    if (props.pacing) this.addDailyCapAlarm(props.dailyCapProviders ?? this.providers);

    if (config.pauseSesOnCriticalBounces && props.sesConfigurationSetName !== undefined) {
      const critical = this.criticalBounceAlarms.get('ses');
      if (!critical) {
        throw new ConfigurationError(`Invalid MailRelay props at ${scope.node.path}`, [
          'monitoring.pauseSesOnCriticalBounces: needs an ses section',
        ]);
      }
      this.brakeFunction = this.addSesBrake(critical, props.sesConfigurationSetName);
    }

    if (config.dashboard) this.dashboard = this.buildDashboard(props);
  }

  /**
   * The key of the alarm topics, if any. CloudWatch alarms cannot publish to a topic encrypted with
   * the AWS managed key alias/aws/sns (its key policy, which nobody can edit, does not let CloudWatch
   * use it), so encryption needs a customer managed key whose policy allows CloudWatch: one of its
   * own ($1 a month), or one the account has. Without one the topics have no server-side encryption:
   * a notification holds the alarm's name, description, state and reason, never a message, and
   * publishing needs TLS (cdk-nag's AwsSolutions-SNS3 holds; the pack has no rule on topic SSE).
   */
  private topicKeyFor(setting: MonitoringConfig['alarmTopicKey']): IKey | undefined {
    if (setting === 'none') return undefined;
    // An existing key's policy cannot be edited from here: the README says what it must allow.
    if (setting !== 'create') return Key.fromKeyArn(this, 'TopicKey', setting);
    const key = new Key(this, 'TopicKey', {
      description: `Encrypts the alarm topics of ${this.namePrefix}`,
      enableKeyRotation: true,
      // Only in-flight notifications were ever encrypted with it.
      removalPolicy: RemovalPolicy.DESTROY,
      pendingWindow: Duration.days(7),
    });
    key.addToResourcePolicy(
      new PolicyStatement({
        sid: 'CloudWatchAlarmsPublishToEncryptedTopics',
        principals: [new ServicePrincipal('cloudwatch.amazonaws.com')],
        actions: ['kms:Decrypt', 'kms:GenerateDataKey*'],
        resources: ['*'],
        // Only this account's alarms (the confused-deputy guard AWS recommends for service principals).
        conditions: { StringEquals: { 'aws:SourceAccount': Aws.ACCOUNT_ID } },
      }),
    );
    return key;
  }

  /** A topic (encrypted with the topic key, if any) refusing requests without TLS, that CloudWatch alarms may publish to. */
  private alarmTopicOf(id: string, displayName: string): Topic {
    const topic = new Topic(this, id, {
      displayName,
      ...(this.topicKey && { masterKey: this.topicKey }),
      enforceSSL: true,
    });
    // The topic policy replaces SNS's default one, so CloudWatch is allowed explicitly, for this account's alarms.
    topic.addToResourcePolicy(
      new PolicyStatement({
        sid: 'CloudWatchAlarmsPublish',
        principals: [new ServicePrincipal('cloudwatch.amazonaws.com')],
        actions: ['sns:Publish'],
        resources: [topic.topicArn],
        conditions: {
          ArnLike: {
            'aws:SourceArn': `arn:${Aws.PARTITION}:cloudwatch:${Aws.REGION}:${Aws.ACCOUNT_ID}:alarm:*`,
          },
          StringEquals: { 'aws:SourceAccount': Aws.ACCOUNT_ID },
        },
      }),
    );
    return topic;
  }

  /** An alarm (≥ threshold for `periodsRunning` periods, missing data is fine) that notifies the alarm topic on ALARM and OK. */
  private alarm(
    id: string,
    name: string,
    description: string,
    metric: IMetric,
    threshold: number,
    periodsRunning = 1,
  ): Alarm {
    const alarm = new Alarm(this, id, {
      alarmName: `${this.namePrefix}-${name}`,
      alarmDescription: description,
      metric,
      threshold,
      evaluationPeriods: periodsRunning,
      datapointsToAlarm: periodsRunning,
      comparisonOperator: ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      treatMissingData: TreatMissingData.NOT_BREACHING,
    });
    const action = new SnsAction(this.alarmTopic);
    alarm.addAlarmAction(action);
    alarm.addOkAction(action);
    this.alarms.push(alarm);
    return alarm;
  }

  private get ratePeriod(): Duration {
    return Duration.minutes(this.config.bounceRate.periodMinutes);
  }

  /** `numerator / Sent` of one provider, 0 in a window with fewer than minimumSent sent messages. */
  private providerRate(provider: ProviderName, numerator: MetricName, label: string): MathExpression {
    const minimumSent = this.config.bounceRate.minimumSent;
    // Ids unique per provider and metric, so the rates of several providers share one graph.
    const sent = `sent_${metricIdOf(provider)}`;
    const part = `${numerator.toLowerCase()}_${metricIdOf(provider)}`;
    return new MathExpression({
      // FILL: a window with sent messages but no bounces has no Bounced data point, and is rate 0.
      expression: `IF(${sent} >= ${minimumSent}, FILL(${part}, 0) / ${sent}, 0)`,
      usingMetrics: {
        [sent]: relayMetric(METRIC_NAMES.sent, { [METRIC_DIMENSIONS.provider]: provider }),
        [part]: relayMetric(numerator, { [METRIC_DIMENSIONS.provider]: provider }),
      },
      period: this.ratePeriod,
      label,
    });
  }

  /**
   * FallbackUsed / Sent, 0 in a window with fewer than minimumSent sent: Sent of every provider a
   * chain has, FallbackUsed only of those that can be a fallback (the others never write it).
   */
  private fallbackRate(chains: ProviderChains): MathExpression {
    const usingMetrics: Record<string, IMetric> = {};
    for (const provider of chains.sending) {
      usingMetrics[`sent_${metricIdOf(provider)}`] = relayMetric(METRIC_NAMES.sent, {
        [METRIC_DIMENSIONS.provider]: provider,
      });
    }
    for (const provider of chains.fallbacks) {
      usingMetrics[`fallback_${metricIdOf(provider)}`] = relayMetric(METRIC_NAMES.fallbackUsed, {
        [METRIC_DIMENSIONS.provider]: provider,
      });
    }
    // FILL: a provider that sent nothing in the window must not blank the sum.
    const sum = (prefix: string, providers: readonly ProviderName[]) =>
      providers.map((provider) => `FILL(${prefix}_${metricIdOf(provider)}, 0)`).join(' + ');
    const sent = sum('sent', chains.sending);
    return new MathExpression({
      expression: `IF((${sent}) >= ${this.config.bounceRate.minimumSent}, (${sum('fallback', chains.fallbacks)}) / (${sent}), 0)`,
      usingMetrics,
      period: this.ratePeriod,
      label: 'Fallback rate',
    });
  }

  /**
   * The bounce rate alarms of each provider whose bounces the relay learns (SES's through its events;
   * the others' from the mailboxes `bounceReports` reads, else they never have a Bounced data point),
   * the complaint rate alarm of SES (the only provider that reports complaints), and the fallback rate
   * alarm when a chain has a second provider.
   */
  private addRateAlarms(props: RelayMonitoringProps): void {
    const { bounceRate, complaintRate, fallbackRate } = this.config;
    const window = `${bounceRate.periodMinutes} minutes (judged from ${bounceRate.minimumSent} sent messages)`;
    for (const provider of this.providers) {
      const bouncesSeen = provider === SES ? props.sesConfigured : props.bounceReportFunction !== undefined;
      if (!bouncesSeen) continue;
      const rate = this.providerRate(provider, METRIC_NAMES.bounced, `Bounce rate (${provider})`);
      this.alarm(
        `BounceRateWarning-${nameOf(provider)}`,
        `${nameOf(provider)}-bounce-rate-warning`,
        `Bounced / Sent through ${provider} reached ${bounceRate.warning} over ${window}. Check which senders and ` +
          'recipient lists bounce (the Bounced events, `mail-relay status`), clean the lists and make sure ' +
          'hard-bounced addresses are on the suppression list before the critical threshold is reached.',
        rate,
        bounceRate.warning,
      );
      const critical = this.alarm(
        `BounceRateCritical-${nameOf(provider)}`,
        `${nameOf(provider)}-bounce-rate-critical`,
        `Bounced / Sent through ${provider} reached ${bounceRate.critical} over ${window}: the provider may ` +
          'throttle or suspend the account. Stop the sender that bounces (its producing app), clean its list, ' +
          'add the bounced addresses to the suppression list (`mail-relay suppression add`).' +
          (provider === 'ses' && this.config.pauseSesOnCriticalBounces
            ? ' SES sending on the configuration set was paused automatically; resume it with ' +
              `\`aws sesv2 put-configuration-set-sending-options --configuration-set-name ${this.sesConfigurationSetName} --sending-enabled\`.`
            : ''),
        rate,
        bounceRate.critical,
      );
      this.criticalBounceAlarms.set(provider, critical);
      if (provider !== SES) continue;
      this.alarm(
        `ComplaintRate-${nameOf(provider)}`,
        `${nameOf(provider)}-complaint-rate`,
        `Complained / Sent through ${provider} reached ${complaintRate} over ${window}. Find the sender whose ` +
          'recipients mark its mail as spam, stop it or make it easy to unsubscribe; complainers are suppressed.',
        this.providerRate(provider, METRIC_NAMES.complained, `Complaint rate (${provider})`),
        complaintRate,
      );
    }
    const chains = providerChains(this.providers, props.routes);
    if (chains.fallbacks.length === 0) return;
    this.alarm(
      'FallbackRate',
      'fallback-rate',
      `A share of ${fallbackRate} or more of the messages sent over ${window} went out through a fallback provider: ` +
        "the first provider of their chains keeps failing at provider level. Check the send function's logs " +
        'for the provider errors (expired credential, paused account, lost permission) and fix that provider.',
      this.fallbackRate(chains),
      fallbackRate,
    );
  }

  private addSesReputationAlarms(): void {
    const { sesReputation } = this.config;
    this.alarm(
      'SesReputationBounceRate',
      'ses-reputation-bounce-rate',
      `The SES account's Reputation.BounceRate reached ${sesReputation.bounceRate} (SES reviews the account ` +
        'at 5% and may pause sending at 10%). Find the senders that bounce, clean their lists, and check the ' +
        'SES console (Reputation metrics, Virtual Deliverability Manager).',
      sesReputationMetric('Reputation.BounceRate'),
      sesReputation.bounceRate,
    );
    this.alarm(
      'SesReputationComplaintRate',
      'ses-reputation-complaint-rate',
      `The SES account's Reputation.ComplaintRate reached ${sesReputation.complaintRate} (SES reviews the ` +
        'account at 0.1%). Find the sender whose recipients report spam and stop or fix that mail.',
      sesReputationMetric('Reputation.ComplaintRate'),
      sesReputation.complaintRate,
    );
  }

  private addQueueAlarms({ outbox, deadLetterQueue, staticEgressSender }: RelayMonitoringProps): void {
    this.alarm(
      'DeadLetterQueueNotEmpty',
      'dead-letter-queue-not-empty',
      'Messages reached the dead-letter queue: they will not be sent unless someone acts. Read the reason ' +
        'in their message attributes (MailRelay.FailureClass, MailRelay.Reason), fix the cause, then redrive ' +
        'them to the outbox or delete them.',
      deadLetterQueue.metricApproximateNumberOfMessagesVisible({
        statistic: 'Maximum',
        period: SHORT_PERIOD,
      }),
      1,
    );
    this.alarm(
      'OutboxOldestMessageAge',
      'outbox-oldest-message-age',
      `The oldest message in the outbox is ${this.config.outboxAgeMinutes} minutes old: mail is delayed. ` +
        "Check the send function for errors and for Lambda throttles (its Throttles metric: the account's " +
        'concurrency is used up, raise the quota or lower what other functions take), the providers for ' +
        'throttling (retries), and whether sendFunction.maxConcurrency keeps up with the volume.',
      largestOf(
        [outbox, ...(staticEgressSender ? [staticEgressSender.queue] : [])].map((queue) =>
          queue.metricApproximateAgeOfOldestMessage({ statistic: 'Maximum', period: SHORT_PERIOD }),
        ),
        'Oldest message age (seconds)',
      ),
      this.config.outboxAgeMinutes * 60,
    );
  }

  private addFeedbackAlarm(feedbackDeadLetterQueue: IQueue): void {
    this.alarm(
      'FeedbackDeadLetterQueueNotEmpty',
      'feedback-dead-letter-queue-not-empty',
      'Feedback the relay could not process (SES events, bounce reports) is waiting in the feedback ' +
        'dead-letter queue: until it is processed, those bounces and complaints put no one on the suppression ' +
        'list. Each message holds the event and the error (responsePayload.errorMessage); fix the cause, then ' +
        'invoke the feedback function with the event again, or suppress the addresses by hand ' +
        '(mail-relay suppression add).',
      feedbackDeadLetterQueue.metricApproximateNumberOfMessagesVisible({
        statistic: 'Maximum',
        period: SHORT_PERIOD,
      }),
      1,
    );
  }

  private addIngestAlarm(ingestDeadLetterQueue: IQueue): void {
    this.alarm(
      'IngestDeadLetterQueueNotEmpty',
      'ingest-dead-letter-queue-not-empty',
      'Messages an application submitted over SMTP were not relayed: Mail Manager accepted them, so the ' +
        'application believes they were sent. Each message in the ingest dead-letter queue names the stored ' +
        'submission (bucket, key), the client and the reason (a sender the client may not use, broken MIME), ' +
        "or holds the S3 event and the function's error. Fix the client or the configuration, tell the " +
        "application's owner, then invoke the ingest function with the event again or delete the message.",
      ingestDeadLetterQueue.metricApproximateNumberOfMessagesVisible({
        statistic: 'Maximum',
        period: SHORT_PERIOD,
      }),
      1,
    );
  }

  private addBounceReportAlarm(readerFunction: IFunction): void {
    this.alarm(
      'BounceReportErrors',
      'bounce-report-errors',
      'The bounce report reader could not read a sending mailbox: bounces of Graph and SMTP sends are not ' +
        'reaching the suppression list. Its log names the mailbox and the Graph error; usually the app lacks ' +
        'Mail.Read (admin consent) or an application access policy leaves the mailbox out. Reports wait in the ' +
        'mailbox and are read once the cause is fixed.',
      readerFunction.metricErrors({ statistic: 'Sum', period: SHORT_PERIOD }),
      1,
    );
  }

  /**
   * A mailbox (or an account) stays at its recipients per day: mail waits for tomorrow or goes through
   * other providers, two hours running. Someone should raise the limit, split the traffic over more
   * mailboxes, or route it elsewhere (docs/pacing.md).
   */
  private addDailyCapAlarm(dailyCapProviders: readonly ProviderName[]): void {
    const capped = this.providers.filter((provider) => dailyCapProviders.includes(provider));
    if (capped.length === 0) return;
    const usingMetrics = Object.fromEntries(
      capped.map((provider) => [
        `cap_${metricIdOf(provider)}`,
        relayMetric(METRIC_NAMES.dailyCapReached, { [METRIC_DIMENSIONS.provider]: provider }),
      ]),
    );
    const reached = new MathExpression({
      expression: Object.keys(usingMetrics)
        .map((id) => `FILL(${id}, 0)`)
        .join(' + '),
      usingMetrics,
      period: DAILY_CAP_PERIOD,
      label: 'Sends that found the day used up',
    });
    // Two periods running: one full hour at the cap is not yet news, two are.
    this.alarm(
      'DailyCapAlarm',
      'daily-cap',
      "A sending mailbox or account has reached its recipients per day for two hours running: its mail waits for the next UTC day or goes through the route's next provider. Raise the limit, spread the traffic over more mailboxes, or route it elsewhere (docs/pacing.md).",
      reached,
      1,
      2,
    );
  }

  /**
   * Errors only: a throttled batch of an SQS event source stays on its queue and is tried again, so
   * a throttle delays mail, which the outbox age alarm reports (its description names throttles; the
   * dashboard graphs them), or dead-letters it after maxReceiveCount tries, which the dead-letter
   * queue alarm reports.
   */
  private addFunctionAlarms({ sendFunction, staticEgressSender }: RelayMonitoringProps): void {
    const functions = [sendFunction, ...(staticEgressSender ? [staticEgressSender.sendFunction] : [])];
    this.alarm(
      'SendFunctionErrors',
      'send-function-errors',
      `The send function${staticEgressSender ? ' or the static-egress sender' : ''} failed (an invocation ` +
        'error, not a message that could not be sent): its batch is retried by SQS. Read the logs of the ' +
        'function whose Errors metric counts it for the error.',
      sumOf(
        functions.map((fn) => fn.metricErrors({ statistic: 'Sum', period: SHORT_PERIOD })),
        'Errors',
      ),
      1,
    );
  }

  /**
   * The brake: the critical SES bounce alarm also notifies a topic of its own (an SNS filter policy
   * cannot match the alarm name inside the message body), whose function pauses the configuration set.
   *
   * A pause that fails fails the invocation: Lambda retries it twice (SNS invokes asynchronously),
   * then drops it. No on-failure destination keeps it, unlike the feedback function's events: the
   * notification holds nothing to replay (the alarm stays in ALARM and has already reached the alarm
   * topic). What matters is that someone pauses by hand, which the brake's error alarm asks for.
   */
  private addSesBrake(critical: Alarm, configurationSetName: string): IFunction {
    const topic = this.alarmTopicOf('SesBrakeTopic', 'Mail relay SES brake');
    critical.addAlarmAction(new SnsAction(topic));

    const settings: SesBrakeSettings = { configurationSetName };
    const brake = new RelayFunction(this, 'SesBrake', {
      entry: SES_BRAKE_HANDLER_ENTRY,
      name: 'SES brake',
      description: `Pauses sending on the SES configuration set ${configurationSetName} when the critical bounce alarm fires`,
      settings,
      timeout: Duration.seconds(30),
      memorySize: 128,
      // A pause is rare and worth auditing later.
      logRetention: RetentionDays.ONE_YEAR,
      retryAttempts: 2,
    });
    brake.addToRolePolicy(
      new PolicyStatement({
        actions: ['ses:PutConfigurationSetSendingOptions'],
        resources: [
          Stack.of(this).formatArn({
            service: 'ses',
            resource: 'configuration-set',
            resourceName: configurationSetName,
          }),
        ],
      }),
    );
    topic.addSubscription(new LambdaSubscription(brake));

    this.alarm(
      'SesBrakeErrors',
      'ses-brake-errors',
      'The SES brake failed to pause sending on the configuration set after the critical SES bounce alarm ' +
        "fired (Lambda retries a failed pause twice, within minutes). Unless the brake's log has a later " +
        '"Paused SES sending" line, SES is still sending: pause it by hand with `aws sesv2 ' +
        `put-configuration-set-sending-options --configuration-set-name ${configurationSetName} ` +
        '--no-sending-enabled`, then fix the error the log names (a lost permission, throttling).',
      brake.metricErrors({ statistic: 'Sum', period: SHORT_PERIOD }),
      1,
    );
    return brake;
  }

  private buildDashboard(props: RelayMonitoringProps): Dashboard {
    const { bounceRate, complaintRate, fallbackRate, outboxAgeMinutes, sesReputation } = this.config;
    const perProvider = (name: MetricName, statistic = 'Sum') =>
      this.providers.map((provider) =>
        relayMetric(name, { [METRIC_DIMENSIONS.provider]: provider }, statistic).with({ label: provider }),
      );
    const threshold = (value: number, label: string, color?: string): HorizontalAnnotation => ({
      value,
      label,
      ...(color !== undefined && { color }),
    });
    const sentTotal = new MathExpression({
      expression: this.providers.map((provider) => `FILL(sent_${metricIdOf(provider)}, 0)`).join(' + '),
      usingMetrics: Object.fromEntries(
        this.providers.map((provider) => [
          `sent_${metricIdOf(provider)}`,
          relayMetric(METRIC_NAMES.sent, { [METRIC_DIMENSIONS.provider]: provider }),
        ]),
      ),
      period: SHORT_PERIOD,
      label: 'Sent',
    });
    const chains = providerChains(this.providers, props.routes);
    const egress = props.staticEgressSender;
    const sendQueues: [IQueue, string][] = [
      [props.outbox, 'outbox'],
      ...(egress ? [[egress.queue, 'static egress'] as [IQueue, string]] : []),
    ];
    const sendFunctions: [IFunction, string][] = [
      [props.sendFunction, 'send'],
      ...(egress ? [[egress.sendFunction, 'static egress'] as [IFunction, string]] : []),
    ];
    const width = 12;

    const dashboard = new Dashboard(this, 'Dashboard');
    dashboard.addWidgets(
      new AlarmStatusWidget({ title: 'Alarms', alarms: this.alarms, width: 24, height: 4 }),
    );
    dashboard.addWidgets(
      new GraphWidget({
        title: 'Messages sent per provider',
        left: perProvider(METRIC_NAMES.sent),
        width,
      }),
      new GraphWidget({
        title: 'Outcomes',
        left: [
          sentTotal,
          relayMetric(METRIC_NAMES.retried, {}).with({ label: 'Retried' }),
          ...FAILURE_CLASSES.map((failureClass) =>
            relayMetric(METRIC_NAMES.deadLettered, { [METRIC_DIMENSIONS.failureClass]: failureClass }).with({
              label: `Dead-lettered (${failureClass})`,
            }),
          ),
          relayMetric(METRIC_NAMES.duplicate, {}).with({ label: 'Duplicate' }),
          relayMetric(METRIC_NAMES.suppressed, {}).with({ label: 'Suppressed' }),
        ],
        width,
      }),
    );
    dashboard.addWidgets(
      new GraphWidget({
        title: 'Bounce rate per provider vs thresholds',
        left: this.providers.map((provider) =>
          this.providerRate(provider, METRIC_NAMES.bounced, `Bounce rate (${provider})`),
        ),
        leftAnnotations: [
          threshold(bounceRate.warning, 'warning', '#ff7f0e'),
          threshold(bounceRate.critical, 'critical', '#d62728'),
        ],
        width,
      }),
      new GraphWidget({
        title: 'Complaint rate vs threshold',
        left: this.providers.map((provider) =>
          this.providerRate(provider, METRIC_NAMES.complained, `Complaint rate (${provider})`),
        ),
        leftAnnotations: [threshold(complaintRate, 'alarm', '#d62728')],
        width,
      }),
    );
    dashboard.addWidgets(
      new GraphWidget({
        title: 'Feedback per provider: delivered, bounced, complained',
        left: this.providers.flatMap((provider) => {
          const byProvider = { [METRIC_DIMENSIONS.provider]: provider };
          return [
            relayMetric(METRIC_NAMES.delivered, byProvider).with({ label: `Delivered (${provider})` }),
            relayMetric(METRIC_NAMES.bounced, byProvider).with({ label: `Bounced (${provider})` }),
            relayMetric(METRIC_NAMES.complained, byProvider).with({ label: `Complained (${provider})` }),
          ];
        }),
        width: 24,
      }),
      new GraphWidget({
        title: 'Addresses suppressed, by cause',
        left: [...BOUNCE_CAUSES, 'complaint'].map((cause) =>
          relayMetric(METRIC_NAMES.suppressionAdded, { [METRIC_DIMENSIONS.cause]: cause }).with({
            label: cause,
          }),
        ),
        width: 24,
      }),
    );
    dashboard.addWidgets(
      new GraphWidget({
        title: 'Outbox depth and oldest message age',
        left: sendQueues.map(([queue, name]) =>
          queue.metricApproximateNumberOfMessagesVisible({
            statistic: 'Maximum',
            period: SHORT_PERIOD,
            label: `Messages waiting (${name})`,
          }),
        ),
        right: sendQueues.map(([queue, name]) =>
          queue.metricApproximateAgeOfOldestMessage({
            statistic: 'Maximum',
            period: SHORT_PERIOD,
            label: `Oldest message age, seconds (${name})`,
          }),
        ),
        rightAnnotations: [threshold(outboxAgeMinutes * 60, 'alarm', '#d62728')],
        width,
      }),
      new GraphWidget({
        title: 'Dead-letter queue depth',
        left: [
          props.deadLetterQueue.metricApproximateNumberOfMessagesVisible({
            statistic: 'Maximum',
            period: SHORT_PERIOD,
            label: 'Dead-lettered messages',
          }),
          ...(props.feedbackDeadLetterQueue
            ? [
                props.feedbackDeadLetterQueue.metricApproximateNumberOfMessagesVisible({
                  statistic: 'Maximum',
                  period: SHORT_PERIOD,
                  label: 'Feedback not processed (SES events)',
                }),
              ]
            : []),
        ],
        width,
      }),
    );
    dashboard.addWidgets(
      new GraphWidget({
        title: 'Send latency p50/p90/p99 per provider',
        left: this.providers.flatMap((provider) =>
          ['p50', 'p90', 'p99'].map((statistic) =>
            relayMetric(METRIC_NAMES.sendLatency, { [METRIC_DIMENSIONS.provider]: provider }, statistic).with(
              {
                label: `${provider} ${statistic}`,
              },
            ),
          ),
        ),
        width,
      }),
      new GraphWidget({
        title: 'End-to-end latency p50/p99',
        left: this.providers.flatMap((provider) =>
          ['p50', 'p99'].map((statistic) =>
            relayMetric(
              METRIC_NAMES.endToEndLatency,
              { [METRIC_DIMENSIONS.provider]: provider },
              statistic,
            ).with({ label: `${provider} ${statistic}` }),
          ),
        ),
        width,
      }),
    );
    dashboard.addWidgets(
      new GraphWidget({
        title: 'Fallbacks',
        left: perProvider(METRIC_NAMES.fallbackUsed),
        ...(chains.fallbacks.length > 0 && {
          right: [this.fallbackRate(chains)],
          rightAnnotations: [threshold(fallbackRate, 'alarm', '#d62728')],
        }),
        width,
      }),
      new GraphWidget({
        title: 'Send function errors and throttles',
        left: sendFunctions.flatMap(([fn, name]) => [
          fn.metricErrors({ statistic: 'Sum', period: SHORT_PERIOD, label: `Errors (${name})` }),
          fn.metricThrottles({ statistic: 'Sum', period: SHORT_PERIOD, label: `Throttles (${name})` }),
        ]),
        width,
      }),
    );
    dashboard.addWidgets(
      new GraphWidget({
        title: 'Pacing: messages waiting for a provider limit, and sent through the next provider',
        left: [
          ...perProvider(METRIC_NAMES.paced).map((metric) =>
            metric.with({ label: `${metric.label} waiting` }),
          ),
          ...perProvider(METRIC_NAMES.spilledOver).map((metric) =>
            metric.with({ label: `${metric.label} spilled over` }),
          ),
        ],
        width,
      }),
      new GraphWidget({
        title: 'Pacing: sends that found the day used up',
        left: perProvider(METRIC_NAMES.dailyCapReached),
        width,
      }),
    );
    if (props.sesConfigured) {
      dashboard.addWidgets(
        new GraphWidget({
          title: 'SES reputation: bounce rate',
          left: [sesReputationMetric('Reputation.BounceRate').with({ label: 'Reputation.BounceRate' })],
          leftAnnotations: [threshold(sesReputation.bounceRate, 'alarm', '#d62728')],
          width,
        }),
        new GraphWidget({
          title: 'SES reputation: complaint rate',
          left: [sesReputationMetric('Reputation.ComplaintRate').with({ label: 'Reputation.ComplaintRate' })],
          leftAnnotations: [threshold(sesReputation.complaintRate, 'alarm', '#d62728')],
          width,
        }),
      );
    }
    return dashboard;
  }
}

/**
 * One of the relay's own metrics. Powertools adds the `service` dimension to every dimension set it
 * writes, so the metric is only found with it.
 */
function relayMetric(
  name: MetricName,
  dimensions: Record<string, string>,
  statistic = 'Sum',
  period = SHORT_PERIOD,
): Metric {
  return new Metric({
    namespace: METRICS_NAMESPACE,
    metricName: name,
    dimensionsMap: { [METRIC_DIMENSIONS.service]: METRICS_SERVICE, ...dimensions },
    statistic,
    period,
  });
}

function sesReputationMetric(name: 'Reputation.BounceRate' | 'Reputation.ComplaintRate'): Metric {
  return new Metric({
    namespace: 'AWS/SES',
    metricName: name,
    statistic: 'Maximum',
    period: SES_REPUTATION_PERIOD,
  });
}

/** The metric itself, or the largest of the metrics at each period (FILL: a gap is not a maximum). */
function largestOf(metrics: readonly IMetric[], label: string): IMetric {
  if (metrics.length === 1) return metrics[0] as IMetric;
  const usingMetrics = Object.fromEntries(metrics.map((metric, index) => [`m${index}`, metric]));
  return new MathExpression({
    expression: `MAX([${Object.keys(usingMetrics)
      .map((id) => `FILL(${id}, 0)`)
      .join(', ')}])`,
    usingMetrics,
    period: SHORT_PERIOD,
    label,
  });
}

/** The metric itself, or the sum of the metrics at each period. */
function sumOf(metrics: readonly IMetric[], label: string): IMetric {
  if (metrics.length === 1) return metrics[0] as IMetric;
  const usingMetrics = Object.fromEntries(metrics.map((metric, index) => [`m${index}`, metric]));
  return new MathExpression({
    expression: Object.keys(usingMetrics)
      .map((id) => `FILL(${id}, 0)`)
      .join(' + '),
    usingMetrics,
    period: SHORT_PERIOD,
    label,
  });
}

/** The provider name of Amazon SES: its events report bounces and complaints. */
const SES: ProviderName = 'ses';

/** The providers a chain has (their Sent), and those second or later in some chain (their FallbackUsed). */
interface ProviderChains {
  readonly sending: readonly ProviderName[];
  readonly fallbacks: readonly ProviderName[];
}

/** Without routes, a sender's chain is the providers that cover it, in `providers` order. */
function providerChains(
  providers: readonly ProviderName[],
  routes: RelayMonitoringProps['routes'],
): ProviderChains {
  const chains = routes?.map((route) => route.providers) ?? [providers];
  const sending = new Set(chains.flat());
  const fallbacks = new Set(chains.flatMap((chain) => chain.slice(1)));
  return {
    sending: providers.filter((provider) => sending.has(provider)),
    fallbacks: providers.filter((provider) => fallbacks.has(provider)),
  };
}

/**
 * The providers paced to a recipients-per-day limit (per mailbox, per provider or for one mailbox):
 * the only ones that write DailyCapReached. For `RelayMonitoringProps.dailyCapProviders`.
 */
export function dailyCapProvidersOf(settings: RelaySettings): ProviderName[] {
  return configuredSections(settings).flatMap(({ definition, section }) =>
    definition
      .pacingOf(section)
      .filter(({ pacing }) =>
        [pacing?.perMailbox, pacing?.perProvider, ...Object.values(pacing?.mailboxes ?? {})].some(
          (limits) => limits?.recipientsPerDay !== undefined,
        ),
      )
      .map(({ provider }) => provider),
  );
}

/** `<stack name>-<construct ids below the stack>`: alarm names that say which relay they watch. */
function readableName(construct: IConstruct): string {
  const stack = Stack.of(construct);
  const scopes = construct.node.scopes;
  const below = scopes.slice(scopes.indexOf(stack) + 1).map((scope) => scope.node.id);
  return [stack.stackName, ...below].join('-');
}
