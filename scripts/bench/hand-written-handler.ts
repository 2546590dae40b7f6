// What a user writes by hand instead of the relay, as the benchmark's yardstick: a Lambda handler on
// the same SQS queue that sends each record of the batch in turn, one at a time, with the provider's
// usual client. No validation beyond JSON.parse, no ledger, no suppression list, no retries of its
// own, no events, no logs: failed records are reported back for SQS to redeliver, and that is all.
// bench.ts bundles it with the relay's own function construct (so exactly like the relay), and
// configures it with BENCH_HAND_WRITTEN (JSON, see HandWrittenSettings).
//
// - graph: fetch, a client-credentials token once (cached until shortly before it expires), then one
//   POST /users/{from}/sendMail per message;
// - ses: @aws-sdk/client-sesv2 SendEmail with Simple content;
// - smtp: one nodemailer transport without pooling (a new connection and STARTTLS per message).
import { SESv2Client, SendEmailCommand } from '@aws-sdk/client-sesv2';
import type { SQSBatchResponse, SQSEvent } from 'aws-lambda';
import { createTransport } from 'nodemailer';

export type HandWrittenSettings =
  | {
      readonly provider: 'graph';
      readonly authorityHost: string;
      readonly graphEndpoint: string;
      readonly tenantId: string;
      readonly clientId: string;
      readonly clientSecret: string;
    }
  | { readonly provider: 'ses'; readonly configurationSetName: string }
  | { readonly provider: 'smtp'; readonly host: string; readonly port: number };

/** The fields of the relay's message contract this handler reads. */
interface Mail {
  readonly from: string;
  readonly to: string[];
  readonly subject: string;
  readonly text?: string;
  readonly html?: string;
}

const settings = JSON.parse(process.env.BENCH_HAND_WRITTEN ?? '{}') as HandWrittenSettings;
const send = senderFor(settings);

export async function handler(event: SQSEvent): Promise<SQSBatchResponse> {
  const batchItemFailures: SQSBatchResponse['batchItemFailures'] = [];
  for (const record of event.Records) {
    try {
      await send(JSON.parse(record.body) as Mail);
    } catch {
      batchItemFailures.push({ itemIdentifier: record.messageId });
    }
  }
  return { batchItemFailures };
}

function senderFor(settings: HandWrittenSettings): (mail: Mail) => Promise<void> {
  switch (settings.provider) {
    case 'graph':
      return graphSender(settings);
    case 'ses': {
      const ses = new SESv2Client({});
      return async (mail) => {
        await ses.send(
          new SendEmailCommand({
            FromEmailAddress: mail.from,
            Destination: { ToAddresses: mail.to },
            Content: {
              Simple: {
                Subject: { Data: mail.subject },
                Body: {
                  ...(mail.text !== undefined && { Text: { Data: mail.text } }),
                  ...(mail.html !== undefined && { Html: { Data: mail.html } }),
                },
              },
            },
            ConfigurationSetName: settings.configurationSetName,
          }),
        );
      };
    }
    case 'smtp': {
      const transport = createTransport({
        host: settings.host,
        port: settings.port,
        secure: false,
        requireTLS: true,
        pool: false,
      });
      return async (mail) => {
        await transport.sendMail({
          from: mail.from,
          to: mail.to,
          subject: mail.subject,
          text: mail.text,
          html: mail.html,
        });
      };
    }
  }
}

function graphSender(settings: Extract<HandWrittenSettings, { provider: 'graph' }>) {
  let token: { value: string; expiresAt: number } | undefined;
  const accessToken = async () => {
    if (token && token.expiresAt > Date.now()) return token.value;
    const response = await fetch(`${settings.authorityHost}/${settings.tenantId}/oauth2/v2.0/token`, {
      method: 'POST',
      body: new URLSearchParams({
        grant_type: 'client_credentials',
        client_id: settings.clientId,
        client_secret: settings.clientSecret,
        scope: `${settings.graphEndpoint}/.default`,
      }),
    });
    if (!response.ok) throw new Error(`token: ${response.status}`);
    const { access_token, expires_in } = (await response.json()) as {
      access_token: string;
      expires_in: number;
    };
    token = { value: access_token, expiresAt: Date.now() + (expires_in - 300) * 1000 };
    return token.value;
  };
  return async (mail: Mail) => {
    const from = /<([^>]+)>/.exec(mail.from)?.[1] ?? mail.from;
    const response = await fetch(
      `${settings.graphEndpoint}/v1.0/users/${encodeURIComponent(from)}/sendMail`,
      {
        method: 'POST',
        headers: { authorization: `Bearer ${await accessToken()}`, 'content-type': 'application/json' },
        body: JSON.stringify({
          message: {
            subject: mail.subject,
            body:
              mail.html !== undefined
                ? { contentType: 'HTML', content: mail.html }
                : { contentType: 'Text', content: mail.text ?? '' },
            toRecipients: mail.to.map((address) => ({ emailAddress: { address } })),
          },
          saveToSentItems: true,
        }),
      },
    );
    await response.arrayBuffer();
    if (response.status !== 202) throw new Error(`sendMail: ${response.status}`);
  };
}
