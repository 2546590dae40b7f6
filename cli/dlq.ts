import os from 'node:os';
import type { MessageAttributeValue } from '@aws-sdk/client-sqs';
import { DEAD_LETTER_ATTRIBUTES } from '../lambda/core/dead-letter.ts';
import { admit, bodyHashOf, LedgerEntry, ledgerKeyOf, OUTCOME_UNKNOWN } from '../lambda/core/delivery.ts';
import { DynamoDeliveryLedger } from '../lambda/core/dynamo-ledger.ts';
import type { DeliveryRecord } from '../lambda/core/ledger.ts';
import { SQS_MAX_MESSAGE_ATTRIBUTES } from '../lambda/core/limits.ts';
import { LEDGER_TABLE_NAME } from '../local/local-names.ts';
import {
  type DeadLetterSession,
  type DlqOptions,
  type DlqTargets,
  type ReceivedCopy,
  withDeadLetterSession,
} from './dlq-queue.ts';
import { describeDelivery } from './status.ts';
import { tableClient } from './tables.ts';

export type { DlqOptions } from './dlq-queue.ts';

/** The code `dlq list` gives a message SQS moved itself (no MailRelay.* reason attributes). */
export const MOVED_BY_SQS = 'MovedBySqs';
const MOVED_BY_SQS_WORDS =
  'moved by SQS after maxReceiveCount: the function crashed or timed out on every delivery';
const RELAY_ATTRIBUTE_PREFIX = 'MailRelay.';
const SQS_KEY_PREFIX = ledgerKeyOf(undefined, '');
/** A redriven copy gets a new SQS message id: never the id an entry was dead-lettered with. */
const REDRIVEN_COPY_ID = '(a redriven copy)';
const MAX_RELEASE_ROUNDS = 5;
const SHORT_REASON_LENGTH = 100;

/** What the relay said about one copy when it dead-lettered it (absent: SQS moved it itself). */
export interface CopyFailure {
  readonly code: string;
  readonly failureClass: string | undefined;
  readonly reason: string | undefined;
  readonly hint: string | undefined;
  readonly provider: string | undefined;
  readonly attempts: number | undefined;
}

/** One message in the dead-letter queue. */
export interface DeadLetterCopy {
  readonly dlqMessageId: string;
  readonly body: string;
  readonly bodyHash: string;
  /** Epoch ms (SentTimestamp): when it reached the DLQ; for a message SQS moved, when it was first sent. */
  readonly deadLetteredAt: number | undefined;
  /** The SQS message id it had in the outbox: MailRelay.SourceMessageId, else (moved by SQS) its own. */
  readonly sourceMessageId: string;
  readonly failure: CopyFailure | undefined;
  /** Every MailRelay.* attribute as text. */
  readonly relayAttributes: Readonly<Record<string, string>>;
  /** The producer's own attributes, as the DLQ kept them. */
  readonly producerAttributes: Readonly<Record<string, MessageAttributeValue>>;
}

export type VerdictKind =
  | 'sent'
  | 'in-flight'
  | 'conflict'
  | 'maybe-sent'
  | 'released'
  | 'not-sent'
  | 'no-entry'
  | 'ledger-unavailable';

/** What the delivery ledger says about a dead-lettered message, and so what a redrive does with it. */
export interface Verdict {
  readonly kind: VerdictKind;
  readonly says: string;
}

/** The copies of one message (same ledger key, same body), with its ledger entry. */
export interface DeadLetteredMessage {
  readonly key: string;
  readonly bodyHash: string;
  /** Oldest first. */
  readonly copies: readonly DeadLetterCopy[];
  readonly latest: DeadLetterCopy;
  /** The latest copy's MailRelay.FailureCode, or MovedBySqs. */
  readonly code: string;
  readonly entry: DeliveryRecord | undefined;
  readonly verdict: Verdict;
}

interface Located {
  readonly key: string;
  readonly entry: DeliveryRecord | undefined;
}

export function toCopy(received: ReceivedCopy): DeadLetterCopy {
  const relayAttributes: Record<string, string> = {};
  const producerAttributes: Record<string, MessageAttributeValue> = {};
  for (const [name, value] of Object.entries(received.attributes)) {
    if (name.startsWith(RELAY_ATTRIBUTE_PREFIX)) relayAttributes[name] = value.StringValue ?? '';
    else producerAttributes[name] = value;
  }
  const code = relayAttributes[DEAD_LETTER_ATTRIBUTES.code];
  const attempts = Number(relayAttributes[DEAD_LETTER_ATTRIBUTES.attempts]);
  return {
    dlqMessageId: received.messageId,
    body: received.body,
    bodyHash: bodyHashOf(received.body),
    deadLetteredAt: received.sentTimestamp,
    sourceMessageId: relayAttributes[DEAD_LETTER_ATTRIBUTES.sourceMessageId] || received.messageId,
    failure:
      code === undefined
        ? undefined
        : {
            code,
            failureClass: relayAttributes[DEAD_LETTER_ATTRIBUTES.failureClass],
            reason: relayAttributes[DEAD_LETTER_ATTRIBUTES.reason],
            hint: relayAttributes[DEAD_LETTER_ATTRIBUTES.hint],
            provider: relayAttributes[DEAD_LETTER_ATTRIBUTES.provider],
            attempts: Number.isInteger(attempts) && attempts > 0 ? attempts : undefined,
          },
    relayAttributes,
    producerAttributes,
  };
}

function parseBody(body: string): Record<string, unknown> | undefined {
  try {
    const parsed: unknown = JSON.parse(body);
    return parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed)
      ? (parsed as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The idempotency key the relay keys this message by. A message the relay could not parse
 * (InvalidMessage) is keyed by its SQS message id even when its body names a key.
 */
function idempotencyKeyOf(copy: DeadLetterCopy): string | undefined {
  if (copy.failure?.code === 'InvalidMessage') return undefined;
  const key = parseBody(copy.body)?.idempotencyKey;
  return typeof key === 'string' && key.length > 0 && key.length <= 128 ? key : undefined;
}

/**
 * The ledger entry of a dead-lettered copy, found as the relay finds it (relay.ts findEntry): the
 * idempotency key, else `sqs:<source message id>` when that entry holds the same body. A message that
 * was redriven and dead-lettered again names the redriven copy's id; its entry is still the original's,
 * whose latest delivery had that id.
 */
async function locate(ledger: DynamoDeliveryLedger, copy: DeadLetterCopy): Promise<Located> {
  const idempotencyKey = idempotencyKeyOf(copy);
  if (idempotencyKey !== undefined) return { key: idempotencyKey, entry: await ledger.get(idempotencyKey) };
  const key = ledgerKeyOf(undefined, copy.sourceMessageId);
  const direct = await ledger.get(key);
  if (direct?.bodyHash === copy.bodyHash) return { key, entry: direct };
  const found = await ledger.findByMessageId(copy.sourceMessageId);
  if (found?.key.startsWith(SQS_KEY_PREFIX) && found.bodyHash === copy.bodyHash) {
    return { key: found.key, entry: found };
  }
  return { key, entry: undefined };
}

/** What the relay would do with a redriven copy of this message, in the ledger's words. */
export function judge(entry: DeliveryRecord | undefined, bodyHash: string, now: number): Verdict {
  const admission = admit(entry, { bodyHash, now, messageId: REDRIVEN_COPY_ID });
  switch (admission.kind) {
    case 'duplicate': {
      const { provider, sentAt, updatedAt } = admission.record;
      return {
        kind: 'sent',
        says: `already sent by ${provider ?? 'a provider'} at ${sentAt ?? updatedAt}: a copy, safe to drop`,
      };
    }
    case 'in-flight':
      return {
        kind: 'in-flight',
        says: `a function is sending it right now (its claim runs until ${new Date(admission.record.leaseUntil ?? 0).toISOString()}): leave it`,
      };
    case 'conflict':
      return {
        kind: 'conflict',
        says: `its idempotency key belongs to a different message in the ledger (${admission.record.state}, SQS message ${admission.record.messageId}): send it again with a new key`,
      };
    case 'unknown':
      return {
        kind: 'maybe-sent',
        says: `a provider may have sent it (${OUTCOME_UNKNOWN}: ${admission.maybeSent.provider} has had it since ${admission.maybeSent.since}): check before redriving`,
      };
    case 'already-dead-lettered':
    case 'proceed': {
      if (!entry) {
        return {
          kind: 'no-entry',
          says: 'not in the ledger (never tried, or its entry expired): a redrive sends it as a new message',
        };
      }
      if (entry.release) {
        return {
          kind: 'released',
          says: `released by ${entry.release.by} at ${entry.release.at}: its next delivery sends it`,
        };
      }
      return { kind: 'not-sent', says: `not sent (ledger: ${entry.state}): a redrive sends it again` };
    }
  }
}

/** Receives the whole DLQ and groups the copies of each message, judged by the ledger. */
async function collect(
  session: DeadLetterSession,
  ledger: DynamoDeliveryLedger,
  now: number,
): Promise<{ messages: DeadLetteredMessage[]; truncated: boolean }> {
  const { copies: received, truncated } = await session.receiveAll();
  const copies = received.map(toCopy);
  const located = new Map<string, Promise<Located | Error>>();
  const groups = new Map<string, { located: Located | Error; copies: DeadLetterCopy[] }>();
  for (const copy of copies) {
    const lookup = `${idempotencyKeyOf(copy) ?? ledgerKeyOf(undefined, copy.sourceMessageId)}\n${copy.bodyHash}`;
    if (!located.has(lookup)) {
      located.set(
        lookup,
        locate(ledger, copy).catch((error: unknown) =>
          error instanceof Error ? error : new Error(String(error)),
        ),
      );
    }
    const found = await located.get(lookup);
    if (found === undefined) continue;
    const key = found instanceof Error ? lookup.split('\n')[0] : found.key;
    const group = `${key}\n${copy.bodyHash}`;
    const existing = groups.get(group);
    if (existing) existing.copies.push(copy);
    else groups.set(group, { located: found, copies: [copy] });
  }
  const messages = [...groups.entries()].map(([group, { located: found, copies: all }]) => {
    const sorted = all.sort((a, b) => (a.deadLetteredAt ?? 0) - (b.deadLetteredAt ?? 0));
    const latest = sorted.at(-1) as DeadLetterCopy;
    const key = group.split('\n')[0] ?? '';
    const entry = found instanceof Error ? undefined : found.entry;
    return {
      key,
      bodyHash: latest.bodyHash,
      copies: sorted,
      latest,
      code: latest.failure?.code ?? MOVED_BY_SQS,
      entry,
      verdict:
        found instanceof Error
          ? {
              kind: 'ledger-unavailable' as const,
              says: `the delivery ledger could not be read (${found.message})`,
            }
          : judge(entry, latest.bodyHash, now),
    };
  });
  messages.sort((a, b) => (a.copies[0]?.deadLetteredAt ?? 0) - (b.copies[0]?.deadLetteredAt ?? 0));
  return { messages, truncated };
}

async function withDeadLetters<T>(
  options: DlqOptions,
  operation: (
    found: { messages: DeadLetteredMessage[]; truncated: boolean },
    context: { session: DeadLetterSession; targets: DlqTargets; ledger: DynamoDeliveryLedger },
  ) => Promise<T>,
): Promise<T> {
  return withDeadLetterSession(options, async (session, targets) => {
    const client = tableClient(targets.tableOptions);
    try {
      const ledger = new DynamoDeliveryLedger(client, targets.tableOptions.table ?? LEDGER_TABLE_NAME);
      const found = await collect(session, ledger, Date.now());
      return await operation(found, { session, targets, ledger });
    } finally {
      client.destroy();
    }
  });
}

/** Whether ID names this message: a DLQ message id, the source SQS message id, or the ledger key. */
export function matches(message: DeadLetteredMessage, id: string): boolean {
  return (
    message.key === id ||
    message.key === ledgerKeyOf(undefined, id) ||
    message.entry?.messageId === id ||
    message.copies.some((copy) => copy.dlqMessageId === id || copy.sourceMessageId === id)
  );
}

function withReason(messages: DeadLetteredMessage[], reason: string | undefined): DeadLetteredMessage[] {
  if (reason === undefined) return messages;
  const wanted = reason.toLowerCase();
  return messages.filter((message) => message.code.toLowerCase() === wanted);
}

// ---------------------------------------------------------------------------------------------- list

export interface ListFlags {
  readonly reason?: string;
  readonly json?: boolean;
}

/** `mail-relay dlq list`: every message in the DLQ, left there. Exit code 0. */
export async function dlqList(options: DlqOptions, flags: ListFlags = {}): Promise<number> {
  const now = Date.now();
  const output = await withDeadLetters(options, async ({ messages, truncated }, { targets }) => {
    const selected = withReason(messages, flags.reason);
    return flags.json
      ? JSON.stringify(listJson(targets.dlqUrl, selected, truncated, now), null, 2)
      : describeList(targets.dlqUrl, selected, { truncated, now, reason: flags.reason });
  });
  console.log(output);
  return 0;
}

function copiesText(count: number): string {
  return count === 1 ? '1 copy' : `${count} copies`;
}

function messagesText(count: number): string {
  return count === 1 ? '1 message' : `${count} messages`;
}

/** `2 h 5 min`: how long ago. */
export function ageText(ms: number): string {
  const seconds = Math.max(0, Math.floor(ms / 1000));
  if (seconds < 60) return `${seconds} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min`;
  const hours = Math.floor(minutes / 60);
  if (hours < 48) return `${hours} h ${minutes % 60} min`;
  return `${Math.floor(hours / 24)} d ${hours % 24} h`;
}

function shorten(text: string, max = SHORT_REASON_LENGTH): string {
  const line = text.replace(/\s+/g, ' ').trim();
  return line.length <= max ? line : `${line.slice(0, max - 1)}…`;
}

function failureLine(message: DeadLetteredMessage, now: number): string {
  const { failure, deadLetteredAt } = message.latest;
  const when = deadLetteredAt === undefined ? '' : `${ageText(now - deadLetteredAt)} ago`;
  if (!failure) return [MOVED_BY_SQS_WORDS, when && `sent ${when}`].filter(Boolean).join('; ');
  return [
    failure.failureClass,
    failure.provider,
    failure.attempts === undefined
      ? undefined
      : `after ${failure.attempts} ${failure.attempts === 1 ? 'delivery' : 'deliveries'}`,
    when && `dead-lettered ${when}`,
  ]
    .filter(Boolean)
    .join(', ');
}

export function countsByCode(
  messages: readonly DeadLetteredMessage[],
): Record<string, { messages: number; copies: number }> {
  const counts: Record<string, { messages: number; copies: number }> = {};
  for (const message of messages) {
    const count = counts[message.code] ?? { messages: 0, copies: 0 };
    count.messages += 1;
    count.copies += message.copies.length;
    counts[message.code] = count;
  }
  return counts;
}

export function describeList(
  queueUrl: string,
  messages: readonly DeadLetteredMessage[],
  { truncated = false, now = Date.now(), reason }: { truncated?: boolean; now?: number; reason?: string },
): string {
  const which = reason === undefined ? '' : ` with code ${reason}`;
  if (messages.length === 0) return `No messages${which} in the dead-letter queue ${queueUrl}.`;
  const copies = messages.reduce((sum, message) => sum + message.copies.length, 0);
  const lines = [
    `Dead-letter queue ${queueUrl}: ${messagesText(messages.length)}${which} (${copiesText(copies)})${truncated ? `, stopped after ${copies} copies: run again for the rest` : ''}.`,
  ];
  for (const message of messages) {
    const [first, ...others] = message.copies.map((copy) => copy.dlqMessageId);
    lines.push(
      '',
      `${message.key}  ${message.code}  ${copiesText(message.copies.length)}`,
      `  DLQ message  ${first}${others.length > 0 ? ` (copies: ${others.join(', ')})` : ''}`,
      `  failure      ${failureLine(message, now)}`,
    );
    const reasonText = message.latest.failure?.reason;
    if (reasonText) lines.push(`  reason       ${shorten(reasonText)}`);
    lines.push(`  ledger       ${message.verdict.says}`);
  }
  const counts = Object.entries(countsByCode(messages));
  const width = Math.max(...counts.map(([code]) => code.length));
  lines.push('', 'By failure code:');
  for (const [code, count] of counts) {
    const extra = count.copies > count.messages ? ` (${copiesText(count.copies)})` : '';
    lines.push(`  ${code.padEnd(width)}  ${messagesText(count.messages)}${extra}`);
  }
  lines.push(
    '',
    'Details: mail-relay dlq show ID. Send back: mail-relay dlq redrive [--reason CODE | --id ID] [--dry-run].',
  );
  return lines.join('\n');
}

function iso(epochMs: number | undefined): string | null {
  return epochMs === undefined ? null : new Date(epochMs).toISOString();
}

/** One message in `dlq list --json` (documented in the usage text: keep it stable). */
function messageJson(message: DeadLetteredMessage, now: number) {
  const { failure } = message.latest;
  const oldest = message.copies[0]?.deadLetteredAt;
  return {
    ledgerKey: message.key,
    failureCode: message.code,
    failureClass: failure?.failureClass ?? null,
    provider: failure?.provider ?? null,
    reason: failure ? (failure.reason ?? null) : MOVED_BY_SQS_WORDS,
    hint: failure?.hint ?? null,
    attempts: failure?.attempts ?? null,
    movedBySqs: failure === undefined,
    copies: message.copies.length,
    dlqMessageIds: message.copies.map((copy) => copy.dlqMessageId),
    sourceMessageIds: [...new Set(message.copies.map((copy) => copy.sourceMessageId))],
    firstDeadLetteredAt: iso(oldest),
    lastDeadLetteredAt: iso(message.latest.deadLetteredAt),
    ageSeconds: oldest === undefined ? null : Math.max(0, Math.floor((now - oldest) / 1000)),
    ledger: {
      state: message.entry?.state ?? null,
      verdict: message.verdict.kind,
      says: message.verdict.says,
      release: message.entry?.release ?? null,
    },
  };
}

export function listJson(
  queueUrl: string,
  messages: readonly DeadLetteredMessage[],
  truncated: boolean,
  now: number,
) {
  return {
    deadLetterQueueUrl: queueUrl,
    messages: messages.map((message) => messageJson(message, now)),
    countsByCode: countsByCode(messages),
    total: {
      messages: messages.length,
      copies: messages.reduce((sum, message) => sum + message.copies.length, 0),
    },
    truncated,
  };
}

// ---------------------------------------------------------------------------------------------- show

/** `mail-relay dlq show ID`: one message in full, never its body. Exit code 1 when nothing matches. */
export async function dlqShow(
  options: DlqOptions,
  id: string,
  flags: { json?: boolean } = {},
): Promise<number> {
  const now = Date.now();
  const output = await withDeadLetters(options, async ({ messages }) => {
    const found = messages.filter((message) => matches(message, id));
    if (found.length === 0) return undefined;
    return flags.json
      ? JSON.stringify(
          {
            matches: found.map((message) => ({
              ...messageJson(message, now),
              copyDetails: message.copies.map(copyJson),
              ledgerEntry: message.entry ?? null,
              message: summarize(message.latest.body),
            })),
          },
          null,
          2,
        )
      : found.map((message) => describeMessage(message, now)).join('\n\n');
  });
  if (output === undefined) {
    console.error(
      `No message in the dead-letter queue matches ${id} (a DLQ message id, the original SQS message id, or the idempotency key).`,
    );
    return 1;
  }
  console.log(output);
  return 0;
}

function attributeText(value: MessageAttributeValue): string {
  if (value.StringValue !== undefined) return value.StringValue;
  if (value.BinaryValue !== undefined) return `(${value.BinaryValue.length} bytes, binary)`;
  return '';
}

function copyJson(copy: DeadLetterCopy) {
  return {
    dlqMessageId: copy.dlqMessageId,
    sourceMessageId: copy.sourceMessageId,
    deadLetteredAt: iso(copy.deadLetteredAt),
    relayAttributes: copy.relayAttributes,
    producerAttributes: Object.fromEntries(
      Object.entries(copy.producerAttributes).map(([name, value]) => [
        name,
        { dataType: value.DataType ?? 'String', value: attributeText(value) },
      ]),
    ),
  };
}

const CLASS_WORDS: Record<string, string> = {
  permanent:
    'permanent: it cannot succeed as written (or a provider may already have it); dead-lettered at once',
  transient: 'transient: temporary failures until its tries ran out',
  provider: 'provider: no provider of the route could send for this sender (credential, IP, paused account)',
};

const ATTRIBUTE_WORDS: readonly [string, string][] = [
  [DEAD_LETTER_ATTRIBUTES.code, 'failure code'],
  [DEAD_LETTER_ATTRIBUTES.failureClass, 'failure class'],
  [DEAD_LETTER_ATTRIBUTES.reason, 'reason'],
  [DEAD_LETTER_ATTRIBUTES.hint, 'what to do'],
  [DEAD_LETTER_ATTRIBUTES.provider, 'provider'],
  [DEAD_LETTER_ATTRIBUTES.sourceMessageId, 'outbox message'],
  [DEAD_LETTER_ATTRIBUTES.attempts, 'deliveries'],
];

function describeCopy(copy: DeadLetterCopy, index: number, total: number, now: number): string[] {
  const when =
    copy.deadLetteredAt === undefined
      ? ''
      : `, ${copy.failure ? 'dead-lettered' : 'first sent'} ${iso(copy.deadLetteredAt)} (${ageText(now - copy.deadLetteredAt)} ago)`;
  const lines = [`Copy ${index + 1} of ${total}: DLQ message ${copy.dlqMessageId}${when}`];
  if (!copy.failure) {
    lines.push(
      `  ${MOVED_BY_SQS_WORDS}. No reason is attached: look for SQS message ${copy.sourceMessageId} in the send function's logs.`,
    );
  }
  const known = new Set(ATTRIBUTE_WORDS.map(([name]) => name));
  const rows: [string, string][] = [];
  for (const [name, words] of ATTRIBUTE_WORDS) {
    const value = copy.relayAttributes[name];
    if (value === undefined) continue;
    let text = value;
    if (name === DEAD_LETTER_ATTRIBUTES.failureClass) text = CLASS_WORDS[value] ?? value;
    if (name === DEAD_LETTER_ATTRIBUTES.sourceMessageId) text = `${value} (its SQS message id in the outbox)`;
    if (name === DEAD_LETTER_ATTRIBUTES.attempts) text = `${value} (the relay gave up on that delivery)`;
    rows.push([`${words} (${name})`, text]);
  }
  for (const [name, value] of Object.entries(copy.relayAttributes)) {
    if (!known.has(name)) rows.push([name, value]);
  }
  const width = Math.max(0, ...rows.map(([label]) => label.length));
  for (const [label, text] of rows) lines.push(`  ${label.padEnd(width)}  ${text}`);
  const producer = Object.entries(copy.producerAttributes);
  lines.push(
    producer.length === 0
      ? "  producer's attributes: none"
      : `  producer's attributes: ${producer.map(([name, value]) => `${name} (${value.DataType}) = ${attributeText(value)}`).join('; ')}`,
  );
  return lines;
}

export function describeMessage(message: DeadLetteredMessage, now = Date.now()): string {
  const lines = [
    `${message.key}  ${message.code}  ${copiesText(message.copies.length)} in the dead-letter queue`,
  ];
  message.copies.forEach((copy, index) => {
    lines.push(...describeCopy(copy, index, message.copies.length, now));
  });
  lines.push(`Ledger (key ${message.key}): ${message.verdict.says}`);
  if (message.entry) {
    lines.push(
      ...describeDelivery(message.entry)
        .split('\n')
        .map((line) => `  ${line}`),
    );
    if (message.entry.maybeSent) {
      const { provider, since, reason } = message.entry.maybeSent;
      lines.push(`  maybe sent: ${provider} since ${since}: ${reason}`);
    }
    if (message.entry.release) {
      lines.push(`  released by ${message.entry.release.by} at ${message.entry.release.at}`);
    }
  }
  lines.push('Message (the body is never shown):', ...describeSummary(summarize(message.latest.body)));
  return lines.join('\n');
}

// ---------------------------------------------------------------------------- message summary (no body)

export interface MessageSummary {
  readonly bytes: number;
  /** False: the body is not a JSON object (an InvalidMessage): nothing else is known. */
  readonly json: boolean;
  readonly from: string | null;
  readonly to: string[];
  readonly cc: string[];
  readonly bcc: string[];
  /** A raw message's envelope. */
  readonly envelope: string[];
  readonly recipients: number;
  readonly subject: string | null;
  /** A raw message's MIME: its size inline, or where it is in S3. */
  readonly mime: { readonly bytes: number | null; readonly s3: string | null } | null;
  readonly attachments: {
    filename: string;
    contentType: string | null;
    bytes: number | null;
    s3: string | null;
  }[];
  readonly tags: Record<string, unknown> | null;
  readonly idempotencyKey: string | null;
  readonly route: string | null;
  /** Characters of the text and html bodies (their content is never shown). */
  readonly textCharacters: number | null;
  readonly htmlCharacters: number | null;
}

function addressText(value: unknown): string {
  if (typeof value === 'string') return value;
  if (value !== null && typeof value === 'object') {
    const { name, address } = value as { name?: unknown; address?: unknown };
    if (typeof address === 'string')
      return typeof name === 'string' && name ? `${name} <${address}>` : address;
  }
  return JSON.stringify(value);
}

function addresses(value: unknown): string[] {
  if (value === undefined || value === null) return [];
  return (Array.isArray(value) ? value : [value]).map(addressText);
}

export function summarize(body: string): MessageSummary {
  const parsed = parseBody(body);
  const text = (value: unknown) => (typeof value === 'string' ? value : null);
  const to = addresses(parsed?.to);
  const cc = addresses(parsed?.cc);
  const bcc = addresses(parsed?.bcc);
  const envelope = addresses(parsed?.recipients);
  const mimeSource =
    parsed?.mime && typeof parsed.mime === 'object' ? (parsed.mime as Record<string, unknown>) : null;
  const mimeS3 = mimeSource?.s3 as { bucket?: unknown; key?: unknown } | undefined;
  const attachments = (Array.isArray(parsed?.attachments) ? parsed.attachments : []).map((raw: unknown) => {
    const attachment = (raw ?? {}) as Record<string, unknown>;
    const s3 = attachment.s3 as { bucket?: unknown; key?: unknown } | undefined;
    return {
      filename: text(attachment.filename) ?? '(no name)',
      contentType: text(attachment.contentType),
      bytes:
        typeof attachment.content === 'string'
          ? Buffer.from(attachment.content.replace(/\s+/g, ''), 'base64').length
          : null,
      s3: s3 && typeof s3 === 'object' ? `s3://${String(s3.bucket)}/${String(s3.key)}` : null,
    };
  });
  return {
    bytes: Buffer.byteLength(body),
    json: parsed !== undefined,
    from: parsed?.from === undefined ? null : addressText(parsed.from),
    to,
    cc,
    bcc,
    envelope,
    recipients: to.length + cc.length + bcc.length + envelope.length,
    subject: text(parsed?.subject),
    mime: mimeSource
      ? {
          bytes:
            typeof mimeSource.content === 'string'
              ? Buffer.from(mimeSource.content.replace(/\s+/g, ''), 'base64').length
              : null,
          s3:
            mimeS3 && typeof mimeS3 === 'object'
              ? `s3://${String(mimeS3.bucket)}/${String(mimeS3.key)}`
              : null,
        }
      : null,
    attachments,
    tags: parsed?.tags && typeof parsed.tags === 'object' ? (parsed.tags as Record<string, unknown>) : null,
    idempotencyKey: text(parsed?.idempotencyKey),
    route: text(parsed?.route),
    textCharacters: text(parsed?.text)?.length ?? null,
    htmlCharacters: text(parsed?.html)?.length ?? null,
  };
}

function describeSummary(summary: MessageSummary): string[] {
  if (!summary.json) return [`  not a JSON object (${summary.bytes} bytes): nothing more can be shown`];
  const list = (label: string, values: string[]) =>
    values.length > 0 ? [`${label} ${values.join(', ')}`] : [];
  const recipients = [
    ...list('to', summary.to),
    ...list('cc', summary.cc),
    ...list('bcc', summary.bcc),
    ...list('envelope', summary.envelope),
  ];
  const attachments = summary.attachments.map((attachment) => {
    const where = attachment.s3 ? `in S3 at ${attachment.s3}` : `${attachment.bytes ?? 0} bytes`;
    return `${attachment.filename} (${[where, attachment.contentType].filter(Boolean).join(', ')})`;
  });
  const rows: [string, string | null][] = [
    ['from', summary.from],
    ['recipients', `${summary.recipients}${recipients.length > 0 ? `: ${recipients.join('; ')}` : ''}`],
    ['subject', summary.subject],
    ...(summary.mime
      ? [
          [
            'mime',
            summary.mime.s3
              ? `raw MIME in S3 at ${summary.mime.s3}`
              : `raw MIME, ${summary.mime.bytes ?? 0} bytes inline`,
          ] as [string, string],
        ]
      : []),
    ['attachments', attachments.length > 0 ? attachments.join('; ') : 'none'],
    [
      'tags',
      summary.tags
        ? Object.entries(summary.tags)
            .map(([name, value]) => `${name}=${String(value)}`)
            .join(', ')
        : null,
    ],
    ['idempotencyKey', summary.idempotencyKey],
    ['route', summary.route],
    [
      'body',
      [
        summary.textCharacters === null ? undefined : `text, ${summary.textCharacters} characters`,
        summary.htmlCharacters === null ? undefined : `html, ${summary.htmlCharacters} characters`,
      ]
        .filter(Boolean)
        .join('; ') || 'none',
    ],
    ['size', `${summary.bytes} bytes`],
  ];
  return rows.flatMap(([label, value]) => (value === null ? [] : [`  ${`${label}:`.padEnd(16)}${value}`]));
}

// -------------------------------------------------------------------------------------------- redrive

export interface RedriveFlags {
  readonly reason?: string;
  readonly id?: string;
  readonly dryRun?: boolean;
  /** Who releases the messages; default: the OS user name. */
  readonly by?: string;
}

type RedriveOutcome = 'redriven' | 'dropped' | 'skipped' | 'failed';

interface RedriveResult {
  readonly outcome: RedriveOutcome;
  readonly detail: string;
}

export function defaultOperator(): string {
  try {
    return os.userInfo().username;
  } catch {
    return process.env.USER ?? process.env.USERNAME ?? 'unknown';
  }
}

/** What a redrive does with a message the ledger judged so. */
function planFor(verdict: Verdict): 'redrive' | 'drop' | 'skip' {
  switch (verdict.kind) {
    case 'sent':
      return 'drop';
    case 'in-flight':
    case 'conflict':
    case 'ledger-unavailable':
      return 'skip';
    default:
      return 'redrive';
  }
}

/**
 * The attributes of the copy sent back: the producer's own, and MailRelay.SourceMessageId naming the
 * entry's original SQS message id (how the relay finds the entry of a message without idempotency key).
 */
function redriveAttributes(
  copy: DeadLetterCopy,
  sourceMessageId: string,
  needsSource: boolean,
): Record<string, MessageAttributeValue> | undefined {
  const attributes: Record<string, MessageAttributeValue> = {};
  for (const [name, value] of Object.entries(copy.producerAttributes)) {
    attributes[name] = {
      DataType: value.DataType,
      ...(value.StringValue !== undefined && { StringValue: value.StringValue }),
      ...(value.BinaryValue !== undefined && { BinaryValue: value.BinaryValue }),
    };
  }
  if (Object.keys(attributes).length < SQS_MAX_MESSAGE_ATTRIBUTES) {
    attributes[DEAD_LETTER_ATTRIBUTES.sourceMessageId] = { DataType: 'String', StringValue: sourceMessageId };
  } else if (needsSource) {
    return undefined;
  }
  return attributes;
}

async function deleteCopies(session: DeadLetterSession, message: DeadLetteredMessage): Promise<string> {
  const ids = message.copies.map((copy) => copy.dlqMessageId);
  const failed = await session.delete(ids);
  const deleted = ids.length - failed.length;
  const text = `${deleted === 1 ? '1 DLQ copy' : `${deleted} DLQ copies`} deleted`;
  return failed.length === 0 ? text : `${text}; could not delete ${failed.join(', ')} (still in the DLQ)`;
}

async function redriveOne(
  message: DeadLetteredMessage,
  session: DeadLetterSession,
  ledger: DynamoDeliveryLedger,
  by: string,
): Promise<RedriveResult> {
  // The ledger decides, read again now: another function may have sent it since the queue was read.
  let located: Located;
  let released = false;
  for (let round = 1; ; round += 1) {
    try {
      located = await locate(ledger, message.latest);
    } catch (error) {
      return {
        outcome: 'failed',
        detail: `the delivery ledger could not be read: ${(error as Error).message}`,
      };
    }
    const verdict = judge(located.entry, message.bodyHash, Date.now());
    const plan = planFor(verdict);
    if (plan === 'skip') return { outcome: 'skipped', detail: verdict.says };
    if (plan === 'drop') {
      return { outcome: 'dropped', detail: `${verdict.says}; ${await deleteCopies(session, message)}` };
    }
    if (!located.entry) break;
    // 1. The operator's decision, where the relay looks for it: conditional on the version just read.
    const at = new Date().toISOString();
    const written = await new LedgerEntry(ledger, located.entry.key, located.entry)
      .write(
        { release: { at, by } },
        () => {
          throw new Error('the ledger entry vanished');
        },
        at,
      )
      .catch((error: unknown) => error as Error);
    if (written instanceof Error) {
      return { outcome: 'failed', detail: `the release could not be recorded: ${written.message}` };
    }
    if (written) {
      released = true;
      break;
    }
    if (round >= MAX_RELEASE_ROUNDS) {
      return {
        outcome: 'failed',
        detail: 'its ledger entry kept changing while the release was written; try again',
      };
    }
  }
  // 2. One copy back to the outbox. A crash from here on leaves the DLQ copies, never loses the message.
  const sqsKey = located.key.startsWith(SQS_KEY_PREFIX) && idempotencyKeyOf(message.latest) === undefined;
  const source = sqsKey ? located.key.slice(SQS_KEY_PREFIX.length) : message.latest.sourceMessageId;
  const attributes = redriveAttributes(message.latest, source, sqsKey);
  if (!attributes) {
    return {
      outcome: 'failed',
      detail: `it has ${SQS_MAX_MESSAGE_ATTRIBUTES} attributes of its own, so ${DEAD_LETTER_ATTRIBUTES.sourceMessageId} does not fit and the relay could not find its ledger entry`,
    };
  }
  let newId: string;
  try {
    newId = await session.sendToOutbox(message.latest.body, attributes);
  } catch (error) {
    return {
      outcome: 'failed',
      detail: `${released ? 'released in the ledger, but ' : ''}could not be sent to the outbox: ${(error as Error).message}`,
    };
  }
  // 3. Only now the DLQ copies go.
  const releaseText = released ? `released by ${by} in the ledger` : 'no ledger entry to release';
  return {
    outcome: 'redriven',
    detail: `${releaseText}; sent to the outbox as ${newId}; ${await deleteCopies(session, message)}`,
  };
}

function dryRunResult(message: DeadLetteredMessage, by: string): RedriveResult {
  const plan = planFor(message.verdict);
  const copies = copiesText(message.copies.length);
  if (plan === 'skip') return { outcome: 'skipped', detail: message.verdict.says };
  if (plan === 'drop') {
    return { outcome: 'dropped', detail: `${message.verdict.says}; would delete ${copies} from the DLQ` };
  }
  const release = message.entry
    ? `would record the release by ${by} in the ledger`
    : 'no ledger entry to release';
  return {
    outcome: 'redriven',
    detail: `${message.verdict.says}; ${release}, send 1 copy to the outbox and delete ${copies} from the DLQ`,
  };
}

const OUTCOME_WORDS: Record<RedriveOutcome, { done: string; dryRun: string }> = {
  redriven: { done: 'redriven', dryRun: 'would redrive' },
  dropped: { done: 'dropped', dryRun: 'would drop' },
  skipped: { done: 'skipped', dryRun: 'would skip' },
  failed: { done: 'FAILED', dryRun: 'FAILED' },
};

/**
 * `mail-relay dlq redrive`: per message (all its copies at once), the ledger decides: already sent →
 * its DLQ copies are deleted; another function has it → skipped; otherwise the operator's release is
 * recorded in the ledger entry, one copy goes back to the outbox, and then every DLQ copy is deleted.
 * Exit code 1 when --id matches nothing or a message could not be handled.
 */
export async function dlqRedrive(options: DlqOptions, flags: RedriveFlags = {}): Promise<number> {
  const by = flags.by ?? defaultOperator();
  return withDeadLetters(options, async ({ messages, truncated }, { session, targets, ledger }) => {
    let selected = withReason(messages, flags.reason);
    if (flags.id !== undefined) {
      const id = flags.id;
      selected = selected.filter((message) => matches(message, id));
      if (selected.length === 0) {
        console.error(
          `No message in the dead-letter queue matches ${id}${flags.reason ? ` with code ${flags.reason}` : ''} (a DLQ message id, the original SQS message id, or the idempotency key).`,
        );
        return 1;
      }
    }
    if (selected.length === 0) {
      console.log(
        `Nothing to redrive: no messages${flags.reason ? ` with code ${flags.reason}` : ''} in the dead-letter queue ${targets.dlqUrl}.`,
      );
      return 0;
    }
    if (targets.outboxUrl === undefined && !flags.dryRun) {
      throw new Error('redrive needs --outbox-url (stack output OutboxQueueUrl) for a deployed queue');
    }
    console.log(
      `${flags.dryRun ? 'Dry run: nothing is changed. ' : ''}Redrive from ${targets.dlqUrl} to ${targets.outboxUrl ?? '(no --outbox-url)'}, released by ${by}:`,
    );
    const counts: Record<RedriveOutcome, number> = { redriven: 0, dropped: 0, skipped: 0, failed: 0 };
    const width = Math.max(...selected.map((message) => message.key.length));
    for (const message of selected) {
      const result = flags.dryRun
        ? dryRunResult(message, by)
        : await redriveOne(message, session, ledger, by);
      counts[result.outcome] += 1;
      const words = OUTCOME_WORDS[result.outcome][flags.dryRun ? 'dryRun' : 'done'];
      console.log(`  ${words.padEnd(13)}  ${message.key.padEnd(width)}  ${message.code}: ${result.detail}`);
    }
    const summary = flags.dryRun
      ? `Would redrive ${counts.redriven}, drop ${counts.dropped} (already sent), skip ${counts.skipped}.`
      : `Redriven ${counts.redriven}, dropped ${counts.dropped} (already sent), skipped ${counts.skipped}, failed ${counts.failed}.`;
    console.log(
      `${summary}${truncated ? ' The queue holds more messages than one run reads: run again for the rest.' : ''}`,
    );
    return counts.failed > 0 ? 1 : 0;
  });
}
