import { CfnOutput, Stack, type StackProps } from 'aws-cdk-lib';
import type { Construct } from 'constructs';
import type { RelayConfigInput } from './config.ts';
import { MailRelay } from './mail-relay.ts';

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
  }
}
