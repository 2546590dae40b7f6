import type { ConfigMeasurement, StageMeasurement, WorkloadMeasurement } from './measurement.ts';
import { EC2_INSTANCE_HOUR, HOURS_PER_MONTH, PRICES, type Price, SQS_CHUNK_BYTES } from './prices.ts';
import type { ProviderFamily } from './send-work.ts';

/** Everything the model assumes besides the measurement; printed with every table. */
export interface Assumptions {
  readonly messageKb: number;
  readonly messagesPerMonth: number;
  /** How long each provider takes to accept a message (the function waits, and is billed, meanwhile). */
  readonly providerAnswerMs: Readonly<Record<ProviderFamily, number>>;
  /** One in-region AWS API round trip (DynamoDB, SQS, EventBridge); a record's calls run one after another. */
  readonly awsCallMs: number;
  /** The feedback function's own CPU per event (not measured: it runs in the model's process). */
  readonly feedbackCpuMs: number;
  /** SES events per message sent, by type (only subscribed types invoke the feedback function). */
  readonly sesEventRates: Readonly<Record<string, number>>;
  /** Bytes a provider request carries besides the message as base64 (headers, JSON, TLS, token). */
  readonly providerRequestOverheadBytes: number;
  /** How long one run of a scheduled function (the bounce report reader) lasts, billed. */
  readonly scheduledRunMs: number;
  /** Lambda's SQS pollers per event source mapping while the queue is idle, each a 20 s long poll. */
  readonly idlePollersPerQueue: number;
}

export const DEFAULT_ASSUMPTIONS: Assumptions = {
  messageKb: 50,
  messagesPerMonth: 1_000_000,
  providerAnswerMs: { graph: 300, ses: 80, smtp: 400 },
  awsCallMs: 8,
  feedbackCpuMs: 5,
  sesEventRates: { send: 1, delivery: 0.98, bounce: 0.02, complaint: 0.001 },
  providerRequestOverheadBytes: 2_048,
  scheduledRunMs: 2_000,
  idlePollersPerQueue: 5,
};

export interface LineItem {
  readonly what: string;
  /** Per message, in `unit`. */
  readonly quantity: number;
  readonly unit: string;
  readonly price: Price;
  readonly perMillion: number;
  /** Paid only because traffic leaves through the static egress (NAT, endpoints). */
  readonly staticEgress?: boolean;
  /** The provider's own price, not relay overhead. */
  readonly provider?: boolean;
}

export interface WorkloadCost {
  readonly workload: WorkloadMeasurement;
  readonly items: readonly LineItem[];
  /** Per million messages: everything but the provider's own price. */
  readonly relayOverhead: number;
  readonly relayOverheadWithoutEgress: number;
  readonly providerPrice: number;
  /** Per month at messagesPerMonth. */
  readonly monthlyOverhead: number;
}

export interface FixedItem {
  readonly what: string;
  readonly quantity: number;
  readonly price: Price;
  readonly perMonth: number;
  readonly kind: 'monitoring' | 'egress' | 'ingress' | 'other';
}

export interface ConfigCost {
  readonly measurement: ConfigMeasurement;
  readonly workloads: readonly WorkloadCost[];
  readonly fixed: readonly FixedItem[];
  /** Fixed per month: all; without the static egress items; without the ingress (Mail Manager) items. */
  readonly fixedTotal: number;
  readonly fixedWithoutEgress: number;
  readonly fixedWithoutIngress: number;
  /** The custom metrics priced (from the measured runs). */
  readonly metrics: readonly string[];
  readonly notes: readonly string[];
}

const GIB = 2 ** 30;

export function priceConfig(measurement: ConfigMeasurement, assumptions: Assumptions): ConfigCost {
  const workloads = measurement.workloads.map((workload) =>
    priceWorkload(measurement, workload, assumptions),
  );
  const metrics = measuredMetrics(measurement);
  const fixed = fixedItems(measurement, metrics.length, assumptions);
  const sum = (items: readonly FixedItem[]) => items.reduce((total, item) => total + item.perMonth, 0);
  return {
    measurement,
    workloads,
    fixed,
    fixedTotal: sum(fixed),
    fixedWithoutEgress: sum(fixed.filter((item) => item.kind !== 'egress')),
    fixedWithoutIngress: sum(fixed.filter((item) => item.kind !== 'ingress')),
    metrics,
    notes: notesFor(measurement),
  };
}

function priceWorkload(
  measurement: ConfigMeasurement,
  workload: WorkloadMeasurement,
  assumptions: Assumptions,
): WorkloadCost {
  const { inventory } = measurement;
  const items: LineItem[] = [];
  const add = (what: string, quantity: number, unit: string, price: Price, flags: Partial<LineItem> = {}) => {
    if (quantity > 0)
      items.push({ what, quantity, unit, price, perMillion: quantity * price.dollars * 1e6, ...flags });
  };
  const chunks = (bytes: number) => Math.max(1, Math.ceil(bytes / SQS_CHUNK_BYTES));
  // The producer's SendMessage onto the outbox.
  add('SQS: producer SendMessage', chunks(workload.messageBytes), 'requests', PRICES.sqsRequest);

  const totals = { write: 0, read: 0, events: 0, logs: 0, secrets: 0, natBytes: 0, endpointBytes: 0 };
  for (const stage of workload.stages) {
    const fn = inventory.functions.find((candidate) => candidate.id === stage.functionId);
    const memoryGb = (fn?.memoryMiB ?? 128) / 1024;
    const label =
      stage.functionId === workload.stages[0]?.functionId ? 'send function' : `${stage.functionId}`;
    // Lambda's poller: one receive per batch (payload in 64 KB chunks) and one DeleteMessageBatch.
    add(
      `SQS: ${label} receive and delete (batches of ${stage.batchSize})`,
      stage.invocationsPerMessage * (chunks(stage.batchSize * workload.messageBytes) + 1),
      'requests',
      PRICES.sqsRequest,
    );
    add(`SQS: ${label} own requests`, sqsOwnRequests(stage), 'requests', PRICES.sqsRequest);
    add(`Lambda: ${label} invocations`, stage.invocationsPerMessage, 'invocations', PRICES.lambdaRequest);
    add(
      `Lambda: ${label} duration (${fn?.memoryMiB ?? 128} MB ${fn?.architecture ?? 'x86_64'})`,
      (invocationMs(stage, workload.provider, assumptions) * stage.invocationsPerMessage * memoryGb) / 1000,
      'GB-s',
      fn?.architecture === 'arm64' ? PRICES.lambdaArmGbSecond : PRICES.lambdaX86GbSecond,
    );
    totals.write += stage.aws.writeUnits;
    totals.read += stage.aws.readUnits;
    totals.events += stage.aws.eventChunks;
    totals.logs += stage.logBytesPerMessage;
    totals.secrets += stage.aws.calls['SecretsManager.GetSecretValue'] ?? 0;
    if (fn?.inVpc) {
      const carried = vpcTraffic(measurement, workload, stage, assumptions);
      totals.natBytes += carried.nat;
      totals.endpointBytes += carried.endpoints;
    }
  }
  add('DynamoDB: write request units', totals.write, 'WRU', PRICES.dynamoWriteUnit);
  add('DynamoDB: read request units', totals.read, 'RRU', PRICES.dynamoReadUnit);
  add('EventBridge: outcome events', totals.events, 'events', PRICES.eventBridgeEvent);
  add('CloudWatch Logs: ingestion (log lines and EMF)', totals.logs / GIB, 'GB', PRICES.logsIngestedGb);
  add('Secrets Manager: GetSecretValue', totals.secrets, 'calls', PRICES.secretsManagerCall);
  if (workload.provider === 'ses') addSesFeedback(measurement, assumptions, add);
  if (inventory.natGateways > 0) {
    add('NAT gateway: data processed', totals.natBytes / GIB, 'GB', PRICES.natGatewayGb, {
      staticEgress: true,
    });
  }
  add(
    'VPC interface endpoints: data processed',
    totals.endpointBytes / GIB,
    'GB',
    PRICES.interfaceEndpointGb,
    {
      staticEgress: true,
    },
  );
  if (workload.provider === 'ses') add('SES: the provider', 1, 'emails', PRICES.sesEmail, { provider: true });

  const overhead = items.filter((item) => !item.provider);
  const relayOverhead = overhead.reduce((sum, item) => sum + item.perMillion, 0);
  const egress = overhead.filter((item) => item.staticEgress).reduce((sum, item) => sum + item.perMillion, 0);
  return {
    workload,
    items,
    relayOverhead,
    relayOverheadWithoutEgress: relayOverhead - egress,
    providerPrice: items.filter((item) => item.provider).reduce((sum, item) => sum + item.perMillion, 0),
    monthlyOverhead: (relayOverhead * assumptions.messagesPerMonth) / 1e6,
  };
}

/** The function's own SQS calls (a wait or hand-over put back on a queue, a dead letter), in chunks. */
function sqsOwnRequests(stage: StageMeasurement): number {
  const { calls } = stage.aws;
  const others = Object.entries(calls)
    .filter(([api]) => api.startsWith('SQS.') && api !== 'SQS.SendMessage')
    .reduce((sum, [, count]) => sum + count, 0);
  return stage.aws.sqsSendChunks + others;
}

/**
 * Billed time of one invocation: the provider's answer (a batch's records are sent concurrently, so one
 * answer time per invocation, only by the function that calls the provider), a record's AWS calls one
 * after another, and the relay's CPU for every record.
 */
export function invocationMs(
  stage: StageMeasurement,
  provider: ProviderFamily,
  assumptions: Assumptions,
): number {
  const callsPerRecord = Object.values(stage.aws.calls).reduce((sum, count) => sum + count, 0);
  const providerCalls = stage.aws.calls['SESv2.SendEmail'] ?? 0;
  const awsCalls = Math.ceil(callsPerRecord - providerCalls);
  return (
    (stage.sentToProvider ? assumptions.providerAnswerMs[provider] : 0) +
    awsCalls * assumptions.awsCallMs +
    stage.cpuMsPerMessage * stage.batchSize
  );
}

/** Services a gateway endpoint (free) or an interface endpoint (priced per GB) keeps off the NAT. */
function vpcTraffic(
  measurement: ConfigMeasurement,
  workload: WorkloadMeasurement,
  stage: StageMeasurement,
  assumptions: Assumptions,
): { nat: number; endpoints: number } {
  const { gateway, interface: interfaces } = measurement.inventory.vpcEndpoints;
  const throughGateway = new Set(gateway.map((endpoint) => endpoint.service));
  const throughInterface = new Set(interfaces.map((endpoint) => endpoint.service));
  const serviceOf: Record<string, string> = {
    DynamoDB: 'dynamodb',
    SQS: 'sqs',
    EventBridge: 'events',
    SecretsManager: 'secretsmanager',
    SESv2: 'email',
    S3: 's3',
  };
  let nat = 0;
  let endpoints = 0;
  for (const [service, bytes] of Object.entries(stage.aws.bytesByService)) {
    // The provider's own request (SES) is counted below with the provider's payload.
    if (service === 'SESv2') continue;
    const name = serviceOf[service] ?? service.toLowerCase();
    if (throughGateway.has(name)) continue;
    if (throughInterface.has(name)) endpoints += bytes;
    else nat += bytes;
  }
  if (stage.sentToProvider) {
    const payload =
      workload.providerRequestBytes ??
      Math.round((workload.messageBytes * 4) / 3) + assumptions.providerRequestOverheadBytes;
    if (workload.provider === 'ses' && throughInterface.has('email')) endpoints += payload;
    else nat += payload;
  }
  return { nat, endpoints };
}

/** Each SES event of a subscribed type invokes the feedback function through EventBridge. */
function addSesFeedback(
  measurement: ConfigMeasurement,
  assumptions: Assumptions,
  add: (what: string, quantity: number, unit: string, price: Price) => void,
): void {
  const feedbackFn = measurement.inventory.functions.find((fn) => fn.role === 'feedback');
  const subscribed = new Set(
    measurement.inventory.sesEventDestinations.filter((d) => d.toEventBridge).flatMap((d) => d.events),
  );
  if (!feedbackFn || subscribed.size === 0) return;
  let invocations = 0;
  let gbSeconds = 0;
  let write = 0;
  let read = 0;
  let events = 0;
  let logs = 0;
  for (const [type, rate] of Object.entries(assumptions.sesEventRates)) {
    if (!subscribed.has(type)) continue;
    const work = measurement.feedback?.[type as keyof NonNullable<ConfigMeasurement['feedback']>];
    const calls = work ? Object.values(work.aws.calls).reduce((sum, count) => sum + count, 0) : 0;
    invocations += rate;
    gbSeconds +=
      (rate * (assumptions.feedbackCpuMs + calls * assumptions.awsCallMs) * feedbackFn.memoryMiB) /
      1024 /
      1000;
    write += rate * (work?.aws.writeUnits ?? 0);
    read += rate * (work?.aws.readUnits ?? 0);
    events += rate * (work?.aws.eventChunks ?? 0);
    logs += rate * (work?.logBytes ?? 0);
  }
  const types = [...subscribed].filter((type) => type in assumptions.sesEventRates).join(', ');
  add(`SES feedback: invocations (${types})`, invocations, 'invocations', PRICES.lambdaRequest);
  add(
    `SES feedback: duration (${feedbackFn.memoryMiB} MB ${feedbackFn.architecture})`,
    gbSeconds,
    'GB-s',
    feedbackFn.architecture === 'arm64' ? PRICES.lambdaArmGbSecond : PRICES.lambdaX86GbSecond,
  );
  add('SES feedback: DynamoDB write request units', write, 'WRU', PRICES.dynamoWriteUnit);
  add('SES feedback: DynamoDB read request units', read, 'RRU', PRICES.dynamoReadUnit);
  add('SES feedback: outcome events', events, 'events', PRICES.eventBridgeEvent);
  add('SES feedback: CloudWatch Logs ingestion', logs / GIB, 'GB', PRICES.logsIngestedGb);
}

function measuredMetrics(measurement: ConfigMeasurement): string[] {
  const metrics = new Set<string>();
  for (const workload of measurement.workloads) {
    for (const stage of workload.stages) for (const metric of stage.metrics) metrics.add(metric);
  }
  for (const work of Object.values(measurement.feedback ?? {}))
    for (const metric of work.metrics) metrics.add(metric);
  return [...metrics].sort();
}

function fixedItems(measurement: ConfigMeasurement, metrics: number, assumptions: Assumptions): FixedItem[] {
  const { inventory } = measurement;
  const items: FixedItem[] = [];
  const add = (
    what: string,
    quantity: number,
    price: Price,
    kind: FixedItem['kind'],
    perUnit = price.dollars,
  ) => {
    if (quantity > 0) items.push({ what, quantity, price, perMonth: quantity * perUnit, kind });
  };
  const mathMetrics = inventory.alarms.metricMath.reduce((sum, count) => sum + count, 0);
  add('CloudWatch alarms on one metric', inventory.alarms.standard, PRICES.standardAlarmMonth, 'monitoring');
  add(
    `CloudWatch metric-math alarms (${inventory.alarms.metricMath.length}): metrics in them`,
    mathMetrics,
    PRICES.standardAlarmMonth,
    'monitoring',
  );
  add('CloudWatch composite alarms', inventory.alarms.composite, PRICES.compositeAlarmMonth, 'monitoring');
  add(
    'CloudWatch custom metrics (EMF) the measured runs wrote',
    metrics,
    PRICES.customMetricMonth,
    'monitoring',
  );
  add('CloudWatch dashboards', inventory.dashboards, PRICES.dashboardMonth, 'monitoring');
  add('KMS customer managed keys', inventory.kmsKeys, PRICES.kmsKeyMonth, 'other');
  add(
    'Secrets Manager secrets (created, and named by ARN)',
    inventory.secrets + measurement.namedSecrets,
    PRICES.secretMonth,
    'other',
  );
  const pollers = inventory.functions.length > 0 ? sqsFedFunctions(measurement) : 0;
  add(
    `SQS: idle long polls (${assumptions.idlePollersPerQueue} pollers × ${pollers} event source mappings, unverified)`,
    Math.round(assumptions.idlePollersPerQueue * pollers * 3 * 60 * HOURS_PER_MONTH),
    PRICES.sqsRequest,
    'other',
  );
  for (const rule of inventory.eventRules) {
    const minutes = rule.schedule && /^rate\((\d+) minutes?\)$/.exec(rule.schedule)?.[1];
    const fn = inventory.functions.find((candidate) => rule.targets.includes(candidate.id));
    if (!minutes || !fn) continue;
    const runs = Math.round((HOURS_PER_MONTH * 60) / Number(minutes));
    const gbSeconds = (runs * assumptions.scheduledRunMs * fn.memoryMiB) / 1024 / 1000;
    add(`Lambda: ${fn.role} every ${minutes} min, invocations`, runs, PRICES.lambdaRequest, 'other');
    add(
      `Lambda: ${fn.role} duration (${assumptions.scheduledRunMs} ms × ${fn.memoryMiB} MB)`,
      gbSeconds,
      fn.architecture === 'arm64' ? PRICES.lambdaArmGbSecond : PRICES.lambdaX86GbSecond,
      'other',
    );
  }
  add(
    'NAT gateways',
    inventory.natGateways,
    PRICES.natGatewayHour,
    'egress',
    PRICES.natGatewayHour.dollars * HOURS_PER_MONTH,
  );
  for (const [type, count] of countBy(inventory.natInstances)) {
    const price = EC2_INSTANCE_HOUR[type];
    if (price) add(`NAT instances (${type})`, count, price, 'egress', price.dollars * HOURS_PER_MONTH);
  }
  add(
    'Public IPv4 addresses (one per NAT)',
    inventory.publicIpv4,
    PRICES.publicIpv4Hour,
    'egress',
    PRICES.publicIpv4Hour.dollars * HOURS_PER_MONTH,
  );
  const endpointAzs = inventory.vpcEndpoints.interface.reduce(
    (sum, endpoint) => sum + Math.max(1, endpoint.subnets),
    0,
  );
  add(
    'VPC interface endpoints (per AZ)',
    endpointAzs,
    PRICES.interfaceEndpointHour,
    'egress',
    PRICES.interfaceEndpointHour.dollars * HOURS_PER_MONTH,
  );
  add(
    'SES Mail Manager ingress endpoints',
    inventory.mailManagerIngressPoints,
    PRICES.mailManagerIngressMonth,
    'ingress',
  );
  return items;
}

function sqsFedFunctions(measurement: ConfigMeasurement): number {
  const fed = new Set(
    measurement.workloads.flatMap((workload) => workload.stages.map((stage) => stage.functionId)),
  );
  return fed.size;
}

function countBy(values: readonly string[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const value of values) counts.set(value, (counts.get(value) ?? 0) + 1);
  return counts;
}

function notesFor(measurement: ConfigMeasurement): string[] {
  const { inventory } = measurement;
  const notes: string[] = [];
  const inVpc = inventory.functions.filter((fn) => fn.inVpc).map((fn) => `${fn.role} (${fn.id})`);
  if (inVpc.length > 0)
    notes.push(`In the VPC: ${inVpc.join(', ')}; its traffic pays the NAT unless an endpoint carries it.`);
  const gateway = inventory.vpcEndpoints.gateway.map((endpoint) => endpoint.service);
  if (gateway.length > 0) notes.push(`Gateway endpoints (free): ${gateway.join(', ')}.`);
  if (inventory.natInstances.length > 0)
    notes.push('A NAT instance has no per-GB fee: its traffic is in the instance price.');
  if (inventory.flowLogs > 0) {
    notes.push(
      'VPC flow logs go to CloudWatch Logs: their ingestion ($0.50/GB, vended) grows with connections, not priced here.',
    );
  }
  const destinations = inventory.sesEventDestinations.map((d) => d.events.join(', '));
  if (destinations.length > 0)
    notes.push(`SES event types published to EventBridge: ${destinations.join(' | ')}.`);
  return notes;
}
