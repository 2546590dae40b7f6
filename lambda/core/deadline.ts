import { setMaxListeners } from 'node:events';

/**
 * The time a record may take, as abort signals derived from the invocation's remaining time: nothing
 * the relay waits for runs into the function's timeout.
 */
export interface RecordDeadlines {
  /** Provider calls, ledger reads and the hand-off, suppression lookups, S3 reads. */
  readonly work: AbortSignal;
  /** The writes that record the outcome (ledger, dead-letter queue, retry delay), a little later. */
  readonly wrapUp: AbortSignal;
}

/** Time kept back from provider work for recording outcomes (ledger, DLQ, retry delay). */
const WRAP_UP_SHARE = 0.25;
const MIN_WRAP_UP_MS = 2_000;
const MAX_WRAP_UP_MS = 5_000;
/** The last writes stop this long before the function's timeout, so the invocation still returns. */
const FINAL_MARGIN_MS = 500;

/**
 * Abort signals for one invocation, from the time Lambda says is left: provider calls, reads and the
 * hand-off stop early enough that the outcome can still be recorded, and the recording itself stops
 * before the function times out. Nothing runs into the Lambda timeout.
 */
export function invocationDeadlines(remainingMs: number): RecordDeadlines {
  // A short invocation still keeps half its time for work.
  const floor = Math.min(MIN_WRAP_UP_MS, remainingMs / 2);
  const wrapUp = Math.min(MAX_WRAP_UP_MS, Math.max(floor, remainingMs * WRAP_UP_SHARE));
  // AbortSignal.timeout takes whole milliseconds only (it throws on 1999.5).
  const deadlines = {
    work: AbortSignal.timeout(Math.max(0, Math.floor(remainingMs - wrapUp))),
    wrapUp: AbortSignal.timeout(Math.max(0, Math.floor(remainingMs - FINAL_MARGIN_MS))),
  };
  // Every record of the batch, and each of its requests, listens to the same two signals: past Node's
  // default of 10 listeners it printed a MaxListenersExceededWarning to stderr on every invocation
  // (two log lines a batch, in CloudWatch Logs). Listeners come off as the requests settle.
  setMaxListeners(0, deadlines.work, deadlines.wrapUp);
  return deadlines;
}

/**
 * Settles with `work`, or rejects with `onAbort()` as soon as `signal` aborts: for waits that cannot
 * be cancelled themselves (a token request shared by several sends, a permit queue).
 */
export function untilAborted<T>(work: Promise<T>, signal: AbortSignal, onAbort: () => Error): Promise<T> {
  if (signal.aborted) return Promise.reject(onAbort());
  return new Promise<T>((resolve, reject) => {
    const abort = () => reject(onAbort());
    signal.addEventListener('abort', abort, { once: true });
    work.then(
      (value) => {
        signal.removeEventListener('abort', abort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener('abort', abort);
        reject(error);
      },
    );
  });
}
