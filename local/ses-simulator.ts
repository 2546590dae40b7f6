import type { CapturedSend } from './ses-capture.ts';

/** The domain of Amazon SES's mailbox simulator (docs.aws.amazon.com/ses/latest/dg/send-an-email-from-console.html). */
export const SES_SIMULATOR_DOMAIN = 'simulator.amazonses.com';

/**
 * What SES does for each simulator address, as local mode reproduces it: the events SES would
 * publish through the configuration set to EventBridge. `complaint@` is delivered first, then
 * complained about; `suppressionlist@` bounces as if the address were on the account's list.
 */
const SCENARIOS: Record<string, readonly ('delivery' | 'bounce' | 'complaint' | 'suppressed')[]> = {
  success: ['delivery'],
  ooto: ['delivery'],
  bounce: ['bounce'],
  complaint: ['delivery', 'complaint'],
  suppressionlist: ['suppressed'],
};

/**
 * The SES events (EventBridge envelopes, source aws.ses, the format the feedback function reads in
 * AWS) that a send to simulator addresses produces. Other recipients produce nothing: locally no one
 * knows what their server would say.
 */
export function simulatedSesEvents(send: CapturedSend, now = new Date()): Record<string, unknown>[] {
  const recipients = [...send.destination.to, ...send.destination.cc, ...send.destination.bcc];
  const mail = mailObject(send, recipients, now);
  const at = now.toISOString();
  const events: Record<string, unknown>[] = [];
  for (const recipient of recipients) {
    const [localPart, domain] = recipient.toLowerCase().split('@');
    if (domain !== SES_SIMULATOR_DOMAIN) continue;
    for (const scenario of SCENARIOS[(localPart ?? '').split('+')[0] ?? ''] ?? []) {
      events.push(envelope(send, detailOf(scenario, recipient, mail, at), at));
    }
  }
  return events;
}

type Scenario = (typeof SCENARIOS)[string][number];

function detailOf(scenario: Scenario, recipient: string, mail: object, at: string): Record<string, unknown> {
  switch (scenario) {
    case 'delivery':
      return {
        eventType: 'Delivery',
        mail,
        delivery: {
          timestamp: at,
          recipients: [recipient],
          smtpResponse: '250 2.6.0 Message received',
          reportingMTA: 'local-mode.simulator',
        },
      };
    case 'bounce':
    case 'suppressed':
      return {
        eventType: 'Bounce',
        mail,
        bounce: {
          bounceType: 'Permanent',
          bounceSubType: scenario === 'bounce' ? 'General' : 'OnAccountSuppressionList',
          bouncedRecipients: [
            {
              emailAddress: recipient,
              action: 'failed',
              status: '5.1.1',
              diagnosticCode:
                scenario === 'bounce'
                  ? 'smtp; 550 5.1.1 user unknown'
                  : 'Amazon SES did not send the message to this address because it is on the suppression list for your account.',
            },
          ],
          timestamp: at,
          reportingMTA: 'dns; local-mode.simulator',
        },
      };
    case 'complaint':
      return {
        eventType: 'Complaint',
        mail,
        complaint: {
          complainedRecipients: [{ emailAddress: recipient }],
          complaintFeedbackType: 'abuse',
          timestamp: at,
        },
      };
  }
}

function envelope(send: CapturedSend, detail: Record<string, unknown>, at: string): Record<string, unknown> {
  const typeNames: Record<string, string> = {
    Delivery: 'Email Delivered',
    Bounce: 'Email Bounced',
    Complaint: 'Email Complaint Received',
  };
  return {
    version: '0',
    id: crypto.randomUUID(),
    'detail-type': typeNames[String(detail.eventType)],
    source: 'aws.ses',
    account: '000000000000',
    time: at,
    region: 'us-east-1',
    resources: send.configurationSetName ? [`configuration-set/${send.configurationSetName}`] : [],
    detail,
  };
}

/** SES's `mail` object: the message id, the destination, the headers (with the relay's trace headers) and tags. */
function mailObject(send: CapturedSend, destination: readonly string[], now: Date): Record<string, unknown> {
  return {
    timestamp: now.toISOString(),
    source: send.fromEmailAddress ?? '',
    messageId: send.messageId,
    destination,
    headersTruncated: false,
    headers: headersOf(send.raw),
    tags: {
      ...Object.fromEntries(Object.entries(send.tags).map(([name, value]) => [name, [value]])),
      ...(send.configurationSetName && { 'ses:configuration-set': [send.configurationSetName] }),
    },
  };
}

/** The top-level header fields of a raw message, unfolded, in order. */
function headersOf(raw: Buffer): { name: string; value: string }[] {
  const head = raw.toString('utf8').split(/\r?\n\r?\n/, 1)[0] ?? '';
  return head
    .replace(/\r?\n[ \t]+/g, ' ')
    .split(/\r?\n/)
    .flatMap((line) => {
      const colon = line.indexOf(':');
      return colon > 0 ? [{ name: line.slice(0, colon).trim(), value: line.slice(colon + 1).trim() }] : [];
    });
}
