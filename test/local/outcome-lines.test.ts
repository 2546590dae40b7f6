import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { Context, SQSEvent } from 'aws-lambda';
import { describe, expect, it } from 'vitest';
import {
  clockTime,
  formatOutcome,
  type LogRecord,
  maskTokens,
  outcomeOf,
  problemLine,
} from '../../local/outcome-lines.ts';
import { createOutcomeLog } from '../../local/outcome-log.ts';

// Local times built from their parts: the lines read the machine's clock, whatever its time zone.
const at = new Date(2025, 0, 2, 18, 42, 7);
const id = '3f2a9c1e-0b1d-4c6e-9a7b-1234567890ab';

/** Records as the send and feedback functions write them (the same message and attribute names). */
const records = {
  sent: { level: 'INFO', message: 'Message sent', messageId: id, attempt: 1, recipients: 1, provider: 'ses' },
  fellBack: {
    level: 'INFO',
    message: 'Message sent',
    messageId: id,
    attempt: 2,
    recipients: 3,
    provider: 'ses',
    fallbackFrom: ['graph'],
  },
  retried: {
    level: 'WARN',
    message: 'Send failed, will retry',
    messageId: id,
    attempt: 1,
    recipients: 2,
    failureClass: 'provider',
    code: 'GraphCredentialNotSet',
    reason: 'the Graph credential secret still holds the placeholder the stack created',
    provider: 'graph',
    retryInSeconds: 30,
  },
  waiting: {
    level: 'INFO',
    message: 'Provider limit reached; the message waits on the queue',
    messageId: id,
    recipients: 1,
    provider: 'graph',
    limit: 'recipientsPerDay',
    freeAt: new Date(2025, 0, 3, 0, 0, 0).toISOString(),
    waitSeconds: 19_073,
  },
  deadLettered: {
    level: 'WARN',
    message: 'Message dead-lettered',
    messageId: id,
    attempt: 1,
    failureClass: 'permanent',
    code: 'InvalidMessage',
    reason: 'subject: Required',
  },
  suppressed: {
    level: 'WARN',
    message: 'Message not sent: every recipient is suppressed',
    messageId: id,
    recipients: 2,
  },
  duplicate: {
    level: 'INFO',
    message: 'Duplicate message not sent again',
    messageId: id,
    recipients: 1,
    key: 'order-42',
    firstMessageId: '77c01d3b-aaaa-4bbb-8ccc-000000000000',
    provider: 'ses',
    sentAt: '2025-01-02T17:00:00.000Z',
  },
  alreadyDeadLettered: {
    level: 'WARN',
    message: 'Already in the dead-letter queue: not dead-lettered a second time',
    messageId: id,
    key: 'order-42',
    code: 'InvalidMessage',
  },
  bounced: {
    level: 'WARN',
    message: 'Bounce received',
    provider: 'ses',
    messageId: id,
    providerMessageId: 'ses-1',
    recipients: ['bounce@simulator.amazonses.com'],
    bounceType: 'hard',
    status: '5.1.1',
    diagnostic: 'smtp; 550 5.1.1 user unknown',
    suppressed: true,
  },
  complained: {
    level: 'WARN',
    message: 'Complaint received',
    provider: 'ses',
    messageId: id,
    recipients: ['complaint@simulator.amazonses.com'],
    suppressed: true,
  },
} satisfies Record<string, LogRecord>;

describe('local mode outcome lines', () => {
  it('a sent message: time, outcome, short id, provider, recipients and milliseconds in columns', () => {
    const outcome = outcomeOf(records.sent, at);
    expect(outcome).toEqual({ kind: 'sent', messageId: id, provider: 'ses', recipients: 1 });
    expect(formatOutcome(outcome as NonNullable<typeof outcome>, at, 41)).toBe(
      '18:42:07  sent          3f2a9c1e  ses      1 recipient   41 ms',
    );
  });

  it('a sent message after a fallback names the providers that failed and the attempt', () => {
    const line = formatOutcome(
      outcomeOf(records.fellBack, at) as NonNullable<ReturnType<typeof outcomeOf>>,
      at,
      1234,
    );
    expect(line).toBe(
      '18:42:07  sent          3f2a9c1e  ses      3 recipients 1234 ms  after graph failed, attempt 2',
    );
  });

  it('a sent message some of whose recipients were suppressed says how many', () => {
    const record = { ...records.sent, recipients: 3, suppressedCount: 2 };
    const line = formatOutcome(outcomeOf(record, at) as NonNullable<ReturnType<typeof outcomeOf>>, at, 41);
    expect(line).toBe('18:42:07  sent          3f2a9c1e  ses      3 recipients  41 ms  2 suppressed');
  });

  it('a retry says the failure code and when it comes back', () => {
    const line = formatOutcome(
      outcomeOf(records.retried, at) as NonNullable<ReturnType<typeof outcomeOf>>,
      at,
      12,
    );
    expect(line).toBe(
      '18:42:07  retried       3f2a9c1e  graph    2 recipients  12 ms  GraphCredentialNotSet, again at 18:42:37 (in 30 s)',
    );
  });

  it('a dead-lettered message says its failure code, not the reason', () => {
    const line = formatOutcome(
      outcomeOf(records.deadLettered, at) as NonNullable<ReturnType<typeof outcomeOf>>,
      at,
      3,
    );
    expect(line).toBe('18:42:07  dead-lettered 3f2a9c1e                          3 ms  InvalidMessage');
    expect(line).not.toContain('subject');
  });

  it('suppressed, duplicate, already dead-lettered and waiting messages each get their outcome', () => {
    const kinds = (['suppressed', 'duplicate', 'alreadyDeadLettered', 'waiting'] as const).map((name) =>
      outcomeOf(records[name], at),
    );
    expect(kinds).toEqual([
      {
        kind: 'suppressed',
        messageId: id,
        recipients: 2,
        detail: 'every recipient is on the suppression list',
      },
      { kind: 'duplicate', messageId: id, provider: 'ses', recipients: 1, detail: 'sent before as 77c01d3b' },
      {
        kind: 'duplicate',
        messageId: id,
        detail: 'already in the dead-letter queue, InvalidMessage',
      },
      {
        kind: 'waiting',
        messageId: id,
        provider: 'graph',
        recipients: 1,
        detail: 'recipientsPerDay reached, until 00:00:00',
      },
    ]);
  });

  it('feedback: bounces and complaints count the recipients and never name them or quote the diagnostic', () => {
    const bounced = formatOutcome(
      outcomeOf(records.bounced, at) as NonNullable<ReturnType<typeof outcomeOf>>,
      at,
    );
    expect(bounced).toBe(
      '18:42:07  bounced       3f2a9c1e  ses      1 recipient          hard, 5.1.1, suppressed',
    );
    expect(bounced).not.toContain('simulator');
    expect(bounced).not.toContain('user unknown');
    const complained = formatOutcome(
      outcomeOf(records.complained, at) as NonNullable<ReturnType<typeof outcomeOf>>,
      at,
    );
    expect(complained).toBe('18:42:07  complained    3f2a9c1e  ses      1 recipient          suppressed');
  });

  it('records that are not outcomes make no line; only errors make a problem line', () => {
    const providerFailed = { level: 'WARN', message: 'Provider failed', messageId: id, code: 'Throttled' };
    expect(outcomeOf(providerFailed, at)).toBeUndefined();
    expect(problemLine(providerFailed, at)).toBeUndefined();
    expect(
      problemLine(
        { level: 'ERROR', message: 'Could not write the delivery ledger', key: 'k', error: 'ECONNREFUSED' },
        at,
      ),
    ).toBe('18:42:07  error                   Could not write the delivery ledger: ECONNREFUSED');
  });

  it('masks bearer tokens and JWTs in the error a problem line quotes', () => {
    const jwt = 'eyJhbGciOiJSUzI1NiJ9.eyJyb2xlcyI6WyJNYWlsLlNlbmQiXX0.c2lnbmF0dXJl';
    expect(maskTokens(`401 for Authorization: Bearer ${jwt} at graph`)).toBe(
      '401 for Authorization: Bearer <token> at graph',
    );
    const line = problemLine(
      { level: 'ERROR', message: 'The record could not be processed', messageId: id, error: `token ${jwt}` },
      at,
    );
    expect(line).toBe('18:42:07  error         3f2a9c1e  The record could not be processed: token <token>');
  });

  it('the time is the wall clock, two digits each', () => {
    expect(clockTime(new Date(2025, 5, 1, 7, 3, 9))).toBe('07:03:09');
  });

  it('every record these tests use is one the functions really write (same message text)', () => {
    const sources = ['lambda/core/relay', 'lambda/core/feedback'].flatMap((directory) =>
      readdirSync(directory)
        .filter((file) => file.endsWith('.ts'))
        .map((file) => readFileSync(path.join(directory, file), 'utf8')),
    );
    for (const record of Object.values(records)) {
      expect(
        sources.some((source) => source.includes(`'${record.message}'`)),
        record.message,
      ).toBe(true);
    }
  });
});

describe('local mode outcome log (the functions’ Powertools logger, turned into lines)', () => {
  const context = { functionName: 'mail-relay-send-local' } as Context;
  const event = (messageId: string) => ({ Records: [{ messageId }] }) as unknown as SQSEvent;

  it('prints a line per outcome the real logger records, with the ms since its batch began, and errors apart', async () => {
    const lines: string[] = [];
    const problems: string[] = [];
    let clock = at.getTime();
    const log = createOutcomeLog(
      { line: (text) => lines.push(text), problem: (text) => problems.push(text) },
      { now: () => clock },
    );
    const { logger } = log.functionOutput();
    const handler = log.timed(async () => {
      clock += 41;
      logger.info('Message sent', { messageId: id, attempt: 1, recipients: 1, provider: 'ses' });
      logger.warn('Provider failed', { messageId: id, code: 'Throttled' });
      logger.error('Could not publish the outcome event', { messageId: id, error: 'timeout' });
      return 'done';
    });
    expect(await handler(event(id), context)).toBe('done');
    expect(lines).toEqual(['18:42:07  sent          3f2a9c1e  ses      1 recipient   41 ms']);
    expect(problems).toEqual([
      '18:42:07  error         3f2a9c1e  Could not publish the outcome event: timeout',
    ]);
  });

  it('outside a timed batch (feedback) a line has no milliseconds, and metrics go nowhere', () => {
    const lines: string[] = [];
    const log = createOutcomeLog(
      { line: (text) => lines.push(text), problem: () => undefined },
      { now: () => at.getTime() },
    );
    const output = log.functionOutput();
    output.logger.warn('Complaint received', records.complained);
    output.writeMetrics('{"_aws":{}}');
    expect(lines).toEqual(['18:42:07  complained    3f2a9c1e  ses      1 recipient          suppressed']);
  });
});
