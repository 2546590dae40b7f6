import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  FeedbackPayloadError,
  parseSesEvent,
  sesBounceClass,
} from '../../../../lambda/core/feedback/ses-events.ts';

function fixture(name: string): Record<string, unknown> {
  return JSON.parse(readFileSync(new URL(`../../../fixtures/feedback/ses/${name}`, import.meta.url), 'utf8'));
}

describe('parseSesEvent', () => {
  it('reads a permanent bounce as a hard bounce of the lower-cased recipient, traced to the request', () => {
    expect(parseSesEvent(fixture('bounce-permanent.json'))).toEqual([
      {
        kind: 'bounced',
        provider: 'ses',
        recipients: ['nobody@fabrikam.com'],
        bounceType: 'hard',
        cause: 'user-unknown',
        status: '5.1.1',
        diagnostic:
          '550 5.1.1 <nobody@fabrikam.com>: Recipient address rejected: User unknown in virtual mailbox table',
        providerMessageId: '010201937a1b2c3d-5e6f7a8b-1c2d-4e5f-9a0b-1c2d3e4f5a6b-000000',
        sourceMessageId: '0b9e1c52-6f0e-4c1a-9a55-3f1d2b7e8c40',
        idempotencyKey: 'order-1234',
        // SES's own ses:* tags are left out; the producer's tags come back.
        tags: { app: 'crm', kind: 'receipt' },
        at: '2026-11-20T09:14:03.912Z',
      },
    ]);
  });

  it('reads a transient bounce (mailbox full) as soft', () => {
    const [event] = parseSesEvent(fixture('bounce-transient.json'));
    expect(event).toMatchObject({
      kind: 'bounced',
      bounceType: 'soft',
      cause: 'over-quota',
      status: '5.2.2',
      recipients: ['full@fabrikam.com'],
    });
    expect(event?.idempotencyKey).toBeUndefined();
    expect(event?.tags).toBeUndefined();
  });

  it.each([
    // [bounceType, subType, status, diagnostic, expected class]
    ['Permanent', 'General', '5.1.1', '550 5.1.1 user unknown', 'hard', 'user-unknown'],
    ['Permanent', 'NoEmail', '5.1.1', undefined, 'hard', 'user-unknown'],
    [
      'Permanent',
      'Suppressed',
      '5.1.1',
      'Amazon SES has suppressed sending to this address because it has a recent history of bouncing as an invalid address.',
      'hard',
      'user-unknown',
    ],
    [
      'Permanent',
      'General',
      '5.0.0',
      '550 5.1.1 The email account that you tried to reach does not exist',
      'hard',
      'user-unknown',
    ],
    ['Permanent', 'General', '5.4.4', '554 5.4.4 host not found', 'hard', 'host-unknown'],
    [
      'Permanent',
      'General',
      '5.2.1',
      '550 5.2.1 The email account that you tried to reach is disabled',
      'hard',
      'mailbox-disabled',
    ],
    // SES calls these Permanent; their words are about the sender, the rate or the quota.
    ['Permanent', 'General', '5.1.1', '550 5.7.1 IP address blacklisted', 'soft', 'blocked'],
    ['Permanent', 'General', '5.1.1', '552 5.2.2 Over quota', 'soft', 'over-quota'],
    [
      'Permanent',
      'General',
      '5.2.1',
      '550 5.2.1 Mailbox temporarily disabled: rate limit exceeded for this user',
      'soft',
      'rate-limited',
    ],
    ['Permanent', 'General', '5.1.3', '553 5.1.3 sender listed at zen.spamhaus.org', 'soft', 'blocked'],
    ['Permanent', 'General', '5.1.1', '550 5.1.1 refused due to recipient preferences', 'soft', 'policy'],
    ['Permanent', 'General', '5.7.1', '550 5.7.1 Message rejected', 'soft', 'policy'],
    // The two codes disagree: the one that is not about the address wins.
    ['Permanent', 'General', '5.1.1', '550 5.7.1 rejected', 'soft', 'policy'],
    ['Permanent', 'General', undefined, undefined, 'soft', 'other'],
    [
      'Permanent',
      'OnAccountSuppressionList',
      undefined,
      'Amazon SES did not send the message to this address because it is on the suppression list for your account.',
      'soft',
      'other',
    ],
    ['Transient', 'MailboxFull', '5.2.2', '552 5.2.2 Mailbox full', 'soft', 'over-quota'],
    ['Transient', 'MessageTooLarge', '5.3.4', '552 5.3.4 Message too big', 'soft', 'content'],
    ['Transient', 'ContentRejected', '5.7.1', '554 5.7.1 Message rejected as spam', 'soft', 'content'],
    ['Transient', 'AttachmentRejected', '5.7.1', '554 5.7.1 attachment type not allowed', 'soft', 'content'],
    ['Transient', 'General', '4.4.7', '421 4.4.7 Message expired', 'soft', 'expired'],
    ['Transient', 'General', '4.1.1', '450 4.1.1 user unknown (try later)', 'soft', 'rate-limited'],
    ['Transient', 'General', '4.1.1', '450 4.1.1 user unknown', 'soft', 'user-unknown'],
    ['Undetermined', undefined, undefined, undefined, 'soft', 'other'],
  ] as const)(
    'reads SES %s/%s, status %s, "%s" as %s (%s)',
    (type, subType, status, diagnostic, bounceType, cause) => {
      expect(sesBounceClass(type, subType, status, diagnostic)).toEqual({ bounceType, cause });
    },
  );

  it('groups recipients that bounced for the same reason, and cuts long diagnostics to 500 characters', () => {
    const events = parseSesEvent(fixture('bounce-suppressed.json'));
    expect(events).toHaveLength(1);
    expect(events[0]?.recipients).toEqual(['gone@fabrikam.com', 'left@fabrikam.com']);
    const payload = fixture('bounce-suppressed.json');
    const detail = payload.detail as {
      bounce: { bouncedRecipients: { diagnosticCode: string; status: string }[] };
    };
    const [first, second] = detail.bounce.bouncedRecipients;
    if (!first || !second) throw new Error('fixture changed');
    first.diagnosticCode = `smtp; 550 ${'x'.repeat(900)}`;
    second.status = '5.1.10';
    const split = parseSesEvent(payload);
    expect(split.map((event) => event.status)).toEqual(['5.1.1', '5.1.10']);
    expect(split[0]?.diagnostic).toHaveLength(500);
  });

  it('reads a complaint, a delivery, a delay, a reject and a send', () => {
    expect(parseSesEvent(fixture('complaint.json'))).toMatchObject([
      {
        kind: 'complained',
        recipients: ['annoyed@fabrikam.com'],
        diagnostic: 'abuse',
        at: '2026-11-20T10:02:40.000Z',
      },
    ]);
    expect(parseSesEvent(fixture('delivery.json'))).toMatchObject([
      { kind: 'delivered', recipients: ['reader@fabrikam.com'], at: '2026-11-20T09:14:03.512Z' },
    ]);
    expect(parseSesEvent(fixture('delivery-delay.json'))).toMatchObject([
      {
        kind: 'delayed',
        recipients: ['slow@fabrikam.com'],
        status: '4.4.1',
        diagnostic: '421 4.4.1 Connection timed out',
      },
    ]);
    expect(parseSesEvent(fixture('reject.json'))).toMatchObject([
      { kind: 'rejected', recipients: ['reader@fabrikam.com'], diagnostic: 'Bad content' },
    ]);
    expect(parseSesEvent(fixture('send.json'))).toMatchObject([{ kind: 'sent', provider: 'ses' }]);
  });

  it('names every field it cannot read, without echoing values', () => {
    const payload = fixture('bounce-permanent.json');
    const detail = payload.detail as { bounce: Record<string, unknown>; mail: Record<string, unknown> };
    detail.bounce.bounceType = 'Sometimes';
    delete detail.mail.messageId;
    const error = (() => {
      try {
        parseSesEvent(payload);
      } catch (caught) {
        return caught;
      }
      throw new Error('expected a FeedbackPayloadError');
    })();
    expect(error).toBeInstanceOf(FeedbackPayloadError);
    expect((error as FeedbackPayloadError).problems).toEqual([
      expect.stringMatching(/^detail\.mail\.messageId: required/),
      expect.stringMatching(/^detail\.bounce\.bounceType: /),
    ]);
    expect((error as Error).message).not.toContain('Sometimes');
  });

  it('refuses events that are not from SES or of an event type it does not know', () => {
    expect(() => parseSesEvent({ source: 'aws.s3', detail: {} })).toThrow(FeedbackPayloadError);
    const open = fixture('send.json');
    (open.detail as Record<string, unknown>).eventType = 'Open';
    expect(() => parseSesEvent(open)).toThrow(/detail\.eventType/);
    expect(() => parseSesEvent('not json')).toThrow(FeedbackPayloadError);
  });
});
