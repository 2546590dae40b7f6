import type { RelayLogger } from '../relay.ts';
import type { FeedbackEvent } from './feedback-event.ts';

/** A message in a sending mailbox's Inbox, as the mailbox lists it. */
export interface InboxEntry {
  readonly id: string;
  /** ISO 8601, second precision (Graph's receivedDateTime). */
  readonly receivedAt: string;
}

/** Read access to the sending mailboxes (Graph, Mail.Read application permission). */
export interface MailboxReader {
  /** Inbox messages received at or after `since`, oldest first, at most `limit`. */
  listSince(mailbox: string, since: string, limit: number): Promise<InboxEntry[]>;
  /** The message's raw MIME; undefined when it is gone (deleted since it was listed). */
  content(mailbox: string, id: string): Promise<Buffer | undefined>;
}

/** Where each mailbox's reading stopped: reports already handled are never processed twice. */
export interface ReportCursor {
  /** receivedAt of the newest message handled. */
  readonly receivedAt: string;
  /** Ids of the messages handled that arrived in that same second (Graph's precision). */
  readonly seenIds: readonly string[];
}

export interface ReportCursorStore {
  get(mailbox: string): Promise<ReportCursor | undefined>;
  put(mailbox: string, cursor: ReportCursor): Promise<void>;
}

export interface BounceReportDependencies {
  readonly reader: MailboxReader;
  readonly cursors: ReportCursorStore;
  /** Reads one message: its feedback events when it is a delivery report, undefined when not. */
  readonly parse: (
    mime: Buffer,
    context: { readonly mailbox: string; readonly receivedAt: string },
  ) => Promise<readonly FeedbackEvent[] | undefined>;
  /** Acts on the events of one report (suppress, count, publish); throws when it could not. */
  readonly process: (events: readonly FeedbackEvent[]) => Promise<unknown>;
  readonly logger: RelayLogger;
  readonly now?: () => number;
}

export interface BounceReportOptions {
  readonly mailboxes: readonly string[];
  /** How far back the first reading of a mailbox looks. */
  readonly lookbackMinutes: number;
  /** Messages read per mailbox per run; the rest wait for the next run. */
  readonly maxMessagesPerMailbox: number;
}

export interface MailboxResult {
  readonly mailbox: string;
  readonly messagesRead: number;
  readonly reports: number;
  readonly error?: string;
}

/** Thrown after every mailbox had its turn, when at least one could not be read. */
export class BounceReportError extends Error {
  constructor(readonly results: readonly MailboxResult[]) {
    const failed = results.filter((result) => result.error !== undefined);
    super(
      `Could not read the bounce reports of ${failed.length} of ${results.length} mailboxes: ${failed
        .map((result) => `${result.mailbox}: ${result.error}`)
        .join(' | ')}`,
    );
    this.name = 'BounceReportError';
  }
}

/**
 * Reads new non-delivery reports from each sending mailbox and hands their feedback on. The cursor
 * moves only past messages that were handled, so a failure (the mailbox, the parser's input, the
 * suppression list) leaves the rest for the next run: nothing is skipped, nothing processed twice.
 * One mailbox failing does not stop the others; the run then fails as a whole, so it shows as a
 * function error.
 */
export async function readBounceReports(
  options: BounceReportOptions,
  dependencies: BounceReportDependencies,
): Promise<MailboxResult[]> {
  const results: MailboxResult[] = [];
  for (const mailbox of options.mailboxes) {
    results.push(await readMailbox(mailbox, options, dependencies));
  }
  if (results.some((result) => result.error !== undefined)) throw new BounceReportError(results);
  return results;
}

async function readMailbox(
  mailbox: string,
  options: BounceReportOptions,
  dependencies: BounceReportDependencies,
): Promise<MailboxResult> {
  const { reader, cursors, logger } = dependencies;
  const now = dependencies.now ?? Date.now;
  let messagesRead = 0;
  let reports = 0;
  let cursor: ReportCursor | undefined;
  try {
    cursor = await cursors.get(mailbox);
    const since = cursor?.receivedAt ?? isoSeconds(now() - options.lookbackMinutes * 60_000);
    const seen = new Set(cursor?.receivedAt === since ? cursor.seenIds : []);
    // Messages of the cursor's second were partly handled: ask for a few more to see past them.
    const listed = await reader.listSince(mailbox, since, options.maxMessagesPerMailbox + seen.size);
    const fresh = listed.filter((entry) => !seen.has(entry.id)).slice(0, options.maxMessagesPerMailbox);
    for (const entry of fresh) {
      const mime = await reader.content(mailbox, entry.id);
      const events = mime && (await dependencies.parse(mime, { mailbox, receivedAt: entry.receivedAt }));
      if (events && events.length > 0) {
        await dependencies.process(events);
        reports += 1;
      }
      messagesRead += 1;
      cursor =
        cursor?.receivedAt === entry.receivedAt
          ? { receivedAt: entry.receivedAt, seenIds: [...cursor.seenIds, entry.id] }
          : { receivedAt: entry.receivedAt, seenIds: [entry.id] };
      await cursors.put(mailbox, cursor);
    }
    if (fresh.length === 0 && cursor === undefined) {
      // Nothing yet: start from here next time rather than re-reading the look-back window forever.
      await cursors.put(mailbox, { receivedAt: since, seenIds: [] });
    }
    logger.info('Bounce reports read', { mailbox, messagesRead, reports });
    return { mailbox, messagesRead, reports };
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    logger.error('Could not read the bounce reports of a mailbox', {
      mailbox,
      messagesRead,
      reports,
      error: message,
      ...(/access ?denied|forbidden|403/i.test(message) && {
        hint: 'Grant the app registration the Mail.Read application permission (admin consent); if an application access policy or RBAC for Applications scopes it, include this mailbox.',
      }),
    });
    return { mailbox, messagesRead, reports, error: message };
  }
}

/** Graph filters on receivedDateTime to the second. */
function isoSeconds(epochMs: number): string {
  return `${new Date(epochMs).toISOString().slice(0, 19)}Z`;
}
