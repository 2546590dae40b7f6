import { randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import type { SQSClient } from '@aws-sdk/client-sqs';
import { simpleParser } from 'mailparser';
import nodemailer from 'nodemailer';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRelayClient, type RelayClient } from '../../client/index.ts';
import { MailRelayTransport } from '../../client/nodemailer.ts';
import { type LocalRelay, startLocalRelay } from '../../local/local-relay.ts';
import { approximateCount, eventually, producerClient } from '../helpers/peers.ts';
import { isolatedLocalMode } from '../local/isolated-local-mode.ts';

/**
 * The producers end to end: local mode (SQS + S3 emulator, the real send handler, the SES emulator
 * behind a capture of the exact MIME), with the attachment bucket configured.
 */
describe('producers end to end through local mode: client / nodemailer → outbox (+ S3) → relay → SES', () => {
  let relay: LocalRelay;
  let client: RelayClient;
  let sqs: SQSClient;
  const workDir = mkdtempSync(path.join(tmpdir(), 'mail-relay-producers-e2e-'));

  const sentWithSubject = (subject: string) =>
    eventually(async () =>
      relay.capture.sent.find((sent) => sent.raw.includes(Buffer.from(`\r\nSubject: ${subject}\r\n`))),
    );
  const outboxEmpty = () =>
    eventually(async () => ((await approximateCount(sqs, relay.queueUrl)) === 0 ? true : undefined));

  beforeAll(async () => {
    const configPath = path.join(workDir, 'config.json');
    writeFileSync(
      configPath,
      JSON.stringify({
        ses: { identities: ['example.com'] },
        attachments: { retentionDays: 1 },
        queue: { maxReceiveCount: 3 },
        retry: { baseDelaySeconds: 1, maxDelaySeconds: 1 },
      }),
    );
    relay = await startLocalRelay({
      ...isolatedLocalMode(workDir),
      configPath,
      visibilityTimeoutSeconds: 1,
      logLevel: 'ERROR',
    });
    if (!relay.attachmentBucket) throw new Error('local mode did not create the attachment bucket');
    // As an application would: the queue URL and the bucket name, nothing else (the client sees a
    // local queue URL and talks to its endpoint with dummy credentials).
    client = createRelayClient({ queueUrl: relay.queueUrl, attachmentBucket: relay.attachmentBucket.name });
    sqs = producerClient(relay.sqsEndpoint);
  });
  afterAll(async () => {
    client?.close();
    sqs?.destroy();
    await relay?.stop();
  });

  it('delivers a 5 MB attachment sent with the client through the claim check, byte for byte', async () => {
    const report = randomBytes(5 * 1024 * 1024);
    const logo = randomBytes(4_000);

    const result = await client.send({
      from: 'Reports <reports@example.com>',
      to: 'ana@example.org',
      bcc: 'audit@example.org',
      subject: 'Monthly report',
      html: '<p>Attached.</p><img src="cid:logo@example.com">',
      headers: { 'X-Tenant': 'acme' },
      attachments: [
        { filename: 'report.pdf', contentType: 'application/pdf', content: report },
        { filename: 'logo.png', contentType: 'image/png', content: logo, contentId: 'logo@example.com' },
      ],
    });

    expect(result.uploaded).toHaveLength(1);
    const sent = await sentWithSubject('Monthly report');
    expect(sent.destination.bcc).toEqual(['audit@example.org']);
    const mime = await simpleParser(sent.raw);
    expect(mime.headers.get('x-tenant')).toBe('acme');
    const attachment = mime.attachments.find((candidate) => candidate.filename === 'report.pdf');
    expect(attachment?.contentType).toBe('application/pdf');
    expect(attachment?.content.equals(report)).toBe(true);
    expect(
      mime.attachments
        .find((candidate) => candidate.contentId === '<logo@example.com>')
        ?.content.equals(logo),
    ).toBe(true);
  });

  it('sends a message the client enqueues twice once: the derived idempotency key is the same', async () => {
    const message = {
      from: 'app@example.com',
      to: 'ana@example.org',
      subject: 'Only once',
      text: 'The ledger knows this one.',
    };

    const first = await client.send(message);
    await sentWithSubject('Only once');
    const second = await client.send(message);
    await outboxEmpty();

    expect(second.idempotencyKey).toBe(first.idempotencyKey);
    expect(second.messageId).not.toBe(first.messageId);
    expect(
      relay.capture.sent.filter((sent) => sent.raw.includes(Buffer.from('\r\nSubject: Only once\r\n'))),
    ).toHaveLength(1);
  });

  it('delivers a nodemailer message as nodemailer built it: a 2 MB stream through S3, a cid image, any header', async () => {
    const transporter = nodemailer.createTransport(
      new MailRelayTransport({ queueUrl: relay.queueUrl, attachmentBucket: relay.attachmentBucket?.name }),
    );
    const scan = randomBytes(2 * 1024 * 1024);
    const logo = randomBytes(3_000);
    const file = path.join(workDir, 'terms.txt');
    writeFileSync(file, 'Terms and conditions.\n');

    try {
      const info = await transporter.sendMail({
        from: '"Facturación" <billing@example.com>',
        to: 'Ana Pérez <ana@example.org>',
        cc: 'ops@example.org',
        bcc: 'audit@example.org',
        replyTo: 'support@example.com',
        subject: 'Scan from nodemailer',
        text: 'See attached.',
        html: '<p>See attached.</p><img src="cid:logo@example.com">',
        headers: { 'X-Tenant': 'acme', 'List-Unsubscribe': '<mailto:unsubscribe@example.com>' },
        attachments: [
          { filename: 'scan.pdf', content: Readable.from([scan]) },
          { path: file },
          { filename: 'logo.png', content: logo, cid: 'logo@example.com' },
        ],
      });

      expect(info.uploaded).toHaveLength(1);
      const sent = await sentWithSubject('Scan from nodemailer');
      // The envelope SES was given: Bcc included, and no Bcc header in what the recipients see.
      expect([...sent.destination.to, ...sent.destination.cc, ...sent.destination.bcc].sort()).toEqual(
        ['ana@example.org', 'audit@example.org', 'ops@example.org'].sort(),
      );
      const mime = await simpleParser(sent.raw, { keepCidLinks: true });
      expect(mime.headers.has('bcc')).toBe(false);
      expect(mime.messageId).toBe(info.messageId);
      expect(mime.from?.value).toEqual([{ name: 'Facturación', address: 'billing@example.com' }]);
      expect(mime.replyTo?.text).toBe('support@example.com');
      expect(mime.headers.get('x-tenant')).toBe('acme');
      expect(sent.raw.toString()).toContain('List-Unsubscribe: <mailto:unsubscribe@example.com>');
      expect(mime.html).toContain('cid:logo@example.com');
      const byName = (name: string) => mime.attachments.find((attachment) => attachment.filename === name);
      expect(byName('scan.pdf')?.content.equals(scan)).toBe(true);
      expect(byName('terms.txt')?.content.toString()).toBe('Terms and conditions.\n');
      expect(byName('logo.png')?.contentId).toBe('<logo@example.com>');
      expect(byName('logo.png')?.content.equals(logo)).toBe(true);
    } finally {
      transporter.close();
    }
  });
});
