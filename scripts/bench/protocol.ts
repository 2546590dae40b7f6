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

/** The limits the Graph peer enforces per mailbox (GraphMailboxLimits of local/peers/graph-peer.ts). */
export interface PeerGraphLimits {
  readonly concurrentRequestsPerMailbox?: number;
  readonly messagesPerMailbox?: { readonly count: number; readonly windowMs: number };
  readonly recipientsPerMailboxPerDay?: number;
}

/** What one mailbox's send requests met at the Graph peer (from its pacingStats), for the pacing scenarios. */
export interface PeerMailboxPacing {
  /** Epoch ms of each accepted send, oldest first. */
  readonly acceptedAt: readonly number[];
  /** Most send requests open at once, refused ones included. */
  readonly peakSendRequestsOpen: number;
  /** The limits' 429 answers by Graph error code. */
  readonly throttledByCode: Readonly<Record<string, number>>;
  /** Epoch ms of each of those 429s, oldest first. */
  readonly throttledAt: readonly number[];
  /** Messages delivered from the mailbox, and how many distinct subjects they had. */
  readonly delivered: number;
  readonly uniqueSubjects: number;
}

export type PeersRequest =
  | { readonly type: 'counts'; readonly id: number }
  | { readonly type: 'limits'; readonly id: number; readonly limits: PeerGraphLimits }
  | { readonly type: 'pacing'; readonly id: number; readonly mailboxes: readonly string[] }
  | { readonly type: 'stop' };

export type PeersMessage =
  | { readonly type: 'ready'; readonly endpoints: PeerEndpoints }
  | { readonly type: 'counts'; readonly id: number; readonly counts: PeerCounts }
  | { readonly type: 'limits'; readonly id: number }
  | {
      readonly type: 'pacing';
      readonly id: number;
      readonly mailboxes: Readonly<Record<string, PeerMailboxPacing>>;
    };

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

/** The pacing scenarios' DynamoDB (dynalite behind a counting proxy, dynamodb-store.ts). */
export type StoreRequest = { readonly type: 'counts'; readonly id: number } | { readonly type: 'stop' };

/** Calls by `<table> <operation>`: all of them, and those whose condition failed. */
export interface StoreCounts {
  readonly calls: Readonly<Record<string, number>>;
  readonly conditionFailed: Readonly<Record<string, number>>;
  /** Other errors the emulator answered (4xx/5xx besides a failed condition). */
  readonly errors: Readonly<Record<string, number>>;
}

export type StoreMessage =
  | { readonly type: 'ready'; readonly endpoint: string }
  | { readonly type: 'counts'; readonly id: number; readonly counts: StoreCounts };

/** One send function instance of a pacing scenario (pacing-worker.ts): it polls the outbox itself. */
export interface PollerPlan {
  /** file URL of the bundle whose `handler` is invoked */
  readonly bundle: string;
  readonly sqsEndpoint: string;
  readonly queueUrl: string;
  readonly queueArn: string;
  readonly region: string;
  readonly batchSize: number;
  readonly functionName: string;
  readonly timeoutMs: number;
}

export type PollerRequest = { readonly type: 'start' } | { readonly type: 'stop' };

export interface PollerResult {
  readonly invocations: number;
  /** Records received (a requeued copy or a retry is received again). */
  readonly records: number;
  /** Records the handler reported as failed (left for SQS to redeliver). */
  readonly failedRecords: number;
  /** Invocations that failed as a whole (threw or timed out). */
  readonly invocationErrors: number;
  readonly cpuMs: number;
}

export type PollerMessage =
  | { readonly type: 'ready'; readonly importMs: number }
  | { readonly type: 'stopped'; readonly result: PollerResult }
  | { readonly type: 'error'; readonly error: string };
