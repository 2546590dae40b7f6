import * as z from 'zod';
import { TRACE_HEADERS } from '../outcomes.ts';
import { truncate } from '../text.ts';
import { describeIssues } from '../validation.ts';
import { causeFromText, classifyBounce, isAddressCause } from './bounce-classification.ts';
import type { BounceCause, FeedbackEvent, FeedbackKind } from './feedback-event.ts';

export const SES_PROVIDER = 'ses';
const MAX_DIAGNOSTIC = 500;

/** A payload the feedback function cannot read: it names the field and why, never the values. */
export class FeedbackPayloadError extends Error {
  constructor(readonly problems: readonly string[]) {
    super(`Not an SES event the relay can read:\n${problems.map((problem) => `  - ${problem}`).join('\n')}`);
    this.name = 'FeedbackPayloadError';
  }
}

// SES adds fields over time: objects are loose, and only what the relay uses is required.
const recipientSchema = z.looseObject({
  emailAddress: z.string().min(1),
  status: z.string().optional(),
  diagnosticCode: z.string().optional(),
});

const mailSchema = z.looseObject({
  messageId: z.string().min(1),
  timestamp: z.string().optional(),
  destination: z.array(z.string()).optional(),
  headers: z.array(z.looseObject({ name: z.string(), value: z.string() })).optional(),
  tags: z.record(z.string(), z.array(z.string())).optional(),
});

const detailSchema = z.discriminatedUnion('eventType', [
  z.looseObject({
    eventType: z.literal('Bounce'),
    mail: mailSchema,
    bounce: z.looseObject({
      bounceType: z.enum(['Permanent', 'Transient', 'Undetermined']),
      bounceSubType: z.string().optional(),
      bouncedRecipients: z.array(recipientSchema).min(1),
      timestamp: z.string().optional(),
    }),
  }),
  z.looseObject({
    eventType: z.literal('Complaint'),
    mail: mailSchema,
    complaint: z.looseObject({
      complainedRecipients: z.array(recipientSchema).min(1),
      complaintFeedbackType: z.string().optional(),
      timestamp: z.string().optional(),
    }),
  }),
  z.looseObject({
    eventType: z.literal('Delivery'),
    mail: mailSchema,
    delivery: z.looseObject({
      recipients: z.array(z.string()).min(1),
      smtpResponse: z.string().optional(),
      timestamp: z.string().optional(),
    }),
  }),
  z.looseObject({
    eventType: z.literal('DeliveryDelay'),
    mail: mailSchema,
    deliveryDelay: z.looseObject({
      delayType: z.string().optional(),
      delayedRecipients: z.array(recipientSchema).min(1),
      timestamp: z.string().optional(),
    }),
  }),
  z.looseObject({
    eventType: z.literal('Reject'),
    mail: mailSchema,
    reject: z.looseObject({ reason: z.string().optional() }),
  }),
  z.looseObject({
    eventType: z.literal('Rendering Failure'),
    mail: mailSchema,
    failure: z.looseObject({ errorMessage: z.string().optional() }).optional(),
  }),
  z.looseObject({
    eventType: z.literal('Send'),
    mail: mailSchema,
  }),
]);

/** SES event publishing to EventBridge: the SES event is the `detail` of an `aws.ses` event. */
const eventBridgeEnvelopeSchema = z.looseObject({
  source: z.literal('aws.ses'),
  time: z.string().optional(),
  detail: detailSchema,
});

type SesDetail = z.infer<typeof detailSchema>;
type SesMail = z.infer<typeof mailSchema>;

/**
 * Reads one SES event as EventBridge delivers it (source `aws.ses`) into the relay's feedback events.
 * Throws FeedbackPayloadError naming every unreadable field: the function fails, and the event ends in
 * the feedback dead-letter queue with that reason rather than being dropped.
 */
export function parseSesEvent(payload: unknown): FeedbackEvent[] {
  const parsed = eventBridgeEnvelopeSchema.safeParse(payload);
  if (!parsed.success) throw new FeedbackPayloadError(describeIssues(parsed.error));
  const { detail } = parsed.data;
  const fallbackAt = parsed.data.time ?? detail.mail.timestamp ?? new Date().toISOString();
  const common = fromMail(detail.mail);
  const event = (kind: FeedbackKind, fields: Partial<FeedbackEvent> & Pick<FeedbackEvent, 'recipients'>) => ({
    kind,
    provider: SES_PROVIDER,
    ...common,
    at: fallbackAt,
    ...fields,
  });
  return eventsOf(detail, event);
}

function eventsOf(
  detail: SesDetail,
  event: (
    kind: FeedbackKind,
    fields: Partial<FeedbackEvent> & Pick<FeedbackEvent, 'recipients'>,
  ) => FeedbackEvent,
): FeedbackEvent[] {
  switch (detail.eventType) {
    case 'Bounce': {
      const { bounce } = detail;
      return groupByDiagnosis(bounce.bouncedRecipients).map((group) =>
        event('bounced', {
          ...group,
          ...sesBounceClass(bounce.bounceType, bounce.bounceSubType, group.status, group.diagnostic),
          ...(bounce.timestamp && { at: bounce.timestamp }),
        }),
      );
    }
    case 'Complaint': {
      const { complaint } = detail;
      return [
        event('complained', {
          recipients: addresses(complaint.complainedRecipients.map((recipient) => recipient.emailAddress)),
          ...(complaint.complaintFeedbackType && { diagnostic: complaint.complaintFeedbackType }),
          ...(complaint.timestamp && { at: complaint.timestamp }),
        }),
      ];
    }
    case 'Delivery': {
      const { delivery } = detail;
      return [
        event('delivered', {
          recipients: addresses(delivery.recipients),
          ...(delivery.smtpResponse && { diagnostic: truncate(delivery.smtpResponse, MAX_DIAGNOSTIC) }),
          ...(delivery.timestamp && { at: delivery.timestamp }),
        }),
      ];
    }
    case 'DeliveryDelay': {
      const { deliveryDelay } = detail;
      return groupByDiagnosis(deliveryDelay.delayedRecipients).map((group) =>
        event('delayed', { ...group, ...(deliveryDelay.timestamp && { at: deliveryDelay.timestamp }) }),
      );
    }
    case 'Reject':
      return [
        event('rejected', {
          recipients: addresses(detail.mail.destination ?? []),
          ...(detail.reject.reason && { diagnostic: truncate(detail.reject.reason, MAX_DIAGNOSTIC) }),
        }),
      ];
    case 'Rendering Failure':
      return [
        event('rendering-failure', {
          recipients: addresses(detail.mail.destination ?? []),
          ...(detail.failure?.errorMessage && {
            diagnostic: truncate(detail.failure.errorMessage, MAX_DIAGNOSTIC),
          }),
        }),
      ];
    case 'Send':
      return [event('sent', { recipients: addresses(detail.mail.destination ?? []) })];
  }
}

/** One event per status and diagnostic: recipients that bounced for the same reason go together. */
function groupByDiagnosis(
  recipients: readonly z.infer<typeof recipientSchema>[],
): { recipients: string[]; status?: string; diagnostic?: string }[] {
  const groups = new Map<string, { recipients: string[]; status?: string; diagnostic?: string }>();
  for (const recipient of recipients) {
    const diagnostic = recipient.diagnosticCode
      ? truncate(
          recipient.diagnosticCode
            .replace(/^smtp;\s*/i, '')
            .replace(/\s+/g, ' ')
            .trim(),
          MAX_DIAGNOSTIC,
        )
      : undefined;
    const key = `${recipient.status ?? ''}\u0000${diagnostic ?? ''}`;
    const group = groups.get(key) ?? {
      recipients: [],
      ...(recipient.status && { status: recipient.status }),
      ...(diagnostic && { diagnostic }),
    };
    group.recipients.push(recipient.emailAddress.toLowerCase());
    groups.set(key, group);
  }
  return [...groups.values()];
}

/** What SES's bounce sub-type names, when the server's words and codes name nothing more specific. */
const CAUSE_BY_SUB_TYPE: Readonly<Partial<Record<string, BounceCause>>> = {
  NoEmail: 'user-unknown',
  Suppressed: 'user-unknown',
  MailboxFull: 'over-quota',
  MessageTooLarge: 'content',
  ContentRejected: 'content',
  AttachmentRejected: 'content',
};

/**
 * SES's bounce, judged by the relay's one classification (bounce-classification.ts) on the status and
 * the remote server's words, with SES's own type and sub-type as evidence: hard only for a Permanent
 * bounce whose evidence names the address, or a Permanent NoEmail / Suppressed (SES's finding that the
 * address does not exist) that no other cause contradicts. OnAccountSuppressionList is SES's own list
 * for this account, no fact about the address for the other providers: never hard.
 */
export function sesBounceClass(
  bounceType: 'Permanent' | 'Transient' | 'Undetermined',
  subType: string | undefined,
  status: string | undefined,
  diagnostic: string | undefined,
): { bounceType: 'hard' | 'soft'; cause: BounceCause } {
  const judged = classifyBounce({ status, diagnostic, permanent: bounceType === 'Permanent' });
  const named = causeFromText(diagnostic);
  const bySubType = CAUSE_BY_SUB_TYPE[subType ?? ''];
  // SES's own word for a cause about the message (MailboxFull, AttachmentRejected …) is the most exact.
  const cause =
    bySubType !== undefined && !isAddressCause(bySubType)
      ? bySubType
      : (named ?? (judged.cause === 'other' ? (bySubType ?? 'other') : judged.cause));
  if (bounceType !== 'Permanent' || subType === 'OnAccountSuppressionList') {
    return { bounceType: 'soft', cause };
  }
  if (judged.bounceType === 'hard') return { bounceType: 'hard', cause: judged.cause };
  // SES found the address does not exist; hard unless the evidence names another cause or a 4.x.x.
  const contradicted =
    (named !== undefined && !isAddressCause(named)) || judged.status?.startsWith('4.') === true;
  if ((subType === 'NoEmail' || subType === 'Suppressed') && !contradicted) {
    return { bounceType: 'hard', cause: 'user-unknown' };
  }
  return { bounceType: 'soft', cause };
}

function addresses(list: readonly string[]): string[] {
  return [...new Set(list.map((address) => address.toLowerCase()))];
}

/** The request the event is about: SES returns the headers the relay added, and the message tags. */
function fromMail(
  mail: SesMail,
): Pick<FeedbackEvent, 'providerMessageId' | 'sourceMessageId' | 'idempotencyKey' | 'tags'> {
  const header = (name: string) =>
    mail.headers?.find((candidate) => candidate.name.toLowerCase() === name.toLowerCase())?.value;
  const sourceMessageId = header(TRACE_HEADERS.messageId);
  const idempotencyKey = header(TRACE_HEADERS.idempotencyKey);
  // SES's own tags (ses:configuration-set, ses:source-ip …) are not the producer's.
  const tags = Object.fromEntries(
    Object.entries(mail.tags ?? {})
      .filter(([name, values]) => !name.startsWith('ses:') && values.length > 0)
      .map(([name, values]) => [name, values[0] as string]),
  );
  return {
    providerMessageId: mail.messageId,
    ...(sourceMessageId && { sourceMessageId }),
    ...(idempotencyKey && { idempotencyKey }),
    ...(Object.keys(tags).length > 0 && { tags }),
  };
}
