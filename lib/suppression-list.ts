import { RemovalPolicy } from 'aws-cdk-lib';
import { AttributeType, BillingMode, Table, TableEncryption } from 'aws-cdk-lib/aws-dynamodb';
import type { Grant, IGrantable } from 'aws-cdk-lib/aws-iam';
import { Construct } from 'constructs';

/**
 * The suppression list: recipients the relay must not send to (hard bounces, complaints), one item per
 * lower-cased address (partition key `address`) with its reason and date, optionally expiring through
 * TTL (`expiresAt`). The send function drops these recipients from every message.
 */
export class SuppressionList extends Construct {
  readonly table: Table;

  constructor(scope: Construct, id: string) {
    super(scope, id);
    this.table = new Table(this, 'Table', {
      partitionKey: { name: 'address', type: AttributeType.STRING },
      billingMode: BillingMode.PAY_PER_REQUEST,
      timeToLiveAttribute: 'expiresAt',
      encryption: TableEncryption.AWS_MANAGED,
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
      // The record of who bounced or complained protects the sender's reputation: it outlives the stack.
      removalPolicy: RemovalPolicy.RETAIN,
    });
  }

  /** What the send function needs: look up a message's recipients. */
  grantLookup(grantee: IGrantable): Grant {
    return this.table.grant(grantee, 'dynamodb:BatchGetItem', 'dynamodb:GetItem');
  }

  /** Add, remove and list entries (feedback processing, operators). */
  grantManage(grantee: IGrantable): Grant {
    return this.table.grant(
      grantee,
      'dynamodb:BatchGetItem',
      'dynamodb:GetItem',
      'dynamodb:PutItem',
      'dynamodb:DeleteItem',
      'dynamodb:Scan',
    );
  }
}
