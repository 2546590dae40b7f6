/** Messages as apps, CRMs and printers submit them, built byte by byte. */

export const crlf = (...lines: string[]): Buffer => Buffer.from(lines.join('\r\n'), 'utf8');

/** Base64 folded to 76 characters, the way a mail client writes an attachment. */
export function base64Lines(bytes: Buffer): string[] {
  return bytes.toString('base64').match(/.{1,76}/g) ?? [];
}

export const PDF = Buffer.concat([
  Buffer.from('%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n', 'latin1'),
  Buffer.from(Array.from({ length: 300 }, (_, index) => (index * 37) % 256)),
]);
export const PNG = Buffer.concat([
  Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
  Buffer.from(Array.from({ length: 120 }, (_, index) => (index * 11) % 256)),
]);
export const CALENDAR = [
  'BEGIN:VCALENDAR',
  'VERSION:2.0',
  'METHOD:REQUEST',
  'PRODID:-//Contoso CRM//EN',
  'BEGIN:VEVENT',
  'UID:7f3c@contoso.com',
  'DTSTART:20240514T090000Z',
  'DTEND:20240514T093000Z',
  'SUMMARY:Quarterly review',
  'ORGANIZER:mailto:crm@contoso.com',
  'END:VEVENT',
  'END:VCALENDAR',
];

export const LONG_TEXT = `Report ${'0123456789'.repeat(500)} end`;
export const LONG_HTML = `<p>${'<span>cell</span>'.repeat(300)}</p>`;

/** Plain and simple: every line short, 7-bit, Date and Message-ID present. */
export const CLEAN = crlf(
  'From: Ana Example <ana@contoso.com>',
  'To: Bo <bo@fabrikam.com>',
  'Subject: Weekly report',
  'Date: Tue, 14 May 2024 09:05:00 +0000',
  'Message-ID: <report-1@contoso.com>',
  'MIME-Version: 1.0',
  'Content-Type: text/plain; charset=us-ascii',
  '',
  'Hello Bo,',
  'the report is attached.',
  '',
);

/** A CRM's alternative message whose text and HTML are each one 5000-character line, no transfer encoding. */
export const LONG_LINES = crlf(
  'From: crm@contoso.com',
  'To: bo@fabrikam.com',
  'Subject: Monthly export',
  'Date: Tue, 14 May 2024 09:05:00 +0000',
  'MIME-Version: 1.0',
  'Content-Type: multipart/alternative; boundary="alt-1"',
  '',
  '--alt-1',
  'Content-Type: text/plain; charset=utf-8',
  '',
  LONG_TEXT,
  '--alt-1',
  'Content-Type: text/html; charset=utf-8',
  '',
  LONG_HTML,
  '--alt-1--',
  '',
);

/**
 * An invitation with everything: a preamble, alternative text and HTML (the HTML one long line),
 * related HTML with an inline image, a PDF and a text/calendar REQUEST, and an epilogue.
 */
export const INVITATION = crlf(
  'From: "Contoso CRM" <crm@contoso.com>',
  'To: Bo <bo@fabrikam.com>, cy@fabrikam.com',
  'Cc: dee@fabrikam.com',
  'Subject: Quarterly review',
  'MIME-Version: 1.0',
  'Content-Type: multipart/mixed; boundary="mixed-1"',
  '',
  'This is a multi-part message in MIME format.',
  '--mixed-1',
  'Content-Type: multipart/alternative; boundary="alt-2"',
  '',
  '--alt-2',
  'Content-Type: text/plain; charset=us-ascii',
  'Content-Transfer-Encoding: 7bit',
  '',
  'Please find the agenda attached.',
  '',
  '--alt-2',
  'Content-Type: multipart/related; boundary="rel-3"',
  '',
  '--rel-3',
  'Content-Type: text/html; charset=us-ascii',
  '',
  `<html><body><img src="cid:logo@contoso.com">${LONG_HTML}</body></html>`,
  '--rel-3',
  'Content-Type: image/png',
  'Content-Transfer-Encoding: base64',
  'Content-ID:<logo@contoso.com>',
  'Content-Disposition: inline; filename="logo.png"',
  '',
  ...base64Lines(PNG),
  '--rel-3--',
  '',
  '--alt-2--',
  '',
  '--mixed-1',
  'Content-Type: application/pdf; name="agenda.pdf"',
  'Content-Transfer-Encoding: base64',
  'Content-Disposition: attachment;',
  '\tfilename="agenda.pdf"',
  '',
  ...base64Lines(PDF),
  '--mixed-1',
  'Content-Type: text/calendar; method=REQUEST; charset=utf-8',
  'Content-Transfer-Encoding: 7bit',
  '',
  ...CALENDAR,
  '',
  '--mixed-1--',
  'Epilogue kept as it came.',
  '',
);

/** A scanner that writes Latin-1 with bare LF and no MIME headers at all. */
export const LATIN1_SCANNER = Buffer.concat([
  Buffer.from('From: scan@contoso.com\nTo: bo@fabrikam.com\nSubject: Scan\n\n', 'latin1'),
  Buffer.from('Caf\xe9 cr\xe8me \x80 5\nSeite 1 von 2 \x96 fertig\n', 'latin1'),
]);
