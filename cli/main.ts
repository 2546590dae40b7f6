import { parseArgs } from 'node:util';
import { ConfigurationError } from '../lambda/core/validation.ts';
import {
  DEFAULT_LOCAL_VISIBILITY_TIMEOUT_SECONDS,
  DEFAULT_SES_PORT,
  DEFAULT_SQS_PORT,
  startLocalRelay,
} from '../local/local-relay.ts';
import { buildMessage, DEFAULT_LOCAL_QUEUE_URL, enqueue } from './send.ts';

const USAGE = `Usage:
  mail-relay start [--sqs-port N] [--ses-port N] [--config PATH] [--visibility-timeout SECONDS]
      Runs the whole relay locally (SQS + SES emulators on 127.0.0.1, the real send handler).
      Ports also from MAIL_RELAY_SQS_PORT / MAIL_RELAY_SES_PORT (defaults ${DEFAULT_SQS_PORT}, ${DEFAULT_SES_PORT}).

  mail-relay send --from ADDR --to ADDR [--to ADDR …] --subject S (--text T | --html H)
                  [--cc ADDR] [--bcc ADDR] [--reply-to ADDR] [--attach FILE …]
                  [--header "X-Name: value" …] [--tag name=value …] [--idempotency-key K]
                  [--queue-url URL] [--endpoint URL] [--region R]
      Validates a message against the contract and enqueues it; prints the SQS message id.
      Default queue: ${DEFAULT_LOCAL_QUEUE_URL} (local mode).`;

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case 'start':
        return await start(rest);
      case 'send':
        return await send(rest);
      case undefined:
      case 'help':
      case '--help':
      case '-h':
        console.log(USAGE);
        return command === undefined ? 1 : 0;
      default:
        console.error(`Unknown command "${command}".\n\n${USAGE}`);
        return 1;
    }
  } catch (error) {
    console.error(error instanceof ConfigurationError ? error.message : `Error: ${(error as Error).message}`);
    return 1;
  }
}

function port(flag: string | undefined, envName: string, fallback: number): number {
  const raw = flag ?? process.env[envName];
  if (raw === undefined) return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 0 || value > 65_535) {
    throw new Error(`${flag !== undefined ? 'port flag' : envName} must be a port number, got "${raw}"`);
  }
  return value;
}

async function start(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      'sqs-port': { type: 'string' },
      'ses-port': { type: 'string' },
      config: { type: 'string' },
      'visibility-timeout': { type: 'string' },
    },
  });
  const relay = await startLocalRelay({
    sqsPort: port(values['sqs-port'], 'MAIL_RELAY_SQS_PORT', DEFAULT_SQS_PORT),
    sesPort: port(values['ses-port'], 'MAIL_RELAY_SES_PORT', DEFAULT_SES_PORT),
    ...(values.config && { configPath: values.config }),
    visibilityTimeoutSeconds: Number(
      values['visibility-timeout'] ?? DEFAULT_LOCAL_VISIBILITY_TIMEOUT_SECONDS,
    ),
  });
  console.log(`mail-relay local mode is running (Ctrl-C to stop)

  Outbox queue:      ${relay.queueUrl}
  Dead-letter queue: ${relay.deadLetterQueueUrl}
  SQS endpoint:      ${relay.sqsEndpoint}   (any AWS SDK, region us-east-1, any credentials)
  Captured mail:     ${relay.sesEndpoint}/   (web view)   ${relay.sesEndpoint}/store   (JSON)
  Exactly as sent:   ${relay.sesEndpoint}/mail-relay/sent   (envelopes)   ${relay.sesEndpoint}/mail-relay/raw/<id>.eml
  Sender identities: ${relay.config.ses.identities.join(', ')}

Try:
  npx mail-relay send --from app@${firstDomain(relay.config.ses.identities)} --to you@example.org --subject Hello --text "It works"
`);
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  console.log('Stopping…');
  await relay.stop();
  return 0;
}

function firstDomain(identities: readonly string[]): string {
  const first = identities[0] ?? 'example.com';
  return first.includes('@') ? first.slice(first.indexOf('@') + 1) : first;
}

async function send(args: string[]): Promise<number> {
  const many = { type: 'string', multiple: true } as const;
  const { values } = parseArgs({
    args,
    options: {
      from: { type: 'string' },
      to: many,
      cc: many,
      bcc: many,
      'reply-to': many,
      subject: { type: 'string' },
      text: { type: 'string' },
      html: { type: 'string' },
      attach: many,
      header: many,
      tag: many,
      'idempotency-key': { type: 'string' },
      'queue-url': { type: 'string' },
      endpoint: { type: 'string' },
      region: { type: 'string' },
    },
  });
  const built = await buildMessage(values);
  if ('problems' in built) {
    console.error(
      `The message is not valid:\n${built.problems.map((problem) => `  - ${problem}`).join('\n')}`,
    );
    return 1;
  }
  const id = await enqueue(built.body, {
    queueUrl: values['queue-url'] ?? DEFAULT_LOCAL_QUEUE_URL,
    ...(values.endpoint && { endpoint: values.endpoint }),
    ...(values.region && { region: values.region }),
  });
  console.log(id);
  return 0;
}
