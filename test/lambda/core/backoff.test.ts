import { describe, expect, it } from 'vitest';
import { backoffSeconds } from '../../../lambda/core/backoff.ts';

const retry = { baseDelaySeconds: 10, maxDelaySeconds: 100 };

describe('backoffSeconds', () => {
  it('doubles per attempt and stays between half and all of the step', () => {
    expect([1, 2, 3].map((attempt) => backoffSeconds(attempt, retry, () => 0))).toEqual([5, 10, 20]);
    expect([1, 2, 3].map((attempt) => backoffSeconds(attempt, retry, () => 0.999_999))).toEqual([10, 20, 40]);
  });

  it('is capped at maxDelaySeconds and never below one second', () => {
    expect(backoffSeconds(10, retry, () => 0.999_999)).toBe(100);
    expect(backoffSeconds(1, { baseDelaySeconds: 1, maxDelaySeconds: 1 }, () => 0)).toBe(1);
  });

  it('spreads messages that failed together', () => {
    const delays = new Set(Array.from({ length: 50 }, () => backoffSeconds(4, retry)));
    expect(delays.size).toBeGreaterThan(5);
  });
});
