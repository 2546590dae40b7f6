import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { progressLine, sendJsonl } from '../../cli/send-jsonl.ts';
import { createRelayClient } from '../../client/relay-client.ts';
import { runMain as cli } from '../helpers/cli.ts';
import { createQueue, drain, type Peers, startPeers, validMessage } from '../helpers/peers.ts';

// `mail-relay send --jsonl` against the real SQS emulator: what it reports, and what lands on the queue.

/** The bodies on the queue, parsed, by subject. */
async function queuedBySubject(
  peers: Peers,
  queueUrl: string,
): Promise<Map<string, Record<string, unknown>>> {
  const messages = await drain(peers.sqs, queueUrl);
  return new Map(
    messages.map((message) => {
      const body = JSON.parse(message.Body ?? '{}') as Record<string, unknown>;
      return [String(body.subject), body];
    }),
  );
}

const jsonl = (...lines: unknown[]) =>
  `${lines.map((line) => (typeof line === 'string' ? line : JSON.stringify(line))).join('\n')}\n`;

describe('mail-relay send --jsonl', () => {
  let peers: Peers;
  let dir: string;

  beforeAll(async () => {
    peers = await startPeers();
    dir = await mkdtemp(path.join(tmpdir(), 'mail-relay-send-jsonl-'));
  });
  afterAll(async () => {
    await peers.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('enqueues the valid lines, reports each invalid one by line number and field, and exits 1', async () => {
    const { url } = await createQueue(peers.sqs);
    const file = path.join(dir, 'mixed.jsonl');
    await writeFile(
      file,
      jsonl(
        validMessage({ subject: 'first' }),
        validMessage({ subject: 'bad recipient', to: ['not-an-address'] }),
        '',
        validMessage({ subject: 'second', idempotencyKey: 'order-2' }),
        '{"v":1, "subject": "broken',
        validMessage({ subject: undefined }),
        '["an array"]',
        validMessage({ subject: 'third' }),
      ),
    );
    const result = await cli('send', '--jsonl', file, '--queue-url', url);

    expect(result.code).toBe(1);
    expect(result.stderr).toBe('');
    const report = result.stdout.split('\n');
    expect(report).toEqual([
      `Sent 3 of 7 message(s) from ${file} to ${url}: 4 invalid, 0 failed.`,
      'Invalid (not sent; fix these lines and send them again):',
      '  line 2: to[0]: is not a valid email address (expected "a@example.com" or "Name <a@example.com>")',
      expect.stringMatching(/^ {2}line 5: \(root\): not valid JSON \(at character \d+\)$/),
      '  line 6: subject: required',
      '  line 7: (root): must be a JSON object (one message per line)',
    ]);
    // Never the line's content: the JSON error is the parser's position, not its quote of the line.
    expect(result.stdout).not.toContain('broken');

    const queued = await queuedBySubject(peers, url);
    expect([...queued.keys()].sort()).toEqual(['first', 'second', 'third']);
    // As the typed client sends: the producer's key kept, a content key derived for the others.
    expect(queued.get('second')?.idempotencyKey).toBe('order-2');
    expect(queued.get('first')?.idempotencyKey).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(queued.get('third')).toMatchObject({
      v: 1,
      from: 'Billing <billing@example.com>',
      text: 'Your invoice is attached.',
    });
  });

  it('exits 0 and says so when every line was enqueued', async () => {
    const { url } = await createQueue(peers.sqs);
    const file = path.join(dir, 'all-valid.jsonl');
    const subjects = Array.from({ length: 23 }, (_, index) => `bulk ${index + 1}`);
    await writeFile(file, jsonl(...subjects.map((subject) => validMessage({ subject }))));

    const result = await cli('send', '--jsonl', file, '--queue-url', url);

    expect(result).toEqual({
      code: 0,
      stdout: `Sent 23 of 23 message(s) from ${file} to ${url}: 0 invalid, 0 failed.`,
      stderr: '',
    });
    expect([...(await queuedBySubject(peers, url)).keys()].sort()).toEqual([...subjects].sort());
  });

  it('reads stdin with -', async () => {
    const { url } = await createQueue(peers.sqs);
    const child = spawn(
      process.execPath,
      [path.resolve('cli/mail-relay.js'), 'send', '--jsonl', '-', '--queue-url', url],
      { stdio: ['pipe', 'pipe', 'pipe'] },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
    });
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    child.stdin.end(
      jsonl(validMessage({ subject: 'from stdin 1' }), validMessage({ subject: 'from stdin 2' })),
    );
    const [code] = (await once(child, 'exit')) as [number];

    expect({ code, stderr }).toEqual({ code: 0, stderr: '' });
    expect(stdout.trim()).toBe(`Sent 2 of 2 message(s) from stdin to ${url}: 0 invalid, 0 failed.`);
    expect([...(await queuedBySubject(peers, url)).keys()].sort()).toEqual(['from stdin 1', 'from stdin 2']);
  });

  it('reports progress after each batch, against the file’s count of messages', async () => {
    const { url } = await createQueue(peers.sqs);
    const file = path.join(dir, 'progress.jsonl');
    const lines = Array.from({ length: 12 }, (_, index) =>
      index === 4 ? validMessage({ subject: undefined }) : validMessage({ subject: `p${index}` }),
    );
    await writeFile(file, jsonl(...lines));
    const client = createRelayClient({ queueUrl: url, sqs: peers.sqs });
    const progress: string[] = [];

    const summary = await sendJsonl({
      source: file,
      client,
      batchSize: 5,
      onProgress: (step) => progress.push(progressLine(step)),
    });

    // Batches of five: lines 1-5 (line 5 refused by the contract), 6-10, then 11-12.
    expect(progress).toEqual(['  4/12 sent  1 invalid', '  9/12 sent  1 invalid', '  11/12 sent  1 invalid']);
    expect(summary.sent.map(({ line }) => line)).toEqual([1, 2, 3, 4, 6, 7, 8, 9, 10, 11, 12]);
    expect(summary.invalid).toEqual([{ line: 5, problems: ['subject: required'] }]);
    expect(progressLine({ done: 7, sent: 6, invalid: 0, failed: 1 })).toBe('  6 sent  1 failed');
  });

  it('refuses message flags next to --jsonl, and a queue that does not answer, with exit code 1', async () => {
    const file = path.join(dir, 'one.jsonl');
    await writeFile(file, jsonl(validMessage()));

    const mixed = await cli(
      'send',
      '--jsonl',
      file,
      '--from',
      'a@example.com',
      '--queue-url',
      'http://127.0.0.1:9/0/q',
    );
    expect(mixed.code).toBe(1);
    expect(mixed.stderr).toContain('send --jsonl takes each whole message from its lines, not --from.');

    const unreachable = await cli(
      'send',
      '--jsonl',
      file,
      '--queue-url',
      'http://127.0.0.1:9/000000000000/outbox',
    );
    expect(unreachable.code).toBe(1);
    expect(unreachable.stderr).toContain('connection refused');

    const missing = await cli(
      'send',
      '--jsonl',
      path.join(dir, 'no-such.jsonl'),
      '--queue-url',
      'http://127.0.0.1:9/0/q',
    );
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('no-such.jsonl');
  });
});
