import { type Metrics, MetricUnit } from '@aws-lambda-powertools/metrics';
import type { MetricName, RelayTelemetry } from '../core/metrics.ts';

/**
 * The relay's metrics as Embedded Metric Format through Powertools Metrics. Each data point is its
 * own EMF document (a single metric), because the records of one batch have different providers and
 * routes, and one document carries one set of dimension values.
 */
export class EmfTelemetry implements RelayTelemetry {
  constructor(private readonly metrics: Metrics) {}

  count(name: MetricName, dimensions: Readonly<Record<string, string>>, value = 1): void {
    this.emit(name, dimensions, MetricUnit.Count, value);
  }

  milliseconds(name: MetricName, dimensions: Readonly<Record<string, string>>, value: number): void {
    this.emit(name, dimensions, MetricUnit.Milliseconds, value);
  }

  private emit(
    name: MetricName,
    dimensions: Readonly<Record<string, string>>,
    unit: (typeof MetricUnit)[keyof typeof MetricUnit],
    value: number,
  ) {
    const single = this.metrics.singleMetric();
    if (Object.keys(dimensions).length > 0) single.addDimensions({ ...dimensions });
    // A single metric is written as soon as it is added.
    single.addMetric(name, unit, value);
  }
}
