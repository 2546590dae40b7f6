import { vi } from 'vitest';

interface EmfDirective {
  Namespace: string;
  Dimensions: string[][];
  Metrics: { Name: string; Unit: string }[];
}

/** One metric data point as CloudWatch would read it from an EMF log line. */
export interface EmfPoint {
  readonly namespace: string | undefined;
  readonly name: string;
  readonly dimensions: Record<string, unknown>;
  readonly value: unknown;
}

/** Collects what the code under test writes to stdout (where Lambda's EMF goes) until `stop`. */
export function captureStdout(): { readonly written: string[]; stop(): void } {
  const written: string[] = [];
  const spy = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    written.push(String(chunk));
    return true;
  });
  return { written, stop: () => spy.mockRestore() };
}

/** The metric points in captured stdout: every metric of every JSON line with an `_aws` EMF directive. */
export function emfPoints(written: readonly string[]): EmfPoint[] {
  return written
    .flatMap((chunk) => chunk.split('\n'))
    .filter((line) => line.includes('"_aws"'))
    .map(
      (line) => JSON.parse(line) as Record<string, unknown> & { _aws: { CloudWatchMetrics: EmfDirective[] } },
    )
    .flatMap((document) =>
      document._aws.CloudWatchMetrics.flatMap((directive) =>
        directive.Metrics.map(({ Name }) => ({
          namespace: directive.Namespace,
          name: Name,
          dimensions: Object.fromEntries((directive.Dimensions[0] ?? []).map((key) => [key, document[key]])),
          value: document[Name],
        })),
      ),
    );
}
