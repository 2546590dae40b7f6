// The measured process: one warm Lambda instance. It imports a function bundle once (the relay's send
// bundle or the hand-written loop's), then invokes its `handler` with SQS batches back to back, as
// Lambda's event source mapping does for one instance. Events are built before the clock starts;
// over the measured batches it takes the wall time, process.cpuUsage() (the peers run in another
// process and waiting costs no CPU, so this is the function's own work) and the bytes the function
// writes to stdout/stderr (its CloudWatch Logs volume, metrics included).
//
// bench.ts compiles this file with esbuild and runs it with plain `node` (no TypeScript loader in the
// measured process). argv[2]: the plan file (WorkerPlan as JSON). Talks over the IPC channel.
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import type { Context, SQSBatchResponse, SQSEvent, SQSRecord } from 'aws-lambda';
import type { WorkerMessage, WorkerPlan, WorkerRequest, WorkerResult } from './protocol.ts';

type Handler = (event: SQSEvent, context: Context) => Promise<SQSBatchResponse | undefined>;

const send = (message: WorkerMessage) => process.send?.(message);

// Counted before the bundle is imported, so every write of the function (Powertools writes to
// process.stdout itself) goes through here.
const output = { bytes: 0, emfBytes: 0, lines: 0 };
for (const stream of [process.stdout, process.stderr]) {
  const write = stream.write.bind(stream) as (...args: unknown[]) => boolean;
  // Kept cheap: it runs inside the measured process, for the relay and the loop alike.
  stream.write = ((chunk: string | Uint8Array, ...rest: unknown[]) => {
    const text = typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8');
    const bytes = typeof chunk === 'string' ? Buffer.byteLength(chunk) : chunk.byteLength;
    output.bytes += bytes;
    for (let at = text.indexOf('\n'); at >= 0; at = text.indexOf('\n', at + 1)) output.lines += 1;
    if (text.includes('"_aws"')) output.emfBytes += bytes;
    return write(chunk, ...rest);
  }) as typeof stream.write;
}

try {
  const planFile = process.argv[2];
  if (!planFile) throw new Error('usage: lambda-worker <plan.json>');
  const plan = JSON.parse(readFileSync(planFile, 'utf8')) as WorkerPlan;
  const invocations = plan.batches.map((bodies) => invocation(plan, bodies));

  const importStarted = performance.now();
  const { handler } = (await import(plan.bundle)) as { handler: Handler };
  const importMs = performance.now() - importStarted;

  let failedRecords = 0;
  for (const next of invocations.slice(0, plan.warmupBatches)) failedRecords += await invoke(handler, next);
  send({ type: 'warmed', failedRecords, importMs });
  await new Promise<void>((resolve) =>
    process.once('message', (request: WorkerRequest) => request.type === 'measure' && resolve()),
  );

  const measured = invocations.slice(plan.warmupBatches);
  const invocationMs: number[] = [];
  failedRecords = 0;
  const profiler = plan.cpuProfile === undefined ? undefined : await startProfiler();
  const before = { ...output };
  const cpu = process.cpuUsage();
  const started = performance.now();
  for (const next of measured) {
    const invocationStarted = performance.now();
    failedRecords += await invoke(handler, next);
    invocationMs.push(performance.now() - invocationStarted);
  }
  const wallMs = performance.now() - started;
  const used = process.cpuUsage(cpu);
  if (profiler && plan.cpuProfile !== undefined) writeFileSync(plan.cpuProfile, await profiler.stop());
  const result: WorkerResult = {
    messages: measured.reduce((sum, next) => sum + next.event.Records.length, 0),
    wallMs,
    cpuUserMs: used.user / 1000,
    cpuSystemMs: used.system / 1000,
    logBytes: output.bytes - before.bytes,
    emfBytes: output.emfBytes - before.emfBytes,
    logLines: output.lines - before.lines,
    failedRecords,
    invocationMs,
  };
  send({ type: 'result', result });
} catch (error) {
  send({ type: 'error', error: error instanceof Error ? (error.stack ?? error.message) : String(error) });
}
// Stays up (a warm instance keeps its connections) until bench.ts ends it.
process.on('disconnect', () => process.exit(0));

/** The V8 profiler through the inspector, so the profile covers exactly the measured batches. */
async function startProfiler(): Promise<{ stop(): Promise<string> }> {
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.setSamplingInterval', { interval: 100 });
  await session.post('Profiler.start');
  return {
    async stop() {
      const { profile } = await session.post('Profiler.stop');
      session.disconnect();
      return JSON.stringify(profile);
    },
  };
}

interface Invocation {
  readonly event: SQSEvent;
  readonly context: Context;
  readonly traceId: string;
}

/** One invocation as Lambda makes it: the trace id in the environment, a fresh context. */
async function invoke(handler: Handler, { event, context, traceId }: Invocation): Promise<number> {
  process.env._X_AMZN_TRACE_ID = traceId;
  const response = await handler(event, context);
  return response?.batchItemFailures.length ?? 0;
}

function invocation(plan: WorkerPlan, bodies: readonly string[]): Invocation {
  const now = Date.now();
  const region = plan.queueArn.split(':')[3] ?? 'us-east-1';
  const records = bodies.map(
    (body): SQSRecord => ({
      messageId: randomUUID(),
      receiptHandle: `AQEB${randomBytes(150).toString('base64')}`,
      body,
      attributes: {
        ApproximateReceiveCount: '1',
        SentTimestamp: String(now),
        SenderId: 'AROAEXAMPLEBENCH:producer',
        ApproximateFirstReceiveTimestamp: String(now),
      },
      messageAttributes: {},
      md5OfBody: createHash('md5').update(body).digest('hex'),
      eventSource: 'aws:sqs',
      eventSourceARN: plan.queueArn,
      awsRegion: region,
    }),
  );
  let deadline = 0;
  const requestId = randomUUID();
  const context: Context = {
    callbackWaitsForEmptyEventLoop: true,
    functionName: plan.functionName,
    functionVersion: '$LATEST',
    invokedFunctionArn: `arn:aws:lambda:${region}:000000000000:function:${plan.functionName}`,
    memoryLimitInMB: '512',
    awsRequestId: requestId,
    logGroupName: `/aws/lambda/${plan.functionName}`,
    logStreamName: `2025/01/01/[$LATEST]${randomBytes(16).toString('hex')}`,
    // The clock starts at the first call, which the handler makes as the invocation begins.
    getRemainingTimeInMillis: () => {
      if (deadline === 0) deadline = Date.now() + plan.timeoutMs;
      return Math.max(0, deadline - Date.now());
    },
    done: () => undefined,
    fail: () => undefined,
    succeed: () => undefined,
  };
  const traceId = `Root=1-${Math.floor(now / 1000).toString(16)}-${randomBytes(12).toString('hex')};Parent=${randomBytes(8).toString('hex')};Sampled=0;Lineage=1:${randomBytes(4).toString('hex')}:0`;
  return { event: { Records: records }, context, traceId };
}
