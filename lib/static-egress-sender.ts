import type { Duration } from 'aws-cdk-lib';
import { type IQueue, Queue, QueueEncryption } from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import type { RelaySettings } from '../lambda/send/settings.ts';
import { SendFunction, type SendFunctionProps } from './send-function.ts';
import type { StaticEgress } from './static-egress.ts';

export interface StaticEgressSenderProps {
  /** The VPC, NATs and Elastic IPs the function leaves from. */
  readonly egress: StaticEgress;
  /** Where messages go after `maxReceiveCount` receives: the relay's one dead-letter queue. */
  readonly deadLetterQueue: IQueue;
  readonly maxReceiveCount: number;
  /** At least 6 x the function timeout, as for the outbox. */
  readonly visibilityTimeout: Duration;
  /** As the outbox's (queue.retentionDays, at most SQS's 14 days). */
  readonly retentionPeriod: Duration;
  /** The function's settings, given the URL of the queue it consumes (its retries and waits go there). */
  readonly settingsFor: (queueUrl: string) => RelaySettings;
  /** Timeout, memory and log retention, as the send function's. */
  readonly function: Omit<SendFunctionProps, 'settings' | 'vpc' | 'vpcSubnets' | 'securityGroups'>;
}

/**
 * The send function of the providers that must leave from the static Elastic IPs (an Exchange Online
 * connector trusts the IP): the only function in the VPC, so only its traffic pays the NAT. The send
 * function outside the VPC puts their messages on this one's queue when a route reaches one of them
 * (lambda/core/relay: staticEgress); this function resumes the route there, with the same ledger,
 * suppression list, pacing and dead-letter queue as the other.
 */
export class StaticEgressSender extends Construct {
  /** What the send function passes the messages to. Encrypted, TLS only, dead-letters to the relay's DLQ. */
  readonly queue: Queue;
  readonly sendFunction: SendFunction;

  constructor(scope: Construct, id: string, props: StaticEgressSenderProps) {
    super(scope, id);
    this.queue = new Queue(this, 'Queue', {
      encryption: QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      retentionPeriod: props.retentionPeriod,
      visibilityTimeout: props.visibilityTimeout,
      deadLetterQueue: { queue: props.deadLetterQueue, maxReceiveCount: props.maxReceiveCount },
    });
    this.sendFunction = new SendFunction(this, 'Function', {
      ...props.function,
      settings: props.settingsFor(this.queue.queueUrl),
      vpc: props.egress.vpc,
      vpcSubnets: props.egress.subnets,
      securityGroups: [props.egress.securityGroup],
      description:
        'Sends the mail relay messages of the providers that must leave from its static Elastic IPs (SMTP connectors)',
    });
  }
}
