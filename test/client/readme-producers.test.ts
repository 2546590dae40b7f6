import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createRelayClient } from 'mail-relay/client';
import { MailRelayTransport } from 'mail-relay/nodemailer';
import { describe, expect, it } from 'vitest';
import { defaultMessageSchema, parseMessage } from '../../lambda/core/message.ts';
import { OUTBOX_QUEUE_NAME } from '../../local/local-names.ts';
import { phpArrayLiteral } from '../helpers/php-array-literal.ts';

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

  // Static, unlike the Python snippet: PHP is not installed here and CI cannot install it. The
  // snippet's $message is a plain array literal, read as json_encode would write it by a strict reader
  // (test/helpers/php-array-literal.ts refuses anything it cannot read exactly as PHP does), then
  // checked with the relay's own parsing; the call is checked for what SQS needs.
  it('checks the PHP snippet: the message it builds is one the relay accepts, sent with sendMessage', () => {
    const snippet = /```php\n([\s\S]*?)```/.exec(producersSection())?.[1] ?? '';
    const assignment = snippet.indexOf('$message = [');
    expect(assignment).toBeGreaterThan(0);
    const { value, end } = phpArrayLiteral(snippet, assignment + '$message = '.length);
    expect(snippet.slice(end).trimStart().startsWith(';')).toBe(true);

    const parsed = parseMessage(JSON.stringify(value), defaultMessageSchema);
    expect(parsed.ok ? [] : parsed.problems).toEqual([]);
    // The idempotency key where the contract has it: in the message, not an SQS attribute.
    expect(value).toMatchObject({ v: 1, idempotencyKey: 'invoice-2024-0042' });

    expect(snippet).toContain('use Aws\\Sqs\\SqsClient;');
    const call = /\$sqs->sendMessage\(\[([\s\S]*?)\]\);/.exec(snippet)?.[1] ?? '';
    expect(call).toMatch(/'QueueUrl' => \$queueUrl,/);
    expect(call).toMatch(/'MessageBody' => json_encode\(\$message\b[^)]*JSON_THROW_ON_ERROR\)/);
    // A standard queue (a FIFO queue's name ends in .fifo): no deduplication id or group.
    expect(OUTBOX_QUEUE_NAME.endsWith('.fifo')).toBe(false);
    expect(snippet).not.toMatch(/MessageDeduplicationId|MessageGroupId/);
  });

  it('the PHP literal reader is strict: it refuses what it cannot read as PHP does', () => {
    const read = (literal: string) => phpArrayLiteral(literal, 0).value;
    expect(read("['a' => 'it\\'s', 'b' => [1, true, null], 'c' => \"x\", /* note */ 'd' => [],]")).toEqual({
      a: "it's",
      b: [1, true, null],
      c: 'x',
      d: [],
    });
    for (const unsupported of [
      "['to' => $to]",
      '[\'to\' => "$to"]',
      "['n' => 'a' . 'b']",
      "['f' => strtoupper('x')]",
      "array('a' => 1)",
      "['a' => 1, 'a' => 2]",
      "['a' => 1, 2]",
      "['x' => 1.5]",
    ]) {
      expect(() => read(unsupported), unsupported).toThrow(/PHP array literal/);
    }
  });
});
