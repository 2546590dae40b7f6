import { once } from 'node:events';
import { SendMessageCommand } from '@aws-sdk/client-sqs';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { DEAD_LETTER_ATTRIBUTES } from '../../lambda/core/dead-letter.ts';
import { approximateCount, enqueue, eventually, validMessage } from '../helpers/peers.ts';
import { type RelayRig, SLOW, startRelayRig } from '../helpers/relay-rig.ts';

// Send functions that really die (SIGKILL, as Lambda ends a crashed or timed-out function) at the worst
// moments, and the next function that takes the message over: never twice, never lost.

describe('send functions that die', () => {
  let rig: RelayRig;
  beforeAll(async () => {
    rig = await startRelayRig();
  });
  afterEach(() => rig.reset());
  afterAll(() => rig.stop());

  const outboxEmpty = async () =>
    (await approximateCount(rig.peers.sqs, rig.settings.queueUrl)) === 0 ? true : undefined;

  it(
    'sends a message once when its function died before handing it to the provider',
    async () => {
      const first = await rig.startWorker();
      // The moment the server sees MAIL FROM: connected, but nothing handed off.
      rig.setSmtpPlan((stage) => {
        if (stage === 'mailFrom') first.kill('SIGKILL');
        return undefined;
      });
      await enqueue(
        rig.peers.sqs,
        rig.settings.queueUrl,
        validMessage({ subject: 'Died early', idempotencyKey: 'early' }),
      );
      await once(first, 'exit');
      rig.forget(first);
      rig.setSmtpPlan(undefined);

      await rig.startWorker();
      await eventually(async () => (rig.smtpCopies('Died early').length === 1 ? true : undefined), SLOW);
      await eventually(outboxEmpty, SLOW);

      expect(rig.smtpCopies('Died early')).toHaveLength(1);
      expect(await rig.deadLetters()).toHaveLength(0);
      expect(await rig.ledger().get('early')).toMatchObject({ state: 'sent', provider: 'smtp' });
    },
    SLOW,
  );

  it(
    'does not send it again when it died after the server had the message: OutcomeUnknown',
    async () => {
      const first = await rig.startWorker();
      // The moment the server has the whole message, before its reply reaches the function.
      rig.setSmtpPlan((stage) => {
        if (stage !== 'data') return undefined;
        first.kill('SIGKILL');
        return { stage: 'data', lostReply: 'hang' };
      });
      const messageId = await enqueue(
        rig.peers.sqs,
        rig.settings.queueUrl,
        validMessage({ subject: 'Killed mid-send', idempotencyKey: 'crash-1' }),
      );
      await once(first, 'exit');
      rig.forget(first);
      rig.setSmtpPlan(undefined);
      expect(rig.smtpCopies('Killed mid-send')).toHaveLength(1);

      await rig.startWorker();
      const dead = await eventually(async () => (await rig.deadLetters())[0], SLOW);

      expect(rig.codeOf(dead)).toBe('OutcomeUnknown');
      expect(dead.MessageAttributes?.[DEAD_LETTER_ATTRIBUTES.sourceMessageId]?.StringValue).toBe(messageId);
      expect(rig.smtpCopies('Killed mid-send')).toHaveLength(1);
      // The function writes the ledger right after the DLQ.
      const entry = await eventually(async () => {
        const found = await rig.ledger().get('crash-1');
        return found?.state === 'dead-lettered' ? found : undefined;
      }, SLOW);
      expect(entry.maybeSent).toMatchObject({
        provider: 'smtp',
        reason: expect.stringContaining('a function stopped'),
      });
    },
    SLOW,
  );

  it(
    'does not send it again when it died after recording the send but before deleting the record',
    async () => {
      await enqueue(rig.peers.sqs, rig.settings.queueUrl, validMessage({ subject: 'Died before delete' }));
      const record = await rig.receiveOne();
      // The first function: the record stays on the queue, as if it died before the delete.
      expect((await rig.invoke(record)).batchItemFailures).toEqual([]);
      expect(await rig.ledger().get(`sqs:${record.messageId}`)).toMatchObject({
        state: 'sent',
        provider: 'smtp',
      });

      // The record comes back after its visibility timeout; the next function finds it sent.
      const again = await rig.receiveOne();
      expect(again.messageId).toBe(record.messageId);
      expect((await rig.invoke(again)).batchItemFailures).toEqual([]);
      await rig.deleteRecord(again);

      expect(rig.smtpCopies('Died before delete')).toHaveLength(1);
      expect(await rig.deadLetters()).toHaveLength(0);
    },
    SLOW,
  );

  it(
    'puts a message in the DLQ once when it died between the DLQ write and deleting the record',
    async () => {
      await rig.peers.sqs.send(
        new SendMessageCommand({
          QueueUrl: rig.settings.queueUrl,
          MessageBody: '{"v":1,"subject":"no from"}',
        }),
      );
      const record = await rig.receiveOne();
      // The first function dead-lettered it and died before the outbox delete.
      expect((await rig.invoke(record)).batchItemFailures).toEqual([]);

      // The record comes back; the next function finds it in the DLQ already.
      const again = await rig.receiveOne();
      expect(again.messageId).toBe(record.messageId);
      expect((await rig.invoke(again)).batchItemFailures).toEqual([]);
      await rig.deleteRecord(again);

      expect((await rig.deadLetters()).map(rig.codeOf)).toEqual(['InvalidMessage']);
    },
    SLOW,
  );
});
