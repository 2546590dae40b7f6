import { describe, expect, it } from 'vitest';
import { admit, LedgerEntry, ledgerKeyOf, OUTCOME_UNKNOWN } from '../../../lambda/core/delivery.ts';
import type { DeliveryRecord } from '../../../lambda/core/ledger.ts';
import { MemoryLedger } from '../../helpers/memory-ledger.ts';

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
/** A later delivery of the same message (another SQS message id). */
const incoming = { bodyHash: 'h', now, messageId: 'other' };
const maybeSent = { provider: 'smtp', since: '2026-11-29T10:00:00.000Z', reason: 'the answer was lost' };
const release = { at: '2026-11-29T11:00:00.000Z', by: 'operator' };

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

  it('never sends a sent message again, even when released', () => {
    expect(admit(entry({ state: 'sent' }), incoming).kind).toBe('duplicate');
    expect(admit(entry({ state: 'sent', release }), incoming).kind).toBe('duplicate');
  });

  it('waits while another function has handed the message to a provider', () => {
    expect(admit(entry({ state: 'sending', leaseUntil: now + 4_500 }), incoming)).toMatchObject({
      kind: 'in-flight',
      retryInSeconds: 5,
    });
  });

  it('refuses to guess when the function that handed it off died, until an operator releases it', () => {
    const died = entry({ state: 'sending', leaseUntil: now - 1, handedOffTo: 'graph', handedOffAt: 'T' });
    expect(admit(died, incoming)).toMatchObject({
      kind: 'unknown',
      maybeSent: { provider: 'graph', since: 'T', reason: expect.stringContaining('a function stopped') },
    });
    expect(admit({ ...died, release }, incoming).kind).toBe('proceed');
  });

  it('keeps a lost answer unresolved whatever state it is in, until an operator releases it', () => {
    expect(admit(entry({ state: 'retrying', maybeSent }), incoming)).toMatchObject({
      kind: 'unknown',
      maybeSent,
    });
    expect(admit(entry({ state: 'dead-lettered', maybeSent }), incoming).kind).toBe('unknown');
    expect(admit(entry({ state: 'dead-lettered', maybeSent, release }), incoming).kind).toBe('proceed');
  });

  it('reads the OutcomeUnknown entries written before maybeSent existed the same way', () => {
    const legacy = entry({
      state: 'dead-lettered',
      provider: 'graph',
      failures: [
        { provider: 'graph', code: OUTCOME_UNKNOWN, failureClass: 'permanent', reason: 'r', at: 'T' },
      ],
    });
    expect(admit(legacy, incoming)).toMatchObject({
      kind: 'unknown',
      maybeSent: { provider: 'graph', since: 'T' },
    });
    expect(admit({ ...legacy, release }, incoming).kind).toBe('proceed');
  });

  it('recognises the very SQS message it already dead-lettered', () => {
    const deadLettered = entry({ state: 'dead-lettered', messageId: 'm' });
    expect(admit(deadLettered, { ...incoming, messageId: 'm' }).kind).toBe('already-dead-lettered');
    // A copy moved back from the DLQ is a new SQS message.
    expect(admit(deadLettered, incoming).kind).toBe('proceed');
  });

  it('flags the same key with another body as a conflict', () => {
    expect(admit(entry({ state: 'sent' }), { ...incoming, bodyHash: 'other' }).kind).toBe('conflict');
  });
});

describe('LedgerEntry', () => {
  const fresh = () => ({
    state: 'retrying' as const,
    messageId: 'm',
    bodyHash: 'h',
    providerIndex: 0,
    attempts: 0,
    failures: [],
    expiresAt: now / 1000 + 60,
  });

  it('writes each version conditional on the last one it saw, and drops cleared fields', async () => {
    const ledger = new MemoryLedger();
    const mine = new LedgerEntry(ledger, 'k', undefined);
    expect(await mine.write({ state: 'sending', leaseUntil: 5 }, fresh, 'T1')).toBe(true);
    expect(await mine.write({ state: 'sent', leaseUntil: undefined }, fresh, 'T2')).toBe(true);
    expect(ledger.records.get('k')).toEqual(
      expect.objectContaining({ key: 'k', state: 'sent', version: 2, createdAt: 'T1', updatedAt: 'T2' }),
    );
    expect(ledger.records.get('k')).not.toHaveProperty('leaseUntil');
  });

  it('writes nothing when another function wrote the entry since it was read', async () => {
    const ledger = new MemoryLedger();
    const first = new LedgerEntry(ledger, 'k', undefined);
    const second = new LedgerEntry(ledger, 'k', undefined);
    expect(await first.write({ state: 'sending' }, fresh, 'T1')).toBe(true);
    expect(await second.write({ state: 'sending' }, fresh, 'T1')).toBe(false);
    expect(second.record).toBeUndefined();
  });
});
