import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { App } from 'aws-cdk-lib';
import { loadRelayConfig, type RelayConfig } from '../../lib/config.ts';
import { MailRelayStack } from '../../lib/mail-relay-stack.ts';
import { REPO_ROOT } from '../../lib/relay-function.ts';

/** What costs money in a synthesized relay stack, counted from its CloudFormation template. */
export interface StackInventory {
  readonly alarms: {
    /** Alarms on one metric. */
    readonly standard: number;
    /** Metric-math alarms, each with the number of metrics it reads (priced per metric). */
    readonly metricMath: readonly number[];
    readonly composite: number;
  };
  readonly dashboards: number;
  readonly kmsKeys: number;
  readonly natGateways: number;
  /** EC2 instance type of each NAT instance. */
  readonly natInstances: readonly string[];
  /** Public IPv4 addresses: one per NAT (its Elastic IP). */
  readonly publicIpv4: number;
  readonly vpcEndpoints: {
    readonly interface: readonly VpcEndpoint[];
    readonly gateway: readonly VpcEndpoint[];
  };
  readonly mailManagerIngressPoints: number;
  readonly functions: readonly FunctionResource[];
  readonly queues: number;
  readonly tables: readonly { readonly id: string; readonly onDemand: boolean }[];
  readonly logGroups: readonly { readonly id: string; readonly retentionDays?: number }[];
  readonly flowLogs: number;
  readonly secrets: number;
  /** SES event types each configuration set event destination publishes (lower case: send, delivery …). */
  readonly sesEventDestinations: readonly {
    readonly toEventBridge: boolean;
    readonly events: readonly string[];
  }[];
  readonly eventRules: readonly {
    readonly id: string;
    readonly schedule?: string;
    readonly targets: readonly string[];
  }[];
}

export interface VpcEndpoint {
  readonly id: string;
  /** The AWS service it reaches (dynamodb, s3, sqs …), as far as the template says. */
  readonly service: string;
  readonly subnets: number;
}

export type FunctionRole =
  | 'send'
  | 'static-egress-sender'
  | 'feedback'
  | 'bounce-reader'
  | 'ingest'
  | 'ses-brake'
  | 'other';

export interface FunctionResource {
  readonly id: string;
  readonly role: FunctionRole;
  readonly description: string;
  readonly memoryMiB: number;
  readonly architecture: 'arm64' | 'x86_64';
  readonly inVpc: boolean;
}

/** How each relay function's description starts (lib/*.ts), which tells them apart in the template. */
const FUNCTION_ROLES: readonly [FunctionRole, string][] = [
  ['send', 'Sends mail requests'],
  ['static-egress-sender', 'Sends the mail relay messages of the providers that must leave from'],
  ['feedback', 'Turns SES bounces'],
  ['bounce-reader', 'Reads non-delivery reports'],
  ['ingest', 'Turns messages submitted over SMTP'],
  ['ses-brake', 'Pauses sending on the SES configuration set'],
];

interface Resource {
  readonly Type: string;
  readonly Properties?: Record<string, unknown>;
}
export interface CloudFormationTemplate {
  readonly Resources: Record<string, Resource>;
}

/**
 * Synthesizes the stack `cdk synth` would make for the configuration, in process and offline, without
 * bundling the functions (the template is the same; only the asset hashes differ).
 */
export function synthesizeTemplate(configPath: string): {
  config: RelayConfig;
  stack: MailRelayStack;
  template: CloudFormationTemplate;
} {
  // The built-in CloudFormation validator only adds time here.
  process.env.CDK_VALIDATION = 'false';
  const config = loadRelayConfig(configPath);
  const app = new App({ context: { ...cdkJsonContext(), 'aws:cdk:bundling-stacks': [] } });
  const stack = new MailRelayStack(app, 'MailRelay', { config });
  const template = app.synth().getStackByName(stack.stackName).template as CloudFormationTemplate;
  return { config, stack, template };
}

export function inventoryOf(template: CloudFormationTemplate): StackInventory {
  const resources = Object.entries(template.Resources);
  const ofType = (type: string) => resources.filter(([, resource]) => resource.Type === type);
  const props = (resource: Resource) => resource.Properties ?? {};

  const alarms = ofType('AWS::CloudWatch::Alarm').map(([, alarm]) => props(alarm));
  const metricMath = alarms
    .filter((alarm) => Array.isArray(alarm.Metrics))
    // Only the entries that read a metric are priced; expressions over them are free.
    .map((alarm) => (alarm.Metrics as { MetricStat?: unknown }[]).filter((entry) => entry.MetricStat).length);

  const natInstances = ofType('AWS::EC2::Instance')
    .map(([, instance]) => props(instance))
    // A NAT instance forwards traffic that is not its own.
    .filter((instance) => instance.SourceDestCheck === false)
    .map((instance) => String(instance.InstanceType));
  const natGateways = ofType('AWS::EC2::NatGateway').length;

  const endpoints = ofType('AWS::EC2::VPCEndpoint').map(([id, endpoint]) => {
    const properties = props(endpoint);
    return {
      id,
      type: properties.VpcEndpointType === 'Interface' ? 'interface' : 'gateway',
      service: endpointService(properties.ServiceName),
      subnets: Array.isArray(properties.SubnetIds) ? properties.SubnetIds.length : 0,
    };
  });

  return {
    alarms: {
      standard: alarms.length - metricMath.length,
      metricMath,
      composite: ofType('AWS::CloudWatch::CompositeAlarm').length,
    },
    dashboards: ofType('AWS::CloudWatch::Dashboard').length,
    kmsKeys: ofType('AWS::KMS::Key').length,
    natGateways,
    natInstances,
    publicIpv4: natGateways + natInstances.length,
    vpcEndpoints: {
      interface: endpoints.filter((endpoint) => endpoint.type === 'interface'),
      gateway: endpoints.filter((endpoint) => endpoint.type === 'gateway'),
    },
    mailManagerIngressPoints: ofType('AWS::SES::MailManagerIngressPoint').length,
    functions: ofType('AWS::Lambda::Function').map(([id, fn]) => functionOf(id, props(fn))),
    queues: ofType('AWS::SQS::Queue').length,
    tables: ofType('AWS::DynamoDB::Table').map(([id, table]) => ({
      id,
      onDemand: props(table).BillingMode === 'PAY_PER_REQUEST',
    })),
    logGroups: ofType('AWS::Logs::LogGroup').map(([id, group]) => {
      const retention = props(group).RetentionInDays;
      return { id, ...(typeof retention === 'number' && { retentionDays: retention }) };
    }),
    flowLogs: ofType('AWS::EC2::FlowLog').length,
    secrets: ofType('AWS::SecretsManager::Secret').length,
    sesEventDestinations: ofType('AWS::SES::ConfigurationSetEventDestination').map(([, destination]) => {
      const spec = (props(destination).EventDestination ?? {}) as {
        MatchingEventTypes?: string[];
        EventBridgeDestination?: unknown;
      };
      return {
        toEventBridge: spec.EventBridgeDestination !== undefined,
        events: (spec.MatchingEventTypes ?? []).map((type) => type.toLowerCase()),
      };
    }),
    eventRules: ofType('AWS::Events::Rule').map(([id, rule]) => {
      const properties = props(rule);
      const targets = (properties.Targets ?? []) as { Arn?: unknown }[];
      return {
        id,
        ...(typeof properties.ScheduleExpression === 'string' && { schedule: properties.ScheduleExpression }),
        targets: targets.map((target) => referencedId(target.Arn) ?? 'unknown'),
      };
    }),
  };
}

function functionOf(id: string, properties: Record<string, unknown>): FunctionResource {
  const description = typeof properties.Description === 'string' ? properties.Description : '';
  const role = FUNCTION_ROLES.find(([, prefix]) => description.startsWith(prefix))?.[0] ?? 'other';
  const architectures = properties.Architectures as string[] | undefined;
  return {
    id,
    role,
    description,
    // CloudFormation's defaults when the template leaves them out.
    memoryMiB: typeof properties.MemorySize === 'number' ? properties.MemorySize : 128,
    architecture: architectures?.includes('arm64') ? 'arm64' : 'x86_64',
    inVpc: properties.VpcConfig !== undefined,
  };
}

/** The service of an endpoint's ServiceName, which CDK writes as a join of the region and the service. */
function endpointService(serviceName: unknown): string {
  const text = JSON.stringify(serviceName ?? '');
  const match =
    /\.([a-z0-9-]+)"?\]*\}*"?$/.exec(text.replace(/\\"/g, '"')) ??
    /com\.amazonaws\.[^.]+\.([a-z0-9-]+)/.exec(text);
  return match?.[1] ?? text;
}

/** The logical ID an `Fn::GetAtt` or `Ref` points at. */
function referencedId(value: unknown): string | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const getAtt = (value as { 'Fn::GetAtt'?: unknown[] })['Fn::GetAtt'];
  if (Array.isArray(getAtt) && typeof getAtt[0] === 'string') return getAtt[0];
  const ref = (value as { Ref?: unknown }).Ref;
  return typeof ref === 'string' ? ref : undefined;
}

/** The feature flags of cdk.json, so the synth is the one `cdk synth` makes. */
function cdkJsonContext(): Record<string, unknown> {
  const cdkJson = JSON.parse(readFileSync(join(REPO_ROOT, 'cdk.json'), 'utf8')) as {
    context: Record<string, unknown>;
  };
  return cdkJson.context;
}
