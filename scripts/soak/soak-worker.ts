// One send function in its own process, for the soak: the real handler, driven by the local SQS
// event source as Lambda's event source mapping would drive it, configured only through its
// environment (MAIL_RELAY_SETTINGS, AWS_ENDPOINT_URL_*, SOAK_*). The soak SIGKILLs it at random.
// Prints "ready" once polling.
import { SQSClient } from '@aws-sdk/client-sqs';
import { createHttpTransport } from '../../lambda/providers/http-transport.ts';
import { createSendHandler } from '../../lambda/send/create-handler.ts';
import { readSettings } from '../../lambda/send/settings.ts';
import { LocalSqsEventSource } from '../../local/sqs-event-source.ts';

const number = (name: string) => {
  const value = Number(process.env[name]);
  if (!Number.isFinite(value)) throw new Error(`${name} must be a number`);
  return value;
};

const settings = readSettings(process.env);
const providerTimeoutMs = number('SOAK_PROVIDER_TIMEOUT_MS');
const source = new LocalSqsEventSource({
  client: new SQSClient({}),
  queueUrl: settings.queueUrl,
  queueArn: process.env.SOAK_QUEUE_ARN ?? '',
  region: process.env.AWS_REGION ?? 'us-east-1',
  handler: createSendHandler(process.env, {
    graphTransport: createHttpTransport({
      ca: process.env.SOAK_GRAPH_CA ?? '',
      timeoutMs: providerTimeoutMs,
    }),
    providerTimeoutMs,
  }),
  batchSize: number('SOAK_BATCH_SIZE'),
  maxConcurrency: number('SOAK_CONCURRENCY'),
  functionTimeoutMs: settings.ledger.leaseSeconds * 1000,
});
source.start();
process.stdout.write('ready\n');
process.once('SIGTERM', () => {
  void source.stop().then(() => process.exit(0));
});
