import { fileURLToPath } from 'node:url';
import { type IMetric, MathExpression } from 'aws-cdk-lib/aws-cloudwatch';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Assumptions, DEFAULT_ASSUMPTIONS, priceConfig } from '../../scripts/cost/cost-model.ts';
import { CostBench } from '../../scripts/cost/measure.ts';
import type { AwsMeasurement, ConfigMeasurement, StageMeasurement } from '../../scripts/cost/measurement.ts';
import {
  committedReadmeSection,
  type ReadmeInputs,
  readmeSectionFor,
  readReadmeInputs,
} from '../../scripts/cost/readme-section.ts';
import {
  inventoryOf,
  type StackInventory,
  synthesizeTemplate,
} from '../../scripts/cost/template-inventory.ts';

const example = (name: string) => fileURLToPath(new URL(`../../examples/${name}`, import.meta.url));

/** The metrics an alarm's metric reads: one, or those a math expression uses (nested ones included). */
function metricsRead(metric: IMetric): number {
  if (!(metric instanceof MathExpression)) return 1;
  return Object.values(metric.usingMetrics).reduce((sum, used) => sum + metricsRead(used), 0);
}

describe('the template reader', () => {
  it('counts the alarms lib/relay-monitoring.ts creates, with the metrics each reads', () => {
    const { stack, template } = synthesizeTemplate(example('full.config.json'));

    const inventory = inventoryOf(template);

    const alarms = stack.relay.monitoring.alarms;
    const math = alarms.filter((alarm) => alarm.metric instanceof MathExpression);
    expect(inventory.alarms.standard + inventory.alarms.metricMath.length).toBe(alarms.length);
    expect([...inventory.alarms.metricMath].sort()).toEqual(
      math.map((alarm) => metricsRead(alarm.metric)).sort(),
    );
  });

  it("counts the send function with the configuration's memory, and a NAT gateway per natCount", () => {
    const { config, template } = synthesizeTemplate(example('full.config.json'));

    const inventory = inventoryOf(template);

    const send = inventory.functions.filter((fn) => fn.role === 'send');
    expect(send).toHaveLength(1);
    expect(send[0]?.memoryMiB).toBe(config.sendFunction.memoryMiB);
    expect(send[0]?.architecture).toBe('arm64');
    expect(inventory.natGateways).toBe(config.egress?.natCount);
    expect(inventory.publicIpv4).toBe(config.egress?.natCount);
    expect(inventory.natInstances).toEqual([]);
    expect(inventory.mailManagerIngressPoints).toBe(config.ingress?.clients.length);
    expect(inventory.tables.every((table) => table.onDemand)).toBe(true);
    expect(inventory.sesEventDestinations).toHaveLength(1);
    expect(inventory.sesEventDestinations[0]?.toEventBridge).toBe(true);
  });

  it('counts a NAT instance of the configured type and no NAT gateway', () => {
    const { config, template } = synthesizeTemplate(example('egress-instance.config.json'));

    const inventory = inventoryOf(template);

    expect(inventory.natInstances).toEqual([config.egress?.instanceType]);
    expect(inventory.natGateways).toBe(0);
    expect(inventory.publicIpv4).toBe(1);
  });
});

describe('the price arithmetic', () => {
  const none: AwsMeasurement = {
    calls: {},
    bytesByService: {},
    writeUnits: 0,
    readUnits: 0,
    conditionFailures: 0,
    consistentReadShare: 0,
    eventChunks: 0,
    sqsSendChunks: 0,
  };
  const stage: StageMeasurement = {
    functionId: 'Send',
    batchSize: 10,
    invocationsPerMessage: 0.1,
    sentToProvider: true,
    cpuMsPerMessage: 10,
    logBytesPerMessage: 2 ** 30 / 1e6,
    emfBytesPerMessage: 0,
    emfDocumentsPerMessage: 0.1,
    metrics: ['Sent{service=mail-relay,Provider=graph}', 'Accepted{service=mail-relay}'],
    aws: {
      ...none,
      calls: { 'DynamoDB.PutItem': 2 },
      bytesByService: { DynamoDB: 1_000 },
      writeUnits: 2,
      readUnits: 1,
      eventChunks: 1,
    },
  };
  const inventory: StackInventory = {
    alarms: { standard: 3, metricMath: [2, 3], composite: 1 },
    dashboards: 1,
    kmsKeys: 1,
    natGateways: 1,
    natInstances: ['t4g.nano'],
    publicIpv4: 2,
    vpcEndpoints: { interface: [], gateway: [] },
    mailManagerIngressPoints: 1,
    functions: [
      { id: 'Send', role: 'send', description: '', memoryMiB: 1024, architecture: 'arm64', inVpc: true },
    ],
    queues: 2,
    tables: [],
    logGroups: [],
    flowLogs: 0,
    secrets: 1,
    sesEventDestinations: [],
    eventRules: [],
  };
  const measurement: ConfigMeasurement = {
    config: 'fixed.json',
    inventory,
    namedSecrets: 1,
    workloads: [
      {
        provider: 'graph',
        providerName: 'graph',
        senders: 1,
        messagesMeasured: 10,
        messageBytes: 3_000,
        stages: [stage],
      },
    ],
  };
  const assumptions: Assumptions = { ...DEFAULT_ASSUMPTIONS, awsCallMs: 10 };

  it('prices each line item per million messages', () => {
    const [workload] = priceConfig(measurement, assumptions).workloads;
    const perMillion = Object.fromEntries(workload?.items.map((item) => [item.what, item.perMillion]) ?? []);

    expect(perMillion).toEqual({
      'SQS: producer SendMessage': expect.closeTo(0.4, 10),
      // One receive of 10 × ~800 B (one chunk) and one delete per batch of 10.
      'SQS: send function receive and delete (batches of 10)': expect.closeTo(0.08, 10),
      'Lambda: send function invocations': expect.closeTo(0.02, 10),
      // (300 ms Graph + 2 calls × 10 ms + 10 ms × 10 records) × 0.1 invocation × 1 GB.
      'Lambda: send function duration (1024 MB arm64)': expect.closeTo(0.042 * 13.3334, 10),
      'DynamoDB: write request units': expect.closeTo(1.25, 10),
      'DynamoDB: read request units': expect.closeTo(0.125, 10),
      'EventBridge: outcome events': expect.closeTo(1, 10),
      // A GiB per million messages.
      'CloudWatch Logs: ingestion (log lines and EMF)': expect.closeTo(0.5, 10),
      // DynamoDB's 1,000 bytes and the payload (message × 4/3 + 2,048 B) through the NAT.
      'NAT gateway: data processed': expect.closeTo(((1_000 + 4_000 + 2_048) * 1e6 * 0.045) / 2 ** 30, 10),
    });
    expect((workload?.relayOverhead ?? 0) - (workload?.relayOverheadWithoutEgress ?? 0)).toBeCloseTo(
      perMillion['NAT gateway: data processed'] ?? 0,
      10,
    );
  });

  it('prices the fixed items per month at 730 hours', () => {
    const cost = priceConfig(measurement, assumptions);
    const perMonth = Object.fromEntries(cost.fixed.map((item) => [item.what, item.perMonth]));

    expect(perMonth).toMatchObject({
      'CloudWatch alarms on one metric': expect.closeTo(0.3, 10),
      'CloudWatch metric-math alarms (2): metrics in them': expect.closeTo(0.5, 10),
      'CloudWatch composite alarms': expect.closeTo(0.5, 10),
      'CloudWatch custom metrics (EMF) the measured runs wrote': expect.closeTo(0.6, 10),
      'CloudWatch dashboards': 3,
      'KMS customer managed keys': 1,
      'Secrets Manager secrets (created, and named by ARN)': expect.closeTo(0.8, 10),
      'NAT gateways': expect.closeTo(32.85, 10),
      'NAT instances (t4g.nano)': expect.closeTo(3.066, 10),
      'Public IPv4 addresses (one per NAT)': expect.closeTo(7.3, 10),
      'SES Mail Manager ingress endpoints': 50,
    });
    expect(cost.fixedTotal - cost.fixedWithoutIngress).toBeCloseTo(50, 10);
    expect(cost.fixedTotal - cost.fixedWithoutEgress).toBeCloseTo(32.85 + 3.066 + 7.3, 10);
  });
});

describe("the README's cost section", () => {
  let inputs: ReadmeInputs;
  beforeAll(() => {
    inputs = readReadmeInputs();
  });

  it('is what the generator makes of its inputs (scripts/cost/readme-inputs.json)', () => {
    expect(committedReadmeSection()).toBe(readmeSectionFor(inputs));
  });

  it('has the inventory of each configuration as the code synthesizes it now', () => {
    for (const measured of inputs.measurements) {
      const { template } = synthesizeTemplate(
        fileURLToPath(new URL(`../../${measured.config}`, import.meta.url)),
      );

      expect({ config: measured.config, ...inventoryOf(template) }).toEqual({
        config: measured.config,
        ...measured.inventory,
      });
    }
  });

  describe('has the per-message work of the full example as the code does it now', () => {
    let bench: CostBench;
    let fresh: ConfigMeasurement;
    let committed: ConfigMeasurement | undefined;

    beforeAll(async () => {
      committed = inputs.measurements.find((measured) => measured.config === 'examples/full.config.json');
      bench = await CostBench.start({
        messageKb: inputs.assumptions.messageKb,
        warmupBatches: 1,
        measuredBatches: 4,
      });
      fresh = await bench.measure(example('full.config.json'), ['ses']);
    });
    afterAll(async () => {
      await bench?.stop();
    });

    /** The counts as they are, the bytes (which move a little with ids and timestamps) as numbers near them. */
    function near(stage: StageMeasurement) {
      const { cpuMsPerMessage: _cpu, logBytesPerMessage, emfBytesPerMessage, aws, ...counts } = stage;
      const { bytesByService, ...awsCounts } = aws;
      return {
        ...counts,
        aws: {
          ...awsCounts,
          bytesByService: Object.fromEntries(
            Object.entries(bytesByService).map(([service, bytes]) => [service, expect.closeTo(bytes, -2)]),
          ),
        },
        logBytesPerMessage: expect.closeTo(logBytesPerMessage, -1.5),
        emfBytesPerMessage: expect.closeTo(emfBytesPerMessage, -1),
      };
    }
    const without = ({ cpuMsPerMessage: _cpu, ...stage }: StageMeasurement) => stage;

    it('for SES: calls, capacity units, events, EMF documents and log bytes per message', () => {
      const ses = (measurement: ConfigMeasurement | undefined) =>
        measurement?.workloads.find((workload) => workload.provider === 'ses');

      expect(ses(fresh)?.stages.map(without)).toEqual(ses(committed)?.stages.map(near));
    });

    it('for the SES events the feedback function takes', () => {
      const nearFeedback = Object.fromEntries(
        Object.entries(committed?.feedback ?? {}).map(([type, work]) => [
          type,
          {
            ...work,
            aws: {
              ...work.aws,
              bytesByService: Object.fromEntries(
                Object.entries(work.aws.bytesByService).map(([service, bytes]) => [
                  service,
                  expect.closeTo(bytes, -2),
                ]),
              ),
            },
            logBytes: expect.closeTo(work.logBytes, -1.5),
          },
        ]),
      );

      expect(fresh.feedback).toEqual(nearFeedback);
    });
  });
});
