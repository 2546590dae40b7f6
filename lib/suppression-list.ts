import { RemovalPolicy } from 'aws-cdk-lib';
import { AttributeType, BillingMode, Table, TableEncryption } from 'aws-cdk-lib/aws-dynamodb';
import type { Grant, IGrantable } from 'aws-cdk-lib/aws-iam';
import { Construct } from 'constructs';

/**
 * The suppression list: recipients the relay must not send to (hard bounces, complaints), one item per
 * lower-cased address (partition key `address`) with its reason and date, optionally expiring through
 * TTL (`expiresAt`), with its cause and evidence. The send function drops these recipients from every
 * message. When a soft-bounce threshold is configured, the table also holds a counter per address
 * that soft-bounced (key `soft-bounces:<address>`, expiring with its window).
 */
export class SuppressionList extends Construct {
  readonly table: Table;

  constructor(scope: Construct, id: string) {
    super(scope, id);
    this.table = new Table(this, 'Table', {
      // One item per lower-cased recipient, looked up by address only (BatchGetItem per message).
      partitionKey: { name: 'address', type: AttributeType.STRING },
      // Lookups follow the mail and writes follow bounces: bursty, often idle, so on demand.
      billingMode: BillingMode.PAY_PER_REQUEST,
      // An entry may be temporary (a soft bounce, a complaint to review): DynamoDB deletes it once
      // expiresAt (epoch seconds) has passed. Entries without the attribute stay until removed.
      timeToLiveAttribute: 'expiresAt',
      // Items are recipients' addresses; AWS managed key, so the function needs no KMS grant.
      encryption: TableEncryption.AWS_MANAGED,
      // The list is history that cannot be rebuilt (bounces and complaints are reported once):
      // recover it from a bad bulk edit. Also what cdk-nag AwsSolutions-DDB3 asks for.
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
      // The record of who bounced or complained protects the sender's reputation: it outlives the stack.
      removalPolicy: RemovalPolicy.RETAIN,
    });
  }

  /** What the send function needs: look up a message's recipients. */
  grantLookup(grantee: IGrantable): Grant {
    return this.table.grant(grantee, 'dynamodb:BatchGetItem', 'dynamodb:GetItem');
  }

  /**
   * What the feedback functions need: write entries, and count soft bounces (the soft-bounce
   * threshold: a conditional UpdateItem per soft bounce, a consistent GetItem when that condition
   * fails). PutItem only when no threshold is configured.
   */
  grantRecord(grantee: IGrantable, options: { readonly countSoftBounces?: boolean } = {}): Grant {
    return options.countSoftBounces
      ? this.table.grant(grantee, 'dynamodb:PutItem', 'dynamodb:UpdateItem', 'dynamodb:GetItem')
      : this.table.grant(grantee, 'dynamodb:PutItem');
  }

  /** Add, remove and list entries (operators, `mail-relay suppression`). */
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
