import { CfnOutput, Fn, Stack, type StackProps } from 'aws-cdk-lib';
import type { Construct } from 'constructs';
import type { RelayConfigInput } from './config.ts';
import { MailRelay } from './mail-relay.ts';
import type { StaticEgress } from './static-egress.ts';

export interface MailRelayStackProps extends StackProps {
  /** The relay configuration, usually loaded from `mail-relay.config.json`. */
  readonly config: RelayConfigInput;
}

/** A stack holding one mail relay and the outputs producers and operators need. */
export class MailRelayStack extends Stack {
  readonly relay: MailRelay;

  constructor(scope: Construct, id: string, props: MailRelayStackProps) {
    const { config, ...stackProps } = props;
    super(scope, id, stackProps);

    this.relay = new MailRelay(this, 'Relay', config);

    new CfnOutput(this, 'OutboxQueueUrl', {
      description: 'Producers send mail requests to this SQS queue',
      value: this.relay.outbox.queueUrl,
    });
    new CfnOutput(this, 'DeadLetterQueueUrl', {
      description: 'Mail requests that could not be sent, with the reason in their message attributes',
      value: this.relay.deadLetterQueue.queueUrl,
    });
    new CfnOutput(this, 'SendFunctionName', {
      description: 'The Lambda function that sends the outbox through the configured providers',
      value: this.relay.sendFunction.functionName,
    });
    if (this.relay.staticEgressSender) {
      new CfnOutput(this, 'StaticEgressQueueUrl', {
        description:
          'The queue of the static-egress function: messages of the providers that leave from the Elastic IPs wait here',
        value: this.relay.staticEgressSender.queue.queueUrl,
      });
      new CfnOutput(this, 'StaticEgressFunctionName', {
        description: 'The send function in the VPC, for the providers that leave from the Elastic IPs',
        value: this.relay.staticEgressSender.sendFunction.functionName,
      });
    }
    new CfnOutput(this, 'DeliveryLedgerTableName', {
      description: 'What happened to each message: mail-relay status <id> --table <this> --region <region>',
      value: this.relay.deliveryLedger.table.tableName,
    });
    new CfnOutput(this, 'SuppressionListTableName', {
      description: 'Recipients the relay does not send to (hard bounces, complaints)',
      value: this.relay.suppressionList.table.tableName,
    });
    if (this.relay.pacingTable) {
      new CfnOutput(this, 'PacingTableName', {
        description:
          "Each mailbox's and provider's use of its limits: mail-relay status --pacing-table <this>",
        value: this.relay.pacingTable.table.tableName,
      });
    }
    if (this.relay.attachmentBucket) {
      new CfnOutput(this, 'AttachmentBucketName', {
        description:
          'Upload attachments larger than ~700 KB here and reference them as {"s3": {"bucket", "key"}}',
        value: this.relay.attachmentBucket.bucket.bucketName,
      });
    }
    // Also when the secret was given (credentialSecretArn), so scripts find it the same way either way.
    if (this.relay.graphCredential) {
      new CfnOutput(this, 'GraphCredentialSecretArn', {
        description: 'Put the Microsoft Graph app credential (JSON) in this secret',
        value: this.relay.graphCredential.secret.secretArn,
      });
    }
    if (this.relay.sesFeedback) {
      new CfnOutput(this, 'SesConfigurationSetName', {
        description: 'Every SES send uses this configuration set; its events feed the suppression list',
        value: this.relay.sesFeedback.configurationSet.configurationSetName,
      });
      new CfnOutput(this, 'FeedbackDeadLetterQueueUrl', {
        description: 'SES events and bounce reports the relay could not process, with the error',
        value: this.relay.sesFeedback.deadLetterQueue.queueUrl,
      });
    }
    new CfnOutput(this, 'AlarmTopicArn', {
      description: 'Every relay alarm notifies this SNS topic (on ALARM and on OK): subscribe your endpoints',
      value: this.relay.monitoring.alarmTopic.topicArn,
    });
    if (this.relay.monitoring.dashboard) {
      new CfnOutput(this, 'DashboardName', {
        description: "The relay's CloudWatch dashboard (monitoring.dashboard)",
        value: this.relay.monitoring.dashboard.dashboardName,
      });
    }
    if (this.relay.staticEgress) this.addEgressOutputs(this.relay.staticEgress);
  }

  /**
   * The static addresses and what to paste where: the Exchange Online inbound connector and the SPF
   * record. Elastic IPs given by allocation ID have addresses CloudFormation cannot read, so then the
   * outputs hold a placeholder per allocation ID and a command that looks the addresses up.
   */
  private addEgressOutputs(egress: StaticEgress): void {
    const known = egress.egressIps !== undefined;
    const ips =
      egress.egressIps ?? egress.addresses.map((address) => `<public IP of ${address.allocationId}>`);
    const reusedNote = known
      ? ''
      : ' (replace each <public IP of eipalloc-…> with the address EgressIpLookupCommand prints: the Elastic IPs were given by allocation ID, whose addresses CloudFormation cannot read)';

    new CfnOutput(this, 'EgressAllocationIds', {
      description:
        'Allocation IDs of the Elastic IPs the send function leaves from (egress.elasticIpAllocationIds to reuse them)',
      value: Fn.join(
        ',',
        egress.addresses.map((address) => address.allocationId),
      ),
    });
    if (known) {
      new CfnOutput(this, 'EgressIps', {
        description:
          'Static public IPv4 addresses the send function leaves from (kept when the stack is deleted)',
        value: Fn.join(',', ips),
      });
    } else {
      new CfnOutput(this, 'EgressIpLookupCommand', {
        description: 'Prints the static public IPv4 addresses the send function leaves from',
        value: Fn.join('', [
          'aws ec2 describe-addresses --allocation-ids ',
          ...interleave(
            egress.addresses.map((address) => address.allocationId),
            ' ',
          ),
          ' --query "Addresses[].PublicIp" --output text',
        ]),
      });
    }
    new CfnOutput(this, 'InboundConnectorCommand', {
      description: `Exchange Online PowerShell: an inbound connector that accepts the relay's mail by its IP${reusedNote}`,
      value: Fn.join('', [
        'New-InboundConnector -Name "mail-relay" -ConnectorType OnPremises -SenderDomains * -SenderIPAddresses ',
        ...interleave(ips, ','),
        ' -RequireTls $true -RestrictDomainsToIPAddresses $false',
      ]),
    });
    new CfnOutput(this, 'SpfRecord', {
      description: `Merge these ip4: mechanisms into your domain's SPF record${reusedNote}`,
      value: Fn.join('', [
        'v=spf1 ',
        ...ips.flatMap((ip) => ['ip4:', ip, ' ']),
        'include:spf.protection.outlook.com -all',
      ]),
    });
  }
}

/** The items with a separator between each two, for one flat Fn::Join. */
function interleave(items: string[], separator: string): string[] {
  return items.flatMap((item, index) => (index === 0 ? [item] : [separator, item]));
}
