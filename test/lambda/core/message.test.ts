import { describe, expect, it } from 'vitest';
import {
  type ComposedMessage,
  createMessageSchema,
  decodedSizeOf,
  defaultMessageSchema,
  MESSAGE_CONTRACT_VERSION,
  parseMessage,
  recipientsOf,
} from '../../../lambda/core/message.ts';

type Schema = ReturnType<typeof createMessageSchema>;

const INVALID_ADDRESS = 'is not a valid email address (expected "a@example.com" or "Name <a@example.com>")';
const NO_CRLF = 'must not contain CR or LF characters (header injection)';
const BAD_BASE64 = 'must be standard base64 (A-Z a-z 0-9 + /, padded with =)';

const base64 = (bytes: number): string => Buffer.alloc(bytes, 7).toString('base64');

/** The smallest contract-valid message; spread and override fields per test. */
const minimal = {
  v: 1,
  from: 'sender@example.com',
  to: 'rcpt@example.com',
  subject: 'Hello',
  text: 'Hi there',
};

function problemsOf(input: unknown, schema: Schema = defaultMessageSchema): string[] {
  const result = parseMessage(JSON.stringify(input), schema);
  if (result.ok) throw new Error(`expected a rejection, got ${JSON.stringify(result.message)}`);
  return result.problems;
}

function messageOf(input: unknown, schema: Schema = defaultMessageSchema): ComposedMessage {
  const result = parseMessage(JSON.stringify(input), schema);
  if (!result.ok) throw new Error(`expected a valid message, got ${result.problems.join('; ')}`);
  return result.message as ComposedMessage;
}

describe('parseMessage with a valid message', () => {
  it('normalises every field of a full message into mailboxes and defaults', () => {
    const logo = base64(10);
    const report = base64(20);
    const message = messageOf({
      v: 1,
      from: 'Ana Pérez <ana@example.com>',
      to: ['bo@example.com', { name: 'Cy', address: 'cy@example.com' }],
      cc: 'Dee <dee@example.com>',
      bcc: [{ address: 'eve@example.com' }],
      replyTo: '"Support, Inc." <support@example.com>',
      subject: 'Quarterly report',
      text: 'See attached.',
      html: '<p>See <img src="cid:logo@example.com"> attached.</p>',
      headers: { 'X-Tenant': 'acme', 'X-Request-Id': 'r-1' },
      attachments: [
        { filename: 'report.bin', content: report },
        { filename: 'logo.png', contentType: 'image/png', content: logo, contentId: 'logo@example.com' },
      ],
      tags: { campaign: 'q3-report', tenant: 'acme_1' },
      idempotencyKey: 'order-42/confirmation',
    });

    expect(message).toEqual({
      v: 1,
      from: { name: 'Ana Pérez', address: 'ana@example.com' },
      to: [{ address: 'bo@example.com' }, { name: 'Cy', address: 'cy@example.com' }],
      cc: [{ name: 'Dee', address: 'dee@example.com' }],
      bcc: [{ address: 'eve@example.com' }],
      replyTo: [{ name: 'Support, Inc.', address: 'support@example.com' }],
      subject: 'Quarterly report',
      text: 'See attached.',
      html: '<p>See <img src="cid:logo@example.com"> attached.</p>',
      headers: { 'X-Tenant': 'acme', 'X-Request-Id': 'r-1' },
      attachments: [
        { filename: 'report.bin', contentType: 'application/octet-stream', content: report },
        { filename: 'logo.png', contentType: 'image/png', content: logo, contentId: 'logo@example.com' },
      ],
      tags: { campaign: 'q3-report', tenant: 'acme_1' },
      idempotencyKey: 'order-42/confirmation',
    });
  });

  it('accepts a message with only html as the body', () => {
    const { text: _text, ...withoutText } = minimal;
    expect(messageOf({ ...withoutText, html: '<p>Hi</p>' }).html).toBe('<p>Hi</p>');
  });

  it('accepts a message whose only recipient is in bcc', () => {
    const { to: _to, ...withoutTo } = minimal;
    expect(messageOf({ ...withoutTo, bcc: 'hidden@example.com' }).bcc).toEqual([
      { address: 'hidden@example.com' },
    ]);
  });

  it('drops an empty display name given in object form', () => {
    expect(messageOf({ ...minimal, to: { name: '', address: 'rcpt@example.com' } }).to).toEqual([
      { address: 'rcpt@example.com' },
    ]);
  });

  it('accepts base64 content with line breaks and stores it compacted', () => {
    const content = Buffer.from('hello world, this is a longer attachment').toString('base64');
    const wrapped = `${content.slice(0, 16)}\r\n${content.slice(16, 32)}\n${content.slice(32)}\n`;
    const message = messageOf({ ...minimal, attachments: [{ filename: 'a.txt', content: wrapped }] });
    expect(message.attachments?.[0]?.content).toBe(content);
  });

  it('exports contract version 1', () => {
    expect(MESSAGE_CONTRACT_VERSION).toBe(1);
  });
});

describe('parseMessage rejecting header injection', () => {
  it('rejects CR/LF in from', () => {
    expect(problemsOf({ ...minimal, from: 'sender@example.com\r\nBcc: victim@example.com' })).toEqual([
      `from: ${NO_CRLF}`,
    ]);
  });

  it('rejects LF in a to address given as a string in a list', () => {
    expect(
      problemsOf({ ...minimal, to: ['ok@example.com', 'rcpt@example.com\nBcc: victim@example.com'] }),
    ).toEqual([`to[1]: ${NO_CRLF}`]);
  });

  it('rejects LF in a to address given in object form', () => {
    expect(problemsOf({ ...minimal, to: [{ address: 'rcpt@example.com\n' }] })).toEqual([
      `to[0].address: ${NO_CRLF}`,
    ]);
  });

  it('rejects LF in a display name given in object form', () => {
    expect(
      problemsOf({ ...minimal, from: { name: 'Ana\nBcc: x@example.com', address: 'a@example.com' } }),
    ).toEqual([`from.name: ${NO_CRLF}`]);
  });

  it('rejects CR/LF in subject', () => {
    expect(problemsOf({ ...minimal, subject: 'Hi\r\nBcc: victim@example.com' })).toEqual([
      `subject: ${NO_CRLF}`,
    ]);
  });

  it('rejects LF in a custom header value', () => {
    expect(problemsOf({ ...minimal, headers: { 'X-Tenant': 'acme\nBcc: victim@example.com' } })).toEqual([
      `headers["X-Tenant"]: ${NO_CRLF}`,
    ]);
  });

  it('rejects CR/LF in an attachment filename', () => {
    expect(
      problemsOf({ ...minimal, attachments: [{ filename: 'a.txt\r\nX-Evil: 1', content: base64(3) }] }),
    ).toEqual([`attachments[0].filename: ${NO_CRLF}`]);
  });
});

describe('parseMessage rejecting addresses', () => {
  it('rejects an invalid to address and names the field', () => {
    expect(problemsOf({ ...minimal, to: 'not-an-address' })).toEqual([`to: ${INVALID_ADDRESS}`]);
  });

  it('rejects an invalid from address inside object form and names the address field', () => {
    expect(problemsOf({ ...minimal, from: { name: 'Ana', address: 'ana@' } })).toEqual([
      `from.address: ${INVALID_ADDRESS}`,
    ]);
  });

  it('rejects a display name inside the address of the object form', () => {
    expect(problemsOf({ ...minimal, to: { address: 'Name <a@b.com>' } })).toEqual([
      'to.address: must be a bare address (put the display name in "name")',
    ]);
  });

  it('rejects a recipient of the wrong type with the accepted types', () => {
    expect(problemsOf({ ...minimal, to: 42 })).toEqual(['to: must be string or object or array']);
  });

  it('reports a missing from as required', () => {
    const { from: _from, ...withoutFrom } = minimal;
    expect(problemsOf(withoutFrom)).toEqual(['from: required']);
  });

  it('names the accepted types when from has the wrong type', () => {
    expect(problemsOf({ ...minimal, from: 42 })).toEqual(['from: must be string or object']);
  });

  it('reports a missing subject as required', () => {
    const { subject: _subject, ...withoutSubject } = minimal;
    expect(problemsOf(withoutSubject)).toEqual(['subject: required']);
  });

  it('still reports a missing recipient and body when another field is invalid', () => {
    expect(problemsOf({ v: 1, from: 'not-an-address', subject: 'Hi' })).toEqual([
      'from: is not a valid email address (expected "a@example.com" or "Name <a@example.com>")',
      'to: no recipient: set at least one of to, cc, bcc',
      'text: no body: set text, html or both',
    ]);
  });
});

describe('parseMessage checking recipients and body', () => {
  it('rejects a message without any recipient', () => {
    const { to: _to, ...withoutTo } = minimal;
    expect(problemsOf(withoutTo)).toEqual(['to: no recipient: set at least one of to, cc, bcc']);
  });

  it('rejects a message without text or html', () => {
    const { text: _text, ...withoutText } = minimal;
    expect(problemsOf(withoutText)).toEqual(['text: no body: set text, html or both']);
  });

  it('counts recipients across to, cc and bcc against the configured maximum', () => {
    const schema = createMessageSchema({ maxRecipients: 3, maxMessageBytes: 1024 });
    const input = {
      ...minimal,
      to: ['a@example.com', 'b@example.com'],
      bcc: ['c@example.com', 'd@example.com'],
    };
    expect(problemsOf(input, schema)).toEqual([
      'to: 4 recipients in to + cc + bcc; at most 3 are allowed per message',
    ]);
  });

  it('accepts exactly the configured maximum of recipients', () => {
    const schema = createMessageSchema({ maxRecipients: 3, maxMessageBytes: 1024 });
    const input = { ...minimal, to: 'a@example.com', cc: 'b@example.com', bcc: 'c@example.com' };
    expect(recipientsOf(messageOf(input, schema))).toHaveLength(3);
  });
});

describe('parseMessage checking the decoded size', () => {
  // 24 bytes of text (12 two-byte characters) + attachment bytes, against a limit of 1024.
  const schema = createMessageSchema({ maxRecipients: 50, maxMessageBytes: 1024 });
  const sized = (attachmentBytes: number) => ({
    ...minimal,
    text: 'ñ'.repeat(12),
    attachments: [{ filename: 'data.bin', content: base64(attachmentBytes) }],
  });

  it('accepts a message exactly at the size limit', () => {
    expect(decodedSizeOf(messageOf(sized(1000), schema))).toBe(1024);
  });

  it('rejects a message one byte over the size limit with both sizes', () => {
    expect(problemsOf(sized(1001), schema)).toEqual([
      'attachments: message is 1025 bytes once decoded (bodies + attachments); the limit is 1024',
    ]);
  });
});

describe('parseMessage rejecting malformed fields', () => {
  it('rejects an unknown top-level field', () => {
    expect(problemsOf({ ...minimal, priority: 'high' })).toEqual(['priority: unknown field']);
  });

  it('rejects an unknown attachment field', () => {
    expect(
      problemsOf({ ...minimal, attachments: [{ filename: 'a.txt', content: base64(3), size: 3 }] }),
    ).toEqual(['attachments[0].size: unknown field']);
  });

  it('rejects attachment content with characters outside base64', () => {
    expect(problemsOf({ ...minimal, attachments: [{ filename: 'a.txt', content: 'not base64!' }] })).toEqual([
      `attachments[0].content: ${BAD_BASE64}`,
    ]);
  });

  it('rejects attachment content with a length that is not base64', () => {
    expect(problemsOf({ ...minimal, attachments: [{ filename: 'a.txt', content: 'abc' }] })).toEqual([
      `attachments[0].content: ${BAD_BASE64}; empty content is not allowed`,
    ]);
  });

  it('rejects empty attachment content', () => {
    expect(problemsOf({ ...minimal, attachments: [{ filename: 'a.txt', content: '' }] })).toEqual([
      `attachments[0].content: ${BAD_BASE64}; empty content is not allowed`,
    ]);
  });

  it('accepts an attachment by S3 reference, which the size check counts later (when read)', () => {
    const schema = createMessageSchema({ maxRecipients: 50, maxMessageBytes: 1024 });
    const parsed = parseMessage(
      JSON.stringify({
        ...minimal,
        attachments: [{ filename: 'big.pdf', s3: { bucket: 'relay-attachments', key: 'in/big.pdf' } }],
      }),
      schema,
    );
    expect(parsed.ok && (parsed.message as ComposedMessage).attachments).toEqual([
      {
        filename: 'big.pdf',
        contentType: 'application/octet-stream',
        s3: { bucket: 'relay-attachments', key: 'in/big.pdf' },
      },
    ]);
  });

  it('wants exactly one of content and s3 in an attachment', () => {
    const exactlyOne =
      'attachments[0].content: set exactly one of content (base64, for files that fit in the SQS message) and s3 (a reference to the attachment bucket)';
    expect(problemsOf({ ...minimal, attachments: [{ filename: 'a.txt' }] })).toEqual([exactlyOne]);
    expect(
      problemsOf({
        ...minimal,
        attachments: [
          { filename: 'a.txt', content: base64(3), s3: { bucket: 'relay-attachments', key: 'a.txt' } },
        ],
      }),
    ).toEqual([exactlyOne]);
  });

  it('names a malformed S3 reference', () => {
    expect(
      problemsOf({
        ...minimal,
        attachments: [{ filename: 'a.txt', s3: { bucket: 'Not_A_Bucket', key: '' } }],
      }),
    ).toEqual([
      'attachments[0].s3.bucket: must be an S3 bucket name',
      'attachments[0].s3.key: Too small: expected string to have >=1 characters',
    ]);
  });

  it('rejects an attachment filename that is a path', () => {
    expect(
      problemsOf({ ...minimal, attachments: [{ filename: '../etc/passwd', content: base64(3) }] }),
    ).toEqual(['attachments[0].filename: must be a file name, not a path']);
  });

  it('rejects a custom header name that does not start with X-', () => {
    expect(problemsOf({ ...minimal, headers: { Subject: 'override' } })).toEqual([
      'headers.Subject: custom header names must start with "X-" (letters, digits, -)',
    ]);
  });

  it('rejects a tag name with a space', () => {
    expect(problemsOf({ ...minimal, tags: { 'my tag': 'value' } })).toEqual([
      'tags["my tag"]: tag names must be 1-256 of A-Z a-z 0-9 _ -',
    ]);
  });

  it('rejects a contract version other than 1', () => {
    expect(problemsOf({ ...minimal, v: 2 })).toEqual([
      'v: must be 1, the only contract version this relay understands',
    ]);
  });

  it('reports a missing contract version as required', () => {
    const { v: _v, ...withoutVersion } = minimal;
    expect(problemsOf(withoutVersion)).toEqual(['v: required: the contract version, 1']);
  });

  it('rejects a body that is not JSON', () => {
    expect(parseMessage('{"v": 1,', defaultMessageSchema)).toEqual({
      ok: false,
      problems: ['body: not valid JSON'],
    });
  });

  it('rejects a JSON array body', () => {
    expect(parseMessage('[]', defaultMessageSchema)).toEqual({
      ok: false,
      problems: ['body: must be a JSON object'],
    });
  });

  it('reports several problems at once in one result', () => {
    expect(
      problemsOf({
        ...minimal,
        from: 'nobody',
        subject: 'a\nb',
        tags: { ok: 'bad value' },
        idempotencyKey: 'has space',
        extra: true,
      }),
    ).toEqual([
      `from: ${INVALID_ADDRESS}`,
      `subject: ${NO_CRLF}`,
      'tags.ok: tag values must be 1-256 of A-Z a-z 0-9 _ -',
      'idempotencyKey: must be 1-128 printable ASCII characters without spaces',
      'extra: unknown field',
    ]);
  });
});

describe('decodedSizeOf', () => {
  it('adds body bytes in UTF-8 to the decoded length of every attachment, whatever its padding', () => {
    const message = messageOf({
      ...minimal,
      text: 'é',
      html: '<b>',
      attachments: [1, 2, 3].map((bytes) => ({ filename: `f${bytes}.bin`, content: base64(bytes) })),
    });
    expect(decodedSizeOf(message)).toBe(2 + 3 + 1 + 2 + 3);
  });
});

describe('recipientsOf', () => {
  it('lists to, then cc, then bcc, but not replyTo', () => {
    const message = messageOf({
      ...minimal,
      to: 'a@example.com',
      cc: 'b@example.com',
      bcc: 'c@example.com',
      replyTo: 'r@example.com',
    });
    expect(recipientsOf(message).map((mailbox) => mailbox.address)).toEqual([
      'a@example.com',
      'b@example.com',
      'c@example.com',
    ]);
  });
});

describe('text a reader sees in headers', () => {
  it('refuses a subject with a bidirectional override, naming the character and not the subject', () => {
    expect(problemsOf({ ...minimal, subject: 'Invoice \u202Efdp.exe' })).toEqual([
      'subject: contains a bidirectional override or isolate (U+202E), which would make it display as something it is not',
    ]);
  });

  it('refuses a display name with a zero-width space', () => {
    expect(
      problemsOf({ ...minimal, from: { name: 'Micro\u200Bsoft', address: 'sender@example.com' } }),
    ).toEqual([
      'from.name: contains a zero-width space (U+200B), which would make it display as something it is not',
    ]);
  });

  it('refuses a file name with a bidirectional isolate', () => {
    expect(
      problemsOf({ ...minimal, attachments: [{ filename: 'scan\u2067fdp.exe', content: base64(3) }] }),
    ).toEqual([
      'attachments[0].filename: contains a bidirectional override or isolate (U+2067), which would make it display as something it is not',
    ]);
  });

  it('accepts the zero-width joiners that scripts and emoji need', () => {
    expect(messageOf({ ...minimal, subject: 'می\u200Cخواهم 👨\u200D👩\u200D👧' }).subject).toBe(
      'می\u200Cخواهم 👨\u200D👩\u200D👧',
    );
  });
});

describe('the raw form: MIME the application wrote, with its envelope', () => {
  const raw = {
    v: 1,
    from: 'Sales <sales@crm.example.com>',
    recipients: ['ana@example.org', 'hidden@example.org'],
    mime: { content: Buffer.from('From: sales@crm.example.com\r\n\r\nHi\r\n').toString('base64') },
  };

  it('accepts inline MIME with an envelope, and counts the envelope as its recipients', () => {
    const result = parseMessage(JSON.stringify(raw), defaultMessageSchema);
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(recipientsOf(result.message).map((mailbox) => mailbox.address)).toEqual([
      'ana@example.org',
      'hidden@example.org',
    ]);
    expect(decodedSizeOf(result.message)).toBe('From: sales@crm.example.com\r\n\r\nHi\r\n'.length);
  });

  it('accepts MIME held in S3', () => {
    const result = parseMessage(
      JSON.stringify({ ...raw, mime: { s3: { bucket: 'relay-ingress', key: 'ingress/crm/1' } } }),
      defaultMessageSchema,
    );
    expect(result.ok && 'mime' in result.message && result.message.mime).toEqual({
      s3: { bucket: 'relay-ingress', key: 'ingress/crm/1' },
    });
  });

  it('refuses MIME given both inline and in S3, or neither', () => {
    const both = { ...raw, mime: { ...raw.mime, s3: { bucket: 'relay-ingress', key: 'k' } } };
    const message =
      'mime.content: set exactly one of content (the MIME message, base64) and s3 (a reference to it in the attachment bucket)';
    expect(problemsOf(both)).toEqual([message]);
    expect(problemsOf({ ...raw, mime: {} })).toEqual([message]);
  });

  it('refuses a raw message without recipients, and composed fields mixed in', () => {
    expect(problemsOf({ ...raw, recipients: [], subject: 'x' })).toEqual([
      'subject: unknown field',
      'recipients: no recipient: list at least one',
    ]);
  });

  it('refuses more recipients than the limit', () => {
    const schema = createMessageSchema({ maxRecipients: 1, maxMessageBytes: 1_000_000 });
    expect(problemsOf(raw, schema)).toEqual(['recipients: 2 recipients; at most 1 are allowed per message']);
  });

  it('refuses inline MIME over the size limit', () => {
    const schema = createMessageSchema({ maxRecipients: 10, maxMessageBytes: 1024 });
    expect(problemsOf({ ...raw, mime: { content: base64(2000) } }, schema)).toEqual([
      'mime: the MIME message is 2000 bytes; the limit is 1024',
    ]);
  });
});
