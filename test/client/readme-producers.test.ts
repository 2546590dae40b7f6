import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createRelayClient } from 'mail-relay/client';
import { MailRelayTransport } from 'mail-relay/nodemailer';
import { describe, expect, it } from 'vitest';
import { defaultMessageSchema, parseMessage } from '../../lambda/core/message.ts';

/** The README's "Producers" subsection, from its heading to the next section. */
function producersSection(): string {
  const readme = readFileSync('README.md', 'utf8');
  const start = readme.indexOf('\n### Producers\n');
  expect(start).toBeGreaterThan(0);
  return readme.slice(start, readme.indexOf('\n## ', start));
}

/** Stands in for boto3: records each call in the file BOTO3_CALLS names. */
const FAKE_BOTO3 = `
import json, os

def _record(call):
    with open(os.environ["BOTO3_CALLS"], "a") as calls:
        calls.write(json.dumps(call) + "\\n")

class _Client:
    def __init__(self, service, **options):
        self.service = service
    def upload_file(self, filename, bucket, key):
        _record({"call": "upload_file", "filename": filename, "bucket": bucket, "key": key})
    def send_message(self, QueueUrl, MessageBody, **rest):
        _record({"call": "send_message", "QueueUrl": QueueUrl, "MessageBody": MessageBody})

def client(service, **options):
    return _Client(service, **options)
`;

describe('README: Producers', () => {
  it('exports the producers as mail-relay/client and mail-relay/nodemailer', () => {
    expect(typeof createRelayClient).toBe('function');
    expect(typeof MailRelayTransport).toBe('function');
    const section = producersSection();
    expect(section).toContain("import { createRelayClient } from 'mail-relay/client';");
    expect(section).toContain("import { MailRelayTransport } from 'mail-relay/nodemailer';");
  });

  // python3 is needed by the suite anyway (the SMTP front door's tests use smtplib).
  it('runs the Python snippet: it uploads the file and sends a message the relay accepts', () => {
    const snippet = /```python\n([\s\S]*?)```/.exec(producersSection())?.[1] ?? '';
    expect(snippet).toContain('sqs.send_message');
    const dir = mkdtempSync(path.join(tmpdir(), 'mail-relay-readme-python-'));
    writeFileSync(path.join(dir, 'boto3.py'), FAKE_BOTO3);
    writeFileSync(path.join(dir, 'snippet.py'), snippet);
    writeFileSync(path.join(dir, 'report.pdf'), '%PDF-1.7\n');
    const calls = path.join(dir, 'calls.jsonl');

    const run = spawnSync('python3', ['snippet.py'], {
      cwd: dir,
      encoding: 'utf8',
      env: { ...process.env, PYTHONPATH: dir, BOTO3_CALLS: calls },
    });
    expect(run.stderr).toBe('');
    expect(run.status).toBe(0);

    const [upload, send] = readFileSync(calls, 'utf8')
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as Record<string, string>);
    expect(upload).toEqual({
      call: 'upload_file',
      filename: 'report.pdf',
      bucket: 'mail-relay-attachments',
      key: 'reports/2024-06/report.pdf',
    });
    expect(send?.call).toBe('send_message');
    const body = send?.MessageBody ?? '';
    const message = JSON.parse(body) as { attachments: { s3: unknown }[] };
    expect(message.attachments[0]?.s3).toEqual({ bucket: upload?.bucket, key: upload?.key });

    // The relay's own parsing (schema/message.schema.json is generated from the same schema, and
    // npm test checks the two agree).
    const parsed = parseMessage(body, defaultMessageSchema);
    expect(parsed.ok ? [] : parsed.problems).toEqual([]);
  });
});
