import { join } from 'node:path';
import {
  Annotations,
  Aws,
  CfnCondition,
  CfnOutput,
  Duration,
  Fn,
  RemovalPolicy,
  Stack,
  Token,
  Validations,
} from 'aws-cdk-lib';
import { Grant, type IGrantable, PolicyStatement, Role, ServicePrincipal } from 'aws-cdk-lib/aws-iam';
import { Key } from 'aws-cdk-lib/aws-kms';
import { SqsDestination } from 'aws-cdk-lib/aws-lambda-destinations';
import { RetentionDays } from 'aws-cdk-lib/aws-logs';
import {
  BlockPublicAccess,
  Bucket,
  BucketEncryption,
  type CfnBucket,
  EventType,
  ObjectOwnership,
} from 'aws-cdk-lib/aws-s3';
import { LambdaDestination } from 'aws-cdk-lib/aws-s3-notifications';
import { Secret } from 'aws-cdk-lib/aws-secretsmanager';
import {
  CfnMailManagerIngressPoint,
  CfnMailManagerRuleSet,
  CfnMailManagerTrafficPolicy,
} from 'aws-cdk-lib/aws-ses';
import type { IQueue, Queue } from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { ConfigurationError } from '../lambda/core/validation.ts';
import {
  cidrVersion,
  INGRESS_PREFIX,
  INGRESS_SMTP_PORT,
  type IngressClientConfig,
  ingestSettingsFor,
  ingressClientId,
  ingressMaxMessageBytes,
  type RelayConfig,
} from './config.ts';
import { functionDeadLetterQueue, REPO_ROOT, RelayFunction } from './relay-function.ts';

export const INGEST_HANDLER_ENTRY = join(REPO_ROOT, 'lambda', 'ingest', 'handler.ts');

/**
 * Regions where a public authenticated Mail Manager endpoint takes only the `FIPS` TLS policy
 * (`REQUIRED` is not offered there; docs.aws.amazon.com/ses/latest/dg/eb-ingress.html, "TLS policy").
 */
const FIPS_TLS_REGIONS = [
  'us-east-1',
  'us-east-2',
  'us-west-1',
  'us-west-2',
  'ca-central-1',
  'ca-west-1',
  'us-gov-east-1',
  'us-gov-west-1',
] as const;

/** The `Ingress<Name>` output names taken in each stack, with the SmtpIngress that took them. */
const OUTPUT_PREFIXES = new WeakMap<Stack, Map<string, string>>();

/** What Mail Manager's S3 action does when the write fails: nothing else is left to do with the message. */
const WRITE_FAILURE_POLICY = 'DROP';

export interface SmtpIngressProps {
  /** The validated relay configuration; its `ingress` section lists the clients. */
  readonly config: RelayConfig;

  /** The outbox the ingest function puts the relay messages on. */
  readonly outbox: IQueue;

  /**
   * How long the ingest function's log group keeps its logs.
   *
   * @default RetentionDays.ONE_MONTH
   */
  readonly logRetention?: RetentionDays;
}

/** What one client of the front door is made of. */
export interface SmtpIngressClient {
  readonly name: string;
  /** `{"password": "…"}`, generated; Mail Manager reads it, the client is configured with it. */
  readonly secret: Secret;
  /** Allows the client's addresses, with TLS 1.2 or later, and refuses everyone else. */
  readonly trafficPolicy: CfnMailManagerTrafficPolicy;
  /** Writes every accepted message to `ingress/<name>/` in the bucket. */
  readonly ruleSet: CfnMailManagerRuleSet;
  /** The authenticated endpoint: host `attrARecord`, user name `attrIngressPointId`. */
  readonly ingressPoint: CfnMailManagerIngressPoint;
}

/**
 * The SMTP front door on Amazon SES Mail Manager, for applications that only speak SMTP.
 *
 * Each client gets an authenticated ingress endpoint of its own (Mail Manager takes one credential per
 * endpoint): STARTTLS on 587 or 25, the endpoint ID as user name and a generated password kept in
 * Secrets Manager (encrypted with this construct's customer managed key, which Mail Manager may use
 * through Secrets Manager only), a traffic policy that refuses every address but the client's and TLS
 * below 1.2, and a rule set that writes each accepted message to `ingress/<client>/` in a private
 * bucket. The bucket's notification starts the ingest function, which checks the message against the
 * client's senders and puts it on the outbox; what it refuses or cannot process lands in its
 * dead-letter queue, with the reason. Objects expire after `ingress.retentionDays`.
 */
export class SmtpIngress extends Construct {
  /** Where Mail Manager stores the submissions, under `ingress/<client>/`. */
  readonly bucket: Bucket;
  /** Encrypts the clients' secrets; Mail Manager may decrypt through Secrets Manager. */
  readonly secretKey: Key;
  /** The role Mail Manager's rule sets write to the bucket with. */
  readonly mailManagerRole: Role;
  /** Turns each stored submission into a relay message on the outbox. */
  readonly ingestFunction: RelayFunction;
  /** Submissions the ingest function refused (with the reason) or failed on after its retries. */
  readonly deadLetterQueue: Queue;
  /** One per configured client, in the configuration's order. */
  readonly clients: SmtpIngressClient[];

  private tlsCondition?: CfnCondition;

  constructor(scope: Construct, id: string, props: SmtpIngressProps) {
    super(scope, id);
    const { config } = props;
    if (!config.ingress) {
      throw new ConfigurationError(`Invalid SmtpIngress props at ${this.node.path}`, [
        'config.ingress: required (the clients that submit over SMTP)',
      ]);
    }

    this.bucket = new Bucket(this, 'Bucket', {
      // Mail Manager's S3 action takes bucket names of at most 62 characters, and a name CloudFormation
      // generates may have 63: this one has 59, unique per construct and per stack (the stack ID's
      // UUID part), so a bucket retained from a deleted stack never blocks a new one.
      bucketName: Fn.join('-', [
        'relay-ingress',
        this.node.addr.slice(0, 8),
        Fn.select(2, Fn.split('/', Aws.STACK_ID)),
      ]),
      blockPublicAccess: BlockPublicAccess.BLOCK_ALL,
      objectOwnership: ObjectOwnership.BUCKET_OWNER_ENFORCED,
      // S3-managed keys, so neither Mail Manager nor the functions need a KMS grant.
      encryption: BucketEncryption.S3_MANAGED,
      enforceSSL: true,
      versioned: false,
      lifecycleRules: [
        {
          expiration: Duration.days(config.ingress.retentionDays),
          abortIncompleteMultipartUploadAfter: Duration.days(1),
        },
      ],
      // Retained like the attachment bucket: it may hold messages still waiting to be sent, and it
      // empties itself through the lifecycle rule.
      removalPolicy: RemovalPolicy.RETAIN,
    });
    Validations.of(this.bucket).acknowledge({
      id: 'AwsSolutions-S1',
      reason:
        'Objects are submissions kept only until the relay sent them (expired after ingress.retentionDays), ' +
        'written by Mail Manager and read by the relay; object-level audit belongs in CloudTrail data events, ' +
        'which an account enables centrally, rather than a second bucket of access logs per relay.',
    });

    this.secretKey = new Key(this, 'SecretKey', {
      description: `Encrypts the SMTP passwords of the ingress clients of ${this.node.path}`,
      enableKeyRotation: true,
      // Only the clients' secrets use it, and they are deleted with the stack.
      removalPolicy: RemovalPolicy.DESTROY,
    });
    // Mail Manager reads an endpoint's secret with its own principal, and only a customer managed key
    // can grant that: decrypting through Secrets Manager, for this account's ingress endpoints.
    this.secretKey.addToResourcePolicy(
      new PolicyStatement({
        sid: 'MailManagerReadsIngressSecrets',
        principals: [new ServicePrincipal('ses.amazonaws.com')],
        actions: ['kms:Decrypt'],
        resources: ['*'],
        conditions: {
          StringEquals: {
            'kms:ViaService': `secretsmanager.${Aws.REGION}.${Aws.URL_SUFFIX}`,
            'aws:SourceAccount': Aws.ACCOUNT_ID,
          },
          ArnLike: { 'aws:SourceArn': mailManagerArn('mailmanager-ingress-point/*') },
        },
      }),
    );

    this.mailManagerRole = new Role(this, 'MailManagerRole', {
      description: 'Mail relay: Mail Manager rule sets write SMTP submissions to the ingress bucket',
      // Rule set ARNs cannot be named here (each rule set names this role): any of this account's.
      assumedBy: new ServicePrincipal('ses.amazonaws.com', {
        conditions: {
          StringEquals: { 'aws:SourceAccount': Aws.ACCOUNT_ID },
          ArnLike: { 'aws:SourceArn': mailManagerArn('mailmanager-rule-set/*') },
        },
      }),
    });
    // The permissions the Mail Manager guide lists for the S3 action (eb-policies.html): PutObject on
    // the objects (here only below the ingress prefix) and ListBucket on the bucket.
    this.mailManagerRole.addToPrincipalPolicy(
      new PolicyStatement({
        actions: ['s3:PutObject'],
        resources: [this.bucket.arnForObjects(`${INGRESS_PREFIX}*`)],
      }),
    );
    this.mailManagerRole.addToPrincipalPolicy(
      new PolicyStatement({ actions: ['s3:ListBucket'], resources: [this.bucket.bucketArn] }),
    );
    this.acknowledgeIngressObjects(
      this.mailManagerRole,
      'Mail Manager names each object itself (a message ID below the client prefix), so the keys are unknown ' +
        'in advance; the grant is s3:PutObject below ingress/ of the relay’s own ingress bucket only.',
    );

    this.deadLetterQueue = functionDeadLetterQueue(
      this,
      'DeadLetterQueue',
      'of the ingest function (its on-failure destination, and where it puts the submissions it refuses)',
    );

    this.ingestFunction = new RelayFunction(this, 'Function', {
      entry: INGEST_HANDLER_ENTRY,
      name: 'ingest function',
      description:
        'Turns messages submitted over SMTP (Mail Manager, stored in S3) into relay messages on the outbox',
      settings: ingestSettingsFor(config, {
        queueUrl: props.outbox.queueUrl,
        deadLetterQueueUrl: this.deadLetterQueue.queueUrl,
        bucket: this.bucket.bucketName,
      }),
      // Up to 40 MB of MIME read, parsed and re-encoded in memory.
      timeout: Duration.seconds(60),
      memorySize: 1024,
      logRetention: props.logRetention ?? RetentionDays.ONE_MONTH,
      // A store or outbox error: two more tries, then the queue, with the event and the error.
      retryAttempts: 2,
      onFailure: new SqsDestination(this.deadLetterQueue),
    });
    this.bucket.addEventNotification(EventType.OBJECT_CREATED, new LambdaDestination(this.ingestFunction), {
      prefix: INGRESS_PREFIX,
    });
    this.grantIngest(this.ingestFunction);
    props.outbox.grantSendMessages(this.ingestFunction);
    this.deadLetterQueue.grantSendMessages(this.ingestFunction);
    this.acknowledgeNotificationHandler();

    this.clients = config.ingress.clients.map((client) =>
      this.addClient(client, ingressMaxMessageBytes(config)),
    );
  }

  /**
   * Lets the grantee read stored submissions (the send function, for messages too large to travel
   * inline): GetObject below the ingress prefix, and ListBucket so that an expired submission is
   * answered with 404 NoSuchKey instead of 403 AccessDenied.
   */
  grantRead(grantee: IGrantable): Grant {
    const grant = Grant.addToPrincipal({
      grantee,
      actions: ['s3:GetObject'],
      resourceArns: [this.bucket.arnForObjects(`${INGRESS_PREFIX}*`)],
    }).combine(
      Grant.addToPrincipal({ grantee, actions: ['s3:ListBucket'], resourceArns: [this.bucket.bucketArn] }),
    );
    this.acknowledgeIngressObjects(
      grantee,
      'The function reads the submission a message references, whose key Mail Manager chose; the grant is ' +
        's3:GetObject below ingress/ of the relay’s own ingress bucket and nothing else.',
    );
    return grant;
  }

  /** Read (GetObject, ListBucket: a submission already ingested is a 404) and delete below the prefix. */
  private grantIngest(grantee: IGrantable): void {
    Grant.addToPrincipal({
      grantee,
      actions: ['s3:GetObject', 's3:DeleteObject'],
      resourceArns: [this.bucket.arnForObjects(`${INGRESS_PREFIX}*`)],
    });
    Grant.addToPrincipal({ grantee, actions: ['s3:ListBucket'], resourceArns: [this.bucket.bucketArn] });
    this.acknowledgeIngressObjects(
      grantee,
      'The ingest function reads the object each S3 event names and deletes it once its message travels ' +
        'inline; the keys are Mail Manager’s, so the grant is below ingress/ of the relay’s own bucket only.',
    );
  }

  private addClient(client: IngressClientConfig, maxMessageSizeBytes: number): SmtpIngressClient {
    const scope = new Construct(this, client.name);
    if (client.allowedCidrs.every(isLoopback)) {
      // The local-mode default (mail-relay.config.json): deployed, it is an endpoint nobody can reach.
      Annotations.of(scope).addWarningV2(
        'mail-relay:ingress-loopback-only',
        `ingress client ${client.name} allows only loopback addresses (${client.allowedCidrs.join(', ')}): no application can reach its endpoint in AWS, which still costs about $50 a month. Set the addresses your application sends from, or remove the client.`,
      );
    }

    const secret = new Secret(scope, 'Secret', {
      description: `SMTP password of the mail relay ingress client ${client.name} (the user name is the endpoint ID)`,
      encryptionKey: this.secretKey,
      generateSecretString: {
        // Mail Manager reads exactly the key "password".
        secretStringTemplate: JSON.stringify({}),
        generateStringKey: 'password',
        passwordLength: 32,
        // Letters and digits only: nothing an SMTP client, a .env file or a form mangles.
        excludePunctuation: true,
      },
    });
    secret.addToResourcePolicy(
      new PolicyStatement({
        principals: [new ServicePrincipal('ses.amazonaws.com')],
        actions: ['secretsmanager:GetSecretValue'],
        resources: ['*'],
        conditions: {
          StringEquals: { 'aws:SourceAccount': Aws.ACCOUNT_ID },
          ArnLike: { 'aws:SourceArn': mailManagerArn('mailmanager-ingress-point/*') },
        },
      }),
    );
    Validations.of(secret).acknowledge({
      id: 'AwsSolutions-SMG4',
      reason:
        'The password is configured by hand in the client application (a CRM form, a printer panel), which ' +
        'no rotation function can reach: rotating it would break the client. Rotate by generating a new ' +
        'value and updating the client; Mail Manager accepts AWSCURRENT and AWSPREVIOUS meanwhile.',
    });

    const ipv4 = client.allowedCidrs.filter((cidr) => cidrVersion(cidr) === 4);
    const ipv6 = client.allowedCidrs.filter((cidr) => cidrVersion(cidr) === 6);
    const tls12 = {
      tlsExpression: {
        evaluate: { attribute: 'TLS_PROTOCOL' },
        operator: 'MINIMUM_TLS_VERSION',
        value: 'TLS1_2',
      },
    };
    const trafficPolicy = new CfnMailManagerTrafficPolicy(scope, 'TrafficPolicy', {
      defaultAction: 'DENY',
      policyStatements: [
        ...(ipv4.length > 0
          ? [
              {
                action: 'ALLOW',
                conditions: [
                  {
                    ipExpression: {
                      evaluate: { attribute: 'SENDER_IP' },
                      operator: 'CIDR_MATCHES',
                      values: ipv4,
                    },
                  },
                  tls12,
                ],
              },
            ]
          : []),
        ...(ipv6.length > 0
          ? [
              {
                action: 'ALLOW',
                conditions: [
                  {
                    ipv6Expression: {
                      evaluate: { attribute: 'SENDER_IPV6' },
                      operator: 'CIDR_MATCHES',
                      values: ipv6,
                    },
                  },
                  tls12,
                ],
              },
            ]
          : []),
      ],
      maxMessageSizeBytes,
    });

    const ruleSet = new CfnMailManagerRuleSet(scope, 'RuleSet', {
      rules: [
        {
          name: 'store-for-relay',
          actions: [
            {
              writeToS3: {
                roleArn: this.mailManagerRole.roleArn,
                s3Bucket: this.bucket.bucketName,
                // The trailing slash keeps the client name a key segment of its own whether or not
                // Mail Manager adds one before the message ID.
                s3Prefix: `${INGRESS_PREFIX}${client.name}/`,
                actionFailurePolicy: WRITE_FAILURE_POLICY,
              },
            },
          ],
        },
      ],
    });
    // Mail Manager checks the role when the rule set is created: its policy must exist by then.
    ruleSet.node.addDependency(this.mailManagerRole);

    const ingressPoint = new CfnMailManagerIngressPoint(scope, 'IngressPoint', {
      type: 'AUTH',
      ruleSetId: ruleSet.attrRuleSetId,
      trafficPolicyId: trafficPolicy.attrTrafficPolicyId,
      ingressPointConfiguration: { secretArn: secret.secretArn },
      tlsPolicy: this.tlsPolicy(),
      networkConfiguration: {
        publicNetworkConfiguration: { ipType: ipv6.length > 0 ? 'DUAL_STACK' : 'IPV4' },
      },
    });
    // Mail Manager reads the secret when the endpoint is created: its policies must allow it by then.
    ingressPoint.node.addDependency(secret, this.secretKey);

    this.addOutputs(client.name, ingressPoint, secret);
    return { name: client.name, secret, trafficPolicy, ruleSet, ingressPoint };
  }

  /** Host, port, user name, secret and a settings block per client, as `Ingress<Name>…` outputs. */
  private addOutputs(name: string, ingressPoint: CfnMailManagerIngressPoint, secret: Secret): void {
    const prefix = `Ingress${ingressClientId(name)}`;
    const stack = Stack.of(this);
    const claimed = OUTPUT_PREFIXES.get(stack) ?? new Map<string, string>();
    OUTPUT_PREFIXES.set(stack, claimed);
    const owner = claimed.get(prefix);
    if (owner !== undefined) {
      throw new ConfigurationError(`Invalid SmtpIngress props at ${this.node.path}`, [
        `ingress client "${name}": ${owner} already has a client whose stack outputs are named ${prefix}… in stack ${stack.stackName}; rename one of the clients, or put the relays in separate stacks`,
      ]);
    }
    claimed.set(prefix, this.node.path);
    const output = (suffix: string, description: string, value: string) => {
      // Named as the operator reads them in the stack outputs, not by their path below the relay.
      new CfnOutput(this, `${prefix}${suffix}`, { description, value }).overrideLogicalId(
        `${prefix}${suffix}`,
      );
    };
    const host = ingressPoint.attrARecord;
    const user = ingressPoint.attrIngressPointId;
    const port = String(INGRESS_SMTP_PORT);
    output('Host', `SMTP host of ingress client ${name} (STARTTLS; no implicit TLS on 465)`, host);
    output('Port', `SMTP port of ingress client ${name} (STARTTLS; 25 works too)`, port);
    output('UserName', `SMTP user name of ingress client ${name}: its endpoint ID`, user);
    output(
      'SecretArn',
      `The SMTP password of ingress client ${name} is the "password" of this secret: aws secretsmanager get-secret-value --secret-id <this> --query SecretString`,
      secret.secretArn,
    );
    output(
      'Settings',
      `Settings for ingress client ${name}: Django, then a CRM or PHP form; the password is the "password" of the secret`,
      Fn.join('', [
        'EMAIL_HOST=',
        host,
        ` EMAIL_PORT=${port} EMAIL_USE_TLS=True EMAIL_HOST_USER=`,
        user,
        ' EMAIL_HOST_PASSWORD=<the "password" of secret ',
        secret.secretArn,
        '> | host=',
        host,
        ` port=${port} encryption=STARTTLS user=`,
        user,
        ' password=(secret ',
        secret.secretArn,
        ', key password)',
      ]),
    );
  }

  /**
   * `REQUIRED`, or `FIPS` where Mail Manager offers public authenticated endpoints only that (US and
   * Canada): decided at synth for a stack with a region, else by a condition on the deploy region.
   */
  private tlsPolicy(): string {
    const region = Stack.of(this).region;
    if (!Token.isUnresolved(region)) {
      return (FIPS_TLS_REGIONS as readonly string[]).includes(region) ? 'FIPS' : 'REQUIRED';
    }
    this.tlsCondition ??= new CfnCondition(this, 'FipsTlsRegion', {
      expression: Fn.conditionOr(...FIPS_TLS_REGIONS.map((name) => Fn.conditionEquals(Aws.REGION, name))),
    });
    return Fn.conditionIf(this.tlsCondition.logicalId, 'FIPS', 'REQUIRED').toString();
  }

  /** The one wildcard of the grants: objects below the ingress prefix of this bucket. */
  private acknowledgeIngressObjects(grantee: IGrantable, reason: string): void {
    const principal = grantee.grantPrincipal;
    const target = principal instanceof Construct ? principal : undefined;
    if (!target) return;
    const bucketId = Stack.of(this).getLogicalId(this.bucket.node.defaultChild as CfnBucket);
    Validations.of(target).acknowledge({
      id: `AwsSolutions-IAM5[Resource::<${bucketId}.Arn>/${INGRESS_PREFIX}*]`,
      reason,
    });
  }

  /**
   * S3 notifications are configured by a stack-wide custom resource of CDK's, whose role has the AWS
   * managed basic execution policy (its permission on the bucket is a policy of its own, on this bucket).
   */
  private acknowledgeNotificationHandler(): void {
    const handler = Stack.of(this).node.tryFindChild(
      'BucketNotificationsHandler050a0587b7544547bf325f094a3db834',
    );
    if (!handler) return;
    Validations.of(handler).acknowledge({
      id: 'AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]',
      reason:
        "CDK's BucketNotificationsHandler (the custom resource that sets S3 bucket notifications) writes its " +
        'logs with the AWS managed basic execution role; CDK creates it and offers no way to replace the role policy.',
    });
  }
}

/** `arn:<partition>:ses:<region>:<account>:<resource>`. */
function mailManagerArn(resource: string): string {
  return `arn:${Aws.PARTITION}:ses:${Aws.REGION}:${Aws.ACCOUNT_ID}:${resource}`;
}

/** 127.0.0.0/8 or ::1: addresses only local mode's listener sees. */
function isLoopback(cidr: string): boolean {
  return cidr.startsWith('127.') || cidr === '::1/128';
}
