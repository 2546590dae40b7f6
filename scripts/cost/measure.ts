import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { REPO_ROOT } from '../../lib/relay-function.ts';
import { type RunningEmulator, startDynamoDbEmulator } from '../../local/emulators.ts';
import { createRelayTables } from '../../local/relay-tables.ts';
import { buildBundles } from '../bench/bundles.ts';
import { type Peers, startPeers } from '../bench/run.ts';
import { type AwsRecorder, startAwsRecorder } from './aws-recorder.ts';
import { measureFeedbackWork } from './feedback-work.ts';
import { type ConfigMeasurement, feedbackMeasurement, workloadMeasurement } from './measurement.ts';
import { measureSendWork, type ProviderFamily } from './send-work.ts';
import { relayStackModel } from './stack-functions.ts';
import { inventoryOf, synthesizeTemplate } from './template-inventory.ts';

export interface MeasureOptions {
  readonly messageKb: number;
  readonly warmupBatches: number;
  readonly measuredBatches: number;
  readonly log?: (line: string) => void;
}

/** Providers answer at once: their answer time is an assumption of the model, not measured. */
const PEER_ANSWER_MS = 1;
const FEEDBACK_DESCRIPTION = 'Turns SES bounces';

/**
 * The machinery to measure configurations: the send bundle as `cdk synth` builds it (the benchmark's
 * build), the benchmark's peers and AWS stub, a DynamoDB emulator and the recorder in front of them.
 */
export class CostBench {
  private constructor(
    private readonly directory: string,
    private readonly bundle: string,
    private readonly workerScript: string,
    private readonly peers: Peers,
    private readonly dynamo: RunningEmulator,
    private readonly recorder: AwsRecorder,
    private readonly options: MeasureOptions,
  ) {}

  static async start(options: MeasureOptions): Promise<CostBench> {
    const directory = mkdtempSync(join(tmpdir(), 'mail-relay-cost-'));
    options.log?.('building the send bundle (cdk synth of the construct) …');
    const bundles = await buildBundles(directory);
    const peers = await startPeers(PEER_ANSWER_MS);
    const dynamo = await startDynamoDbEmulator(0);
    const recorder = await startAwsRecorder({ dynamo: dynamo.endpoint, others: peers.endpoints.aws });
    return new CostBench(directory, bundles.relay, bundles.worker, peers, dynamo, recorder, options);
  }

  /**
   * Synthesizes the configuration's stack, counts its template and measures its functions' work, for
   * each of its providers (or only those given).
   */
  async measure(configPath: string, only?: readonly ProviderFamily[]): Promise<ConfigMeasurement> {
    const log = this.options.log ?? (() => undefined);
    const name = relative(REPO_ROOT, configPath);
    log(`${name}: synthesizing …`);
    const { config, template } = synthesizeTemplate(configPath);
    const inventory = inventoryOf(template);
    const stack = relayStackModel(template);
    await this.createTables(stack.sendFunction.settings(this.recorder.endpoint));
    const providers = (['graph', 'ses', 'smtp'] as const).filter(
      (provider: ProviderFamily) => config[provider] && (!only || only.includes(provider)),
    );
    const workloads = [];
    let lastSesSend: Record<string, unknown> | undefined;
    for (const provider of providers) {
      log(`${name}: ${provider} workload …`);
      const work = await measureSendWork(config, stack, provider, {
        directory: this.directory,
        workerScript: this.workerScript,
        bundle: this.bundle,
        peers: this.peers,
        recorder: this.recorder,
        messageKb: this.options.messageKb,
        warmupBatches: this.options.warmupBatches,
        measuredBatches: this.options.measuredBatches,
      });
      lastSesSend ??= work.lastSesSend;
      workloads.push(workloadMeasurement(work));
    }
    const feedbackFunction = stack.functionDescribedAs(FEEDBACK_DESCRIPTION);
    let feedback: ConfigMeasurement['feedback'];
    if (feedbackFunction && lastSesSend) {
      log(`${name}: SES feedback events …`);
      const work = await measureFeedbackWork(feedbackFunction, this.recorder, lastSesSend);
      feedback = Object.fromEntries(
        Object.entries(work).map(([type, event]) => [type, feedbackMeasurement(event)]),
      );
    }
    return {
      config: name,
      inventory,
      namedSecrets: namedSecretsIn(template),
      workloads,
      ...(feedback && { feedback }),
    };
  }

  async stop(): Promise<void> {
    await this.recorder.close();
    await this.dynamo.stop();
    await this.peers.stop();
    rmSync(this.directory, { recursive: true, force: true });
  }

  /** The tables the settings name, as the stack creates them (keys, index), in the emulator. */
  private async createTables(settings: Record<string, unknown>): Promise<void> {
    const tableOf = (section: unknown) => (section as { tableName?: string } | undefined)?.tableName;
    const ledger = tableOf(settings.ledger);
    const suppression = tableOf(settings.suppression);
    const pacing = tableOf(settings.pacing);
    if (ledger === undefined || suppression === undefined)
      throw new Error('the send settings name no tables');
    const client = new DynamoDBClient({
      endpoint: this.dynamo.endpoint,
      region: 'us-east-1',
      credentials: { accessKeyId: 'cost', secretAccessKey: 'cost' },
    });
    await createRelayTables(client, {
      ledgerTableName: ledger,
      suppressionTableName: suppression,
      ...(pacing !== undefined && { pacingTableName: pacing }),
    });
    client.destroy();
  }
}

/** Secrets the template names by a literal ARN (given in the configuration, so not created by it). */
function namedSecretsIn(template: object): number {
  const arns = JSON.stringify(template).match(
    /arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[A-Za-z0-9/_+=.@-]+/g,
  );
  return new Set(arns ?? []).size;
}
