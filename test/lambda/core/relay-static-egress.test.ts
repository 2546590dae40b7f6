import type { SQSRecord } from 'aws-lambda';
import { beforeEach, describe, expect, it } from 'vitest';
import type { RecordRequeue } from '../../../lambda/core/record-delay.ts';
import { createRelay, type RelayCoreSettings } from '../../../lambda/core/relay.ts';
import type { RouteSettings } from '../../../lambda/core/settings.ts';
import { MemoryLedger, MemorySuppressionList } from '../../helpers/memory-ledger.ts';
import { sqsRecord, validMessage } from '../../helpers/peers.ts';
import { Recorder, ScriptedProvider } from '../../helpers/scripted-relay.ts';

// The send function outside the VPC passes the messages of the providers that need the static egress
// IP to the static-egress function, which resumes the route there. Scripted providers, the ledger in
// memory; test/e2e/static-egress.test.ts runs both functions on the SQS and DynamoDB emulators.

const STATIC_EGRESS_QUEUE = 'https://sqs.eu-west-1.amazonaws.com/123456789012/static-egress';

class QueueRecorder implements RecordRequeue {
  readonly copies: SQSRecord[] = [];
  refuse = false;
  async requeue(record: SQSRecord, seconds: number) {
    if (this.refuse) return false;
    expect(seconds).toBe(0);
    this.copies.push(record);
    return true;
  }
}

const SETTINGS = {
  limits: { maxRecipients: 50, maxMessageBytes: 1024 * 1024 },
  maxReceiveCount: 3,
  retry: { maxAttempts: 3, baseDelaySeconds: 10, maxDelaySeconds: 600 },
  circuitBreaker: { failureThreshold: 3, cooldownSeconds: 60 },
  ledger: { tableName: 'ledger', leaseSeconds: 30, retentionDays: 14 },
} satisfies RelayCoreSettings;

describe('relay: providers that send from the static-egress function', () => {
  let graph: ScriptedProvider;
  let smtp: ScriptedProvider;
  let ledger: MemoryLedger;
  let recorder: Recorder;
  let queue: QueueRecorder;

  /** The send function (passes smtp on) or the static-egress function (sends through all). */
  const relayOf = (routes: RouteSettings[], passesSmtpOn: boolean) =>
    createRelay({
      providers: [graph, smtp],
      deadLetters: recorder,
      recordDelay: recorder,
      logger: recorder,
      ledger,
      suppressions: new MemorySuppressionList(),
      ...(passesSmtpOn && { staticEgressQueue: queue }),
      settings: {
        ...SETTINGS,
        routes,
        ...(passesSmtpOn && {
          staticEgress: {
            queueUrl: STATIC_EGRESS_QUEUE,
            providers: [{ name: 'smtp', senders: ['contoso.com'] }],
          },
        }),
      },
      random: () => 0.5,
    });
  const route = (providers: string[]): RouteSettings[] => [{ name: 'app', from: ['*'], providers }];
  const message = () => sqsRecord(validMessage({ from: 'scanner@contoso.com' }));
  /** The copy as SQS delivers it to the static-egress function: its own id, the original's named. */
  const delivered = (copy: SQSRecord): SQSRecord => ({
    ...copy,
    messageId: `copy-of-${copy.messageId}`,
    messageAttributes: {
      ...copy.messageAttributes,
      'MailRelay.SourceMessageId': { dataType: 'String', stringValue: copy.messageId } as never,
    },
  });

  beforeEach(() => {
    graph = new ScriptedProvider('graph');
    smtp = new ScriptedProvider('smtp');
    ledger = new MemoryLedger();
    recorder = new Recorder();
    queue = new QueueRecorder();
  });

  it('passes a message whose route starts with smtp to the static-egress function, which sends it', async () => {
    const record = message();
    const outcome = await relayOf(route(['smtp', 'graph']), true).processRecord(record);

    expect(outcome).toEqual({ outcome: 'passed-to-static-egress', provider: 'smtp' });
    expect(queue.copies).toEqual([record]);
    expect(smtp.calls + graph.calls).toBe(0);

    const sent = await relayOf(route(['smtp', 'graph']), false).processRecord(delivered(record));
    expect(sent).toMatchObject({ outcome: 'sent', receipt: { provider: 'smtp' } });
    expect(smtp.sent).toHaveLength(1);
    expect(graph.calls).toBe(0);
  });

  it('sends through the providers before smtp itself, and passes the message on only when the route reaches smtp', async () => {
    graph.script = () => 'provider';
    const record = message();
    const outcome = await relayOf(route(['graph', 'smtp']), true).processRecord(record);

    expect(outcome).toEqual({ outcome: 'passed-to-static-egress', provider: 'smtp' });
    expect(graph.calls).toBe(1);
    // The ledger says where the route stands: the static-egress function resumes at smtp, with
    // graph's failure kept, and does not try graph again.
    const [entry] = [...ledger.records.values()];
    expect(entry).toMatchObject({ state: 'retrying', providerIndex: 1, attempts: 0 });
    expect(entry?.failures).toEqual([expect.objectContaining({ provider: 'graph' })]);

    const sent = await relayOf(route(['graph', 'smtp']), false).processRecord(delivered(record));
    expect(sent).toMatchObject({ outcome: 'sent', receipt: { provider: 'smtp' }, fallbackFrom: ['graph'] });
    expect(graph.calls).toBe(1);
  });

  it('never passes on a message whose route does not need smtp', async () => {
    const outcome = await relayOf(route(['graph']), true).processRecord(message());
    expect(outcome).toMatchObject({ outcome: 'sent', receipt: { provider: 'graph' } });
    expect(queue.copies).toEqual([]);
  });

  it('sends a copy that arrives twice only once', async () => {
    const record = message();
    await relayOf(route(['smtp']), true).processRecord(record);
    await relayOf(route(['smtp']), true).processRecord(record);
    expect(queue.copies).toHaveLength(2);

    const egress = relayOf(route(['smtp']), false);
    await egress.processRecord(delivered(record));
    const second = await egress.processRecord({ ...delivered(record), messageId: 'another-copy' });
    expect(second).toMatchObject({ outcome: 'duplicate' });
    expect(smtp.sent).toHaveLength(1);
  });

  it('retries the message when it cannot be passed on, so nothing is lost', async () => {
    queue.refuse = true;
    await expect(relayOf(route(['smtp']), true).processRecord(message())).rejects.toMatchObject({
      code: 'StaticEgressUnavailable',
      failureClass: 'transient',
    });
    expect(recorder.delays).toHaveLength(1);
    expect(smtp.calls).toBe(0);
  });
});
