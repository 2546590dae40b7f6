import { simpleParser } from 'mailparser';
import { describe, expect, it } from 'vitest';
import { normaliseMime } from '../../../../lambda/core/mime/normalise.ts';
import { firstHeader, serializeRawMime } from '../../../../lambda/core/mime/raw-mime.ts';
import {
  base64Lines,
  CALENDAR,
  CLEAN,
  crlf,
  INVITATION,
  LATIN1_SCANNER,
  LONG_HTML,
  LONG_LINES,
  LONG_TEXT,
  PDF,
  PNG,
} from './fixtures.ts';

const now = new Date('2024-05-14T09:05:00Z');
const normalise = (bytes: Buffer) => normaliseMime(bytes, { now });
const normalised = (bytes: Buffer) => serializeRawMime(normalise(bytes).mime);
const longestLine = (bytes: Buffer) =>
  Math.max(
    ...bytes
      .toString('latin1')
      .split('\r\n')
      .map((line) => line.length),
  );
const headerBlock = (bytes: Buffer) => bytes.subarray(0, bytes.indexOf('\r\n\r\n'));

const RAW_UTF8_SUBJECT = crlf(
  'From: Jürgen Groß <juergen@contoso.com>',
  'To: bo@fabrikam.com',
  'Subject: Grüße aus Köln – Angebot',
  'Date: Tue, 14 May 2024 09:05:00 +0000',
  '',
  'Hello',
  '',
);

describe('normaliseMime', () => {
  it('keeps a message that is already fine byte for byte and reports no change', () => {
    const { mime, changes } = normalise(CLEAN);

    expect(changes).toEqual([]);
    expect(serializeRawMime(mime).equals(CLEAN)).toBe(true);
  });

  it('turns bare LF line endings into CRLF and says so', () => {
    const { mime, changes } = normalise(Buffer.from(CLEAN.toString().replaceAll('\r\n', '\n')));

    expect(changes).toEqual(['line endings: CRLF']);
    expect(serializeRawMime(mime).equals(CLEAN)).toBe(true);
  });

  it('turns bare CR line endings into CRLF', () => {
    const { mime } = normalise(Buffer.from(CLEAN.toString().replaceAll('\r\n', '\r')));

    expect(serializeRawMime(mime).equals(CLEAN)).toBe(true);
  });

  describe('a Latin-1 body without MIME headers', () => {
    it('is declared UTF-8 text and quoted-printable', () => {
      const { mime } = normalise(LATIN1_SCANNER);

      expect(firstHeader(mime, 'mime-version')).toBe('1.0');
      expect(firstHeader(mime, 'content-type')).toBe('text/plain; charset=utf-8');
      expect(firstHeader(mime, 'content-transfer-encoding')).toBe('quoted-printable');
    });

    it('reads as the same text, Windows-1252 characters included', async () => {
      const parsed = await simpleParser(normalised(LATIN1_SCANNER));

      expect(parsed.text).toBe('Café crème € 5\nSeite 1 von 2 – fertig\n');
    });

    it('has only 7-bit bytes afterwards', () => {
      expect(normalised(LATIN1_SCANNER).every((byte) => byte < 0x80)).toBe(true);
    });

    it('reports the conversion in words that hold no content', () => {
      expect(normalise(LATIN1_SCANNER).changes).toEqual([
        'line endings: CRLF',
        'body: windows-1252 to utf-8',
        'body: quoted-printable',
        'MIME-Version: added',
        'Date: added',
      ]);
    });
  });

  it('declares a UTF-8 body without MIME headers as UTF-8 and keeps its text', async () => {
    const bytes = crlf('From: a@contoso.com', 'Subject: x', '', 'Grüße, 東京', '');

    const parsed = await simpleParser(normalised(bytes));

    expect(parsed.text).toBe('Grüße, 東京\n');
    expect(normalise(bytes).changes).toContain('body: charset utf-8');
  });

  it('writes a raw UTF-8 subject as encoded words that decode to the same subject', async () => {
    const out = normalised(RAW_UTF8_SUBJECT);

    expect((await simpleParser(out)).subject).toBe('Grüße aus Köln – Angebot');
    expect(headerBlock(out).every((byte) => byte < 0x80)).toBe(true);
  });

  it('writes a raw UTF-8 display name as encoded words and keeps the address', async () => {
    const parsed = await simpleParser(normalised(RAW_UTF8_SUBJECT));

    expect(parsed.from?.value).toEqual([{ name: 'Jürgen Groß', address: 'juergen@contoso.com' }]);
  });

  it('reads a raw Windows-1252 subject as such before encoding it', async () => {
    const bytes = Buffer.from(
      'From: a@contoso.com\r\nSubject: Caf\xe9 \x93quoted\x94\r\n\r\nhi\r\n',
      'latin1',
    );

    expect((await simpleParser(normalised(bytes))).subject).toBe('Café “quoted”');
  });

  it('keeps a UTF-8 local part as it is (SMTPUTF8) while encoding the display name', () => {
    const bytes = crlf('From: José <josé@contoso.com>', 'Subject: x', '', 'hi', '');

    expect(firstHeader(normalise(bytes).mime, 'from')).toBe('=?UTF-8?Q?Jos=C3=A9?= <josé@contoso.com>');
  });

  it('writes an international domain in punycode', () => {
    const bytes = crlf('From: a@contoso.com', 'To: Jörg <joerg@bücher.de>', '', 'hi', '');

    expect(firstHeader(normalise(bytes).mime, 'to')).toBe('=?UTF-8?Q?J=C3=B6rg?= <joerg@xn--bcher-kva.de>');
  });

  it('re-encodes a non-ASCII attachment file name with RFC 2231', async () => {
    const bytes = crlf(
      'From: a@contoso.com',
      'MIME-Version: 1.0',
      'Content-Type: multipart/mixed; boundary="b"',
      '',
      '--b',
      'Content-Type: application/pdf',
      'Content-Disposition: attachment; filename="Übersicht.pdf"',
      'Content-Transfer-Encoding: base64',
      '',
      ...base64Lines(PDF),
      '--b--',
      '',
    );

    const out = normalised(bytes);

    expect(out.every((byte) => byte < 0x80)).toBe(true);
    expect((await simpleParser(out)).attachments[0]?.filename).toBe('Übersicht.pdf');
  });

  describe('a multipart/alternative with a 5000-character line in each part', () => {
    it('re-encodes both parts as quoted-printable with no line over 998 octets', () => {
      const { mime, changes } = normalise(LONG_LINES);

      expect(changes).toEqual(['part 1: quoted-printable', 'part 2: quoted-printable']);
      expect(longestLine(serializeRawMime(mime))).toBeLessThanOrEqual(998);
    });

    it('reads as the same text and HTML', async () => {
      const parsed = await simpleParser(normalised(LONG_LINES));

      expect(parsed.text).toBe(LONG_TEXT);
      expect(parsed.html).toBe(LONG_HTML);
    });
  });

  describe('a multipart/mixed invitation with a long HTML line', () => {
    const partBytes = (...lines: string[]) => crlf(...lines);
    const pdfPart = partBytes(
      'Content-Type: application/pdf; name="agenda.pdf"',
      'Content-Transfer-Encoding: base64',
      'Content-Disposition: attachment;',
      '\tfilename="agenda.pdf"',
      '',
      ...base64Lines(PDF),
    );
    const imagePart = partBytes(
      'Content-Type: image/png',
      'Content-Transfer-Encoding: base64',
      'Content-ID:<logo@contoso.com>',
      'Content-Disposition: inline; filename="logo.png"',
      '',
      ...base64Lines(PNG),
    );
    const calendarPart = partBytes(
      'Content-Type: text/calendar; method=REQUEST; charset=utf-8',
      'Content-Transfer-Encoding: 7bit',
      '',
      ...CALENDAR,
      '',
    );
    const textPart = partBytes(
      'Content-Type: text/plain; charset=us-ascii',
      'Content-Transfer-Encoding: 7bit',
      '',
      'Please find the agenda attached.',
      '',
    );

    it('re-encodes only the HTML part', () => {
      expect(normalise(INVITATION).changes).toEqual(['part 1.2.1: quoted-printable', 'Date: added']);
    });

    it.each([
      ['PDF', pdfPart],
      ['inline image', imagePart],
      ['calendar', calendarPart],
      ['plain text', textPart],
    ])('keeps the %s part byte for byte between its delimiters', (_, part) => {
      const out = normalised(INVITATION);

      expect(out.includes(Buffer.concat([Buffer.from('\r\n'), part, Buffer.from('\r\n--')]))).toBe(true);
    });

    it('keeps the preamble and the epilogue', () => {
      const out = normalised(INVITATION).toString();

      expect(out).toContain('\r\n\r\nThis is a multi-part message in MIME format.\r\n--mixed-1\r\n');
      expect(out.endsWith('\r\n--mixed-1--\r\nEpilogue kept as it came.\r\n')).toBe(true);
    });

    it('reads as the same subject, text, HTML and attachments', async () => {
      const before = await simpleParser(INVITATION);
      const after = await simpleParser(normalised(INVITATION));

      expect(after.subject).toBe(before.subject);
      expect(after.text).toBe(before.text);
      expect(after.html).toBe(before.html);
      expect(after.attachments.map((attachment) => attachment.content)).toEqual(
        before.attachments.map((attachment) => attachment.content),
      );
    });

    it('keeps the inline image with its Content-ID and the calendar request', async () => {
      const { attachments } = await simpleParser(normalised(INVITATION));

      const image = attachments.find((attachment) => attachment.contentType === 'image/png');
      const calendar = attachments.find((attachment) => attachment.contentType === 'text/calendar');
      expect(image?.cid).toBe('logo@contoso.com');
      expect(image?.content.equals(PNG)).toBe(true);
      expect(calendar?.content.toString()).toBe(`${CALENDAR.join('\r\n')}\r\n`);
      expect(calendar?.headers.get('content-type')).toMatchObject({ params: { method: 'REQUEST' } });
    });
  });

  it('encodes a non-text leaf with 8-bit bytes as base64', async () => {
    const bytes = Buffer.concat([
      crlf(
        'From: a@contoso.com',
        'MIME-Version: 1.0',
        'Content-Type: multipart/mixed; boundary="b"',
        '',
        '--b',
      ),
      crlf('', 'Content-Type: application/octet-stream', 'Content-Transfer-Encoding: binary', '', ''),
      Buffer.from([0xde, 0xad, 0xbe, 0xef, 0x00, 0xff]),
      crlf('', '--b--', ''),
    ]);

    const { mime, changes } = normalise(bytes);

    expect(changes).toContain('part 1: base64');
    const parsed = await simpleParser(serializeRawMime(mime));
    expect(parsed.attachments[0]?.content).toEqual(Buffer.from([0xde, 0xad, 0xbe, 0xef, 0x00, 0xff]));
  });

  it('rewraps a base64 attachment written as one long line', async () => {
    const big = Buffer.alloc(3000, 7);
    const bytes = crlf(
      'From: a@contoso.com',
      'MIME-Version: 1.0',
      'Content-Type: application/octet-stream',
      'Content-Transfer-Encoding: base64',
      '',
      big.toString('base64'),
    );

    const out = normalised(bytes);

    expect(longestLine(out)).toBeLessThanOrEqual(998);
    expect((await simpleParser(out)).attachments[0]?.content.equals(big)).toBe(true);
  });

  it('adds a missing Date in RFC 5322 form', () => {
    const bytes = crlf('From: a@contoso.com', 'Subject: no date', '', 'hi', '');

    expect(firstHeader(normalise(bytes).mime, 'date')).toBe('Tue, 14 May 2024 09:05:00 +0000');
  });

  it('keeps an existing Date', () => {
    const bytes = crlf('Date: Mon, 1 Jan 2024 00:00:00 +0100', 'From: a@contoso.com', '', 'hi');

    expect(firstHeader(normalise(bytes).mime, 'date')).toBe('Mon, 1 Jan 2024 00:00:00 +0100');
  });

  it('adds no Message-ID', () => {
    expect(firstHeader(normalise(LATIN1_SCANNER).mime, 'message-id')).toBeUndefined();
  });

  describe('a printer From', () => {
    const fromAfter = (from: string) =>
      firstHeader(normalise(crlf(`From: ${from}`, '', 'scan')).mime, 'from');

    it('loses a quoted display name that is the address itself', () => {
      expect(fromAfter('"scan@contoso.com" <scan@contoso.com>')).toBe('scan@contoso.com');
    });

    it('loses an unquoted display name that is the address itself', () => {
      expect(fromAfter('scan@contoso.com <scan@contoso.com>')).toBe('scan@contoso.com');
    });

    it('loses a display name that is the address in another case', () => {
      expect(fromAfter('"SCAN@Contoso.com" <scan@contoso.com>')).toBe('scan@contoso.com');
    });

    it('gets " at " for the @ of a display name that is another address', () => {
      expect(fromAfter('"scan@printer" <scan@contoso.com>')).toBe('scan at printer <scan@contoso.com>');
    });

    it('gets " at " for an @ inside an encoded display name', () => {
      expect(fromAfter('=?utf-8?Q?Dr=C3=BCcker_scan=40floor2?= <scan@contoso.com>')).toBe(
        '=?UTF-8?Q?Dr=C3=BCcker_scan_at_floor2?= <scan@contoso.com>',
      );
    });

    it('is reported without its content', () => {
      expect(
        normalise(crlf('From: "scan@printer" <scan@contoso.com>', 'Date: x', '', 'scan')).changes,
      ).toEqual(['From: display name with @']);
    });
  });

  it('keeps a From whose display name has no @', () => {
    const bytes = crlf('From: "Contoso, Sales" <sales@contoso.com>', '', 'hi');

    expect(firstHeader(normalise(bytes).mime, 'from')).toBe('"Contoso, Sales" <sales@contoso.com>');
  });

  it.each([
    ['bare LF', Buffer.from(CLEAN.toString().replaceAll('\r\n', '\n'))],
    ['Latin-1 scanner', LATIN1_SCANNER],
    ['raw UTF-8 subject', RAW_UTF8_SUBJECT],
    ['long lines', LONG_LINES],
    ['invitation', INVITATION],
    ['printer From', crlf('From: "scan@printer" <scan@contoso.com>', '', 'scan')],
    ['unbreakable subject', crlf(`Subject: ${'y'.repeat(3000)}`, 'From: a@contoso.com', '', 'hi')],
  ])('changes nothing when run again on its own output (%s)', (_, bytes) => {
    const once = normalised(bytes);

    const twice = normaliseMime(once, { now: new Date('2030-01-01T00:00:00Z') });

    expect(twice.changes).toEqual([]);
    expect(serializeRawMime(twice.mime).equals(once)).toBe(true);
  });
});
