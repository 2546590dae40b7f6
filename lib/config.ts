import { readFileSync } from 'node:fs';
import { z } from 'zod';
import {
  DEFAULT_MAX_MESSAGE_BYTES,
  DEFAULT_MAX_RECEIVE_COUNT,
  DEFAULT_MAX_RECIPIENTS,
} from '../lambda/core/limits.ts';
import { messageLimitsSchema, type RelaySettings, sesSettingsSchema } from '../lambda/core/settings.ts';
import { ConfigurationError, describeIssues } from '../lambda/core/validation.ts';

export const DEFAULT_CONFIG_PATH = 'mail-relay.config.json';

/** CloudWatch Logs accepts only these retention periods. */
export const LOG_RETENTION_DAYS = [
  1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653,
] as const;

const queueConfigSchema = z.strictObject({
  maxReceiveCount: z
    .int()
    .min(1)
    .max(1000)
    .default(DEFAULT_MAX_RECEIVE_COUNT)
    .describe('Deliveries of one message before it is dead-lettered (SQS redrive maxReceiveCount).'),
  retentionDays: z
    .int()
    .min(1)
    .max(14)
    .default(14)
    .describe(
      'Days SQS keeps an unconsumed message in the outbox. The dead-letter queue always keeps 14 days, because a redriven message keeps its original age.',
    ),
  visibilityTimeoutSeconds: z
    .int()
    .min(0)
    .max(43_200)
    .optional()
    .describe('Outbox visibility timeout. Default and minimum: 6 x sendFunction.timeoutSeconds.'),
});

const sendFunctionConfigSchema = z.strictObject({
  timeoutSeconds: z.int().min(5).max(900).default(30).describe('Send function timeout.'),
  memoryMiB: z.int().min(128).max(10_240).default(512).describe('Send function memory.'),
  batchSize: z.int().min(1).max(10).default(10).describe('SQS records per invocation.'),
  maxConcurrency: z
    .int()
    .min(2)
    .max(1000)
    .default(10)
    .describe('Maximum concurrent invocations the SQS event source may start (caps the provider send rate).'),
  logRetentionDays: z
    .int()
    .refine((days) => (LOG_RETENTION_DAYS as readonly number[]).includes(days), {
      message: `must be one of the retention periods CloudWatch Logs accepts: ${LOG_RETENTION_DAYS.join(', ')}`,
    })
    .default(30)
    .describe(`Log retention in days, one of ${LOG_RETENTION_DAYS.join(', ')}.`),
});

/** Lambda allows 4 KB of environment variables in total; leave room for the other variables. */
const MAX_SETTINGS_BYTES = 3_500;
/** A queue URL as long as AWS makes them (the real one is only known at deploy time). */
const LONGEST_QUEUE_URL = `https://sqs.ap-southeast-5.amazonaws.com/123456789012/${'x'.repeat(80)}`;

function estimatedSettingsBytes(config: {
  ses: unknown;
  message: unknown;
  queue: { maxReceiveCount: number };
}) {
  const settings = {
    deadLetterQueueUrl: LONGEST_QUEUE_URL,
    maxReceiveCount: config.queue.maxReceiveCount,
    limits: config.message,
    ses: config.ses,
  } satisfies Record<keyof RelaySettings, unknown>;
  return Buffer.byteLength(JSON.stringify(settings));
}

export const relayConfigSchema = z
  .strictObject({
    $schema: z.string().optional(),
    ses: sesSettingsSchema.describe('Amazon SES: the verified identities the relay may send from.'),
    message: messageLimitsSchema
      .extend({
        maxRecipients: messageLimitsSchema.shape.maxRecipients.default(DEFAULT_MAX_RECIPIENTS),
        maxMessageBytes: messageLimitsSchema.shape.maxMessageBytes.default(DEFAULT_MAX_MESSAGE_BYTES),
      })
      .prefault({})
      .describe('Limits applied to every message (to + cc + bcc count, decoded body + attachment bytes).'),
    queue: queueConfigSchema.prefault({}),
    sendFunction: sendFunctionConfigSchema.prefault({}),
  })
  .superRefine((config, ctx) => {
    const settingsBytes = estimatedSettingsBytes(config);
    if (settingsBytes > MAX_SETTINGS_BYTES) {
      ctx.addIssue({
        code: 'custom',
        path: ['ses', 'identities'],
        message: `the function settings would take ~${settingsBytes} bytes of its environment, over the ${MAX_SETTINGS_BYTES} that fit in Lambda's 4 KB; verify whole domains instead of many single addresses`,
      });
    }
    const minimum = config.sendFunction.timeoutSeconds * 6;
    const visibility = config.queue.visibilityTimeoutSeconds;
    if (visibility !== undefined && visibility < minimum) {
      ctx.addIssue({
        code: 'custom',
        path: ['queue', 'visibilityTimeoutSeconds'],
        message: `must be at least 6 x sendFunction.timeoutSeconds (${minimum}) so a slow batch is not delivered twice`,
      });
    }
  });

/** What a config file may contain (defaults optional). */
export type RelayConfigInput = z.input<typeof relayConfigSchema>;
/** A validated configuration with every default filled in. */
export type RelayConfig = z.output<typeof relayConfigSchema>;

/** Validates a configuration object, reporting every problem in one error. */
export function parseRelayConfig(input: unknown, source = 'mail-relay configuration'): RelayConfig {
  const result = relayConfigSchema.safeParse(input);
  if (!result.success) {
    throw new ConfigurationError(`Invalid ${source}`, describeIssues(result.error));
  }
  return result.data;
}

/** Reads and validates a configuration file (`cdk synth -c config=PATH`). */
export function loadRelayConfig(path: string): RelayConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    const reason = (error as NodeJS.ErrnoException).code === 'ENOENT' ? 'file not found' : String(error);
    throw new ConfigurationError(`Cannot read mail-relay configuration ${path}`, [
      `${reason} (create it from examples/, or pass another file with \`-c config=PATH\`)`,
    ]);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new ConfigurationError(`Invalid mail-relay configuration ${path}`, [
      `not valid JSON: ${(error as Error).message}`,
    ]);
  }
  return parseRelayConfig(json, `mail-relay configuration ${path}`);
}
