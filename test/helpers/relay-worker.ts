// A send function in its own process, so a test can kill it mid-send the way Lambda kills a timed-out
// or crashed function: the real handler, driven by the local SQS event source, configured only through
// its environment (MAIL_RELAY_SETTINGS, AWS_ENDPOINT_URL_*). Prints "ready" once polling.
import { SQSClient } from '@aws-sdk/client-sqs';
import { createSendHandler } from '../../lambda/send/create-handler.ts';
import { readSettings } from '../../lambda/send/settings.ts';
import { LocalSqsEventSource } from '../../local/sqs-event-source.ts';

const settings = readSettings(process.env);
const source = new LocalSqsEventSource({
  client: new SQSClient({}),
  queueUrl: settings.queueUrl,
  queueArn: process.env.MAIL_RELAY_QUEUE_ARN ?? '',
  region: process.env.AWS_REGION ?? 'us-east-1',
  handler: createSendHandler(process.env),
  batchSize: 1,
  maxConcurrency: 1,
  functionTimeoutMs: settings.ledger.leaseSeconds * 1000,
  // Tests kill this process: a long poll it leaves behind must not hide messages for long.
  waitTimeSeconds: 1,
});
source.start();
process.stdout.write('ready\n');
process.once('SIGTERM', () => {
  void source.stop().then(() => process.exit(0));
});
