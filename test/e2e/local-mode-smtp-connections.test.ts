import { mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { SQSClient } from '@aws-sdk/client-sqs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEAD_LETTER_ATTRIBUTES } from '../../lambda/core/dead-letter.ts';
import { type LocalRelay, type LocalSmtpCapture, startLocalRelay } from '../../local/local-relay.ts';
import { drain, enqueue, eventually, producerClient, validMessage } from '../helpers/peers.ts';
import { isolatedLocalMode } from '../local/isolated-local-mode.ts';

const SECRET = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:mail-relay/smtp-billing-AbCdEf';

describe('local mode end to end through named SMTP connections: one capture per connection', () => {
  let relay: LocalRelay;
  let billing: LocalSmtpCapture;
  let certified: LocalSmtpCapture;
  let sqs: SQSClient;
  const workDir = mkdtempSync(path.join(tmpdir(), 'mail-relay-smtp-connections-e2e-'));
  const captureDir = path.join(workDir, 'smtp');

  const receivedBy = (capture: LocalSmtpCapture, subject: string) =>
    eventually(async () => capture.peer.received.find((message) => message.raw.toString().includes(subject)));
  const savedIn = (capture: LocalSmtpCapture) =>
    readdirSync(capture.directory).filter((entry) => entry.endsWith('.eml'));

  beforeAll(async () => {
    const configPath = path.join(workDir, 'config.json');
    writeFileSync(
      configPath,
      JSON.stringify({
        ses: { identities: ['example.com'] },
        smtp: {
          connections: {
            // A per-address send connector (seed 004): a smart host with its own account.
            billing: {
              senders: ['facturas@contoso.com'],
              mode: 'smarthost',
              host: 'smtp-relay.example.com',
              auth: 'login',
              credentialSecretArn: SECRET,
            },
            // A partner's smart host that a message asks for by route name (seed 001).
            certified: {
              senders: ['contoso.com'],
              mode: 'smarthost',
              host: 'smtp.certified-mail.example',
              port: 465,
              tls: 'implicit',
            },
          },
        },
        routes: [
          { name: 'billing', from: ['facturas@contoso.com'], providers: ['smtp:billing'] },
          { name: 'certified', from: ['*'], providers: ['smtp:certified'] },
        ],
        queue: { maxReceiveCount: 2 },
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
    const [first, second] = relay.smtpCaptures;
    if (!first || !second) throw new Error('local mode did not start a capture per connection');
    billing = first;
    certified = second;
    sqs = producerClient(relay.sqsEndpoint);
  });
  afterAll(async () => {
    sqs.destroy();
    await relay.stop();
  });

  it('starts a capture per connection, each with the connection’s TLS and auth, saving under smtp/<name>/', () => {
    expect(relay.smtpCaptures.map((capture) => capture.provider)).toEqual(['smtp:billing', 'smtp:certified']);
    expect(billing.directory).toBe(path.join(captureDir, 'billing'));
    expect(certified.directory).toBe(path.join(captureDir, 'certified'));
    expect(billing.peer.port).not.toBe(certified.peer.port);
    expect(relay.smtpCapture).toBe(billing);
    expect(relay.settings.smtp).toEqual([
      expect.objectContaining({
        name: 'smtp:billing',
        host: billing.peer.host,
        port: billing.peer.port,
        auth: 'login',
        // Local mode's own user, never the configured secret.
        credentialSecretId: expect.not.stringMatching(/^arn:aws:secretsmanager:eu-west-1/),
      }),
      expect.objectContaining({
        name: 'smtp:certified',
        port: certified.peer.port,
        tls: 'implicit',
        auth: 'none',
      }),
    ]);
  });

  it("sends a sender's message through the connection its route names, and saves it there", async () => {
    await enqueue(
      sqs,
      relay.queueUrl,
      validMessage({ from: 'facturas@contoso.com', subject: 'Invoice through the billing connector' }),
    );

    const received = await receivedBy(billing, 'Invoice through the billing connector');
    expect(received).toMatchObject({ authenticatedUser: 'local', authMethod: 'LOGIN', secure: true });
    expect(received.envelope.mailFrom).toBe('facturas@contoso.com');
    await eventually(async () => (savedIn(billing).length > 0 ? true : undefined));
    expect(certified.peer.received).toHaveLength(0);
  });

  it('sends a message that asks for the certified route through the partner connection', async () => {
    await enqueue(
      sqs,
      relay.queueUrl,
      validMessage({ from: 'legal@contoso.com', route: 'certified', subject: 'Certified notice' }),
    );

    const received = await receivedBy(certified, 'Certified notice');
    expect(received.secure).toBe(true);
    expect(received.envelope.mailFrom).toBe('legal@contoso.com');
    await eventually(async () => (savedIn(certified).length > 0 ? true : undefined));
    expect(billing.peer.received.map((message) => message.raw.toString())).not.toEqual(
      expect.arrayContaining([expect.stringContaining('Certified notice')]),
    );
  });

  it('dead-letters a refusal of a connection under that connection’s provider name', async () => {
    certified.peer.reject({ stage: 'rcptTo', reply: '550 5.1.1 User unknown' });
    await enqueue(
      sqs,
      relay.queueUrl,
      validMessage({ from: 'legal@contoso.com', route: 'certified', subject: 'Certified to nobody' }),
    );

    const dead = await eventually(async () => {
      const messages = await drain(sqs, relay.deadLetterQueueUrl, { polls: 1 });
      return messages.find((message) => message.Body?.includes('Certified to nobody'));
    });
    const attribute = (name: string) => dead.MessageAttributes?.[name]?.StringValue;
    expect(attribute(DEAD_LETTER_ATTRIBUTES.provider)).toBe('smtp:certified');
    expect(attribute(DEAD_LETTER_ATTRIBUTES.code)).toBe('5.1.1');
    expect(attribute(DEAD_LETTER_ATTRIBUTES.failureClass)).toBe('permanent');
  });
});
