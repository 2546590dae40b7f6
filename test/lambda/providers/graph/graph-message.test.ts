import { describe, expect, it } from 'vitest';
import { type ComposedOutbound, inlineAttachments } from '../../../../lambda/core/attachments.ts';
import { type ComposedMessage, defaultMessageSchema, parseMessage } from '../../../../lambda/core/message.ts';
import { toGraphMessage } from '../../../../lambda/providers/graph/graph-message.ts';

function outbound(fields: Record<string, unknown>): ComposedOutbound {
  const parsed = parseMessage(JSON.stringify({ v: 1, subject: 'Report', ...fields }), defaultMessageSchema);
  if (!parsed.ok) throw new Error(parsed.problems.join('; '));
  return inlineAttachments(parsed.message as ComposedMessage);
}

describe('toGraphMessage', () => {
  it('maps every addressing field, names included, and the subject', () => {
    const graph = toGraphMessage(
      outbound({
        from: '"Billing, Contoso" <billing@contoso.com>',
        to: ['Ana <ana@example.org>', 'bob@example.org'],
        cc: 'carol@example.org',
        bcc: [{ name: 'Audit', address: 'audit@example.org' }],
        replyTo: 'support@contoso.com',
        text: 'hello',
      }),
    );
    expect(graph).toMatchObject({
      subject: 'Report',
      from: { emailAddress: { address: 'billing@contoso.com', name: 'Billing, Contoso' } },
      toRecipients: [
        { emailAddress: { address: 'ana@example.org', name: 'Ana' } },
        { emailAddress: { address: 'bob@example.org' } },
      ],
      ccRecipients: [{ emailAddress: { address: 'carol@example.org' } }],
      bccRecipients: [{ emailAddress: { address: 'audit@example.org', name: 'Audit' } }],
      replyTo: [{ emailAddress: { address: 'support@contoso.com' } }],
    });
    expect(graph.toRecipients[1]?.emailAddress).not.toHaveProperty('name');
  });

  it('sends HTML when there is HTML, text otherwise', () => {
    expect(toGraphMessage(outbound({ from: 'a@contoso.com', to: 'b@example.org', text: 't' })).body).toEqual({
      contentType: 'Text',
      content: 't',
    });
    expect(
      toGraphMessage(outbound({ from: 'a@contoso.com', to: 'b@example.org', text: 't', html: '<p>h</p>' }))
        .body,
    ).toEqual({ contentType: 'HTML', content: '<p>h</p>' });
  });

  it('carries X- headers as internetMessageHeaders and omits the field when there are none', () => {
    const withHeaders = toGraphMessage(
      outbound({ from: 'a@contoso.com', to: 'b@example.org', text: 't', headers: { 'X-Ticket': '42' } }),
    );
    expect(withHeaders.internetMessageHeaders).toEqual([{ name: 'X-Ticket', value: '42' }]);
    expect(
      toGraphMessage(outbound({ from: 'a@contoso.com', to: 'b@example.org', text: 't' })),
    ).not.toHaveProperty('internetMessageHeaders');
  });

  it('maps attachments as fileAttachments, inline ones with their contentId', () => {
    const pdf = Buffer.from('%PDF-1.7 bytes');
    const png = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0, 255]);
    const graph = toGraphMessage(
      outbound({
        from: 'a@contoso.com',
        to: 'b@example.org',
        html: '<img src="cid:logo">',
        attachments: [
          { filename: 'invoice.pdf', contentType: 'application/pdf', content: pdf.toString('base64') },
          {
            filename: 'logo.png',
            contentType: 'image/png',
            content: png.toString('base64'),
            contentId: 'logo',
          },
        ],
      }),
    );
    expect(graph.attachments).toEqual([
      {
        '@odata.type': '#microsoft.graph.fileAttachment',
        name: 'invoice.pdf',
        contentType: 'application/pdf',
        contentBytes: pdf.toString('base64'),
        isInline: false,
      },
      {
        '@odata.type': '#microsoft.graph.fileAttachment',
        name: 'logo.png',
        contentType: 'image/png',
        contentBytes: png.toString('base64'),
        isInline: true,
        contentId: 'logo',
      },
    ]);
  });

  it('leaves attachments out when asked to (the draft path adds them separately)', () => {
    const message = outbound({
      from: 'a@contoso.com',
      to: 'b@example.org',
      text: 't',
      attachments: [{ filename: 'a.txt', content: Buffer.from('a').toString('base64') }],
    });
    expect(toGraphMessage(message, [])).not.toHaveProperty('attachments');
  });
});
