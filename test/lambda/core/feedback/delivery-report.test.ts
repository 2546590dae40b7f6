import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { bounceTypeFor, parseDeliveryReport } from '../../../../lambda/core/feedback/delivery-report.ts';

const FIXTURES = new URL('../../../fixtures/feedback/ndr/', import.meta.url);
const context = { provider: 'graph', receivedAt: '2026-01-01T00:00:00.000Z' };

function fixture(name: string): Buffer {
  return readFileSync(new URL(name, FIXTURES));
}

interface ReportParts {
  /** The report's own Date header; none when null. */
  readonly date?: string | null;
  readonly perMessage?: readonly string[];
  /** One list of fields per recipient. */
  readonly recipients: readonly (readonly string[])[];
  /** The returned original's header lines (and body, after an empty line); no such part when null. */
  readonly original?: readonly string[] | null;
  readonly originalType?: string;
  readonly statusType?: string;
  /** The human-readable part's lines. */
  readonly text?: readonly string[];
  readonly from?: string;
}

/** A minimal RFC 3464 report with CRLF line ends, for the cases the fixtures do not cover. */
function report(parts: ReportParts): string {
  const boundary = 'report-boundary';
  const date = parts.date === undefined ? 'Tue, 5 Mar 2024 10:15:33 +0000' : parts.date;
  const original = parts.original === undefined ? ['Message-ID: <original@contoso.com>'] : parts.original;
  return [
    `From: ${parts.from ?? 'postmaster@fabrikam.com'}`,
    'To: orders@contoso.com',
    ...(date === null ? [] : [`Date: ${date}`]),
    'Subject: Undeliverable: Your order',
    'MIME-Version: 1.0',
    `Content-Type: multipart/report; report-type=delivery-status; boundary="${boundary}"`,
    '',
    `--${boundary}`,
    'Content-Type: text/plain; charset=utf-8',
    '',
    ...(parts.text ?? ['Delivery has failed.']),
    '',
    `--${boundary}`,
    `Content-Type: ${parts.statusType ?? 'message/delivery-status'}`,
    '',
    ...(parts.perMessage ?? ['Reporting-MTA: dns; mx.fabrikam.com']),
    ...parts.recipients.flatMap((fields) => ['', ...fields]),
    '',
    ...(original === null
      ? []
      : [
          `--${boundary}`,
          `Content-Type: ${parts.originalType ?? 'text/rfc822-headers'}`,
          '',
          ...original,
          '',
        ]),
    `--${boundary}--`,
    '',
  ].join('\r\n');
}

const failed = (recipient: string, ...more: string[]) => [
  `Final-Recipient: rfc822;${recipient}`,
  'Action: failed',
  ...more,
];

describe('parseDeliveryReport on real-world shaped reports', () => {
  it('reads an Exchange Online 5.1.10 RecipientNotFound as a hard bounce traced to the request', async () => {
    expect(await parseDeliveryReport(fixture('exchange-online-recipient-not-found.eml'), context)).toEqual([
      {
        kind: 'bounced',
        provider: 'graph',
        recipients: ['nils.ekberg@fabrikam.com'],
        bounceType: 'hard',
        cause: 'user-unknown',
        status: '5.1.10',
        diagnostic: '550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup',
        providerMessageId:
          'AM9PR04MB8412A1B2C3D4E5F6A7B8C9D0E1F2A3B4C5D6@AM9PR04MB8412.eurprd04.prod.outlook.com',
        sourceMessageId: 'd630ec51-7f2e-4145-9285-3f98349eb824',
        idempotencyKey: 'order-1234',
        // Arrival-Date of the per-message fields.
        at: '2024-03-05T10:15:30.000Z',
      },
    ]);
  });

  it('reads an Exchange Online delay notice (Action: delayed) as delayed, without a bounce type', async () => {
    expect(await parseDeliveryReport(fixture('exchange-online-delayed.eml'), context)).toEqual([
      {
        kind: 'delayed',
        provider: 'graph',
        recipients: ['jonas.keller@fabrikam.com'],
        status: '4.4.7',
        diagnostic: '400 4.4.7 Message delayed',
        providerMessageId:
          'DB9PR07MB73190E1F2A3B4C5D6E7F8A9B0C1D2E3F4A5B6@DB9PR07MB7319.eurprd07.prod.outlook.com',
        // From a text/rfc822-headers part; this original had no idempotency key.
        sourceMessageId: '943e2e32-9c68-411d-9c9e-3cd84435c665',
        at: '2024-03-05T08:12:40.000Z',
      },
    ]);
  });

  it('reads an Exchange Online expiry (Action: failed with 4.4.7) as a soft bounce', async () => {
    const [event, ...rest] =
      (await parseDeliveryReport(fixture('exchange-online-expired.eml'), context)) ?? [];
    expect(rest).toEqual([]);
    expect(event).toMatchObject({
      kind: 'bounced',
      recipients: ['ola.nordmann@example.org'],
      bounceType: 'soft',
      status: '4.4.7',
      sourceMessageId: 'f396c6eb-aa86-48ca-acd0-c53e3e6220ce',
      at: '2024-03-05T08:12:58.000Z',
    });
    expect(event?.diagnostic).toBe(
      '550 4.4.7 QUEUE.Expired; message expired [Message=451 4.4.395 Target host responded with error. -> ' +
        '421 4.3.2 Service not available] [LastAttemptedServerName=mx.example.org] [LastAttemptedIP=198.51.100.61:25]',
    );
  });

  it('reads a Postfix 5.1.1 report: lower-cased recipient, unfolded diagnostic, returned headers', async () => {
    expect(await parseDeliveryReport(fixture('postfix-user-unknown.eml'), context)).toEqual([
      {
        kind: 'bounced',
        provider: 'graph',
        recipients: ['m.jensen@fabrikam.com'],
        bounceType: 'hard',
        cause: 'user-unknown',
        status: '5.1.1',
        diagnostic:
          '550 5.1.1 <M.Jensen@fabrikam.com>: Recipient address rejected: User unknown in virtual mailbox table',
        providerMessageId:
          'AM9PR04MB84127E8F9A0B1C2D3E4F5A6B7C8D9E0F1A2B3@AM9PR04MB8412.eurprd04.prod.outlook.com',
        sourceMessageId: '64466dfe-b1a3-421a-ab4d-52134651d585',
        // Wed,  6 Mar 2024 10:41:05 +0100 (CET)
        at: '2024-03-06T09:41:05.000Z',
      },
    ]);
  });

  it('reads a 552 5.2.2 mailbox full as a soft bounce, whatever the field names’ case', async () => {
    expect(await parseDeliveryReport(fixture('messaging-server-mailbox-full.eml'), context)).toEqual([
      {
        kind: 'bounced',
        provider: 'graph',
        recipients: ['lena.fischer@fabrikam.net'],
        bounceType: 'soft',
        cause: 'over-quota',
        // From `Status: 5.2.2 (Remote SMTP server has rejected address)`.
        status: '5.2.2',
        diagnostic: '552 5.2.2 <lena.fischer@fabrikam.net>... Mailbox full',
        // The original's `Message-id:` header.
        providerMessageId:
          'AM9PR04MB84125A6B7C8D9E0F1A2B3C4D5E6F7A8B9C0D1@AM9PR04MB8412.eurprd04.prod.outlook.com',
        sourceMessageId: '82c7d922-6947-426c-9f93-2768eb7a2d1f',
        at: '2024-03-08T16:05:10.000Z',
      },
    ]);
  });

  it('reads a report on several recipients: the failed ones grouped, the relayed one delivered', async () => {
    const common = {
      provider: 'graph',
      providerMessageId:
        'AM9PR04MB8412C4D5E6F7A8B9C0D1E2F3A4B5C6D7E8F9A@AM9PR04MB8412.eurprd04.prod.outlook.com',
      sourceMessageId: '50273cd0-ea4f-445d-a0a2-54de9a101915',
      // Last-Attempt-Date (14:02:13 +0100) wins over Arrival-Date (14:02:09 +0100).
      at: '2024-03-06T13:02:13.000Z',
    };
    expect(await parseDeliveryReport(fixture('sendmail-mixed-recipients.eml'), context)).toEqual([
      {
        kind: 'bounced',
        recipients: ['a.novak@fabrikam.com', 't.horvat@fabrikam.com'],
        bounceType: 'hard',
        cause: 'user-unknown',
        status: '5.1.1',
        diagnostic: '550 5.1.1 User unknown',
        ...common,
      },
      {
        kind: 'delivered',
        recipients: ['p.lindqvist@fabrikam.com'],
        status: '2.0.0',
        diagnostic: '250 2.0.0 426D2B7y018736 Message accepted for delivery',
        ...common,
      },
    ]);
  });

  it('returns undefined for an out-of-office auto-reply', async () => {
    expect(await parseDeliveryReport(fixture('exchange-online-auto-reply.eml'), context)).toBeUndefined();
  });

  const fixtures = readdirSync(FIXTURES).filter((name) => name.endsWith('.eml'));

  it('has the fixtures this suite reads', () => {
    expect(fixtures).toHaveLength(7);
  });

  it.each(fixtures)('reads %s the same with CRLF line ends and as a string', async (name) => {
    const lf = fixture(name).toString('utf8');
    const expected = await parseDeliveryReport(lf, context);
    expect(await parseDeliveryReport(Buffer.from(lf.replace(/\n/g, '\r\n')), context)).toEqual(expected);
    expect(await parseDeliveryReport(Buffer.from(lf), context)).toEqual(expected);
  });
});

describe('parseDeliveryReport on edge cases', () => {
  it('unfolds folded field lines', async () => {
    const events = await parseDeliveryReport(
      report({
        recipients: [
          [
            'Final-Recipient:',
            ' rfc822;',
            '\tFolded@Fabrikam.com',
            'Action: failed',
            'Status: 5.1.1',
            'Diagnostic-Code: smtp; 550 5.1.1 <folded@fabrikam.com>:',
            '    Recipient address rejected:',
            '\tUser unknown',
          ],
        ],
      }),
      context,
    );
    expect(events).toMatchObject([
      {
        recipients: ['folded@fabrikam.com'],
        diagnostic: '550 5.1.1 <folded@fabrikam.com>: Recipient address rejected: User unknown',
      },
    ]);
  });

  it.each([
    'rfc822;a.b@fabrikam.com',
    'RFC822; a.b@fabrikam.com',
    'Rfc822 ;A.B@Fabrikam.com',
    'rfc822; <A.B@FABRIKAM.COM>',
    'rfc822;a.b@fabrikam.com (Anna B)',
  ])('reads the address of Final-Recipient: %s', async (value) => {
    const events = await parseDeliveryReport(
      report({ recipients: [[`Final-Recipient: ${value}`, 'Action: failed', 'Status: 5.1.1']] }),
      context,
    );
    expect(events?.map((event) => event.recipients)).toEqual([['a.b@fabrikam.com']]);
  });

  it('names the address the relay sent to, Original-Recipient, when a server rewrote it (Final-Recipient)', async () => {
    const events = await parseDeliveryReport(
      report({
        recipients: [
          [
            'Final-Recipient: rfc822;final@fabrikam.com',
            'Original-Recipient: rfc822;original@fabrikam.com',
            'Action: failed',
            'Status: 5.1.1',
          ],
        ],
      }),
      context,
    );
    expect(events?.map((event) => event.recipients)).toEqual([['original@fabrikam.com']]);
  });

  it('reads the recipient from either field when the other is missing or not an email address', async () => {
    const events = await parseDeliveryReport(
      report({
        recipients: [
          ['Original-Recipient: rfc822;first@fabrikam.com', 'Action: failed', 'Status: 5.1.1'],
          [
            'Final-Recipient: x400; /C=US/ADMD= /PRMD=Fabrikam/O=Mail/S=Second/',
            'Original-Recipient: rfc822;second@fabrikam.com',
            'Action: failed',
            'Status: 5.1.1',
          ],
        ],
      }),
      context,
    );
    expect(events?.map((event) => event.recipients)).toEqual([['first@fabrikam.com', 'second@fabrikam.com']]);
  });

  it('takes the status from the Diagnostic-Code when Status is missing or has no enhanced code', async () => {
    const events = await parseDeliveryReport(
      report({
        recipients: [
          failed(
            'missing@fabrikam.com',
            'Diagnostic-Code: smtp; 550-5.1.1 The email account does not exist.',
          ),
          failed(
            'unreadable@fabrikam.com',
            'Status: failed',
            'Diagnostic-Code: smtp; 552 5.2.2 Quota exceeded',
          ),
        ],
      }),
      context,
    );
    expect(events).toMatchObject([
      { recipients: ['missing@fabrikam.com'], status: '5.1.1', bounceType: 'hard' },
      { recipients: ['unreadable@fabrikam.com'], status: '5.2.2', bounceType: 'soft' },
    ]);
  });

  it('reads no status out of version numbers or addresses, and then calls the bounce soft', async () => {
    const [event] =
      (await parseDeliveryReport(
        report({
          recipients: [
            failed(
              'nobody@fabrikam.com',
              'Diagnostic-Code: smtp; 550 Rejected by filter 5.1.1.7 [192.0.2.4]',
            ),
          ],
        }),
        context,
      )) ?? [];
    expect(event).toBeDefined();
    expect(event?.status).toBeUndefined();
    expect(event?.bounceType).toBe('soft');
  });

  it('never calls a policy rejection (5.7.x) hard: it is about the sender, not the address', async () => {
    const [event] =
      (await parseDeliveryReport(
        report({
          recipients: [
            failed(
              'nobody@fabrikam.com',
              'Status: 5.7.708',
              'Diagnostic-Code: smtp;550 5.7.708 Service unavailable. Access denied, traffic not accepted from this IP.',
            ),
          ],
        }),
        context,
      )) ?? [];
    expect(event).toMatchObject({ kind: 'bounced', status: '5.7.708', bounceType: 'soft' });
  });

  it('reads every recipient block, also without a blank line between them, and keeps repeated fields', async () => {
    const events = await parseDeliveryReport(
      report({
        recipients: [
          [
            ...failed('first@fabrikam.com', 'Status: 5.1.1', 'Diagnostic-Code: smtp; 550 5.1.1 unknown'),
            // No blank line: a repeated Final-Recipient starts the next recipient.
            ...failed('second@fabrikam.com', 'Status: 5.1.1'),
            // A second Diagnostic-Code is evidence too: this one names a quota.
            'Diagnostic-Code: smtp; 550 5.1.1 <second@fabrikam.com>',
            'Diagnostic-Code: smtp; 552 mailbox full',
          ],
        ],
      }),
      context,
    );
    expect(events).toMatchObject([
      { recipients: ['first@fabrikam.com'], bounceType: 'hard', cause: 'user-unknown' },
      { recipients: ['second@fabrikam.com'], bounceType: 'soft', cause: 'over-quota' },
    ]);
  });

  it('reads recipient blocks that start with Action (Amazon SES), also without blank lines between them', async () => {
    const events = await parseDeliveryReport(
      report({
        recipients: [
          [
            'Action: failed',
            'Final-Recipient: rfc822; first@fabrikam.com',
            'Diagnostic-Code: smtp; 550 5.1.1 user unknown',
            'Status: 5.1.1',
            'Action: failed',
            'Final-Recipient: rfc822; second@fabrikam.com',
            'Diagnostic-Code: smtp; 552 5.2.2 mailbox full',
            'Status: 5.2.2',
          ],
        ],
      }),
      context,
    );
    expect(events).toMatchObject([
      { recipients: ['first@fabrikam.com'], bounceType: 'hard', diagnostic: '550 5.1.1 user unknown' },
      { recipients: ['second@fabrikam.com'], bounceType: 'soft', cause: 'over-quota' },
    ]);
  });

  it("takes a recipient's words from the report's text when its block has no Diagnostic-Code (OpenSMTPD)", async () => {
    const events = await parseDeliveryReport(
      report({
        text: [
          'An error has occurred while attempting to deliver a message for',
          'the following list of recipients:',
          '',
          'gone@fabrikam.com: 550 5.1.1 <gone@fabrikam.com>: Recipient address rejected: User unknown',
          'full@fabrikam.com: 552 5.2.2 <full@fabrikam.com>: Recipient address rejected: Mailbox full',
          'nodomain@nowhere.example: Domain does not exist',
        ],
        recipients: [
          failed('gone@fabrikam.com', 'Status: 5.0.0'),
          failed('full@fabrikam.com', 'Status: 5.0.0'),
          failed('nodomain@nowhere.example', 'Status: 5.0.0'),
          // Named nowhere in the text: nothing says why, so soft.
          failed('other@fabrikam.com', 'Status: 5.0.0'),
        ],
      }),
      context,
    );
    expect(events).toMatchObject([
      { recipients: ['gone@fabrikam.com'], bounceType: 'hard', cause: 'user-unknown', status: '5.1.1' },
      { recipients: ['full@fabrikam.com'], bounceType: 'soft', cause: 'over-quota' },
      { recipients: ['nodomain@nowhere.example'], bounceType: 'hard', cause: 'host-unknown' },
      { recipients: ['other@fabrikam.com'], bounceType: 'soft', cause: 'other' },
    ]);
    expect(events?.[3]?.diagnostic).toBeUndefined();
  });

  it('takes the comment of the Status field when neither the block nor the text has words', async () => {
    const events = await parseDeliveryReport(
      report({ recipients: [failed('a@nowhere.example', 'Status: 5.4.4 (Illegal host/domain name found)')] }),
      context,
    );
    expect(events).toMatchObject([
      { bounceType: 'hard', cause: 'host-unknown', diagnostic: 'Illegal host/domain name found' },
    ]);
  });

  it("reads the text's words when the Diagnostic-Code holds undecoded ISO-2022-JP (Domino)", async () => {
    // "ユーザー … は Domino ディレクトリには見つかりません。" as Domino writes it: 7-bit JIS escapes.
    const jis =
      '\u001b$B%f!<%6!<\u001b(B a@fabrikam.co.jp \u001b$B$O\u001b(B Domino \u001b$B%G%#%l%/%H%j$K$O8+$D$+$j$^$;$s!#\u001b(B';
    const events = await parseDeliveryReport(
      report({
        text: [
          'was not delivered to:',
          '',
          '  a@fabrikam.co.jp',
          '',
          'because:',
          '',
          '  ユーザーは Domino ディレクトリには見つかりません。',
        ],
        recipients: [failed('a@fabrikam.co.jp', 'Status: 5.0.0', `Diagnostic-Code: X-Notes; ${jis}`)],
      }),
      context,
    );
    expect(events).toMatchObject([
      { bounceType: 'hard', cause: 'user-unknown', diagnostic: expect.stringContaining('見つかりません') },
    ]);
  });

  it("finds the original's header quoted in the text when no part returns it (Exchange Online)", async () => {
    const events = await parseDeliveryReport(
      report({
        original: null,
        text: [
          "Your message to gone@fabrikam.com couldn't be delivered.",
          '',
          'Original message headers:',
          '',
          'Received: from mail.contoso.com (192.0.2.1) by',
          ' mx.fabrikam.com (192.0.2.2) with Microsoft SMTP Server',
          'Message-ID: <original@contoso.com>',
          'X-Mail-Relay-Message-Id: 7d1e0c2a-1b57-4c38-9d0e-5f3a9e2b8c11',
          'Subject: Your order',
        ],
        recipients: [
          failed('gone@fabrikam.com', 'Status: 5.1.1', 'Diagnostic-Code: smtp; 550 5.1.1 unknown'),
        ],
      }),
      context,
    );
    expect(events).toMatchObject([
      {
        recipients: ['gone@fabrikam.com'],
        providerMessageId: 'original@contoso.com',
        sourceMessageId: '7d1e0c2a-1b57-4c38-9d0e-5f3a9e2b8c11',
      },
    ]);
  });

  it('reads a report wrapped in a multipart/mixed, and an original returned as a text part (X6)', async () => {
    const inner = report({
      original: null,
      recipients: [failed('gone@fabrikam.com', 'Status: 5.1.1', 'Diagnostic-Code: smtp; 550 5.1.1 unknown')],
    });
    const body = inner.slice(inner.indexOf('\r\n\r\n') + 4);
    const wrapped = [
      'From: postmaster@fabrikam.com',
      'To: orders@contoso.com',
      'Subject: Undeliverable: Your order',
      'MIME-Version: 1.0',
      'Content-Type: multipart/mixed; boundary="outer"',
      '',
      '--outer',
      'Content-Type: multipart/report; report-type=delivery-status; boundary="report-boundary"',
      '',
      body,
      '--outer',
      'Content-Type: text/plain',
      'Content-Disposition: attachment; filename="headers.txt"',
      '',
      'X-Spam-Checked: yes',
      'Received: from mail.contoso.com by mx.fabrikam.com',
      'Message-ID: <original@contoso.com>',
      'Subject: Your order',
      '',
      '--outer--',
      '',
    ].join('\r\n');
    expect(await parseDeliveryReport(wrapped, context)).toMatchObject([
      { recipients: ['gone@fabrikam.com'], bounceType: 'hard', providerMessageId: 'original@contoso.com' },
    ]);
  });

  it('calls a 5.1.1 soft when its diagnostic names a blocklist, a quota or a rate (issue 18)', async () => {
    const events = await parseDeliveryReport(
      report({
        recipients: [
          failed(
            'a@fabrikam.com',
            'Status: 5.1.1',
            'Diagnostic-Code: smtp; 550 5.7.1 IP address blacklisted',
          ),
          failed('b@fabrikam.com', 'Status: 5.1.1', 'Diagnostic-Code: smtp; 552 5.2.2 Over quota'),
          failed(
            'c@fabrikam.com',
            'Status: 5.1.1',
            'Diagnostic-Code: smtp; 550 5.1.1 Too many recipients this hour',
          ),
        ],
      }),
      context,
    );
    expect(events?.map((event) => [event.recipients, event.bounceType, event.cause])).toEqual([
      [['a@fabrikam.com'], 'soft', 'blocked'],
      [['b@fabrikam.com'], 'soft', 'over-quota'],
      [['c@fabrikam.com'], 'soft', 'rate-limited'],
    ]);
  });

  it('prefers the diagnostic’s specific code to a generic Status 5.0.0 (issue 18)', async () => {
    const [event] =
      (await parseDeliveryReport(
        report({
          recipients: [
            failed(
              'gone@fabrikam.com',
              'Status: 5.0.0',
              'Diagnostic-Code: smtp; 550 5.1.1 <gone@fabrikam.com>',
            ),
          ],
        }),
        context,
      )) ?? [];
    expect(event).toMatchObject({ status: '5.1.1', bounceType: 'hard', cause: 'user-unknown' });
  });

  it('has no request ids when the report does not return the original', async () => {
    const [event] =
      (await parseDeliveryReport(
        report({ original: null, recipients: [failed('nobody@fabrikam.com', 'Status: 5.1.1')] }),
        context,
      )) ?? [];
    expect(event).toEqual({
      kind: 'bounced',
      provider: 'graph',
      recipients: ['nobody@fabrikam.com'],
      bounceType: 'hard',
      cause: 'user-unknown',
      status: '5.1.1',
      at: '2024-03-05T10:15:33.000Z',
    });
  });

  it('reads the trace headers whatever their case, from the header of a whole returned message only', async () => {
    const [event] =
      (await parseDeliveryReport(
        report({
          originalType: 'message/rfc822',
          original: [
            'message-id: no-brackets@contoso.com',
            'x-mail-relay-message-id: 0b9e1c52-6f0e-4c1a-9a55-3f1d2b7e8c40',
            'Subject: Your order',
            '',
            'X-Mail-Relay-Idempotency-Key: only-in-the-body',
          ],
          recipients: [failed('nobody@fabrikam.com', 'Status: 5.1.1')],
        }),
        context,
      )) ?? [];
    expect(event).toMatchObject({
      providerMessageId: 'no-brackets@contoso.com',
      sourceMessageId: '0b9e1c52-6f0e-4c1a-9a55-3f1d2b7e8c40',
    });
    expect(event).not.toHaveProperty('idempotencyKey');
  });

  it('reads the trace headers of a returned message marked Content-Disposition: inline', async () => {
    const [event] =
      (await parseDeliveryReport(
        report({
          originalType: 'message/rfc822\r\nContent-Disposition: inline',
          original: [
            'X-Mail-Relay-Message-Id: 3bcfac86-5b96-40d4-9cff-62efbbe638a5',
            'Content-Type: text/plain',
            '',
            'Hello',
          ],
          recipients: [failed('nobody@fabrikam.com', 'Status: 5.1.1')],
        }),
        context,
      )) ?? [];
    expect(event?.sourceMessageId).toBe('3bcfac86-5b96-40d4-9cff-62efbbe638a5');
  });

  it('collapses whitespace and cuts the diagnostic at 500 characters', async () => {
    const long = `smtp; 550 5.7.1   Message\t\trejected:  ${'very '.repeat(150)}long`;
    const [event] =
      (await parseDeliveryReport(
        report({ recipients: [failed('nobody@fabrikam.com', `Diagnostic-Code: ${long}`)] }),
        context,
      )) ?? [];
    expect(event?.diagnostic).toHaveLength(500);
    expect(event?.diagnostic?.startsWith('550 5.7.1 Message rejected: very very')).toBe(true);
  });

  it('maps every Action: failed, delayed, delivered, relayed and expanded, in any case', async () => {
    const events = await parseDeliveryReport(
      report({
        recipients: ['Failed', 'DELAYED', 'delivered', 'relayed', 'expanded'].map((action) => [
          `Final-Recipient: rfc822;${action.toLowerCase()}@fabrikam.com`,
          `Action: ${action}`,
        ]),
      }),
      context,
    );
    expect(events?.map((event) => [event.kind, event.recipients])).toEqual([
      ['bounced', ['failed@fabrikam.com']],
      ['delayed', ['delayed@fabrikam.com']],
      ['delivered', ['delivered@fabrikam.com', 'relayed@fabrikam.com', 'expanded@fabrikam.com']],
    ]);
  });

  it('leaves out recipients without an address or a known Action, and lists a repeated one once', async () => {
    const events = await parseDeliveryReport(
      report({
        recipients: [
          ['Final-Recipient: rfc822;/var/mail/spool/nobody', 'Action: failed', 'Status: 5.0.0'],
          ['Action: failed', 'Status: 5.1.1'],
          ['Final-Recipient: rfc822;unknown-action@fabrikam.com', 'Action: constructor', 'Status: 5.1.1'],
          ['Final-Recipient: rfc822;no-action@fabrikam.com', 'Status: 5.1.1'],
          failed('twice@fabrikam.com', 'Status: 5.1.1'),
          failed('Twice@fabrikam.com', 'Status: 5.1.1'),
        ],
      }),
      context,
    );
    expect(events?.map((event) => event.recipients)).toEqual([['twice@fabrikam.com']]);
  });

  it('returns no events for a report whose recipients are all unreadable', async () => {
    expect(
      await parseDeliveryReport(
        report({ recipients: [['Final-Recipient: rfc822;', 'Action: failed']] }),
        context,
      ),
    ).toEqual([]);
  });

  it('keeps recipients with different diagnostics in separate events', async () => {
    const events = await parseDeliveryReport(
      report({
        recipients: [
          failed(
            'a@fabrikam.com',
            'Status: 5.1.1',
            'Diagnostic-Code: smtp; 550 5.1.1 <a@fabrikam.com> unknown',
          ),
          failed(
            'b@fabrikam.com',
            'Status: 5.1.1',
            'Diagnostic-Code: smtp; 550 5.1.1 <b@fabrikam.com> unknown',
          ),
        ],
      }),
      context,
    );
    expect(events?.map((event) => event.recipients)).toEqual([['a@fabrikam.com'], ['b@fabrikam.com']]);
  });

  describe('at', () => {
    const atOf = async (parts: Partial<ReportParts>, recipientFields: string[] = []) => {
      const events = await parseDeliveryReport(
        report({
          recipients: [failed('nobody@fabrikam.com', 'Status: 5.1.1', ...recipientFields)],
          ...parts,
        }),
        context,
      );
      return events?.[0]?.at;
    };

    it('takes Last-Attempt-Date, then Arrival-Date, then the report Date, then receivedAt', async () => {
      const perMessage = [
        'Reporting-MTA: dns; mx.fabrikam.com',
        'Arrival-Date: Tue, 5 Mar 2024 08:00:00 +0000',
      ];
      expect(await atOf({ perMessage }, ['Last-Attempt-Date: Tue, 5 Mar 2024 09:00:00 +0000'])).toBe(
        '2024-03-05T09:00:00.000Z',
      );
      expect(await atOf({ perMessage })).toBe('2024-03-05T08:00:00.000Z');
      expect(await atOf({})).toBe('2024-03-05T10:15:33.000Z');
      expect(await atOf({ date: null })).toBe(context.receivedAt);
    });

    it('ignores dates it cannot read, including ones Date.parse would accept', async () => {
      const perMessage = ['Reporting-MTA: dns; mx.fabrikam.com', 'Arrival-Date: 1'];
      expect(
        await atOf({ perMessage, date: 'Tue, 31 Apr 2024 10:00:00 +0000' }, ['Last-Attempt-Date: soon']),
      ).toBe(context.receivedAt);
      expect(await atOf({ date: 'Tue, 5 Mar 2024 10:00:00' })).toBe(context.receivedAt);
    });

    it.each([
      ['Tue, 5 Mar 2024 05:15:30 EST', '2024-03-05T10:15:30.000Z'],
      ['5 Mar 2024 10:15 GMT', '2024-03-05T10:15:00.000Z'],
      ['Tue,  5 Mar 24 11:15:30 +0100 (CET)', '2024-03-05T10:15:30.000Z'],
      ['Tue, 05 Mar 2024 10:15:30 -0230', '2024-03-05T12:45:30.000Z'],
    ])('reads the RFC 5322 date %s', async (date, expected) => {
      expect(await atOf({ date })).toBe(expected);
    });
  });

  it('reads a message/global-delivery-status report (RFC 6533) with utf-8 addresses', async () => {
    const events = await parseDeliveryReport(
      report({
        statusType: 'message/global-delivery-status',
        recipients: [['Final-Recipient: utf-8; Åsa@fabrikam.com', 'Action: failed', 'Status: 5.1.1']],
      }),
      context,
    );
    expect(events?.map((event) => event.recipients)).toEqual([['åsa@fabrikam.com']]);
  });

  it('returns undefined for a read receipt (report-type=disposition-notification)', async () => {
    const receipt = [
      'From: nils.ekberg@fabrikam.com',
      'To: orders@contoso.com',
      'Subject: Read: Your order',
      'MIME-Version: 1.0',
      'Content-Type: multipart/report; report-type=disposition-notification; boundary="mdn"',
      '',
      '--mdn',
      'Content-Type: text/plain',
      '',
      'Your message was read.',
      '--mdn',
      'Content-Type: message/disposition-notification',
      '',
      'Reporting-UA: fabrikam.com',
      'Final-Recipient: rfc822;nils.ekberg@fabrikam.com',
      'Disposition: manual-action/MDN-sent-manually; displayed',
      '--mdn--',
      '',
    ].join('\r\n');
    expect(await parseDeliveryReport(receipt, context)).toBeUndefined();
  });

  it('returns undefined for a report forwarded inside another message', async () => {
    const forwarded = [
      'From: someone@contoso.com',
      'To: orders@contoso.com',
      'Subject: FW: Undeliverable: Your order',
      'MIME-Version: 1.0',
      'Content-Type: multipart/mixed; boundary="outer"',
      '',
      '--outer',
      'Content-Type: text/plain',
      '',
      'See the bounce below.',
      '--outer',
      'Content-Type: message/rfc822',
      'Content-Disposition: inline',
      '',
      report({ recipients: [failed('nobody@fabrikam.com', 'Status: 5.1.1')] }),
      '--outer--',
      '',
    ].join('\r\n');
    expect(await parseDeliveryReport(forwarded, context)).toBeUndefined();
  });

  it.each([
    ['an empty string', ''],
    ['plain text', 'hello, this is not a message at all'],
    ['random bytes', randomBytes(4096)],
    [
      'a multipart/report without parts',
      'Content-Type: multipart/report; boundary="x"\r\n\r\nno parts here\r\n',
    ],
    ['undefined', undefined],
    ['a number', 42],
  ])('returns undefined, without throwing, for %s', async (_, input) => {
    await expect(parseDeliveryReport(input as Buffer, context)).resolves.toBeUndefined();
  });
});

describe('bounceTypeFor', () => {
  it.each([
    ['5.1.1', 'hard'],
    ['5.1.2', 'hard'],
    ['5.1.6', 'hard'],
    ['5.1.10', 'hard'],
    ['5.1.351', 'hard'],
    ['5.2.1', 'hard'],
    ['5.1.0', 'soft'],
    ['5.1.7', 'soft'],
    ['5.1.8', 'soft'],
    ['5.2.2', 'soft'],
    ['5.3.4', 'soft'],
    ['5.7.1', 'soft'],
    ['5.7.708', 'soft'],
    ['5.0.0', 'soft'],
    ['4.1.1', 'soft'],
    ['4.2.1', 'soft'],
    ['4.4.7', 'soft'],
    ['2.0.0', 'soft'],
    ['garbage', 'soft'],
    [undefined, 'soft'],
  ] as const)('%s is %s', (status, expected) => {
    expect(bounceTypeFor(status)).toBe(expected);
  });
});
