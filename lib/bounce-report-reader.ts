import { join } from 'node:path';
import { Duration } from 'aws-cdk-lib';
import { Rule, RuleTargetInput, Schedule } from 'aws-cdk-lib/aws-events';
import { LambdaFunction } from 'aws-cdk-lib/aws-events-targets';
import type { RetentionDays } from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import type { BounceReportSettings } from '../lambda/bounce-reports/settings.ts';
import {
  DEFAULT_OUTCOME_KINDS,
  FEEDBACK_OUTCOME_KINDS,
  type OutcomeKind,
  outcomeEventSettings,
} from '../lambda/core/outcomes.ts';
import type { GraphSettings } from '../lambda/providers/graph/settings.ts';
import type { BounceReportsConfig } from './config.ts';
import type { DeliveryLedger } from './delivery-ledger.ts';
import type { ProviderCredential } from './provider-credential.ts';
import { REPO_ROOT, RelayFunction } from './relay-function.ts';
import type { SuppressionList } from './suppression-list.ts';

const BOUNCE_REPORT_HANDLER_ENTRY = join(REPO_ROOT, 'lambda', 'bounce-reports', 'handler.ts');

export interface BounceReportReaderProps {
  /** The validated `bounceReports` section. */
  readonly config: BounceReportsConfig;
  /** The relay's Graph settings: the app registration and its credential. */
  readonly graph: GraphSettings;
  readonly graphCredential: ProviderCredential;
  readonly deliveryLedger: DeliveryLedger;
  readonly suppressionList: SuppressionList;
  /** Days a hard bounce keeps a recipient suppressed; absent: until removed. */
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
   * The outcome kinds published (events.publish); the reader publishes bounced and delivered of them.
   *
   * @default DEFAULT_OUTCOME_KINDS
   */
  readonly outcomeKinds?: readonly OutcomeKind[];
  readonly logRetention: RetentionDays;
}

/**
 * Reads non-delivery reports from the sending mailboxes through Microsoft Graph (Mail.Read) on a
 * schedule, so bounces of Graph and SMTP connector sends reach the suppression list, the metrics and
 * the outcome events as SES bounces do. A failed run is not retried by Lambda: the next scheduled run
 * starts where the last one stopped (its cursor is in the ledger table), so nothing is skipped.
 */
export class BounceReportReader extends Construct {
  readonly readerFunction: RelayFunction;
  readonly schedule: Rule;

  constructor(scope: Construct, id: string, props: BounceReportReaderProps) {
    super(scope, id);
    const { config } = props;
    // Undefined when it publishes none of its kinds: no events settings, no events:PutEvents.
    const events = outcomeEventSettings(
      props.outcomeBusName,
      props.outcomeKinds ?? DEFAULT_OUTCOME_KINDS,
      FEEDBACK_OUTCOME_KINDS,
    );
    const settings: BounceReportSettings = {
      graph: props.graph,
      mailboxes: config.mailboxes,
      lookbackMinutes: config.lookbackHours * 60,
      maxMessagesPerMailbox: config.maxMessagesPerMailbox,
      ledger: { tableName: props.deliveryLedger.table.tableName },
      suppression: {
        tableName: props.suppressionList.table.tableName,
        ...(props.suppressionRetentionDays !== undefined && {
          retentionDays: props.suppressionRetentionDays,
        }),
        ...(props.suppressionSoftBounces && { softBounces: props.suppressionSoftBounces }),
      },
      ...(events && { events }),
    };
    // Shorter than the schedule, so two runs do not read the same mailbox at once.
    const timeout = Duration.seconds(Math.min(300, config.scheduleMinutes * 60 - 10));
    this.readerFunction = new RelayFunction(this, 'Function', {
      entry: BOUNCE_REPORT_HANDLER_ENTRY,
      name: 'bounce report reader',
      description:
        'Reads non-delivery reports from the sending mailboxes (Graph, Mail.Read) into suppressions, metrics and outcome events',
      settings,
      timeout,
      memorySize: 512,
      logRetention: props.logRetention,
      retryAttempts: 0,
    });
    props.graphCredential.grantRead(this.readerFunction);
    props.deliveryLedger.grantReportCursors(this.readerFunction);
    props.deliveryLedger.grantFeedbackNotes(this.readerFunction);
    props.suppressionList.grantRecord(this.readerFunction, {
      countSoftBounces: props.suppressionSoftBounces !== undefined,
    });
    if (events) this.readerFunction.allowOutcomeEvents(props.outcomeBusName);
    this.schedule = new Rule(this, 'Schedule', {
      description: `Reads the bounce reports of the relay's sending mailboxes every ${config.scheduleMinutes} minutes`,
      schedule: Schedule.rate(Duration.minutes(config.scheduleMinutes)),
      targets: [
        new LambdaFunction(this.readerFunction, {
          event: RuleTargetInput.fromObject({}),
          retryAttempts: 0,
        }),
      ],
    });
  }
}
