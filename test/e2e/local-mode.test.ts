import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import type { SQSClient } from '@aws-sdk/client-sqs';
import { simpleParser } from 'mailparser';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEAD_LETTER_ATTRIBUTES } from '../../lambda/core/dead-letter.ts';
import { type LocalRelay, startLocalRelay } from '../../local/local-relay.ts';
import {
  approximateCount,
  drain,
  enqueue,
  eventually,
  producerClient,
  validMessage,
} from '../helpers/peers.ts';
import { isolatedLocalMode } from '../local/isolated-local-mode.ts';

interface StoredEmail {
  messageId: string;
  from: string;
  subject: string;
  destination: { to: string[]; cc: string[]; bcc: string[] };
  body: { text?: string; html?: string };
  attachments: { filename: string; contentType: string; content: string }[];
}

const run = promisify(execFile);

describe('local mode end to end: SQS API → local event source → real handler → SES emulator', () => {
  let relay: LocalRelay;
  let sqs: SQSClient;
  const pdf = randomBytes(20_000);
  const logo = randomBytes(3_000);
  const workDir = mkdtempSync(path.join(tmpdir(), 'mail-relay-e2e-'));

  const store = async (): Promise<StoredEmail[]> => {
    const response = await fetch(`${relay.sesEndpoint}/store`);
    return ((await response.json()) as { emails: StoredEmail[] }).emails;
  };
  const storedWithSubject = (subject: string) =>
    eventually(async () => (await store()).find((email) => email.subject === subject));

  beforeAll(async () => {
    const configPath = path.join(workDir, 'config.json');
    writeFileSync(
      configPath,
      JSON.stringify({
        ses: { identities: ['example.com'] },
        queue: { maxReceiveCount: 3 },
        // Retries within seconds, so the test sees them.
        retry: { baseDelaySeconds: 1, maxDelaySeconds: 1 },
      }),
    );
    relay = await startLocalRelay({
      ...isolatedLocalMode(workDir),
      configPath,
      visibilityTimeoutSeconds: 1,
      logLevel: 'ERROR',
    });
    sqs = producerClient(relay.sqsEndpoint);
  });
  afterAll(async () => {
    sqs.destroy();
    await relay.stop();
  });

  it('delivers a full message with recipients, attachment bytes, inline image and custom headers intact', async () => {
    await enqueue(sqs, relay.queueUrl, {
      v: 1,
      from: 'Facturación <billing@example.com>',
      to: ['Ana Pérez <ana@example.org>', 'bob@example.org'],
      cc: 'ops@example.org',
      bcc: ['audit@example.org'],
      replyTo: 'support@example.com',
      subject: 'Factura nº 42',
      text: 'Adjuntamos su factura.',
      html: '<p>Adjuntamos su factura.</p><img src="cid:logo@example.com">',
      headers: { 'X-Tenant': 'acme', 'X-Invoice-Id': '42' },
      attachments: [
        { filename: 'factura-42.pdf', contentType: 'application/pdf', content: pdf.toString('base64') },
        {
          filename: 'logo.png',
          contentType: 'image/png',
          content: logo.toString('base64'),
          contentId: 'logo@example.com',
        },
      ],
      tags: { tenant: 'acme' },
      idempotencyKey: 'invoice-42',
    });

    const email = await storedWithSubject('Factura nº 42');
    // The emulator keeps the To header as written (display names included) …
    expect(email.destination.to).toEqual(['"Ana Pérez" <ana@example.org>, bob@example.org']);
    expect(email.destination.cc).toEqual(['ops@example.org']);
    const attachment = email.attachments.find((candidate) => candidate.filename === 'factura-42.pdf');
    expect(attachment?.contentType).toBe('application/pdf');
    expect(Buffer.from(attachment?.content ?? '', 'base64').equals(pdf)).toBe(true);

    const sent = relay.capture.sent.find((candidate) => candidate.messageId === email.messageId);
    // … and the capture shows the envelope SES was given, Bcc included.
    expect(sent?.destination).toEqual({
      to: ['ana@example.org', 'bob@example.org'],
      cc: ['ops@example.org'],
      bcc: ['audit@example.org'],
    });
    expect(sent?.tags).toEqual({ tenant: 'acme' });
    const mime = await simpleParser(sent?.raw ?? Buffer.alloc(0));
    expect(mime.headers.get('x-tenant')).toBe('acme');
    expect(mime.headers.get('x-invoice-id')).toBe('42');
    expect(mime.headers.has('bcc')).toBe(false);
    const inline = mime.attachments.find((candidate) => candidate.contentId === '<logo@example.com>');
    expect(inline?.content.equals(logo)).toBe(true);
  });

  it('retries a transient SES outage and sends the message once SES recovers', async () => {
    relay.capture.injectFault({ status: 503, code: 'ServiceUnavailable', times: 2 });

    await enqueue(sqs, relay.queueUrl, validMessage({ subject: 'After the outage' }));

    await storedWithSubject('After the outage');
    expect((await store()).filter((email) => email.subject === 'After the outage')).toHaveLength(1);
  });

  it('dead-letters invalid messages with their reasons and drains the outbox', async () => {
    const invalid = [
      { body: '{"v":1,', code: 'InvalidMessage', reason: 'body: not valid JSON' },
      {
        body: JSON.stringify(validMessage({ to: [], attachments: [{ filename: 'a.bin', content: '%%%' }] })),
        code: 'InvalidMessage',
        reason: 'attachments[0].content: must be standard base64',
      },
      {
        body: JSON.stringify(validMessage({ subject: 'Hi\r\nBcc: victim@example.org' })),
        code: 'InvalidMessage',
        reason: 'subject: must not contain CR or LF characters (header injection)',
      },
      {
        body: JSON.stringify(validMessage({ from: 'ceo@not-ours.example' })),
        code: 'SenderNotAllowed',
        reason: 'from: ceo@not-ours.example is not covered',
      },
    ];
    const ids = await Promise.all(invalid.map(({ body }) => enqueue(sqs, relay.queueUrl, body)));

    await eventually(async () =>
      (await approximateCount(sqs, relay.deadLetterQueueUrl)) >= invalid.length ? true : undefined,
    );
    const deadLettered = await drain(sqs, relay.deadLetterQueueUrl);
    for (const [index, expected] of invalid.entries()) {
      const dead = deadLettered.find(
        (message) =>
          message.MessageAttributes?.[DEAD_LETTER_ATTRIBUTES.sourceMessageId]?.StringValue === ids[index],
      );
      expect(dead?.Body).toBe(expected.body);
      expect(dead?.MessageAttributes?.[DEAD_LETTER_ATTRIBUTES.code]?.StringValue).toBe(expected.code);
      expect(dead?.MessageAttributes?.[DEAD_LETTER_ATTRIBUTES.reason]?.StringValue).toContain(
        expected.reason,
      );
    }
    await eventually(async () => ((await approximateCount(sqs, relay.queueUrl)) === 0 ? true : undefined));
  });

  it('accepts messages from the mail-relay send command', async () => {
    const file = path.join(workDir, 'notes.txt');
    writeFileSync(file, 'attached from the CLI');
    const cli = path.resolve('cli/mail-relay.js');

    const { stdout } = await run(process.execPath, [
      cli,
      'send',
      '--queue-url',
      relay.queueUrl,
      '--from',
      'app@example.com',
      '--to',
      'you@example.org',
      '--subject',
      'From the CLI',
      '--text',
      'hello',
      '--attach',
      file,
    ]);

    expect(stdout.trim()).toMatch(/^[0-9a-f-]{36}$/);
    const email = await storedWithSubject('From the CLI');
    expect(Buffer.from(email.attachments[0]?.content ?? '', 'base64').toString()).toBe(
      'attached from the CLI',
    );
  });

  it('rejects an invalid message in the send command before it reaches the queue', async () => {
    const cli = path.resolve('cli/mail-relay.js');
    const error = await run(process.execPath, [
      cli,
      'send',
      '--queue-url',
      relay.queueUrl,
      '--from',
      'nobody',
      '--subject',
      'x',
    ]).catch((failure: { code: number; stderr: string }) => failure);

    expect(error).toMatchObject({ code: 1 });
    expect((error as { stderr: string }).stderr).toContain('from: is not a valid email address');
  });
});
