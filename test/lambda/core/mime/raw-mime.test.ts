import { simpleParser } from 'mailparser';
import { describe, expect, it } from 'vitest';
import {
  firstHeader,
  headerValues,
  parseRawMime,
  type RawMime,
  serializeRawMime,
  withHeader,
  withoutHeaders,
} from '../../../../lambda/core/mime/raw-mime.ts';
import { CLEAN, crlf } from './fixtures.ts';

const lines = (bytes: Buffer) => bytes.toString('latin1').split('\r\n');
const message = (headers: [string, string][], body = ''): RawMime => ({
  headers: headers.map(([name, value]) => ({ name, value })),
  body: Buffer.from(body),
});

describe('parseRawMime', () => {
  it('unfolds a folded value by removing the line breaks and keeping the whitespace', () => {
    const mime = parseRawMime(crlf('Subject: first', '\tsecond', '  third', '', 'body'));

    expect(mime.headers).toEqual([{ name: 'Subject', value: 'first\tsecond  third' }]);
  });

  it('keeps encoded words as they are', () => {
    const mime = parseRawMime(crlf('Subject: =?utf-8?Q?Gr=C3=BC=C3=9Fe?=', '', ''));

    expect(firstHeader(mime, 'subject')).toBe('=?utf-8?Q?Gr=C3=BC=C3=9Fe?=');
  });

  it('splits header and body at the first blank line', () => {
    const mime = parseRawMime(crlf('From: a@contoso.com', '', 'To: not-a-header@example.com', ''));

    expect(mime.headers).toEqual([{ name: 'From', value: 'a@contoso.com' }]);
    expect(mime.body.toString()).toBe('To: not-a-header@example.com\r\n');
  });

  it('turns bare LF line endings into CRLF in headers and body', () => {
    const mime = parseRawMime(Buffer.from('Subject: a\n b\nFrom: x@contoso.com\n\none\ntwo\n'));

    expect(mime.headers).toEqual([
      { name: 'Subject', value: 'a b' },
      { name: 'From', value: 'x@contoso.com' },
    ]);
    expect(mime.body.toString()).toBe('one\r\ntwo\r\n');
  });

  it('turns bare CR line endings into CRLF', () => {
    const mime = parseRawMime(Buffer.from('Subject: a\r\rone\rtwo\r\n'));

    expect(mime.headers).toEqual([{ name: 'Subject', value: 'a' }]);
    expect(mime.body.toString()).toBe('one\r\ntwo\r\n');
  });

  it('reads a message without a blank line as header fields only', () => {
    const mime = parseRawMime(Buffer.from('From: a@contoso.com\r\nSubject: hi'));

    expect(mime.headers.map((field) => field.name)).toEqual(['From', 'Subject']);
    expect(mime.body.length).toBe(0);
  });

  it('reads a message whose first line is not a header field as body only', () => {
    const mime = parseRawMime(Buffer.from('Hello there\r\nSecond line\r\n'));

    expect(mime.headers).toEqual([]);
    expect(mime.body.toString()).toBe('Hello there\r\nSecond line\r\n');
  });

  it('starts the body at the first line that is not a header field', () => {
    const mime = parseRawMime(Buffer.from('From: a@contoso.com\r\nSubject: hi\r\nHello there\r\n'));

    expect(mime.headers.map((field) => field.name)).toEqual(['From', 'Subject']);
    expect(mime.body.toString()).toBe('Hello there\r\n');
  });

  it('reads raw UTF-8 header bytes as UTF-8', () => {
    const mime = parseRawMime(Buffer.from('Subject: Grüße aus Köln\r\n\r\n', 'utf8'));

    expect(firstHeader(mime, 'subject')).toBe('Grüße aus Köln');
  });

  it('reads header bytes that are not UTF-8 as Windows-1252', () => {
    const mime = parseRawMime(Buffer.from('Subject: Caf\xe9 \x80 5\r\n\r\n', 'latin1'));

    expect(firstHeader(mime, 'subject')).toBe('Café € 5');
  });
});

describe('serializeRawMime', () => {
  it('writes a parsed message with short unfolded lines back byte for byte', () => {
    expect(serializeRawMime(parseRawMime(CLEAN)).equals(CLEAN)).toBe(true);
  });

  it('folds a line longer than 78 characters at whitespace', () => {
    const subject = Array.from({ length: 20 }, (_, index) => `word${index}`).join(' ');

    const out = lines(serializeRawMime(message([['Subject', subject]])));

    expect(out.slice(0, 2)).toEqual([
      'Subject: word0 word1 word2 word3 word4 word5 word6 word7 word8 word9 word10',
      ' word11 word12 word13 word14 word15 word16 word17 word18 word19',
    ]);
  });

  it('folds so that parsing again gives the same value', () => {
    const to = Array.from({ length: 40 }, (_, index) => `"Person ${index}" <p${index}@fabrikam.com>`).join(
      ', ',
    );

    const again = parseRawMime(serializeRawMime(message([['To', to]])));

    expect(firstHeader(again, 'to')).toBe(to);
  });

  it('keeps an address list without spaces under 998 octets a line by folding after its commas', async () => {
    const to = Array.from({ length: 200 }, (_, index) => `person${index}@fabrikam.com`).join(',');

    const bytes = serializeRawMime(message([['To', to]]));

    expect(Math.max(...lines(bytes).map((line) => line.length))).toBeLessThanOrEqual(998);
    const parsed = await simpleParser(bytes);
    const addresses = [parsed.to].flat().flatMap((field) => field?.value.map((entry) => entry.address));
    expect(addresses).toEqual(to.split(','));
  });

  it('writes an unbreakable subject as encoded words that decode to the same text', async () => {
    const subject = `Invoice-${'x'.repeat(2500)}`;

    const bytes = serializeRawMime(message([['Subject', subject]]));

    expect(Math.max(...lines(bytes).map((line) => line.length))).toBeLessThanOrEqual(998);
    expect((await simpleParser(bytes)).subject).toBe(subject);
  });

  it('never writes a line break that code put inside a value', () => {
    const bytes = serializeRawMime(message([['X-Note', 'a\r\nBcc: evil@example.com']]));

    expect(lines(bytes)).toEqual(['X-Note: a Bcc: evil@example.com', '', '']);
  });

  it('writes a blank line before the body', () => {
    expect(serializeRawMime(message([['Subject', 'hi']], 'text\r\n')).toString()).toBe(
      'Subject: hi\r\n\r\ntext\r\n',
    );
  });
});

describe('header helpers', () => {
  const mime = message([
    ['Received', 'one'],
    ['To', 'a@contoso.com'],
    ['received', 'two'],
  ]);

  it('finds every value of a field whatever the case of its name', () => {
    expect(headerValues(mime, 'RECEIVED')).toEqual(['one', 'two']);
  });

  it('finds no first value for a field that is absent', () => {
    expect(firstHeader(mime, 'Subject')).toBeUndefined();
  });

  it('replaces every field of a name with one field where the first was', () => {
    expect(withHeader(mime, 'Received', 'only').headers).toEqual([
      { name: 'Received', value: 'only' },
      { name: 'To', value: 'a@contoso.com' },
    ]);
  });

  it('adds a field at the top when there is none of that name', () => {
    expect(withHeader(mime, 'Subject', 'hi').headers[0]).toEqual({ name: 'Subject', value: 'hi' });
  });

  it('refuses a value with a line break', () => {
    expect(() => withHeader(mime, 'Subject', 'hi\r\nBcc: evil@example.com')).toThrow(
      'the value for header Subject must not contain CR or LF characters (header injection)',
    );
  });

  it('refuses a field name with a colon or a space', () => {
    expect(() => withHeader(mime, 'Bcc: x', 'y')).toThrow('"Bcc: x" is not a valid header field name');
  });

  it('removes every field of the given names whatever their case', () => {
    expect(withoutHeaders(mime, 'RECEIVED').headers).toEqual([{ name: 'To', value: 'a@contoso.com' }]);
  });
});
