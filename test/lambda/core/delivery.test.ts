import { describe, expect, it } from 'vitest';
import { admit, ledgerKeyOf, OUTCOME_UNKNOWN } from '../../../lambda/core/delivery.ts';
import type { DeliveryRecord } from '../../../lambda/core/ledger.ts';

const now = 1_700_000_000_000;
const entry = (changes: Partial<DeliveryRecord>): DeliveryRecord => ({
  key: 'k',
  state: 'sent',
  version: 3,
  messageId: 'm',
  bodyHash: 'h',
  providerIndex: 0,
  attempts: 0,
  failures: [],
  createdAt: '',
  updatedAt: '',
  expiresAt: now / 1000 + 60,
  ...changes,
});
const incoming = { bodyHash: 'h', now, redriven: false };

describe('admit', () => {
  it('keys by the idempotency key, else the SQS message id', () => {
    expect(ledgerKeyOf('invoice-42', 'abc')).toBe('invoice-42');
    expect(ledgerKeyOf(undefined, 'abc')).toBe('sqs:abc');
  });

  it('lets a new message and a retried one proceed', () => {
    expect(admit(undefined, incoming).kind).toBe('proceed');
    expect(admit(entry({ state: 'retrying' }), incoming).kind).toBe('proceed');
    expect(admit(entry({ state: 'dead-lettered' }), incoming).kind).toBe('proceed');
  });

  it('never sends a sent message again, even when redriven', () => {
    expect(admit(entry({ state: 'sent' }), incoming).kind).toBe('duplicate');
    expect(admit(entry({ state: 'sent' }), { ...incoming, redriven: true }).kind).toBe('duplicate');
  });

  it('waits for a live claim and refuses to guess about a dead one unless redriven', () => {
    expect(admit(entry({ state: 'sending', leaseUntil: now + 4_500 }), incoming)).toMatchObject({
      kind: 'in-flight',
      retryInSeconds: 5,
    });
    expect(admit(entry({ state: 'sending', leaseUntil: now - 1 }), incoming).kind).toBe('unknown');
    expect(
      admit(entry({ state: 'sending', leaseUntil: now - 1 }), { ...incoming, redriven: true }).kind,
    ).toBe('proceed');
    const deadUnknown = entry({
      state: 'dead-lettered',
      failures: [{ provider: 'relay', code: OUTCOME_UNKNOWN, failureClass: 'permanent', reason: '', at: '' }],
    });
    expect(admit(deadUnknown, incoming).kind).toBe('unknown');
    expect(admit(deadUnknown, { ...incoming, redriven: true }).kind).toBe('proceed');
  });

  it('flags the same key with another body as a conflict', () => {
    expect(admit(entry({ state: 'sent' }), { ...incoming, bodyHash: 'other' }).kind).toBe('conflict');
  });
});
