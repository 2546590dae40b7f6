import { identityCovers } from '../../core/address.ts';
import {
  attachmentBytes,
  type ComposedOutbound,
  isRawOutbound,
  type OutboundAttachment,
  type OutboundMessage,
  type RawOutbound,
} from '../../core/attachments.ts';
import { untilAborted } from '../../core/deadline.ts';
import { RelayFailure } from '../../core/failures.ts';
import {
  GRAPH_INLINE_ATTACHMENT_BYTES,
  GRAPH_MAX_CONCURRENT_REQUESTS_PER_MAILBOX,
  SQS_MAX_VISIBILITY_TIMEOUT_SECONDS,
} from '../../core/limits.ts';
import type {
  MailProvider,
  SendContext,
  SendReceipt,
  SentLookup,
  SentQuery,
} from '../../core/mail-provider.ts';
import { truncate } from '../../core/text.ts';
import {
  type HttpRequest,
  type HttpResponse,
  type HttpTransport,
  TransportError,
} from '../http-transport.ts';
import { renderRawMime } from '../mime.ts';
import { GRAPH_PROVIDER } from './credentials.ts';
import { GRAPH_FAILURES } from './failures.ts';
import { toFileAttachment, toGraphMessage } from './graph-message.ts';
import { MailboxLimiter } from './mailbox-limiter.ts';
import { composedFromMime } from './mime-conversion.ts';
import type { GraphSettings } from './settings.ts';
import type { TokenSource } from './token-source.ts';

/** Graph rejects requests much above 4 MB (JSON or base64 MIME); stay under it with room for headers. */
const MAX_REQUEST_BYTES = 4_000_000;
/** Upload session chunks: at most 4 MiB each; a multiple of 320 KiB, as Microsoft's samples use. */
export const UPLOAD_CHUNK_BYTES = 10 * 320 * 1024;

export interface GraphProviderOptions {
  readonly settings: Pick<
    GraphSettings,
    'senders' | 'graphEndpoint' | 'saveToSentItems' | 'sentItemsLookupSeconds'
  >;
  readonly tokens: TokenSource;
  readonly transport: HttpTransport;
  /** @default 4 (Exchange Online's limit per app per mailbox) */
  readonly maxConcurrentRequestsPerMailbox?: number;
  readonly now?: () => number;
}

/** One Graph request as the provider makes it. */
interface GraphCall {
  method: HttpRequest['method'];
  path?: string;
  url?: string;
  body?: string | Buffer;
  headers?: Record<string, string>;
  authenticated?: boolean;
  signal: AbortSignal;
  /** For the request that sends the message: the relay's hand-off, right before it is written. */
  handOff?: () => Promise<void>;
}

/**
 * Sends as a Microsoft 365 mailbox through Graph with application permissions (`Mail.Send`).
 * Small messages are one `sendMail`; above 3 MB of attachments, a draft gets its large attachments
 * through upload sessions and is then sent (up to Graph's 150 MB). A raw message goes as its MIME in
 * one `sendMail` while that fits in a request, else it is converted to the JSON form and takes the
 * draft path (mime-conversion.ts says what that loses). Every failure is classified;
 * nothing is retried here: a throttled mailbox is remembered until its Retry-After passes, and the
 * record is delayed by that much instead. Each message carries the relay's Message-ID, so after a
 * lost answer its sent copy can be looked up in the mailbox (`findSent`, Mail.ReadBasic.All).
 */
export class GraphProvider implements MailProvider {
  readonly name = GRAPH_PROVIDER;
  readonly lookupWindowSeconds: number;
  private readonly limiter: MailboxLimiter;
  private readonly throttledUntil = new Map<string, number>();
  private readonly now: () => number;

  constructor(private readonly options: GraphProviderOptions) {
    this.limiter = new MailboxLimiter(
      options.maxConcurrentRequestsPerMailbox ?? GRAPH_MAX_CONCURRENT_REQUESTS_PER_MAILBOX,
    );
    this.now = options.now ?? Date.now;
    // Only a copy saved to Sent Items can be found again.
    this.lookupWindowSeconds = options.settings.saveToSentItems
      ? (options.settings.sentItemsLookupSeconds ?? 0)
      : 0;
  }

  /** The access token, fetched (or taken from the cache) before the relay paces the send. */
  async prepare(signal: AbortSignal): Promise<void> {
    await untilAborted(this.options.tokens.getToken(), signal, () => deadlineFailure('the access token'));
  }

  canSendAs(address: string): boolean {
    return this.options.settings.senders.some((sender) => identityCovers(sender, address));
  }

  // EAI (non-ASCII local part) recipients pass: Exchange Online sends to them since 2018 (techcommunity.microsoft.com/t5/exchange-team-blog/eai-support-announcement/ba-p/607595).
  async send(message: OutboundMessage, context: SendContext): Promise<SendReceipt> {
    return isRawOutbound(message) ? this.sendMime(message, context) : this.sendComposed(message, context);
  }

  private async sendComposed(message: ComposedOutbound, context: SendContext): Promise<SendReceipt> {
    const mailbox = message.from.address.toLowerCase();
    const { signal, internetMessageId, handOff } = context;
    if (attachmentBytes(message) <= GRAPH_INLINE_ATTACHMENT_BYTES) {
      const body = JSON.stringify({
        message: toGraphMessage(message, message.attachments ?? [], internetMessageId),
        saveToSentItems: this.options.settings.saveToSentItems,
      });
      // Large bodies can push even a message with small attachments over the request cap.
      if (Buffer.byteLength(body) <= MAX_REQUEST_BYTES) {
        return this.receipt(
          await this.call(mailbox, { method: 'POST', path: 'sendMail', body, signal, handOff }),
        );
      }
    }
    return this.sendThroughDraft(mailbox, message, context);
  }

  /**
   * A raw message as it came: `sendMail` with the MIME, base64, as `text/plain`
   * (learn.microsoft.com/graph/api/user-sendmail, "Send a new message using MIME format";
   * learn.microsoft.com/graph/outlook-send-mime-message). Graph sends MIME to its header recipients,
   * so To/Cc say the envelope and a Bcc header lists the rest (Exchange removes it on sending). Graph
   * keeps the MIME's Message-ID, so the lost-answer lookup finds the sent copy by it. A MIME sendMail
   * has no saveToSentItems: the copy is always saved, whatever the settings say.
   */
  private async sendMime(message: RawOutbound, context: SendContext): Promise<SendReceipt> {
    const mailbox = message.from.address.toLowerCase();
    const { signal, internetMessageId, handOff } = context;
    const mime = await renderRawMime(message, { messageId: internetMessageId, recipients: 'headers' });
    const body = mime.toString('base64');
    if (body.length <= MAX_REQUEST_BYTES) {
      return this.receipt(
        await this.call(mailbox, {
          method: 'POST',
          path: 'sendMail',
          body,
          headers: { 'content-type': 'text/plain' },
          signal,
          handOff,
        }),
      );
    }
    // Too big for one request: Graph takes MIME only whole, so it goes as JSON, attachments apart.
    return this.sendThroughDraft(mailbox, await composedFromMime(mime, message), context);
  }

  /**
   * After a lost answer: does the mailbox hold a sent copy with this Message-ID? Looks in every folder
   * (a message still in the Outbox has been accepted too); a draft with it was never sent.
   */
  async findSent(query: SentQuery, signal: AbortSignal): Promise<SentLookup> {
    const mailbox = query.from.toLowerCase();
    const escaped = query.internetMessageId.replaceAll("'", "''");
    const parameters = Object.entries({
      $filter: `internetMessageId eq '${escaped}'`,
      $select: 'id,internetMessageId,isDraft',
      $top: '10',
    })
      .map(([name, value]) => `${name}=${encodeURIComponent(value)}`)
      .join('&');
    try {
      const response = await this.call(mailbox, { method: 'GET', path: `messages?${parameters}`, signal });
      const found = (parseJson(response.body) as { value?: { isDraft?: unknown }[] }).value ?? [];
      // The Message-ID names the sent message (the request id of the lost answer is unknown).
      return found.some((item) => item.isDraft === false)
        ? { found: true, providerMessageId: query.internetMessageId }
        : { found: false };
    } catch (error) {
      return { unavailable: error instanceof RelayFailure ? error : networkFailure(error) };
    }
  }

  /** learn.microsoft.com/graph/outlook-large-attachments: draft, attachments, send. */
  private async sendThroughDraft(
    mailbox: string,
    message: ComposedOutbound,
    { signal, internetMessageId, handOff }: SendContext,
  ): Promise<SendReceipt> {
    const draft = await this.call(mailbox, {
      method: 'POST',
      path: 'messages',
      body: JSON.stringify(toGraphMessage(message, [], internetMessageId)),
      signal,
    });
    const draftId = (parseJson(draft.body) as { id?: unknown }).id;
    if (typeof draftId !== 'string') {
      throw this.fault(draft, 'the draft Graph created has no id');
    }
    const messagePath = `messages/${encodeURIComponent(draftId)}`;
    try {
      for (const attachment of message.attachments ?? []) {
        const inline =
          attachment.content.length < GRAPH_INLINE_ATTACHMENT_BYTES
            ? JSON.stringify(toFileAttachment(attachment))
            : undefined;
        if (inline !== undefined && Buffer.byteLength(inline) <= MAX_REQUEST_BYTES) {
          await this.call(mailbox, {
            method: 'POST',
            path: `${messagePath}/attachments`,
            body: inline,
            signal,
          });
        } else {
          await this.upload(mailbox, messagePath, attachment, signal);
        }
      }
      const sent = await this.call(mailbox, { method: 'POST', path: `${messagePath}/send`, signal, handOff });
      return this.receipt(sent);
    } catch (error) {
      // The draft may have been sent (its id now names the sent copy): leave it for the lookup.
      if (error instanceof RelayFailure && error.maybeSent) throw error;
      // A half-built draft would sit in the mailbox's Drafts folder; the retry builds a new one. Not
      // bound to the invocation's deadline, which may be what ended the send.
      await this.call(mailbox, {
        method: 'DELETE',
        path: messagePath,
        signal: AbortSignal.timeout(5_000),
      }).catch(() => undefined);
      throw error;
    }
  }

  private async upload(
    mailbox: string,
    messagePath: string,
    attachment: OutboundAttachment,
    signal: AbortSignal,
  ): Promise<void> {
    const session = await this.call(mailbox, {
      method: 'POST',
      path: `${messagePath}/attachments/createUploadSession`,
      body: JSON.stringify({
        AttachmentItem: {
          attachmentType: 'file',
          name: attachment.filename,
          size: attachment.content.length,
          contentType: attachment.contentType,
          isInline: attachment.contentId !== undefined,
          ...(attachment.contentId !== undefined && { contentId: attachment.contentId }),
        },
      }),
      signal,
    });
    const uploadUrl = (parseJson(session.body) as { uploadUrl?: unknown }).uploadUrl;
    if (typeof uploadUrl !== 'string') throw this.fault(session, 'the upload session has no uploadUrl');
    const total = attachment.content.length;
    for (let start = 0; start < total; start += UPLOAD_CHUNK_BYTES) {
      const chunk = attachment.content.subarray(start, Math.min(start + UPLOAD_CHUNK_BYTES, total));
      // The upload URL is pre-authenticated: Graph refuses an Authorization header on it.
      await this.call(mailbox, {
        method: 'PUT',
        url: uploadUrl,
        body: chunk,
        headers: {
          'content-type': 'application/octet-stream',
          'content-range': `bytes ${start}-${start + chunk.length - 1}/${total}`,
        },
        authenticated: false,
        signal,
      });
    }
  }

  /** One Graph request for a mailbox: throttle memory, concurrency limit, token, classification. */
  private async call(mailbox: string, request: GraphCall): Promise<HttpResponse> {
    this.refuseWhileThrottled(mailbox);
    const { signal } = request;
    const authenticated = request.authenticated ?? true;
    const token = authenticated
      ? await untilAborted(this.options.tokens.getToken(), signal, () => deadlineFailure('the access token'))
      : undefined;
    const url =
      request.url ??
      `${this.options.settings.graphEndpoint}/v1.0/users/${encodeURIComponent(mailbox)}/${request.path ?? ''}`;
    const response = await this.limiter.run(
      mailbox,
      signal,
      async () => {
        // Checked again: a request that waited for a permit may find the mailbox throttled meanwhile.
        this.refuseWhileThrottled(mailbox);
        try {
          return await this.options.transport({
            method: request.method,
            url,
            headers: {
              ...(token !== undefined && { authorization: `Bearer ${token}` }),
              ...(typeof request.body === 'string' && { 'content-type': 'application/json' }),
              ...request.headers,
            },
            ...(request.body !== undefined && { body: request.body }),
            signal,
            ...(request.handOff && { beforeWrite: request.handOff }),
          });
        } catch (error) {
          // Only the request that sends can leave a message sent behind a lost answer.
          throw networkFailure(error, request.handOff !== undefined);
        }
      },
      () => deadlineFailure('a free Graph connection for this mailbox'),
    );
    if (response.status >= 200 && response.status < 300) return response;
    const failure = this.fault(response);
    if (failure.retryAfterSeconds !== undefined) {
      this.throttledUntil.set(mailbox, this.now() + failure.retryAfterSeconds * 1000);
    }
    throw failure;
  }

  private refuseWhileThrottled(mailbox: string): void {
    const until = this.throttledUntil.get(mailbox);
    if (until === undefined) return;
    const remainingMs = until - this.now();
    if (remainingMs <= 0) {
      this.throttledUntil.delete(mailbox);
      return;
    }
    const retryAfterSeconds = Math.ceil(remainingMs / 1000);
    throw GRAPH_FAILURES.classify({
      provider: GRAPH_PROVIDER,
      code: 'TooManyRequests',
      message: `Graph asked to wait before calling this mailbox again; not calling it for another ${retryAfterSeconds} s`,
      status: 429,
      retryAfterSeconds,
    });
  }

  private fault(response: HttpResponse, problem?: string): RelayFailure {
    return graphFault(response, this.now(), problem);
  }

  private receipt(response: HttpResponse): SendReceipt {
    // sendMail answers 202 with no body: the request id is the handle Microsoft can trace.
    return { provider: this.name, providerMessageId: response.headers['request-id'] };
  }
}

/** A Graph error response as the relay's failure: Graph's code and message, and its request id. */
export function graphFault(response: HttpResponse, now: number, problem?: string): RelayFailure {
  const error = (parseJson(response.body) as { error?: { code?: unknown; message?: unknown } }).error;
  const code = typeof error?.code === 'string' ? error.code : `HTTP${response.status}`;
  const text = problem ?? (typeof error?.message === 'string' ? error.message : `HTTP ${response.status}`);
  const requestId = response.headers['request-id'];
  const retryAfterSeconds = parseRetryAfter(response.headers['retry-after'], now);
  return GRAPH_FAILURES.classify({
    provider: GRAPH_PROVIDER,
    code,
    // Graph's message and request id (what Microsoft support asks for); never the request body.
    message: `${truncate(text, 400)}${requestId ? ` (request-id ${requestId})` : ''}`,
    status: response.status,
    ...(retryAfterSeconds !== undefined && { retryAfterSeconds }),
  });
}

/**
 * A failure below HTTP (refused, reset, timed out, out of time): transient unless the table says
 * otherwise. When `sending` and the request was written in full, the answer was lost: maybe sent.
 */
export function networkFailure(error: unknown, sending = false): RelayFailure {
  // The relay's own refusal to hand off (the ledger said no) passes through as it is.
  if (error instanceof RelayFailure) return error;
  const code = error instanceof TransportError ? error.code : 'UnexpectedError';
  const message = error instanceof Error ? error.message : String(error);
  const maybeSent = sending && error instanceof TransportError && error.requestWritten;
  return GRAPH_FAILURES.classify(
    {
      provider: GRAPH_PROVIDER,
      code,
      message: `Graph request failed: ${truncate(message, 300)}`,
      fallbackClass: 'transient',
      ...(maybeSent && { maybeSent: true }),
    },
    error,
  );
}

/** Out of the invocation's time before the request was written: nothing was sent. */
function deadlineFailure(waitingFor: string): RelayFailure {
  return GRAPH_FAILURES.classify({
    provider: GRAPH_PROVIDER,
    code: 'DeadlineExceeded',
    message: `the invocation ran out of time while waiting for ${waitingFor}; nothing was sent`,
    fallbackClass: 'transient',
  });
}

/** Retry-After is seconds or an HTTP date (RFC 9110); capped at what an SQS delay can express. */
export function parseRetryAfter(value: string | undefined, now: number): number | undefined {
  if (value === undefined || value.trim() === '') return undefined;
  const seconds = /^\d+$/.test(value.trim()) ? Number(value.trim()) : (Date.parse(value) - now) / 1000;
  if (!Number.isFinite(seconds)) return undefined;
  return Math.min(Math.max(Math.ceil(seconds), 1), SQS_MAX_VISIBILITY_TIMEOUT_SECONDS);
}

function parseJson(body: Buffer): unknown {
  if (body.length === 0) return {};
  try {
    const value: unknown = JSON.parse(body.toString('utf8'));
    return typeof value === 'object' && value !== null ? value : {};
  } catch {
    return {};
  }
}
