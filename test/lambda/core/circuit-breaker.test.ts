import { describe, expect, it } from 'vitest';
import { CircuitBreakers } from '../../../lambda/core/circuit-breaker.ts';

describe('CircuitBreakers', () => {
  const setup = () => {
    let now = 1_000_000;
    const breakers = new CircuitBreakers({ failureThreshold: 2, cooldownSeconds: 30 }, () => now);
    return { breakers, advance: (ms: number) => (now += ms) };
  };

  it('opens after the threshold of consecutive provider-level failures, for that provider only', () => {
    const { breakers } = setup();
    breakers.recordFailure('graph');
    expect(breakers.check('graph')).toEqual({ allowed: true });
    breakers.recordFailure('graph');
    expect(breakers.check('graph')).toEqual({ allowed: false, retryInSeconds: 30 });
    expect(breakers.check('ses')).toEqual({ allowed: true });
  });

  it('a success in between resets the count', () => {
    const { breakers } = setup();
    breakers.recordFailure('graph');
    breakers.recordSuccess('graph');
    breakers.recordFailure('graph');
    expect(breakers.check('graph').allowed).toBe(true);
  });

  it('after the cool-down lets exactly one trial through; its failure opens it again', () => {
    const { breakers, advance } = setup();
    breakers.recordFailure('graph');
    breakers.recordFailure('graph');
    advance(30_000);
    expect(breakers.check('graph').allowed).toBe(true);
    expect(breakers.check('graph').allowed).toBe(false);
    breakers.recordFailure('graph');
    expect(breakers.check('graph')).toEqual({ allowed: false, retryInSeconds: 30 });
  });

  it('a successful trial closes it; an inconclusive one lets the next trial through', () => {
    const { breakers, advance } = setup();
    breakers.recordFailure('graph');
    breakers.recordFailure('graph');
    advance(30_000);
    expect(breakers.check('graph').allowed).toBe(true);
    breakers.recordInconclusive('graph');
    expect(breakers.check('graph').allowed).toBe(true);
    breakers.recordSuccess('graph');
    expect(breakers.isOpen('graph')).toBe(false);
    expect(breakers.check('graph').allowed).toBe(true);
    expect(breakers.check('graph').allowed).toBe(true);
  });
});
