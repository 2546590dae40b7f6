import * as z from 'zod';

/** What the brake needs from SES: stop sending on one configuration set. */
export interface SesSendingSwitch {
  /** Pauses sending on the configuration set; pausing a paused one changes nothing. */
  pauseSending(configurationSetName: string): Promise<void>;
}

/** The two fields of a CloudWatch alarm notification (an alarm state change) the brake reads. */
const alarmStateChangeSchema = z.object({
  AlarmName: z.string(),
  NewStateValue: z.string(),
});

/**
 * The names of the alarms an SNS event reports as entering ALARM, each once, in order of appearance.
 *
 * Ignored, on purpose:
 * - OK and INSUFFICIENT_DATA transitions. The brake only ever pauses: resuming is an operator's
 *   decision once the cause is fixed (README, "Automatic brake and how to resume"). An OK usually means
 *   the rate fell because sending is paused, not because the list is clean, so resuming on it would
 *   oscillate; INSUFFICIENT_DATA says nothing about bounces at all.
 * - Messages that are not an alarm state change (not JSON, or without AlarmName and NewStateValue),
 *   such as a test message published from the console. Only CloudWatch may publish to the brake's
 *   topic, so such a message is no reason to stop mail; and failing on it would only make Lambda
 *   retry a message that can never be read.
 */
export function firingAlarms(event: unknown): string[] {
  const records = (event as { Records?: unknown } | null | undefined)?.Records;
  if (!Array.isArray(records)) return [];
  const names = new Set<string>();
  for (const record of records) {
    const change = alarmStateChangeSchema.safeParse(parseJson(snsMessageOf(record)));
    if (change.success && change.data.NewStateValue === 'ALARM') names.add(change.data.AlarmName);
  }
  return [...names];
}

/**
 * The brake: pauses sending on the configuration set once when the event reports any alarm entering
 * ALARM, and returns the names of those alarms (empty: nothing was paused). A pause that fails
 * rejects, so the invocation fails and Lambda retries it.
 */
export async function applySesBrake(
  event: unknown,
  configurationSetName: string,
  ses: SesSendingSwitch,
): Promise<string[]> {
  const alarms = firingAlarms(event);
  if (alarms.length > 0) await ses.pauseSending(configurationSetName);
  return alarms;
}

function snsMessageOf(record: unknown): unknown {
  return (record as { Sns?: { Message?: unknown } } | null | undefined)?.Sns?.Message;
}

function parseJson(text: unknown): unknown {
  if (typeof text !== 'string') return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
