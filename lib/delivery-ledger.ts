import { RemovalPolicy } from 'aws-cdk-lib';
import { AttributeType, BillingMode, Table, TableEncryption } from 'aws-cdk-lib/aws-dynamodb';
import type { Grant, IGrantable } from 'aws-cdk-lib/aws-iam';
import { Construct } from 'constructs';

/**
 * The delivery ledger: one item per message (partition key `key`, the idempotency key or
 * `sqs:<message id>`), so a message SQS delivers twice is sent once, and `mail-relay status` can say
 * what happened to it. Entries expire through TTL (`expiresAt`) after ledger.retentionDays.
 */
export class DeliveryLedger extends Construct {
  readonly table: Table;

  constructor(scope: Construct, id: string) {
    super(scope, id);
    this.table = new Table(this, 'Table', {
      // One item per message, read and written by its key only: no sort key, no index.
      partitionKey: { name: 'key', type: AttributeType.STRING },
      // Traffic follows the mail: bursty, often idle. On demand costs nothing while idle.
      billingMode: BillingMode.PAY_PER_REQUEST,
      // DynamoDB deletes an entry once ledger.retentionDays have passed (epoch seconds the function
      // writes); the function also ignores an expired entry TTL has not removed yet.
      timeToLiveAttribute: 'expiresAt',
      // Items hold addresses of senders, recipients and provider ids; AWS managed key, no grant to manage.
      encryption: TableEncryption.AWS_MANAGED,
      // Restores the ledger after a bad write or an operator's mistake, so sent messages are not sent
      // again; also what cdk-nag AwsSolutions-DDB3 asks for.
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
      // Operational state tied to the outbox: deleting the stack deletes both.
      removalPolicy: RemovalPolicy.DESTROY,
    });
  }

  /** What the send function needs: a strongly consistent read and a conditional write per message. */
  grantClaims(grantee: IGrantable): Grant {
    return this.table.grant(grantee, 'dynamodb:GetItem', 'dynamodb:PutItem');
  }

  /** For operators and tools reading the ledger (`mail-relay status --table`). */
  grantRead(grantee: IGrantable): Grant {
    return this.table.grant(grantee, 'dynamodb:GetItem');
  }
}
