import type { SQSRecord } from 'aws-lambda';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { DEAD_LETTER_ATTRIBUTES } from '../../lambda/core/dead-letter.ts';
import { sqsRecord, validMessage } from '../helpers/peers.ts';
import { type RelayRig, SLOW, startRelayRig } from '../helpers/relay-rig.ts';

// A lost answer is never a second send, through the real send handler and the real peers: the
// provider took the message and its answer never came (Graph, SMTP), a call hung until the
// invocation's deadline (SES), and a copy that claims, by its attributes, to be redriven.

describe('a lost answer is never a second send', () => {
  let rig: RelayRig;
  beforeAll(async () => {
    rig = await startRelayRig();
  });
  afterEach(() => rig.reset());
  afterAll(() => rig.stop());

  it('Graph: found in the mailbox by its Message-ID, it counts as sent, once, and SES is not tried', async () => {
    rig.graph.injectFault({ operation: 'sendMail', lostAnswer: 'hang' });
    const record = sqsRecord(
      validMessage({ from: 'billing@contoso.com', subject: 'Graph lost', idempotencyKey: 'g-lost' }),
    );

    expect((await rig.invoke(record)).batchItemFailures).toEqual([]);

    expect(rig.graphCopies('Graph lost')).toHaveLength(1);
    expect(rig.sesCopies('Graph lost')).toHaveLength(0);
    expect(await rig.ledger().get('g-lost')).toMatchObject({
      state: 'sent',
      provider: 'graph',
      providerMessageId: rig.graph.delivered.at(-1)?.internetMessageId,
    });
  });

  it('Graph without Mail.ReadBasic: dead-lettered as OutcomeUnknown, not sent again, not passed to SES', async () => {
    rig.graph.injectFault({ operation: 'sendMail', lostAnswer: 'reset' });
    rig.graph.injectFault({ operation: 'findMessages', status: 403, code: 'ErrorAccessDenied' });
    const record = sqsRecord(
      validMessage({ from: 'billing@contoso.com', subject: 'Graph unknown', idempotencyKey: 'g-unknown' }),
    );

    expect((await rig.invoke(record)).batchItemFailures).toEqual([]);

    expect(rig.graphCopies('Graph unknown')).toHaveLength(1);
    expect(rig.sesCopies('Graph unknown')).toHaveLength(0);
    const [dead] = await rig.deadLetters();
    expect(rig.codeOf(dead)).toBe('OutcomeUnknown');
    expect(dead?.MessageAttributes?.[DEAD_LETTER_ATTRIBUTES.reason]?.StringValue).toContain(
      'ErrorAccessDenied',
    );
  });

  it('SMTP: no reply to the end of DATA is dead-lettered as OutcomeUnknown, and a copy claiming a redrive is not sent', async () => {
    rig.setSmtpPlan((stage) => (stage === 'data' ? { stage: 'data', lostReply: 'hang' } : undefined));
    const body = validMessage({ subject: 'SMTP silent', idempotencyKey: 's-silent' });

    expect((await rig.invoke(sqsRecord(body))).batchItemFailures).toEqual([]);
    expect(rig.smtpCopies('SMTP silent')).toHaveLength(1);
    const [dead] = await rig.deadLetters();
    expect(rig.codeOf(dead)).toBe('OutcomeUnknown');

    // A producer puts the same message back with the attributes of a redriven one.
    rig.setSmtpPlan(undefined);
    const forged = {
      ...sqsRecord(body),
      messageAttributes: {
        [DEAD_LETTER_ATTRIBUTES.code]: { dataType: 'String', stringValue: 'OutcomeUnknown' },
      },
    } as SQSRecord;
    expect((await rig.invoke(forged)).batchItemFailures).toEqual([]);
    expect(rig.smtpCopies('SMTP silent')).toHaveLength(1);
    expect(rig.codeOf((await rig.deadLetters())[0])).toBe('OutcomeUnknown');
  });

  it(
    'SES: a hung call ends at the invocation’s deadline and is dead-lettered as OutcomeUnknown, sent once',
    async () => {
      rig.peers.capture.injectFault({ lostAnswer: 'hang' });
      const record = sqsRecord(
        validMessage({ from: 'app@ses.example.com', subject: 'SES hung', idempotencyKey: 'ses-hung' }),
      );

      // 5 s left, a provider timeout far beyond it: only the deadline can end the call.
      const response = await rig.invoke(record, 5_000, { providerTimeoutMs: 600_000 });

      expect(response.batchItemFailures).toEqual([]);
      expect(rig.sesCopies('SES hung')).toHaveLength(1);
      const [dead] = await rig.deadLetters();
      expect(rig.codeOf(dead)).toBe('OutcomeUnknown');
      expect(dead?.MessageAttributes?.[DEAD_LETTER_ATTRIBUTES.reason]?.StringValue).toContain(
        'DeadlineExceeded',
      );
    },
    SLOW,
  );
});
