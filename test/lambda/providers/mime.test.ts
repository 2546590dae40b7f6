import { randomBytes } from 'node:crypto';
import { type AddressObject, type ParsedMail, simpleParser } from 'mailparser';
import { describe, expect, it } from 'vitest';
import { type ComposedOutbound, inlineAttachments } from '../../../lambda/core/attachments.ts';
import { type ComposedMessage, defaultMessageSchema, parseMessage } from '../../../lambda/core/message.ts';
import { parseRawMime } from '../../../lambda/core/mime/raw-mime.ts';
import { composeMime, renderRawMime } from '../../../lambda/providers/mime.ts';

function contractMessage(input: Record<string, unknown>): ComposedOutbound {
  const result = parseMessage(JSON.stringify({ v: 1, ...input }), defaultMessageSchema);
  if (!result.ok) throw new Error(`test input is not contract-valid: ${result.problems.join('; ')}`);
  return inlineAttachments(result.message as ComposedMessage);
}

async function composeAndParse(input: Record<string, unknown>): Promise<{ raw: string; mail: ParsedMail }> {
  const mime = await composeMime(contractMessage(input));
  return { raw: mime.toString('latin1'), mail: await simpleParser(mime) };
}

/** Name/address pairs of a parsed address header, whichever shape mailparser returns. */
function mailboxes(
  header: AddressObject | AddressObject[] | undefined,
): { name: string; address?: string }[] {
  const objects = header === undefined ? [] : Array.isArray(header) ? header : [header];
  return objects.flatMap((object) => object.value.map(({ name, address }) => ({ name, address })));
}

/** The header block of a raw message: everything before the first empty line. */
function headerBlock(raw: string): string {
  const end = raw.indexOf('\r\n\r\n');
  if (end < 0) throw new Error('the message has no header/body separator');
  return raw.slice(0, end);
}

const basic = {
  from: 'sender@example.com',
  to: 'rcpt@example.com',
  subject: 'Hello',
  text: 'Hi',
};

describe('composeMime', () => {
  it('writes from, to, cc and replyTo with their display names', async () => {
    const { mail } = await composeAndParse({
      ...basic,
      from: 'Ana Pérez <ana@example.com>',
      to: ['"Doe, Jane" <jane@example.com>', 'bo@example.com'],
      cc: { name: 'Cy Q', address: 'cy@example.com' },
      replyTo: 'Support <support@example.com>',
    });
    expect(mailboxes(mail.from)).toEqual([{ name: 'Ana Pérez', address: 'ana@example.com' }]);
    expect(mailboxes(mail.to)).toEqual([
      { name: 'Doe, Jane', address: 'jane@example.com' },
      { name: '', address: 'bo@example.com' },
    ]);
    expect(mailboxes(mail.cc)).toEqual([{ name: 'Cy Q', address: 'cy@example.com' }]);
    expect(mailboxes(mail.replyTo)).toEqual([{ name: 'Support', address: 'support@example.com' }]);
  });

  it('encodes a non-ASCII subject so it decodes back unchanged', async () => {
    const subject = 'Factura nº 42 – señal';
    const { raw, mail } = await composeAndParse({ ...basic, subject });
    expect(mail.subject).toBe(subject);
    expect(headerBlock(raw)).toMatch(/^[\x20-\x7e\r\n\t]*$/);
  });

  it('includes both the text and the html body', async () => {
    const { mail } = await composeAndParse({
      ...basic,
      text: 'Plain señal',
      html: '<p>Rich <b>señal</b></p>',
    });
    expect(mail.text?.trim()).toBe('Plain señal');
    expect(mail.html).toBe('<p>Rich <b>señal</b></p>');
  });

  it('includes the custom X- headers', async () => {
    const { mail } = await composeAndParse({
      ...basic,
      headers: { 'X-Tenant': 'acme', 'X-Request-Id': 'req-7' },
    });
    expect(mail.headers.get('x-tenant')).toBe('acme');
    expect(mail.headers.get('x-request-id')).toBe('req-7');
  });

  it('leaves out the Bcc header and never mentions Bcc recipients', async () => {
    const { raw, mail } = await composeAndParse({
      ...basic,
      bcc: ['Hidden Person <hidden@example.com>', 'secret@example.org'],
    });
    expect(mail.bcc).toBeUndefined();
    expect(mail.headers.has('bcc')).toBe(false);
    expect(headerBlock(raw)).not.toMatch(/^bcc:/im);
    expect(raw).not.toContain('hidden@example.com');
    expect(raw).not.toContain('secret@example.org');
  });

  it('keeps attachment bytes identical and the content type', async () => {
    const bytes = randomBytes(5000);
    const { mail } = await composeAndParse({
      ...basic,
      attachments: [
        { filename: 'data.bin', contentType: 'application/x-custom', content: bytes.toString('base64') },
      ],
    });
    expect(mail.attachments).toHaveLength(1);
    const [attachment] = mail.attachments;
    expect(attachment?.filename).toBe('data.bin');
    expect(attachment?.contentType).toBe('application/x-custom');
    expect(attachment?.contentDisposition).toBe('attachment');
    expect(Buffer.compare(attachment?.content ?? Buffer.alloc(0), bytes)).toBe(0);
  });

  it('uses application/octet-stream for an attachment given without a content type', async () => {
    const { mail } = await composeAndParse({
      ...basic,
      attachments: [{ filename: 'blob', content: randomBytes(10).toString('base64') }],
    });
    expect(mail.attachments[0]?.contentType).toBe('application/octet-stream');
  });

  it('makes an attachment with a contentId an inline related part with that cid', async () => {
    const image = randomBytes(300);
    const { mail } = await composeAndParse({
      ...basic,
      html: '<p><img src="cid:logo@example.com"></p>',
      attachments: [
        {
          filename: 'logo.png',
          contentType: 'image/png',
          content: image.toString('base64'),
          contentId: 'logo@example.com',
        },
      ],
    });
    const [logo] = mail.attachments;
    expect(logo?.cid).toBe('logo@example.com');
    expect(logo?.contentId).toBe('<logo@example.com>');
    expect(logo?.related).toBe(true);
    expect(logo?.contentDisposition).toBe('inline');
    expect(logo?.contentType).toBe('image/png');
    expect(Buffer.compare(logo?.content ?? Buffer.alloc(0), image)).toBe(0);
  });
});

describe('renderRawMime', () => {
  const submitted = parseRawMime(
    Buffer.from(
      [
        'From: Sales <sales@crm.example.com>',
        'To: ana@example.org',
        'Bcc: boss@example.org',
        'X-Mail-Relay-Idempotency-Key: someone-elses-key',
        'X-Mail-Relay-Message-Id: forged',
        'Subject: Invoice 42',
        '',
        'See attached.',
        '',
      ].join('\r\n'),
    ),
  );
  const raw = {
    from: { name: 'Sales', address: 'sales@crm.example.com' },
    recipients: [{ address: 'ana@example.org' }, { address: 'boss@example.org' }],
    mime: submitted,
    headers: { 'X-Mail-Relay-Message-Id': 'sqs-1' },
  };

  it('drops trace headers the client wrote, so feedback cannot be tied to another message, and sets its own', async () => {
    const rendered = (
      await renderRawMime(raw, { messageId: '<m-1@crm.example.com>', recipients: 'envelope' })
    ).toString();

    expect(rendered).not.toContain('someone-elses-key');
    expect(rendered).not.toContain('forged');
    expect(rendered).toContain('X-Mail-Relay-Message-Id: sqs-1');
  });

  it('leaves Bcc out for envelope providers and adds the Message-ID the message lacked', async () => {
    const rendered = (
      await renderRawMime(raw, { messageId: '<m-1@crm.example.com>', recipients: 'envelope' })
    ).toString();

    expect(rendered).not.toMatch(/^Bcc:/im);
    expect(rendered).toContain('Message-ID: <m-1@crm.example.com>');
  });

  it('rewrites the From and sets Reply-To to the original sender when the route rewrote it', async () => {
    const rendered = await renderRawMime(
      {
        ...raw,
        from: { name: 'Sales via Fabrikam CRM', address: 'facturas@fabrikam.com' },
        rewrittenFrom: { replyTo: [{ name: 'Sales', address: 'sales@crm.example.com' }] },
      },
      { messageId: '<m-1@crm.example.com>', recipients: 'envelope' },
    );
    const parsed = await simpleParser(rendered);

    expect(parsed.from?.value).toEqual([
      { name: 'Sales via Fabrikam CRM', address: 'facturas@fabrikam.com' },
    ]);
    expect(parsed.replyTo?.value).toEqual([{ name: 'Sales', address: 'sales@crm.example.com' }]);
  });
});
