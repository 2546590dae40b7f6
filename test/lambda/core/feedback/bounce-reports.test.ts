import { describe, expect, it } from 'vitest';
import {
  BounceReportError,
  type InboxEntry,
  type MailboxReader,
  type ReportCursor,
  readBounceReports,
} from '../../../../lambda/core/feedback/bounce-reports.ts';
import type { FeedbackEvent } from '../../../../lambda/core/feedback/feedback-event.ts';

const NOW = Date.parse('2026-11-22T12:00:00Z');
const OPTIONS = { mailboxes: ['noreply@contoso.com'], lookbackMinutes: 60, maxMessagesPerMailbox: 10 };

/** An Inbox per mailbox; a message whose MIME is "report:<address>" is a bounce report for it. */
class FakeMailboxes implements MailboxReader {
  readonly inboxes = new Map<string, (InboxEntry & { mime: string })[]>();
  readonly listCalls: { mailbox: string; since: string; limit: number }[] = [];
  failList?: Error;
  missing = new Set<string>();

  add(mailbox: string, id: string, receivedAt: string, mime: string): void {
    this.inboxes.set(mailbox, [...(this.inboxes.get(mailbox) ?? []), { id, receivedAt, mime }]);
  }

  async listSince(mailbox: string, since: string, limit: number): Promise<InboxEntry[]> {
    this.listCalls.push({ mailbox, since, limit });
    if (this.failList) throw this.failList;
    return (this.inboxes.get(mailbox) ?? [])
      .filter((entry) => entry.receivedAt >= since)
      .sort((a, b) => a.receivedAt.localeCompare(b.receivedAt))
      .slice(0, limit)
      .map(({ id, receivedAt }) => ({ id, receivedAt }));
  }

  async content(mailbox: string, id: string): Promise<Buffer | undefined> {
    if (this.missing.has(id)) return undefined;
    const entry = this.inboxes.get(mailbox)?.find((candidate) => candidate.id === id);
    return entry && Buffer.from(entry.mime);
  }
}

function harness(options: { failProcessOn?: string } = {}) {
  const mailboxes = new FakeMailboxes();
  const cursors = new Map<string, ReportCursor>();
  const processed: FeedbackEvent[] = [];
  const logs: { level: string; message: string; attributes: Record<string, unknown> }[] = [];
  const log = (level: string) => (message: string, attributes: Record<string, unknown>) =>
    logs.push({ level, message, attributes });
  const dependencies = {
    reader: mailboxes,
    cursors: {
      get: async (mailbox: string) => cursors.get(mailbox),
      put: async (mailbox: string, cursor: ReportCursor) => void cursors.set(mailbox, cursor),
    },
    parse: async (mime: Buffer, context: { mailbox: string; receivedAt: string }) => {
      const text = mime.toString();
      if (!text.startsWith('report:')) return undefined;
      const address = text.slice('report:'.length);
      return [
        {
          kind: 'bounced' as const,
          provider: 'graph',
          recipients: [address],
          bounceType: 'hard' as const,
          at: context.receivedAt,
        },
      ];
    },
    process: async (events: readonly FeedbackEvent[]) => {
      if (events.some((event) => event.recipients.includes(options.failProcessOn ?? '')))
        throw new Error('suppression list throttled');
      processed.push(...events);
    },
    logger: { info: log('info'), warn: log('warn'), error: log('error') },
    now: () => NOW,
  };
  return { mailboxes, cursors, processed, logs, dependencies };
}

describe('readBounceReports', () => {
  it('reads the last lookbackMinutes on the first run, processes reports, skips other mail', async () => {
    const run = harness();
    run.mailboxes.add('noreply@contoso.com', 'm1', '2026-11-22T10:30:00Z', 'report:old@fabrikam.com');
    run.mailboxes.add('noreply@contoso.com', 'm2', '2026-11-22T11:10:00Z', 'report:a@fabrikam.com');
    run.mailboxes.add('noreply@contoso.com', 'm3', '2026-11-22T11:20:00Z', 'Thanks for your mail!');

    const results = await readBounceReports(OPTIONS, run.dependencies);

    expect(run.mailboxes.listCalls[0]).toEqual({
      mailbox: 'noreply@contoso.com',
      since: '2026-11-22T11:00:00Z',
      limit: 10,
    });
    expect(run.processed.map((event) => event.recipients)).toEqual([['a@fabrikam.com']]);
    expect(results).toEqual([{ mailbox: 'noreply@contoso.com', messagesRead: 2, reports: 1 }]);
    expect(run.cursors.get('noreply@contoso.com')).toEqual({
      receivedAt: '2026-11-22T11:20:00Z',
      seenIds: ['m3'],
    });
  });

  it('never processes a report twice, even when several arrived in the cursor second', async () => {
    const run = harness();
    run.mailboxes.add('noreply@contoso.com', 'm1', '2026-11-22T11:10:00Z', 'report:a@fabrikam.com');
    run.mailboxes.add('noreply@contoso.com', 'm2', '2026-11-22T11:10:00Z', 'report:b@fabrikam.com');
    await readBounceReports(OPTIONS, run.dependencies);
    expect(run.cursors.get('noreply@contoso.com')).toEqual({
      receivedAt: '2026-11-22T11:10:00Z',
      seenIds: ['m1', 'm2'],
    });

    // A third report lands in the same second after the first run.
    run.mailboxes.add('noreply@contoso.com', 'm3', '2026-11-22T11:10:00Z', 'report:c@fabrikam.com');
    await readBounceReports(OPTIONS, run.dependencies);
    await readBounceReports(OPTIONS, run.dependencies);

    expect(run.processed.map((event) => event.recipients[0])).toEqual([
      'a@fabrikam.com',
      'b@fabrikam.com',
      'c@fabrikam.com',
    ]);
  });

  it('reads at most maxMessagesPerMailbox per run and takes the rest next time', async () => {
    const run = harness();
    for (let index = 1; index <= 5; index += 1) {
      run.mailboxes.add(
        'noreply@contoso.com',
        `m${index}`,
        `2026-11-22T11:1${index}:00Z`,
        `report:r${index}@fabrikam.com`,
      );
    }
    const options = { ...OPTIONS, maxMessagesPerMailbox: 2 };
    await readBounceReports(options, run.dependencies);
    expect(run.processed).toHaveLength(2);
    await readBounceReports(options, run.dependencies);
    await readBounceReports(options, run.dependencies);
    expect(run.processed.map((event) => event.recipients[0])).toEqual(
      [1, 2, 3, 4, 5].map((index) => `r${index}@fabrikam.com`),
    );
  });

  it('stops a mailbox at a report it could not process, keeps it for the next run, and fails the run', async () => {
    const run = harness({ failProcessOn: 'b@fabrikam.com' });
    run.mailboxes.add('noreply@contoso.com', 'm1', '2026-11-22T11:10:00Z', 'report:a@fabrikam.com');
    run.mailboxes.add('noreply@contoso.com', 'm2', '2026-11-22T11:11:00Z', 'report:b@fabrikam.com');
    run.mailboxes.add('noreply@contoso.com', 'm3', '2026-11-22T11:12:00Z', 'report:c@fabrikam.com');

    const error = await readBounceReports(OPTIONS, run.dependencies).catch((caught: unknown) => caught);

    expect(error).toBeInstanceOf(BounceReportError);
    expect((error as Error).message).toContain('noreply@contoso.com: suppression list throttled');
    expect(run.processed.map((event) => event.recipients[0])).toEqual(['a@fabrikam.com']);
    expect(run.cursors.get('noreply@contoso.com')).toEqual({
      receivedAt: '2026-11-22T11:10:00Z',
      seenIds: ['m1'],
    });
  });

  it('goes on with the other mailboxes when one cannot be read, and says how to grant access', async () => {
    const run = harness();
    run.mailboxes.add('facturas@fabrikam.com', 'f1', '2026-11-22T11:10:00Z', 'report:x@example.com');
    run.mailboxes.failList = undefined;
    const reader = run.dependencies.reader;
    const denied = {
      ...run.dependencies,
      reader: {
        listSince: (mailbox: string, since: string, limit: number) =>
          mailbox === 'noreply@contoso.com'
            ? Promise.reject(
                new Error('graph: ErrorAccessDenied: Access is denied. Check credentials and try again.'),
              )
            : reader.listSince(mailbox, since, limit),
        content: (mailbox: string, id: string) => reader.content(mailbox, id),
      },
    };

    const error = await readBounceReports(
      { ...OPTIONS, mailboxes: ['noreply@contoso.com', 'facturas@fabrikam.com'] },
      denied,
    ).catch((caught: unknown) => caught);

    expect((error as BounceReportError).results).toEqual([
      expect.objectContaining({
        mailbox: 'noreply@contoso.com',
        error: expect.stringContaining('ErrorAccessDenied'),
      }),
      { mailbox: 'facturas@fabrikam.com', messagesRead: 1, reports: 1 },
    ]);
    expect(run.processed.map((event) => event.recipients[0])).toEqual(['x@example.com']);
    expect(run.logs).toContainEqual(
      expect.objectContaining({
        level: 'error',
        attributes: expect.objectContaining({
          mailbox: 'noreply@contoso.com',
          hint: expect.stringContaining('Mail.Read'),
        }),
      }),
    );
  });

  it('moves past a message deleted between the list and the read', async () => {
    const run = harness();
    run.mailboxes.add('noreply@contoso.com', 'm1', '2026-11-22T11:10:00Z', 'report:a@fabrikam.com');
    run.mailboxes.add('noreply@contoso.com', 'm2', '2026-11-22T11:11:00Z', 'report:b@fabrikam.com');
    run.mailboxes.missing.add('m1');

    await readBounceReports(OPTIONS, run.dependencies);

    expect(run.processed.map((event) => event.recipients[0])).toEqual(['b@fabrikam.com']);
  });

  it('starts from the look-back bound next time when the mailbox was empty', async () => {
    const run = harness();
    await readBounceReports(OPTIONS, run.dependencies);
    expect(run.cursors.get('noreply@contoso.com')).toEqual({
      receivedAt: '2026-11-22T11:00:00Z',
      seenIds: [],
    });
  });
});
