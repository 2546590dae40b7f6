import type { Context } from 'aws-lambda';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { relayLogger } from '../../../lambda/core/relay-logger.ts';

describe("the relay functions' log lines", () => {
  afterEach(() => vi.restoreAllMocks());

  it('carry the level, message, time, service and request id, and not what the log stream already says', () => {
    const lines: string[] = [];
    vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
      lines.push(String(chunk));
      return true;
    });
    const logger = relayLogger({ POWERTOOLS_SERVICE_NAME: 'mail-relay' });
    logger.addContext({
      functionName: 'send',
      functionVersion: '$LATEST',
      invokedFunctionArn: 'arn:aws:lambda:eu-west-1:123456789012:function:send',
      memoryLimitInMB: '512',
      awsRequestId: 'request-1',
    } as unknown as Context);
    logger.info('Message sent', { messageId: 'm-1', provider: 'ses' });
    logger.info('Message sent', { messageId: 'm-2', provider: 'ses' });

    const [first, second] = lines.map((line) => JSON.parse(line) as Record<string, unknown>);
    // cold_start appears only on a cold start's lines (whether this process's first context counts
    // as one is Powertools' own state): when it is there, it is true.
    const { cold_start: coldStart, ...rest } = first ?? {};
    expect(rest).toEqual({
      level: 'INFO',
      message: 'Message sent',
      timestamp: expect.any(String),
      service: 'mail-relay',
      function_request_id: 'request-1',
      messageId: 'm-1',
      provider: 'ses',
    });
    expect([undefined, true]).toContain(coldStart);
    expect(second?.cold_start).toBeUndefined();
    expect(lines.join('')).not.toMatch(/function_arn|function_memory_size|function_name|sampling_rate/);
  });
});
