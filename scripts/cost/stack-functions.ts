import { SETTINGS_ENV_VAR } from '../../lambda/core/settings.ts';
import { ACCOUNT, REGION } from '../bench/scenarios.ts';
import type { CloudFormationTemplate } from './template-inventory.ts';

/** A send function of the template, as the measured worker runs it. */
export interface StackFunction {
  readonly id: string;
  /** Its event source mapping's batch size. */
  readonly batchSize: number;
  readonly timeoutSeconds: number;
  readonly memoryMiB: number;
  /** Its plain (token-free) environment variables other than the settings: log level, NODE_OPTIONS … */
  readonly environment: Readonly<Record<string, string>>;
  /** Its MAIL_RELAY_SETTINGS, each resource it names stood in for (queues at the recorder's endpoint). */
  settings(awsEndpoint: string): Record<string, unknown>;
}

/** The functions fed by SQS queues in a relay template, and which queue feeds which. */
export interface RelayStackModel {
  /** The function whose description says it sends mail requests from the outbox. */
  readonly sendFunction: StackFunction;
  /** The function that consumes a queue, by the queue's stand-in URL. */
  consumerOf(queueUrl: string): StackFunction | undefined;
  /** Any function of the template whose description starts so (its batch size 1: not fed by a queue). */
  functionDescribedAs(prefix: string): StackFunction | undefined;
}

interface Resource {
  readonly Type: string;
  readonly Properties?: Record<string, unknown>;
}

const SEND_DESCRIPTION = 'Sends mail requests';

/** Reads the send functions and their queues from the template. */
export function relayStackModel(template: CloudFormationTemplate): RelayStackModel {
  const resources = template.Resources as Record<string, Resource>;
  const mappings = Object.values(resources).filter(
    (resource) => resource.Type === 'AWS::Lambda::EventSourceMapping',
  );
  const consumers = new Map<string, StackFunction>();
  for (const mapping of mappings) {
    const properties = mapping.Properties ?? {};
    const queueId = referencedId(properties.EventSourceArn);
    const functionId = referencedId(properties.FunctionName);
    if (queueId === undefined || functionId === undefined || resources[queueId]?.Type !== 'AWS::SQS::Queue')
      continue;
    const fn = resources[functionId];
    if (!fn) continue;
    consumers.set(queueId, stackFunction(functionId, fn, Number(properties.BatchSize ?? 10), resources));
  }
  const sendFunction = [...consumers.values()].find((fn) =>
    String(resources[fn.id]?.Properties?.Description ?? '').startsWith(SEND_DESCRIPTION),
  );
  if (!sendFunction) throw new Error('the template has no send function fed by a queue');
  return {
    sendFunction,
    consumerOf: (queueUrl) => consumers.get(queueUrl.split('/').at(-1) ?? ''),
    functionDescribedAs(prefix) {
      const found = Object.entries(resources).find(
        ([, resource]) =>
          resource.Type === 'AWS::Lambda::Function' &&
          String(resource.Properties?.Description ?? '').startsWith(prefix),
      );
      return found && stackFunction(found[0], found[1], 1, resources);
    },
  };
}

function stackFunction(
  id: string,
  fn: Resource,
  batchSize: number,
  resources: Record<string, Resource>,
): StackFunction {
  const properties = fn.Properties ?? {};
  const variables = ((properties.Environment as { Variables?: Record<string, unknown> })?.Variables ??
    {}) as Record<string, unknown>;
  const environment = Object.fromEntries(
    Object.entries(variables).filter(
      (entry): entry is [string, string] => entry[0] !== SETTINGS_ENV_VAR && typeof entry[1] === 'string',
    ),
  );
  return {
    id,
    batchSize,
    timeoutSeconds: Number(properties.Timeout ?? 3),
    memoryMiB: Number(properties.MemorySize ?? 128),
    environment,
    settings: (awsEndpoint) =>
      JSON.parse(resolve(variables[SETTINGS_ENV_VAR], resources, awsEndpoint)) as Record<string, unknown>,
  };
}

/** A template value as a string, each Ref and GetAtt stood in for by what the measured run uses. */
function resolve(value: unknown, resources: Record<string, Resource>, awsEndpoint: string): string {
  if (typeof value === 'string') return value;
  if (typeof value !== 'object' || value === null) return String(value);
  const join = (value as { 'Fn::Join'?: [string, unknown[]] })['Fn::Join'];
  if (join) return join[1].map((part) => resolve(part, resources, awsEndpoint)).join(join[0]);
  const id = referencedId(value);
  if (id === undefined) throw new Error(`cannot stand in for ${JSON.stringify(value)}`);
  const pseudo: Record<string, string> = {
    'AWS::Region': REGION,
    'AWS::AccountId': ACCOUNT,
    'AWS::Partition': 'aws',
    'AWS::URLSuffix': 'amazonaws.com',
  };
  if (pseudo[id] !== undefined) return pseudo[id];
  switch (resources[id]?.Type) {
    case 'AWS::SQS::Queue':
      // The queue's URL, at the recorder, ending in its logical ID (which is how consumerOf finds it).
      return `${awsEndpoint}/${ACCOUNT}/${id}`;
    case 'AWS::SecretsManager::Secret':
      return `arn:aws:secretsmanager:${REGION}:${ACCOUNT}:secret:${id}-AbCdEf`;
    case 'AWS::S3::Bucket':
      return id.toLowerCase();
    default:
      // Tables, configuration sets, buses …: the logical ID is a valid name.
      return id;
  }
}

/** The logical ID an `Fn::GetAtt` or `Ref` points at. */
export function referencedId(value: unknown): string | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const getAtt = (value as { 'Fn::GetAtt'?: unknown[] })['Fn::GetAtt'];
  if (Array.isArray(getAtt) && typeof getAtt[0] === 'string') return getAtt[0];
  const ref = (value as { Ref?: unknown }).Ref;
  return typeof ref === 'string' ? ref : undefined;
}
