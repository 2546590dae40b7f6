import type { MetricName, RelayTelemetry } from '../core/metrics.ts';

/** EMF's limits per document: 100 metrics, and 100 values in one metric's array. */
const MAX_METRICS_PER_DOCUMENT = 100;
const MAX_VALUES_PER_METRIC = 100;

type Unit = 'Count' | 'Milliseconds';

interface DimensionSet {
  readonly dimensions: Readonly<Record<string, string>>;
  /** Counts summed; milliseconds kept as values, so CloudWatch still computes percentiles. */
  readonly metrics: Map<MetricName, { unit: Unit; values: number[] }>;
}

export interface EmfTelemetryOptions {
  readonly namespace: string;
  /** The `service` dimension every metric carries (the stack's alarms and dashboard name it). */
  readonly service: string;
  /** Where the documents go: Lambda reads EMF from stdout. */
  readonly write?: (line: string) => void;
  readonly now?: () => number;
}

/**
 * The relay's metrics as Embedded Metric Format, gathered over an invocation and written by `flush`
 * as one document per set of dimension values (Provider=ses, Route=default …): a batch of ten sends
 * writes a handful of lines instead of one per data point. Counts are summed, which is what the
 * alarms read (Sum); latencies keep every value (EMF arrays), so percentiles are exact.
 */
export class EmfTelemetry implements RelayTelemetry {
  private readonly sets = new Map<string, DimensionSet>();
  private readonly write: (line: string) => void;
  private readonly now: () => number;

  constructor(private readonly options: EmfTelemetryOptions) {
    this.write = options.write ?? ((line) => process.stdout.write(`${line}\n`));
    this.now = options.now ?? Date.now;
  }

  count(name: MetricName, dimensions: Readonly<Record<string, string>>, value = 1): void {
    const metric = this.metricOf(name, dimensions, 'Count');
    metric.values[0] = (metric.values[0] ?? 0) + value;
  }

  milliseconds(name: MetricName, dimensions: Readonly<Record<string, string>>, value: number): void {
    this.metricOf(name, dimensions, 'Milliseconds').values.push(value);
  }

  /** Writes what was gathered since the last flush and forgets it. */
  flush(): void {
    const sets = [...this.sets.values()];
    this.sets.clear();
    for (const set of sets) {
      const metrics = [...set.metrics.entries()];
      for (let start = 0; start < metrics.length; start += MAX_METRICS_PER_DOCUMENT) {
        this.writeDocument(set.dimensions, metrics.slice(start, start + MAX_METRICS_PER_DOCUMENT));
      }
    }
  }

  private writeDocument(
    dimensions: Readonly<Record<string, string>>,
    metrics: readonly [MetricName, { unit: Unit; values: number[] }][],
  ): void {
    // A latency metric with more values than one array takes goes out over several documents.
    let remaining = metrics.map(([name, metric]) => ({ name, unit: metric.unit, values: metric.values }));
    while (remaining.length > 0) {
      const document: Record<string, unknown> = {
        _aws: {
          Timestamp: this.now(),
          CloudWatchMetrics: [
            {
              Namespace: this.options.namespace,
              Dimensions: [['service', ...Object.keys(dimensions)]],
              Metrics: remaining.map(({ name, unit }) => ({ Name: name, Unit: unit })),
            },
          ],
        },
        service: this.options.service,
        ...dimensions,
      };
      for (const { name, unit, values } of remaining) {
        const slice = values.slice(0, MAX_VALUES_PER_METRIC);
        document[name] = unit === 'Count' || slice.length === 1 ? slice[0] : slice;
      }
      this.write(JSON.stringify(document));
      remaining = remaining
        .map((metric) => ({ ...metric, values: metric.values.slice(MAX_VALUES_PER_METRIC) }))
        .filter((metric) => metric.values.length > 0);
    }
  }

  private metricOf(name: MetricName, dimensions: Readonly<Record<string, string>>, unit: Unit) {
    const key = JSON.stringify(Object.entries(dimensions).sort(([a], [b]) => a.localeCompare(b)));
    let set = this.sets.get(key);
    if (!set) {
      set = { dimensions: { ...dimensions }, metrics: new Map() };
      this.sets.set(key, set);
    }
    let metric = set.metrics.get(name);
    if (!metric) {
      metric = { unit, values: [] };
      set.metrics.set(name, metric);
    }
    return metric;
  }
}
