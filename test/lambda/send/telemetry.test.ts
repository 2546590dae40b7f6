import { describe, expect, it } from 'vitest';
import { BufferedOutcomes } from '../../../lambda/send/buffered-outcomes.ts';
import { EmfTelemetry } from '../../../lambda/send/telemetry.ts';
import { emfPoints } from '../../helpers/emf.ts';

const telemetryWriting = (lines: string[]) =>
  new EmfTelemetry({
    namespace: 'MailRelay',
    service: 'mail-relay',
    write: (line) => lines.push(line),
    now: () => 0,
  });

describe('EMF metrics gathered over an invocation', () => {
  it('writes one document per set of dimension values, counts summed and latencies kept', () => {
    const lines: string[] = [];
    const telemetry = telemetryWriting(lines);
    for (let index = 0; index < 10; index += 1) {
      telemetry.count('Sent', { Provider: 'ses' });
      telemetry.count('Sent', { Provider: 'ses', Route: 'default' });
      telemetry.milliseconds('SendLatency', { Provider: 'ses' }, 50 + index);
    }
    telemetry.count('Accepted', {}, 10);

    telemetry.flush();

    expect(lines).toHaveLength(3);
    const service = { service: 'mail-relay' };
    expect(emfPoints(lines)).toEqual([
      { namespace: 'MailRelay', name: 'Sent', dimensions: { ...service, Provider: 'ses' }, value: 10 },
      {
        namespace: 'MailRelay',
        name: 'SendLatency',
        dimensions: { ...service, Provider: 'ses' },
        value: [50, 51, 52, 53, 54, 55, 56, 57, 58, 59],
      },
      {
        namespace: 'MailRelay',
        name: 'Sent',
        dimensions: { ...service, Provider: 'ses', Route: 'default' },
        value: 10,
      },
      { namespace: 'MailRelay', name: 'Accepted', dimensions: service, value: 10 },
    ]);
    expect(JSON.parse(lines[0] ?? '{}')._aws.CloudWatchMetrics[0].Metrics).toEqual([
      { Name: 'Sent', Unit: 'Count' },
      { Name: 'SendLatency', Unit: 'Milliseconds' },
    ]);
  });

  it('splits more than 100 latency values over several documents, as EMF requires', () => {
    const lines: string[] = [];
    const telemetry = telemetryWriting(lines);
    for (let index = 0; index < 150; index += 1)
      telemetry.milliseconds('SendLatency', { Provider: 'graph' }, index);

    telemetry.flush();

    const values = emfPoints(lines).map((point) => point.value as number[]);
    expect(values.map((list) => list.length)).toEqual([100, 50]);
    expect(values.flat()).toEqual(Array.from({ length: 150 }, (_, index) => index));
  });

  it('writes nothing twice: a flush forgets what it wrote', () => {
    const lines: string[] = [];
    const telemetry = telemetryWriting(lines);
    telemetry.count('Duplicate', {});
    telemetry.flush();
    telemetry.flush();

    expect(lines).toHaveLength(1);
  });
});

describe('outcome events held for the end of an invocation', () => {
  it('publishes every event of the invocation in one call at flush, and none before', async () => {
    const calls: number[] = [];
    const outcomes = new BufferedOutcomes({ publish: async (events) => void calls.push(events.length) });
    const event = { outcome: 'sent', messageId: 'm', at: 'now' } as const;
    await Promise.all([outcomes.publish([event]), outcomes.publish([event]), outcomes.publish([event])]);

    expect(calls).toEqual([]);
    await outcomes.flush();
    await outcomes.flush();

    expect(calls).toEqual([3]);
  });
});
