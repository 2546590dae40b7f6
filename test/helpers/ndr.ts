import { randomUUID } from 'node:crypto';

export interface NdrFields {
  /** The sending mailbox the report goes back to. */
  readonly mailbox: string;
  readonly recipient: string;
  /** e.g. 5.1.10 */
  readonly status: string;
  /** Without the `smtp;` prefix, e.g. `550 5.1.10 RESOLVER.ADR.RecipientNotFound; …`. */
  readonly diagnostic: string;
  /** The relay's X-Mail-Relay-Message-Id of the original (the SQS message id). */
  readonly relayMessageId?: string;
  readonly idempotencyKey?: string;
  readonly action?: 'failed' | 'delayed';
}

/**
 * A non-delivery report as Exchange Online writes it to the sending mailbox (RFC 3464: a
 * multipart/report with a human part, message/delivery-status, and the original's headers), for
 * end-to-end tests that need one about a specific message. test/fixtures/feedback/ndr holds samples.
 */
export function exchangeNdr(fields: NdrFields): string {
  const boundary = `${randomUUID()}`;
  const originalId = `<${randomUUID()}@contoso.com>`;
  const date = 'Sun, 22 Nov 2026 11:58:07 +0000';
  return [
    'Received: from AM0PR01MB0001.eurprd01.prod.outlook.example (2001:db8::1) by',
    ' AM0PR01MB0002.eurprd01.prod.outlook.example with Microsoft SMTP Server id 15.20.1.1;',
    ` ${date}`,
    'From: Microsoft Outlook',
    '\t<MicrosoftExchange329e71ec88ae4615bbc36ab6ce41109e@contoso.com>',
    `To: <${fields.mailbox}>`,
    `Date: ${date}`,
    'Content-Type: multipart/report; report-type=delivery-status;',
    `\tboundary="${boundary}"`,
    'X-MS-Exchange-Message-Is-Ndr:',
    'Content-Language: en-US',
    `Message-ID: <${randomUUID()}@AM0PR01MB0001.eurprd01.prod.outlook.example>`,
    `In-Reply-To: ${originalId}`,
    `References: ${originalId}`,
    'Subject: Undeliverable: Your order',
    'Auto-Submitted: auto-replied',
    'MIME-Version: 1.0',
    '',
    `--${boundary}`,
    'Content-Type: text/plain; charset="us-ascii"',
    'Content-Transfer-Encoding: quoted-printable',
    '',
    "Your message to the recipient couldn't be delivered.",
    '',
    `--${boundary}`,
    'Content-Type: message/delivery-status',
    '',
    'Reporting-MTA: dns;AM0PR01MB0001.eurprd01.prod.outlook.example',
    'Received-From-MTA: dns;AM0PR01MB0002.eurprd01.prod.outlook.example',
    `Arrival-Date: ${date}`,
    '',
    `Final-Recipient: rfc822;${fields.recipient}`,
    `Action: ${fields.action ?? 'failed'}`,
    `Status: ${fields.status}`,
    `Diagnostic-Code: smtp;${fields.diagnostic}`,
    `X-Display-Name: ${fields.recipient}`,
    '',
    '',
    `--${boundary}`,
    'Content-Type: text/rfc822-headers',
    '',
    `From: Contoso Orders <${fields.mailbox}>`,
    `To: <${fields.recipient}>`,
    'Subject: Your order',
    `Date: ${date}`,
    `Message-ID: ${originalId}`,
    ...(fields.relayMessageId ? [`X-Mail-Relay-Message-Id: ${fields.relayMessageId}`] : []),
    ...(fields.idempotencyKey ? [`X-Mail-Relay-Idempotency-Key: ${fields.idempotencyKey}`] : []),
    'MIME-Version: 1.0',
    'Content-Type: text/plain; charset="utf-8"',
    '',
    `--${boundary}--`,
    '',
  ].join('\r\n');
}
