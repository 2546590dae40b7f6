import type { RetrySettings } from './settings.ts';

/**
 * Seconds to wait before try number `attempt + 1` on the same provider: exponential from
 * baseDelaySeconds, capped at maxDelaySeconds, with "equal jitter" (half fixed, half random), so
 * messages that failed together do not come back together, yet each waits at least half the step.
 */
export function backoffSeconds(
  attempt: number,
  retry: Pick<RetrySettings, 'baseDelaySeconds' | 'maxDelaySeconds'>,
  random: () => number = Math.random,
): number {
  const step = Math.min(retry.maxDelaySeconds, retry.baseDelaySeconds * 2 ** Math.max(0, attempt - 1));
  return Math.max(1, Math.ceil(step / 2 + random() * (step / 2)));
}
