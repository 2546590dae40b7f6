// Messages between the benchmark (scripts/bench/bench.ts) and its two kinds of child process over
// Node's IPC channel: the peers process and the Lambda worker. Types only, so the worker's build
// (esbuild) takes nothing else from here.

/** Where the peers listen and what the functions need to reach them. */
export interface PeerEndpoints {
  /** The AWS stub: every AWS_ENDPOINT_URL_* points here. */
  readonly aws: string;
  readonly graph: {
    readonly url: string;
    readonly tenantId: string;
    readonly clientId: string;
    /** What the hand-written loop uses (a client secret, as most hand-written code does). */
    readonly clientSecret: string;
    /** The relay's credential: a certificate, in Secrets Manager (the stub), as local mode sets it up. */
    readonly credentialSecretArn: string;
  };
  readonly smtp: { readonly host: string; readonly port: number };
  /**
   * PEM of each peer's self-signed certificate, for NODE_EXTRA_CA_CERTS: one file per provider, as
   * both certificates are named CN=localhost and OpenSSL would try only the first of the two.
   */
  readonly caCertificates: { readonly graph: string; readonly smtp: string };
}

/** What the peers have seen so far; the benchmark takes the difference across a measured run. */
export interface PeerCounts {
  /** AWS calls by API (`DynamoDB.GetItem`, `SESv2.SendEmail` …). */
  readonly aws: Readonly<Record<string, number>>;
  /** Requests to the Graph peer by operation (token, sendMail …). */
  readonly graph: Readonly<Record<string, number>>;
  /** Sum over Graph sendMail requests of the time from arrival to the answer being written. */
  readonly graphSendMailMs: number;
  readonly graphDelivered: number;
  readonly smtpReceived: number;
  readonly smtpConnections: number;
}

export type PeersRequest = { readonly type: 'counts'; readonly id: number } | { readonly type: 'stop' };

export type PeersMessage =
  | { readonly type: 'ready'; readonly endpoints: PeerEndpoints }
  | { readonly type: 'counts'; readonly id: number; readonly counts: PeerCounts };

/** One SQS batch as Lambda's event source mapping delivers it, built before the clock starts. */
export interface WorkerPlan {
  /** file URL of the bundle whose `handler` is invoked */
  readonly bundle: string;
  readonly warmupBatches: number;
  readonly measuredBatches: number;
  /** The SQS message bodies, one array per batch (warm-up batches first). */
  readonly batches: readonly (readonly string[])[];
  readonly queueArn: string;
  readonly functionName: string;
  readonly timeoutMs: number;
  /** When set, a V8 CPU profile of the measured batches is written to this file. */
  readonly cpuProfile?: string;
}

export type WorkerRequest = { readonly type: 'measure' };

export interface WorkerResult {
  readonly messages: number;
  readonly wallMs: number;
  /** process.cpuUsage() over the measured batches, in ms. */
  readonly cpuUserMs: number;
  readonly cpuSystemMs: number;
  /** Bytes written to stdout and stderr during the measured batches. */
  readonly logBytes: number;
  /** Of which Embedded Metric Format documents (lines with an `_aws` key). */
  readonly emfBytes: number;
  readonly logLines: number;
  /** Records the handler reported as failed (batchItemFailures), over all batches. */
  readonly failedRecords: number;
  /** Wall time of each measured invocation, ms. */
  readonly invocationMs: readonly number[];
}

export type WorkerMessage =
  | { readonly type: 'warmed'; readonly failedRecords: number; readonly importMs: number }
  | { readonly type: 'result'; readonly result: WorkerResult }
  | { readonly type: 'error'; readonly error: string };
