import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Duration, Stack, Validations } from 'aws-cdk-lib';
import type { ISecurityGroup, IVpc, SubnetSelection } from 'aws-cdk-lib/aws-ec2';
import { PolicyStatement, Role, ServicePrincipal } from 'aws-cdk-lib/aws-iam';
import { Architecture, type IDestination, Runtime } from 'aws-cdk-lib/aws-lambda';
import { NodejsFunction, OutputFormat } from 'aws-cdk-lib/aws-lambda-nodejs';
import { LogGroup, RetentionDays } from 'aws-cdk-lib/aws-logs';
import { Queue, QueueEncryption } from 'aws-cdk-lib/aws-sqs';
import type { Construct } from 'constructs';
import { SETTINGS_ENV_VAR } from '../lambda/core/settings.ts';

/** Resolved from this file, not process.cwd(), so synth works from any directory. */
export const REPO_ROOT = fileURLToPath(new URL('..', import.meta.url));

/** Powertools reads these; the service name tags every log line and metric. */
const POWERTOOLS_SERVICE_NAME = 'mail-relay';

export interface RelayFunctionProps {
  /** The handler file (TypeScript), bundled with esbuild. */
  readonly entry: string;

  /** What the function is for, shown in the Lambda console. */
  readonly description: string;

  /** A short name for the role's description: `Mail relay <name>`. */
  readonly name: string;

  /** What the function reads at cold start from `MAIL_RELAY_SETTINGS` (tokens such as queue URLs are allowed). */
  readonly settings: unknown;

  /**
   * Timeout of one invocation (one SQS batch).
   *
   * @default Duration.seconds(30)
   */
  readonly timeout?: Duration;

  /**
   * Memory, which also scales the CPU share.
   *
   * @default 512
   */
  readonly memorySize?: number;

  /**
   * How long the function's own log group keeps its logs.
   *
   * @default RetentionDays.ONE_MONTH
   */
  readonly logRetention?: RetentionDays;

  /**
   * A VPC to run in, for example for static egress IPs. The role is not given the network-interface
   * permissions Lambda needs there: the caller adds them (see MailRelay).
   *
   * @default - not in a VPC: Lambda's own network
   */
  readonly vpc?: IVpc;

  /**
   * The subnets of `vpc` to run in.
   *
   * @default - the VPC's private subnets
   */
  readonly vpcSubnets?: SubnetSelection;

  /**
   * Security groups of the function in `vpc`.
   *
   * @default - one created by Lambda's construct, allowing all outbound traffic
   */
  readonly securityGroups?: ISecurityGroup[];

  /**
   * Retries of an asynchronous invocation that failed (EventBridge, schedules).
   *
   * @default - Lambda's default, 2
   */
  readonly retryAttempts?: number;

  /**
   * Where an asynchronous invocation goes once its retries are spent.
   *
   * @default - nowhere (Lambda drops it)
   */
  readonly onFailure?: IDestination;

  /**
   * Source maps: a map beside the bundle and `--enable-source-maps`, so stack traces in the logs name
   * the TypeScript files and lines instead of the minified bundle's. Off unless asked for: Node reads
   * and applies the map at every cold start (about a tenth more import time) and the asset carries a
   * 1–2 MB map.
   *
   * @default - the `sourceMaps` of the enclosing MailRelay (construct context), else false
   */
  readonly sourceMaps?: boolean;
}

/**
 * Construct context a MailRelay sets for the functions below it when its `sourceMaps` is on: every
 * function (send, feedback, bounce reader, ingest, brake) then ships its map, without each construct
 * passing the prop on.
 */
export const SOURCE_MAPS_CONTEXT = 'mail-relay:sourceMaps';

/**
 * A function of the relay (send, feedback). Fixed choices: Node.js 22 on arm64, an esbuild bundle
 * (ESM, minified, the AWS SDK inside, source maps only when asked for), its own log group with a retention, and
 * its own role that may write only to that log group (no AWS managed policy). Callers add the
 * permissions the settings need.
 */
export class RelayFunction extends NodejsFunction {
  constructor(scope: Construct, id: string, props: RelayFunctionProps) {
    // Created beside the function because they must exist before it: the function takes both as props.
    const logGroup = new LogGroup(scope, `${id}LogGroup`, {
      retention: props.logRetention ?? RetentionDays.ONE_MONTH,
    });
    const role = new Role(scope, `${id}Role`, {
      assumedBy: new ServicePrincipal('lambda.amazonaws.com'),
      description: `Mail relay ${props.name}`,
    });
    logGroup.grantWrite(role);
    const sourceMaps = props.sourceMaps ?? scope.node.tryGetContext(SOURCE_MAPS_CONTEXT) === true;

    super(scope, id, {
      entry: props.entry,
      handler: 'handler',
      projectRoot: REPO_ROOT,
      depsLockFilePath: join(REPO_ROOT, 'package-lock.json'),
      runtime: Runtime.NODEJS_22_X,
      architecture: Architecture.ARM_64,
      timeout: props.timeout ?? Duration.seconds(30),
      memorySize: props.memorySize ?? 512,
      logGroup,
      role,
      vpc: props.vpc,
      vpcSubnets: props.vpcSubnets,
      securityGroups: props.securityGroups,
      description: props.description,
      ...(props.retryAttempts !== undefined && { retryAttempts: props.retryAttempts }),
      ...(props.onFailure && { onFailure: props.onFailure }),
      environment: {
        ...(sourceMaps && { NODE_OPTIONS: '--enable-source-maps' }),
        POWERTOOLS_SERVICE_NAME,
        POWERTOOLS_LOG_LEVEL: 'INFO',
        // One JSON variable, validated as a whole at cold start; toJsonString resolves the queue URL token.
        [SETTINGS_ENV_VAR]: Stack.of(scope).toJsonString(props.settings),
      },
      bundling: {
        format: OutputFormat.ESM,
        target: 'node22',
        minify: true,
        sourceMap: sourceMaps,
        // Stack traces need only the mappings; the sources would double the asset.
        ...(sourceMaps && { sourcesContent: false }),
        // Prefer the ESM builds of dependencies so esbuild can drop unused code.
        mainFields: ['module', 'main'],
        // Some bundled CommonJS dependencies call require() for Node built-ins, which ESM lacks.
        banner:
          "import { createRequire } from 'node:module'; const require = createRequire(import.meta.url);",
        // Ship the SDK version the relay is tested with instead of whatever the runtime provides.
        bundleAwsSDK: true,
        esbuildArgs: {
          // Loaded at its first use instead of with libmime and mailparser (see the file). Relative to
          // the project root, where esbuild runs.
          '--alias:encoding-japanese': './lambda/core/mime/lazy-encoding-japanese.cjs',
        },
      },
    });
    Validations.of(this).acknowledge({
      id: 'AwsSolutions-L1',
      reason:
        'The bundle is built for Node.js 22 (esbuild target node22, ESM, AWS SDK bundled); a newer runtime ' +
        'is adopted as a deliberate change with its own test run, not implicitly because a newer one exists.',
    });
  }
  /** Outcome events (source `mail-relay`) on that bus, and only there. */
  allowOutcomeEvents(busName: string): void {
    this.addToRolePolicy(
      new PolicyStatement({
        actions: ['events:PutEvents'],
        resources: [
          Stack.of(this).formatArn({ service: 'events', resource: 'event-bus', resourceName: busName }),
        ],
      }),
    );
  }
}

/**
 * The dead-letter queue of a function invoked asynchronously (its on-failure destination): encrypted,
 * TLS only, 14 days. `holds` says what lands there, for the cdk-nag acknowledgement.
 */
export function functionDeadLetterQueue(scope: Construct, id: string, holds: string): Queue {
  const queue = new Queue(scope, id, {
    encryption: QueueEncryption.SQS_MANAGED,
    enforceSSL: true,
    retentionPeriod: Duration.days(14),
  });
  Validations.of(queue).acknowledge({
    id: 'AwsSolutions-SQS3',
    reason: `This queue is itself a dead-letter queue: ${holds}.`,
  });
  return queue;
}
