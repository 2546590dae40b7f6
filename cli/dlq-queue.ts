import {
  ChangeMessageVisibilityBatchCommand,
  DeleteMessageBatchCommand,
  type Message,
  type MessageAttributeValue,
  ReceiveMessageCommand,
  SendMessageCommand,
  SQSClient,
} from '@aws-sdk/client-sqs';
import { DEAD_LETTER_QUEUE_NAME, LOCAL_REGION, OUTBOX_QUEUE_NAME } from '../local/local-names.ts';
import { localQueueUrl } from './local-endpoints.ts';
import type { TableOptions } from './tables.ts';

/** Where `mail-relay dlq` looks: local mode's queues and ledger by default, a stack's with the flags. */
export interface DlqOptions extends TableOptions {
  /** The DeadLetterQueueUrl stack output. */
  readonly dlqUrl?: string;
  /** The OutboxQueueUrl stack output. */
  readonly outboxUrl?: string;
  /** The SQS endpoint; default: the queue URL's own origin for a local queue, AWS otherwise. */
  readonly sqsEndpoint?: string;
}

export interface DlqTargets {
  readonly dlqUrl: string;
  /** Undefined for a deployed DLQ without --outbox-url: only redrive needs it. */
  readonly outboxUrl: string | undefined;
  readonly tableOptions: TableOptions;
}

/**
 * How long a listed message stays hidden from other readers of the DLQ while a command pages through
 * it; every message the command does not delete is made visible again when it ends. Only a killed
 * command leaves them hidden this long.
 */
export const PEEK_VISIBILITY_SECONDS = 300;
/** A safety cap on one run; the rest stay in the queue for the next run. */
export const MAX_MESSAGES_PER_RUN = 10_000;
/** Long-poll wait of each receive: an empty answer after it means nothing visible is left. */
const RECEIVE_WAIT_SECONDS = 1;
const SQS_BATCH = 10;

const LOCAL_HOSTS = ['127.0.0.1', 'localhost', '[::1]'];

export function isLocalUrl(url: string): boolean {
  return LOCAL_HOSTS.includes(new URL(url).hostname);
}

export { localQueueUrl };

/** `https://sqs.<region>.amazonaws.com/<account>/<name>` → region and account, when it has that form. */
function awsQueueOf(url: string): { region: string; account: string } | undefined {
  const parsed = new URL(url);
  const region = /^sqs\.([a-z0-9-]+)\.amazonaws\.com(\.cn)?$/.exec(parsed.hostname)?.[1];
  const account = parsed.pathname.split('/')[1];
  return region && account ? { region, account } : undefined;
}

/**
 * Resolves the queues and the ledger, refusing mixes that would redrive a stack's messages into local
 * mode's outbox or judge them by local mode's ledger.
 */
export function resolveTargets(options: DlqOptions): DlqTargets {
  const dlqUrl = options.dlqUrl ?? localQueueUrl(DEAD_LETTER_QUEUE_NAME, options.stateDir);
  const local = isLocalUrl(dlqUrl);
  const outboxUrl =
    options.outboxUrl ?? (local ? localQueueUrl(OUTBOX_QUEUE_NAME, options.stateDir) : undefined);
  if (!local && options.table === undefined) {
    throw new Error(
      `--dlq-url ${dlqUrl} is a deployed queue: pass --table (stack output DeliveryLedgerTableName) and --region too, so messages are judged by that stack's delivery ledger.`,
    );
  }
  if (outboxUrl !== undefined) {
    if (isLocalUrl(outboxUrl) !== local) {
      throw new Error(
        `--outbox-url ${outboxUrl} and --dlq-url ${dlqUrl} must belong to the same relay (one is local, the other is not).`,
      );
    }
    const [dlq, outbox] = [awsQueueOf(dlqUrl), awsQueueOf(outboxUrl)];
    if (dlq && outbox && (dlq.region !== outbox.region || dlq.account !== outbox.account)) {
      throw new Error(
        `--outbox-url ${outboxUrl} and --dlq-url ${dlqUrl} must belong to the same relay (account and region differ).`,
      );
    }
  }
  return {
    dlqUrl,
    outboxUrl,
    tableOptions: {
      ...(options.table && { table: options.table }),
      ...(options.endpoint && { endpoint: options.endpoint }),
      ...(options.region && { region: options.region }),
      ...(options.stateDir && { stateDir: options.stateDir }),
    },
  };
}

export function sqsClientFor(options: DlqOptions, targets: DlqTargets): SQSClient {
  const endpoint =
    options.sqsEndpoint ?? (isLocalUrl(targets.dlqUrl) ? new URL(targets.dlqUrl).origin : undefined);
  const isLocal = endpoint !== undefined && isLocalUrl(endpoint);
  const region = options.region ?? awsQueueOf(targets.dlqUrl)?.region ?? (isLocal ? LOCAL_REGION : undefined);
  return new SQSClient({
    ...(region && { region }),
    ...(endpoint && { endpoint }),
    // Emulators accept any credentials; never pick up a real profile for a local queue.
    ...(isLocal && { credentials: { accessKeyId: 'local', secretAccessKey: 'local' } }),
  });
}

/** One message as received from the dead-letter queue (a receipt handle held until the command ends). */
export interface ReceivedCopy {
  readonly messageId: string;
  readonly receiptHandle: string;
  readonly body: string;
  readonly attributes: Record<string, MessageAttributeValue>;
  /** Epoch ms: when it was put in the DLQ (for a message SQS moved itself: when it was first sent). */
  readonly sentTimestamp: number | undefined;
}

/**
 * The DLQ as one command sees it. SQS has no peek: every message is received with a visibility timeout
 * long enough to page through the queue, and every one not deleted is made visible again by `close`.
 */
export class DeadLetterSession {
  private readonly held = new Map<string, string>();

  constructor(
    private readonly sqs: SQSClient,
    private readonly targets: DlqTargets,
  ) {}

  /** Receives until nothing new comes back. `truncated`: the run stopped at MAX_MESSAGES_PER_RUN. */
  async receiveAll(): Promise<{ copies: ReceivedCopy[]; truncated: boolean }> {
    const byId = new Map<string, Message>();
    for (;;) {
      const { Messages = [] } = await this.sqs.send(
        new ReceiveMessageCommand({
          QueueUrl: this.targets.dlqUrl,
          MaxNumberOfMessages: SQS_BATCH,
          WaitTimeSeconds: RECEIVE_WAIT_SECONDS,
          VisibilityTimeout: PEEK_VISIBILITY_SECONDS,
          MessageAttributeNames: ['All'],
          MessageSystemAttributeNames: ['SentTimestamp'],
        }),
      );
      let fresh = 0;
      for (const message of Messages) {
        if (!message.MessageId || !message.ReceiptHandle) continue;
        if (!byId.has(message.MessageId)) fresh += 1;
        // Received again (its visibility ran out): only the newest receipt handle is valid.
        byId.set(message.MessageId, message);
        this.held.set(message.MessageId, message.ReceiptHandle);
      }
      if (fresh === 0) break;
      if (byId.size >= MAX_MESSAGES_PER_RUN) return { copies: toCopies(byId), truncated: true };
    }
    return { copies: toCopies(byId), truncated: false };
  }

  /** Sends a message to the outbox; resolves with its new SQS message id. */
  async sendToOutbox(body: string, attributes: Record<string, MessageAttributeValue>): Promise<string> {
    const { outboxUrl } = this.targets;
    if (outboxUrl === undefined) {
      throw new Error('redrive needs --outbox-url (stack output OutboxQueueUrl) for a deployed queue');
    }
    const sent = await this.sqs.send(
      new SendMessageCommand({
        QueueUrl: outboxUrl,
        MessageBody: body,
        ...(Object.keys(attributes).length > 0 && { MessageAttributes: attributes }),
      }),
    );
    return sent.MessageId ?? '';
  }

  /** Deletes copies from the DLQ; resolves with the ids it could not delete (they stay in the queue). */
  async delete(messageIds: readonly string[]): Promise<string[]> {
    const failed: string[] = [];
    const handles = messageIds.flatMap((id, index) => {
      const handle = this.held.get(id);
      if (handle === undefined) failed.push(id);
      return handle === undefined ? [] : [{ Id: String(index), ReceiptHandle: handle, id }];
    });
    for (let start = 0; start < handles.length; start += SQS_BATCH) {
      const batch = handles.slice(start, start + SQS_BATCH);
      const result = await this.sqs.send(
        new DeleteMessageBatchCommand({
          QueueUrl: this.targets.dlqUrl,
          Entries: batch.map(({ Id, ReceiptHandle }) => ({ Id, ReceiptHandle })),
        }),
      );
      const failedIds = new Set((result.Failed ?? []).map((entry) => entry.Id));
      for (const entry of batch) {
        if (failedIds.has(entry.Id)) failed.push(entry.id);
        else this.held.delete(entry.id);
      }
    }
    return failed;
  }

  /** Makes every message still held visible again; resolves with how many stay hidden (a failed call). */
  async close(): Promise<number> {
    const entries = [...this.held.entries()];
    let hidden = 0;
    for (let start = 0; start < entries.length; start += SQS_BATCH) {
      const batch = entries.slice(start, start + SQS_BATCH);
      try {
        const result = await this.sqs.send(
          new ChangeMessageVisibilityBatchCommand({
            QueueUrl: this.targets.dlqUrl,
            Entries: batch.map(([, handle], index) => ({
              Id: String(index),
              ReceiptHandle: handle,
              VisibilityTimeout: 0,
            })),
          }),
        );
        hidden += result.Failed?.length ?? 0;
      } catch {
        hidden += batch.length;
      }
    }
    this.held.clear();
    return hidden;
  }
}

function toCopies(byId: Map<string, Message>): ReceivedCopy[] {
  return [...byId.values()].map((message) => {
    const sent = Number(message.Attributes?.SentTimestamp);
    return {
      messageId: message.MessageId ?? '',
      receiptHandle: message.ReceiptHandle ?? '',
      body: message.Body ?? '',
      attributes: message.MessageAttributes ?? {},
      sentTimestamp: Number.isFinite(sent) && sent > 0 ? sent : undefined,
    };
  });
}

/**
 * Runs `operation` on the DLQ, then makes every message it did not delete visible again (also when it
 * throws). Warns on stderr when some could not be: they reappear after PEEK_VISIBILITY_SECONDS.
 */
export async function withDeadLetterSession<T>(
  options: DlqOptions,
  operation: (session: DeadLetterSession, targets: DlqTargets) => Promise<T>,
): Promise<T> {
  const targets = resolveTargets(options);
  const sqs = sqsClientFor(options, targets);
  const session = new DeadLetterSession(sqs, targets);
  try {
    return await operation(session, targets);
  } finally {
    const hidden = await session.close();
    if (hidden > 0) {
      console.error(
        `Warning: ${hidden} message(s) could not be made visible again; they reappear in the dead-letter queue within ${PEEK_VISIBILITY_SECONDS} s.`,
      );
    }
    sqs.destroy();
  }
}
