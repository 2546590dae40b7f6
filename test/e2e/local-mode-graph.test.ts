import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import type { SQSClient } from '@aws-sdk/client-sqs';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { DEAD_LETTER_ATTRIBUTES } from '../../lambda/core/dead-letter.ts';
import { type LocalRelay, startLocalRelay } from '../../local/local-relay.ts';
import type { GraphPeer } from '../../local/peers/graph-peer.ts';
import { drain, enqueue, eventually, producerClient, validMessage } from '../helpers/peers.ts';
import { isolatedLocalMode } from '../local/isolated-local-mode.ts';

const run = promisify(execFile);

/** Recognisable bytes: a shifted or truncated chunk cannot compare equal. */
function patterned(length: number): Buffer {
  const bytes = Buffer.alloc(length);
  for (let index = 0; index < length; index += 1) bytes[index] = (index * 7 + (index >> 16)) & 0xff;
  return bytes;
}

describe('local mode end to end through Microsoft Graph: SQS → handler → Entra ID + Graph peer', () => {
  let relay: LocalRelay;
  let peer: GraphPeer;
  let sqs: SQSClient;
  const workDir = mkdtempSync(path.join(tmpdir(), 'mail-relay-graph-e2e-'));

  const deliveredWithSubject = (subject: string) =>
    eventually(async () => peer.delivered.find((message) => message.message.subject === subject));

  beforeAll(async () => {
    const configPath = path.join(workDir, 'config.json');
    writeFileSync(
      configPath,
      JSON.stringify({
        ses: { identities: ['example.com'] },
        graph: {
          tenantId: 'contoso.onmicrosoft.com',
          clientId: '6f1e2d3c-0000-4000-8000-00000000e2e0',
          senders: ['contoso.com'],
        },
        attachments: { retentionDays: 1 },
        queue: { maxReceiveCount: 3 },
        // Retries within seconds, so the test sees them.
        retry: { baseDelaySeconds: 1, maxDelaySeconds: 1 },
      }),
    );
    // A long visibility timeout: a retry that comes back in seconds can only be Retry-After's doing.
    relay = await startLocalRelay({
      ...isolatedLocalMode(workDir),
      graphPeer: true,
      configPath,
      visibilityTimeoutSeconds: 60,
      logLevel: 'ERROR',
    });
    if (!relay.graphPeer) throw new Error('local mode did not start the Graph peer');
    peer = relay.graphPeer;
    sqs = producerClient(relay.sqsEndpoint);
  });
  afterAll(async () => {
    sqs.destroy();
    await relay.stop();
  });
  beforeEach(() => peer.clearFaults());

  it('sends mail from a Graph sender through Graph, and other senders through SES', async () => {
    const graphMessageId = await enqueue(
      sqs,
      relay.queueUrl,
      validMessage({
        from: 'Billing <billing@contoso.com>',
        to: ['Ana <ana@example.org>'],
        bcc: ['audit@example.org'],
        subject: 'Graph route',
        html: '<p>Hello</p>',
        headers: { 'X-Order': '7' },
        attachments: [
          { filename: 'a.txt', contentType: 'text/plain', content: Buffer.from('bytes').toString('base64') },
        ],
      }),
    );
    await enqueue(sqs, relay.queueUrl, validMessage({ subject: 'SES route' }));

    const delivered = await deliveredWithSubject('Graph route');
    expect(delivered).toMatchObject({
      mailbox: 'billing@contoso.com',
      via: 'sendMail',
      saveToSentItems: true,
    });
    expect(delivered.message).toMatchObject({
      toRecipients: [{ emailAddress: { address: 'ana@example.org', name: 'Ana' } }],
      bccRecipients: [{ emailAddress: { address: 'audit@example.org' } }],
      body: { contentType: 'HTML', content: '<p>Hello</p>' },
      // The relay's trace header lets bounce reports name the request.
      internetMessageHeaders: [
        { name: 'X-Order', value: '7' },
        { name: 'X-Mail-Relay-Message-Id', value: graphMessageId },
      ],
    });
    expect(delivered.attachments[0]?.bytes.toString()).toBe('bytes');
    // The certificate credential local mode generated went through Entra ID's client assertion check.
    expect(
      peer.tokenRequests.some((request) => request.credential === 'certificate' && request.granted),
    ).toBe(true);

    await eventually(async () =>
      relay.capture.sent.find((sent) => sent.raw.toString().includes('Subject: SES route')),
    );
    expect(peer.delivered.some((message) => message.message.subject === 'SES route')).toBe(false);
  });

  it('sends a 20 MB attachment uploaded with `mail-relay send --attach-s3` through a Graph upload session', async () => {
    const file = path.join(workDir, 'scan.pdf');
    const bytes = patterned(20 * 1024 * 1024);
    writeFileSync(file, bytes);
    await run(process.execPath, [
      'cli/mail-relay.js',
      'send',
      '--queue-url',
      relay.queueUrl,
      '--from',
      'scanner@contoso.com',
      '--to',
      'ana@example.org',
      '--subject',
      'Large scan',
      '--text',
      'Scan attached.',
      '--attach-s3',
      file,
    ]);

    const delivered = await deliveredWithSubject('Large scan');
    expect(delivered.via).toBe('draft');
    const [attachment] = delivered.attachments;
    expect(attachment).toMatchObject({
      name: 'scan.pdf',
      contentType: 'application/pdf',
      via: 'uploadSession',
    });
    expect(attachment?.bytes.equals(bytes)).toBe(true);
  });

  it('honours Retry-After: the retry comes after the delay Graph asked for, not the visibility timeout', async () => {
    peer.injectFault({
      operation: 'sendMail',
      mailbox: 'alerts@contoso.com',
      status: 429,
      code: 'TooManyRequests',
      retryAfterSeconds: 2,
    });
    await enqueue(
      sqs,
      relay.queueUrl,
      validMessage({ from: 'alerts@contoso.com', subject: 'Throttled once' }),
    );

    await deliveredWithSubject('Throttled once');
    const calls = peer.requests.filter(
      (request) => request.operation === 'sendMail' && request.mailbox === 'alerts@contoso.com',
    );
    expect(calls.map((call) => call.status)).toEqual([429, 202]);
    const waited = (calls[1]?.startedAt ?? 0) - (calls[0]?.endedAt ?? 0);
    expect(waited).toBeGreaterThanOrEqual(1_500);
    expect(peer.delivered.filter((message) => message.message.subject === 'Throttled once')).toHaveLength(1);
  });

  it('dead-letters a permanent Graph refusal at once with provider, code and hint', async () => {
    peer.injectFault({
      operation: 'sendMail',
      mailbox: 'crm@contoso.com',
      status: 403,
      code: 'ErrorSendAsDenied',
    });
    await enqueue(sqs, relay.queueUrl, validMessage({ from: 'crm@contoso.com', subject: 'Not allowed' }));

    const dead = await eventually(async () => {
      const messages = await drain(sqs, relay.deadLetterQueueUrl, { polls: 1 });
      return messages.find((message) => message.Body?.includes('Not allowed'));
    });
    const attribute = (name: string) => dead.MessageAttributes?.[name]?.StringValue;
    expect(attribute(DEAD_LETTER_ATTRIBUTES.failureClass)).toBe('permanent');
    expect(attribute(DEAD_LETTER_ATTRIBUTES.code)).toBe('ErrorSendAsDenied');
    expect(attribute(DEAD_LETTER_ATTRIBUTES.provider)).toBe('graph');
    expect(attribute(DEAD_LETTER_ATTRIBUTES.hint)).toMatch(/Send As rights/);
    expect(attribute(DEAD_LETTER_ATTRIBUTES.attempts)).toBe('1');
  });
});
