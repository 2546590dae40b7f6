import { readFileSync } from 'node:fs';
import { App, type CfnResource, type Stack } from 'aws-cdk-lib';
import type { Template } from 'aws-cdk-lib/assertions';
import type { IConstruct } from 'constructs';
import { SETTINGS_ENV_VAR } from '../../lambda/core/settings.ts';

/** The repository root, so tests run the same from any working directory. */
export const REPO_ROOT = new URL('../../', import.meta.url);

/** The feature flags and settings `cdk synth` uses, so tests build what the CLI builds. */
export function cdkJsonContext(): Record<string, unknown> {
  const cdkJson = JSON.parse(readFileSync(new URL('cdk.json', REPO_ROOT), 'utf8')) as {
    context: Record<string, unknown>;
  };
  return cdkJson.context;
}

/**
 * An app that skips esbuild bundling (~0.25 s per synth instead of ~3 s).
 * Only test/lib/synth.test.ts bundles for real.
 */
export function fastApp(): App {
  // The built-in CloudFormation validator adds time to every synth; the bundling test keeps it on.
  process.env.CDK_VALIDATION = 'false';
  return new App({ context: { ...cdkJsonContext(), 'aws:cdk:bundling-stacks': [] } });
}

/** The logical ID CloudFormation knows a construct's main resource by. */
export function logicalIdOf(stack: Stack, construct: IConstruct): string {
  return stack.getLogicalId(construct.node.defaultChild as CfnResource);
}

/** The error an action throws; fails the test if it does not throw. */
export function errorFrom(action: () => unknown): Error {
  try {
    action();
  } catch (error) {
    return error as Error;
  }
  throw new Error('expected the action to throw');
}

/** What a `Ref` to each resource type resolves to at deploy time, made up from its logical ID. */
const DEPLOYED_REF: Record<string, (logicalId: string) => string> = {
  'AWS::SQS::Queue': (logicalId) => `https://sqs.test/${logicalId}`,
  'AWS::SecretsManager::Secret': (logicalId) => secretArn(`${logicalId}-AbCdEf`),
  'AWS::S3::Bucket': (logicalId) => logicalId.toLowerCase(),
  'AWS::DynamoDB::Table': (logicalId) => `stack-${logicalId}-ABC123`,
  'AWS::SES::ConfigurationSet': (logicalId) => `${logicalId}-AbC123`,
};

/** A complete secret ARN (the name with its 6-character suffix) in a made-up account. */
export function secretArn(name: string, region = 'eu-west-1'): string {
  return `arn:aws:secretsmanager:${region}:123456789012:secret:${name}`;
}

export interface FunctionResource {
  readonly Properties: {
    readonly Description?: string;
    readonly Code: { readonly S3Key: string };
    readonly Environment: { readonly Variables: Record<string, unknown> };
    readonly Role: unknown;
    readonly VpcConfig?: unknown;
  };
}

/** What each relay function's description starts with (lib/send-function.ts, lib/ses-feedback.ts, lib/relay-monitoring.ts …). */
export const FUNCTION_DESCRIPTIONS = {
  send: 'Sends mail requests',
  staticEgress: 'Sends the mail relay messages of the providers that must leave',
  feedback: 'Turns SES bounces',
  bounceReader: 'Reads non-delivery reports',
  ingest: 'Turns messages submitted over SMTP',
  sesBrake: 'Pauses sending on the SES configuration set',
} as const;

/** The logical ID and resource of one of the relay's functions; fails the test when it is missing. */
export function relayFunctionIn(
  template: Template,
  which: keyof typeof FUNCTION_DESCRIPTIONS = 'send',
): [string, FunctionResource] {
  const functions = template.findResources('AWS::Lambda::Function') as Record<string, FunctionResource>;
  const found = Object.entries(functions).find(([, resource]) =>
    resource.Properties.Description?.startsWith(FUNCTION_DESCRIPTIONS[which]),
  );
  if (!found) throw new Error(`no ${which} function in the template`);
  return found;
}

/** Reads MAIL_RELAY_SETTINGS back from the template, standing in a deploy-time value for each `Ref`. */
export function settingsIn(template: Template, which: keyof typeof FUNCTION_DESCRIPTIONS = 'send'): unknown {
  const resources = template.toJSON().Resources as Record<string, { Type: string }>;
  const [, relayFunction] = relayFunctionIn(template, which);
  const value = relayFunction.Properties.Environment.Variables[SETTINGS_ENV_VAR] as
    | string
    | { 'Fn::Join': [string, Array<string | { Ref: string }>] };
  if (typeof value === 'string') return JSON.parse(value);
  const parts = value['Fn::Join'][1].map((part) => {
    if (typeof part === 'string') return part;
    const type = resources[part.Ref]?.Type ?? 'unknown';
    const deployed = DEPLOYED_REF[type];
    if (!deployed) throw new Error(`no deploy-time stand-in for a Ref to ${type}`);
    return deployed(part.Ref);
  });
  return JSON.parse(parts.join(''));
}

export interface PolicyStatementJson {
  readonly Effect?: string;
  readonly Action: string | string[];
  readonly Resource: unknown;
}

/** The statements of the inline policies attached to one role (by logical ID). */
export function statementsOfRole(template: Template, roleId: string): PolicyStatementJson[] {
  const policies = template.findResources('AWS::IAM::Policy') as Record<
    string,
    { Properties: { Roles: unknown[]; PolicyDocument: { Statement: PolicyStatementJson[] } } }
  >;
  return Object.values(policies)
    .filter((policy) =>
      policy.Properties.Roles.some((role) => JSON.stringify(role) === JSON.stringify({ Ref: roleId })),
    )
    .flatMap((policy) => policy.Properties.PolicyDocument.Statement);
}

/** `arn:<partition>:ses:<region>:<account>:<resource>` as CloudFormation renders it. */
export function sesArn(resource: string, refSuffix?: string) {
  return {
    'Fn::Join': [
      '',
      [
        'arn:',
        { Ref: 'AWS::Partition' },
        ':ses:',
        { Ref: 'AWS::Region' },
        ':',
        { Ref: 'AWS::AccountId' },
        `:${resource}`,
        ...(refSuffix !== undefined ? [{ Ref: refSuffix }] : []),
      ],
    ],
  };
}

/** What every relay alarm shares: ≥ threshold, one datapoint in one period, no data is fine, both actions to the topic. */
export function alarmBasics(topicId: string, threshold: number) {
  return {
    Threshold: threshold,
    EvaluationPeriods: 1,
    DatapointsToAlarm: 1,
    ComparisonOperator: 'GreaterThanOrEqualToThreshold',
    TreatMissingData: 'notBreaching',
    AlarmActions: [{ Ref: topicId }],
    OKActions: [{ Ref: topicId }],
  };
}
