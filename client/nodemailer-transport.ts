import { createHash } from 'node:crypto';
import type { MailMessage, MailMessageData, SentMessageInfo, Transport } from 'nodemailer/lib/mailer';
import {
  createRelayClient,
  type RawMessageInput,
  type RelayClient,
  type RelayClientOptions,
  type S3Reference,
} from './relay-client.ts';

/** Valid as an idempotency key as it is (the contract: 1-128 printable ASCII, no spaces). */
const KEY_PATTERN = /^[\x21-\x7e]{1,128}$/;

export interface MailRelayTransportOptions extends RelayClientOptions {
  /** Send through this client instead of one made from the options (which are then only `queueUrl`). */
  readonly client?: RelayClient;
  /** Labels for every message (SES message tags): `A-Z a-z 0-9 _ -`. */
  readonly tags?: Readonly<Record<string, string>>;
  /** A configured route to ask for, instead of the one the From address matches. */
  readonly route?: string;
  /**
   * The idempotency key of a message. Default: its Message-ID (nodemailer's `messageId` option, or the
   * one nodemailer generates), as it is when it fits the contract, else `sha256:` and its hash.
   */
  readonly idempotencyKey?: (data: MailMessageData, messageId: string) => string | undefined;
}

export interface MailRelaySentMessageInfo extends SentMessageInfo {
  /** `250 Queued as <SQS message id>`. */
  response: string;
  /** The SQS message id. */
  sqsMessageId: string;
  idempotencyKey: string | undefined;
  /** The MIME's object in the bucket, when it was too big for SQS. */
  uploaded: readonly S3Reference[];
}

/**
 * A nodemailer transport that puts each message on the relay's outbox:
 * `nodemailer.createTransport(new MailRelayTransport({ queueUrl }))`. nodemailer builds the MIME
 * (attachments from paths, buffers and streams, cid images, any header), and the relay gets it as a
 * raw message, `{ v, from, recipients, mime }`: nothing of it is lost in a translation to JSON
 * fields. The recipients are nodemailer's envelope (to, cc and bcc; the Bcc header is not in the
 * MIME). A message too big for SQS goes through the attachment bucket.
 */
export class MailRelayTransport implements Transport<MailRelaySentMessageInfo> {
  readonly name = 'MailRelay';
  readonly version = '1.0.0';
  readonly supportsAbortSignal = false;
  private readonly client: RelayClient;
  private readonly ownsClient: boolean;
  private readonly options: MailRelayTransportOptions;

  constructor(options: MailRelayTransportOptions) {
    this.options = options;
    this.client = options.client ?? createRelayClient(options);
    this.ownsClient = options.client === undefined;
  }

  send(
    mail: MailMessage<MailRelaySentMessageInfo>,
    callback: (err: Error | null, info?: MailRelaySentMessageInfo) => void,
  ): void {
    this.enqueue(mail).then(
      (info) => callback(null, info),
      (error: unknown) => callback(error instanceof Error ? error : new Error(String(error))),
    );
  }

  /** Checks that the queue is reachable: `transporter.verify()`. */
  verify(callback?: (err: Error | null, success?: true) => void): Promise<true> | undefined {
    const checked = this.client.verify();
    if (!callback) return checked;
    checked.then(
      (success) => callback(null, success),
      (error: Error) => callback(error),
    );
    return undefined;
  }

  close(): void {
    if (this.ownsClient) this.client.close();
  }

  private async enqueue(mail: MailMessage<MailRelaySentMessageInfo>): Promise<MailRelaySentMessageInfo> {
    const envelope = mail.message.getEnvelope();
    const messageId = mail.message.messageId();
    const mime = await mail.message.build();
    // The relay checks that `from` is the MIME's From; the envelope sender may differ (a bounce address).
    const fromHeader = mail.message.getAddresses().from?.find((mailbox) => mailbox.address)?.address;
    const from = fromHeader ?? (envelope.from || '');
    const idempotencyKey = this.options.idempotencyKey
      ? this.options.idempotencyKey(mail.data, messageId)
      : defaultKey(messageId);
    const message: RawMessageInput = {
      from,
      recipients: envelope.to,
      mime: { content: mime },
      ...(this.options.tags && { tags: { ...this.options.tags } }),
      ...(this.options.route && { route: this.options.route }),
      ...(idempotencyKey !== undefined && { idempotencyKey }),
    };
    const sent = await this.client.send(message);
    return {
      envelope,
      messageId,
      accepted: [...envelope.to],
      rejected: [],
      pending: [],
      response: `250 Queued as ${sent.messageId}`,
      sqsMessageId: sent.messageId,
      idempotencyKey: sent.idempotencyKey,
      uploaded: sent.uploaded,
    };
  }
}

function defaultKey(messageId: string): string {
  return KEY_PATTERN.test(messageId)
    ? messageId
    : `sha256:${createHash('sha256').update(messageId).digest('hex')}`;
}
