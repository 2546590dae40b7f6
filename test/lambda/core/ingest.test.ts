import MailComposer from 'nodemailer/lib/mail-composer';
import { describe, expect, it } from 'vitest';
import {
  Ingest,
  type Outbox,
  type StoredSubmission,
  type SubmissionStore,
  submissionIdempotencyKey,
} from '../../../lambda/core/ingest.ts';
import { defaultMessageSchema, parseMessage, type RawMessage } from '../../../lambda/core/message.ts';
import type { IngestSettings } from '../../../lambda/core/settings.ts';

const BUCKET = 'relay-ingress';

const SETTINGS: IngestSettings = {
  queueUrl: 'http://127.0.0.1:4566/000000000000/outbox',
  deadLetterQueueUrl: 'http://127.0.0.1:4566/000000000000/ingest-dlq',
  bucket: BUCKET,
  prefix: 'ingress/',
  inlineMaxBytes: 2_000,
  limits: { maxRecipients: 5, maxMessageBytes: 100_000 },
  clients: [
    { name: 'crm', senders: ['*@crm.fabrikam.com'], route: 'crm' },
    { name: 'scanner', senders: ['scanner@fabrikam.com'] },
  ],
};

/** Narrow unit tests of the checks and the message built; the listener tests run it against real peers. */
class MemoryStore implements SubmissionStore {
  readonly objects = new Map<string, Buffer>();
  readonly deleted: string[] = [];
  read(_bucket: string, key: string): Promise<StoredSubmission | undefined> {
    const bytes = this.objects.get(key);
    return Promise.resolve(bytes ? { bytes } : undefined);
  }
  delete(_bucket: string, key: string): Promise<void> {
    this.deleted.push(key);
    this.objects.delete(key);
    return Promise.resolve();
  }
}

class MemoryOutbox implements Outbox {
  readonly bodies: string[] = [];
  failNext = false;
  send(body: string): Promise<string> {
    if (this.failNext) {
      this.failNext = false;
      return Promise.reject(new Error('outbox unreachable'));
    }
    this.bodies.push(body);
    return Promise.resolve(`m-${this.bodies.length}`);
  }
}

function compose(fields: Record<string, unknown>, options: { keepBcc?: boolean } = {}): Promise<Buffer> {
  const node = new MailComposer({ subject: 'Invoice 42', text: 'See attached.', ...fields }).compile();
  // A client that writes its Bcc header out (nodemailer drops it unless told not to).
  if (options.keepBcc) node.keepBcc = true;
  return node.build();
}

function setup(settings: IngestSettings = SETTINGS) {
  const store = new MemoryStore();
  const outbox = new MemoryOutbox();
  const ingest = new Ingest(settings, { store, outbox, now: () => Date.parse('2026-11-29T10:00:00Z') });
  return { store, outbox, ingest };
}

function enqueued(outbox: MemoryOutbox, index = 0): RawMessage {
  const parsed = parseMessage(outbox.bodies[index] ?? '', defaultMessageSchema);
  if (!parsed.ok) throw new Error(parsed.problems.join('; '));
  return parsed.message as RawMessage;
}

describe('ingest of a stored submission', () => {
  it('puts a small message on the outbox inline, as a raw relay message of its client, and deletes the object', async () => {
    const { store, outbox, ingest } = setup();
    const key = 'ingress/crm/0001';
    store.objects.set(key, await compose({ from: 'Sales <sales@crm.fabrikam.com>', to: 'ana@example.org' }));

    const result = await ingest.ingest(BUCKET, key);

    expect(result).toMatchObject({ kind: 'enqueued', client: 'crm', inline: true, recipients: 1 });
    const message = enqueued(outbox);
    expect(message.from).toEqual({ name: 'Sales', address: 'sales@crm.fabrikam.com' });
    expect(message.recipients.map((mailbox) => mailbox.address)).toEqual(['ana@example.org']);
    expect(message.route).toBe('crm');
    expect(message.tags).toEqual({ ingressClient: 'crm' });
    expect(message.idempotencyKey).toBe(submissionIdempotencyKey(BUCKET, key));
    expect(Buffer.from(message.mime.content ?? '', 'base64').toString()).toContain('Subject: Invoice 42');
    expect(store.deleted).toEqual([key]);
  });

  it('references a message above the inline size in the bucket and keeps the object', async () => {
    const { store, outbox, ingest } = setup();
    const key = 'ingress/scanner/0002';
    store.objects.set(
      key,
      await compose({
        from: 'scanner@fabrikam.com',
        to: 'ana@example.org',
        attachments: [{ filename: 'scan.pdf', content: Buffer.alloc(5_000, 7) }],
      }),
    );

    const result = await ingest.ingest(BUCKET, key);

    expect(result).toMatchObject({ kind: 'enqueued', inline: false });
    expect(enqueued(outbox).mime).toEqual({ s3: { bucket: BUCKET, key } });
    expect(store.deleted).toEqual([]);
  });

  it('takes the recipients from the envelope when the caller knows it, Bcc included', async () => {
    const { store, outbox, ingest } = setup();
    const key = 'ingress/crm/0003';
    store.objects.set(key, await compose({ from: 'sales@crm.fabrikam.com', to: 'ana@example.org' }));

    await ingest.ingest(BUCKET, key, {
      envelope: { mailFrom: 'sales@crm.fabrikam.com', recipients: ['ana@example.org', 'hidden@example.org'] },
    });

    expect(enqueued(outbox).recipients.map((mailbox) => mailbox.address)).toEqual([
      'ana@example.org',
      'hidden@example.org',
    ]);
  });

  it('takes the recipients from To, Cc and Bcc headers when the envelope is unknown (as Mail Manager stores it)', async () => {
    const { store, outbox, ingest } = setup();
    const key = 'ingress/crm/0004';
    store.objects.set(
      key,
      await compose(
        {
          from: 'sales@crm.fabrikam.com',
          to: 'ana@example.org',
          cc: 'ANA@example.org, luis@example.org',
          bcc: 'boss@example.org',
        },
        { keepBcc: true },
      ),
    );

    await ingest.ingest(BUCKET, key);

    expect(enqueued(outbox).recipients.map((mailbox) => mailbox.address)).toEqual([
      'ana@example.org',
      'luis@example.org',
      'boss@example.org',
    ]);
  });

  it('refuses a From the client may not use, naming the client and its senders', async () => {
    const { store, outbox, ingest } = setup();
    store.objects.set('ingress/crm/0005', await compose({ from: 'ceo@fabrikam.com', to: 'ana@example.org' }));

    const result = await ingest.ingest(BUCKET, 'ingress/crm/0005');

    expect(result).toEqual({
      kind: 'refused',
      client: 'crm',
      refusal: {
        code: 'SenderNotAllowed',
        replyCode: 550,
        enhancedCode: '5.7.1',
        reason:
          'sender not allowed for client crm: From ceo@fabrikam.com is not one of its senders (*@crm.fabrikam.com)',
      },
    });
    expect(outbox.bodies).toEqual([]);
  });

  it('refuses a Sender header or an envelope sender the client may not use', async () => {
    const { store, ingest } = setup();
    store.objects.set(
      'ingress/crm/0006',
      await compose({ from: 'sales@crm.fabrikam.com', sender: 'ceo@fabrikam.com', to: 'ana@example.org' }),
    );
    store.objects.set(
      'ingress/crm/0007',
      await compose({ from: 'sales@crm.fabrikam.com', to: 'ana@example.org' }),
    );

    const bySender = await ingest.ingest(BUCKET, 'ingress/crm/0006');
    const byEnvelope = await ingest.ingest(BUCKET, 'ingress/crm/0007', {
      envelope: { mailFrom: 'ceo@fabrikam.com', recipients: ['ana@example.org'] },
    });

    expect(bySender).toMatchObject({ kind: 'refused', refusal: { code: 'SenderNotAllowed' } });
    expect(bySender.kind === 'refused' && bySender.refusal.reason).toContain('Sender ceo@fabrikam.com');
    expect(byEnvelope.kind === 'refused' && byEnvelope.refusal.reason).toContain(
      'envelope sender ceo@fabrikam.com',
    );
  });

  it('refuses a message over the size limit with 552 5.3.4', async () => {
    const { store, ingest } = setup({ ...SETTINGS, limits: { maxRecipients: 5, maxMessageBytes: 1_024 } });
    store.objects.set(
      'ingress/crm/0008',
      await compose({ from: 'sales@crm.fabrikam.com', to: 'ana@example.org', text: 'x'.repeat(2_000) }),
    );

    const result = await ingest.ingest(BUCKET, 'ingress/crm/0008');

    expect(result).toMatchObject({
      kind: 'refused',
      refusal: { code: 'MessageTooLarge', replyCode: 552, enhancedCode: '5.3.4' },
    });
  });

  it('refuses more recipients than the limit with the field and the limit', async () => {
    const { store, ingest } = setup();
    const recipients = ['a', 'b', 'c', 'd', 'e', 'f'].map((local) => `${local}@example.org`);
    store.objects.set('ingress/crm/0009', await compose({ from: 'sales@crm.fabrikam.com', to: recipients }));

    const result = await ingest.ingest(BUCKET, 'ingress/crm/0009');

    expect(result).toMatchObject({
      kind: 'refused',
      refusal: { code: 'InvalidRecipients', enhancedCode: '5.5.3' },
    });
    expect(result.kind === 'refused' && result.refusal.reason).toBe(
      'recipients: 6 recipients; at most 5 are allowed per message',
    );
  });

  it('refuses a subject with a bidirectional override as invalid MIME, naming the character', async () => {
    const { store, ingest } = setup();
    store.objects.set(
      'ingress/crm/0010',
      await compose({
        from: 'sales@crm.fabrikam.com',
        to: 'ana@example.org',
        subject: 'Invoice \u202Efdp.exe',
      }),
    );

    const result = await ingest.ingest(BUCKET, 'ingress/crm/0010');

    expect(result).toMatchObject({
      kind: 'refused',
      refusal: { code: 'InvalidMime', enhancedCode: '5.6.0' },
    });
    expect(result.kind === 'refused' && result.refusal.reason).toContain('U+202E');
  });

  it('refuses an object outside the prefix of a configured client', async () => {
    const { store, ingest } = setup();
    store.objects.set(
      'ingress/unknown/0011',
      await compose({ from: 'sales@crm.fabrikam.com', to: 'a@example.org' }),
    );

    const result = await ingest.ingest(BUCKET, 'ingress/unknown/0011');

    expect(result).toMatchObject({ kind: 'refused', client: 'unknown', refusal: { code: 'UnknownClient' } });
  });

  it('says an object that is gone was ingested already, and enqueues nothing', async () => {
    const { store, outbox, ingest } = setup();
    const key = 'ingress/crm/0012';
    store.objects.set(key, await compose({ from: 'sales@crm.fabrikam.com', to: 'ana@example.org' }));

    await ingest.ingest(BUCKET, key);
    const again = await ingest.ingest(BUCKET, key);

    expect(again).toEqual({ kind: 'gone', client: 'crm' });
    expect(outbox.bodies).toHaveLength(1);
  });

  it('keeps the object when the outbox cannot take the message, so a retry finds it', async () => {
    const { store, outbox, ingest } = setup();
    const key = 'ingress/crm/0013';
    store.objects.set(key, await compose({ from: 'sales@crm.fabrikam.com', to: 'ana@example.org' }));
    outbox.failNext = true;

    await expect(ingest.ingest(BUCKET, key)).rejects.toThrow('outbox unreachable');
    const retried = await ingest.ingest(BUCKET, key);

    expect(retried).toMatchObject({ kind: 'enqueued' });
    expect(store.deleted).toEqual([key]);
  });
});
