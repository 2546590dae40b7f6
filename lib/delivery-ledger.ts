import { RemovalPolicy } from 'aws-cdk-lib';
import { AttributeType, BillingMode, ProjectionType, Table, TableEncryption } from 'aws-cdk-lib/aws-dynamodb';
import { Grant, type IGrantable } from 'aws-cdk-lib/aws-iam';
import { Construct } from 'constructs';
import { MESSAGE_ID_INDEX } from '../lambda/core/dynamo-ledger.ts';
import { REPORT_CURSOR_PREFIX } from '../lambda/core/feedback/dynamo-report-cursors.ts';

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
      // One item per message, read and written by its key only: no sort key.
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
    // `mail-relay send` prints the SQS message id; this finds a message by it when it was keyed by its
    // idempotency key. Keys only: the status command then reads the item itself.
    this.table.addGlobalSecondaryIndex({
      indexName: MESSAGE_ID_INDEX,
      partitionKey: { name: 'messageId', type: AttributeType.STRING },
      projectionType: ProjectionType.KEYS_ONLY,
    });
  }

  /**
   * What the send function needs: strongly consistent reads (a batch's entries at once, or one) and
   * conditional writes.
   */
  grantClaims(grantee: IGrantable): Grant {
    // On the table alone: table.grant would add its indexes, which the function never reads.
    return Grant.addToPrincipal({
      grantee,
      actions: ['dynamodb:BatchGetItem', 'dynamodb:GetItem', 'dynamodb:PutItem'],
      resourceArns: [this.table.tableArn],
    });
  }

  /** For operators and tools reading the ledger (`mail-relay status --table`): by key or by SQS message id. */
  grantRead(grantee: IGrantable): Grant {
    return this.table.grant(grantee, 'dynamodb:GetItem', 'dynamodb:Query');
  }
  /** What the feedback functions need to note bounces on entries: UpdateItem, nothing else. */
  grantFeedbackNotes(grantee: IGrantable): Grant {
    return Grant.addToPrincipal({
      grantee,
      actions: ['dynamodb:UpdateItem'],
      resourceArns: [this.table.tableArn],
    });
  }

  /**
   * What the bounce report reader needs: read entries (which provider sent a reported message) and
   * write its own cursor items, and only those: PutItem is limited to `bounce-reports#…` keys.
   */
  grantReportCursors(grantee: IGrantable): Grant {
    Grant.addToPrincipal({
      grantee,
      actions: ['dynamodb:GetItem'],
      resourceArns: [this.table.tableArn],
    });
    // The message id index, by name: table.grant would allow every index (index/*).
    Grant.addToPrincipal({
      grantee,
      actions: ['dynamodb:Query'],
      resourceArns: [`${this.table.tableArn}/index/${MESSAGE_ID_INDEX}`],
    });
    return Grant.addToPrincipal({
      grantee,
      actions: ['dynamodb:PutItem'],
      resourceArns: [this.table.tableArn],
      conditions: { 'ForAllValues:StringLike': { 'dynamodb:LeadingKeys': [`${REPORT_CURSOR_PREFIX}*`] } },
    });
  }
}
