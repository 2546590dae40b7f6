import type { AwsRecord } from './aws-recorder.ts';
import type { FeedbackEventWork, MeasuredSesEvent } from './feedback-work.ts';
import type { ProviderFamily, SendWork } from './send-work.ts';
import type { StackInventory } from './template-inventory.ts';

/**
 * What the price model reads for one configuration: the template's inventory and the measured work,
 * per message, rounded so that a record written today reads back the same. This is also what
 * scripts/cost/readme-inputs.json holds for the README's section.
 */
export interface ConfigMeasurement {
  /** The configuration file, relative to the repository. */
  readonly config: string;
  readonly inventory: StackInventory;
  /** Secrets the configuration names by ARN (not created by the stack, still billed). */
  readonly namedSecrets: number;
  readonly workloads: readonly WorkloadMeasurement[];
  /** Per SES event type, when SES is configured and the stack has a feedback function. */
  readonly feedback?: Readonly<Partial<Record<MeasuredSesEvent, FeedbackMeasurement>>>;
}

export interface WorkloadMeasurement {
  readonly provider: ProviderFamily;
  readonly providerName: string;
  readonly route?: string;
  readonly senders: number;
  readonly messagesMeasured: number;
  readonly messageBytes: number;
  /** Bytes of the provider request per message, where the recorder saw it (SES). */
  readonly providerRequestBytes?: number;
  readonly stages: readonly StageMeasurement[];
}

export interface StageMeasurement {
  readonly functionId: string;
  readonly batchSize: number;
  readonly invocationsPerMessage: number;
  readonly sentToProvider: boolean;
  readonly cpuMsPerMessage: number;
  readonly logBytesPerMessage: number;
  readonly emfBytesPerMessage: number;
  readonly emfDocumentsPerMessage: number;
  readonly metrics: readonly string[];
  readonly aws: AwsMeasurement;
}

/** AWS work per message. */
export interface AwsMeasurement {
  /** Calls by API. */
  readonly calls: Readonly<Record<string, number>>;
  /** Request plus answer bytes by service (DynamoDB, SQS, EventBridge …): what a NAT would carry. */
  readonly bytesByService: Readonly<Record<string, number>>;
  readonly writeUnits: number;
  readonly readUnits: number;
  readonly conditionFailures: number;
  readonly consistentReadShare: number;
  /** EventBridge entries, counted in the 64 KB chunks they are billed by. */
  readonly eventChunks: number;
  /** SQS SendMessage calls of the function, counted in 64 KB chunks. */
  readonly sqsSendChunks: number;
}

export interface FeedbackMeasurement {
  readonly aws: AwsMeasurement;
  readonly logBytes: number;
  readonly emfDocuments: number;
  readonly metrics: readonly string[];
}

const CHUNK = 64 * 1024;

/** Rounds to `digits` decimals (per-message figures: 4 keep a tenth of a cent per million exact). */
export function round(value: number, digits = 4): number {
  const scale = 10 ** digits;
  return Math.round(value * scale) / scale;
}

export function awsMeasurement(record: AwsRecord, messages: number): AwsMeasurement {
  const per = (value: number) => round(value / messages);
  const calls: Record<string, number> = {};
  const bytesByService: Record<string, number> = {};
  for (const [api, entry] of Object.entries(record.apis).sort(([a], [b]) => a.localeCompare(b))) {
    calls[api] = per(entry.calls);
    const service = api.split('.')[0] ?? api;
    bytesByService[service] = (bytesByService[service] ?? 0) + entry.requestBytes + entry.responseBytes;
  }
  for (const service of Object.keys(bytesByService)) {
    bytesByService[service] = Math.round((bytesByService[service] ?? 0) / messages);
  }
  const reads = record.dynamo.consistentReads + record.dynamo.eventualReads;
  return {
    calls,
    bytesByService,
    writeUnits: per(record.dynamo.writeUnits),
    readUnits: per(record.dynamo.readUnits),
    conditionFailures: per(record.dynamo.conditionFailures),
    consistentReadShare: reads === 0 ? 0 : round(record.dynamo.consistentReads / reads, 2),
    eventChunks: per(record.eventEntryBytes.reduce((sum, bytes) => sum + Math.ceil(bytes / CHUNK), 0)),
    sqsSendChunks: per(
      record.queuedMessages.reduce(
        (sum, message) => sum + Math.ceil(Buffer.byteLength(message.body) / CHUNK),
        0,
      ),
    ),
  };
}

export function workloadMeasurement(work: SendWork): WorkloadMeasurement {
  return {
    provider: work.provider,
    providerName: work.providerName,
    ...(work.route !== undefined && { route: work.route }),
    senders: work.senders.length,
    messagesMeasured: work.messages,
    messageBytes: work.messageBytes,
    ...(work.sesRequestBytesPerMessage !== undefined && {
      providerRequestBytes: Math.round(work.sesRequestBytesPerMessage),
    }),
    stages: work.stages.map((stage) => ({
      functionId: stage.functionId,
      batchSize: stage.batchSize,
      invocationsPerMessage: round(stage.invocationsPerMessage),
      sentToProvider: stage.sentToProvider,
      cpuMsPerMessage: round(stage.cpuMsPerMessage, 1),
      logBytesPerMessage: Math.round(stage.logBytesPerMessage),
      emfBytesPerMessage: Math.round(stage.emfBytesPerMessage),
      emfDocumentsPerMessage: round(stage.emfDocumentsPerMessage),
      metrics: stage.metrics,
      aws: awsMeasurement(stage.aws, work.messages),
    })),
  };
}

export function feedbackMeasurement(work: FeedbackEventWork): FeedbackMeasurement {
  return {
    aws: awsMeasurement(work.aws, 1),
    logBytes: work.logBytes,
    emfDocuments: work.emfDocuments,
    metrics: work.metrics,
  };
}
