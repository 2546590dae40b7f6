import { SESv2Client, type SESv2ClientConfig, SendEmailCommand } from '@aws-sdk/client-sesv2';
import { type Mailbox, needsSmtpUtf8 } from '../../core/address.ts';
import { isRawOutbound, type OutboundMessage } from '../../core/attachments.ts';
import { type ProviderFault, RelayFailure } from '../../core/failures.ts';
import { SES_MAX_MESSAGE_BYTES, SES_MAX_RECIPIENTS_PER_MESSAGE } from '../../core/limits.ts';
import type { MailProvider, SendContext, SendReceipt } from '../../core/mail-provider.ts';
import { recipientsOf } from '../../core/message.ts';
import { truncate } from '../../core/text.ts';
import { createHttpTransport, TransportError } from '../http-transport.ts';
import { composeMime, renderRawMime } from '../mime.ts';
import { RefusalOnlyRetryStrategy, TransportRequestHandler, withHandOff } from '../sdk-request-handler.ts';
import { SES_FAILURES } from './failures.ts';
import { type SesSettings, sesIdentityFor } from './settings.ts';

export const SES_PROVIDER = 'ses';

export interface SesClientOptions {
  /** No answer for this long ends a request (the invocation's deadline may end it sooner). @default 15000 */
  readonly requestTimeoutMs?: number;
  /** Endpoint, region, credentials: the SDK's standard configuration when absent (Lambda, local mode). */
  readonly client?: Pick<SESv2ClientConfig, 'endpoint' | 'region' | 'credentials'>;
}

/**
 * SES v2 client for the relay, over the relay's own HTTP transport: every call is bounded (a timeout,
 * and the invocation's deadline as an abort signal), a lost answer is told apart from a refusal, and
 * the SDK retries only refusals (momentary throttling inside one invocation; anything longer is the
 * relay's retry via SQS), never a SendEmail whose answer was lost.
 */
export function createSesClient(options: SesClientOptions = {}): SESv2Client {
  return new SESv2Client({
    ...options.client,
    requestHandler: new TransportRequestHandler(
      createHttpTransport({ timeoutMs: options.requestTimeoutMs ?? 15_000 }),
    ) as never,
    retryStrategy: new RefusalOnlyRetryStrategy(3),
  });
}

/** Sends through Amazon SES v2 `SendEmail` with Raw content, so attachments and X- headers survive. */
export class SesProvider implements MailProvider {
  readonly name = SES_PROVIDER;

  constructor(
    private readonly client: SESv2Client,
    private readonly settings: SesSettings,
  ) {}

  canSendAs(address: string): boolean {
    return sesIdentityFor(this.settings, address) !== undefined;
  }

  async send(message: OutboundMessage, context: SendContext): Promise<SendReceipt> {
    const recipients = recipientsOf(message).length;
    if (recipients > SES_MAX_RECIPIENTS_PER_MESSAGE) {
      throw SES_FAILURES.classify({
        provider: SES_PROVIDER,
        code: 'TooManyRecipients',
        message: `the message has ${recipients} recipients in to + cc + bcc; SES accepts at most ${SES_MAX_RECIPIENTS_PER_MESSAGE}`,
      });
    }
    const unsupported = addressSesCannotCarry(message);
    if (unsupported !== undefined) {
      throw SES_FAILURES.classify({
        provider: SES_PROVIDER,
        code: 'AddressNotSupported',
        message: `${unsupported}: SES cannot carry a non-ASCII local part (SMTPUTF8)`,
      });
    }
    const raw = isRawOutbound(message)
      ? await renderRawMime(message, { messageId: context.internetMessageId, recipients: 'envelope' })
      : await composeMime(message, { messageId: context.internetMessageId });
    if (raw.length > SES_MAX_MESSAGE_BYTES) {
      throw SES_FAILURES.classify({
        provider: SES_PROVIDER,
        code: 'MessageTooLarge',
        message: `the message is ${raw.length} bytes once MIME-encoded; SES accepts at most ${SES_MAX_MESSAGE_BYTES}`,
      });
    }
    const addresses = (list: readonly Mailbox[] | undefined) =>
      (list ?? []).map((mailbox) => mailbox.address);
    try {
      const command = new SendEmailCommand({
        FromEmailAddress: message.from.address,
        // Explicit envelope: SES would otherwise read recipients from the headers, which carry no Bcc.
        // A raw message's envelope has no To/Cc/Bcc split: its headers show what the application wrote.
        Destination: isRawOutbound(message)
          ? { ToAddresses: addresses(message.recipients) }
          : {
              ToAddresses: addresses(message.to),
              CcAddresses: addresses(message.cc),
              BccAddresses: addresses(message.bcc),
            },
        Content: { Raw: { Data: raw } },
        ...(message.tags && {
          EmailTags: Object.entries(message.tags).map(([Name, Value]) => ({ Name, Value })),
        }),
        ...(this.settings.configurationSetName && {
          ConfigurationSetName: this.settings.configurationSetName,
        }),
      });
      const output = await withHandOff(context.handOff, () =>
        this.client.send(command, { abortSignal: context.signal }),
      );
      return { provider: this.name, providerMessageId: output.MessageId };
    } catch (error) {
      // The relay's own refusal to hand off (the ledger said no) passes through as it is.
      if (error instanceof RelayFailure) throw error;
      throw SES_FAILURES.classify(sesFault(error), error);
    }
  }
}

/**
 * The first address SES cannot carry, named with its field ("to josé@example.com"). SES does not
 * support SMTPUTF8: a local part must be 7-bit ASCII, for From and recipients alike
 * (https://docs.aws.amazon.com/ses/latest/APIReference-V2/API_Destination.html,
 * https://docs.aws.amazon.com/ses/latest/APIReference/API_Destination.html); domains are already punycode.
 */
function addressSesCannotCarry(message: OutboundMessage): string | undefined {
  const fields: [string, readonly Mailbox[] | undefined][] = isRawOutbound(message)
    ? [
        ['from', [message.from]],
        ['recipient', message.recipients],
        ['reply-to', message.rewrittenFrom?.replyTo],
      ]
    : [
        ['from', [message.from]],
        ['to', message.to],
        ['cc', message.cc],
        ['bcc', message.bcc],
        ['reply-to', message.replyTo],
      ];
  for (const [field, mailboxes] of fields) {
    const mailbox = mailboxes?.find((candidate) => needsSmtpUtf8(candidate.address));
    if (mailbox) return `${field} ${mailbox.address}`;
  }
  return undefined;
}

/** Reduces an SDK v3 error (service exception or network error) to a ProviderFault. */
export function sesFault(error: unknown): ProviderFault {
  const details = (error ?? {}) as {
    name?: string;
    code?: string;
    message?: string;
    $metadata?: { httpStatusCode?: number };
    $response?: { statusCode?: number };
  };
  const status = details.$metadata?.httpStatusCode ?? details.$response?.statusCode;
  if (error instanceof TransportError) {
    // Below HTTP: no answer. Written in full, SES may have accepted it.
    return {
      provider: SES_PROVIDER,
      code: error.code,
      message: truncate(`SES request failed: ${error.message}`, 500),
      ...(error.requestWritten && { maybeSent: true }),
    };
  }
  const code =
    details.code && !details.name?.endsWith('Exception') ? details.code : (details.name ?? 'Error');
  return {
    provider: SES_PROVIDER,
    code: code === 'Error' && status !== undefined ? `HTTP${status}` : code,
    message: truncate(details.message ?? String(error), 500),
    ...(status !== undefined && { status }),
  };
}
