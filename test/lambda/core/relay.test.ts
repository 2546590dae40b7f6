import type { Message } from '@aws-sdk/client-sqs';
import { SQSClient } from '@aws-sdk/client-sqs';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { DEAD_LETTER_ATTRIBUTES, SqsDeadLetterQueue } from '../../../lambda/core/dead-letter.ts';
import { RelayFailure } from '../../../lambda/core/failures.ts';
import { createRelay, type Relay, type RelayLogger } from '../../../lambda/core/relay.ts';
import { SesProvider } from '../../../lambda/providers/ses.ts';
import {
  createQueue,
  drain,
  type Peers,
  sqsRecord,
  startPeers,
  UNREACHABLE_CLIENT_CONFIG,
  validMessage,
} from '../../helpers/peers.ts';

const MAX_RECEIVE_COUNT = 5;
const limits = { maxRecipients: 50, maxMessageBytes: 1024 * 1024 };

class RecordingLogger implements RelayLogger {
  readonly lines: string[] = [];
  info(message: string, attributes: Record<string, unknown>): void {
    this.lines.push(JSON.stringify({ message, ...attributes }));
  }
  warn(message: string, attributes: Record<string, unknown>): void {
    this.lines.push(JSON.stringify({ message, ...attributes }));
  }
}

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
      settings: { limits, maxReceiveCount: MAX_RECEIVE_COUNT },
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
    expect(attribute(dead, DEAD_LETTER_ATTRIBUTES.code)).toBe('SenderNotConfigured');
    expect(attribute(dead, DEAD_LETTER_ATTRIBUTES.hint)).toContain('ses.identities');
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
      settings: { limits, maxReceiveCount: MAX_RECEIVE_COUNT },
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
});
