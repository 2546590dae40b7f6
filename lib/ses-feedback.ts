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
  /** The bus outcome events go to. */
  readonly outcomeBusName: string;
  readonly logRetention: RetentionDays;
}

/**
 * SES feedback: the configuration set every SES send uses, publishing its events (send, delivery,
 * bounce, complaint, reject, delivery delay, rendering failure) to the default EventBridge bus, where
 * a rule hands them to the feedback function. Hard bounces and complaints go on the suppression list.
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
      events: [
        EmailSendingEvent.SEND,
        EmailSendingEvent.DELIVERY,
        EmailSendingEvent.BOUNCE,
        EmailSendingEvent.COMPLAINT,
        EmailSendingEvent.REJECT,
        EmailSendingEvent.DELIVERY_DELAY,
        EmailSendingEvent.RENDERING_FAILURE,
      ],
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
      },
      events: { busName: props.outcomeBusName },
      ledger: { tableName: props.deliveryLedger.table.tableName },
    };
    this.feedbackFunction = new RelayFunction(this, 'Function', {
      entry: FEEDBACK_HANDLER_ENTRY,
      name: 'feedback function',
      description:
        'Turns SES bounces, complaints and deliveries into suppressions, metrics and outcome events',
      settings,
      timeout: Duration.seconds(30),
      memorySize: 256,
      logRetention: props.logRetention,
      // A payload it cannot read or a suppression it cannot write: two more tries, then the queue,
      // where the destination record carries the error message.
      retryAttempts: 2,
      onFailure: new SqsDestination(this.deadLetterQueue),
    });
    props.suppressionList.grantRecord(this.feedbackFunction);
    props.deliveryLedger.grantFeedbackNotes(this.feedbackFunction);
    this.feedbackFunction.allowOutcomeEvents(props.outcomeBusName);

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
