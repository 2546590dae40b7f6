import { LogFormatter, Logger, LogItem } from '@aws-lambda-powertools/logger';
import type { LogAttributes, UnformattedAttributes } from '@aws-lambda-powertools/logger/types';

/**
 * Powertools' record without what every line of a log stream repeats and CloudWatch already knows
 * from the stream (the function's ARN, name and memory, the sampling rate): about 200 of a line's
 * 600 bytes, billed per GB ingested. The request id stays (it ties the lines of one invocation), and
 * cold_start is written only on a cold start's lines.
 */
class CompactLogFormatter extends LogFormatter {
  formatAttributes(attributes: UnformattedAttributes, additional: LogAttributes): LogItem {
    const context = attributes.lambdaContext;
    return new LogItem({
      attributes: {
        level: attributes.logLevel,
        message: attributes.message,
        timestamp: this.formatTimestamp(attributes.timestamp),
        service: attributes.serviceName,
        ...(context?.awsRequestId !== undefined && { function_request_id: context.awsRequestId }),
        ...(context?.coldStart === true && { cold_start: true }),
        ...(attributes.xRayTraceId !== undefined && { xray_trace_id: attributes.xRayTraceId }),
      },
    }).addAttributes(additional);
  }
}

/** The structured logger of every relay function (POWERTOOLS_SERVICE_NAME, else mail-relay). */
export function relayLogger(env: Readonly<Record<string, string | undefined>>): Logger {
  return new Logger({
    serviceName: env.POWERTOOLS_SERVICE_NAME ?? 'mail-relay',
    logFormatter: new CompactLogFormatter(),
  });
}
