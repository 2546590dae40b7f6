import {
  type AttachmentStore,
  type OutboundMessage,
  resolveAttachments,
  resolveRawMessage,
} from '../attachments.ts';
import { isRawMessage } from '../message.ts';
import { TRACE_HEADERS } from '../outcomes.ts';
import type { Screening } from './admission.ts';
import type { Delivery } from './delivery-context.ts';
import type { RelayCoreSettings } from './types.ts';

export interface OutboundSources {
  readonly settings: Pick<RelayCoreSettings, 'limits' | 'attachments' | 'ingress'>;
  readonly attachmentStore: AttachmentStore | undefined;
  readonly now: () => number;
}

/**
 * The message as the providers get it: the route's sender, the recipients left after suppression, the
 * relay's trace headers, and S3-referenced content read in (only now: it can be large).
 */
export async function composeOutbound(
  delivery: Delivery,
  { remaining, remainingRecipients }: Screening,
  { settings, attachmentStore, now }: OutboundSources,
): Promise<OutboundMessage> {
  const { sqsRecord, message, deadlines, sender, route } = delivery;
  // Bounce reports and SES events carry these back, so feedback finds the request it is about.
  const traceHeaders = {
    [TRACE_HEADERS.messageId]: sqsRecord.messageId,
    ...(message.idempotencyKey && { [TRACE_HEADERS.idempotencyKey]: message.idempotencyKey }),
  };
  const resolveOptions = {
    maxMessageBytes: settings.limits.maxMessageBytes,
    signal: deadlines.work,
    ...(settings.attachments && { settings: settings.attachments }),
    ...(attachmentStore && { store: attachmentStore }),
  };
  return isRawMessage(message)
    ? await resolveRawMessage(
        message,
        {
          ...(route.rewriteFrom && {
            rewrite: { from: sender.from, replyTo: sender.replyTo ?? [message.from] },
          }),
          recipients: remainingRecipients,
          headers: traceHeaders,
        },
        { ...resolveOptions, now: new Date(now()), ingressBucket: settings.ingress?.bucket },
      )
    : await resolveAttachments(
        {
          ...message,
          to: remaining(message.to),
          cc: remaining(message.cc),
          bcc: remaining(message.bcc),
          from: sender.from,
          ...(sender.replyTo && { replyTo: sender.replyTo }),
          headers: { ...withoutTraceHeaders(message.headers), ...traceHeaders },
        },
        resolveOptions,
      );
}

/** Only the relay writes its trace headers: a forged one would tie feedback to another message. */
function withoutTraceHeaders(headers: Readonly<Record<string, string>> | undefined): Record<string, string> {
  const trace = new Set(Object.values(TRACE_HEADERS).map((name) => name.toLowerCase()));
  return Object.fromEntries(Object.entries(headers ?? {}).filter(([name]) => !trace.has(name.toLowerCase())));
}
