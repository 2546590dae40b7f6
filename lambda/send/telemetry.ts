import { METRIC_DIMENSIONS, type MetricName, type RelayTelemetry } from '../core/metrics.ts';

/** EMF's limits per document: 100 metrics, and 100 values in one metric's array. */
const MAX_METRICS_PER_DOCUMENT = 100;
const MAX_VALUES_PER_METRIC = 100;

type Unit = 'Count' | 'Milliseconds';

interface DimensionSet {
  readonly dimensions: Readonly<Record<string, string>>;
  /** Counts summed; milliseconds kept as values, so CloudWatch still computes percentiles. */
  readonly metrics: Map<MetricName, { unit: Unit; values: number[] }>;
}

/** One EMF document being filled: its values at the root, one directive per set of dimension names. */
interface Document {
  readonly root: Map<string, string>;
  readonly values: Map<string, { unit: Unit; value: number | number[] }>;
  readonly directives: Map<string, { dimensions: string[]; metrics: { Name: string; Unit: Unit }[] }>;
  metricCount: number;
}

export interface EmfTelemetryOptions {
  readonly namespace: string;
  /** The `service` dimension every metric carries (the stack's alarms and dashboard name it). */
  readonly service: string;
  /**
   * Keep the data points that carry a Route dimension (Sent and FallbackUsed per Provider and Route):
   * each route makes more CloudWatch metrics, billed per metric and month, and no alarm reads them.
   * The same counts per Provider are always written. @default false
   */
  readonly routeMetrics?: boolean;
  /**
   * Write latencies (SendLatency, EndToEndLatency) per Provider, as the dashboard draws them; without
   * it they are written for the relay as a whole: two CloudWatch metrics instead of two per provider
   * (each billed per month), and no alarm reads them. @default false
   */
  readonly latencyByProvider?: boolean;
  /** Where the documents go: Lambda reads EMF from stdout. */
  readonly write?: (line: string) => void;
  readonly now?: () => number;
}

/**
 * The relay's metrics as Embedded Metric Format, gathered over an invocation and written by `flush`
 * in as few documents as EMF allows: one document holds every set of dimensions whose values agree
 * (service and Provider=ses, service alone …), each as its own directive, so an invocation whose
 * messages went through one provider writes one line, however many messages and metrics. A second
 * provider (or a second value of any dimension) takes another document. Counts are summed, which is
 * what the alarms read (Sum); latencies keep every value (EMF arrays), so percentiles are exact.
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
    if (!this.keeps(dimensions)) return;
    const metric = this.metricOf(name, dimensions, 'Count');
    metric.values[0] = (metric.values[0] ?? 0) + value;
  }

  milliseconds(name: MetricName, dimensions: Readonly<Record<string, string>>, value: number): void {
    if (!this.keeps(dimensions)) return;
    const kept = this.options.latencyByProvider === true ? dimensions : withoutProvider(dimensions);
    this.metricOf(name, kept, 'Milliseconds').values.push(value);
  }

  /** Writes what was gathered since the last flush and forgets it. */
  flush(): void {
    const sets = [...this.sets.values()];
    this.sets.clear();
    const documents: Document[] = [];
    for (const set of sets) {
      for (const [name, metric] of set.metrics) {
        // A latency with more values than one array takes goes out over several documents.
        const chunks =
          metric.unit === 'Count'
            ? [metric.values[0] ?? 0]
            : chunked(metric.values).map((chunk) => (chunk.length === 1 ? (chunk[0] as number) : chunk));
        for (const value of chunks) {
          const point = { dimensions: set.dimensions, name, unit: metric.unit, value };
          let document = documents.find((candidate) => fits(candidate, point));
          if (!document) {
            document = { root: new Map(), values: new Map(), directives: new Map(), metricCount: 0 };
            documents.push(document);
          }
          add(document, point);
        }
      }
    }
    for (const document of documents) this.write(JSON.stringify(this.documentOf(document)));
  }

  private documentOf(document: Document): Record<string, unknown> {
    return {
      _aws: {
        Timestamp: this.now(),
        CloudWatchMetrics: [...document.directives.values()].map(({ dimensions, metrics }) => ({
          Namespace: this.options.namespace,
          Dimensions: [['service', ...dimensions]],
          Metrics: metrics,
        })),
      },
      service: this.options.service,
      ...Object.fromEntries(document.root),
      ...Object.fromEntries([...document.values].map(([name, { value }]) => [name, value])),
    };
  }

  private keeps(dimensions: Readonly<Record<string, string>>): boolean {
    return this.options.routeMetrics === true || !(METRIC_DIMENSIONS.route in dimensions);
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

interface Point {
  readonly dimensions: Readonly<Record<string, string>>;
  readonly name: MetricName;
  readonly unit: Unit;
  readonly value: number | number[];
}

/**
 * Whether the point can join the document: its dimension values agree with the document's, and its
 * metric is not there yet with another value (a root field has one value, which every directive
 * naming the metric reads: Sent per Provider and per Provider and Route share it when they agree).
 */
function fits(document: Document, point: Point): boolean {
  if (document.metricCount >= MAX_METRICS_PER_DOCUMENT) return false;
  for (const [dimension, value] of Object.entries(point.dimensions)) {
    const held = document.root.get(dimension);
    if (held !== undefined && held !== value) return false;
    // A dimension's name must not be a metric's, and the reverse.
    if (document.values.has(dimension)) return false;
  }
  if (document.root.has(point.name)) return false;
  const existing = document.values.get(point.name);
  return (
    existing === undefined ||
    (existing.unit === point.unit && JSON.stringify(existing.value) === JSON.stringify(point.value))
  );
}

function add(document: Document, point: Point): void {
  for (const [dimension, value] of Object.entries(point.dimensions)) document.root.set(dimension, value);
  document.values.set(point.name, { unit: point.unit, value: point.value });
  const names = Object.keys(point.dimensions).sort();
  const key = names.join('\u0000');
  let directive = document.directives.get(key);
  if (!directive) {
    directive = { dimensions: names, metrics: [] };
    document.directives.set(key, directive);
  }
  if (!directive.metrics.some((metric) => metric.Name === point.name)) {
    directive.metrics.push({ Name: point.name, Unit: point.unit });
    document.metricCount += 1;
  }
}

function chunked(values: readonly number[]): number[][] {
  const chunks: number[][] = [];
  for (let start = 0; start < values.length; start += MAX_VALUES_PER_METRIC) {
    chunks.push(values.slice(start, start + MAX_VALUES_PER_METRIC));
  }
  return chunks;
}

function withoutProvider(dimensions: Readonly<Record<string, string>>): Readonly<Record<string, string>> {
  if (!(METRIC_DIMENSIONS.provider in dimensions)) return dimensions;
  const { [METRIC_DIMENSIONS.provider]: _provider, ...rest } = dimensions;
  return rest;
}
