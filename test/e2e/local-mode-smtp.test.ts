import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { SQSClient } from '@aws-sdk/client-sqs';
import { simpleParser } from 'mailparser';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { DEAD_LETTER_ATTRIBUTES } from '../../lambda/core/dead-letter.ts';
import { type LocalRelay, startLocalRelay } from '../../local/local-relay.ts';
import type { SmtpPeer } from '../../local/peers/smtp-peer.ts';
import { drain, enqueue, eventually, producerClient, validMessage } from '../helpers/peers.ts';
import { isolatedLocalMode } from '../local/isolated-local-mode.ts';

describe('local mode end to end through SMTP: SQS → handler → SMTP capture (connector mode)', () => {
  let relay: LocalRelay;
  let capture: SmtpPeer;
  let sqs: SQSClient;
  const workDir = mkdtempSync(path.join(tmpdir(), 'mail-relay-smtp-e2e-'));
  const captureDir = path.join(workDir, 'smtp');

  const deadLettered = (subject: string) =>
    eventually(async () => {
      const messages = await drain(sqs, relay.deadLetterQueueUrl, { polls: 1 });
      return messages.find((message) => message.Body?.includes(subject));
    });

  beforeAll(async () => {
    const configPath = path.join(workDir, 'config.json');
    writeFileSync(
      configPath,
      JSON.stringify({
        ses: { identities: ['example.com'] },
        smtp: { senders: ['scanner@contoso.com'], mode: 'connector' },
        egress: {},
        queue: { maxReceiveCount: 2 },
        // Retries within seconds, so the test sees them.
        retry: { baseDelaySeconds: 1, maxDelaySeconds: 1 },
      }),
    );
    relay = await startLocalRelay({
      ...isolatedLocalMode(workDir),
      smtpCaptureDir: captureDir,
      configPath,
      visibilityTimeoutSeconds: 1,
      logLevel: 'ERROR',
    });
    if (!relay.smtpCapture) throw new Error('local mode did not start the SMTP capture');
    capture = relay.smtpCapture.peer;
    sqs = producerClient(relay.sqsEndpoint);
  });
  afterAll(async () => {
    sqs.destroy();
    await relay.stop();
  });
  beforeEach(() => capture.clearRejections());

  it('sends an SMTP sender through the capture over STARTTLS and saves what arrived as .eml', async () => {
    await enqueue(
      sqs,
      relay.queueUrl,
      validMessage({
        from: 'Scanner <scanner@contoso.com>',
        to: ['ana@example.org'],
        bcc: ['audit@example.org'],
        subject: 'Scan via connector',
        attachments: [{ filename: 'scan.txt', content: Buffer.from('scan bytes').toString('base64') }],
      }),
    );

    const received = await eventually(async () =>
      capture.received.find((message) => message.raw.toString().includes('Scan via connector')),
    );
    expect(received.secure).toBe(true);
    expect(received.envelope).toEqual({
      mailFrom: 'scanner@contoso.com',
      rcptTo: ['ana@example.org', 'audit@example.org'],
    });
    // Written as it arrives: wait for the whole file, not just its name.
    const mail = await eventually(async () => {
      const [name] = readdirSync(captureDir).filter((entry) => entry.endsWith('.eml'));
      if (!name) return undefined;
      const parsed = await simpleParser(readFileSync(path.join(captureDir, name)));
      return parsed.attachments.length > 0 ? parsed : undefined;
    });
    expect(mail.subject).toBe('Scan via connector');
    expect(mail.attachments[0]?.content.toString()).toBe('scan bytes');
    expect(relay.settings.smtp).toMatchObject([
      { name: 'smtp', mode: 'connector', tls: 'starttls', requireTls: true, auth: 'none' },
    ]);
  });

  it('dead-letters a send-as refusal at once with the SMTP reply and a hint', async () => {
    capture.reject({
      stage: 'mailFrom',
      reply: '550 5.7.1 Client does not have permissions to send as this sender',
    });
    await enqueue(
      sqs,
      relay.queueUrl,
      validMessage({ from: 'scanner@contoso.com', subject: 'Send-as refused' }),
    );

    const dead = await deadLettered('Send-as refused');
    const attribute = (name: string) => dead.MessageAttributes?.[name]?.StringValue;
    expect(attribute(DEAD_LETTER_ATTRIBUTES.failureClass)).toBe('permanent');
    expect(attribute(DEAD_LETTER_ATTRIBUTES.code)).toBe('SendAsDenied');
    expect(attribute(DEAD_LETTER_ATTRIBUTES.provider)).toBe('smtp');
    expect(attribute(DEAD_LETTER_ATTRIBUTES.reason)).toContain('550 5.7.1 Client does not have permissions');
    expect(attribute(DEAD_LETTER_ATTRIBUTES.attempts)).toBe('1');
  });

  it('retries 550 5.7.708 (the connector does not trust the IP) and gives up with the connector hint', async () => {
    capture.reject({
      stage: 'mailFrom',
      reply: '550 5.7.708 Service unavailable. Access denied, traffic not accepted from this IP.',
      times: 2,
    });
    await enqueue(
      sqs,
      relay.queueUrl,
      validMessage({ from: 'scanner@contoso.com', subject: 'Untrusted IP' }),
    );

    const dead = await deadLettered('Untrusted IP');
    const attribute = (name: string) => dead.MessageAttributes?.[name]?.StringValue;
    expect(attribute(DEAD_LETTER_ATTRIBUTES.failureClass)).toBe('provider');
    expect(attribute(DEAD_LETTER_ATTRIBUTES.code)).toBe('5.7.708');
    expect(attribute(DEAD_LETTER_ATTRIBUTES.reason)).toMatch(/^gave up after 2 attempts: .*5\.7\.708/);
    expect(attribute(DEAD_LETTER_ATTRIBUTES.hint)).toMatch(/inbound connector lists the relay's egress IPs/);
  });
});
