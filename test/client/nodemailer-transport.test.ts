import { randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { GetObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import type { SQSClient } from '@aws-sdk/client-sqs';
import { simpleParser } from 'mailparser';
import nodemailer from 'nodemailer';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MailRelayTransport, RelayMessageError } from '../../client/nodemailer.ts';
import { defaultMessageSchema, parseMessage } from '../../lambda/core/message.ts';
import { createQueue, drain, type QueueAndBucket, startQueueAndBucket } from '../helpers/peers.ts';

const BUCKET = 'relay-transport-test';

interface RawBody {
  v: number;
  from: string;
  recipients: string[];
  mime: { content?: string; s3?: { bucket: string; key: string } };
  idempotencyKey?: string;
  tags?: Record<string, string>;
}

describe('MailRelayTransport: nodemailer against the SQS and S3 emulator', () => {
  let peers: QueueAndBucket;
  let sqs: SQSClient;
  let s3: S3Client;
  const workDir = mkdtempSync(path.join(tmpdir(), 'mail-relay-transport-'));

  beforeAll(async () => {
    peers = await startQueueAndBucket(BUCKET);
    ({ sqs, s3 } = peers);
  });
  afterAll(() => peers.stop());

  const received = async (url: string): Promise<{ body: RawBody; mime: Buffer }> => {
    const [message] = await drain(sqs, url);
    const text = message?.Body ?? '';
    expect(parseMessage(text, defaultMessageSchema).ok).toBe(true);
    const body = JSON.parse(text) as RawBody;
    if (body.mime.content) return { body, mime: Buffer.from(body.mime.content, 'base64') };
    const object = await s3.send(
      new GetObjectCommand({ Bucket: body.mime.s3?.bucket, Key: body.mime.s3?.key }),
    );
    return { body, mime: Buffer.from((await object.Body?.transformToByteArray()) ?? []) };
  };

  it('takes a nodemailer message as it is: recipients, bodies, attachments from a path, a buffer and a stream, a cid image, headers', async () => {
    const { url } = await createQueue(sqs);
    const transporter = nodemailer.createTransport(
      new MailRelayTransport({ queueUrl: url, sqs, s3, attachmentBucket: BUCKET, tags: { tenant: 'acme' } }),
    );
    const file = path.join(workDir, 'invoice.pdf');
    const pdf = randomBytes(30_000);
    writeFileSync(file, pdf);
    const csv = Buffer.from('id,total\n42,10.00\n');
    const streamed = randomBytes(50_000);
    const logo = randomBytes(2_000);

    const info = await transporter.sendMail({
      from: '"Facturación" <billing@example.com>',
      to: ['Ana Pérez <ana@example.org>', 'bob@example.org'],
      cc: 'ops@example.org',
      bcc: 'audit@example.org',
      replyTo: 'support@example.com',
      subject: 'Factura nº 42',
      text: 'Adjuntamos su factura.',
      html: '<p>Adjuntamos su factura.</p><img src="cid:logo@example.com">',
      headers: { 'X-Tenant': 'acme', 'List-Unsubscribe': '<mailto:unsubscribe@example.com>' },
      attachments: [
        { path: file },
        { filename: 'totals.csv', content: csv },
        {
          filename: 'export.bin',
          content: Readable.from([streamed.subarray(0, 20_000), streamed.subarray(20_000)]),
        },
        { filename: 'logo.png', content: logo, cid: 'logo@example.com' },
      ],
    });

    expect(info.envelope).toEqual({
      from: 'billing@example.com',
      to: ['ana@example.org', 'bob@example.org', 'ops@example.org', 'audit@example.org'],
    });
    expect(info.response).toMatch(/^250 Queued as [0-9a-f-]{36}$/);
    expect(info.idempotencyKey).toBe(info.messageId);
    const { body, mime } = await received(url);
    expect(body).toMatchObject({
      v: 1,
      from: 'billing@example.com',
      recipients: ['ana@example.org', 'bob@example.org', 'ops@example.org', 'audit@example.org'],
      idempotencyKey: info.messageId,
      tags: { tenant: 'acme' },
    });
    const parsed = await simpleParser(mime, { keepCidLinks: true });
    expect(parsed.messageId).toBe(info.messageId);
    expect(parsed.subject).toBe('Factura nº 42');
    expect(parsed.from?.value).toEqual([{ name: 'Facturación', address: 'billing@example.com' }]);
    expect(parsed.replyTo?.text).toBe('support@example.com');
    expect(parsed.headers.has('bcc')).toBe(false);
    expect(parsed.headers.get('x-tenant')).toBe('acme');
    expect(mime.toString()).toContain('\r\nList-Unsubscribe: <mailto:unsubscribe@example.com>\r\n');
    expect(parsed.text?.trim()).toBe('Adjuntamos su factura.');
    expect(parsed.html).toContain('cid:logo@example.com');
    const byName = (name: string) => parsed.attachments.find((attachment) => attachment.filename === name);
    expect(byName('invoice.pdf')?.content.equals(pdf)).toBe(true);
    expect(byName('invoice.pdf')?.contentType).toBe('application/pdf');
    expect(byName('totals.csv')?.content.equals(csv)).toBe(true);
    expect(byName('export.bin')?.content.equals(streamed)).toBe(true);
    expect(byName('logo.png')?.contentId).toBe('<logo@example.com>');
    expect(byName('logo.png')?.content.equals(logo)).toBe(true);
  });

  it('sends a message too big for SQS through the bucket, as the MIME object', async () => {
    const { url } = await createQueue(sqs);
    const transporter = nodemailer.createTransport(
      new MailRelayTransport({ queueUrl: url, sqs, s3, attachmentBucket: BUCKET }),
    );
    const scan = randomBytes(3 * 1024 * 1024);

    const info = await transporter.sendMail({
      from: 'scanner@example.com',
      to: 'ana@example.org',
      subject: 'Scan',
      text: 'Attached.',
      attachments: [{ filename: 'scan.pdf', content: Readable.from([scan]) }],
    });

    expect(info.uploaded).toHaveLength(1);
    const { body, mime } = await received(url);
    expect(body.mime).toEqual({ s3: info.uploaded[0] });
    const parsed = await simpleParser(mime, { keepCidLinks: true });
    expect(parsed.attachments[0]?.content.equals(scan)).toBe(true);
  });

  it('uses the Message-ID as the idempotency key: a retried sendMail with the same messageId is one message', async () => {
    const { url } = await createQueue(sqs);
    const transporter = nodemailer.createTransport(new MailRelayTransport({ queueUrl: url, sqs }));
    const mail = {
      from: 'app@example.com',
      to: 'ana@example.org',
      subject: 'Order 7',
      text: 'Shipped.',
      messageId: '<order-7@app.example.com>',
    };

    const first = await transporter.sendMail(mail);
    const retry = await transporter.sendMail(mail);
    const other = await transporter.sendMail({ ...mail, messageId: undefined });

    expect(first.idempotencyKey).toBe('<order-7@app.example.com>');
    expect(retry.idempotencyKey).toBe(first.idempotencyKey);
    expect(other.idempotencyKey).not.toBe(first.idempotencyKey);
    const keys = (await drain(sqs, url)).map(
      (message) => (JSON.parse(message.Body ?? '') as RawBody).idempotencyKey,
    );
    expect(keys.sort()).toEqual([first.idempotencyKey, first.idempotencyKey, other.idempotencyKey].sort());
  });

  it('rejects sendMail with the contract’s problems when the relay would refuse the message', async () => {
    const { url } = await createQueue(sqs);
    const transporter = nodemailer.createTransport(new MailRelayTransport({ queueUrl: url, sqs }));

    const error = await transporter
      .sendMail({ from: 'app@example.com', subject: 'Nobody', text: 'x' })
      .catch((failure: unknown) => failure);

    expect(error).toBeInstanceOf(RelayMessageError);
    expect((error as RelayMessageError).problems).toEqual(['recipients: no recipient: list at least one']);
    expect(await drain(sqs, url)).toEqual([]);
  });

  it('answers transporter.verify() by checking the queue', async () => {
    const { url } = await createQueue(sqs);
    const good = nodemailer.createTransport(new MailRelayTransport({ queueUrl: url, sqs }));
    const bad = nodemailer.createTransport(
      new MailRelayTransport({ queueUrl: `${peers.endpoint}/000000000000/missing`, sqs }),
    );

    expect(await good.verify()).toBe(true);
    await expect(bad.verify()).rejects.toThrow();
  });
});
