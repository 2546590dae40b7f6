import { readFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  CAUSE_PATTERNS,
  EXCHANGE_RECIPIENT_NOT_FOUND,
} from '../../../../lambda/core/feedback/bounce-classification.ts';
import { parseDeliveryReport } from '../../../../lambda/core/feedback/delivery-report.ts';
import type { FeedbackEvent } from '../../../../lambda/core/feedback/feedback-event.ts';

/**
 * The fixture collection (test/fixtures/bounces, from sisimai's public corpus, see its README) against
 * sisimai's published expectations. Only the committed files are read.
 */
const DIRECTORY = new URL('../../../fixtures/bounces/', import.meta.url);
const context = { provider: 'smtp', receivedAt: '2026-01-01T00:00:00.000Z' };

interface ExpectedRecipient {
  readonly status: string;
  readonly replyCode: string;
  readonly reason: string;
  readonly hard: boolean;
}
interface Expected {
  readonly source: Record<string, string>;
  readonly fixtures: Record<string, { readonly engine: string; readonly recipients: ExpectedRecipient[] }>;
}
const expected = JSON.parse(readFileSync(new URL('expected.json', DIRECTORY), 'utf8')) as Expected;
const names = Object.keys(expected.fixtures);

/** sisimai's reasons for messages that are not bounces: a delivery notice, a complaint, an auto-reply. */
const NOT_BOUNCES: ReadonlySet<string> = new Set(['delivered', 'feedback', 'vacation']);

/**
 * Where this parser decides against sisimai's soft verdict, and why. In each, the recipient's server
 * itself says the address is unknown or its account disabled, and nothing in the report names a policy,
 * quota, rate, blocklist or content cause: what sisimai adds is knowledge the report does not carry.
 * The number is how many recipients of the fixture that concerns.
 */
const HARD_AGAINST_SISIMAI: Readonly<Record<string, readonly [number, string]>> = {
  // sisimai: filtered (a recipient's filter). The words: "User unknown", from the recipient's server.
  // sisimai itself calls the same `550 5.2.1 … User Unknown` hard in lhost-postfix-02/13, lhost-exim-02,
  // lhost-qmail-02, lhost-yahoo-05, lhost-yandex-02, lhost-mailru-03 and lhost-gmx-03.
  'lhost-sendmail-02.eml': [1, 'filtered: 550 5.2.1 User Unknown'],
  'lhost-messagingserver-06.eml': [1, 'filtered: 550 5.2.1 User Unknown'],
  'lhost-zoho-02.eml': [1, 'filtered: 550 5.2.1 User Unknown'],
  'lhost-amazonworkmail-02.eml': [1, 'filtered: 550 5.2.1 User Unknown'],
  // A sendmail/Courier transcript shows `>>> DATA` then the refusal, which with PIPELINING is also
  // where every RCPT TO reply comes: it does not show the address was accepted.
  'lhost-courier-02.eml': [1, 'filtered: >>> DATA <<< 550 Unknown user (pipelined RCPT reply)'],
  // Japanese carriers (au/ezweb, docomo) answer "User unknown" for a sender the recipient filters; the
  // report cannot show that, and the address refuses this sender for good either way.
  'lhost-office365-04.eml': [1, 'filtered: ezweb.ne.jp 550 5.1.351 … User unknown'],
  'lhost-gsuite-08.eml': [1, 'filtered: ezweb.ne.jp 550 : User unknown'],
  'lhost-yahoo-06.eml': [1, 'filtered: ezweb.ne.jp 550: User unknown'],
  'lhost-messagingserver-08.eml': [1, 'filtered: ezweb.ne.jp 550 : User unknown'],
  'lhost-amazonses-02.eml': [1, "filtered: docomo.ne.jp 550 'Unknown user'"],
  // sisimai's engine guesses on text formats whose words are an unknown address.
  'lhost-exchange2003-04.eml': [1, 'filtered: "Recipient Not Found"'],
  'lhost-zoho-03.eml': [1, 'filtered: "550 Requested action not taken: mailbox unavailable"'],
  'lhost-x1-01.eml': [1, 'filtered: "[User unknown]"'],
  'lhost-x2-01.eml': [1, 'filtered: "This user doesn\'t have a … account", hard in lhost-sendmail-41'],
  // Two "doesn't have an account" (filtered) and one "account has been disabled" (suspend).
  'lhost-x2-02.eml': [3, 'filtered ×2: "doesn\'t have a … account"; suspend: "account has been disabled"'],
  'rfc3464-35.eml': [1, 'filtered: Status 5.0.0, "550 user unknown"'],
  // sisimai: suspend. Gmail's 550 5.2.1 "account … is disabled/inactive": RFC 3463's mailbox disabled.
  'rhost-google-01.eml': [1, 'suspend: 550 5.2.1 The email account … is disabled'],
  'rhost-google-07.eml': [1, 'suspend: 550 5.2.1 The email account … is inactive'],
  'lhost-amazonses-20.eml': [1, 'suspend: 550 5.2.1 The email account that you tried to reach is disabled'],
  // sisimai: mailboxfull, though Status 5.1.1 and "550 5.1.1 … User Unknown" agree and nothing in the
  // message names a quota.
  'rfc3464-01.eml': [1, 'mailboxfull: Status 5.1.1, 550 5.1.1 User Unknown'],
};

/** Bounces this parser does not read (yet), each with why. Neither is a hard bounce. */
const NOT_READ: Readonly<Record<string, string>> = {
  // Its text part's Content-Type lacks the `;` before charset, so it is not text/plain to a MIME parser;
  // and read, its "[User unknown]" would be hard where sisimai says filtered (as lhost-x1-01, listed).
  'lhost-x1-02.eml': 'X1 text in a part whose malformed Content-Type hides it',
  'lhost-v5sendmail-01.eml': 'sendmail V5: the failed address only in the returned original',
};

/**
 * Where this parser stays soft against sisimai's hard verdict, and why: in each, the report's own words
 * say the failure is not the address's, or may not be. They count as misses in the figure against
 * sisimai and as soft bounces in the figure against this collection's own verdicts.
 */
const SOFT_AGAINST_SISIMAI: Readonly<Record<string, string>> = {
  'lhost-opensmtpd-12.eml':
    'a delay warning: Action delayed, Status 4.0.0, "only a temporary failure report"',
  'lhost-aol-06.eml': 'a DNS server failure ("Malformed or unexpected name server reply"), not an NXDOMAIN',
  'lhost-exim-31.eml':
    'the words name a blocklist: "may not exist, they may be blacklisted, or missing … dns"',
  'lhost-exim-30.eml': 'a policy code and words: 554 5.7.1 "Recipient address rejected: Access denied"',
  'lhost-exim-37.eml': 'refused after the end of DATA, and the domain that "does not exist" is the sender\'s',
};

/** Fixtures that read the recipients sisimai lists, but also one it does not (a list's own address). */
const EXTRA_RECIPIENTS: Readonly<Record<string, string>> = {
  'lhost-exim-03.eml': 'a second address in the report text (sisimai reads one)',
  'lhost-googlegroups-01.eml': 'the group (X-Failed-Recipients) and the poster named in the greeting',
};

/**
 * Reports that return the original, yet whose Message-ID this parser cannot find, and why: each is a
 * MIME structure the corpus' anonymised copy broke.
 */
const NOT_ATTRIBUTED: Readonly<Record<string, string>> = {
  'lhost-x1-01.eml': "the returned message's part has no Content-Type: its header reads as the part's own",
  'rhost-google-01.eml': 'the returned header follows a boundary line that differs from the declared one',
  'rhost-franceptt-08.eml': 'the returned message follows a boundary line that differs from the declared one',
};

/**
 * The Message-IDs in a fixture below the report's own header: the returned original's (and, in a report
 * that returns another report, that report's). Read from the bytes, independently of the parser.
 */
function returnedMessageIds(name: string): string[] {
  const raw = readFileSync(new URL(name, DIRECTORY), 'latin1').replace(/\r/g, '');
  const body = raw.slice(raw.indexOf('\n\n'));
  return [...body.matchAll(/^Message-Id:[ \t]*(?:\n[ \t]+)?<([^<>\s]+)>/gim)].map(
    (match) => match[1] as string,
  );
}

interface Result {
  readonly events: readonly FeedbackEvent[] | undefined;
  /** Bounced and delayed recipients, as the parser found them. */
  readonly found: readonly { readonly recipient: string; readonly event: FeedbackEvent }[];
}
const results = new Map<string, Result>();

beforeAll(async () => {
  for (const name of names) {
    const events = await parseDeliveryReport(readFileSync(new URL(name, DIRECTORY)), context);
    const found = (events ?? [])
      .filter((event) => event.kind === 'bounced' || event.kind === 'delayed')
      .flatMap((event) => event.recipients.map((recipient) => ({ recipient, event })));
    results.set(name, { events, found });
  }
});

const bouncesOf = (name: string) =>
  (expected.fixtures[name]?.recipients ?? []).filter((recipient) => !NOT_BOUNCES.has(recipient.reason));
const hardCount = (name: string) =>
  results.get(name)?.found.filter(({ event }) => event.bounceType === 'hard').length ?? 0;
const expectedHard = (name: string) =>
  bouncesOf(name).filter((recipient) => recipient.hard && recipient.status.startsWith('5')).length;

describe('the fixture collection', () => {
  it('has 150 to 300-odd fixtures with their source recorded', () => {
    expect(names.length).toBeGreaterThanOrEqual(150);
    expect(names.length).toBeLessThanOrEqual(320);
    expect(expected.source).toMatchObject({
      corpus: 'https://github.com/sisimai/set-of-emails',
      corpusCommit: expect.stringMatching(/^[0-9a-f]{40}$/),
      expectationsCommit: expect.stringMatching(/^[0-9a-f]{40}$/),
    });
  });

  it('lists only fixtures that exist, in the exception tables', () => {
    for (const name of [
      ...Object.keys(HARD_AGAINST_SISIMAI),
      ...Object.keys(NOT_READ),
      ...Object.keys(SOFT_AGAINST_SISIMAI),
      ...Object.keys(NOT_ATTRIBUTED),
      ...Object.keys(EXTRA_RECIPIENTS),
    ]) {
      expect(names).toContain(name);
    }
  });
});

describe.each(names)('%s', (name) => {
  const bounces = bouncesOf(name);

  if (bounces.length === 0) {
    it('is not read as a bounce (a complaint, an auto-reply or a delivery notice)', () => {
      const events = results.get(name)?.events ?? [];
      expect(events.filter((event) => event.kind === 'bounced')).toEqual([]);
    });
    return;
  }

  if (name in NOT_READ) {
    it(`is a bounce not read yet: ${NOT_READ[name]}`, () => {
      expect(results.get(name)?.found ?? []).toEqual([]);
    });
    return;
  }

  it(`finds its ${bounces.length} recipient(s)`, () => {
    const found = new Set(results.get(name)?.found.map(({ recipient }) => recipient));
    expect(found.size).toBe(bounces.length + (name in EXTRA_RECIPIENTS ? 1 : 0));
  });

  it('calls no more recipients hard than sisimai does, beyond the listed exceptions', () => {
    const allowed = expectedHard(name) + (HARD_AGAINST_SISIMAI[name]?.[0] ?? 0);
    expect(hardCount(name)).toBeLessThanOrEqual(allowed);
  });

  it('never calls a 4.x.x hard, and keeps a cause on every bounce', () => {
    for (const { event } of results.get(name)?.found ?? []) {
      if (event.status?.startsWith('4')) expect(event.bounceType).not.toBe('hard');
      if (event.kind === 'bounced') expect(event.cause).toBeDefined();
    }
  });

  it('gives a hard bounce a 5.x.x status, where sisimai read a 5.x.x from the report too', () => {
    // sisimai's 5.0.9xx are its own pseudo codes, not the report's.
    const classes = new Set(bounces.filter((r) => !/^\d\.0\.9\d\d$/.test(r.status)).map((r) => r.status[0]));
    for (const { event } of results.get(name)?.found ?? []) {
      if (event.bounceType !== 'hard') continue;
      if (event.status) expect(event.status[0]).toBe('5');
      if (classes.size > 0) expect([...classes]).toContain('5');
    }
  });
});

describe('aggregate figures against sisimai', () => {
  it('calls 0 soft bounces hard, apart from the 22 recipients listed with their reason', () => {
    let softAsHard = 0;
    let listed = 0;
    for (const name of names) {
      const excess = Math.max(0, hardCount(name) - expectedHard(name));
      const allowed = HARD_AGAINST_SISIMAI[name]?.[0] ?? 0;
      softAsHard += Math.max(0, excess - allowed);
      listed += Math.min(excess, allowed);
    }
    expect({ softAsHard, listed }).toEqual({ softAsHard: 0, listed: 22 });
  });

  it("finds 113 of sisimai's 121 hard bounces (sisimai hard with a 5.x.x status) hard, 93%", () => {
    let total = 0;
    let found = 0;
    for (const name of names) {
      total += expectedHard(name);
      found += Math.min(expectedHard(name), hardCount(name));
    }
    // The exact figure, so that a change that finds more (or fewer) says so here.
    expect({ found, total }).toEqual({ found: 113, total: 121 });
  });

  it('finds at least 95% of the hard bounces, with the listed reports counted soft: 113 of 116, 97%', () => {
    let total = 0;
    let found = 0;
    for (const name of names) {
      if (name in SOFT_AGAINST_SISIMAI) continue;
      total += expectedHard(name);
      found += Math.min(expectedHard(name), hardCount(name));
    }
    expect({ found, total }).toEqual({ found: 113, total: 116 });
    expect(found / total).toBeGreaterThanOrEqual(0.95);
  });

  it.each(Object.entries(SOFT_AGAINST_SISIMAI))('reads %s, and calls it soft: %s', (name) => {
    expect(expectedHard(name)).toBeGreaterThan(0);
    expect(results.get(name)?.found.length).toBeGreaterThan(0);
    expect(hardCount(name)).toBe(0);
  });

  it("traces 250 of the 253 reports it reads that return the original to the original's Message-ID", () => {
    const returning = names.filter(
      (name) => bouncesOf(name).length > 0 && !(name in NOT_READ) && returnedMessageIds(name).length > 0,
    );
    const wrong = returning.filter((name) => {
      const ids = returnedMessageIds(name);
      const events = results.get(name)?.found.map(({ event }) => event) ?? [];
      return events.length === 0 || events.some((event) => !ids.includes(event.providerMessageId ?? ''));
    });
    expect([...wrong].sort()).toEqual(Object.keys(NOT_ATTRIBUTED).sort());
    expect(returning.length).toBe(253);
  });

  it("reads sisimai's status for 212 of the 219 reports where sisimai read one from the report", () => {
    // The rest keep the report's own Status (4.4.7) where sisimai took the diagnostic's (4.4.1).
    let compared = 0;
    let same = 0;
    for (const name of names) {
      const theirs = bouncesOf(name)
        .map((recipient) => recipient.status)
        .filter((status) => /^[245]\.\d+\.\d+$/.test(status) && !/^\d\.0\.9\d\d$/.test(status));
      if (theirs.length === 0) continue;
      compared++;
      const ours = results.get(name)?.found.map(({ event }) => event.status ?? '') ?? [];
      if ([...ours].sort().join() === [...theirs].sort().join()) same++;
    }
    expect({ same, compared }).toEqual({ same: 212, compared: 219 });
  });

  it('finds every recipient of every multi-recipient report it reads', () => {
    const multi = names.filter((name) => bouncesOf(name).length > 1 && !(name in NOT_READ));
    const missing = multi.filter((name) => (results.get(name)?.found.length ?? 0) < bouncesOf(name).length);
    expect({ reports: multi.length, missing }).toEqual({ reports: multi.length, missing: [] });
    expect(multi.length).toBeGreaterThanOrEqual(15);
  });

  // Named fixtures per non-RFC 3464 format: each is read, with at least one recipient.
  const FORMATS: Readonly<Record<string, readonly string[]>> = {
    qmail: ['lhost-qmail-01.eml', 'lhost-qmail-08.eml', 'lhost-yahoo-01.eml'],
    exim: ['lhost-exim-01.eml', 'lhost-exim-05.eml', 'lhost-gmx-01.eml', 'lhost-mailru-01.eml'],
    'sendmail text': ['lhost-v5sendmail-03.eml', 'lhost-v5sendmail-05.eml'],
    'postfix text (a multipart that cannot be split)': ['rhost-google-02.eml', 'rfc3464-06.eml'],
    'gmail text': ['lhost-gmail-01.eml', 'lhost-gmail-03.eml'],
    'google groups text': ['lhost-googlegroups-01.eml', 'lhost-googlegroups-02.eml'],
    'exchange 2003': ['lhost-exchange2003-01.eml', 'lhost-exchange2003-02.eml'],
    'RFC 3464 in multipart/mixed': ['lhost-opensmtpd-06.eml', 'lhost-opensmtpd-10.eml', 'rfc3464-26.eml'],
    'opensmtpd text': ['lhost-opensmtpd-01.eml', 'lhost-opensmtpd-02.eml', 'lhost-opensmtpd-04.eml'],
    'sendmail text with rfc 3464 fields, a program as the failed address': ['rfc3464-04.eml'],
    'exim 3 text': ['rfc3464-37.eml'],
    'lotus notes text': ['lhost-notes-02.eml', 'lhost-notes-03.eml'],
    "a gateway returning another server's report": ['lhost-x5-01.eml'],
    'amazon ses notifications sent by sns email': ['lhost-amazonses-09.eml', 'lhost-amazonses-10.eml'],
  };
  it.each(Object.entries(FORMATS))('reads %s', (_, fixtures) => {
    for (const name of fixtures) {
      expect(results.get(name)?.found.length, name).toBeGreaterThan(0);
    }
  });

  it('never calls hard a fixture whose diagnostic names a policy, rate, quota or blocklist cause', () => {
    const nonAddress = CAUSE_PATTERNS.filter(([cause]) =>
      ['over-quota', 'rate-limited', 'blocked', 'policy', 'content', 'expired'].includes(cause),
    ).flatMap(([, patterns]) => patterns);
    let checked = 0;
    for (const name of names) {
      for (const { event } of results.get(name)?.found ?? []) {
        // Exchange Online's "5.4.1 Recipient address rejected: Access denied" is its unknown
        // recipient (directory-based edge blocking), though "access denied" reads as policy.
        const exchangeUnknown = EXCHANGE_RECIPIENT_NOT_FOUND.test(event.diagnostic ?? '');
        if (
          event.diagnostic &&
          !exchangeUnknown &&
          nonAddress.some((pattern) => pattern.test(event.diagnostic ?? ''))
        ) {
          checked++;
          expect(event.bounceType, `${name}: ${event.diagnostic}`).not.toBe('hard');
        }
      }
    }
    expect(checked).toBeGreaterThan(30);
  });
});
