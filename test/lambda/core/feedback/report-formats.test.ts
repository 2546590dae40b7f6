import { describe, expect, it } from 'vitest';
import { parseDeliveryReport } from '../../../../lambda/core/feedback/delivery-report.ts';

const context = { provider: 'smtp', receivedAt: '2026-01-01T00:00:00.000Z' };

/** The relay's message as returned below a plain-text bounce. */
const ORIGINAL = [
  'Message-ID: <original@contoso.com>',
  'X-Mail-Relay-Message-Id: 7d1e0c2a-1b57-4c38-9d0e-5f3a9e2b8c11',
  'X-Mail-Relay-Idempotency-Key: order-77',
  'From: orders@contoso.com',
  'To: someone@fabrikam.com',
  'Subject: Your order',
  '',
  'Hello',
];
const TRACED = {
  providerMessageId: 'original@contoso.com',
  sourceMessageId: '7d1e0c2a-1b57-4c38-9d0e-5f3a9e2b8c11',
  idempotencyKey: 'order-77',
};

function message(headers: readonly string[], body: readonly string[]): string {
  return [
    'Date: Tue, 5 Mar 2024 10:15:33 +0000',
    'To: orders@contoso.com',
    'MIME-Version: 1.0',
    ...headers,
    '',
    ...body,
    '',
  ].join('\r\n');
}

describe('plain-text bounce readers', () => {
  it('reads qmail: <addr>: lines, the (#5.x.x) code, the original below the marker', async () => {
    const events = await parseDeliveryReport(
      message(
        ['From: MAILER-DAEMON@mx.fabrikam.com', 'Subject: failure notice'],
        [
          'Hi. This is the qmail-send program at mx.fabrikam.com.',
          "I'm afraid I wasn't able to deliver your message to the following addresses.",
          "This is a permanent error; I've given up. Sorry it didn't work out.",
          '',
          '<gone@fabrikam.com>:',
          'Sorry, no mailbox here by that name. (#5.1.1)',
          '',
          '<full@fabrikam.com>:',
          '192.0.2.1 does not like recipient.',
          'Remote host said: 552 5.2.2 Mailbox full',
          '',
          '--- Below this line is a copy of the message.',
          '',
          ...ORIGINAL,
        ],
      ),
      context,
    );
    expect(events).toMatchObject([
      {
        kind: 'bounced',
        recipients: ['gone@fabrikam.com'],
        bounceType: 'hard',
        cause: 'user-unknown',
        status: '5.1.1',
        ...TRACED,
      },
      {
        kind: 'bounced',
        recipients: ['full@fabrikam.com'],
        bounceType: 'soft',
        cause: 'over-quota',
        status: '5.2.2',
        ...TRACED,
      },
    ]);
  });

  it('reads Exim: indented addresses and SMTP errors, X-Failed-Recipients, the copy of the message', async () => {
    const events = await parseDeliveryReport(
      message(
        [
          'From: Mail Delivery System <Mailer-Daemon@mx.fabrikam.com>',
          'Subject: Mail delivery failed: returning message to sender',
          'X-Failed-Recipients: nobody@fabrikam.com',
        ],
        [
          'This message was created automatically by mail delivery software.',
          '',
          'A message that you sent could not be delivered to one or more of its',
          'recipients. This is a permanent error. The following address(es) failed:',
          '',
          '  nobody@fabrikam.com',
          '    host mx.fabrikam.com [192.0.2.10]',
          '    SMTP error from remote mail server after RCPT TO:<nobody@fabrikam.com>:',
          '    550 5.1.1 <nobody@fabrikam.com>: Recipient address rejected: User unknown',
          '',
          '------ This is a copy of the message, including all the headers. ------',
          '',
          ...ORIGINAL,
        ],
      ),
      context,
    );
    expect(events).toMatchObject([
      {
        kind: 'bounced',
        recipients: ['nobody@fabrikam.com'],
        bounceType: 'hard',
        status: '5.1.1',
        ...TRACED,
      },
    ]);
  });

  it('reads Exim refusing after end of data as soft: the address was accepted', async () => {
    const events = await parseDeliveryReport(
      message(
        ['From: Mailer-Daemon@mx.fabrikam.com', 'Subject: Mail delivery failed'],
        [
          'This message was created automatically by mail delivery software.',
          '',
          'A message that you sent could not be delivered to one or more of its',
          'recipients. This is a permanent error. The following address(es) failed:',
          '',
          '  filtered@fabrikam.com',
          '    SMTP error from remote mail server after end of data:',
          '    550 : User unknown',
        ],
      ),
      context,
    );
    expect(events).toMatchObject([
      { recipients: ['filtered@fabrikam.com'], bounceType: 'soft', cause: 'content' },
    ]);
  });

  it('reads a Postfix plain-text bounce (no DSN part)', async () => {
    const events = await parseDeliveryReport(
      message(
        [
          'From: MAILER-DAEMON@mx.contoso.com (Mail Delivery System)',
          'Subject: Undelivered Mail Returned to Sender',
        ],
        [
          'This is the mail system at host mx.contoso.com.',
          '',
          "I'm sorry to have to inform you that your message could not",
          'be delivered to one or more recipients.',
          '',
          '<nobody@fabrikam.com>: host mx.fabrikam.com[192.0.2.10] said: 550 5.1.1',
          '    <nobody@fabrikam.com>: Recipient address rejected: User unknown (in reply to',
          '    RCPT TO command)',
          '',
          '<blocked@fabrikam.com>: host mx.fabrikam.com[192.0.2.10] said: 554 5.7.1',
          '    Service unavailable; Client host [198.51.100.7] blocked using zen.spamhaus.org',
        ],
      ),
      context,
    );
    expect(events).toMatchObject([
      { recipients: ['nobody@fabrikam.com'], bounceType: 'hard', status: '5.1.1' },
      { recipients: ['blocked@fabrikam.com'], bounceType: 'soft', cause: 'blocked', status: '5.7.1' },
    ]);
  });

  it('reads a sendmail plain-text bounce: the listed addresses and their transcript lines', async () => {
    const events = await parseDeliveryReport(
      message(
        [
          'From: Mail Delivery Subsystem <MAILER-DAEMON@mx.contoso.com>',
          'Subject: Returned mail: User unknown',
        ],
        [
          '   ----- Transcript of session follows -----',
          '... while talking to mx.fabrikam.com.:',
          '>>> RCPT To:<nobody@fabrikam.com>',
          '<<< 550 5.1.1 <nobody@fabrikam.com>... User unknown',
          '550 5.1.1 <nobody@fabrikam.com>... User unknown',
          '',
          '   ----- Unsent message follows -----',
          ...ORIGINAL,
        ],
      ),
      context,
    );
    expect(events).toMatchObject([
      { recipients: ['nobody@fabrikam.com'], bounceType: 'hard', status: '5.1.1', ...TRACED },
    ]);
  });

  it('reads a Gmail text bounce: addresses listed together share the error below them', async () => {
    const events = await parseDeliveryReport(
      message(
        [
          'From: Mail Delivery Subsystem <mailer-daemon@googlemail.com>',
          'Subject: Delivery Status Notification (Failure)',
        ],
        [
          'Delivery to the following recipients failed permanently:',
          '',
          '     one@fabrikam.com',
          '     two@fabrikam.com',
          '',
          'Technical details of permanent failure:',
          'The error that the other server returned was:',
          '550 5.1.1 The email account that you tried to reach does not exist.',
          '',
          '----- Original message -----',
          '',
          ...ORIGINAL,
        ],
      ),
      context,
    );
    expect(events).toMatchObject([
      {
        recipients: ['one@fabrikam.com', 'two@fabrikam.com'],
        bounceType: 'hard',
        status: '5.1.1',
        ...TRACED,
      },
    ]);
  });

  it("reads Gmail's newer text: Your message wasn't delivered to … because", async () => {
    const events = await parseDeliveryReport(
      message(
        [
          'From: Mail Delivery Subsystem <mailer-daemon@googlemail.com>',
          'Subject: Delivery Status Notification (Failure)',
        ],
        [
          '** Address not found **',
          '',
          "Your message wasn't delivered to nobody@fabrikam.com because the address couldn't be found,",
          'or is unable to receive mail.',
          '',
          'The response was:',
          '',
          '550 5.1.1 The email account that you tried to reach does not exist.',
        ],
      ),
      context,
    );
    expect(events).toMatchObject([
      { recipients: ['nobody@fabrikam.com'], bounceType: 'hard', status: '5.1.1' },
    ]);
  });

  it('reads a Google Groups bounce as soft: the group may not exist or may refuse the poster', async () => {
    const events = await parseDeliveryReport(
      message(
        [
          'From: Mail Delivery Subsystem <mailer-daemon@googlemail.com>',
          'Subject: Delivery Status Notification (Failure)',
          'X-Failed-Recipients: team@googlegroups.com',
        ],
        [
          'Hello orders@contoso.com,',
          '',
          "We're writing to let you know that the group you tried to contact (team) may not exist, or you",
          'may not have permission to post messages to the group.',
          '',
          'Google Groups',
        ],
      ),
      context,
    );
    const bounce = events?.find((event) => event.recipients.includes('team@googlegroups.com'));
    expect(bounce).toMatchObject({ kind: 'bounced', bounceType: 'soft', cause: 'policy' });
  });

  it('reads Exchange 2003: "did not reach" with #5.1.1 style codes', async () => {
    const events = await parseDeliveryReport(
      message(
        ['From: System Administrator <postmaster@fabrikam.com>', 'Subject: Undeliverable: Your order'],
        [
          'Your message did not reach some or all of the intended recipients.',
          '',
          '      Subject:  Your order',
          '      Sent:     3/5/2024 10:15 AM',
          '',
          'The following recipient(s) cannot be reached:',
          '',
          '      nobody@fabrikam.com on 3/5/2024 10:15 AM',
          '            The e-mail account does not exist at the organization this message was sent to.',
          '            <mx.fabrikam.com #5.1.1>',
        ],
      ),
      context,
    );
    expect(events).toMatchObject([
      { recipients: ['nobody@fabrikam.com'], bounceType: 'hard', status: '5.1.1' },
    ]);
  });

  it('reads RFC 3464 parts inside multipart/mixed (OpenSMTPD, gateways)', async () => {
    const events = await parseDeliveryReport(
      message(
        [
          'From: Mailer Daemon <MAILER-DAEMON@mx.contoso.com>',
          'Subject: Delivery status notification: error',
          'Content-Type: multipart/mixed; boundary="b"',
        ],
        [
          '--b',
          'Content-Type: text/plain',
          '',
          'An error has occurred while attempting to deliver a message.',
          '--b',
          'Content-Type: message/delivery-status',
          '',
          'Reporting-MTA: dns; mx.contoso.com',
          '',
          'Final-Recipient: rfc822; nobody@fabrikam.com',
          'Action: failed',
          'Status: 5.1.1',
          '--b',
          'Content-Type: text/rfc822-headers',
          '',
          ...ORIGINAL.slice(0, 4),
          '--b--',
        ],
      ),
      context,
    );
    expect(events).toMatchObject([
      { recipients: ['nobody@fabrikam.com'], bounceType: 'hard', status: '5.1.1', ...TRACED },
    ]);
  });

  it('reads a delay warning in text as delayed, never as a bounce', async () => {
    const events = await parseDeliveryReport(
      message(
        [
          'From: Mail Delivery Subsystem <MAILER-DAEMON@mx.contoso.com>',
          'Subject: Warning: could not send message for past 4 hours',
        ],
        [
          '   **********************************************',
          '   **      THIS IS A WARNING MESSAGE ONLY      **',
          '   **  YOU DO NOT NEED TO RESEND YOUR MESSAGE  **',
          '   **********************************************',
          '',
          '   ----- Transcript of session follows -----',
          '<slow@fabrikam.com>... Deferred: Connection timed out with mx.fabrikam.com.',
          'Warning: message still undelivered after 4 hours',
          'Will keep trying until message is 5 days old',
        ],
      ),
      context,
    );
    expect(events).toMatchObject([{ kind: 'delayed', recipients: ['slow@fabrikam.com'] }]);
    expect(events?.[0]).not.toHaveProperty('bounceType');
  });

  it("reads OpenSMTPD's delay warning, with its own greeting, as delayed", async () => {
    const events = await parseDeliveryReport(
      message(
        [
          'From: Mailer Daemon <MAILER-DAEMON@mx.contoso.com>',
          'Subject: Delivery status notification: delayed',
        ],
        [
          '    Hi!',
          '',
          '    This is the MAILER-DAEMON, please DO NOT REPLY to this e-mail.',
          '',
          '    A message is delayed for more than 10 minutes for the following',
          '    list of recipients:',
          '',
          'slow@fabrikam.com: Network error on destination MXs',
          '',
          '    Please note that this is only a temporary failure report.',
          '',
          '    Below is a copy of the original message:',
          '',
          ...ORIGINAL,
        ],
      ),
      context,
    );
    expect(events).toMatchObject([
      {
        kind: 'delayed',
        recipients: ['slow@fabrikam.com'],
        diagnostic: expect.stringMatching(/^Network error on destination MXs/),
        ...TRACED,
      },
    ]);
  });

  it('reads a sendmail text whose failed address is a program from the RFC 3464 fields in its text', async () => {
    const events = await parseDeliveryReport(
      message(
        [
          'From: Mail Delivery Subsystem <MAILER-DAEMON@mx.fabrikam.com>',
          'Subject: Returned mail: see transcript',
        ],
        [
          '   ----- The following addresses had permanent fatal errors -----',
          '"|exec /usr/local/bin/procmail || exit 75 #someone"',
          '    (expanded from: <someone@fabrikam.com>)',
          '',
          '   ----- Transcript of session follows -----',
          '554 "|exec /usr/local/bin/procmail || exit 75 #someone"... Service unavailable',
          '',
          'Reporting-MTA: dns; mx.fabrikam.com',
          '',
          'Final-Recipient: RFC822; someone@fabrikam.com',
          'Action: failed',
          'Status: 5.5.0',
        ],
      ),
      context,
    );
    // A local delivery program that failed says nothing about the address: soft.
    expect(events).toMatchObject([
      { kind: 'bounced', recipients: ['someone@fabrikam.com'], bounceType: 'soft' },
    ]);
  });

  it('reads Domino: "was not delivered to:", the address below, "because:" and the reason', async () => {
    const events = await parseDeliveryReport(
      message(
        [
          'From: Postmaster@fabrikam.com',
          'Subject: DELIVERY FAILURE: User gone (gone@fabrikam.com) not listed',
        ],
        [
          'Your message',
          '',
          '  Subject: Your order',
          '',
          'was not delivered to:',
          '',
          '  gone@fabrikam.com',
          '',
          'because:',
          '',
          '  User gone (gone@fabrikam.com) not listed in Domino Directory',
        ],
      ),
      context,
    );
    expect(events).toMatchObject([
      { kind: 'bounced', recipients: ['gone@fabrikam.com'], bounceType: 'hard', cause: 'user-unknown' },
    ]);
  });

  /** X3's text part, in a multipart/report without a report-type or a delivery-status part. */
  const x3 = (introduction: string, address: string, details: string) =>
    message(
      [
        'From: Mail Delivery System <Mail.Delivery.System@mx.fabrikam.com>',
        'Subject: Delivery status notification',
        'Content-Type: multipart/report; boundary="b1"',
      ],
      [
        '--b1',
        'Content-Type: text/plain; charset=UTF-8',
        '',
        '=================================================',
        '   This is an automatically generated Delivery Status Notification.',
        '',
        introduction,
        '',
        address,
        '',
        '=================================================',
        '                 Technical details:',
        '',
        details,
        '',
        '--b1',
        'Content-Type: message/rfc822',
        '',
        ...ORIGINAL,
        '--b1--',
      ],
    );

  it('reads X3: a bulleted address under "Delivery to the following recipients failed permanently"', async () => {
    const events = await parseDeliveryReport(
      x3(
        'Delivery to the following recipients failed permanently:',
        '   * gone@fabrikam.com',
        'SMTP:RCPT host 192.0.2.8: 553 5.3.0 <gone@fabrikam.com>... No such user here',
      ),
      context,
    );
    expect(events).toMatchObject([
      {
        kind: 'bounced',
        recipients: ['gone@fabrikam.com'],
        bounceType: 'hard',
        cause: 'user-unknown',
        status: '5.3.0',
        ...TRACED,
      },
    ]);
  });

  it('reads X3 giving up on a route ("was aborted after 5.0 hours") as soft', async () => {
    const events = await parseDeliveryReport(
      x3(
        'Delevery to the following recipients was aborted after 5.0 hour(s):',
        '  * someone@fabrikam.com',
        'Routing: Could not find a gateway for someone@fabrikam.com',
      ),
      context,
    );
    expect(events).toMatchObject([
      { kind: 'bounced', recipients: ['someone@fabrikam.com'], bounceType: 'soft' },
    ]);
  });

  it('reads a bulleted address only under that introduction, and only alone on its line', async () => {
    const elsewhere = await parseDeliveryReport(
      x3('We could not deliver your message.', '   * gone@fabrikam.com', 'No such user here'),
      context,
    );
    expect(elsewhere).toBeUndefined();
    const notAlone = await parseDeliveryReport(
      x3(
        'Delivery to the following recipients failed permanently:',
        '   * ask gone@fabrikam.com for help',
        'No such user here',
      ),
      context,
    );
    expect(notAlone).toBeUndefined();
  });

  /** X6's text: the address only in a sentence. */
  const x6 = (error: string) =>
    message(
      ['From: mailer-daemon', 'Subject: There was an error sending your mail'],
      [
        'We had trouble delivering your message. Full details follow:',
        '',
        "Subject: 'Your order'",
        '',
        '1 error(s):',
        '',
        error,
        '',
        'Please verify recipient(s) mail addresses or contact help@contoso.com with contents of this mail.',
      ],
    );

  it('reads X6: "rejected recipient <a@b>" in a sentence, the reply in brackets', async () => {
    const events = await parseDeliveryReport(
      x6(
        'SMTP Server <mx.fabrikam.com> rejected recipient <gone@fabrikam.com> (Error following RCPT command). It responded as follows: [550 5.1.1 User unknown]',
      ),
      context,
    );
    expect(events).toMatchObject([
      {
        kind: 'bounced',
        recipients: ['gone@fabrikam.com'],
        bounceType: 'hard',
        cause: 'user-unknown',
        status: '5.1.1',
      },
    ]);
  });

  it('reads X6: "The following recipients returned permanent errors: a@b." with its reason', async () => {
    const events = await parseDeliveryReport(
      x6(
        'The following recipients returned permanent errors: someone@fabrikam.com. Reason: SMTP Server <192.0.2.223> refused to accept your message (DATA), with the following error message: [554 5.4.6 Hop count exceeded - possible mail loop]',
      ),
      context,
    );
    expect(events).toMatchObject([
      { kind: 'bounced', recipients: ['someone@fabrikam.com'], bounceType: 'soft', status: '5.4.6' },
    ]);
  });

  it('does not read an address in any other sentence of an X6 text', async () => {
    const events = await parseDeliveryReport(
      x6('The server of gone@fabrikam.com said: [550 5.1.1 User unknown]'),
      context,
    );
    expect(events).toBeUndefined();
  });

  it("reads Zoho's warning: [Status: …, Address: <a@b>, ResponseCode 421, …] as delayed", async () => {
    const events = await parseDeliveryReport(
      message(
        ['From: mailer-daemon@mail.zoho.com', 'Subject: Mail Delivery Status Notification (Delay)'],
        [
          'This message was created automatically by mail delivery system.',
          '',
          'THIS IS A WARNING MESSAGE ONLY.',
          '',
          'YOU DO NOT NEED TO RESEND YOUR MESSAGE.',
          '',
          '----- The following addresses had fatal errors -----',
          '[Status: Error, Address: <someone@fabrikam.com>, ResponseCode 421, , Host not reachable.]',
          '',
          'Message will be retried for 4 more day(s)',
        ],
      ),
      context,
    );
    expect(events).toMatchObject([{ kind: 'delayed', recipients: ['someone@fabrikam.com'] }]);
    expect(events?.[0]?.bounceType).toBeUndefined();
  });

  /** Sun/Oracle Messaging Server (PMDF): "Recipient address:" then Reason and Diagnostic code below. */
  const messagingServer = (...recipients: readonly (readonly [string, string])[]) =>
    message(
      [
        'From: Internet Mail Delivery <postmaster@mx.fabrikam.com>',
        'Subject: Delivery Notification: Delivery has failed',
      ],
      [
        'This report relates to a message you sent with the following header fields:',
        '',
        '  Message-id: <original@contoso.com>',
        '  To: someone@fabrikam.com',
        '',
        'Your message cannot be delivered to the following recipients:',
        '',
        ...recipients.flatMap(([address, code]) => [
          `  Recipient address: ${address}`,
          '  Reason: Remote SMTP server has rejected address',
          `  Diagnostic code: smtp; ${code}`,
          '  Remote system: dns; mx.fabrikam.com (TCP|192.0.2.225|34321|192.0.2.12|25)',
        ]),
      ],
    );

  it('reads Messaging Server\'s "Recipient address:" fields, each with its own diagnostic code', async () => {
    const events = await parseDeliveryReport(
      messagingServer(
        ['gone@fabrikam.com', '550 5.1.1 unknown or illegal alias: gone@fabrikam.com'],
        ['filtered@fabrikam.com', '550 5.7.1 550 User Unknown: filtered@fabrikam.com'],
      ),
      context,
    );
    expect(events).toMatchObject([
      { kind: 'bounced', recipients: ['gone@fabrikam.com'], bounceType: 'hard', status: '5.1.1' },
      // A 5.7.1 (policy) with "User Unknown" in its words: the evidence does not agree.
      { kind: 'bounced', recipients: ['filtered@fabrikam.com'], bounceType: 'soft', status: '5.7.1' },
    ]);
  });

  it('reads Lotus Notes: the reason on the line above each address', async () => {
    const events = await parseDeliveryReport(
      message(
        [
          'From: Postmaster@fabrikam.com',
          'Subject: DELIVERY FAILURE',
          'Content-Type: text/plain; charset=utf-8',
        ],
        [
          '------- Failure Reasons  --------',
          '',
          'User  not listed in public Name & Address Book',
          'gone@fabrikam.com',
          'ディレクトリのリストにありません',
          'left@fabrikam.co.jp',
          '',
          '------- Returned Message --------',
          ...ORIGINAL,
        ],
      ),
      context,
    );
    expect(events).toMatchObject([
      {
        recipients: ['gone@fabrikam.com'],
        bounceType: 'hard',
        cause: 'user-unknown',
        diagnostic: 'User not listed in public Name & Address Book',
        ...TRACED,
      },
      {
        recipients: ['left@fabrikam.co.jp'],
        bounceType: 'hard',
        diagnostic: 'ディレクトリのリストにありません',
      },
    ]);
  });

  it('reads Exim 3: the failed addresses between ruled lines, then the message text', async () => {
    const events = await parseDeliveryReport(
      message(
        ['From: <MAILER-DAEMON@mx.fabrikam.com>', 'Subject: mail failed, returning to sender'],
        [
          '|------------------------- Message log follows: -------------------------|',
          ' no valid recipients were found for this message',
          '|------------------------- Failed addresses follow: ---------------------|',
          ' someone@nowhere.example ... unknown host',
          '|------------------------- Message text follows: ------------------------|',
          ...ORIGINAL,
        ],
      ),
      context,
    );
    expect(events).toMatchObject([
      { recipients: ['someone@nowhere.example'], bounceType: 'hard', cause: 'host-unknown', ...TRACED },
    ]);
  });

  /** A gateway's notice (X5) whose returned message is another server's whole report. */
  const passedOn = (from: string) =>
    message(
      [
        `From: ${from}`,
        'Subject: Returned mail: User unknown',
        'Content-Type: multipart/mixed; boundary="gw"',
      ],
      [
        '--gw',
        'Content-Type: text/plain; charset=us-ascii',
        '',
        '----- The following addresses had permanent delivery errors -----',
        '',
        '--gw',
        'Content-Type: message/rfc822',
        '',
        'From: Mail Delivery Subsystem <MAILER-DAEMON@mx.fabrikam.com>',
        'Subject: Returned mail: User unknown',
        'MIME-Version: 1.0',
        'Content-Type: multipart/report; report-type=delivery-status; boundary="inner"',
        '',
        '--inner',
        'Content-Type: text/plain',
        '',
        'The following addresses had permanent delivery errors',
        '--inner',
        'Content-Type: message/delivery-status',
        '',
        'Reporting-MTA: dns; mx.fabrikam.com',
        '',
        'Final-Recipient: rfc822; gone@fabrikam.com',
        'Action: failed',
        'Status: 5.1.1',
        'Diagnostic-Code: smtp; 550 5.1.1 User unknown',
        '',
        '--inner',
        'Content-Type: text/rfc822-headers',
        '',
        ...ORIGINAL.slice(0, 6),
        '',
        '--inner--',
        '',
        '--gw--',
      ],
    );

  it("reads a gateway's notice that returns another server's report: that report, one level down", async () => {
    const events = await parseDeliveryReport(
      passedOn('Mail Delivery Subsystem <MAILER-DAEMON@gw.contoso.com>'),
      context,
    );
    expect(events).toMatchObject([
      { kind: 'bounced', recipients: ['gone@fabrikam.com'], bounceType: 'hard', status: '5.1.1', ...TRACED },
    ]);
  });

  it('does not read a report returned inside a message that is not from a mailer daemon', async () => {
    expect(await parseDeliveryReport(passedOn('Anna <anna@contoso.com>'), context)).toBeUndefined();
  });

  it.each([
    [
      'a person forwarding a bounce',
      ['From: Anna <anna@fabrikam.com>', 'Subject: FW: Undeliverable: Your order'],
      [
        'This message was created automatically by mail delivery software.',
        '',
        '  nobody@fabrikam.com',
        '    550 5.1.1 User unknown',
      ],
    ],
    [
      'an auto-reply',
      [
        'From: Anna <anna@fabrikam.com>',
        'Subject: Automatic reply: Your order',
        'Auto-Submitted: auto-replied',
      ],
      ['I am out of the office until Monday.', 'anna@fabrikam.com'],
    ],
    [
      'an ordinary mail from a postmaster',
      ['From: postmaster@fabrikam.com', 'Subject: Your question'],
      ['Hello, about your question:', 'someone@fabrikam.com handles it.'],
    ],
  ])('returns undefined for %s', async (_, headers, body) => {
    expect(await parseDeliveryReport(message(headers, body), context)).toBeUndefined();
  });
});

describe('Amazon SES notifications that SNS sent by email', () => {
  const notification = {
    notificationType: 'Bounce',
    bounce: {
      bounceType: 'Permanent',
      bounceSubType: 'General',
      bouncedRecipients: [
        {
          emailAddress: 'gone@fabrikam.com',
          status: '5.1.1',
          diagnosticCode: 'smtp; 550 5.1.1 user unknown',
        },
      ],
      timestamp: '2026-01-01T00:00:00.000Z',
    },
    mail: {
      messageId: '0100018c-ses-message-id',
      timestamp: '2026-01-01T00:00:00.000Z',
      headers: [
        { name: 'X-Mail-Relay-Message-Id', value: TRACED.sourceMessageId },
        { name: 'X-Mail-Relay-Idempotency-Key', value: TRACED.idempotencyKey },
      ],
    },
  };
  const FOOTER = [
    '',
    '--',
    'If you wish to stop receiving notifications from this topic, please click the link.',
  ];
  const sns = (from: string, body: readonly string[]) =>
    message(
      [`From: ${from}`, 'Subject: AWS Notification Message', 'Content-Type: text/plain; charset=UTF-8'],
      body,
    );
  const expected = {
    kind: 'bounced',
    provider: 'ses',
    recipients: ['gone@fabrikam.com'],
    bounceType: 'hard',
    providerMessageId: '0100018c-ses-message-id',
    sourceMessageId: TRACED.sourceMessageId,
    idempotencyKey: TRACED.idempotencyKey,
  };

  it('reads the notification (protocol email), whose long line arrives folded', async () => {
    const line = JSON.stringify(notification);
    const folded = [line.slice(0, 120), ` ${line.slice(120)}`];
    const events = await parseDeliveryReport(
      sns('Bounces <no-reply@sns.amazonaws.com>', [...folded, ...FOOTER]),
      context,
    );
    expect(events).toMatchObject([expected]);
  });

  it("reads SNS's envelope around it (protocol email-json)", async () => {
    const envelope = JSON.stringify({ Type: 'Notification', Message: JSON.stringify(notification) }, null, 2);
    const events = await parseDeliveryReport(
      sns('no-reply@sns.amazonaws.com', envelope.split('\n')),
      context,
    );
    expect(events).toMatchObject([expected]);
  });

  it('reads the same JSON from anyone else, or a malformed one, as no report', async () => {
    const line = JSON.stringify(notification);
    expect(await parseDeliveryReport(sns('Anna <anna@contoso.com>', [line]), context)).toBeUndefined();
    expect(
      await parseDeliveryReport(sns('no-reply@sns.amazonaws.com', [line.slice(0, 80), ...FOOTER]), context),
    ).toBeUndefined();
  });
});
