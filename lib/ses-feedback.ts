import { join } from 'node:path';
import { Duration } from 'aws-cdk-lib';
import { EventBus, Rule } from 'aws-cdk-lib/aws-events';
import { LambdaFunction } from 'aws-cdk-lib/aws-events-targets';
import { SqsDestination } from 'aws-cdk-lib/aws-lambda-destinations';
import type { RetentionDays } from 'aws-cdk-lib/aws-logs';
import {
  ConfigurationSet,
  ConfigurationSetEventDestination,
  EmailSendingEvent,
  EventDestination,
  type IConfigurationSet,
} from 'aws-cdk-lib/aws-ses';
import type { Queue } from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import {
  DEFAULT_OUTCOME_KINDS,
  FEEDBACK_OUTCOME_KINDS,
  type OutcomeKind,
  outcomeEventSettings,
} from '../lambda/core/outcomes.ts';
import type { FeedbackSettings } from '../lambda/core/settings.ts';
import type { DeliveryLedger } from './delivery-ledger.ts';
import { functionDeadLetterQueue, REPO_ROOT, RelayFunction } from './relay-function.ts';
import type { SuppressionList } from './suppression-list.ts';

const FEEDBACK_HANDLER_ENTRY = join(REPO_ROOT, 'lambda', 'feedback', 'handler.ts');

export interface SesFeedbackProps {
  /**
   * An existing configuration set to publish events from (the relay adds one event destination to it).
   *
   * @default - the construct creates one, with reputation metrics
   */
  readonly existingConfigurationSetName?: string;
  readonly suppressionList: SuppressionList;
  /** Where bounces are noted on the message's entry, for `mail-relay status`. */
  readonly deliveryLedger: DeliveryLedger;
  /** Days a hard bounce or complaint keeps a recipient suppressed; absent: until removed. */
  readonly suppressionRetentionDays?: number;
  /**
   * N soft bounces of an address in D days suppress it (config suppression.softBounces); the function
   * then also counts soft bounces in the suppression table.
   *
   * @default - soft bounces never suppress
   */
  readonly suppressionSoftBounces?: { readonly count: number; readonly days: number };
  /** The bus outcome events go to. */
  readonly outcomeBusName: string;
  /**
   * The outcome kinds published (events.publish); the feedback function publishes delivered, bounced
   * and complained of them. `delivered` also subscribes the configuration set to SES delivery events.
   *
   * @default DEFAULT_OUTCOME_KINDS (bounced and complained of the feedback kinds)
   */
  readonly outcomeKinds?: readonly OutcomeKind[];
  readonly logRetention: RetentionDays;
}

/**
 * The SES event types the feedback function acts on, so the configuration set publishes only those:
 * each published event is an EventBridge event on the default bus and a feedback function invocation.
 * Bounce and complaint suppress and count (the bounce and complaint rate alarms); reject, delivery
 * delay and rendering failure are logged, and happen only when something is wrong. Send is never
 * subscribed (the function does nothing with it); delivery only when delivered outcome events are
 * published, as it comes once per message.
 */
export function sesEventTypesFor(outcomeKinds: readonly OutcomeKind[]): EmailSendingEvent[] {
  return [
    ...(outcomeKinds.includes('delivered') ? [EmailSendingEvent.DELIVERY] : []),
    EmailSendingEvent.BOUNCE,
    EmailSendingEvent.COMPLAINT,
    EmailSendingEvent.REJECT,
    EmailSendingEvent.DELIVERY_DELAY,
    EmailSendingEvent.RENDERING_FAILURE,
  ];
}

/**
 * SES feedback: the configuration set every SES send uses, publishing the events the relay acts on
 * (bounce, complaint, reject, delivery delay, rendering failure; delivery when asked for: see
 * sesEventTypesFor) to the default EventBridge bus, where a rule hands them to the feedback function.
 * Hard bounces and complaints go on the suppression list.
 *
 * An event the function fails on is retried (EventBridge for delivery, Lambda for errors) and then
 * kept in the dead-letter queue, with the error, rather than lost.
 */
export class SesFeedback extends Construct {
  readonly configurationSet: IConfigurationSet;
  readonly feedbackFunction: RelayFunction;
  /** SES events the feedback function could not take or process after the retries. */
  readonly deadLetterQueue: Queue;

  constructor(scope: Construct, id: string, props: SesFeedbackProps) {
    super(scope, id);
    const outcomeKinds = props.outcomeKinds ?? DEFAULT_OUTCOME_KINDS;
    // Undefined when it publishes none of its kinds: no events settings, no events:PutEvents.
    const events = outcomeEventSettings(props.outcomeBusName, outcomeKinds, FEEDBACK_OUTCOME_KINDS);
    this.configurationSet =
      props.existingConfigurationSetName !== undefined
        ? ConfigurationSet.fromConfigurationSetName(
            this,
            'ConfigurationSet',
            props.existingConfigurationSetName,
          )
        : new ConfigurationSet(this, 'ConfigurationSet', {
            // AWS/SES Reputation.BounceRate and ComplaintRate for this set too, beside the account's.
            reputationMetrics: true,
            sendingEnabled: true,
          });
    // SES publishes to the default bus only.
    const defaultBus = EventBus.fromEventBusName(this, 'DefaultBus', 'default');
    new ConfigurationSetEventDestination(this, 'ToEventBridge', {
      configurationSet: this.configurationSet,
      destination: EventDestination.eventBus(defaultBus),
      events: sesEventTypesFor(outcomeKinds),
    });

    this.deadLetterQueue = functionDeadLetterQueue(
      this,
      'DeadLetterQueue',
      'of the rule target and of the function (on-failure destination)',
    );

    const settings: FeedbackSettings = {
      suppression: {
        tableName: props.suppressionList.table.tableName,
        ...(props.suppressionRetentionDays !== undefined && {
          retentionDays: props.suppressionRetentionDays,
        }),
        ...(props.suppressionSoftBounces && { softBounces: props.suppressionSoftBounces }),
      },
      ...(events && { events }),
      ledger: { tableName: props.deliveryLedger.table.tableName },
    };
    this.feedbackFunction = new RelayFunction(this, 'Function', {
      entry: FEEDBACK_HANDLER_ENTRY,
      name: 'feedback function',
      description:
        'Turns SES bounces and complaints (and deliveries, when asked for) into suppressions, metrics and outcome events',
      settings,
      timeout: Duration.seconds(30),
      memorySize: 256,
      logRetention: props.logRetention,
      // A payload it cannot read or a suppression it cannot write: two more tries, then the queue,
      // where the destination record carries the error message.
      retryAttempts: 2,
      onFailure: new SqsDestination(this.deadLetterQueue),
    });
    props.suppressionList.grantRecord(this.feedbackFunction, {
      countSoftBounces: props.suppressionSoftBounces !== undefined,
    });
    props.deliveryLedger.grantFeedbackNotes(this.feedbackFunction);
    if (events) this.feedbackFunction.allowOutcomeEvents(props.outcomeBusName);

    new Rule(this, 'Rule', {
      description: 'SES events of the mail relay configuration set, to the feedback function',
      eventPattern: {
        source: ['aws.ses'],
        detail: { mail: { tags: { 'ses:configuration-set': [this.configurationSet.configurationSetName] } } },
      },
      targets: [
        new LambdaFunction(this.feedbackFunction, {
          deadLetterQueue: this.deadLetterQueue,
          retryAttempts: 8,
          maxEventAge: Duration.hours(24),
        }),
      ],
    });
  }
}
