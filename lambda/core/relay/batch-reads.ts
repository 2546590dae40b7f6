import type { SQSRecord } from 'aws-lambda';
import { DEAD_LETTER_ATTRIBUTES } from '../dead-letter.ts';
import { ledgerKeyOf } from '../delivery.ts';
import type { DeliveryLedger, DeliveryRecord } from '../ledger.ts';
import { type MessageSchema, type ParseResult, parseMessage, recipientsOf } from '../message.ts';
import type { Suppression, SuppressionList } from '../suppression.ts';
import type { RelayLogger } from './types.ts';

/**
 * What a batch read at once. A record uses it instead of its own reads; what is missing here (the
 * batch read failed, or did not cover it) each record reads alone, as before.
 */
export interface BatchReads {
  readonly parsed: ReadonlyMap<string, ParseResult>;
  /** Ledger entries by key, for the keys in `keys` (a key read but absent from `found`: no entry). */
  readonly ledger?: {
    readonly keys: ReadonlySet<string>;
    readonly found: ReadonlyMap<string, DeliveryRecord>;
  };
  /** Suppressions among `addresses` (lower-cased), keyed by lower-cased address. */
  readonly suppressed?: {
    readonly addresses: ReadonlySet<string>;
    readonly found: ReadonlyMap<string, Suppression>;
  };
}

export interface BatchReadSources {
  readonly schema: MessageSchema;
  readonly ledger: DeliveryLedger;
  readonly suppressions: SuppressionList;
  readonly logger: RelayLogger;
}

/**
 * Reads once what the batch's records need: their ledger entries (a message's idempotency key or SQS
 * message id, and the id a redriven copy had) and the suppressions among all their recipients. A
 * failed read is left to each record, whose own read then fails (and is retried) alone.
 */
export async function readBatch(
  records: readonly SQSRecord[],
  signal: AbortSignal,
  { schema, ledger, suppressions, logger }: BatchReadSources,
): Promise<BatchReads> {
  const parsed = new Map(records.map((record) => [record.messageId, parseMessage(record.body, schema)]));
  const ledgerKeys = new Set<string>();
  const addresses = new Set<string>();
  for (const record of records) {
    const result = parsed.get(record.messageId);
    if (!result?.ok) {
      ledgerKeys.add(ledgerKeyOf(undefined, record.messageId));
      continue;
    }
    ledgerKeys.add(ledgerKeyOf(result.message.idempotencyKey, record.messageId));
    const source = sourceMessageIdOf(record);
    if (!result.message.idempotencyKey && source) ledgerKeys.add(ledgerKeyOf(undefined, source));
    for (const mailbox of recipientsOf(result.message)) addresses.add(mailbox.address.toLowerCase());
  }
  const leftToEachRecord = (what: string) => (error: unknown) => {
    logger.warn(`Could not read ${what} for the whole batch; each record reads its own`, {
      records: records.length,
      error: String(error),
    });
    return undefined;
  };
  const [found, suppressed] = await Promise.all([
    ledger.getMany?.([...ledgerKeys], signal).catch(leftToEachRecord('the ledger entries')),
    addresses.size > 0
      ? suppressions.find([...addresses], signal).catch(leftToEachRecord('the suppression list'))
      : new Map(),
  ]);
  return {
    parsed,
    ...(found && { ledger: { keys: ledgerKeys, found } }),
    ...(suppressed && { suppressed: { addresses, found: suppressed } }),
  };
}

/** The ledger entry for a key: from the batch's read when it covered the key, else read now. */
export function readLedger(
  ledger: DeliveryLedger,
  key: string,
  signal: AbortSignal,
  reads: BatchReads | undefined,
): Promise<DeliveryRecord | undefined> {
  const batch = reads?.ledger;
  return batch?.keys.has(key) ? Promise.resolve(batch.found.get(key)) : ledger.get(key, signal);
}

/**
 * The suppressions among `addresses` (lower-cased) as the batch read them, or undefined when the
 * batch read did not cover them all.
 */
export function suppressionsFromBatch(
  addresses: readonly string[],
  reads: BatchReads | undefined,
): Map<string, Suppression> | undefined {
  const batch = reads?.suppressed;
  if (!batch || !addresses.every((address) => batch.addresses.has(address))) return undefined;
  return new Map(
    addresses.flatMap((address) => {
      const suppression = batch.found.get(address);
      return suppression ? [[address, suppression] as const] : [];
    }),
  );
}

/** The SQS message id a copy moved back from the dead-letter queue had before (MailRelay.SourceMessageId). */
export function sourceMessageIdOf(sqsRecord: SQSRecord): string | undefined {
  const source = sqsRecord.messageAttributes?.[DEAD_LETTER_ATTRIBUTES.sourceMessageId]?.stringValue;
  return source && source !== sqsRecord.messageId ? source : undefined;
}
