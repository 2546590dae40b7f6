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
  const service = { service: 'mail-relay' };

  it('writes one document for an invocation whose dimension values agree, counts summed and latencies kept', () => {
    const lines: string[] = [];
    const telemetry = telemetryWriting(lines);
    for (let index = 0; index < 10; index += 1) {
      telemetry.count('Sent', { Provider: 'ses' });
      telemetry.count('Sent', { Provider: 'ses', Route: 'default' });
      telemetry.milliseconds('SendLatency', { Provider: 'ses' }, 50 + index);
    }
    telemetry.count('Accepted', {}, 10);
    telemetry.count('DeadLettered', { FailureClass: 'permanent' });

    telemetry.flush();

    expect(lines).toHaveLength(1);
    // The Route point is left out by default (routeMetrics): no alarm reads it. Latencies are for the
    // relay as a whole unless latencyByProvider (the dashboard) asks for them per provider.
    expect(emfPoints(lines)).toEqual([
      { namespace: 'MailRelay', name: 'Sent', dimensions: { ...service, Provider: 'ses' }, value: 10 },
      {
        namespace: 'MailRelay',
        name: 'SendLatency',
        dimensions: service,
        value: [50, 51, 52, 53, 54, 55, 56, 57, 58, 59],
      },
      { namespace: 'MailRelay', name: 'Accepted', dimensions: service, value: 10 },
      {
        namespace: 'MailRelay',
        name: 'DeadLettered',
        dimensions: { ...service, FailureClass: 'permanent' },
        value: 1,
      },
    ]);
    const document = JSON.parse(lines[0] ?? '{}');
    expect(
      document._aws.CloudWatchMetrics.map((directive: { Dimensions: string[][] }) => directive.Dimensions),
    ).toEqual([[['service', 'Provider']], [['service']], [['service', 'FailureClass']]]);
    expect(document._aws.CloudWatchMetrics[1].Metrics).toEqual([
      { Name: 'SendLatency', Unit: 'Milliseconds' },
      { Name: 'Accepted', Unit: 'Count' },
    ]);
  });

  it('writes latencies per provider with latencyByProvider, as the dashboard draws them', () => {
    const lines: string[] = [];
    const telemetry = new EmfTelemetry({
      namespace: 'MailRelay',
      service: 'mail-relay',
      latencyByProvider: true,
      write: (line) => lines.push(line),
      now: () => 0,
    });
    telemetry.milliseconds('SendLatency', { Provider: 'graph' }, 120);
    telemetry.milliseconds('EndToEndLatency', { Provider: 'graph' }, 400);
    telemetry.flush();

    expect(emfPoints(lines)).toEqual([
      {
        namespace: 'MailRelay',
        name: 'SendLatency',
        dimensions: { ...service, Provider: 'graph' },
        value: 120,
      },
      {
        namespace: 'MailRelay',
        name: 'EndToEndLatency',
        dimensions: { ...service, Provider: 'graph' },
        value: 400,
      },
    ]);
  });

  it('keeps the Route points with routeMetrics, one document while the counts agree, another when they differ', () => {
    const lines: string[] = [];
    const telemetry = new EmfTelemetry({
      namespace: 'MailRelay',
      service: 'mail-relay',
      routeMetrics: true,
      write: (line) => lines.push(line),
      now: () => 0,
    });
    telemetry.count('Sent', { Provider: 'ses' }, 3);
    telemetry.count('Sent', { Provider: 'ses', Route: 'billing' }, 3);
    telemetry.flush();

    expect(lines).toHaveLength(1);
    expect(emfPoints(lines)).toEqual([
      { namespace: 'MailRelay', name: 'Sent', dimensions: { ...service, Provider: 'ses' }, value: 3 },
      {
        namespace: 'MailRelay',
        name: 'Sent',
        dimensions: { ...service, Provider: 'ses', Route: 'billing' },
        value: 3,
      },
    ]);

    lines.length = 0;
    telemetry.count('Sent', { Provider: 'ses' }, 3);
    telemetry.count('Sent', { Provider: 'ses', Route: 'billing' }, 2);
    telemetry.count('Sent', { Provider: 'ses', Route: 'alerts' }, 1);
    telemetry.flush();

    expect(lines).toHaveLength(3);
    expect(emfPoints(lines).map((point) => [point.dimensions.Route, point.value])).toEqual([
      [undefined, 3],
      ['billing', 2],
      ['alerts', 1],
    ]);
  });

  it('writes a document per provider: one value per dimension in a document', () => {
    const lines: string[] = [];
    const telemetry = telemetryWriting(lines);
    telemetry.count('Sent', { Provider: 'ses' });
    telemetry.count('Sent', { Provider: 'graph' }, 2);
    telemetry.count('Retried', {});

    telemetry.flush();

    expect(lines).toHaveLength(2);
    expect(emfPoints(lines).map((point) => [point.name, point.dimensions.Provider, point.value])).toEqual([
      ['Sent', 'ses', 1],
      ['Retried', undefined, 1],
      ['Sent', 'graph', 2],
    ]);
    // Retried shares the first document; the Provider value there is not one of its dimensions.
    expect(emfPoints(lines).find((point) => point.name === 'Retried')?.dimensions).toEqual(service);
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

  it('holds only the kinds its target publishes: nothing to flush, no call', async () => {
    const calls: number[] = [];
    const outcomes = new BufferedOutcomes({
      publish: async (events) => void calls.push(events.length),
      publishes: (kind) => kind === 'dead-lettered',
    });
    await outcomes.publish([{ outcome: 'sent', messageId: 'm', at: 'now' }]);
    await outcomes.flush();
    await outcomes.publish([{ outcome: 'dead-lettered', messageId: 'n', at: 'now' }]);
    await outcomes.flush();

    expect(outcomes.publishes('sent')).toBe(false);
    expect(calls).toEqual([1]);
  });
});
