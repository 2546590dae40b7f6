import { describe, expect, it } from 'vitest';
import { parseRetryAfter } from '../../../../lambda/providers/graph/graph-provider.ts';

describe('parseRetryAfter', () => {
  const now = Date.parse('2026-11-22T10:00:00Z');

  it('reads seconds', () => {
    expect(parseRetryAfter('7', now)).toBe(7);
    expect(parseRetryAfter(' 30 ', now)).toBe(30);
  });

  it('reads an HTTP date as the seconds until then, rounded up', () => {
    expect(parseRetryAfter('Sun, 22 Nov 2026 10:00:09 GMT', now)).toBe(9);
  });

  it('waits at least a second, and at most what an SQS visibility timeout can express (12 h)', () => {
    expect(parseRetryAfter('0', now)).toBe(1);
    expect(parseRetryAfter('Sun, 22 Nov 2026 09:00:00 GMT', now)).toBe(1);
    expect(parseRetryAfter('172800', now)).toBe(43_200);
  });

  it('ignores a missing or unreadable header', () => {
    expect(parseRetryAfter(undefined, now)).toBeUndefined();
    expect(parseRetryAfter('', now)).toBeUndefined();
    expect(parseRetryAfter('soon', now)).toBeUndefined();
  });
});
