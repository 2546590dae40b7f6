import { randomUUID } from 'node:crypto';
import type { Context } from 'aws-lambda';
import { SETTINGS_ENV_VAR } from '../../lambda/core/settings.ts';
import type { CapturedSend } from '../../local/ses-capture.ts';
import { SES_SIMULATOR_DOMAIN, simulatedSesEvents } from '../../local/ses-simulator.ts';
import type { AwsRecord, AwsRecorder } from './aws-recorder.ts';
import { emfOf } from './send-work.ts';
import type { StackFunction } from './stack-functions.ts';

/** The SES event types whose work the model measures (the others are rare enough to leave out, stated). */
export const MEASURED_SES_EVENTS = ['send', 'delivery', 'bounce', 'complaint'] as const;
export type MeasuredSesEvent = (typeof MEASURED_SES_EVENTS)[number];

/** What the feedback function does for one SES event. */
export interface FeedbackEventWork {
  readonly aws: AwsRecord;
  /** Bytes it wrote to stdout/stderr (its CloudWatch Logs volume, EMF included). */
  readonly logBytes: number;
  readonly emfDocuments: number;
  /** The metrics (name and dimension values) its EMF documents defined. */
  readonly metrics: readonly string[];
}

/**
 * Runs the feedback function's handler (the source, in this process) on one SES event of each type, as
 * SES would publish it for a message the send function sent (its tags and headers, from the last
 * measured SendEmail), with its settings from the template and its AWS calls through the recorder.
 * Counts only: the process is the model's own, so its CPU time says nothing about the function's.
 */
export async function measureFeedbackWork(
  fn: StackFunction,
  recorder: AwsRecorder,
  lastSesSend: Record<string, unknown>,
): Promise<Record<MeasuredSesEvent, FeedbackEventWork>> {
  const restore = setAwsEnvironment(recorder.endpoint, fn.environment);
  try {
    const { createFeedbackHandler } = await import('../../lambda/feedback/create-handler.ts');
    const handler = createFeedbackHandler({
      ...process.env,
      [SETTINGS_ENV_VAR]: JSON.stringify(fn.settings(recorder.endpoint)),
    });
    const invoke = (event: unknown) => handler(event, lambdaContext());
    // A warm function: its first invocation's one-off work is not per event.
    await silenced(() => invoke(sesEvent('delivery', lastSesSend)));
    const measured = {} as Record<MeasuredSesEvent, FeedbackEventWork>;
    for (const type of MEASURED_SES_EVENTS) {
      recorder.reset();
      const output = await silenced(() => invoke(sesEvent(type, lastSesSend)));
      measured[type] = { aws: recorder.snapshot(), ...output };
    }
    return measured;
  } finally {
    restore();
  }
}

/** One SES event of the type for a send like the given SendEmail input, built by local mode's simulator. */
export function sesEvent(
  type: MeasuredSesEvent,
  sendEmail: Record<string, unknown>,
): Record<string, unknown> {
  const input = sendEmail as {
    FromEmailAddress?: string;
    ConfigurationSetName?: string;
    EmailTags?: { Name: string; Value: string }[];
    Content?: { Raw?: { Data?: string } };
  };
  const scenario = { send: 'success', delivery: 'success', bounce: 'bounce', complaint: 'complaint' }[type];
  const send: CapturedSend = {
    messageId: `${randomUUID()}-000000`,
    fromEmailAddress: input.FromEmailAddress,
    destination: { to: [`${scenario}@${SES_SIMULATOR_DOMAIN}`], cc: [], bcc: [] },
    raw: Buffer.from(input.Content?.Raw?.Data ?? '', 'base64'),
    tags: Object.fromEntries((input.EmailTags ?? []).map((tag) => [tag.Name, tag.Value])),
    configurationSetName: input.ConfigurationSetName,
  };
  const events = simulatedSesEvents(send);
  // The simulator has no Send event: it is made from the delivery's envelope below.
  const wanted = { send: 'Delivery', delivery: 'Delivery', bounce: 'Bounce', complaint: 'Complaint' }[type];
  const event = events.find((candidate) => (candidate.detail as { eventType?: string }).eventType === wanted);
  if (!event) throw new Error(`local mode's SES simulator made no ${type} event`);
  if (type !== 'send') return event;
  // SES's Send event: the same envelope and mail object, with an empty `send` object.
  const { delivery: _delivery, ...detail } = event.detail as Record<string, unknown>;
  return { ...event, 'detail-type': 'Email Sent', detail: { ...detail, eventType: 'Send', send: {} } };
}

/** Runs the action with stdout and stderr counted and kept out of the model's own output. */
async function silenced(
  action: () => Promise<unknown>,
): Promise<{ logBytes: number; emfDocuments: number; metrics: string[] }> {
  let logBytes = 0;
  const lines: string[] = [];
  const originals = [process.stdout.write, process.stderr.write] as const;
  for (const stream of [process.stdout, process.stderr]) {
    stream.write = ((chunk: string | Uint8Array, ...rest: unknown[]) => {
      const text = typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8');
      logBytes += Buffer.byteLength(text);
      lines.push(...text.split('\n').filter((line) => line.length > 0));
      const callback = rest.find((value) => typeof value === 'function') as (() => void) | undefined;
      callback?.();
      return true;
    }) as typeof stream.write;
  }
  try {
    await action();
  } finally {
    [process.stdout.write, process.stderr.write] = originals;
  }
  const emf = emfOf(lines);
  return { logBytes, emfDocuments: emf.documents, metrics: emf.metrics };
}

/** Points the AWS SDK clients the handler makes at the recorder; returns what undoes it. */
function setAwsEnvironment(
  endpoint: string,
  functionEnvironment: Readonly<Record<string, string>>,
): () => void {
  const values: Record<string, string> = {
    ...functionEnvironment,
    AWS_REGION: 'us-east-1',
    AWS_ACCESS_KEY_ID: 'cost',
    AWS_SECRET_ACCESS_KEY: 'cost',
    AWS_ENDPOINT_URL_DYNAMODB: endpoint,
    AWS_ENDPOINT_URL_EVENTBRIDGE: endpoint,
  };
  const before = Object.fromEntries(Object.keys(values).map((name) => [name, process.env[name]]));
  Object.assign(process.env, values);
  return () => {
    for (const [name, value] of Object.entries(before)) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
  };
}

function lambdaContext(): Context {
  return {
    callbackWaitsForEmptyEventLoop: true,
    functionName: 'mail-relay-cost-feedback',
    functionVersion: '$LATEST',
    invokedFunctionArn: 'arn:aws:lambda:us-east-1:000000000000:function:mail-relay-cost-feedback',
    memoryLimitInMB: '256',
    awsRequestId: randomUUID(),
    logGroupName: '/aws/lambda/mail-relay-cost-feedback',
    logStreamName: '2025/01/01/[$LATEST]cost',
    getRemainingTimeInMillis: () => 30_000,
    done: () => undefined,
    fail: () => undefined,
    succeed: () => undefined,
  };
}
