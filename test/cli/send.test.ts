import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildMessage, type SendFlags } from '../../cli/send.ts';
import { defaultMessageSchema, parseMessage } from '../../lambda/core/message.ts';

const required: SendFlags = {
  from: 'sender@example.com',
  to: ['rcpt@example.com'],
  subject: 'Hello',
  text: 'Hi',
};

async function bodyOf(flags: SendFlags): Promise<Record<string, unknown>> {
  const result = await buildMessage(flags);
  if (!('body' in result)) throw new Error(`expected a body, got problems: ${result.problems.join('; ')}`);
  expect(parseMessage(result.body, defaultMessageSchema).ok).toBe(true);
  return JSON.parse(result.body) as Record<string, unknown>;
}

async function problemsOf(flags: SendFlags): Promise<string[]> {
  const result = await buildMessage(flags);
  if ('body' in result) throw new Error(`expected problems, got body ${result.body}`);
  return result.problems;
}

describe('buildMessage', () => {
  let dir: string;

  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'mail-relay-send-test-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('turns the required flags into a contract-valid version 1 body', async () => {
    expect(await bodyOf(required)).toEqual({
      v: 1,
      from: 'sender@example.com',
      to: ['rcpt@example.com'],
      subject: 'Hello',
      text: 'Hi',
    });
  });

  it('splits comma-separated recipients and trims them', async () => {
    const body = await bodyOf({
      ...required,
      to: ['a@example.com, b@example.com', 'c@example.com'],
      cc: ['d@example.com,e@example.com'],
      bcc: ['f@example.com'],
      'reply-to': ['Support <support@example.com>'],
    });
    expect(body.to).toEqual(['a@example.com', 'b@example.com', 'c@example.com']);
    expect(body.cc).toEqual(['d@example.com', 'e@example.com']);
    expect(body.bcc).toEqual(['f@example.com']);
    expect(body.replyTo).toEqual(['Support <support@example.com>']);
  });

  it('turns --header "X-A: b" into a header, splitting at the first colon', async () => {
    const body = await bodyOf({ ...required, header: ['X-Tenant: acme', 'X-Link: https://example.com/a'] });
    expect(body.headers).toEqual({ 'X-Tenant': 'acme', 'X-Link': 'https://example.com/a' });
  });

  it('turns --tag k=v into tags', async () => {
    const body = await bodyOf({ ...required, tag: ['campaign=spring', 'tenant=acme'] });
    expect(body.tags).toEqual({ campaign: 'spring', tenant: 'acme' });
  });

  it('carries html and the idempotency key', async () => {
    const body = await bodyOf({ ...required, html: '<p>Hi</p>', 'idempotency-key': 'order-42' });
    expect(body.html).toBe('<p>Hi</p>');
    expect(body.idempotencyKey).toBe('order-42');
  });

  it('attaches a file as base64 with its file name and a content type from its extension', async () => {
    const bytes = randomBytes(2048);
    const file = path.join(dir, 'Invoice.PDF');
    await writeFile(file, bytes);
    const body = await bodyOf({ ...required, attach: [file] });
    expect(body.attachments).toEqual([
      { filename: 'Invoice.PDF', contentType: 'application/pdf', content: bytes.toString('base64') },
    ]);
  });

  it('attaches a file with an unknown extension as application/octet-stream', async () => {
    const file = path.join(dir, 'data.xyz');
    await writeFile(file, 'payload');
    const body = await bodyOf({ ...required, attach: [file] });
    expect(body.attachments).toEqual([
      {
        filename: 'data.xyz',
        contentType: 'application/octet-stream',
        content: Buffer.from('payload').toString('base64'),
      },
    ]);
  });

  it('reports a missing --from as a problem with the from field', async () => {
    const { from: _from, ...withoutFrom } = required;
    expect(await problemsOf(withoutFrom)).toEqual(['from: required']);
  });

  it('reports flag problems together with contract problems', async () => {
    const { from: _from, ...withoutFrom } = required;
    expect(await problemsOf({ ...withoutFrom, header: ['no-colon'] })).toEqual([
      '--header no-colon: expected NAME:VALUE',
      'from: required',
    ]);
  });

  it('keeps a quoted display name with a comma as one recipient', async () => {
    const built = await buildMessage({
      ...required,
      to: ['"Doe, Jane" <jane@example.com>, bob@example.com,'],
    });

    expect('body' in built && JSON.parse(built.body).to).toEqual([
      '"Doe, Jane" <jane@example.com>',
      'bob@example.com',
    ]);
  });

  it('reports a missing recipient', async () => {
    const { to: _to, ...withoutTo } = required;
    expect(await problemsOf(withoutTo)).toEqual(['to: no recipient: set at least one of to, cc, bcc']);
  });

  it('reports an invalid recipient by its position after splitting', async () => {
    expect(await problemsOf({ ...required, to: ['a@example.com,nope'] })).toEqual([
      'to[1]: is not a valid email address (expected "a@example.com" or "Name <a@example.com>")',
    ]);
  });

  it('reports a --header without a colon', async () => {
    expect(await problemsOf({ ...required, header: ['X-Tenant acme'] })).toEqual([
      '--header X-Tenant acme: expected NAME:VALUE',
    ]);
  });

  it('reports a --header whose name is not an X- header', async () => {
    expect(await problemsOf({ ...required, header: ['Subject: other'] })).toEqual([
      'headers.Subject: custom header names must start with "X-" (letters, digits, -)',
    ]);
  });

  it('reports a --tag without an equals sign', async () => {
    expect(await problemsOf({ ...required, tag: ['campaign'] })).toEqual([
      '--tag campaign: expected NAME=VALUE',
    ]);
  });

  it('reports an --attach file that cannot be read', async () => {
    const missing = path.join(dir, 'missing.pdf');
    expect(await problemsOf({ ...required, attach: [missing] })).toEqual([
      `--attach ${missing}: ENOENT: no such file or directory, open '${missing}'`,
    ]);
  });

  it('reports every flag problem at once', async () => {
    const missing = path.join(dir, 'missing.txt');
    const problems = await problemsOf({ ...required, header: ['bad'], tag: ['bad'], attach: [missing] });
    expect(problems).toEqual([
      '--header bad: expected NAME:VALUE',
      '--tag bad: expected NAME=VALUE',
      `--attach ${missing}: ENOENT: no such file or directory, open '${missing}'`,
    ]);
  });
});
