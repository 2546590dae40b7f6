import { Logger, type LogItem } from '@aws-lambda-powertools/logger';
import type { Context, SQSEvent } from 'aws-lambda';
import { formatOutcome, type LogRecord, outcomeOf, problemLine } from './outcome-lines.ts';

/** Where local mode's outcome lines go: outcomes to `line` (stdout), errors to `problem` (stderr). */
export interface OutcomePrinter {
  line(text: string): void;
  problem(text: string): void;
}

/** The functions' logging, as local mode shows it: one line per outcome instead of their JSON. */
export interface OutcomeLog {
  /**
   * A function's logging: a logger whose records become lines instead of JSON (one per function, as
   * each keeps its own Lambda context), and nowhere for the EMF metric documents, which are not for a
   * person's console (`--json-logs` shows them).
   */
  functionOutput(): { readonly logger: Logger; writeMetrics(line: string): void };
  /** The send handler, noting when each record of a batch started: a line's milliseconds. */
  timed<Result>(
    handler: (event: SQSEvent, context: Context) => Promise<Result>,
  ): (event: SQSEvent, context: Context) => Promise<Result>;
}

/**
 * A Powertools Logger whose records go to `onRecord` instead of stdout. It is still the real logger
 * (levels, the Lambda context, persistent keys), so the functions run as they do in Lambda.
 */
class RecordLogger extends Logger {
  // Set after super(): anything the base class prints while it is being built is dropped.
  #onRecord: ((record: LogRecord) => void) | undefined;

  constructor(onRecord: (record: LogRecord) => void, serviceName: string) {
    super({ serviceName });
    this.#onRecord = onRecord;
  }

  protected override printLog(_logLevel: number, log: LogItem): void {
    log.prepareForPrint();
    this.#onRecord?.(log.getAttributes());
  }
}

export function createOutcomeLog(
  printer: OutcomePrinter,
  options: { readonly serviceName?: string; readonly now?: () => number } = {},
): OutcomeLog {
  const now = options.now ?? Date.now;
  // messageId -> when its current invocation began; forgotten at its outcome or when the batch ends.
  const started = new Map<string, number>();
  const onRecord = (record: LogRecord) => {
    const at = new Date(now());
    const outcome = outcomeOf(record, at);
    if (outcome) {
      const since = outcome.messageId === undefined ? undefined : started.get(outcome.messageId);
      printer.line(formatOutcome(outcome, at, since === undefined ? undefined : at.getTime() - since));
      return;
    }
    const problem = problemLine(record, at);
    if (problem) printer.problem(problem);
  };
  return {
    functionOutput: () => ({
      logger: new RecordLogger(onRecord, options.serviceName ?? 'mail-relay'),
      writeMetrics: () => undefined,
    }),
    timed(handler) {
      return async (event, context) => {
        const ids = (event.Records ?? []).map((record) => record.messageId);
        const at = now();
        for (const id of ids) started.set(id, at);
        try {
          return await handler(event, context);
        } finally {
          for (const id of ids) started.delete(id);
        }
      };
    },
  };
}
