import { RemovalPolicy, Validations } from 'aws-cdk-lib';
import { AttributeType, BillingMode, Table, TableEncryption } from 'aws-cdk-lib/aws-dynamodb';
import type { Grant, IGrantable } from 'aws-cdk-lib/aws-iam';
import { Construct } from 'constructs';

/**
 * Where every send function paces its sends (lambda/core/pacing): per key (`graph|mailbox|<address>|…`)
 * a rate schedule, a day's recipient count or a concurrency lease, each changed by one conditional
 * write, and each expiring through TTL (`expiresAt`) once it no longer matters.
 */
export class PacingTable extends Construct {
  readonly table: Table;

  constructor(scope: Construct, id: string) {
    super(scope, id);
    this.table = new Table(this, 'Table', {
      partitionKey: { name: 'key', type: AttributeType.STRING },
      // Writes follow the mail: bursty, often idle, so on demand.
      billingMode: BillingMode.PAY_PER_REQUEST,
      timeToLiveAttribute: 'expiresAt',
      // Keys name sending mailboxes; AWS managed key, so the function needs no KMS grant.
      encryption: TableEncryption.AWS_MANAGED,
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: false },
      removalPolicy: RemovalPolicy.DESTROY,
    });
    Validations.of(this.table).acknowledge({
      id: 'AwsSolutions-DDB3',
      reason:
        'The table holds the schedules and counters of the last minutes and of today, each expiring by TTL: ' +
        'nothing worth restoring, and rebuilt by the traffic itself; point-in-time recovery would only add cost.',
    });
  }

  /** What the send function needs: take and give back its turns. */
  grantPacing(grantee: IGrantable): Grant {
    return this.table.grant(
      grantee,
      'dynamodb:UpdateItem',
      'dynamodb:PutItem',
      'dynamodb:DeleteItem',
      'dynamodb:GetItem',
    );
  }

  /** Read the counters (`mail-relay status`, operators). */
  grantRead(grantee: IGrantable): Grant {
    return this.table.grant(grantee, 'dynamodb:GetItem', 'dynamodb:BatchGetItem', 'dynamodb:Scan');
  }
}
