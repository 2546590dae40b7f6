import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { SQSClient } from '@aws-sdk/client-sqs';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { enqueue, eventually, producerClient, validMessage } from '../helpers/peers.ts';
import { killLocalModes, spawnLocalMode } from '../local/isolated-local-mode.ts';

// `mail-relay start` as a person runs it: its console shows one line per outcome, not the functions'
// JSON; `--json-logs` brings the JSON back. The child's output is read as it comes, and each test
// waits for the line it expects.

interface StartedCli {
  readonly child: ChildProcess;
  /** Everything it printed so far (stdout and stderr). */
  output(): string;
  readonly outboxUrl: string;
  readonly sqs: SQSClient;
}

const SUBJECT = 'Outcome lines secret subject';
const BODY = 'Outcome lines secret body';

describe('local mode console', () => {
  const workDir = mkdtempSync(path.join(tmpdir(), 'mail-relay-outcome-lines-'));
  const configPath = path.join(workDir, 'config.json');
  writeFileSync(configPath, JSON.stringify({ ses: { identities: ['example.com'] } }));
  const children: ChildProcess[] = [];
  const clients: SQSClient[] = [];
  afterEach(async () => {
    for (const client of clients.splice(0)) client.destroy();
    await killLocalModes(children);
  });
  afterAll(() => rmSync(workDir, { recursive: true, force: true }));

  async function startCli(...extra: string[]): Promise<StartedCli> {
    const started = await spawnLocalMode(workDir, children, ['--fresh', '--config', configPath, ...extra]);
    const { child } = started;
    const field = (label: string) => started.bannerUrl(label);
    const sqs = producerClient(field('SQS endpoint:'));
    clients.push(sqs);
    return { child, output: started.output, outboxUrl: field('Outbox queue:'), sqs };
  }

  /** Waits for the line matching `pattern` in what the child printed. */
  const lineOf = (cli: StartedCli, pattern: RegExp) =>
    eventually(async () =>
      cli
        .output()
        .split('\n')
        .find((line) => pattern.test(line)),
    );

  it('prints one line per outcome (sent, dead-lettered, bounced), no JSON and nothing of the message', async () => {
    const cli = await startCli();
    const sentId = await enqueue(cli.sqs, cli.outboxUrl, validMessage({ subject: SUBJECT, text: BODY }));
    const short = sentId.slice(0, 8);
    const sent = await lineOf(
      cli,
      new RegExp(`^\\d\\d:\\d\\d:\\d\\d  sent +${short}  ses +1 recipient +\\d+ ms$`),
    );
    expect(sent).toBeDefined();

    const invalidId = await enqueue(cli.sqs, cli.outboxUrl, { v: 1, from: 'billing@example.com' });
    const deadLettered = await lineOf(
      cli,
      new RegExp(`dead-lettered ${invalidId.slice(0, 8)} .* InvalidMessage$`),
    );
    expect(deadLettered).toMatch(/^\d\d:\d\d:\d\d {2}dead-lettered /);

    const bouncedId = await enqueue(
      cli.sqs,
      cli.outboxUrl,
      validMessage({ to: ['bounce@simulator.amazonses.com'], subject: SUBJECT, text: BODY }),
    );
    // Sent first, then the SES simulator's hard bounce comes back through the feedback function.
    await lineOf(cli, new RegExp(`sent +${bouncedId.slice(0, 8)}  ses `));
    const bounced = await lineOf(cli, new RegExp(`bounced +${bouncedId.slice(0, 8)}  ses +1 recipient `));
    expect(bounced).toContain('hard');
    expect(bounced).toContain('suppressed');

    const output = cli.output();
    // Neither the functions' JSON records nor their EMF metrics.
    expect(output.split('\n').filter((line) => line.trimStart().startsWith('{'))).toEqual([]);
    expect(output).not.toContain(SUBJECT);
    expect(output).not.toContain(BODY);
    expect(output).not.toContain('bounce@simulator.amazonses.com');
  });

  it('with --json-logs prints the functions’ JSON records, as before, and no outcome lines', async () => {
    const cli = await startCli('--json-logs');
    const id = await enqueue(cli.sqs, cli.outboxUrl, validMessage());
    const record = await eventually(async () =>
      cli
        .output()
        .split('\n')
        .filter((line) => line.startsWith('{'))
        .map((line) => JSON.parse(line) as Record<string, unknown>)
        .find((parsed) => parsed.message === 'Message sent' && parsed.messageId === id),
    );
    expect(record).toMatchObject({ level: 'INFO', provider: 'ses', recipients: 1 });
    expect(cli.output()).not.toMatch(new RegExp(`sent +${id.slice(0, 8)}`));
  });
});
