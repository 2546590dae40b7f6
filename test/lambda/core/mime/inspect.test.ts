import { describe, expect, it } from 'vitest';
import { inspectMime } from '../../../../lambda/core/mime/inspect.ts';
import { parseRawMime } from '../../../../lambda/core/mime/raw-mime.ts';
import { base64Lines, CLEAN, crlf, INVITATION, PDF } from './fixtures.ts';

const inspect = (...lines: string[]) => inspectMime(parseRawMime(crlf(...lines)));
const BIDI_PROBLEM =
  'contains a bidirectional override or isolate (U+202E), which would make it display as something it is not';

/** A message with one attachment whose Content-Disposition is `disposition`. */
const withAttachment = (...disposition: string[]) =>
  inspect(
    'From: a@contoso.com',
    'MIME-Version: 1.0',
    'Content-Type: multipart/mixed; boundary="b"',
    '',
    '--b',
    'Content-Type: text/plain',
    '',
    'see attached',
    '--b',
    'Content-Type: application/pdf',
    ...disposition,
    'Content-Transfer-Encoding: base64',
    '',
    ...base64Lines(PDF),
    '--b--',
    '',
  );

describe('inspectMime', () => {
  it('reads the addresses, subject, Message-ID and Date of a plain message', () => {
    expect(inspectMime(parseRawMime(CLEAN))).toEqual({
      from: [{ name: 'Ana Example', address: 'ana@contoso.com' }],
      replyTo: [],
      to: [{ name: 'Bo', address: 'bo@fabrikam.com' }],
      cc: [],
      bcc: [],
      subject: 'Weekly report',
      messageId: '<report-1@contoso.com>',
      date: 'Tue, 14 May 2024 09:05:00 +0000',
      filenames: [],
      contentTypes: ['text/plain'],
      problems: [],
    });
  });

  it('reads Sender, Reply-To, Cc and Bcc', () => {
    const summary = inspect(
      'From: a@contoso.com',
      'Sender: robot@contoso.com',
      'Reply-To: help@contoso.com, "Sales, EU" <eu@contoso.com>',
      'Cc: c@fabrikam.com',
      'Bcc: d@fabrikam.com',
      '',
      '',
    );

    expect(summary).toMatchObject({
      sender: { address: 'robot@contoso.com' },
      replyTo: [{ address: 'help@contoso.com' }, { name: 'Sales, EU', address: 'eu@contoso.com' }],
      cc: [{ address: 'c@fabrikam.com' }],
      bcc: [{ address: 'd@fabrikam.com' }],
    });
  });

  it('decodes an encoded display name', () => {
    const summary = inspect('From: =?utf-8?Q?Ana_P=C3=A9rez?= <ana@contoso.com>', '', '');

    expect(summary.from).toEqual([{ name: 'Ana Pérez', address: 'ana@contoso.com' }]);
  });

  it('decodes an encoded subject', () => {
    expect(inspect('From: a@contoso.com', 'Subject: =?utf-8?B?R3LDvMOfZQ==?= aus Köln', '', '').subject).toBe(
      'Grüße aus Köln',
    );
  });

  it('reads group syntax with no members as no addresses and no problem', () => {
    const summary = inspect('From: a@contoso.com', 'To: undisclosed-recipients:;', '', '');

    expect(summary.to).toEqual([]);
    expect(summary.problems).toEqual([]);
  });

  it('reads the members of a group as addresses', () => {
    const summary = inspect('From: a@contoso.com', 'To: Team: b@contoso.com, c@contoso.com;', '', '');

    expect(summary.to.map((mailbox) => mailbox.address)).toEqual(['b@contoso.com', 'c@contoso.com']);
  });

  it('finds a missing From', () => {
    expect(inspect('To: b@contoso.com', '', '').problems).toEqual(['from: is missing']);
  });

  it('finds a From with more than one address', () => {
    expect(inspect('From: a@contoso.com, b@contoso.com', '', '').problems).toEqual([
      'from: has 2 addresses; the relay sends as exactly one',
    ]);
  });

  it('finds an address that is not valid by its field and position', () => {
    expect(inspect('From: a@contoso.com', 'To: b@contoso.com, not-an-address', '', '').problems).toEqual([
      'to: address 2 is not a valid email address (expected "a@example.com" or "Name <a@example.com>")',
    ]);
  });

  it('finds a display name with a zero-width space', () => {
    expect(inspect('From: "Micro\u200Bsoft" <a@contoso.com>', '', '').problems).toEqual([
      'from: address 1 display name contains a zero-width space (U+200B), which would make it display as something it is not',
    ]);
  });

  it('finds a right-to-left override in an encoded subject without echoing the subject', () => {
    const summary = inspect('From: a@contoso.com', 'Subject: =?utf-8?Q?Invoice_=E2=80=AEfdp.exe?=', '', '');

    expect(summary.problems).toEqual([`subject: ${BIDI_PROBLEM}`]);
  });

  it('lists the content types of the leaf parts in document order', () => {
    expect(inspectMime(parseRawMime(INVITATION)).contentTypes).toEqual([
      'text/plain',
      'text/html',
      'image/png',
      'application/pdf',
      'text/calendar',
    ]);
  });

  it('lists the file names of the parts that have one', () => {
    expect(inspectMime(parseRawMime(INVITATION)).filenames).toEqual(['logo.png', 'agenda.pdf']);
  });

  it('reads an attached message as one leaf without looking inside it', () => {
    const summary = inspect(
      'From: a@contoso.com',
      'Content-Type: multipart/mixed; boundary="b"',
      '',
      '--b',
      'Content-Type: message/rfc822',
      '',
      'From: inner@fabrikam.com',
      'Content-Type: multipart/alternative; boundary="inner"',
      '',
      '--inner',
      'Content-Type: text/plain',
      '',
      'inner text',
      '--inner--',
      '--b--',
      '',
    );

    expect(summary.contentTypes).toEqual(['message/rfc822']);
  });

  it('decodes an RFC 2231 file name split into continuations', () => {
    const summary = withAttachment(
      "Content-Disposition: attachment; filename*0*=utf-8''Angebot%20f%C3%BCr%20;",
      ' filename*1*=M%C3%BCller.pdf',
    );

    expect(summary.filenames).toEqual(['Angebot für Müller.pdf']);
  });

  it('decodes an RFC 2047 file name from Content-Type name when there is no Content-Disposition', () => {
    const summary = inspect(
      'From: a@contoso.com',
      'Content-Type: application/pdf; name="=?utf-8?Q?R=C3=A9sum=C3=A9.pdf?="',
      'Content-Transfer-Encoding: base64',
      '',
      ...base64Lines(PDF),
    );

    expect(summary.filenames).toEqual(['Résumé.pdf']);
  });

  it('finds a right-to-left override in a file name by part number', () => {
    const summary = withAttachment(
      "Content-Disposition: attachment; filename*=utf-8''invoice%E2%80%AEfdp.exe",
    );

    expect(summary.problems).toEqual([`filename of part 2: ${BIDI_PROBLEM}`]);
  });
});
