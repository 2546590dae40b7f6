/**
 * Local mode's console: one human line per message outcome, read from the functions' own log records
 * (the JSON Lambda would write), e.g.
 *
 *   18:42:07  sent          3f2a9c1e  ses      1 recipient   41 ms
 *   18:42:09  retried       77c01d3b  graph    2 recipients  12 ms  GraphCredentialNotSet, again at 18:42:39 (in 30 s)
 *   18:42:11  dead-lettered 0b9e4a12                          3 ms  InvalidMessage
 *
 * Pure: the records come in, the lines go out. Only ids, counts, provider names, failure codes and
 * times are printed: the records never hold bodies or attachments, and tokens are masked in the one
 * free-text field shown (the error of a problem line).
 */

/** A log record as Powertools writes it: level, message, timestamp and the record's attributes. */
export type LogRecord = Readonly<Record<string, unknown>>;

export type OutcomeKind =
  | 'sent'
  | 'retried'
  | 'waiting'
  | 'dead-lettered'
  | 'suppressed'
  | 'duplicate'
  | 'bounced'
  | 'complained'
  | 'rejected'
  | 'delayed';

/** What one outcome line says. */
export interface Outcome {
  readonly kind: OutcomeKind;
  /** The SQS message id of the request (the relay's message id). */
  readonly messageId?: string;
  readonly provider?: string;
  readonly recipients?: number;
  /** Failure code, when, fallback: a few words after the columns. */
  readonly detail?: string;
}

/** The characters of a message id a line shows: enough to tell messages apart on one screen. */
export const SHORT_ID_LENGTH = 8;

/**
 * The outcome a log record reports, or undefined for the records that are not one (provider
 * failures on the way, pacing, ledger notes…). `at`: when the record was written (for "again at").
 */
export function outcomeOf(record: LogRecord, at: Date): Outcome | undefined {
  const common = {
    ...optional('messageId', text(record.messageId)),
    ...optional('provider', text(record.provider)),
    ...optional('recipients', recipientCount(record.recipients)),
  };
  const attempt = typeof record.attempt === 'number' && record.attempt > 1 ? `attempt ${record.attempt}` : '';
  switch (record.message) {
    case 'Message sent': {
      const fallbackFrom = Array.isArray(record.fallbackFrom) ? record.fallbackFrom.map(String) : [];
      // The record counts the recipients dropped for the suppression list (the addresses are not logged).
      const suppressed =
        typeof record.suppressedCount === 'number' ? `${record.suppressedCount} suppressed` : '';
      return {
        kind: 'sent',
        ...common,
        ...detail(
          fallbackFrom.length > 0 ? `after ${fallbackFrom.join(', ')} failed` : '',
          suppressed,
          attempt,
        ),
      };
    }
    case 'Lost answer resolved: the provider has the message':
      return { kind: 'sent', ...common, detail: 'found at the provider after a lost answer' };
    case 'Send failed, will retry': {
      const seconds = typeof record.retryInSeconds === 'number' ? record.retryInSeconds : undefined;
      const when =
        seconds === undefined
          ? 'again later'
          : `again at ${clockTime(new Date(at.getTime() + seconds * 1000))} (in ${seconds} s)`;
      return { kind: 'retried', ...common, ...detail(text(record.code), when, attempt) };
    }
    case 'Provider limit reached; the message waits on the queue': {
      const freeAt = text(record.freeAt);
      const back = freeAt && !Number.isNaN(Date.parse(freeAt)) ? `until ${clockTime(new Date(freeAt))}` : '';
      return {
        kind: 'waiting',
        ...common,
        ...detail(text(record.limit) && `${text(record.limit)} reached`, back),
      };
    }
    case 'Message dead-lettered':
      return { kind: 'dead-lettered', ...common, ...detail(text(record.code)) };
    case 'Already in the dead-letter queue: not dead-lettered a second time':
      return {
        kind: 'duplicate',
        ...common,
        ...detail('already in the dead-letter queue', text(record.code)),
      };
    case 'Message not sent: every recipient is suppressed':
      return { kind: 'suppressed', ...common, detail: 'every recipient is on the suppression list' };
    case 'Duplicate message not sent again': {
      const first = text(record.firstMessageId);
      return {
        kind: 'duplicate',
        ...common,
        detail: first ? `sent before as ${shortId(first)}` : 'sent before',
      };
    }
    case 'Bounce received':
      return {
        kind: 'bounced',
        ...common,
        ...detail(
          text(record.bounceType),
          text(record.status),
          record.suppressed === true ? 'suppressed' : '',
        ),
      };
    case 'Complaint received':
      return { kind: 'complained', ...common, ...detail(record.suppressed === true ? 'suppressed' : '') };
    case 'Provider rejected the message':
    case 'Provider could not render the message':
      return {
        kind: 'rejected',
        ...common,
        ...detail(record.message === 'Provider rejected the message' ? '' : 'could not render'),
      };
    case 'Delivery delayed':
      return { kind: 'delayed', ...common, ...detail(text(record.status)) };
    default:
      return undefined;
  }
}

/** One line: time, outcome, short id, provider, recipients, milliseconds (when known), then the detail. */
export function formatOutcome(outcome: Outcome, at: Date, milliseconds?: number): string {
  const recipients =
    outcome.recipients === undefined
      ? ''
      : `${outcome.recipients} recipient${outcome.recipients === 1 ? '' : 's'}`;
  const ms = milliseconds === undefined ? '' : `${Math.max(0, Math.round(milliseconds))} ms`;
  return [
    `${clockTime(at)}  `,
    column(outcome.kind, 13),
    column(outcome.messageId === undefined ? '' : shortId(outcome.messageId), 9),
    column(outcome.provider ?? '', 8),
    column(recipients, 12),
    ms.padStart(6),
    outcome.detail ? `  ${outcome.detail}` : '',
  ]
    .join('')
    .trimEnd();
}

/**
 * An error the functions logged that is not an outcome (a ledger write failed, an event could not be
 * published): worth seeing even without --json-logs. Undefined for anything below ERROR.
 */
export function problemLine(record: LogRecord, at: Date): string | undefined {
  if (record.level !== 'ERROR' && record.level !== 'CRITICAL') return undefined;
  const id = text(record.messageId);
  const error = text(record.error);
  return [
    `${clockTime(at)}  `,
    column('error', 13),
    column(id ? shortId(id) : '', 9),
    text(record.message) || 'error',
    error ? `: ${maskTokens(error).slice(0, 300)}` : '',
  ]
    .join('')
    .trimEnd();
}

/** Bearer tokens and JWTs (an error may quote a request): never on the console. */
export function maskTokens(value: string): string {
  return value
    .replace(/\bBearer\s+\S+/gi, 'Bearer <token>')
    .replace(/\beyJ[\w-]+\.[\w-]+\.[\w-]*/g, '<token>');
}

export function shortId(messageId: string): string {
  return messageId.slice(0, SHORT_ID_LENGTH);
}

/** HH:MM:SS in the machine's time zone, as a clock on the wall says it. */
export function clockTime(at: Date): string {
  return [at.getHours(), at.getMinutes(), at.getSeconds()]
    .map((part) => String(part).padStart(2, '0'))
    .join(':');
}

/** The value padded to `width`, and at least one space after it. */
function column(value: string, width: number): string {
  return `${value.padEnd(width)} `;
}

function text(value: unknown): string {
  return typeof value === 'string' ? value : '';
}

/** Send records count recipients; feedback records list them. */
function recipientCount(value: unknown): number | undefined {
  if (typeof value === 'number' && Number.isInteger(value) && value >= 0) return value;
  if (Array.isArray(value)) return value.length;
  return undefined;
}

function optional<K extends string, V>(key: K, value: V | undefined | ''): { [P in K]?: V } {
  return (value === undefined || value === '' ? {} : { [key]: value }) as { [P in K]?: V };
}

function detail(...parts: string[]): { detail?: string } {
  const joined = parts.filter((part) => part.length > 0).join(', ');
  return joined.length > 0 ? { detail: joined } : {};
}
