import { DynamoSuppressionList } from '../lambda/core/dynamo-suppression.ts';
import type { Suppression } from '../lambda/core/suppression.ts';
import { SUPPRESSION_TABLE_NAME } from '../local/local-names.ts';
import { type TableOptions, tableClient } from './tables.ts';

/** Runs one operation on the suppression list (local mode's, or a stack's with a table name). */
export async function withSuppressionList<T>(
  options: TableOptions,
  operation: (list: DynamoSuppressionList) => Promise<T>,
): Promise<T> {
  const client = tableClient(options);
  try {
    return await operation(new DynamoSuppressionList(client, options.table ?? SUPPRESSION_TABLE_NAME));
  } finally {
    client.destroy();
  }
}

/**
 * One line per entry: address, since, cause (when the entry has one), reason, and expiry when it has
 * one; then, indented, the evidence the relay had: status, provider and an excerpt of the remote
 * server's words.
 */
export function describeSuppressions(entries: readonly Suppression[]): string {
  if (entries.length === 0) return 'The suppression list is empty.';
  return entries
    .map((entry) => {
      const expires =
        entry.expiresAt === undefined ? '' : `  (until ${new Date(entry.expiresAt * 1000).toISOString()})`;
      const cause = entry.cause ? `  ${entry.cause}` : '';
      const line = `${entry.address}  since ${entry.since}${cause}  ${entry.reason}${expires}`;
      const evidence = describeEvidence(entry);
      return evidence ? `${line}\n    evidence: ${evidence}` : line;
    })
    .join('\n');
}

function describeEvidence(entry: Suppression): string | undefined {
  const { status, diagnostic, provider } = entry.evidence ?? {};
  const parts = [
    ...(status ? [`status ${status}`] : []),
    ...(provider ? [`via ${provider}`] : []),
    ...(diagnostic ? [JSON.stringify(diagnostic)] : []),
  ];
  return parts.length > 0 ? parts.join('  ') : undefined;
}
