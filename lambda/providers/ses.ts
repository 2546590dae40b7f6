import { SESv2Client, SendEmailCommand } from '@aws-sdk/client-sesv2';
import type { OutboundMessage } from '../core/attachments.ts';
import { classifyFault, type ProviderFault } from '../core/failures.ts';
import { SES_MAX_MESSAGE_BYTES, SES_MAX_RECIPIENTS_PER_MESSAGE } from '../core/limits.ts';
import { recipientsOf } from '../core/message.ts';
import { type SesSettings, sesIdentityFor } from '../core/settings.ts';
import { truncate } from '../core/text.ts';
import { composeMime } from './mime.ts';
import type { MailProvider, SendReceipt } from './provider.ts';

export const SES_PROVIDER = 'ses';

/**
 * SES v2 client for the relay. The SDK's standard retry (3 attempts, jittered backoff) absorbs
 * momentary throttling inside one invocation; anything longer is the relay's retry via SQS.
 * Timeouts stay well under the function timeout so a hung connection becomes a retry, not a crash.
 */
export function createSesClient(): SESv2Client {
  return new SESv2Client({
    maxAttempts: 3,
    requestHandler: { connectionTimeout: 3_000, requestTimeout: 15_000 },
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

  async send(message: OutboundMessage): Promise<SendReceipt> {
    const recipients = recipientsOf(message).length;
    if (recipients > SES_MAX_RECIPIENTS_PER_MESSAGE) {
      throw classifyFault({
        provider: SES_PROVIDER,
        code: 'TooManyRecipients',
        message: `the message has ${recipients} recipients in to + cc + bcc; SES accepts at most ${SES_MAX_RECIPIENTS_PER_MESSAGE}`,
      });
    }
    const raw = await composeMime(message);
    if (raw.length > SES_MAX_MESSAGE_BYTES) {
      throw classifyFault({
        provider: SES_PROVIDER,
        code: 'MessageTooLarge',
        message: `the message is ${raw.length} bytes once MIME-encoded; SES accepts at most ${SES_MAX_MESSAGE_BYTES}`,
      });
    }
    const addresses = (list: OutboundMessage['to']) => (list ?? []).map((mailbox) => mailbox.address);
    try {
      const output = await this.client.send(
        new SendEmailCommand({
          FromEmailAddress: message.from.address,
          // Explicit envelope: SES would otherwise read recipients from the headers, which carry no Bcc.
          Destination: {
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
        }),
      );
      return { provider: this.name, providerMessageId: output.MessageId };
    } catch (error) {
      throw classifyFault(sesFault(error), error);
    }
  }
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
  const code =
    details.code && !details.name?.endsWith('Exception') ? details.code : (details.name ?? 'Error');
  return {
    provider: SES_PROVIDER,
    code: code === 'Error' && status !== undefined ? `HTTP${status}` : code,
    message: truncate(details.message ?? String(error), 500),
    ...(status !== undefined && { status }),
  };
}
