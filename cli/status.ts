import { DynamoDeliveryLedger } from '../lambda/core/dynamo-ledger.ts';
import { type DeliveryRecord, RELAY_FAILURE_PROVIDER } from '../lambda/core/ledger.ts';
import { LEDGER_TABLE_NAME } from '../local/local-names.ts';
import { type TableOptions, tableClient } from './tables.ts';

/** The ledger entry for an idempotency key or an SQS message id, whichever it is. */
export async function lookUpDelivery(
  id: string,
  options: TableOptions = {},
): Promise<DeliveryRecord | undefined> {
  const client = tableClient(options);
  try {
    const ledger = new DynamoDeliveryLedger(client, options.table ?? LEDGER_TABLE_NAME);
    return (
      (await ledger.get(id)) ??
      (id.startsWith('sqs:') ? undefined : await ledger.get(`sqs:${id}`)) ??
      // A message with an idempotency key, asked for by the SQS message id `mail-relay send` printed.
      (await ledger.findByMessageId(id))
    );
  } finally {
    client.destroy();
  }
}

/** A ledger entry in words: was it sent, by which provider, when, and what failed on the way. */
export function describeDelivery(record: DeliveryRecord): string {
  const route = record.route ? `, route ${record.route}` : '';
  const lines: string[] = [];
  switch (record.state) {
    case 'sent': {
      const id = record.providerMessageId ? ` (provider id ${record.providerMessageId})` : '';
      const after = record.fallbackFrom?.length ? `, after ${record.fallbackFrom.join(', ')} failed` : '';
      lines.push(
        `sent by ${record.provider ?? 'unknown'} at ${record.sentAt ?? record.updatedAt}${id}${route}${after}`,
      );
      break;
    }
    case 'sending':
      lines.push(
        `sending: handed to ${record.handedOffTo ?? 'a provider'} at ${record.handedOffAt ?? record.updatedAt}${route} (the function holds it until ${new Date(record.leaseUntil ?? 0).toISOString()})`,
      );
      break;
    case 'retrying':
      lines.push(
        `retrying: next try on ${nextProvider(record)} (attempt ${record.attempts + 1} of the provider)${route}`,
      );
      break;
    case 'dead-lettered': {
      const last = record.failures.at(-1);
      lines.push(
        `dead-lettered at ${record.updatedAt}${route}${last ? `: ${last.code}: ${last.reason}` : ''}`,
      );
      break;
    }
    case 'suppressed':
      lines.push(
        `suppressed: not sent, every recipient is on the suppression list (${(record.suppressedRecipients ?? []).join(', ')})${route}`,
      );
      break;
  }
  if (record.maybeSent && record.state !== 'sent') {
    const looking =
      record.maybeSent.lookupUntil !== undefined
        ? `; the relay looks for it in the mailbox until ${new Date(record.maybeSent.lookupUntil).toISOString()}`
        : '';
    lines.push(
      `  ${record.maybeSent.provider} may have sent it (${record.maybeSent.reason}), since ${record.maybeSent.since}${looking}`,
    );
    if (record.internetMessageId) lines.push(`  its Message-ID: ${record.internetMessageId}`);
  }
  if (record.release) {
    lines.push(`  released by ${record.release.by} at ${record.release.at}: the next delivery sends it`);
  }
  if (record.state !== 'suppressed' && record.suppressedRecipients?.length) {
    lines.push(`  suppressed recipients dropped: ${record.suppressedRecipients.join(', ')}`);
  }
  if (record.failures.length > 0) {
    lines.push('  failed tries:');
    for (const failure of record.failures) {
      lines.push(
        `    ${failure.at}  ${failure.provider}  ${failure.failureClass}  ${failure.code}: ${failure.reason}`,
      );
    }
  }
  if (record.feedback?.length) {
    lines.push('  after sending:');
    for (const note of record.feedback) {
      const kind = note.kind === 'bounced' ? `bounced (${note.bounceType ?? 'soft'})` : note.kind;
      const words = [note.status, note.diagnostic].filter(Boolean).join(' ');
      const suppressed = note.suppressed ? ', now suppressed' : '';
      lines.push(
        `    ${note.at}  ${note.provider}  ${kind}: ${note.recipients.join(', ')}${words ? `: ${words}` : ''}${suppressed}`,
      );
    }
  }
  lines.push(`  key ${record.key}, SQS message ${record.messageId}, first seen ${record.createdAt}`);
  return lines.join('\n');
}

/**
 * The provider the next delivery starts with. The entry keeps the chain position, not the route's
 * chain: after a failed try on it (attempts > 0) the last failure names it; otherwise only its place.
 */
function nextProvider(record: DeliveryRecord): string {
  const last = record.failures.at(-1);
  if (record.attempts > 0 && last && last.provider !== RELAY_FAILURE_PROVIDER) return last.provider;
  return `provider #${record.providerIndex + 1} of the route's chain`;
}
