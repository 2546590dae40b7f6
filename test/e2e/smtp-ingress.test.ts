import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { HeadObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { GetQueueUrlCommand, type SQSClient } from '@aws-sdk/client-sqs';
import type { S3Event } from 'aws-lambda';
import { type ParsedMail, simpleParser } from 'mailparser';
import { createTransport } from 'nodemailer';
import MailComposer from 'nodemailer/lib/mail-composer';
import type SMTPTransport from 'nodemailer/lib/smtp-transport';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { lookUpDelivery } from '../../cli/status.ts';
import { DEAD_LETTER_ATTRIBUTES } from '../../lambda/core/dead-letter.ts';
import { submissionIdempotencyKey } from '../../lambda/core/ingest.ts';
import { TRACE_HEADERS } from '../../lambda/core/outcomes.ts';
import { createIngestHandler, type RefusedSubmission } from '../../lambda/ingest/create-handler.ts';
import { ingestSettingsFor } from '../../lib/config.ts';
import { INGEST_DEAD_LETTER_QUEUE_NAME, INGRESS_BUCKET_NAME, LOCAL_REGION } from '../../local/local-names.ts';
import { type LocalRelay, startLocalRelay } from '../../local/local-relay.ts';
import { localLambdaContext } from '../../local/sqs-event-source.ts';
import { approximateCount, drain, eventually, producerClient } from '../helpers/peers.ts';
import { SmtpSession } from '../helpers/smtp-session.ts';
import { isolatedLocalMode } from '../local/isolated-local-mode.ts';

const run = promisify(execFile);

/** Recognisable bytes: a shifted or truncated chunk cannot compare equal. */
function patterned(length: number, seed = 0): Buffer {
  const bytes = Buffer.alloc(length);
  for (let index = 0; index < length; index += 1) bytes[index] = (index * 7 + seed + (index >> 8)) & 0xff;
  return bytes;
}

const CALENDAR = [
  'BEGIN:VCALENDAR',
  'VERSION:2.0',
  'PRODID:-//mail-relay//smtp-ingress test//EN',
  'METHOD:REQUEST',
  'BEGIN:VEVENT',
  'UID:review-42@example.com',
  'DTSTAMP:20250101T090000Z',
  'DTSTART:20250102T100000Z',
  'DTEND:20250102T110000Z',
  'SUMMARY:Quarterly review',
  'ORGANIZER:mailto:reports@example.com',
  'ATTENDEE;RSVP=TRUE:mailto:ana@example.org',
  'END:VEVENT',
  'END:VCALENDAR',
  '',
].join('\r\n');

/**
 * Python's standard library as an application would use it: STARTTLS trusting only the listener's
 * certificate, AUTH, then send_message with a Bcc recipient in the envelope only. Prints the reply
 * to the end of DATA (send_message itself returns only the refused recipients).
 */
const PYTHON_SUBMISSION = `
import os, smtplib, ssl
from email.message import EmailMessage

env = os.environ
message = EmailMessage()
message['Subject'] = env['SUBJECT']
message['From'] = env['FROM']
message['To'] = env['TO']
message['Message-ID'] = env['MESSAGE_ID']
message.set_content('Hello from Python.\\nThe quarterly report is attached.\\n')
message.add_alternative(
    '<p>Hello from Python.</p><p><img src="cid:' + env['IMAGE_CID'] + '" alt="logo"></p>', subtype='html'
)
with open(env['IMAGE_PATH'], 'rb') as image:
    message.get_payload()[1].add_related(image.read(), 'image', 'png', cid='<' + env['IMAGE_CID'] + '>')
with open(env['PDF_PATH'], 'rb') as pdf:
    message.add_attachment(pdf.read(), maintype='application', subtype='pdf', filename='report.pdf')
message.add_attachment(env['CALENDAR'], subtype='calendar', params={'method': 'REQUEST'}, filename='invite.ics')

context = ssl.create_default_context(cafile=env['CA_FILE'])
replies = []
with smtplib.SMTP(env['HOST'], int(env['PORT']), local_hostname='python.client.test', timeout=60) as smtp:
    smtp.starttls(context=context)
    smtp.login(env['USER'], env['PASSWORD'])
    data = smtp.data
    def recording_data(payload):
        reply = data(payload)
        replies.append(reply)
        return reply
    smtp.data = recording_data
    smtp.send_message(message, to_addrs=[env['TO'], env['BCC']])
print(replies[-1][0], replies[-1][1].decode())
`;

/** `250 2.0.0 queued as <id>` → id: the outbox message id, which the trace header carries. */
function queuedAs(reply: string): string {
  const id = /queued as (\S+)/.exec(reply)?.[1];
  if (!id) throw new Error(`not a queued reply: ${reply}`);
  return id;
}

interface SmtpError {
  readonly responseCode?: number;
  readonly response?: string;
  readonly command?: string;
}

describe('SMTP submission end to end: real clients → local listener → ingest → outbox → providers', () => {
  let relay: LocalRelay;
  let ingress: NonNullable<LocalRelay['smtpIngress']>;
  let sqs: SQSClient;
  let s3: S3Client;
  const workDir = mkdtempSync(path.join(tmpdir(), 'mail-relay-smtp-ingress-e2e-'));
  const caFile = path.join(workDir, 'ingress-ca.pem');
  const pdf = patterned(20 * 1024, 1);
  const image = patterned(1500, 2);
  const imagePath = path.join(workDir, 'logo.png');
  const pdfPath = path.join(workDir, 'report.pdf');

  const password = (client: string) => {
    const credential = ingress.credentials.find((candidate) => candidate.client === client);
    if (!credential) throw new Error(`local mode has no credential for ingress client ${client}`);
    return credential.password;
  };
  const transport = (client: string, options: Partial<SMTPTransport.Options> = {}) =>
    createTransport({
      host: ingress.host,
      port: ingress.port,
      secure: false,
      requireTLS: true,
      tls: { ca: ingress.certificatePem },
      auth: { user: client, pass: password(client) },
      ...options,
    });
  /** Sends one message with a fresh transport and closes it. */
  const submit = async (
    client: string,
    mail: Parameters<ReturnType<typeof transport>['sendMail']>[0],
    options: Partial<SMTPTransport.Options> = {},
  ) => {
    const sender = transport(client, options);
    try {
      return await sender.sendMail(mail);
    } finally {
      sender.close();
    }
  };
  const sentWithSubject = (subject: string) =>
    eventually(async () => relay.capture.sent.find((sent) => sent.raw.includes(`Subject: ${subject}`)));
  const parse = (mime: Buffer) => simpleParser(mime, { keepCidLinks: true });
  const submitWithPython = (env: Record<string, string>) =>
    run('python3', ['-c', PYTHON_SUBMISSION], {
      env: {
        PATH: process.env.PATH ?? '',
        HOST: ingress.host,
        PORT: String(ingress.port),
        CA_FILE: caFile,
        IMAGE_PATH: imagePath,
        PDF_PATH: pdfPath,
        IMAGE_CID: 'logo@python.example.com',
        CALENDAR,
        ...env,
      },
    });
  /** What an authenticated session sees: STARTTLS, EHLO again, AUTH PLAIN. */
  const authenticatedSession = async (client: string) => {
    const { session } = await SmtpSession.open(ingress.host, ingress.port);
    await session.command('EHLO raw.client.test');
    await session.startTls(ingress.certificatePem, ingress.host);
    await session.command('EHLO raw.client.test');
    const plain = Buffer.from(`\0${client}\0${password(client)}`).toString('base64');
    const auth = await session.command(`AUTH PLAIN ${plain}`);
    if (auth.code !== 235) throw new Error(`AUTH failed: ${auth.text}`);
    return session;
  };

  /** The Python message's parts, as any provider must deliver them. */
  const expectPythonPartsIntact = (mail: ParsedMail, subject: string, messageId: string) => {
    expect(mail.subject).toBe(subject);
    expect(mail.messageId).toBe(messageId);
    expect(mail.text).toContain('The quarterly report is attached.');
    expect(mail.html).toContain('src="cid:logo@python.example.com"');
    const report = mail.attachments.find((attachment) => attachment.filename === 'report.pdf');
    expect(report?.contentType).toBe('application/pdf');
    expect(report?.content.equals(pdf)).toBe(true);
    const logo = mail.attachments.find((attachment) => attachment.cid === 'logo@python.example.com');
    expect(logo).toMatchObject({ contentType: 'image/png', related: true });
    expect(logo?.content.equals(image)).toBe(true);
    const invite = mail.attachments.find((attachment) => attachment.contentType === 'text/calendar');
    expect(invite?.headers.get('content-type')).toMatchObject({ params: { method: 'REQUEST' } });
    expect(invite?.content.toString()).toBe(CALENDAR);
  };

  beforeAll(async () => {
    const configPath = path.join(workDir, 'config.json');
    writeFileSync(
      configPath,
      JSON.stringify({
        ses: { identities: ['example.com'] },
        graph: {
          tenantId: 'contoso.onmicrosoft.com',
          clientId: '6f1e2d3c-0000-4000-8000-00000000e2e1',
          senders: ['contoso.com'],
        },
        queue: { maxReceiveCount: 2 },
        // Retries within seconds, so a test would see them.
        retry: { baseDelaySeconds: 1, maxDelaySeconds: 1 },
        message: { maxRecipients: 5 },
        ingress: {
          clients: [
            { name: 'app', allowedCidrs: ['127.0.0.1/32'], senders: ['*@example.com'] },
            { name: 'crm', allowedCidrs: ['127.0.0.1/32'], senders: ['*@contoso.com'] },
            { name: 'faraway', allowedCidrs: ['192.0.2.0/24'], senders: ['*@example.com'] },
          ],
          // Bigger messages travel by S3 reference instead of inside the outbox message.
          inlineMaxBytes: 2048,
        },
      }),
    );
    writeFileSync(imagePath, image);
    writeFileSync(pdfPath, pdf);
    relay = await startLocalRelay({
      ...isolatedLocalMode(workDir),
      graphPeer: true,
      configPath,
      logLevel: 'ERROR',
    });
    if (!relay.smtpIngress) throw new Error('local mode did not start the SMTP submission listener');
    ingress = relay.smtpIngress;
    writeFileSync(caFile, ingress.certificatePem);
    sqs = producerClient(relay.sqsEndpoint);
    s3 = new S3Client({
      region: LOCAL_REGION,
      endpoint: relay.sqsEndpoint,
      forcePathStyle: true,
      credentials: { accessKeyId: 'producer', secretAccessKey: 'producer' },
    });
  });
  afterAll(async () => {
    sqs?.destroy();
    s3?.destroy();
    await relay?.stop();
  });

  describe('accepted submissions', () => {
    it("delivers Python smtplib's multipart message through SES with its parts, its Message-ID and a trace header, and Bcc only in the envelope", async () => {
      const subject = `Quarterly report ${randomUUID()}`;
      const messageId = `<python-${randomUUID()}@example.com>`;

      const { stdout } = await submitWithPython({
        USER: 'app',
        PASSWORD: password('app'),
        FROM: 'Reports <reports@example.com>',
        TO: 'ana@example.org',
        BCC: 'audit@example.org',
        SUBJECT: subject,
        MESSAGE_ID: messageId,
      });

      expect(stdout).toMatch(/^250 2\.0\.0 queued as \S+/);
      const sent = await sentWithSubject(subject);
      const mail = await parse(sent.raw);
      expectPythonPartsIntact(mail, subject, messageId);
      expect(mail.headers.get(TRACE_HEADERS.messageId.toLowerCase())).toBe(queuedAs(stdout));
      expect(sent.raw.toString('latin1')).not.toMatch(/^bcc:/im);
      expect(sent.fromEmailAddress).toBe('reports@example.com');
      expect(sent.destination.to).toEqual(['ana@example.org', 'audit@example.org']);
    });

    it('delivers the same kind of message from a Graph sender to Microsoft Graph as MIME, parts intact', async () => {
      const subject = `Graph report ${randomUUID()}`;
      const messageId = `<python-${randomUUID()}@contoso.com>`;

      await submitWithPython({
        USER: 'crm',
        PASSWORD: password('crm'),
        FROM: 'CRM <crm@contoso.com>',
        TO: 'ana@example.org',
        BCC: 'audit@example.org',
        SUBJECT: subject,
        MESSAGE_ID: messageId,
      });

      const peer = relay.graphPeer;
      if (!peer) throw new Error('local mode did not start the Graph peer');
      const delivered = await eventually(async () =>
        peer.delivered.find((message) => message.message.subject === subject),
      );
      expect(delivered).toMatchObject({ mailbox: 'crm@contoso.com', via: 'mime' });
      expectPythonPartsIntact(await parse(delivered.mime ?? Buffer.alloc(0)), subject, messageId);
      // Graph sends to the header recipients: the envelope-only Bcc becomes a Bcc that Exchange strips.
      expect(delivered.message.bccRecipients).toEqual([{ emailAddress: { address: 'audit@example.org' } }]);
      expect(relay.capture.sent.some((sent) => sent.raw.includes(subject))).toBe(false);
    });

    it('delivers a 200 KB attachment sent with nodemailer byte for byte, by S3 reference', async () => {
      const subject = `Large scan ${randomUUID()}`;
      const scan = patterned(200 * 1024, 3);

      const info = await submit('app', {
        from: 'scanner@example.com',
        to: 'ana@example.org',
        subject,
        text: 'Scan attached.',
        attachments: [{ filename: 'scan.pdf', contentType: 'application/pdf', content: scan }],
      });

      expect(info.response).toMatch(/^250 2\.0\.0 queued as \S+/);
      const mail = await parse((await sentWithSubject(subject)).raw);
      const attachment = mail.attachments.find((candidate) => candidate.filename === 'scan.pdf');
      expect(attachment?.content.equals(scan)).toBe(true);
      // Over inlineMaxBytes: the stored submission stays, as the send function read it from there.
      const idempotencyKey = mail.headers.get(TRACE_HEADERS.idempotencyKey.toLowerCase());
      const stored = await s3.send(
        new ListObjectsV2Command({ Bucket: INGRESS_BUCKET_NAME, Prefix: 'ingress/app/' }),
      );
      const object = stored.Contents?.find(
        ({ Key }) => submissionIdempotencyKey(INGRESS_BUCKET_NAME, Key ?? '') === idempotencyKey,
      );
      expect(object?.Size).toBeGreaterThan(200 * 1024);
      const record = await lookUpDelivery(String(idempotencyKey), { endpoint: relay.dynamoDbEndpoint });
      expect(record).toMatchObject({ state: 'sent', provider: 'ses', messageId: queuedAs(info.response) });
    });

    it('repairs a messy submission from a raw session: CRLF, Date, Message-ID, From display name, long lines, Latin-1 body', async () => {
      const subject = `Scan ${randomUUID()}`;
      const body = [
        'Gescannt am Empfang. Grüße aus Köln, café crème, ½ Seite.',
        'Überlänge äöü ß é '.repeat(170).slice(0, 3000),
        'Ende.',
      ].join('\n');
      const message = Buffer.from(
        [
          'From: "scan@printer" <scanner@example.com>',
          'To: ana@example.org',
          `Subject: ${subject}`,
          '',
          body,
        ].join('\n'),
        'latin1',
      );
      expect(message.toString('latin1')).not.toContain('\r');

      const session = await authenticatedSession('app');
      try {
        expect((await session.command('MAIL FROM:<scanner@example.com>')).code).toBe(250);
        expect((await session.command('RCPT TO:<ana@example.org>')).code).toBe(250);
        expect((await session.data(message)).text).toMatch(/^250 2\.0\.0 queued as \S+/);
      } finally {
        await session.quit();
      }

      const sent = await sentWithSubject(subject);
      const raw = sent.raw.toString('latin1');
      expect(raw).not.toMatch(/\r(?!\n)|(?<!\r)\n/);
      const longest = Math.max(...raw.split('\r\n').map((line) => line.length));
      expect(longest).toBeLessThanOrEqual(998);
      const mail = await parse(sent.raw);
      expect(mail.date).toBeInstanceOf(Date);
      expect(mail.messageId).toMatch(/^<[^<>\s]+@[^<>\s]+>$/);
      expect(mail.from?.value).toEqual([{ name: 'scan at printer', address: 'scanner@example.com' }]);
      expect(mail.text?.replace(/\r\n/g, '\n').replace(/\n$/, '')).toBe(body);
    });
  });

  describe('refusals during the SMTP session', () => {
    it('refuses an envelope sender the client may not use at MAIL FROM with 550 5.7.1', async () => {
      const refused = submit('app', {
        from: 'app@example.com',
        to: 'ana@example.org',
        subject: 'Envelope sender not allowed',
        text: 'Hello',
        envelope: { from: 'ceo@other.example', to: ['ana@example.org'] },
      });

      await expect(refused).rejects.toMatchObject({
        command: 'MAIL FROM',
        responseCode: 550,
        response:
          '550 5.7.1 sender not allowed for client app: envelope sender ceo@other.example is not one of its senders (*@example.com)',
      } satisfies SmtpError);
    });

    it('refuses a header From the client may not use at the end of DATA with 550 5.7.1, and nothing reaches SES', async () => {
      const subject = `Header From not allowed ${randomUUID()}`;
      const refused = submit('app', {
        from: 'ceo@other.example',
        to: 'ana@example.org',
        subject,
        text: 'Hello',
        envelope: { from: 'app@example.com', to: ['ana@example.org'] },
      });

      await expect(refused).rejects.toMatchObject({
        command: 'DATA',
        responseCode: 550,
        response:
          '550 5.7.1 sender not allowed for client app: From ceo@other.example is not one of its senders (*@example.com)',
      } satisfies SmtpError);
      // A message queued after the refused one arrives; the refused one never does.
      const after = `After the refusal ${randomUUID()}`;
      await submit('app', { from: 'app@example.com', to: 'ana@example.org', subject: after, text: 'Hello' });
      await sentWithSubject(after);
      expect(relay.capture.sent.some((sent) => sent.raw.includes(subject))).toBe(false);
    });

    it('refuses a wrong password with 535 5.7.8', async () => {
      const refused = submit(
        'app',
        { from: 'app@example.com', to: 'ana@example.org', subject: 'Wrong password', text: 'Hello' },
        { auth: { user: 'app', pass: `${password('app')}-wrong` } },
      );

      await expect(refused).rejects.toMatchObject({
        responseCode: 535,
        response: '535 5.7.8 authentication credentials invalid',
      } satisfies SmtpError);
    });

    it('refuses AUTH before STARTTLS with 530 5.7.0, so no password is checked over plain text', async () => {
      const refused = submit(
        'app',
        { from: 'app@example.com', to: 'ana@example.org', subject: 'No TLS', text: 'Hello' },
        { requireTLS: false, ignoreTLS: true },
      );

      // smtp-server's own reply (538, non-standard), as RFC 3207 words it, with its enhanced code.
      await expect(refused).rejects.toMatchObject({
        responseCode: 530,
        response: '530 5.7.0 Error: Must issue a STARTTLS command first',
      } satisfies SmtpError);
    });

    it('refuses a client authenticating from an address outside its CIDR blocks with 550 5.7.1', async () => {
      const refused = submit('faraway', {
        from: 'faraway@example.com',
        to: 'ana@example.org',
        subject: 'From afar',
        text: 'Hello',
      });

      await expect(refused).rejects.toMatchObject({
        responseCode: 550,
        response: '550 5.7.1 client faraway may not connect from 127.0.0.1',
      } satisfies SmtpError);
    });

    it('answers a client outside its CIDR blocks the same whatever the password, so the password cannot be guessed from there', async () => {
      const refused = submit(
        'faraway',
        { from: 'faraway@example.com', to: 'ana@example.org', subject: 'Guessing', text: 'Hello' },
        { auth: { user: 'faraway', pass: 'not-the-password' } },
      );

      await expect(refused).rejects.toMatchObject({
        responseCode: 550,
        response: '550 5.7.1 client faraway may not connect from 127.0.0.1',
      } satisfies SmtpError);
    });

    it('refuses a subject with a right-to-left override at the end of DATA with 550 5.6.0 naming U+202E', async () => {
      const refused = submit('app', {
        from: 'app@example.com',
        to: 'ana@example.org',
        subject: 'Invoice \u202Efdp.exe',
        text: 'Hello',
      });

      await expect(refused).rejects.toMatchObject({
        command: 'DATA',
        responseCode: 550,
        response:
          '550 5.6.0 subject: contains a bidirectional override or isolate (U+202E), which would make it display as something it is not',
      } satisfies SmtpError);
    });

    it('refuses the recipient beyond message.maxRecipients at RCPT with 452 4.5.3', async () => {
      const session = await authenticatedSession('app');
      try {
        expect((await session.command('MAIL FROM:<app@example.com>')).code).toBe(250);
        for (let index = 1; index <= 5; index += 1) {
          expect((await session.command(`RCPT TO:<r${index}@example.org>`)).code).toBe(250);
        }

        const sixth = await session.command('RCPT TO:<r6@example.org>');

        expect(sixth.text).toBe('452 4.5.3 too many recipients: at most 5 per message');
      } finally {
        await session.quit();
      }
    });
  });

  describe('failures after the submission was accepted', () => {
    it('dead-letters a message SES rejects, with its failure code and reason', async () => {
      relay.capture.injectFault({
        status: 400,
        code: 'MessageRejected',
        message: 'Email address is not verified.',
      });

      const info = await submit('app', {
        from: 'app@example.com',
        to: 'ana@example.org',
        subject: `Rejected by SES ${randomUUID()}`,
        text: 'Hello',
      });

      const outboxMessageId = queuedAs(info.response);
      const dead = await eventually(async () => {
        const messages = await drain(sqs, relay.deadLetterQueueUrl, { polls: 1 });
        return messages.find(
          (message) =>
            message.MessageAttributes?.[DEAD_LETTER_ATTRIBUTES.sourceMessageId]?.StringValue ===
            outboxMessageId,
        );
      });
      const attribute = (name: string) => dead.MessageAttributes?.[name]?.StringValue;
      expect(attribute(DEAD_LETTER_ATTRIBUTES.code)).toBe('MessageRejected');
      expect(attribute(DEAD_LETTER_ATTRIBUTES.reason)).toContain('Email address is not verified.');
      expect(attribute(DEAD_LETTER_ATTRIBUTES.failureClass)).toBe('permanent');
      expect(attribute(DEAD_LETTER_ATTRIBUTES.provider)).toBe('ses');
    });
  });

  describe('the ingest function on stored submissions (as Mail Manager writes them)', () => {
    let handler: ReturnType<typeof createIngestHandler>;
    let ingestDeadLetterQueueUrl: string;

    beforeAll(async () => {
      const queue = await sqs.send(new GetQueueUrlCommand({ QueueName: INGEST_DEAD_LETTER_QUEUE_NAME }));
      ingestDeadLetterQueueUrl = queue.QueueUrl ?? '';
      const settings = ingestSettingsFor(relay.config, {
        queueUrl: relay.queueUrl,
        deadLetterQueueUrl: ingestDeadLetterQueueUrl,
        bucket: INGRESS_BUCKET_NAME,
      });
      handler = createIngestHandler({ ...process.env, MAIL_RELAY_SETTINGS: JSON.stringify(settings) });
    });

    /** Stores a MIME message where Mail Manager would, under the client's prefix. */
    const store = async (client: string, mail: ConstructorParameters<typeof MailComposer>[0]) => {
      const key = `ingress/${client}/${randomUUID()}`;
      const bytes = await new MailComposer(mail).compile().build();
      await s3.send(new PutObjectCommand({ Bucket: INGRESS_BUCKET_NAME, Key: key, Body: bytes }));
      return { key, bytes };
    };
    const invoke = (key: string) =>
      handler(
        s3Event(INGRESS_BUCKET_NAME, key),
        localLambdaContext('mail-relay-ingest-local', LOCAL_REGION, 30_000),
      );

    it('sends a stored submission exactly once when its S3 event comes twice', async () => {
      const subject = `Stored twice ${randomUUID()}`;
      const { key, bytes } = await store('app', {
        from: 'billing@example.com',
        to: 'ana@example.org',
        subject,
        text: 'Invoice attached.',
        attachments: [{ filename: 'invoice.pdf', content: patterned(4096, 4) }],
      });
      expect(bytes.length).toBeGreaterThan(2048);

      await invoke(key);
      await invoke(key);

      const sent = await sentWithSubject(subject);
      // Both outbox messages handled: the second found the ledger's entry and sent nothing.
      await eventually(async () => ((await approximateCount(sqs, relay.queueUrl)) === 0 ? true : undefined));
      expect(relay.capture.sent.filter((candidate) => candidate.raw.includes(subject))).toHaveLength(1);
      const record = await lookUpDelivery(submissionIdempotencyKey(INGRESS_BUCKET_NAME, key), {
        endpoint: relay.dynamoDbEndpoint,
      });
      expect(record).toMatchObject({ state: 'sent', provider: 'ses', providerMessageId: sent.messageId });
    });

    it('puts a stored submission whose From the client may not use in the ingest DLQ as JSON, with SenderNotAllowed and 550 5.7.1', async () => {
      const { key } = await store('app', {
        from: 'ceo@contoso.com',
        to: 'ana@example.org',
        subject: `Not my sender ${randomUUID()}`,
        text: 'Hello',
      });

      await invoke(key);

      const refused = await eventually(async () => {
        const messages = await drain(sqs, ingestDeadLetterQueueUrl, { polls: 1 });
        return messages
          .map((message) => JSON.parse(message.Body ?? '{}') as RefusedSubmission)
          .find((submission) => submission.key === key);
      });
      expect(refused).toMatchObject({
        bucket: INGRESS_BUCKET_NAME,
        client: 'app',
        code: 'SenderNotAllowed',
        reply: '550 5.7.1',
        reason:
          'sender not allowed for client app: From ceo@contoso.com is not one of its senders (*@example.com)',
      } satisfies Partial<RefusedSubmission>);
      // Kept for inspection.
      await expect(
        s3.send(new HeadObjectCommand({ Bucket: INGRESS_BUCKET_NAME, Key: key })),
      ).resolves.toBeDefined();
    });
  });
});

/** The S3 event notification Mail Manager's write causes (keys URL-encoded, as S3 sends them). */
function s3Event(bucket: string, key: string): S3Event {
  return {
    Records: [
      {
        eventVersion: '2.1',
        eventSource: 'aws:s3',
        awsRegion: LOCAL_REGION,
        eventTime: new Date().toISOString(),
        eventName: 'ObjectCreated:Put',
        userIdentity: { principalId: 'mail-manager' },
        requestParameters: { sourceIPAddress: '127.0.0.1' },
        responseElements: { 'x-amz-request-id': 'local', 'x-amz-id-2': 'local' },
        s3: {
          s3SchemaVersion: '1.0',
          configurationId: 'ingress',
          bucket: { name: bucket, ownerIdentity: { principalId: 'local' }, arn: `arn:aws:s3:::${bucket}` },
          object: {
            key: encodeURIComponent(key).replaceAll('%2F', '/'),
            size: 0,
            eTag: 'local',
            sequencer: '0',
          },
        },
      },
    ],
  };
}
