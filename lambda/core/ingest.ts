import { createHash } from 'node:crypto';
import type { Mailbox } from './address.ts';
import { parseMailbox } from './address.ts';
import { createMessageSchema, type MessageSchema, parseMessage } from './message.ts';
import { inspectMime, type MimeSummary } from './mime/inspect.ts';
import { normaliseMime } from './mime/normalise.ts';
import { serializeRawMime } from './mime/raw-mime.ts';
import { patternMatches } from './routing.ts';
import type { IngestSettings, IngressClientSettings } from './settings.ts';

/**
 * The SMTP front door's one implementation, run by the ingest function (on Mail Manager's S3 writes)
 * and by local mode's SMTP listener alike: a stored submission becomes a raw relay message on the
 * outbox, or a refusal with an SMTP reply and a reason. Everything else (routes, fallback, ledger,
 * suppression) is the send function's, as for any other message.
 */

/** What a client submitted, as stored. */
export interface StoredSubmission {
  readonly bytes: Buffer;
}

/**
 * The SMTP envelope, when the caller knows it (local mode's listener does). Mail Manager's S3 action
 * stores only the MIME: recipients then come from the To, Cc and Bcc headers (docs/smtp-ingress.md).
 */
export interface SubmissionEnvelope {
  /** MAIL FROM; empty for the null sender. */
  readonly mailFrom: string;
  readonly recipients: readonly string[];
}

export interface SubmissionStore {
  /** Undefined when the object is gone: it was ingested already (inline messages are deleted) or expired. */
  read(bucket: string, key: string, signal?: AbortSignal): Promise<StoredSubmission | undefined>;
  delete(bucket: string, key: string): Promise<void>;
}

export interface Outbox {
  /** Resolves with the SQS message id once the message is durably in the queue. */
  send(body: string, signal?: AbortSignal): Promise<string>;
}

/** Why a submission is not relayed, as an SMTP reply would say it. */
export interface SubmissionRefusal {
  /** Stable code, as in the relay's failure codes (SenderNotAllowed, InvalidMime …). */
  readonly code: string;
  /** Basic SMTP reply code: 550, 552, 554. */
  readonly replyCode: number;
  /** RFC 3463 enhanced status code, e.g. 5.7.1. */
  readonly enhancedCode: string;
  /** One line for a human: what is wrong and, where it helps, which client and which rule. */
  readonly reason: string;
}

export type IngestResult =
  | {
      readonly kind: 'enqueued';
      readonly outboxMessageId: string;
      readonly idempotencyKey: string;
      readonly client: string;
      /** The MIME travels inside the outbox message (its stored object was deleted). */
      readonly inline: boolean;
      /** What normalisation changed (short words, never content). */
      readonly changes: readonly string[];
      readonly recipients: number;
    }
  | { readonly kind: 'gone'; readonly client: string }
  | { readonly kind: 'refused'; readonly client: string | undefined; readonly refusal: SubmissionRefusal };

export class SubmissionRefused extends Error {
  constructor(readonly refusal: SubmissionRefusal) {
    super(`${refusal.replyCode} ${refusal.enhancedCode} ${refusal.reason}`);
    this.name = 'SubmissionRefused';
  }
}

export function refusal(
  code: string,
  replyCode: number,
  enhancedCode: string,
  reason: string,
): SubmissionRefusal {
  return { code, replyCode, enhancedCode, reason };
}

/** The relay's own idempotency key for a stored submission: a repeated S3 event is one message. */
export function submissionIdempotencyKey(bucket: string, key: string): string {
  return `smtp-${createHash('sha256').update(`${bucket}/${key}`).digest('hex').slice(0, 48)}`;
}

/** Whether a client may use this address as its From, Sender or envelope sender. */
export function clientMaySendAs(client: IngressClientSettings, address: string): boolean {
  return client.senders.some((pattern) => patternMatches(pattern, address));
}

export function senderRefusal(
  client: IngressClientSettings,
  what: string,
  address: string,
): SubmissionRefusal {
  return refusal(
    'SenderNotAllowed',
    550,
    '5.7.1',
    `sender not allowed for client ${client.name}: ${what} ${address} is not one of its senders (${client.senders.join(', ')})`,
  );
}

export interface IngestDependencies {
  readonly store: SubmissionStore;
  readonly outbox: Outbox;
  readonly now?: () => number;
  /** Told when a stored object could not be deleted after its message went inline (it expires anyway). */
  readonly onDeleteFailed?: (key: string, error: unknown) => void;
}

export class Ingest {
  private readonly clients: Map<string, IngressClientSettings>;
  private readonly schema: MessageSchema;
  private readonly now: () => number;

  constructor(
    private readonly settings: IngestSettings,
    private readonly dependencies: IngestDependencies,
  ) {
    this.clients = new Map(settings.clients.map((client) => [client.name, client]));
    this.schema = createMessageSchema(settings.limits);
    this.now = dependencies.now ?? Date.now;
  }

  client(name: string): IngressClientSettings | undefined {
    return this.clients.get(name);
  }

  /** `ingress/crm/…` → the client named crm; undefined for a key outside the prefix. */
  clientNameOf(key: string): string | undefined {
    if (!key.startsWith(this.settings.prefix)) return undefined;
    const name = key.slice(this.settings.prefix.length).split('/')[0];
    return name || undefined;
  }

  /** Where a client's submission is stored: `<prefix><client>/<id>`. */
  keyFor(client: string, id: string): string {
    return `${this.settings.prefix}${client}/${id}`;
  }

  get bucket(): string {
    return this.settings.bucket;
  }

  get maxMessageBytes(): number {
    return this.settings.limits.maxMessageBytes;
  }

  get maxRecipients(): number {
    return this.settings.limits.maxRecipients;
  }

  /**
   * Turns the stored submission into a relay message on the outbox. Resolves with the refusal for a
   * submission that can never be relayed; rejects when something could not be done right now (the
   * store or the outbox), so the caller tries again.
   */
  async ingest(
    bucket: string,
    key: string,
    options: { readonly signal?: AbortSignal; readonly envelope?: SubmissionEnvelope } = {},
  ): Promise<IngestResult> {
    const { signal, envelope } = options;
    const clientName = this.clientNameOf(key);
    const client = clientName === undefined ? undefined : this.clients.get(clientName);
    if (!client) {
      return {
        kind: 'refused',
        client: clientName,
        refusal: refusal(
          'UnknownClient',
          550,
          '5.7.1',
          `${key} is not under ${this.settings.prefix}<client>/ of a configured ingress client`,
        ),
      };
    }
    const stored = await this.dependencies.store.read(bucket, key, signal);
    if (!stored) return { kind: 'gone', client: client.name };
    let body: string;
    let changes: readonly string[];
    let inline: boolean;
    let recipients: number;
    try {
      ({ body, changes, inline, recipients } = this.relayMessageFor(client, bucket, key, stored, envelope));
    } catch (error) {
      if (error instanceof SubmissionRefused) {
        return { kind: 'refused', client: client.name, refusal: error.refusal };
      }
      throw error;
    }
    const outboxMessageId = await this.dependencies.outbox.send(body, signal);
    if (inline) {
      // The outbox message carries the MIME now; the object would only wait for its expiry.
      await this.dependencies.store
        .delete(bucket, key)
        .catch((error: unknown) => this.dependencies.onDeleteFailed?.(key, error));
    }
    return {
      kind: 'enqueued',
      outboxMessageId,
      idempotencyKey: submissionIdempotencyKey(bucket, key),
      client: client.name,
      inline,
      changes,
      recipients,
    };
  }

  /** The checks and the relay message; throws SubmissionRefused. */
  private relayMessageFor(
    client: IngressClientSettings,
    bucket: string,
    key: string,
    stored: StoredSubmission,
    envelope: SubmissionEnvelope | undefined,
  ): { body: string; changes: readonly string[]; inline: boolean; recipients: number } {
    const { maxMessageBytes } = this.settings.limits;
    if (stored.bytes.length > maxMessageBytes) {
      throw new SubmissionRefused(
        refusal(
          'MessageTooLarge',
          552,
          '5.3.4',
          `message is ${stored.bytes.length} bytes; the limit is ${maxMessageBytes}`,
        ),
      );
    }
    const { mime, changes } = normaliseMime(stored.bytes, { now: new Date(this.now()) });
    const summary = inspectMime(mime);
    if (summary.problems.length > 0) {
      throw new SubmissionRefused(refusal('InvalidMime', 550, '5.6.0', summary.problems.join('; ')));
    }
    const from = summary.from[0] as Mailbox;
    this.checkSenders(client, summary, envelope);
    const recipients = envelope
      ? envelope.recipients
      : unique([...summary.to, ...summary.cc, ...summary.bcc].map((mailbox) => mailbox.address));
    // Only a message that may fit inline is written out again (a large one stays as stored, and the
    // send function normalises it when it reads it).
    const serialized =
      stored.bytes.length <= this.settings.inlineMaxBytes ? serializeRawMime(mime) : undefined;
    const inline = serialized !== undefined && serialized.length <= this.settings.inlineMaxBytes;
    const message = {
      v: 1,
      from: from.name ? { name: from.name, address: from.address } : from.address,
      recipients,
      mime: inline ? { content: serialized.toString('base64') } : { s3: { bucket, key } },
      idempotencyKey: submissionIdempotencyKey(bucket, key),
      tags: { ingressClient: client.name },
      ...(client.route !== undefined && { route: client.route }),
    };
    const body = JSON.stringify(message);
    // The send function parses it again; the same contract here refuses now what would fail there.
    const parsed = parseMessage(body, this.schema);
    if (!parsed.ok) {
      const recipientProblem = parsed.problems.find((problem) => problem.startsWith('recipients'));
      throw new SubmissionRefused(
        recipientProblem
          ? refusal('InvalidRecipients', 550, '5.5.3', recipientProblem)
          : refusal('InvalidMessage', 550, '5.6.0', parsed.problems.join('; ')),
      );
    }
    return { body, changes, inline, recipients: recipients.length };
  }

  private checkSenders(
    client: IngressClientSettings,
    summary: MimeSummary,
    envelope: SubmissionEnvelope | undefined,
  ): void {
    const from = summary.from[0] as Mailbox;
    if (!clientMaySendAs(client, from.address)) {
      throw new SubmissionRefused(senderRefusal(client, 'From', from.address));
    }
    if (summary.sender && !clientMaySendAs(client, summary.sender.address)) {
      throw new SubmissionRefused(senderRefusal(client, 'Sender', summary.sender.address));
    }
    if (envelope && envelope.mailFrom !== '') {
      const parsed = parseMailbox(envelope.mailFrom);
      if (!parsed.ok || !clientMaySendAs(client, parsed.mailbox.address)) {
        throw new SubmissionRefused(senderRefusal(client, 'envelope sender', envelope.mailFrom));
      }
    }
  }
}

function unique(addresses: readonly string[]): string[] {
  const seen = new Set<string>();
  return addresses.filter((address) => {
    const folded = address.toLowerCase();
    if (seen.has(folded)) return false;
    seen.add(folded);
    return true;
  });
}
