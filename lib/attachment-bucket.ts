import { Duration, RemovalPolicy, Validations } from 'aws-cdk-lib';
import { Grant, type IGrantable } from 'aws-cdk-lib/aws-iam';
import { BlockPublicAccess, Bucket, BucketEncryption, ObjectOwnership } from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';

export interface AttachmentBucketProps {
  /**
   * How long an uploaded attachment is kept before S3 deletes it (whole days). The relay does not
   * delete objects after sending, so this must cover the time a message may wait in the outbox.
   *
   * @default Duration.days(7)
   */
  readonly retentionPeriod?: Duration;
}

/**
 * The S3 bucket producers upload attachments to that are too large to travel inside an SQS message
 * (1 MiB at most); messages reference them as `{ "s3": { "bucket", "key" } }`.
 *
 * Private (all public access blocked, ACLs disabled), encrypted with S3-managed keys, TLS only.
 * Objects expire after the retention period and abandoned multipart uploads after a day, so the
 * bucket holds only what is waiting to be sent.
 */
export class AttachmentBucket extends Construct {
  readonly bucket: Bucket;

  constructor(scope: Construct, id: string, props: AttachmentBucketProps = {}) {
    super(scope, id);

    this.bucket = new Bucket(this, 'Bucket', {
      blockPublicAccess: BlockPublicAccess.BLOCK_ALL,
      objectOwnership: ObjectOwnership.BUCKET_OWNER_ENFORCED,
      // S3-managed keys, so producers and the function need no KMS grant.
      encryption: BucketEncryption.S3_MANAGED,
      enforceSSL: true,
      // Objects are written once and read once; old versions would only outlive the lifecycle rule.
      versioned: false,
      lifecycleRules: [
        {
          expiration: props.retentionPeriod ?? Duration.days(7),
          abortIncompleteMultipartUploadAfter: Duration.days(1),
        },
      ],
      // Retained rather than destroyed: CloudFormation cannot delete a bucket that still holds objects,
      // so DESTROY would make deleting the stack fail whenever an attachment is waiting, and emptying it
      // first needs a custom-resource function. A retained bucket empties itself through the lifecycle
      // rule and then costs nothing; delete it by hand if you like.
      removalPolicy: RemovalPolicy.RETAIN,
    });

    Validations.of(this.bucket).acknowledge({
      id: 'AwsSolutions-S1',
      reason:
        'Objects are transient (expired after the retention period) and read only by the relay; the audit ' +
        'trail for object-level access belongs in CloudTrail data events, which an account enables centrally, ' +
        'rather than a second bucket of access logs per relay.',
    });
  }

  /** Lets a producer upload attachments (PutObject and multipart uploads, on this bucket's objects only). */
  grantPut(grantee: IGrantable): Grant {
    return this.bucket.grantPut(grantee);
  }

  /**
   * Lets the grantee read objects: GetObject on the objects and ListBucket on the bucket, the latter so
   * that a missing key is answered with 404 NoSuchKey (a permanent failure) instead of 403 AccessDenied.
   */
  grantRead(grantee: IGrantable): Grant {
    // Narrower than Bucket.grantRead (GetObject*, GetBucket*, List*): the relay only downloads objects.
    return Grant.addToPrincipal({
      grantee,
      actions: ['s3:GetObject'],
      resourceArns: [this.bucket.arnForObjects('*')],
    }).combine(
      Grant.addToPrincipal({ grantee, actions: ['s3:ListBucket'], resourceArns: [this.bucket.bucketArn] }),
    );
  }
}
