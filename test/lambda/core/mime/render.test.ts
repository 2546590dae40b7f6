import { type AddressObject, simpleParser } from 'mailparser';
import { describe, expect, it } from 'vitest';
import type { Mailbox } from '../../../../lambda/core/address.ts';
import { parseRawMime, type RawMime, serializeRawMime } from '../../../../lambda/core/mime/raw-mime.ts';
import {
  prepareForRelay,
  renderForEnvelope,
  renderWithRecipientHeaders,
} from '../../../../lambda/core/mime/render.ts';
import { crlf, INVITATION } from './fixtures.ts';

const SUBMITTED = parseRawMime(
  crlf(
    'From: "scan at printer" <scan@contoso.com>',
    'To: Bo <bo@fabrikam.com>, cy@fabrikam.com',
    'Cc: dee@fabrikam.com',
    'Bcc: secret@fabrikam.com',
    'Subject: Scan',
    'Date: Tue, 14 May 2024 09:05:00 +0000',
    '',
    'scan attached',
    '',
  ),
);
const prepared = (mime: RawMime, options: Partial<Parameters<typeof prepareForRelay>[1]> = {}) =>
  prepareForRelay(mime, { messageId: '<relay-1@mail.contoso.com>', ...options });
const parse = (mime: RawMime) => simpleParser(serializeRawMime(mime));
const addresses = (field: AddressObject | AddressObject[] | undefined) =>
  [field ?? []].flat().flatMap((object) => object.value.map((entry) => entry.address));
const headerLines = (bytes: Buffer) => bytes.subarray(0, bytes.indexOf('\r\n\r\n')).toString().split('\r\n');

describe('prepareForRelay', () => {
  it('replaces From with the relay sender', async () => {
    const parsed = await parse(
      prepared(SUBMITTED, { from: { name: 'Contoso Scans', address: 'noreply@contoso.com' } }),
    );

    expect(parsed.from?.value).toEqual([{ name: 'Contoso Scans', address: 'noreply@contoso.com' }]);
  });

  it('drops the Sender of the From it replaces', async () => {
    const submitted = parseRawMime(crlf('From: a@contoso.com', 'Sender: printer@contoso.com', '', ''));

    const parsed = await parse(prepared(submitted, { from: { address: 'noreply@contoso.com' } }));

    expect(parsed.headers.has('sender')).toBe(false);
  });

  it('keeps the Sender when the From stays', async () => {
    const submitted = parseRawMime(crlf('From: a@contoso.com', 'Sender: printer@contoso.com', '', ''));

    expect((await parse(prepared(submitted))).headers.has('sender')).toBe(true);
  });

  it('writes a non-ASCII display name as encoded words', () => {
    const mime = prepared(SUBMITTED, { from: { name: 'Jürgen Groß', address: 'j@contoso.com' } });

    expect(mime.headers.find((field) => field.name === 'From')?.value).toBe(
      '=?UTF-8?Q?J=C3=BCrgen_Gro=C3=9F?= <j@contoso.com>',
    );
  });

  it('quotes a display name with a comma', async () => {
    const parsed = await parse(
      prepared(SUBMITTED, { from: { name: 'Contoso, Sales', address: 's@contoso.com' } }),
    );

    expect(parsed.from?.value).toEqual([{ name: 'Contoso, Sales', address: 's@contoso.com' }]);
  });

  it('cannot be made to add a header through a display name with a line break', () => {
    const from: Mailbox = { name: 'Evil\r\nBcc: victim@example.com', address: 'a@contoso.com' };

    const lines = headerLines(serializeRawMime(prepared(SUBMITTED, { from })));

    expect(lines.filter((line) => /^bcc:/i.test(line))).toEqual(['Bcc: secret@fabrikam.com']);
  });

  it('refuses an address with a line break', () => {
    expect(() => prepared(SUBMITTED, { from: { address: 'a@contoso.com>\r\nBcc: <v@example.com' } })).toThrow(
      'a relay-owned address must be a plain address (no spaces, brackets or line breaks)',
    );
  });

  it('writes a UTF-8 local part as it is', () => {
    const mime = prepared(SUBMITTED, { from: { address: 'josé@contoso.com' } });

    expect(mime.headers.find((field) => field.name === 'From')?.value).toBe('josé@contoso.com');
  });

  it('sets Reply-To when the message has none', async () => {
    const parsed = await parse(
      prepared(SUBMITTED, { replyTo: [{ name: 'Help', address: 'help@contoso.com' }] }),
    );

    expect(parsed.replyTo?.value).toEqual([{ name: 'Help', address: 'help@contoso.com' }]);
  });

  it('keeps the Reply-To the message has', async () => {
    const withReplyTo = prepared(
      parseRawMime(crlf('Reply-To: mine@fabrikam.com', 'From: a@contoso.com', '', '')),
      {
        replyTo: [{ address: 'help@contoso.com' }],
      },
    );

    expect(addresses((await parse(withReplyTo)).replyTo)).toEqual(['mine@fabrikam.com']);
  });

  it('replaces a header the relay owns', () => {
    const submitted = parseRawMime(crlf('X-MailRelay-Message-Id: forged', 'From: a@contoso.com', '', ''));

    const mime = prepared(submitted, { setHeaders: { 'X-MailRelay-Message-Id': 'm-42' } });

    expect(mime.headers.filter((field) => /^x-mailrelay-message-id$/i.test(field.name))).toEqual([
      { name: 'X-MailRelay-Message-Id', value: 'm-42' },
    ]);
  });

  it('writes a non-ASCII header value as encoded words', () => {
    const bytes = serializeRawMime(prepared(SUBMITTED, { setHeaders: { 'X-Tenant': 'Bäckerei Müller' } }));

    expect(headerLines(bytes)).toContain('X-Tenant: =?UTF-8?Q?B=C3=A4ckerei_M=C3=BCller?=');
  });

  it('refuses a header value with a line break', () => {
    expect(() => prepared(SUBMITTED, { setHeaders: { 'X-Trace': 'a\r\nBcc: v@example.com' } })).toThrow(
      'the value for header X-Trace must not contain CR or LF characters (header injection)',
    );
  });

  it('sets Message-ID when the message has none', async () => {
    expect((await parse(prepared(SUBMITTED))).messageId).toBe('<relay-1@mail.contoso.com>');
  });

  it('adds the angle brackets a Message-ID needs', async () => {
    expect((await parse(prepared(SUBMITTED, { messageId: 'relay-2@mail.contoso.com' }))).messageId).toBe(
      '<relay-2@mail.contoso.com>',
    );
  });

  it('keeps the Message-ID the message has', async () => {
    const submitted = parseRawMime(
      crlf('Message-ID: <app-7@crm.contoso.com>', 'From: a@contoso.com', '', ''),
    );

    expect((await parse(prepared(submitted))).messageId).toBe('<app-7@crm.contoso.com>');
  });

  it('refuses a Message-ID with a space', () => {
    expect(() => prepared(SUBMITTED, { messageId: '<a b@contoso.com>' })).toThrow(
      'messageId must be one id without spaces or line breaks, as in <id@example.com>',
    );
  });
});

describe('renderForEnvelope', () => {
  it('leaves Bcc out', async () => {
    const bytes = renderForEnvelope(SUBMITTED);

    expect(bytes.toString()).not.toMatch(/secret@fabrikam\.com/);
    expect((await simpleParser(bytes)).bcc).toBeUndefined();
  });

  it('keeps To and Cc as they are', async () => {
    const parsed = await simpleParser(renderForEnvelope(SUBMITTED));

    expect(addresses(parsed.to)).toEqual(['bo@fabrikam.com', 'cy@fabrikam.com']);
    expect(addresses(parsed.cc)).toEqual(['dee@fabrikam.com']);
  });

  it('keeps the body and attachments', async () => {
    const before = await simpleParser(INVITATION);
    const after = await simpleParser(renderForEnvelope(parseRawMime(INVITATION)));

    expect(after.html).toBe(before.html);
    expect(after.attachments.map((attachment) => attachment.content)).toEqual(
      before.attachments.map((attachment) => attachment.content),
    );
  });
});

describe('renderWithRecipientHeaders', () => {
  const render = async (mime: RawMime, recipients: Mailbox[]) =>
    simpleParser(renderWithRecipientHeaders(mime, recipients));

  it('keeps in To and Cc only the addresses that are recipients', async () => {
    const parsed = await render(SUBMITTED, [{ address: 'bo@fabrikam.com' }, { address: 'dee@fabrikam.com' }]);

    expect(addresses(parsed.to)).toEqual(['bo@fabrikam.com']);
    expect(addresses(parsed.cc)).toEqual(['dee@fabrikam.com']);
  });

  it('keeps the display names of the recipients it keeps', async () => {
    const parsed = await render(SUBMITTED, [{ address: 'bo@fabrikam.com' }]);

    expect(parsed.to).toMatchObject({ value: [{ name: 'Bo', address: 'bo@fabrikam.com' }] });
  });

  it('removes a field left with no recipient', async () => {
    const parsed = await render(SUBMITTED, [{ address: 'bo@fabrikam.com' }]);

    expect(parsed.cc).toBeUndefined();
  });

  it('lists in Bcc every recipient that is not in To or Cc, and no other', async () => {
    const parsed = await render(SUBMITTED, [
      { address: 'bo@fabrikam.com' },
      { address: 'secret@fabrikam.com' },
      { name: 'Extra', address: 'extra@northwind.com' },
    ]);

    expect(addresses(parsed.bcc)).toEqual(['secret@fabrikam.com', 'extra@northwind.com']);
  });

  it('addresses the message to exactly the recipients', async () => {
    const recipients = [{ address: 'cy@fabrikam.com' }, { address: 'extra@northwind.com' }];

    const parsed = await render(SUBMITTED, recipients);

    expect([...addresses(parsed.to), ...addresses(parsed.cc), ...addresses(parsed.bcc)].sort()).toEqual([
      'cy@fabrikam.com',
      'extra@northwind.com',
    ]);
  });

  it('matches recipients to header addresses whatever their case', async () => {
    const parsed = await render(SUBMITTED, [{ address: 'BO@Fabrikam.com' }]);

    expect(addresses(parsed.to)).toEqual(['bo@fabrikam.com']);
    expect(parsed.bcc).toBeUndefined();
  });

  it('writes no Bcc when every recipient is in To or Cc', async () => {
    const parsed = await render(SUBMITTED, [{ address: 'bo@fabrikam.com' }, { address: 'cy@fabrikam.com' }]);

    expect(parsed.bcc).toBeUndefined();
  });

  it('keeps the To field byte for byte when every address in it is a recipient', () => {
    const bytes = renderWithRecipientHeaders(SUBMITTED, [
      { address: 'bo@fabrikam.com' },
      { address: 'cy@fabrikam.com' },
    ]);

    expect(headerLines(bytes)).toContain('To: Bo <bo@fabrikam.com>, cy@fabrikam.com');
  });

  it('puts every recipient in Bcc for a message to undisclosed recipients', async () => {
    const submitted = parseRawMime(crlf('From: a@contoso.com', 'To: undisclosed-recipients:;', '', 'hi'));

    const parsed = await render(submitted, [{ address: 'bo@fabrikam.com' }]);

    expect(addresses(parsed.bcc)).toEqual(['bo@fabrikam.com']);
  });
});
