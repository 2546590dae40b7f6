import { describe, expect, it } from 'vitest';
import {
  CAUSE_PATTERNS,
  causeFromText,
  classifyBounce,
} from '../../../../lambda/core/feedback/bounce-classification.ts';
import type { BounceCause } from '../../../../lambda/core/feedback/feedback-event.ts';

describe('causeFromText', () => {
  it.each([
    ['550 5.1.1 <a@b>: Recipient address rejected: User unknown', 'user-unknown'],
    ['550 No such user here', 'user-unknown'],
    ['550 5.1.1 The email account that you tried to reach does not exist.', 'user-unknown'],
    ['550 5.5.0 Requested action not taken: mailbox unavailable', 'user-unknown'],
    ["554 delivery error: dd This user doesn't have a yahoo.com account", 'user-unknown'],
    ['550 5.2.1 The email account that you tried to reach is disabled.', 'mailbox-disabled'],
    ['550 5.2.1 Account inactive', 'mailbox-disabled'],
    ['550 Mailbox suspended', 'mailbox-disabled'],
    ['Host or domain name not found. Name service error for name=example.jp type=A', 'host-unknown'],
    ['550 Domain not found', 'host-unknown'],
    ['No MX record found for domain=example.org', 'host-unknown'],
    ['552 5.2.2 Over quota', 'over-quota'],
    ['452 4.2.2 Mailbox full', 'over-quota'],
    ['552 Insufficient storage', 'over-quota'],
    ['550 5.2.1 rate limit exceeded for this user', 'rate-limited'],
    ['550 5.1.1 Too many recipients this hour', 'rate-limited'],
    ['550 too many messages this hour', 'rate-limited'],
    ['421 Try again later', 'rate-limited'],
    ['550 5.7.1 IP address blacklisted', 'blocked'],
    ['554 Blocked using zen.spamhaus.org', 'blocked'],
    ['550 Your IP is listed on a blocklist', 'blocked'],
    ['550 Poor sender reputation', 'blocked'],
    ['550 5.7.1 Message rejected due to local policy', 'policy'],
    ['550 5.7.1 Relaying denied', 'policy'],
    ['550 5.1.1 refused due to recipient preferences', 'policy'],
    ['553 sending not allowed', 'policy'],
    ['554 5.7.1 Message looks like spam', 'content'],
    ['554 Virus found in message', 'content'],
    ['554 Message content rejected', 'content'],
    ['Message expired after 5 days', 'expired'],
    ['retry timeout exceeded', 'expired'],
    ['550 5.4.4 Invalid domain', 'host-unknown'],
    ['Illegal host/domain name found', 'host-unknown'],
    ['ユーザー Neko (neko@example.co.jp) は Domino ディレクトリには見つかりません。', 'user-unknown'],
    ['ディレクトリのリストにありません', 'user-unknown'],
    ['could not be delivered within 2 days', 'expired'],
    ['250 2.0.0 Ok', undefined],
  ] as const)('%s → %s', (text, cause) => {
    expect(causeFromText(text)).toBe(cause);
  });

  it('reads an address listed in a directory as unknown, not as a blocklist listing', () => {
    expect(causeFromText('User not listed in public Name & Address Book')).toBe('user-unknown');
  });

  it("does not take qmail's 'mail exchanger or IP address' for a blocklisted IP", () => {
    expect(causeFromText("Sorry, I couldn't find a mail exchanger or IP address. (#5.4.4)")).toBe(
      'host-unknown',
    );
  });
});

describe('classifyBounce', () => {
  it.each([
    // Status alone, as bounceTypeFor always judged it.
    [{ status: '5.1.1' }, 'hard', 'user-unknown', '5.1.1'],
    [{ status: '5.1.2' }, 'hard', 'host-unknown', '5.1.2'],
    [{ status: '5.2.1' }, 'hard', 'mailbox-disabled', '5.2.1'],
    [{ status: '5.7.1' }, 'soft', 'policy', '5.7.1'],
    [{ status: '5.2.2' }, 'soft', 'over-quota', '5.2.2'],
    [{ status: '4.4.7' }, 'soft', 'expired', '4.4.7'],
    // The words agree.
    [{ status: '5.1.1', diagnostic: '550 5.1.1 User unknown' }, 'hard', 'user-unknown', '5.1.1'],
    // The words name something else: the wrong cases.
    [{ status: '5.1.1', diagnostic: '550 5.7.1 IP address blacklisted' }, 'soft', 'blocked', '5.1.1'],
    [{ status: '5.1.1', diagnostic: '552 5.2.2 Over quota' }, 'soft', 'over-quota', '5.1.1'],
    [{ status: '5.2.1', diagnostic: '550 5.2.1 rate limit exceeded' }, 'soft', 'rate-limited', '5.2.1'],
    [{ status: '5.1.3', diagnostic: '550 5.1.3 listed on Spamhaus' }, 'soft', 'blocked', '5.1.3'],
    [
      { status: '5.1.1', diagnostic: '550 5.1.1 Too many recipients this hour' },
      'soft',
      'rate-limited',
      '5.1.1',
    ],
    [
      { status: '5.1.1', diagnostic: '550 5.1.1 refused due to recipient preferences' },
      'soft',
      'policy',
      '5.1.1',
    ],
    // The diagnostic's own specific code contradicts the status.
    [{ status: '5.1.1', diagnostic: '550 5.7.1 Rejected' }, 'soft', 'policy', '5.1.1'],
    // A generic status gives way to the diagnostic's code, and the words decide.
    [{ status: '5.0.0', diagnostic: '550 5.1.1 <a@b> unknown' }, 'hard', 'user-unknown', '5.1.1'],
    [
      { status: '5.5.0', diagnostic: '550 Requested action not taken: mailbox unavailable' },
      'hard',
      'user-unknown',
      '5.5.0',
    ],
    [{ status: '5.4.4', diagnostic: 'Host or domain name not found' }, 'hard', 'host-unknown', '5.4.4'],
    [
      { status: '5.0.0', diagnostic: "554 This user doesn't have a yahoo.com account" },
      'hard',
      'user-unknown',
      '5.0.0',
    ],
    [{ status: '5.0.0', diagnostic: '550 Rejected' }, 'soft', 'other', '5.0.0'],
    // X.0.0 gives way to the diagnostic's X.Y.0; a relaying server's generic code to the remote's own.
    [{ status: '5.0.0', diagnostic: '550 #5.1.0 Address rejected.' }, 'soft', 'other', '5.1.0'],
    [
      { status: '5.0.0', diagnostic: "5.1.0 - Unknown address error 550-'5.2.2 <a@b>... Mailbox Full'" },
      'soft',
      'over-quota',
      '5.2.2',
    ],
    [
      {
        status: '4.4.7',
        diagnostic: '550 4.4.7 QUEUE.Expired; message expired [… 421 4.3.2 Service not available]',
      },
      'soft',
      'expired',
      '4.4.7',
    ],
    [
      { status: '5.0.0', diagnostic: "5.1.0 - Unknown address error 550-'5.1.1 <a@b>... User unknown'" },
      'hard',
      'user-unknown',
      '5.1.1',
    ],
    // Never hard for a 4.x.x, whatever the words.
    [{ status: '4.1.1', diagnostic: '450 4.1.1 User unknown' }, 'soft', 'user-unknown', '4.1.1'],
    [{ diagnostic: '450 User unknown' }, 'soft', 'user-unknown', undefined],
    // Refused at MAIL FROM (the sender) or at the end of DATA (the address was accepted).
    [
      { status: '5.1.0', diagnostic: 'after MAIL FROM:<a@b>: 553 5.1.0 domain does not exist' },
      'soft',
      'policy',
      '5.1.0',
    ],
    [{ diagnostic: 'after end of data: 550 : User unknown', permanent: true }, 'soft', 'content', undefined],
    // Refused at the greeting (qmail: "my name was rejected"): the sending server's name, not the address.
    [
      { diagnostic: 'Connected to 192.0.2.1 but my name was rejected. 501 5.0.0 Invalid domain name' },
      'soft',
      'policy',
      '5.0.0',
    ],
    // Null MX (RFC 7505): sendmail's 5.7.27 for the recipient's domain, and the sender's.
    [{ status: '5.7.27', diagnostic: '550 Host does not accept mail' }, 'hard', 'host-unknown', '5.7.27'],
    [{ status: '5.7.27', diagnostic: '550 5.7.27 Sender address has null MX' }, 'soft', 'policy', '5.7.27'],
    [{ status: '5.7.27' }, 'soft', 'policy', '5.7.27'],
    // No code: a failure notice's words decide.
    [
      { diagnostic: 'The recipient name is not recognized', permanent: true },
      'hard',
      'user-unknown',
      undefined,
    ],
    [{ diagnostic: 'The recipient name is not recognized' }, 'soft', 'user-unknown', undefined],
    [{}, 'soft', 'other', undefined],
  ] as const)('%j → %s (%s)', (evidence, bounceType, cause, status) => {
    const result = classifyBounce(evidence);
    expect(result).toEqual({ bounceType, cause, ...(status && { status }) });
  });
});

describe("Exchange Online's directory-based edge blocking", () => {
  it('reads "5.4.1 Recipient address rejected: Access denied" as an unknown recipient, hard', () => {
    const diagnostic =
      'smtp; 550 5.4.1 Recipient address rejected: Access denied. AS(201806281) [DM6NAM12FT015.eop-nam12.prod.protection.outlook.com]';
    expect(classifyBounce({ status: '5.4.1', diagnostic })).toEqual({
      bounceType: 'hard',
      cause: 'user-unknown',
      status: '5.4.1',
    });
  });

  it('keeps a relay refusal with the same code soft', () => {
    expect(classifyBounce({ status: '5.4.1', diagnostic: '550 5.4.1 Relay Access Denied' })).toMatchObject({
      bounceType: 'soft',
      cause: 'policy',
    });
  });
});

describe('property: a diagnostic that names a non-address cause is never hard', () => {
  const NON_ADDRESS: readonly BounceCause[] = [
    'over-quota',
    'rate-limited',
    'blocked',
    'policy',
    'content',
    'expired',
  ];
  /** Phrases per cause, from the brief's lists; each must be read as its cause. */
  const PHRASES: Readonly<Record<string, readonly string[]>> = {
    'over-quota': ['over quota', 'mailbox full', 'insufficient storage', 'quota exceeded'],
    'rate-limited': ['rate limit', 'too many recipients', 'too many messages this hour', 'try again later'],
    blocked: ['blacklisted', 'blocklisted', 'blocked', 'spamhaus', 'listed on a DNSBL', 'poor reputation'],
    policy: ['policy', 'not allowed', 'relay denied', 'recipient preferences', 'refused due to policy'],
    content: ['spam', 'virus', 'message content rejected'],
    expired: ['expired', 'retry timeout exceeded', 'could not be delivered within 5 days'],
  };
  const ADDRESS_WORDS = ['User unknown', 'no such user', 'does not exist', 'mailbox unavailable', ''];
  const STATUSES = ['5.1.1', '5.1.2', '5.1.10', '5.2.1', '5.0.0', undefined];

  /** A small deterministic generator, so a failure reproduces. */
  function* random(seed: number): Generator<number> {
    let state = seed;
    for (;;) {
      state = (state * 1_103_515_245 + 12_345) % 2 ** 31;
      yield state / 2 ** 31;
    }
  }

  it('reads each listed phrase as its cause', () => {
    for (const [cause, phrases] of Object.entries(PHRASES)) {
      for (const phrase of phrases) expect(causeFromText(`550 ${phrase}`), phrase).toBe(cause);
    }
  });

  it('1000 generated 5.1.1-style reports with such a phrase are all soft, with that cause', () => {
    const next = random(18);
    const pick = <T>(items: readonly T[]): T =>
      items[Math.floor((next.next().value as number) * items.length)] as T;
    for (let index = 0; index < 1000; index++) {
      const cause = pick(NON_ADDRESS);
      const phrase = pick(PHRASES[cause] ?? []);
      const status = pick(STATUSES);
      const code = pick(['5.1.1', '5.2.1', '', '5.0.0']);
      const diagnostic = `550 ${code} <a@example.com>... ${pick(ADDRESS_WORDS)} ${phrase}`.replace(
        /\s+/g,
        ' ',
      );
      const result = classifyBounce({ status, diagnostic, permanent: true });
      expect(result.bounceType, `${status} ${diagnostic}`).toBe('soft');
      expect(NON_ADDRESS, `${status} ${diagnostic}`).toContain(result.cause);
    }
  });

  it('has patterns for every non-address cause', () => {
    const causes = CAUSE_PATTERNS.map(([cause]) => cause);
    for (const cause of NON_ADDRESS) expect(causes).toContain(cause);
  });
});
