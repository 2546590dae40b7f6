import MailComposer from 'nodemailer/lib/mail-composer';
import type Mail from 'nodemailer/lib/mailer';
import { describe, expect, it } from 'vitest';
import type { Mailbox } from '../../../../lambda/core/address.ts';
import type { ComposedOutbound } from '../../../../lambda/core/attachments.ts';
import { composedFromMime } from '../../../../lambda/providers/graph/mime-conversion.ts';

const FROM: Mailbox = { name: 'Billing', address: 'billing@contoso.com' };
const PDF = Buffer.concat([
  Buffer.from('%PDF-1.7\n'),
  Buffer.from(Array.from({ length: 4096 }, (_, i) => i % 256)),
]);
const LOGO = Buffer.from(Array.from({ length: 2048 }, (_, i) => (i * 7) % 256));
const INVITE = [
  'BEGIN:VCALENDAR',
  'METHOD:REQUEST',
  'PRODID:-//Contoso//Relay test//EN',
  'VERSION:2.0',
  'BEGIN:VEVENT',
  'UID:42@contoso.com',
  'DTSTART:20260301T100000Z',
  'DTEND:20260301T110000Z',
  'SUMMARY:Invoice review',
  'END:VEVENT',
  'END:VCALENDAR',
  '',
].join('\r\n');

/** Real MIME, as an application's mailer writes it. */
function mime(options: Partial<Mail.Options> = {}): Promise<Buffer> {
  return new MailComposer({
    from: 'Billing <billing@contoso.com>',
    to: 'Ana <ana@example.org>',
    subject: 'Invoice 42',
    text: 'See attached.',
    ...options,
  })
    .compile()
    .build();
}

const convert = async (
  options: Partial<Mail.Options>,
  recipients: Mailbox[] = [{ address: 'ana@example.org' }],
) => composedFromMime(await mime(options), { from: FROM, recipients });

const attachmentNamed = (message: ComposedOutbound, filename: string) =>
  message.attachments?.find((attachment) => attachment.filename === filename);

describe('composedFromMime', () => {
  it('keeps a PDF attachment byte for byte, with its name and type', async () => {
    const message = await convert({ attachments: [{ filename: 'invoice.pdf', content: PDF }] });

    const pdf = attachmentNamed(message, 'invoice.pdf');
    expect(pdf?.contentType).toBe('application/pdf');
    expect(pdf?.contentId).toBeUndefined();
    expect(pdf?.content.equals(PDF)).toBe(true);
  });

  it('keeps an inline image of multipart/related as an inline attachment with its Content-ID', async () => {
    const message = await convert({
      html: '<p>Invoice <img src="cid:logo@contoso.com"></p>',
      attachments: [{ filename: 'logo.png', content: LOGO, cid: 'logo@contoso.com' }],
    });

    const logo = attachmentNamed(message, 'logo.png');
    expect(logo).toMatchObject({ contentType: 'image/png', contentId: 'logo@contoso.com' });
    expect(logo?.content.equals(LOGO)).toBe(true);
  });

  it('leaves the HTML referring to the inline image by cid:', async () => {
    const html = '<p>Invoice <img src="cid:logo@contoso.com"></p>';
    const message = await convert({
      html,
      attachments: [{ filename: 'logo.png', content: LOGO, cid: 'logo@contoso.com' }],
    });

    expect(message.html).toBe(html);
  });

  it('turns a text/calendar part into an invite.ics attachment of type text/calendar', async () => {
    const message = await convert({
      alternatives: [{ contentType: 'text/calendar; charset=utf-8; method=REQUEST', content: INVITE }],
    });

    const invite = attachmentNamed(message, 'invite.ics');
    expect(invite?.contentType).toBe('text/calendar');
    expect(invite?.content.equals(Buffer.from(INVITE))).toBe(true);
  });

  it("attaches nodemailer's icalEvent invite once, though the MIME carries it twice", async () => {
    const message = await convert({ icalEvent: { method: 'REQUEST', content: INVITE } });

    const invites = (message.attachments ?? []).filter((attachment) => attachment.filename === 'invite.ics');
    expect(invites).toHaveLength(1);
    expect(invites[0]?.content.equals(Buffer.from(INVITE))).toBe(true);
  });

  it('keeps the PDF, the inline image and the invite of one message, each byte-identical', async () => {
    const message = await convert({
      html: '<p>Invoice <img src="cid:logo@contoso.com"></p>',
      icalEvent: { method: 'REQUEST', content: INVITE },
      attachments: [
        { filename: 'invoice.pdf', content: PDF },
        { filename: 'logo.png', content: LOGO, cid: 'logo@contoso.com' },
      ],
    });

    expect(
      (message.attachments ?? []).map(({ filename, content }) => ({ filename, size: content.length })),
    ).toEqual(
      expect.arrayContaining([
        { filename: 'invoice.pdf', size: PDF.length },
        { filename: 'logo.png', size: LOGO.length },
        { filename: 'invite.ics', size: Buffer.byteLength(INVITE) },
      ]),
    );
    expect(message.attachments).toHaveLength(3);
    expect(attachmentNamed(message, 'invoice.pdf')?.content.equals(PDF)).toBe(true);
    expect(attachmentNamed(message, 'logo.png')?.content.equals(LOGO)).toBe(true);
    expect(attachmentNamed(message, 'invite.ics')?.content.equals(Buffer.from(INVITE))).toBe(true);
  });

  it('keeps an attached message as one attachment, byte for byte, not as its parts', async () => {
    const forwarded = await mime({
      from: 'x@example.org',
      subject: 'Original',
      text: 'Original text',
      attachments: [{ filename: 'original.pdf', content: PDF }],
    });
    const message = await convert({
      text: 'Forwarding.',
      attachments: [{ filename: 'original.eml', contentType: 'message/rfc822', content: forwarded }],
    });

    expect(message.attachments?.map(({ filename, contentType }) => ({ filename, contentType }))).toEqual([
      { filename: 'original.eml', contentType: 'message/rfc822' },
    ]);
    expect(attachmentNamed(message, 'original.eml')?.content.equals(forwarded)).toBe(true);
    expect(message.text?.trim()).toBe('Forwarding.');
  });

  it('takes the subject, both bodies and the Reply-To from the MIME', async () => {
    const message = await convert({
      subject: 'Factura nº 42 – señal',
      text: 'Plain señal',
      html: '<p>Rich <b>señal</b></p>',
      replyTo: 'Support <support@contoso.com>',
    });

    expect(message).toMatchObject({
      subject: 'Factura nº 42 – señal',
      html: '<p>Rich <b>señal</b></p>',
      replyTo: [{ name: 'Support', address: 'support@contoso.com' }],
    });
    expect(message.text?.trim()).toBe('Plain señal');
  });

  it('keeps the X- headers and drops the others, which Graph does not accept', async () => {
    const message = await convert({
      headers: { 'X-Tenant': 'acme', 'X-Invoice': '42', 'In-Reply-To': '<earlier@example.org>' },
      list: { unsubscribe: 'https://contoso.com/unsubscribe' },
    });

    expect(message.headers).toEqual({ 'X-Tenant': 'acme', 'X-Invoice': '42' });
  });

  it('sends as the given From, not as the MIME From header', async () => {
    const message = await convert({ from: 'Someone <someone@example.org>' });

    expect(message.from).toEqual(FROM);
  });

  it('addresses To and Cc as the headers show them, only for envelope recipients', async () => {
    const message = await convert(
      {
        to: ['Ana <ana@example.org>', 'gone@example.org'],
        cc: ['Bo <bo@example.org>', 'also-gone@example.org'],
      },
      [{ address: 'ana@example.org' }, { address: 'BO@example.org' }],
    );

    expect(message.to).toEqual([{ name: 'Ana', address: 'ana@example.org' }]);
    expect(message.cc).toEqual([{ name: 'Bo', address: 'bo@example.org' }]);
    expect(message.bcc).toBeUndefined();
  });

  it('sends every envelope recipient the headers do not show as Bcc', async () => {
    const message = await convert({ to: 'ana@example.org' }, [
      { address: 'ana@example.org' },
      { name: 'Audit', address: 'audit@example.org' },
    ]);

    expect(message.to).toEqual([{ address: 'ana@example.org' }]);
    expect(message.bcc).toEqual([{ name: 'Audit', address: 'audit@example.org' }]);
  });
});
