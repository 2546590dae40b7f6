import * as z from 'zod';
import { type Mailbox, parseMailbox } from './address.ts';
import { DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_MAX_RECIPIENTS } from './limits.ts';
import type { MessageLimits } from './settings.ts';
import { unsafeTextProblem } from './unsafe-text.ts';
import { describeIssues } from './validation.ts';

/**
 * The relay's message contract, version 1: one JSON document per SQS message.
 * `schema/message.schema.json` is generated from this file (`npm run schemas`) for producers in other languages.
 */
export const MESSAGE_CONTRACT_VERSION = 1;

const NO_CRLF = 'must not contain CR or LF characters (header injection)';
// Linear on purpose: a grouped repetition backtracks per 4 characters and overflows the stack on
// multi-megabyte content.
const BASE64_PATTERN = /^[A-Za-z0-9+/]*={0,2}$/;
const WHITESPACE = /\s+/g;

// A regex rather than a refinement, so the JSON Schema carries the rule as a pattern too.
const headerText = (max: number) =>
  z
    .string()
    .max(max)
    .regex(/^[^\r\n]*$/, NO_CRLF);

/** Text a reader sees in a header (display names, subjects, file names): no bidi tricks or invisible spaces. */
const displayedText = (max: number) =>
  headerText(max).superRefine((value, ctx) => {
    const problem = unsafeTextProblem(value);
    if (problem) ctx.addIssue({ code: 'custom', message: problem });
  });

const mailboxString = z
  .string()
  .max(512)
  .regex(/^[^\r\n]*$/, NO_CRLF)
  .transform((value, ctx): Mailbox => {
    const parsed = parseMailbox(value);
    if (!parsed.ok) {
      ctx.addIssue({ code: 'custom', message: parsed.reason });
      return z.NEVER;
    }
    return parsed.mailbox;
  })
  .meta({ description: 'An address, "a@example.com" or "Name <a@example.com>".' });

const mailboxObject = z
  .strictObject({ name: displayedText(256).optional(), address: z.string().max(254) })
  .transform((value, ctx): Mailbox => {
    const parsed = parseMailbox(value.address);
    if (!parsed.ok || parsed.mailbox.name !== undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['address'],
        message: parsed.ok ? 'must be a bare address (put the display name in "name")' : parsed.reason,
      });
      return z.NEVER;
    }
    return value.name ? { name: value.name, address: parsed.mailbox.address } : parsed.mailbox;
  });

const mailbox = z.union([mailboxString, mailboxObject]).meta({ id: 'Mailbox' });
const mailboxList = z
  .union([mailbox.transform((one) => [one]), z.array(mailbox).max(1000)])
  .meta({ description: 'One address or a list of addresses.' });

/** Standard base64 (line breaks allowed, as MIME encoders emit them). */
const base64Content = z
  .string()
  .regex(/^[A-Za-z0-9+/=\s]*$/, 'must be standard base64 (A-Z a-z 0-9 + /, padded with =)')
  .transform((value, ctx) => {
    const compact = value.replace(WHITESPACE, '');
    if (compact.length === 0 || compact.length % 4 !== 0 || !BASE64_PATTERN.test(compact)) {
      ctx.addIssue({
        code: 'custom',
        message: 'must be standard base64 (A-Z a-z 0-9 + /, padded with =); empty content is not allowed',
      });
      return z.NEVER;
    }
    return compact;
  })
  .meta({ description: 'File content, standard base64.', contentEncoding: 'base64' });

/** An object in the relay's attachment bucket: how files too big for an SQS message travel. */
const s3Reference = z
  .strictObject({
    bucket: z.string().regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, 'must be an S3 bucket name'),
    key: z.string().min(1).max(1024),
  })
  .meta({
    description:
      "An object in the relay's attachment bucket (the AttachmentBucketName stack output); the relay reads it when sending.",
  });

const attachmentSchema = z
  .strictObject({
    filename: displayedText(255)
      .min(1)
      .refine((value) => !/[/\\]/.test(value), 'must be a file name, not a path'),
    contentType: z
      .string()
      .regex(/^[\w.+-]+\/[\w.+-]+$/, 'must be a MIME type such as "application/pdf"')
      .default('application/octet-stream'),
    content: base64Content.optional(),
    s3: s3Reference.optional(),
    contentId: z
      .string()
      .regex(/^[\x21-\x3b\x3d\x3f-\x7e]{1,250}$/, 'must be printable ASCII without spaces or angle brackets')
      .optional()
      .meta({ description: 'Makes the attachment inline: reference it from html as src="cid:<contentId>".' }),
  })
  .superRefine((attachment, ctx) => {
    if ((attachment.content === undefined) === (attachment.s3 === undefined)) {
      ctx.addIssue({
        code: 'custom',
        path: ['content'],
        message:
          'set exactly one of content (base64, for files that fit in the SQS message) and s3 (a reference to the attachment bucket)',
      });
    }
  })
  .meta({ description: 'A file: its bytes inline as base64 (content) or an S3 reference (s3), not both.' });

const CUSTOM_HEADER_NAME = /^X-[A-Za-z0-9][A-Za-z0-9-]*$/;
const TAG_PART = /^[A-Za-z0-9_-]{1,256}$/;

const contractShape = {
  v: z
    .literal(MESSAGE_CONTRACT_VERSION, {
      error: (issue) =>
        issue.input === undefined
          ? `required: the contract version, ${MESSAGE_CONTRACT_VERSION}`
          : `must be ${MESSAGE_CONTRACT_VERSION}, the only contract version this relay understands`,
    })
    .meta({ description: 'Contract version. Always 1 for now.' }),
  from: mailbox.meta({
    description:
      'The sender. Must be allowed by a configured route (or covered by a provider when there are no routes).',
  }),
  to: mailboxList.optional(),
  cc: mailboxList.optional(),
  bcc: mailboxList.optional(),
  replyTo: mailboxList.optional(),
  subject: displayedText(998).min(1, 'must not be empty'),
  text: z.string().optional().meta({ description: 'Plain-text body. At least one of text and html.' }),
  html: z.string().optional().meta({ description: 'HTML body. At least one of text and html.' }),
  headers: z
    .record(
      z.string().regex(CUSTOM_HEADER_NAME, 'custom header names must start with "X-" (letters, digits, -)'),
      headerText(998),
    )
    .optional()
    .meta({ description: 'Custom headers. Only X- headers: the relay owns the standard ones.' }),
  attachments: z.array(attachmentSchema).max(100).optional(),
  tags: z
    .record(
      z.string().regex(TAG_PART, 'tag names must be 1-256 of A-Z a-z 0-9 _ -'),
      z.string().regex(TAG_PART, 'tag values must be 1-256 of A-Z a-z 0-9 _ -'),
    )
    .optional()
    .meta({ description: 'Labels carried to the provider (SES message tags) and to logs.' }),
  idempotencyKey: z
    .string()
    .regex(/^[\x21-\x7e]{1,128}$/, 'must be 1-128 printable ASCII characters without spaces')
    .optional()
    .meta({ description: "The producer's id for this message; repeats of one key are one logical message." }),
  route: z
    .string()
    .regex(/^[A-Za-z0-9_-]{1,64}$/, 'must be the name of a configured route (letters, digits, - and _)')
    .optional()
    .meta({
      description:
        'Asks for a configured route by name instead of the one the From address matches; refused unless that route allows the From.',
    }),
};

const contractObject = z.strictObject(contractShape);

/** A message the relay composes: from, recipients, subject, bodies and attachments as JSON fields. */
export type ComposedMessage = z.output<typeof contractObject>;

/** Where a raw message's MIME is: inline (base64) or in the relay's bucket. */
const mimeSource = z
  .strictObject({ content: base64Content.optional(), s3: s3Reference.optional() })
  .superRefine((source, ctx) => {
    if ((source.content === undefined) === (source.s3 === undefined)) {
      ctx.addIssue({
        code: 'custom',
        path: ['content'],
        message:
          'set exactly one of content (the MIME message, base64) and s3 (a reference to it in the attachment bucket)',
      });
    }
  })
  .meta({
    description:
      'The RFC 5322 message as the application wrote it: inline as base64 (content), or an object in the relay bucket (s3).',
  });

const rawShape = {
  v: contractShape.v,
  from: mailbox.meta({
    description:
      "The message's From. The relay checks that the MIME From header names the same address; routes and the sender policy use it.",
  }),
  recipients: z.array(mailbox).max(1000).meta({
    description:
      'The envelope: every address the message goes to (To, Cc and Bcc alike). Header To/Cc are shown as written; Bcc headers are never sent on.',
  }),
  mime: mimeSource,
  tags: contractShape.tags,
  idempotencyKey: contractShape.idempotencyKey,
  route: contractShape.route,
};

const rawObject = z.strictObject(rawShape);

/**
 * A message whose MIME the application wrote (an SMTP client, or a producer that builds its own MIME):
 * the relay keeps it as it came and owns only the envelope and a few headers (docs/smtp-ingress.md).
 */
export type RawMessage = z.output<typeof rawObject>;

export type RelayMessage = ComposedMessage | RawMessage;

export function isRawMessage<T extends object>(message: T): message is Extract<T, { mime: unknown }> {
  return 'mime' in message;
}

/** Every recipient of the message: to + cc + bcc, or a raw message's envelope. */
export function recipientsOf(
  message: { readonly recipients: readonly Mailbox[] } | Pick<ComposedMessage, 'to' | 'cc' | 'bcc'>,
): Mailbox[] {
  if ('recipients' in message) return [...message.recipients];
  return [...(message.to ?? []), ...(message.cc ?? []), ...(message.bcc ?? [])];
}

/**
 * Bytes the message carries once inline attachments (or inline MIME) are decoded: what the size limit
 * is about. S3 objects are counted when the relay fetches them (core/attachments.ts).
 */
export function decodedSizeOf(message: RelayMessage): number {
  if (isRawMessage(message)) {
    return message.mime.content ? base64DecodedLength(message.mime.content) : 0;
  }
  const bodies = Buffer.byteLength(message.text ?? '') + Buffer.byteLength(message.html ?? '');
  const attachments = (message.attachments ?? []).reduce(
    (total, attachment) => total + (attachment.content ? base64DecodedLength(attachment.content) : 0),
    0,
  );
  return bodies + attachments;
}

function base64DecodedLength(compactBase64: string): number {
  const padding = compactBase64.endsWith('==') ? 2 : compactBase64.endsWith('=') ? 1 : 0;
  return (compactBase64.length / 4) * 3 - padding;
}

/** The checks across fields both forms share: the recipient count and the decoded size. */
function withLimits<T extends z.ZodType>(schema: T, limits: MessageLimits, composed: boolean) {
  return (
    schema
      // Runs even when a field failed, so "no recipient" and "no body" are reported together with
      // field errors. The value may then be partly unparsed (a string where a list would be), so
      // it only counts entries.
      .superRefine(
        (value, ctx) => {
          const message = value as Record<string, unknown>;
          const recipients = composed
            ? entryCount(message.to) + entryCount(message.cc) + entryCount(message.bcc)
            : entryCount(message.recipients);
          const field = composed ? 'to' : 'recipients';
          if (recipients === 0) {
            ctx.addIssue({
              code: 'custom',
              path: [field],
              message: composed
                ? 'no recipient: set at least one of to, cc, bcc'
                : 'no recipient: list at least one',
            });
          } else if (recipients > limits.maxRecipients) {
            ctx.addIssue({
              code: 'custom',
              path: [field],
              message: `${recipients} recipients${composed ? ' in to + cc + bcc' : ''}; at most ${limits.maxRecipients} are allowed per message`,
            });
          }
          if (composed && message.text === undefined && message.html === undefined) {
            ctx.addIssue({ code: 'custom', path: ['text'], message: 'no body: set text, html or both' });
          }
        },
        { when: (payload) => typeof payload.value === 'object' && payload.value !== null },
      )
      // Needs decoded content, so only once every field is valid.
      .superRefine((value, ctx) => {
        const message = value as RelayMessage;
        const size = decodedSizeOf(message);
        if (size > limits.maxMessageBytes) {
          ctx.addIssue({
            code: 'custom',
            path: [isRawMessage(message) ? 'mime' : 'attachments'],
            message: isRawMessage(message)
              ? `the MIME message is ${size} bytes; the limit is ${limits.maxMessageBytes}`
              : `message is ${size} bytes once decoded (bodies + attachments); the limit is ${limits.maxMessageBytes}`,
          });
        }
      })
  );
}

/** The contract with the deployment's limits applied (recipient count and decoded size), both forms. */
export function createMessageSchema(limits: MessageLimits) {
  return {
    composed: withLimits(contractObject, limits, true),
    raw: withLimits(rawObject, limits, false),
  };
}

export type MessageSchema = ReturnType<typeof createMessageSchema>;

function entryCount(list: unknown): number {
  if (list === undefined || list === null) return 0;
  return Array.isArray(list) ? list.length : 1;
}

/** Schema with the default limits: what the CLI validates against. */
export const defaultMessageSchema = createMessageSchema({
  maxRecipients: DEFAULT_MAX_RECIPIENTS,
  maxMessageBytes: DEFAULT_MAX_MESSAGE_BYTES,
});

/** Both forms as one schema, for the committed JSON Schema (schema/message.schema.json). */
export const messageContractSchema = z.union([defaultMessageSchema.composed, defaultMessageSchema.raw]);

export type ParseResult = { ok: true; message: RelayMessage } | { ok: false; problems: string[] };

/**
 * Parses an SQS body: JSON first, then the contract (the raw form when it has a "mime" field).
 * Problems name the field and the reason.
 */
export function parseMessage(body: string, schema: MessageSchema): ParseResult {
  let json: unknown;
  try {
    json = JSON.parse(body);
  } catch {
    return { ok: false, problems: ['body: not valid JSON'] };
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    return { ok: false, problems: ['body: must be a JSON object'] };
  }
  const result = 'mime' in json ? schema.raw.safeParse(json) : schema.composed.safeParse(json);
  return result.success
    ? { ok: true, message: result.data as RelayMessage }
    : { ok: false, problems: describeIssues(result.error) };
}
