import type { Message } from '@aws-sdk/client-sqs';
import { ReceiveMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { DEAD_LETTER_ATTRIBUTES, SqsDeadLetterQueue } from '../../../lambda/core/dead-letter.ts';
import { RelayFailure } from '../../../lambda/core/failures.ts';
import type { MailProvider } from '../../../lambda/core/mail-provider.ts';
import { SqsRecordDelay } from '../../../lambda/core/record-delay.ts';
import { createRelay, type Relay, type RelayLogger } from '../../../lambda/core/relay.ts';
import { SesProvider } from '../../../lambda/providers/ses/ses-provider.ts';
import { MemoryLedger, MemorySuppressionList } from '../../helpers/memory-ledger.ts';
import {
  createQueue,
  drain,
  enqueue,
  eventually,
  type Peers,
  sqsRecord,
  startPeers,
  UNREACHABLE_CLIENT_CONFIG,
  validMessage,
} from '../../helpers/peers.ts';

const MAX_RECEIVE_COUNT = 5;
const limits = { maxRecipients: 50, maxMessageBytes: 1024 * 1024 };
const settings = {
  limits,
  maxReceiveCount: MAX_RECEIVE_COUNT,
  retry: { maxAttempts: 3, baseDelaySeconds: 1, maxDelaySeconds: 10 },
  circuitBreaker: { failureThreshold: 5, cooldownSeconds: 60 },
  ledger: { tableName: 'ledger', leaseSeconds: 30, retentionDays: 14 },
};
/** A fresh ledger and an empty suppression list per relay. */
const state = () => ({ ledger: new MemoryLedger(), suppressions: new MemorySuppressionList() });

class RecordingLogger implements RelayLogger {
  readonly lines: string[] = [];
  info(message: string, attributes: Record<string, unknown>): void {
    this.lines.push(JSON.stringify({ message, ...attributes }));
  }
  warn(message: string, attributes: Record<string, unknown>): void {
    this.lines.push(JSON.stringify({ message, ...attributes }));
  }
  error(message: string, attributes: Record<string, unknown>): void {
    this.lines.push(JSON.stringify({ message, ...attributes }));
  }
}

/** A provider that is always throttled and says how long to wait. */
const throttledFor = (retryAfterSeconds: number): MailProvider => ({
  name: 'graph',
  canSendAs: () => true,
  send: () =>
    Promise.reject(
      new RelayFailure({
        failureClass: 'transient',
        code: 'TooManyRequests',
        reason: 'throttled',
        provider: 'graph',
        retryAfterSeconds,
      }),
    ),
});

const attribute = (message: Message | undefined, name: string) =>
  message?.MessageAttributes?.[name]?.StringValue;

describe('relay core with SQS and SES peers', () => {
  let peers: Peers;
  let dlqUrl: string;
  let logger: RecordingLogger;
  let relay: Relay;

  beforeAll(async () => {
    peers = await startPeers();
  });
  afterAll(() => peers.stop());
  beforeEach(async () => {
    dlqUrl = (await createQueue(peers.sqs)).url;
    logger = new RecordingLogger();
    peers.capture.sent.length = 0;
    peers.capture.sendAttempts = 0;
    relay = createRelay({
      providers: [new SesProvider(peers.ses, { identities: ['example.com'] })],
      deadLetters: new SqsDeadLetterQueue(peers.sqs, dlqUrl),
      settings,
      ...state(),
      logger,
    });
  });

  it('sends a valid message and reports it done', async () => {
    const outcome = await relay.processRecord(sqsRecord(validMessage()));

    expect(outcome.outcome).toBe('sent');
    expect(peers.capture.sent).toHaveLength(1);
    expect(await drain(peers.sqs, dlqUrl, { polls: 1 })).toHaveLength(0);
  });

  it('moves an invalid message to the DLQ at once, unchanged, with the reason as attributes', async () => {
    const body = JSON.stringify(validMessage({ to: ['not-an-address'], unexpected: true }));
    const record = sqsRecord(body, { messageId: 'source-1' });

    const outcome = await relay.processRecord(record);

    expect(outcome.outcome).toBe('dead-lettered');
    expect(peers.capture.sendAttempts).toBe(0);
    const [dead] = await drain(peers.sqs, dlqUrl);
    expect(dead?.Body).toBe(body);
    expect(attribute(dead, DEAD_LETTER_ATTRIBUTES.failureClass)).toBe('permanent');
    expect(attribute(dead, DEAD_LETTER_ATTRIBUTES.code)).toBe('InvalidMessage');
    expect(attribute(dead, DEAD_LETTER_ATTRIBUTES.reason)).toContain('to[0]: is not a valid email address');
    expect(attribute(dead, DEAD_LETTER_ATTRIBUTES.reason)).toContain('unexpected: unknown field');
    expect(attribute(dead, DEAD_LETTER_ATTRIBUTES.sourceMessageId)).toBe('source-1');
    expect(attribute(dead, DEAD_LETTER_ATTRIBUTES.attempts)).toBe('1');
  });

  it('dead-letters a sender no identity covers without calling SES', async () => {
    await relay.processRecord(sqsRecord(validMessage({ from: 'ceo@other-company.com' })));

    expect(peers.capture.sendAttempts).toBe(0);
    const [dead] = await drain(peers.sqs, dlqUrl);
    expect(attribute(dead, DEAD_LETTER_ATTRIBUTES.code)).toBe('SenderNotAllowed');
    expect(attribute(dead, DEAD_LETTER_ATTRIBUTES.hint)).toContain('ses.identities');
    expect(attribute(dead, DEAD_LETTER_ATTRIBUTES.hint)).toContain('graph.senders');
  });

  it('reports a transient SES failure for retry and leaves the DLQ empty', async () => {
    peers.capture.injectFault({ status: 503, code: 'ServiceUnavailable' });

    const error = await relay
      .processRecord(sqsRecord(validMessage(), { receiveCount: 2 }))
      .catch((e: unknown) => e);

    expect(error).toBeInstanceOf(RelayFailure);
    expect((error as RelayFailure).failureClass).toBe('transient');
    expect(await drain(peers.sqs, dlqUrl, { polls: 1 })).toHaveLength(0);
  });

  it('retries a provider-level failure while attempts remain (no other provider to fall back to yet)', async () => {
    peers.capture.injectFault({ status: 403, code: 'AccessDeniedException' });

    const error = await relay.processRecord(sqsRecord(validMessage())).catch((e: unknown) => e);

    expect((error as RelayFailure).failureClass).toBe('provider');
    expect(await drain(peers.sqs, dlqUrl, { polls: 1 })).toHaveLength(0);
  });

  it('dead-letters a permanent SES rejection with provider, code and hint', async () => {
    peers.capture.injectFault({
      status: 400,
      code: 'MessageRejected',
      message: 'Email address is not verified.',
    });

    await relay.processRecord(sqsRecord(validMessage()));

    const [dead] = await drain(peers.sqs, dlqUrl);
    expect(attribute(dead, DEAD_LETTER_ATTRIBUTES.provider)).toBe('ses');
    expect(attribute(dead, DEAD_LETTER_ATTRIBUTES.code)).toBe('MessageRejected');
    expect(attribute(dead, DEAD_LETTER_ATTRIBUTES.reason)).toBe('Email address is not verified.');
    expect(attribute(dead, DEAD_LETTER_ATTRIBUTES.hint)).toContain('sandbox');
  });

  it('dead-letters a still-failing message on its last attempt, saying it gave up', async () => {
    peers.capture.injectFault({ status: 503, code: 'ServiceUnavailable' });

    const outcome = await relay.processRecord(sqsRecord(validMessage(), { receiveCount: MAX_RECEIVE_COUNT }));

    expect(outcome.outcome).toBe('dead-lettered');
    const [dead] = await drain(peers.sqs, dlqUrl);
    expect(attribute(dead, DEAD_LETTER_ATTRIBUTES.failureClass)).toBe('transient');
    expect(attribute(dead, DEAD_LETTER_ATTRIBUTES.reason)).toMatch(/^gave up after 5 attempts: /);
    expect(attribute(dead, DEAD_LETTER_ATTRIBUTES.attempts)).toBe('5');
  });

  it('keeps a message for retry when the DLQ cannot be written, so nothing is lost', async () => {
    const broken = new SQSClient(UNREACHABLE_CLIENT_CONFIG);
    const relayWithoutDlq = createRelay({
      providers: [new SesProvider(peers.ses, { identities: ['example.com'] })],
      deadLetters: new SqsDeadLetterQueue(broken, dlqUrl),
      settings,
      ...state(),
      logger,
    });

    await expect(relayWithoutDlq.processRecord(sqsRecord('{not json'))).rejects.toThrow(
      /ECONNREFUSED|connect/,
    );
    broken.destroy();
  });

  it('never writes bodies, subjects or attachment content to the logs', async () => {
    const secretish = 'Confidential-body-4242';
    await relay.processRecord(
      sqsRecord(
        validMessage({
          subject: `Subject ${secretish}`,
          text: secretish,
          attachments: [{ filename: 'a.txt', content: Buffer.from(secretish).toString('base64') }],
        }),
      ),
    );
    await relay.processRecord(sqsRecord(validMessage({ text: secretish, to: ['broken'] })));

    expect(logger.lines).toHaveLength(2);
    for (const line of logger.lines) {
      expect(line).not.toContain(secretish);
      expect(line).not.toContain(Buffer.from(secretish).toString('base64'));
    }
  });

  it('delays the retry by the provider’s Retry-After by changing the record’s visibility', async () => {
    const outbox = (await createQueue(peers.sqs, { VisibilityTimeout: '30' })).url;
    await enqueue(peers.sqs, outbox, validMessage());
    const received = await peers.sqs.send(
      new ReceiveMessageCommand({ QueueUrl: outbox, MaxNumberOfMessages: 1, AttributeNames: ['All'] }),
    );
    const [message] = received.Messages ?? [];
    const record = { ...sqsRecord(message?.Body ?? ''), receiptHandle: message?.ReceiptHandle ?? '' };
    const delaying = createRelay({
      providers: [throttledFor(2)],
      deadLetters: new SqsDeadLetterQueue(peers.sqs, dlqUrl),
      recordDelay: new SqsRecordDelay(peers.sqs, outbox),
      settings,
      ...state(),
      logger,
    });

    const failedAt = Date.now();
    await expect(delaying.processRecord(record)).rejects.toMatchObject({ retryAfterSeconds: 2 });

    // Back after ~2 s instead of the queue's 30 s visibility timeout.
    const again = await eventually(async () => {
      const next = await peers.sqs.send(
        new ReceiveMessageCommand({ QueueUrl: outbox, MaxNumberOfMessages: 1 }),
      );
      return next.Messages?.[0];
    });
    expect(again.Body).toBe(message?.Body);
    expect(Date.now() - failedAt).toBeGreaterThanOrEqual(1_500);
    expect(logger.lines.some((line) => line.includes('"retryInSeconds":2'))).toBe(true);
  });

  it('still reports the record for retry when the delay cannot be set', async () => {
    const broken = new SQSClient(UNREACHABLE_CLIENT_CONFIG);
    const delaying = createRelay({
      providers: [throttledFor(5)],
      deadLetters: new SqsDeadLetterQueue(peers.sqs, dlqUrl),
      recordDelay: new SqsRecordDelay(broken, 'http://127.0.0.1:9/000000000000/outbox'),
      settings,
      ...state(),
      logger,
    });
    await expect(delaying.processRecord(sqsRecord(validMessage()))).rejects.toMatchObject({
      code: 'TooManyRequests',
    });
    expect(logger.lines.some((line) => line.includes('Could not delay the retry'))).toBe(true);
    broken.destroy();
  });

  it('without routes, sends through the first provider that can send as the From address', async () => {
    const sent: string[] = [];
    const fake = (name: string, domain: string): MailProvider => ({
      name,
      canSendAs: (address) => address.endsWith(`@${domain}`),
      send: async () => {
        sent.push(name);
        return { provider: name, providerMessageId: undefined };
      },
    });
    const ordered = createRelay({
      providers: [fake('graph', 'contoso.com'), fake('ses', 'example.com')],
      deadLetters: new SqsDeadLetterQueue(peers.sqs, dlqUrl),
      settings,
      ...state(),
      logger,
    });
    await ordered.processRecord(sqsRecord(validMessage({ from: 'billing@contoso.com' })));
    await ordered.processRecord(sqsRecord(validMessage({ from: 'billing@example.com' })));
    expect(sent).toEqual(['graph', 'ses']);
  });
});
