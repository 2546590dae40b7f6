import { randomBytes } from 'node:crypto';
import { GetObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { SendMessageBatchCommand, SendMessageCommand, type SQSClient } from '@aws-sdk/client-sqs';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import {
  createRelayClient,
  type RelayClient,
  RelayMessageError,
  RelayQueueError,
  SQS_MAX_MESSAGE_BYTES,
} from '../../client/index.ts';
import { defaultMessageSchema, parseMessage } from '../../lambda/core/message.ts';
import { createQueue, drain, type QueueAndBucket, startQueueAndBucket } from '../helpers/peers.ts';

const BUCKET = 'relay-client-test-attachments';

describe('createRelayClient against the SQS and S3 emulator (fauxqs)', () => {
  let peers: QueueAndBucket;
  let sqs: SQSClient;
  let s3: S3Client;

  beforeAll(async () => {
    peers = await startQueueAndBucket(BUCKET);
    ({ sqs, s3 } = peers);
  });
  afterAll(() => peers.stop());

  const newClient = async (options: { bucket?: boolean; maxInlineBytes?: number } = {}) => {
    const { url } = await createQueue(sqs);
    const client = createRelayClient({
      queueUrl: url,
      sqs,
      s3,
      ...(options.bucket !== false && { attachmentBucket: BUCKET }),
      ...(options.maxInlineBytes !== undefined && { maxInlineBytes: options.maxInlineBytes }),
    });
    return { client, url };
  };
  const bodies = async (url: string) =>
    (await drain(sqs, url)).map((message) => JSON.parse(message.Body ?? '') as Record<string, unknown>);
  const objectBytes = async (bucket: string, key: string) => {
    const object = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    return Buffer.from((await object.Body?.transformToByteArray()) ?? []);
  };

  it('enqueues a valid message as the contract, attachments given as bytes encoded to base64', async () => {
    const { client, url } = await newClient();
    const pdf = randomBytes(2_000);

    const result = await client.send({
      from: 'Billing <billing@example.com>',
      to: 'ana@example.org',
      subject: 'Invoice 42',
      text: 'Attached.',
      attachments: [{ filename: 'invoice.pdf', contentType: 'application/pdf', content: pdf }],
      idempotencyKey: 'invoice-42',
    });

    expect(result).toEqual({
      messageId: expect.stringMatching(/^[0-9a-f-]{36}$/),
      idempotencyKey: 'invoice-42',
      uploaded: [],
    });
    const [body] = await bodies(url);
    expect(body).toEqual({
      v: 1,
      from: 'Billing <billing@example.com>',
      to: 'ana@example.org',
      subject: 'Invoice 42',
      text: 'Attached.',
      attachments: [
        { filename: 'invoice.pdf', contentType: 'application/pdf', content: pdf.toString('base64') },
      ],
      idempotencyKey: 'invoice-42',
    });
  });

  it('refuses an invalid message before enqueueing it, naming every wrong field', async () => {
    const { client, url } = await newClient();

    const error = await client
      .send({
        from: 'not an address',
        to: ['ana@example.org'],
        subject: 'Hi\r\nBcc: victim@example.org',
        attachments: [{ filename: '../etc/passwd', content: 'aGk=' }],
        headers: { 'Content-Type': 'text/html' },
        // @ts-expect-error an unknown field, as a JavaScript caller could send it
        attachements: [],
      })
      .catch((failure: unknown) => failure);

    expect(error).toBeInstanceOf(RelayMessageError);
    const problems = (error as RelayMessageError).problems;
    expect(problems).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^from: /),
        'subject: must not contain CR or LF characters (header injection)',
        'attachments[0].filename: must be a file name, not a path',
        expect.stringMatching(/^headers\["Content-Type"\]: custom header names must start with "X-"/),
        'attachements: unknown field',
        'text: no body: set text, html or both',
      ]),
    );
    expect((error as Error).message).toContain('  - subject: must not contain CR or LF');
    expect(await drain(sqs, url)).toEqual([]);
  });

  describe('idempotency key', () => {
    it('is derived from the content when absent: the same message gets the same key, however it is written', async () => {
      const { client } = await newClient();
      const base = { from: 'app@example.com', subject: 'Report', text: 'Numbers.' };

      const first = await client.send({ ...base, to: 'ana@example.org' });
      const again = await client.send({ ...base, to: ['ana@example.org'] });
      const asObject = await client.send({ ...base, to: { address: 'ana@example.org' } });
      const other = await client.send({ ...base, to: 'ana@example.org', text: 'Other numbers.' });

      expect(first.idempotencyKey).toMatch(/^sha256:[0-9a-f]{64}$/);
      expect(again.idempotencyKey).toBe(first.idempotencyKey);
      expect(asObject.idempotencyKey).toBe(first.idempotencyKey);
      expect(other.idempotencyKey).not.toBe(first.idempotencyKey);
      expect(first.messageId).not.toBe(again.messageId);
    });

    it('keeps the caller’s key, and is left unset with deriveIdempotencyKey: false', async () => {
      const { url } = await createQueue(sqs);
      const client = createRelayClient({ queueUrl: url, sqs, deriveIdempotencyKey: false });
      const message = { from: 'app@example.com', to: 'ana@example.org', subject: 'Hi', text: 'Hello' };

      expect((await client.send(message)).idempotencyKey).toBeUndefined();
      expect((await client.send({ ...message, idempotencyKey: 'mine-1' })).idempotencyKey).toBe('mine-1');
      const [unset, mine] = await bodies(url);
      expect(unset).not.toHaveProperty('idempotencyKey');
      expect(mine?.idempotencyKey).toBe('mine-1');
    });
  });

  describe('the claim check', () => {
    it('uploads a 5 MB attachment to the bucket and references it; the object holds the exact bytes', async () => {
      const { client, url } = await newClient();
      const scan = randomBytes(5 * 1024 * 1024);
      const logo = randomBytes(1_000);

      const result = await client.send({
        from: 'scanner@example.com',
        to: 'ana@example.org',
        subject: 'Scan',
        html: '<p>Scan attached.</p><img src="cid:logo@example.com">',
        attachments: [
          { filename: 'logo.png', contentType: 'image/png', content: logo, contentId: 'logo@example.com' },
          { filename: 'scan.pdf', contentType: 'application/pdf', content: scan },
        ],
      });

      expect(result.uploaded).toHaveLength(1);
      const [received] = await drain(sqs, url);
      const raw = received?.Body ?? '';
      expect(Buffer.byteLength(raw)).toBeLessThan(SQS_MAX_MESSAGE_BYTES);
      const body = JSON.parse(raw) as { attachments: Record<string, unknown>[]; idempotencyKey: string };
      // The small inline image stays in the message; the large file is a reference.
      expect(body.attachments[0]).toEqual({
        filename: 'logo.png',
        contentType: 'image/png',
        content: logo.toString('base64'),
        contentId: 'logo@example.com',
      });
      expect(body.attachments[1]).toEqual({
        filename: 'scan.pdf',
        contentType: 'application/pdf',
        s3: { bucket: BUCKET, key: expect.stringMatching(/^relay-client\/[0-9a-f]{64}$/) },
      });
      expect(body.attachments[1]?.s3).toEqual(result.uploaded[0]);
      expect(body.idempotencyKey).toBe(result.idempotencyKey);
      expect(parseMessage(raw, defaultMessageSchema).ok).toBe(true);
      const { bucket, key } = result.uploaded[0] ?? { bucket: '', key: '' };
      expect((await objectBytes(bucket, key)).equals(scan)).toBe(true);
    });

    it('uses a configurable threshold and keeps the derived key of the message as written', async () => {
      const { client, url } = await newClient({ maxInlineBytes: 10_000 });
      const file = randomBytes(20_000);
      const message = {
        from: 'app@example.com',
        to: 'ana@example.org',
        subject: 'Small threshold',
        text: 'x',
        attachments: [{ filename: 'data.bin', content: file }],
      };

      const result = await client.send(message);
      const again = await client.send(message);

      expect(result.uploaded).toHaveLength(1);
      expect(again.idempotencyKey).toBe(result.idempotencyKey);
      // Content-addressed: the same file is the same object.
      expect(again.uploaded).toEqual(result.uploaded);
      const [body] = await bodies(url);
      expect((body?.attachments as { s3: unknown }[] | undefined)?.[0]?.s3).toEqual(result.uploaded[0]);
    });

    it('puts raw MIME too big for SQS in the bucket as mime.s3', async () => {
      const { client, url } = await newClient();
      const mime = Buffer.concat([
        Buffer.from('From: app@example.com\r\nTo: ana@example.org\r\nSubject: Big\r\n\r\n'),
        Buffer.from(randomBytes(900_000).toString('base64')),
      ]);

      const result = await client.send({
        from: 'app@example.com',
        recipients: ['ana@example.org'],
        mime: { content: mime },
      });

      const [body] = await bodies(url);
      expect(body?.mime).toEqual({ s3: result.uploaded[0] });
      const { bucket, key } = result.uploaded[0] ?? { bucket: '', key: '' };
      expect((await objectBytes(bucket, key)).equals(mime)).toBe(true);
    });

    it('refuses a message too big for SQS when it has no bucket, saying what to do', async () => {
      const { client, url } = await newClient({ bucket: false });

      const error = await client
        .send({
          from: 'app@example.com',
          to: 'ana@example.org',
          subject: 'Too big',
          text: 'x',
          attachments: [{ filename: 'big.bin', content: randomBytes(900_000) }],
        })
        .catch((failure: unknown) => failure);

      expect(error).toBeInstanceOf(RelayMessageError);
      expect((error as RelayMessageError).problems[0]).toMatch(
        /^attachments: the message is \d+ bytes as JSON and SQS takes at most 1048576: give the client an attachmentBucket/,
      );
      expect(await drain(sqs, url)).toEqual([]);
    });
  });

  it('sends text beyond the Basic Multilingual Plane (emoji) as JSON escapes, which parse back to the same text', async () => {
    const { client, url } = await newClient();

    await client.send({
      from: 'app@example.com',
      to: 'ana@example.org',
      subject: 'Party 🎉',
      text: 'See you 👋',
    });

    const [received] = await drain(sqs, url);
    expect(received?.Body).toContain('Party \\ud83c\\udf89');
    const parsed = parseMessage(received?.Body ?? '', defaultMessageSchema);
    expect(parsed.ok && 'subject' in parsed.message && parsed.message.subject).toBe('Party 🎉');
  });

  describe('sendBatch', () => {
    const message = (index: number, extra: Record<string, unknown> = {}) => ({
      from: 'app@example.com',
      to: `user${index}@example.org`,
      subject: `Batch ${index}`,
      text: 'Hello',
      ...extra,
    });

    it('sends in groups of 10 and reports each message: its id, or the problems of the bad ones', async () => {
      const { client, url } = await newClient();
      const send = vi.spyOn(sqs, 'send');
      const messages = Array.from({ length: 23 }, (_, index) => message(index));
      messages[4] = message(4, { from: 'nobody' });
      messages[17] = message(17, { subject: '' });

      const results = await client.sendBatch(messages);
      const batchCalls = send.mock.calls.filter(([command]) => command instanceof SendMessageBatchCommand);
      send.mockRestore();

      expect(results).toHaveLength(23);
      expect(results.filter((result) => result.ok)).toHaveLength(21);
      expect(results[4]).toMatchObject({ ok: false, error: expect.any(RelayMessageError) });
      expect(results[4]?.ok === false && (results[4].error as RelayMessageError).problems[0]).toMatch(
        /^from: /,
      );
      expect(results[17]?.ok === false && (results[17].error as RelayMessageError).problems).toEqual([
        'subject: must not be empty',
      ]);
      expect(
        batchCalls.map(([command]) => (command as SendMessageBatchCommand).input.Entries?.length),
      ).toEqual([10, 10, 1]);
      const received = await drain(sqs, url, { polls: 5 });
      expect(received).toHaveLength(21);
      // Each result's id is the id of the message with that subject.
      for (const [index, result] of results.entries()) {
        if (!result.ok) continue;
        const match = received.find((candidate) => candidate.MessageId === result.messageId);
        expect((JSON.parse(match?.Body ?? '{}') as { subject: string }).subject).toBe(`Batch ${index}`);
        expect(result.idempotencyKey).toMatch(/^sha256:/);
      }
    });

    it('keeps each SendMessageBatch under 1 MiB of bodies', async () => {
      const { client, url } = await newClient();
      const send = vi.spyOn(sqs, 'send');
      const messages = Array.from({ length: 5 }, (_, index) =>
        message(index, { attachments: [{ filename: 'part.bin', content: randomBytes(300_000) }] }),
      );

      const results = await client.sendBatch(messages);
      const sizes = send.mock.calls
        .filter(([command]) => command instanceof SendMessageBatchCommand)
        .map(([command]) =>
          ((command as SendMessageBatchCommand).input.Entries ?? []).reduce(
            (total, entry) => total + Buffer.byteLength(entry.MessageBody ?? ''),
            0,
          ),
        );
      send.mockRestore();

      expect(results.every((result) => result.ok)).toBe(true);
      expect(sizes.length).toBeGreaterThan(1);
      expect(sizes.every((size) => size <= SQS_MAX_MESSAGE_BYTES)).toBe(true);
      expect(await drain(sqs, url, { polls: 3 })).toHaveLength(5);
    });

    it('reports an entry SQS refuses and sends the others of its batch', async () => {
      // A queue that takes only 1 KiB messages: SQS refuses the large entry alone.
      const { url } = await createQueue(sqs, { MaximumMessageSize: '1024' });
      const client = createRelayClient({ queueUrl: url, sqs });

      const results = await client.sendBatch([
        message(0),
        message(1, { text: 'x'.repeat(2_000) }),
        message(2),
      ]);

      expect(results.map((result) => result.ok)).toEqual([true, false, true]);
      expect(results[1]).toMatchObject({
        ok: false,
        error: expect.any(RelayQueueError),
        idempotencyKey: expect.stringMatching(/^sha256:/),
      });
      expect(results[1]?.ok === false && results[1].error.message).toMatch(/^InvalidParameterValue: /);
      expect(await drain(sqs, url)).toHaveLength(2);
    });

    it('never throws: a failed call is every entry’s error', async () => {
      const client = createRelayClient({ queueUrl: `${peers.endpoint}/000000000000/no-such-queue`, sqs });

      const results = await client.sendBatch([message(0), message(1, { from: '' })]);

      expect(results[0]).toMatchObject({ ok: false, error: expect.any(Error) });
      expect(results[0]?.ok === false && results[0].error.name).not.toBe('RelayMessageError');
      expect(results[1]).toMatchObject({ ok: false, error: expect.any(RelayMessageError) });
    });
  });

  it('makes its own clients for a local queue URL, and verify() checks the queue', async () => {
    const { url } = await createQueue(sqs);
    const client: RelayClient = createRelayClient({
      queueUrl: url,
      attachmentBucket: BUCKET,
      maxInlineBytes: 2_000,
    });
    try {
      expect(await client.verify()).toBe(true);
      const result = await client.send({
        from: 'app@example.com',
        to: 'ana@example.org',
        subject: 'Own clients',
        text: 'x',
        attachments: [{ filename: 'a.bin', content: randomBytes(3_000) }],
      });
      expect(result.uploaded).toHaveLength(1);
      expect(await bodies(url)).toHaveLength(1);
    } finally {
      client.close();
    }
  });

  it('checks its threshold', () => {
    expect(() => createRelayClient({ queueUrl: 'http://127.0.0.1:1/q', maxInlineBytes: 2_000_000 })).toThrow(
      /maxInlineBytes must be an integer from 1024 to 1048576/,
    );
  });

  it('sends what SendMessage would, so a plain SQS consumer sees the same body', async () => {
    const { client, url } = await newClient();
    const send = vi.spyOn(sqs, 'send');
    await client.send({ from: 'app@example.com', to: 'ana@example.org', subject: 'Plain', text: 'x' });
    const [command] = send.mock.calls
      .map(([call]) => call)
      .filter((call) => call instanceof SendMessageCommand);
    send.mockRestore();
    const [received] = await drain(sqs, url);
    expect(received?.Body).toBe((command as SendMessageCommand).input.MessageBody);
  });
});
