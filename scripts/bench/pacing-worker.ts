// One send function instance of a pacing scenario: a process that imports the send bundle once and
// polls the outbox for it, as Lambda's SQS event source mapping does for one instance (one batch at
// a time, records that succeeded deleted, failed ones left for SQS). Unlike lambda-worker.ts, the
// batches come from a queue (the SQS emulator), because pacing puts messages back on it: a send
// whose turn is beyond the function's wait budget goes back as a delayed copy, and comes back.
//
// bench.ts compiles this file with esbuild and runs it with plain `node`. argv[2]: the plan file
// (PollerPlan as JSON). It imports the bundle at once, reports `ready`, polls from `start` to `stop`,
// then reports what it did. The poller is Lambda's infrastructure, not the function: its own SQS
// calls (ReceiveMessage, DeleteMessageBatch) are not the relay's.
import { readFileSync } from 'node:fs';
import { SQSClient } from '@aws-sdk/client-sqs';
import type { Context, SQSBatchResponse, SQSEvent } from 'aws-lambda';
import { LocalSqsEventSource } from '../../local/sqs-event-source.ts';
import type { PollerMessage, PollerPlan, PollerRequest } from './protocol.ts';

type Handler = (event: SQSEvent, context: Context) => Promise<SQSBatchResponse | undefined>;

const send = (message: PollerMessage) => process.send?.(message);

try {
  const planFile = process.argv[2];
  if (!planFile) throw new Error('usage: pacing-worker <plan.json>');
  const plan = JSON.parse(readFileSync(planFile, 'utf8')) as PollerPlan;
  const importStarted = performance.now();
  const { handler } = (await import(plan.bundle)) as { handler: Handler };
  const importMs = performance.now() - importStarted;

  const counts = { invocations: 0, records: 0, failedRecords: 0, invocationErrors: 0 };
  const counted: Handler = async (event, context) => {
    counts.invocations += 1;
    counts.records += event.Records.length;
    const response = await handler(event, context);
    counts.failedRecords += response?.batchItemFailures.length ?? 0;
    return response;
  };
  const source = new LocalSqsEventSource({
    client: new SQSClient({ endpoint: plan.sqsEndpoint, region: plan.region }),
    queueUrl: plan.queueUrl,
    queueArn: plan.queueArn,
    region: plan.region,
    handler: counted,
    batchSize: plan.batchSize,
    // One instance runs one invocation at a time.
    maxConcurrency: 1,
    functionTimeoutMs: plan.timeoutMs,
    functionName: plan.functionName,
    // Short polls: a delayed copy is picked up within a second of becoming visible.
    waitTimeSeconds: 1,
    onInvocationError: () => {
      counts.invocationErrors += 1;
    },
  });
  let cpu = process.cpuUsage();
  process.on('message', (request: PollerRequest) => {
    if (request.type === 'start') {
      cpu = process.cpuUsage();
      source.start();
    } else if (request.type === 'stop') {
      void source.stop().then(() => {
        const used = process.cpuUsage(cpu);
        send({ type: 'stopped', result: { ...counts, cpuMs: (used.user + used.system) / 1000 } });
      });
    }
  });
  send({ type: 'ready', importMs });
} catch (error) {
  send({ type: 'error', error: error instanceof Error ? (error.stack ?? error.message) : String(error) });
}
process.on('disconnect', () => process.exit(0));
