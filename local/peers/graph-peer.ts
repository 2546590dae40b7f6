import {
  constants,
  createHash,
  type KeyObject,
  randomBytes,
  randomUUID,
  sign,
  verify as verifySignature,
  X509Certificate,
} from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer, type Server } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { type AddressObject, simpleParser } from 'mailparser';
import { createServerCertificate } from './certificates.ts';

/**
 * A local HTTPS peer that plays Entra ID's token endpoint and the part of Microsoft Graph the relay
 * uses to send mail (sendMail as JSON or MIME; draft + attachments + upload sessions + send; delete) and to look
 * messages up afterwards (by internetMessageId, in the whole mailbox or in Sent Items; a mail folder by
 * name, which is how `mail-relay doctor` checks a mailbox). Its tokens are JWTs whose roles it enforces
 * (see `GraphPeerClient`), with an optional Application Access Policy per app. It checks
 * what the real services check (credentials, client assertions, tokens, message shape, upload
 * ranges), answers in their error formats, records everything, and can be told to fail: with an
 * error answer instead of the real one, or by losing the answer of a request it did process (the
 * case a "never twice, never lost" client has to survive: it cannot tell whether the mail went).
 * Quiet: it never writes to the console.
 *
 * Mailbox model: each mailbox has an Inbox (filled by `deliverToInbox`), Drafts (POST /messages,
 * until sent or deleted) and Sent Items (a copy of each message sent with saveToSentItems true;
 * sending a draft always saves it). Every message has an internetMessageId: the client's, when it
 * set one when creating the message (an Inbox message: its Message-ID header), else one the peer
 * assigns (`<uuid@graph-peer.mail-relay.local>`).
 *
 * MIME sendMail (`Content-Type: text/plain`, the message base64 in the body, as
 * learn.microsoft.com/graph/api/user-sendmail describes): the recipients are the To, Cc and Bcc
 * headers, the Message-ID header is the internetMessageId (one the peer assigns when it has none) and
 * the message is always saved to Sent Items (the MIME form has no saveToSentItems). The peer records
 * the MIME as it received it, Bcc header included (Exchange strips that header when it sends).
 *
 * Lost answers (`GraphLostAnswerFault`): the peer does everything the request asks (delivers,
 * stores, issues the token), records it with status 0 and `answerWithheld`, then holds the answer
 * until the client gives up ('hang'), resets the connection ('reset'), or writes it only after
 * `answerAfterMs`, which a client with a shorter timeout never reads.
 *
 * Limits (`GraphMailboxLimits`, each off unless set; `setLimits` changes them at runtime): the peer
 * can enforce Graph's per-mailbox concurrency and Exchange Online's message and recipient rates on
 * send requests, answering 429 with Retry-After, and reports what each mailbox's sends met
 * (`pacingStats`, `pacingReport`, GET /mail-relay/pacing) for pacing to be proven against.
 *
 * Known differences from the real services: upload-session responses are camelCase with "n-"
 * ranges (Outlook answers PascalCase); the 3 MB minimum for upload sessions and send-as checks
 * between From and the mailbox are not modelled (ErrorSendAsDenied only as an injected fault);
 * every client-assertion failure is AADSTS700027; drafts are address-checked when created.
 * Message lookups (GET /users/{id}/messages and .../mailFolders/sentitems/messages) accept only
 * `$filter=internetMessageId eq '<value>'` (exact, case-sensitive match), `$select`, `$top` and
 * `$skip`; they refuse `$orderby` and any other filter with 400, and list newest first. Sent Items
 * copies appear at once (Exchange takes a moment); a sent draft gets a new id in Sent Items (as in
 * Exchange, where moving an item changes its id); folder ids are opaque strings (see
 * `mailFolderId`), drafts have sentDateTime null; only Inbox messages can be read as MIME ($value)
 * and only drafts deleted. The wording of ErrorInvalidInternetMessageId is the peer's own. MIME bodies:
 * line breaks in the base64 are accepted (.NET's decoder skips white space); the MIME itself is not
 * checked beyond its recipients (no From/send-as check, no size limit other than the request's).
 */

/**
 * An app registration. Its access tokens are JWTs (v1.0 claims: aud, iss, tid, appid, roles, iat,
 * nbf, exp; signed with the peer's TLS key) and Graph enforces what they carry, as Graph does:
 * - a send (sendMail, and sending a draft) needs the Mail.Send role;
 * - writing a draft (create it, add attachments, open an upload session, delete it) needs
 *   Mail.ReadWrite, as Graph's create-message and attachment APIs do;
 * - a mailbox read (message lists and lookups, a mail folder) needs Mail.Read, Mail.ReadWrite,
 *   Mail.ReadBasic or Mail.ReadBasic.All; a message's MIME ($value) Mail.Read or Mail.ReadWrite.
 * Refusals are 403 ErrorAccessDenied "Access is denied. Check credentials and try again.".
 */
export interface GraphPeerClient {
  clientId: string;
  clientSecret?: string;
  /** PEM of the certificate uploaded to the app registration */
  certificatePem?: string;
  /**
   * The application permissions granted with admin consent: the token's `roles` claim (absent from
   * the token when empty, as Entra ID leaves it out). default ['Mail.Send', 'Mail.ReadWrite', 'Mail.ReadBasic.All', 'Mail.Read']
   */
  roles?: string[];
  /**
   * The mailboxes an Exchange Online Application Access Policy lets the app reach (lowercase
   * compare). Any Graph request on another mailbox is refused with 403 ErrorAccessDenied, in
   * Exchange's wording for an access policy. Absent: every mailbox.
   */
  mailboxScope?: string[];
}

/**
 * Provider limits the peer enforces per mailbox, as Microsoft does, so that a client's pacing can be
 * proven against them. Each one is off when absent. They govern send requests only: POST
 * /users/{id}/sendMail (JSON or MIME) and POST /users/{id}/messages/{id}/send, the requests that make a
 * mailbox send a message. A refused send is answered 429 with Retry-After and the Graph error body; it
 * is neither delivered nor counted as accepted (a refused draft send leaves the draft in place).
 */
export interface GraphMailboxLimits {
  /**
   * Graph's MailboxConcurrency limit (4 concurrent requests per app per mailbox; the peer does not
   * tell apps apart). A send request arriving while this many admitted sends for the mailbox are in
   * progress is refused with 429 MailboxConcurrency and Retry-After: 1. A send is in progress from its
   * arrival until its answer is written, latencyMs and holdAnswer included (a withheld answer: until
   * the exchange ends).
   */
  concurrentRequestsPerMailbox?: number;
  /**
   * Exchange Online's message rate limit (30 messages per minute per mailbox; benches scale the
   * window down), over a sliding window: a send is refused with 429 ApplicationThrottled when `count`
   * sends for the mailbox were accepted in the last `windowMs`. Retry-After: the seconds (rounded up,
   * at least 1) until the accepted send whose leaving makes room is `windowMs` old.
   */
  messagesPerMailbox?: { count: number; windowMs: number };
  /**
   * Exchange Online's recipient rate limit (10,000 recipients per day), over a sliding day of
   * `dayMs`: a send whose To + Cc + Bcc would take the recipients of the mailbox's accepted sends in
   * the last day beyond this is refused with 429 ErrorExceededMessageLimit (Exchange sends a
   * non-delivery report instead). Retry-After: the seconds (rounded up, at least 1) until enough
   * counted recipients are a day old for the message to fit (one recipient: until the oldest is); a
   * message with more recipients than the limit never fits and is told to retry when the day empties.
   */
  recipientsPerMailboxPerDay?: number;
  /** The length of the recipient limit's "day", so tests can scale it down. default 86_400_000 */
  dayMs?: number;
}

/** The Graph error codes of the limits' 429 answers. */
export type GraphThrottleCode = 'MailboxConcurrency' | 'ApplicationThrottled' | 'ErrorExceededMessageLimit';

/** A send the limits let through (and the peer delivered). */
export interface GraphAcceptedSend {
  /** Epoch ms, as DeliveredMessage.at */
  readonly at: number;
  /** To + Cc + Bcc */
  readonly recipients: number;
}

/** A send request the limits refused with 429. */
export interface GraphThrottledSend {
  readonly at: number;
  readonly code: GraphThrottleCode;
  /** The Retry-After header of the answer. */
  readonly retryAfterSeconds: number;
  /**
   * For the rate limits, exactly how long until the refused send would fit, which Retry-After rounds
   * up to whole seconds (a bench with a scaled window needs the difference). Absent for
   * MailboxConcurrency: that depends on when other requests end.
   */
  readonly retryAfterMs?: number;
}

/** What a mailbox's send requests met, for a test or bench to assert its pacing on. */
export interface GraphMailboxPacingStats {
  /** Oldest first. */
  readonly acceptedSends: readonly GraphAcceptedSend[];
  /** Admitted send requests in progress now. */
  readonly sendsInProgress: number;
  /** Most admitted send requests ever in progress at once (refused ones never count). */
  readonly peakSendsInProgress: number;
  /** Most send requests ever open at once, refused ones included (each from arrival until its answer is written). */
  readonly peakSendRequestsOpen: number;
  /** The limits' 429 answers by code (every code present, 0 when none). Injected faults are not counted. */
  readonly throttledByCode: Readonly<Record<GraphThrottleCode, number>>;
  /** The limits' 429 answers, oldest first. */
  readonly throttled: readonly GraphThrottledSend[];
}

/** The limits in force and every mailbox's pacing statistics (also served at GET /mail-relay/pacing). */
export interface GraphPacingReport {
  readonly limits: GraphMailboxLimits;
  /** By mailbox, lowercase; only mailboxes that received send requests. */
  readonly mailboxes: Readonly<Record<string, GraphMailboxPacingStats>>;
}

/** The limits (see `GraphMailboxLimits`) are off unless given; `setLimits` changes them later. */
export interface GraphPeerOptions extends GraphMailboxLimits {
  /** default 0 (free port), host always 127.0.0.1 */
  port?: number;
  tenantId: string;
  clients: GraphPeerClient[];
  /** Known mailboxes (lowercase compare). Absent = every address is a mailbox. Others -> 404 ErrorInvalidUser. */
  mailboxes?: string[];
  /** Delay before each Graph (not token) response is written, to make concurrency observable. default 0 */
  latencyMs?: number;
  /**
   * Awaited before each Graph (not token) response is written, after latencyMs: a test holds answers
   * until a condition holds (e.g. that many requests are in flight) instead of hoping a delay suffices.
   */
  holdAnswer?: () => Promise<void>;
  /** default 3599 */
  tokenLifetimeSeconds?: number;
  /** Max request body accepted by Graph JSON endpoints; bigger -> 413. default 4 * 1024 * 1024 (Graph's ~4 MB). */
  maxRequestBytes?: number;
  /** Consulted for each token and Graph request no queued fault matches (see `GraphFaultPlan`). */
  faultPlan?: GraphFaultPlan;
}

export type GraphOperation =
  | 'token'
  | 'sendMail'
  | 'createDraft'
  | 'addAttachment'
  | 'createUploadSession'
  | 'uploadChunk'
  | 'sendDraft'
  | 'deleteMessage'
  | 'listMessages'
  | 'getMessageContent'
  /** GET /users/{id}/messages and GET /users/{id}/mailFolders/sentitems/messages */
  | 'findMessages'
  /** GET /users/{id}/mailFolders/{inbox | drafts | sentitems | folder id} */
  | 'getMailFolder';

/** Which requests a queued fault applies to, and how many times. */
export interface GraphFaultScope {
  /** absent = any Graph (non-token) operation */
  operation?: GraphOperation;
  /** absent = any mailbox */
  mailbox?: string;
  /** default 1; Infinity allowed */
  times?: number;
}

/** An error answer instead of the real one: the request is not processed. */
export interface GraphErrorFault extends GraphFaultScope {
  status: number;
  /** Graph error code (e.g. ErrorInvalidRecipients) or OAuth error (invalid_client) */
  code: string;
  /** default: a realistic message (for OAuth errors, with the matching AADSTS code) */
  message?: string;
  /** sets the Retry-After header */
  retryAfterSeconds?: number;
  lostAnswer?: never;
}

/**
 * 'hang': the answer is never written; the connection stays open until the client closes it.
 * 'reset': the connection is destroyed without an answer.
 */
export type LostAnswerMode = 'hang' | 'reset';

/**
 * A lost answer: the request is processed completely (a sendMail is delivered and recorded as
 * usual), then the client does not get the answer.
 */
export interface GraphLostAnswerFault extends GraphFaultScope {
  lostAnswer: LostAnswerMode;
  /**
   * Withhold the answer this long only: then 'hang' writes the normal answer (a late answer, which
   * a client with a shorter timeout never reads) and 'reset' destroys the connection. Absent: 'hang'
   * never answers, 'reset' resets at once.
   */
  answerAfterMs?: number;
  status?: never;
  code?: never;
}

export type GraphFault = GraphErrorFault | GraphLostAnswerFault;

export interface GraphFaultPlanRequest {
  readonly operation: GraphOperation;
  /** absent for token requests */
  readonly mailbox?: string;
}

/**
 * Decides, per request, whether to fail it (randomised soak tests). Consulted only when no queued
 * fault matches; the operation, mailbox and times of the fault it returns are ignored.
 */
export type GraphFaultPlan = (request: GraphFaultPlanRequest) => GraphFault | undefined;

/** What became of an answer a lost-answer fault withheld. */
export interface WithheldAnswer {
  readonly mode: LostAnswerMode;
  readonly answerAfterMs?: number;
  /** The status the peer would have answered: the request was processed as usual. */
  readonly status: number;
  /**
   * 'pending': still withheld; 'clientClosed': the connection closed first (the client gave up, or
   * the peer was closed); 'reset': the peer destroyed the connection; 'answeredLate': written after
   * answerAfterMs.
   */
  outcome: 'pending' | 'clientClosed' | 'reset' | 'answeredLate';
}

export interface RecordedRequest {
  operation: GraphOperation | 'discovery' | 'unknown';
  method: string;
  path: string;
  mailbox?: string;
  /** 0 when a lost-answer fault withheld the answer (see `answerWithheld`) */
  status: number;
  startedAt: number;
  /** When the answer was written; for a withheld answer, when the exchange ended. */
  endedAt: number;
  /** Graph's client correlation header (client-request-id), when the client sent it. */
  clientRequestId?: string;
  /** Set when a lost-answer fault applied. */
  answerWithheld?: WithheldAnswer;
}

export interface TokenRequest {
  clientId: string;
  credential: 'secret' | 'certificate';
  scope: string;
  granted: boolean;
  at: number;
}

export interface DeliveredAttachment {
  name: string;
  contentType: string;
  contentId?: string;
  isInline: boolean;
  bytes: Buffer;
  via: 'inline' | 'attachment' | 'uploadSession';
}

export interface DeliveredMessage {
  mailbox: string;
  /** 'mime': a sendMail with a MIME body (see `mime`) */
  via: 'sendMail' | 'draft' | 'mime';
  saveToSentItems: boolean;
  at: number;
  /**
   * The Graph message JSON as received (attachments removed from it; see `attachments`). For a MIME
   * send, a summary in the same shape: subject, from, toRecipients, ccRecipients, bccRecipients.
   */
  message: Record<string, unknown>;
  /** Empty for a MIME send: its attachments are in `mime`. */
  attachments: DeliveredAttachment[];
  /** The client's message.internetMessageId (MIME: its Message-ID header), or the one the peer assigned. */
  internetMessageId: string;
  /** A MIME send's message as decoded from the request body, byte for byte. */
  mime?: Buffer;
}

/** A message in a mailbox's Inbox, as Graph lists it and returns its MIME ($value). */
export interface InboxMessage {
  readonly id: string;
  readonly mailbox: string;
  /** ISO 8601 with second precision, as Graph reports receivedDateTime. */
  readonly receivedDateTime: string;
  readonly subject: string;
  readonly from: string;
  readonly mime: Buffer;
  /** From its Message-ID header, else assigned by the peer. */
  readonly internetMessageId: string;
  /** From its Date header (second precision), else receivedDateTime. */
  readonly sentDateTime: string;
}

/** The well-known folders the peer models. */
export type MailFolderName = 'inbox' | 'drafts' | 'sentitems';

export interface GraphPeer {
  /** https://127.0.0.1:<port> */
  readonly url: string;
  /** == url (token endpoint at `${url}/${tenantId}/oauth2/v2.0/token`) */
  readonly authorityHost: string;
  /** == url (Graph at `${url}/v1.0/...`) */
  readonly graphEndpoint: string;
  readonly tokenEndpoint: string;
  /** PEM of the server certificate (self-signed), for clients to trust */
  readonly caCertificate: string;
  readonly requests: readonly RecordedRequest[];
  readonly tokenRequests: readonly TokenRequest[];
  readonly delivered: readonly DeliveredMessage[];
  /** Highest number of simultaneously in-flight requests ever observed for this mailbox (all operations incl. upload chunks). */
  maxConcurrency(mailbox: string): number;
  /** The limits in force (a copy). */
  readonly limits: GraphMailboxLimits;
  /**
   * Replaces every limit (absent ones are off; `{}` turns them all off). Sends accepted before still
   * count in the windows; sends in progress still count against the concurrency limit.
   */
  setLimits(limits: GraphMailboxLimits): void;
  /** The mailbox's pacing statistics (a snapshot; zeros for a mailbox that received no send). */
  pacingStats(mailbox: string): GraphMailboxPacingStats;
  /** The limits and every mailbox's pacing statistics: what GET /mail-relay/pacing serves. */
  pacingReport(): GraphPacingReport;
  /** Drafts created and neither sent nor deleted (to check the client cleans up after failures). */
  openDrafts(mailbox?: string): number;
  injectFault(fault: GraphFault): void;
  /** Removes queued faults (not the fault plan). */
  clearFaults(): void;
  /** Replaces the fault plan (undefined: none). reset() and clearFaults() leave it in place. */
  setFaultPlan(plan: GraphFaultPlan | undefined): void;
  /** The opaque id Graph reports as parentFolderId for this mailbox's folder. */
  mailFolderId(mailbox: string, folder: MailFolderName): string;
  /**
   * Puts a message (raw MIME) in the mailbox's Inbox, as if it had just arrived (a bounce report
   * from Exchange Online, say). Returns its Graph id.
   */
  deliverToInbox(mailbox: string, mime: string | Buffer, receivedAt?: Date): string;
  /**
   * Clears records, drafts, Sent Items, Inbox, queued faults and pacing statistics, which empties the
   * rate windows (not clients, the fault plan or the limits; sends in progress keep counting).
   */
  reset(): void;
  close(): Promise<void>;
  /** The client an access token was issued to, when this peer's token endpoint issued it and it has not expired. */
  isIssuedToken(token: string): { clientId: string } | undefined;
}

const HOST = '127.0.0.1';
const DEFAULT_TOKEN_LIFETIME_SECONDS = 3599;
const DEFAULT_MAX_REQUEST_BYTES = 4 * 1024 * 1024;
/** Upload session chunks: Outlook takes at most 4 MiB per PUT. */
const MAX_CHUNK_BYTES = 4 * 1024 * 1024;
/** Graph's limit for one attachment through an upload session. */
const MAX_UPLOAD_SESSION_BYTES = 150 * 1024 * 1024;
/** Token requests are small forms; a client assertion with an x5c chain is a few KB. */
const MAX_TOKEN_REQUEST_BYTES = 1024 * 1024;
const UPLOAD_SESSION_LIFETIME_MS = 15 * 60 * 1000;
/** Entra ID's tolerance for clock skew in client assertions. */
const CLOCK_SKEW_SECONDS = 60;
const JWT_BEARER = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
const JSON_TYPE = 'application/json';
/** Right-hand side of the msg-ids the peer assigns (Exchange uses its server's name). */
const ASSIGNED_MESSAGE_ID_DOMAIN = 'graph-peer.mail-relay.local';
/** Fields a message lookup can $select, as Graph names them. */
const FOUND_MESSAGE_FIELDS: ReadonlySet<string> = new Set([
  'id',
  'internetMessageId',
  'isDraft',
  'parentFolderId',
  'receivedDateTime',
  'sentDateTime',
  'subject',
]);

/** The requests that make a mailbox send a message: the ones the limits govern. */
const SEND_OPERATIONS: ReadonlySet<string> = new Set<GraphOperation>(['sendMail', 'sendDraft']);
const DAY_MS = 86_400_000;
/** What a MailboxConcurrency refusal tells the client to wait: a slot frees when any request ends. */
const CONCURRENCY_RETRY_AFTER_SECONDS = 1;

const GRAPH_OPERATIONS: ReadonlySet<string> = new Set<GraphOperation>([
  'sendMail',
  'createDraft',
  'addAttachment',
  'createUploadSession',
  'uploadChunk',
  'sendDraft',
  'deleteMessage',
  'listMessages',
  'getMessageContent',
  'findMessages',
  'getMailFolder',
]);

const DEFAULT_ROLES = ['Mail.Send', 'Mail.ReadWrite', 'Mail.ReadBasic.All', 'Mail.Read'];
const SEND_ROLES = ['Mail.Send'];
const DRAFT_ROLES = ['Mail.ReadWrite'];
const READ_ROLES = ['Mail.Read', 'Mail.ReadWrite', 'Mail.ReadBasic', 'Mail.ReadBasic.All'];
const CONTENT_ROLES = ['Mail.Read', 'Mail.ReadWrite'];

/** The roles one of which a Graph operation needs (uploadChunk: none, its URL is pre-authenticated). */
const ROLES_FOR: Readonly<Record<Exclude<GraphOperation, 'token' | 'uploadChunk'>, readonly string[]>> = {
  sendMail: SEND_ROLES,
  createDraft: DRAFT_ROLES,
  addAttachment: DRAFT_ROLES,
  createUploadSession: DRAFT_ROLES,
  sendDraft: SEND_ROLES,
  deleteMessage: DRAFT_ROLES,
  listMessages: READ_ROLES,
  findMessages: READ_ROLES,
  getMailFolder: READ_ROLES,
  getMessageContent: CONTENT_ROLES,
};

/** Exchange Online's answer for a mailbox an Application Access Policy keeps the app from. */
const ACCESS_POLICY_MESSAGE =
  'Access to OData is disabled: [RAOP] : Blocked by tenant configured AppOnly AccessPolicy settings.';

/** The well-known folders GET /mailFolders/{name} answers, with Exchange's display names. */
const FOLDER_NAMES: Readonly<Record<MailFolderName, string>> = {
  inbox: 'Inbox',
  drafts: 'Drafts',
  sentitems: 'Sent Items',
};

// ---------------------------------------------------------------------------------------------
// Errors, in the two formats: Graph's `{error: {code, message, innerError}}` and OAuth's
// `{error, error_description, error_codes, ...}`.

class GraphError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    /** sets the Retry-After header */
    readonly retryAfterSeconds?: number,
  ) {
    super(message);
  }
}

class OAuthError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    /** "AADSTSn: text" */
    readonly description: string,
  ) {
    super(description);
  }
}

const GRAPH_MESSAGES: Record<string, string> = {
  ApplicationThrottled: 'Application is over its MailboxConcurrency limit.',
  MailboxConcurrency: 'Application is over its MailboxConcurrency limit.',
  TooManyRequests: 'Too many requests. Please retry after the time given in the Retry-After header.',
  ServiceUnavailable: 'Service unavailable. Please try again later.',
  GatewayTimeout: 'Gateway timeout.',
  ErrorServerBusy: 'The server cannot service this request right now. Try again later.',
  ErrorTimeoutExpired: 'The operation timed out. Try again later.',
  InternalServerError: 'An internal server error occurred. The operation failed.',
  ErrorInvalidRecipients:
    "At least one recipient is not valid., Recipient '' is not resolved. All recipients must be resolved before a message can be submitted.",
  ErrorSendAsDenied:
    'The user account which was used to submit this request does not have the right to send mail on behalf of the specified sending account., Cannot submit message.',
  ErrorAccessDenied: 'Access is denied. Check credentials and try again.',
  AccessDenied:
    'Either the signed-in user does not have sufficient privileges, or you need to use a different account.',
  Authorization_RequestDenied: 'Insufficient privileges to complete the operation.',
  MailboxNotEnabledForRESTAPI: 'The mailbox is either inactive, soft-deleted, or is hosted on-premise.',
  ErrorQuotaExceeded: 'The mailbox has exceeded its quota.',
  ErrorInvalidUser: "The requested user '' is invalid.",
  ErrorItemNotFound: 'The specified object was not found in the store.',
  ErrorMessageSizeExceeded: 'The message exceeds the maximum supported size.',
  ErrorRequestEntityTooLarge: 'The request payload is too large.',
  RequestEntityTooLarge: 'The request payload is too large.',
  ErrorAttachmentSizeLimitExceeded: 'The attachment size exceeds the limit of 150 MB.',
  ErrorMimeContentInvalidBase64String: 'Invalid base64 string for MIME content.',
  InvalidInternetMessageHeader: "The internet message header name should start with 'x-' or 'X-'.",
  InvalidAuthenticationToken: 'Access token has expired or is not yet valid.',
  ErrorInvalidRequest: 'The request is invalid.',
  BadRequest: 'The request is malformed or incorrect.',
};

function defaultGraphMessage(code: string, status: number): string {
  return GRAPH_MESSAGES[code] ?? `The request failed with ${code} (HTTP ${status}).`;
}

/** Default descriptions for OAuth error codes, in Entra ID's "AADSTSn: text" form. */
function defaultOAuthDescription(code: string, status: number, clientId: string, tenantId: string): string {
  switch (code) {
    case 'invalid_client':
      return `AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '${clientId}'.`;
    case 'unauthorized_client':
      return `AADSTS700016: Application with identifier '${clientId}' was not found in the directory '${tenantId}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant.`;
    case 'invalid_scope':
      return 'AADSTS1002012: The provided value for scope is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).';
    case 'invalid_request':
      return 'AADSTS9002313: Invalid request. Request is malformed or invalid.';
    case 'unsupported_grant_type':
      return 'AADSTS70003: The app requested an unsupported grant type.';
    default:
      if (status === 429 || status >= 500 || code === 'temporarily_unavailable' || code === 'server_error') {
        return 'AADSTS50000: There was an error issuing a token or an issue with our sign-in service.';
      }
      return `The token request failed with ${code} (HTTP ${status}).`;
  }
}

// ---------------------------------------------------------------------------------------------
// Internal state

interface RegisteredClient {
  readonly clientId: string;
  readonly clientSecret?: string;
  readonly roles: readonly string[];
  /** Lowercase; absent: every mailbox. */
  readonly mailboxScope?: ReadonlySet<string>;
  readonly certificate?: {
    readonly sha256: Buffer;
    readonly sha1: Buffer;
    readonly publicKey: KeyObject;
    readonly validToMs: number;
  };
}

interface Draft {
  readonly id: string;
  readonly mailbox: string;
  readonly message: Record<string, unknown>;
  readonly attachments: DeliveredAttachment[];
  readonly internetMessageId: string;
  /** ISO 8601, second precision */
  readonly createdDateTime: string;
}

/** A copy kept in a mailbox's Sent Items. */
interface SentItem {
  readonly id: string;
  readonly subject: string;
  readonly internetMessageId: string;
  /** ISO 8601, second precision */
  readonly sentDateTime: string;
}

interface UploadSession {
  readonly id: string;
  readonly mailbox: string;
  readonly draftId: string;
  readonly authToken: string;
  readonly name: string;
  readonly contentType: string;
  readonly contentId?: string;
  readonly isInline: boolean;
  readonly size: number;
  readonly expiresAt: number;
  readonly chunks: Buffer[];
  next: number;
}

/** A mailbox's send accounting: the limits' windows and its pacing statistics. */
interface MailboxPacing {
  /** Every accepted send, oldest first: the rate windows are its tail. */
  readonly accepted: GraphAcceptedSend[];
  /** recipientsBefore[i] = recipients of accepted[0..i): a window's recipients in one subtraction. */
  readonly recipientsBefore: number[];
  sendsInProgress: number;
  sendRequestsOpen: number;
  peakSendsInProgress: number;
  peakSendRequestsOpen: number;
  readonly throttled: GraphThrottledSend[];
}

/** A send request's place in its mailbox's concurrency count, from arrival until its answer is written. */
interface SendSlot {
  /** false: refused by the concurrency limit at arrival (it still counts as open) */
  readonly admitted: boolean;
  /** Idempotent. */
  release(): void;
}

/** What the peer remembers of an access token it issued (the JWT carries the same). */
interface IssuedToken {
  readonly clientId: string;
  readonly expiresAt: number;
  readonly roles: readonly string[];
}

interface QueuedFault {
  readonly fault: GraphFault;
  remaining: number;
}

interface Reply {
  status: number;
  headers: Record<string, string>;
  body?: string | Buffer;
}

interface Route {
  operation: RecordedRequest['operation'];
  mailbox?: string;
  tenant?: string;
  messageId?: string;
  sessionId?: string;
  /** findMessages in one folder; absent = the whole mailbox */
  folder?: 'sentitems';
  /** getMailFolder: the well-known name or folder id, as requested */
  mailFolder?: string;
  /** For discovery and peer-inspection GETs. */
  resource?: 'openid-configuration' | 'instance-discovery' | 'keys' | 'delivered' | 'pacing' | 'me';
}

export async function startGraphPeer(options: GraphPeerOptions): Promise<GraphPeer> {
  const tenantId = options.tenantId;
  const latencyMs = options.latencyMs ?? 0;
  const tokenLifetimeSeconds = options.tokenLifetimeSeconds ?? DEFAULT_TOKEN_LIFETIME_SECONDS;
  const maxRequestBytes = options.maxRequestBytes ?? DEFAULT_MAX_REQUEST_BYTES;
  // Checked first: a limit the peer could not honour fails the start before anything listens.
  let limits = checkedLimits(options);
  const mailboxes = options.mailboxes
    ? new Set(options.mailboxes.map((mailbox) => mailbox.toLowerCase()))
    : undefined;
  const clients = new Map<string, RegisteredClient>(
    options.clients.map((client) => [client.clientId.toLowerCase(), register(client)]),
  );

  const serverCertificate = await createServerCertificate();

  const requests: RecordedRequest[] = [];
  const tokenRequests: TokenRequest[] = [];
  const delivered: DeliveredMessage[] = [];
  const tokens = new Map<string, IssuedToken>();
  const drafts = new Map<string, Draft>();
  const inboxes = new Map<string, InboxMessage[]>();
  const sentItems = new Map<string, SentItem[]>();
  let faultPlan = options.faultPlan;
  const sessions = new Map<string, UploadSession>();
  let faults: QueuedFault[] = [];
  const inFlight = new Map<string, number>();
  const maxInFlight = new Map<string, number>();
  const sockets = new Set<Socket>();
  const pacing = new Map<string, MailboxPacing>();

  // Filled in once listening; the handler only runs after that.
  let url = '';
  let tokenEndpoint = '';

  const server: Server = createServer(
    { key: serverCertificate.privateKeyPem, cert: serverCertificate.certificatePem },
    (req, res) => {
      // Never an unhandled rejection in the host process (tests, local mode): drop the exchange instead.
      handle(req, res).catch(() => res.destroy());
    },
  );
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  // Clients that give up mid-handshake or send garbage: drop them silently.
  server.on('tlsClientError', (_error, socket) => socket.destroy());
  server.on('clientError', (_error, socket) => socket.destroy());

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, HOST, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  url = `https://${HOST}:${port}`;
  tokenEndpoint = `${url}/${tenantId}/oauth2/v2.0/token`;

  // -------------------------------------------------------------------------------------------
  // Request handling

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const startedAt = Date.now();
    const method = req.method ?? 'GET';
    const target = new URL(req.url ?? '/', url);
    const route = routeOf(method, target.pathname);
    const isGraph = GRAPH_OPERATIONS.has(route.operation);
    const mailbox = route.mailbox;

    // In flight from arrival (before the body is read) until the response is handed over.
    let release = () => {};
    if (isGraph && mailbox !== undefined) {
      const current = (inFlight.get(mailbox) ?? 0) + 1;
      inFlight.set(mailbox, current);
      maxInFlight.set(mailbox, Math.max(maxInFlight.get(mailbox) ?? 0, current));
      let released = false;
      release = () => {
        if (released) return;
        released = true;
        inFlight.set(mailbox, (inFlight.get(mailbox) ?? 1) - 1);
      };
      res.once('close', release);
    }
    // Send requests meet the concurrency limit on arrival: Graph counts a request from then.
    const sendSlot =
      SEND_OPERATIONS.has(route.operation) && mailbox !== undefined ? openSendSlot(mailbox) : undefined;
    if (sendSlot) {
      res.once('close', sendSlot.release);
      const releaseRequest = release;
      release = () => {
        releaseRequest();
        sendSlot.release();
      };
    }

    const limit =
      route.operation === 'token'
        ? MAX_TOKEN_REQUEST_BYTES
        : route.operation === 'uploadChunk'
          ? MAX_CHUNK_BYTES
          : maxRequestBytes;
    let body: ReadBody;
    try {
      body = await readBody(req, limit);
    } catch {
      // The client went away while sending.
      release();
      res.destroy();
      return;
    }

    const clientRequestId = header(req, 'client-request-id');
    let reply: Reply;
    let lostAnswer: GraphLostAnswerFault | undefined;
    if (sendSlot?.admitted === false) {
      // Refused before anything else, so no queued fault is used up on it.
      reply = graphErrorReply(
        req,
        429,
        'MailboxConcurrency',
        defaultGraphMessage('MailboxConcurrency', 429),
        CONCURRENCY_RETRY_AFTER_SECONDS,
      );
    } else {
      try {
        const fault = faultFor(route);
        // A lost answer lets the request be processed as usual; an error fault replaces the processing.
        if (fault?.lostAnswer !== undefined) lostAnswer = fault;
        reply = await respond(req, target, route, body, fault?.lostAnswer === undefined ? fault : undefined);
      } catch (error) {
        reply =
          error instanceof GraphError
            ? graphErrorReply(req, error.status, error.code, error.message, error.retryAfterSeconds)
            : graphErrorReply(req, 500, 'InternalServerError', `graph peer: ${String(error)}`);
      }
    }

    const record: RecordedRequest = {
      operation: route.operation,
      method,
      path: target.pathname,
      ...(mailbox !== undefined && { mailbox }),
      status: reply.status,
      startedAt,
      endedAt: Date.now(),
      ...(clientRequestId !== undefined && { clientRequestId }),
    };
    if (lostAnswer) {
      withholdAnswer(res, record, reply, lostAnswer, release);
      return;
    }

    if (isGraph && latencyMs > 0) await sleep(latencyMs);
    if (isGraph && options.holdAnswer) await options.holdAnswer();
    if (res.destroyed) {
      release();
      return;
    }

    record.endedAt = Date.now();
    // Recorded and released before the response leaves, so a client that has it sees both.
    if (route.resource !== 'delivered' && route.resource !== 'pacing') requests.push(record);
    release();
    res.once('finish', () => {
      record.endedAt = Date.now();
    });
    res.writeHead(reply.status, reply.headers).end(reply.body);
  }

  /**
   * The request was processed; the client does not get the answer (or gets it only late). It is
   * recorded at once with status 0, so a test can see the effect while the client still waits.
   */
  function withholdAnswer(
    res: ServerResponse,
    record: RecordedRequest,
    reply: Reply,
    fault: GraphLostAnswerFault,
    release: () => void,
  ): void {
    const withheld: WithheldAnswer = {
      mode: fault.lostAnswer,
      ...(fault.answerAfterMs !== undefined && { answerAfterMs: fault.answerAfterMs }),
      status: reply.status,
      outcome: 'pending',
    };
    record.status = 0;
    record.answerWithheld = withheld;
    requests.push(record);
    const settle = (outcome: WithheldAnswer['outcome']) => {
      if (withheld.outcome !== 'pending') return;
      withheld.outcome = outcome;
      record.endedAt = Date.now();
      release();
    };
    const resetConnection = () => {
      settle('reset');
      res.destroy();
    };
    // The in-flight count keeps the request until the exchange ends, as a server still holding it would.
    res.once('close', () => settle('clientClosed'));
    if (res.destroyed) {
      settle('clientClosed');
      return;
    }
    if (fault.answerAfterMs === undefined) {
      if (fault.lostAnswer === 'reset') resetConnection();
      return;
    }
    const timer = setTimeout(() => {
      if (res.destroyed) return;
      if (fault.lostAnswer === 'reset') {
        resetConnection();
        return;
      }
      settle('answeredLate');
      res.writeHead(reply.status, reply.headers).end(reply.body);
    }, fault.answerAfterMs);
    // A client that gives up first (or close()) must not leave a timer behind.
    res.once('close', () => clearTimeout(timer));
  }

  function respond(
    req: IncomingMessage,
    target: URL,
    route: Route,
    body: ReadBody,
    fault: GraphErrorFault | undefined,
  ): Reply | Promise<Reply> {
    switch (route.operation) {
      case 'token':
        return tokenRequest(req, route, body, fault);
      case 'discovery':
        return discovery(req, route);
      case 'unknown':
        return unknown(req, target, route);
      default:
        return graphRequest(req, target, route, body, fault);
    }
  }

  /** The fault for a token or Graph request: the first matching queued fault, else the plan's. */
  function faultFor(route: Route): GraphFault | undefined {
    if (route.operation !== 'token' && !GRAPH_OPERATIONS.has(route.operation)) return undefined;
    const operation = route.operation as GraphOperation;
    const fault =
      takeFault(operation, route.mailbox) ??
      faultPlan?.({ operation, ...(route.mailbox !== undefined && { mailbox: route.mailbox }) });
    if (fault?.lostAnswer !== undefined) checkLostAnswer(fault);
    return fault;
  }

  function takeFault(operation: GraphOperation, mailbox: string | undefined): GraphFault | undefined {
    const index = faults.findIndex(
      ({ fault, remaining }) =>
        remaining > 0 &&
        (fault.operation === undefined ? operation !== 'token' : fault.operation === operation) &&
        (fault.mailbox === undefined || fault.mailbox.toLowerCase() === mailbox),
    );
    const queued = faults[index];
    if (!queued) return undefined;
    queued.remaining -= 1;
    if (queued.remaining <= 0) faults.splice(index, 1);
    return queued.fault;
  }

  // -------------------------------------------------------------------------------------------
  // Entra ID

  function tokenRequest(
    req: IncomingMessage,
    route: Route,
    body: ReadBody,
    fault: GraphErrorFault | undefined,
  ): Reply {
    const form = new URLSearchParams(body.truncated ? '' : body.bytes.toString('utf8'));
    const assertion = form.get('client_assertion') ?? undefined;
    const secret = form.get('client_secret') ?? undefined;
    const scope = form.get('scope') ?? '';
    const clientId = form.get('client_id') ?? (assertion ? (jwtClaim(assertion, 'iss') ?? '') : '');
    const tokenRecord: TokenRequest = {
      clientId,
      credential: assertion !== undefined && secret === undefined ? 'certificate' : 'secret',
      scope,
      granted: false,
      at: Date.now(),
    };
    tokenRequests.push(tokenRecord);

    if (fault) {
      const description =
        fault.message ?? defaultOAuthDescription(fault.code, fault.status, clientId, tenantId);
      return oauthErrorReply(req, fault.status, fault.code, description, fault.retryAfterSeconds);
    }
    try {
      const accessToken = issueToken(req, route, form, clientId, scope, secret, assertion);
      tokenRecord.granted = true;
      return json(
        200,
        {
          token_type: 'Bearer',
          expires_in: tokenLifetimeSeconds,
          ext_expires_in: tokenLifetimeSeconds,
          access_token: accessToken,
        },
        { ...entraHeaders(req), 'cache-control': 'no-store, no-cache', pragma: 'no-cache' },
      );
    } catch (error) {
      if (error instanceof OAuthError)
        return oauthErrorReply(req, error.status, error.code, error.description);
      throw error;
    }
  }

  function issueToken(
    req: IncomingMessage,
    route: Route,
    form: URLSearchParams,
    clientId: string,
    scope: string,
    secret: string | undefined,
    assertion: string | undefined,
  ): string {
    if (!sameTenant(route.tenant)) throw tenantNotFound(route.tenant ?? '');
    if (req.method !== 'POST') {
      throw new OAuthError(
        400,
        'invalid_request',
        'AADSTS900561: The endpoint only accepts POST requests. Received a GET request.',
      );
    }
    const grantType = form.get('grant_type');
    if (!grantType) throw missingParameter('grant_type');
    if (grantType !== 'client_credentials') {
      throw new OAuthError(
        400,
        'unsupported_grant_type',
        `AADSTS70003: The app requested an unsupported grant type '${grantType}'. This peer implements client_credentials only.`,
      );
    }
    if (!clientId) throw missingParameter('client_id');
    const client = clients.get(clientId.toLowerCase());
    if (!client)
      throw new OAuthError(
        400,
        'unauthorized_client',
        defaultOAuthDescription('unauthorized_client', 400, clientId, tenantId),
      );

    if (secret !== undefined && assertion !== undefined) {
      throw new OAuthError(
        400,
        'invalid_request',
        'AADSTS9002313: Invalid request. Request is malformed or invalid. Send either client_secret or client_assertion, not both.',
      );
    }
    if (secret !== undefined) {
      if (client.clientSecret === undefined || secret !== client.clientSecret) {
        throw new OAuthError(
          401,
          'invalid_client',
          defaultOAuthDescription('invalid_client', 401, clientId, tenantId),
        );
      }
    } else if (assertion !== undefined) {
      const problem = assertionProblem(form.get('client_assertion_type'), assertion, client);
      if (problem) throw new OAuthError(401, 'invalid_client', `AADSTS700027: ${problem}`);
    } else {
      throw new OAuthError(
        401,
        'invalid_client',
        "AADSTS7000218: The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
      );
    }

    if (!scope) throw missingParameter('scope');
    const scopes = scope.split(/\s+/).filter(Boolean);
    const wanted = `${url}/.default`;
    if (!scopes.includes(wanted)) {
      const defaultScope = scopes.find((value) => value.endsWith('/.default'));
      if (defaultScope) {
        throw new OAuthError(
          400,
          'invalid_resource',
          `AADSTS500011: The resource principal named ${defaultScope.slice(0, -'/.default'.length)} was not found in the tenant named ${tenantId}. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You might have sent your authentication request to the wrong tenant.`,
        );
      }
      throw new OAuthError(
        400,
        'invalid_scope',
        `AADSTS1002012: The provided value for scope ${scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).`,
      );
    }

    const issued: IssuedToken = {
      clientId: client.clientId,
      expiresAt: Date.now() + tokenLifetimeSeconds * 1000,
      roles: client.roles,
    };
    const accessToken = accessTokenJwt(issued, secret !== undefined ? 'secret' : 'certificate');
    tokens.set(accessToken, issued);
    return accessToken;
  }

  /**
   * An app-only access token shaped as Entra ID issues them for Graph (v1.0 claims), so a client can
   * read its roles as it would a real one. Graph here still recognises it by the token map.
   */
  function accessTokenJwt(issued: IssuedToken, credential: 'secret' | 'certificate'): string {
    const issuedAt = Math.floor(Date.now() / 1000);
    const encode = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
    const header = encode({ typ: 'JWT', alg: 'RS256', kid: 'graph-peer' });
    const payload = encode({
      // The resource of the one scope the peer grants (`${url}/.default`).
      aud: url,
      iss: `https://sts.windows.net/${tenantId}/`,
      iat: issuedAt,
      nbf: issuedAt,
      exp: issuedAt + tokenLifetimeSeconds,
      appid: issued.clientId,
      appidacr: credential === 'secret' ? '1' : '2',
      idtyp: 'app',
      ...(issued.roles.length > 0 && { roles: issued.roles }),
      tid: tenantId,
      // Unique per token, as Entra ID's token identifier is.
      uti: randomBytes(16).toString('base64url'),
      ver: '1.0',
    });
    const signature = sign('sha256', Buffer.from(`${header}.${payload}`), serverCertificate.privateKeyPem);
    return `${header}.${payload}.${signature.toString('base64url')}`;
  }

  /** RFC 7523 client assertion, checked as Entra ID does; returns what is wrong, or undefined. */
  function assertionProblem(
    type: string | null,
    assertion: string,
    client: RegisteredClient,
  ): string | undefined {
    if (type !== JWT_BEARER) {
      return `Client assertion type '${type ?? ''}' is not supported; expected '${JWT_BEARER}'.`;
    }
    const parts = assertion.split('.');
    const [encodedHeader, encodedPayload, encodedSignature] = parts;
    if (parts.length !== 3 || !encodedHeader || !encodedPayload || !encodedSignature) {
      return 'Client assertion is not a well-formed JWT (expected three base64url parts).';
    }
    const header = decodeJwtPart(encodedHeader);
    const payload = decodeJwtPart(encodedPayload);
    if (!header || !payload) {
      return 'Client assertion is not a well-formed JWT (header or payload is not JSON).';
    }

    const alg = header.alg;
    if (alg !== 'PS256' && alg !== 'RS256') {
      return `Client assertion uses the algorithm '${String(alg)}'; PS256 or RS256 is required.`;
    }
    const x5tS256 = typeof header['x5t#S256'] === 'string' ? header['x5t#S256'] : undefined;
    const x5t = typeof header.x5t === 'string' ? header.x5t : undefined;
    if (x5tS256 === undefined && x5t === undefined) {
      return "Client assertion has no 'x5t#S256' or 'x5t' header identifying the signing certificate.";
    }
    const presented = Buffer.from(x5tS256 ?? x5t ?? '', 'base64url');
    const certificate = client.certificate;
    const registered = certificate && (x5tS256 !== undefined ? certificate.sha256 : certificate.sha1);
    if (!certificate || !registered || !presented.equals(registered)) {
      return `The certificate with identifier used to sign the client assertion is not registered on application. [Reason - The key was not found., Thumbprint of key used by client: '${presented.toString('hex').toUpperCase()}', Please visit the Azure Portal, Graph Explorer or directly use MS Graph to see configured keys for app Id '${client.clientId}'.]`;
    }
    if (certificate.validToMs < Date.now()) {
      return `The certificate used to sign the client assertion has expired. [Reason - The key used is expired., Thumbprint of key used by client: '${presented.toString('hex').toUpperCase()}']`;
    }

    let signatureValid = false;
    try {
      signatureValid = verifySignature(
        'sha256',
        Buffer.from(`${encodedHeader}.${encodedPayload}`),
        alg === 'PS256'
          ? { key: certificate.publicKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 }
          : { key: certificate.publicKey, padding: constants.RSA_PKCS1_PADDING },
        Buffer.from(encodedSignature, 'base64url'),
      );
    } catch {
      signatureValid = false;
    }
    if (!signatureValid) return 'Client assertion failed signature validation.';

    const audiences = Array.isArray(payload.aud) ? payload.aud : [payload.aud];
    if (!audiences.includes(tokenEndpoint)) {
      return `Client assertion audience claim does not match the token endpoint. [aud: '${audiences.map(String).join("', '")}', expected: '${tokenEndpoint}']`;
    }
    if (payload.iss !== client.clientId || payload.sub !== client.clientId) {
      return `Client assertion 'iss' and 'sub' claims must both be the client id '${client.clientId}'.`;
    }
    const now = Date.now() / 1000;
    if (typeof payload.exp !== 'number') return "Client assertion has no 'exp' claim.";
    if (payload.exp + CLOCK_SKEW_SECONDS < now) {
      return `Client assertion is not within its valid time range: it expired at ${new Date(payload.exp * 1000).toISOString()}.`;
    }
    if (payload.nbf !== undefined) {
      if (typeof payload.nbf !== 'number') return "Client assertion 'nbf' claim is not a number.";
      if (payload.nbf - CLOCK_SKEW_SECONDS > now) {
        return `Client assertion is not within its valid time range: it is not valid before ${new Date(payload.nbf * 1000).toISOString()}.`;
      }
    }
    if (typeof payload.jti !== 'string' || payload.jti === '') return "Client assertion has no 'jti' claim.";
    return undefined;
  }

  function sameTenant(tenant: string | undefined): boolean {
    return tenant !== undefined && tenant.toLowerCase() === tenantId.toLowerCase();
  }

  function tenantNotFound(tenant: string): OAuthError {
    return new OAuthError(
      400,
      'invalid_request',
      `AADSTS90002: Tenant '${tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant.`,
    );
  }

  function oauthErrorReply(
    req: IncomingMessage,
    status: number,
    code: string,
    description: string,
    retryAfterSeconds?: number,
  ): Reply {
    const traceId = randomUUID();
    const correlationId = header(req, 'client-request-id') ?? randomUUID();
    const timestamp = entraTimestamp(new Date());
    const aadsts = /AADSTS(\d+)/.exec(description)?.[1];
    return json(
      status,
      {
        error: code,
        // Entra ID appends trace lines; the first line says what is wrong.
        error_description: `${description}\r\nTrace ID: ${traceId}\r\nCorrelation ID: ${correlationId}\r\nTimestamp: ${timestamp}`,
        error_codes: aadsts ? [Number(aadsts)] : [],
        timestamp,
        trace_id: traceId,
        correlation_id: correlationId,
        ...(aadsts && { error_uri: `${url}/error?code=${aadsts}` }),
      },
      {
        ...entraHeaders(req),
        'cache-control': 'no-store, no-cache',
        pragma: 'no-cache',
        ...(retryAfterSeconds !== undefined && { 'retry-after': String(retryAfterSeconds) }),
      },
    );
  }

  function discovery(req: IncomingMessage, route: Route): Reply {
    const headers = entraHeaders(req);
    if (route.resource === 'instance-discovery') {
      const host = new URL(url).host;
      return json(
        200,
        {
          tenant_discovery_endpoint: `${url}/${tenantId}/v2.0/.well-known/openid-configuration`,
          'api-version': '1.1',
          metadata: [{ preferred_network: host, preferred_cache: host, aliases: [host] }],
        },
        headers,
      );
    }
    if (!sameTenant(route.tenant)) {
      const error = tenantNotFound(route.tenant ?? '');
      return oauthErrorReply(req, error.status, error.code, error.description);
    }
    if (route.resource === 'keys') return json(200, { keys: [] }, headers);
    const authority = `${url}/${tenantId}`;
    return json(
      200,
      {
        token_endpoint: tokenEndpoint,
        token_endpoint_auth_methods_supported: [
          'client_secret_post',
          'private_key_jwt',
          'client_secret_basic',
        ],
        jwks_uri: `${authority}/discovery/v2.0/keys`,
        response_modes_supported: ['query', 'fragment', 'form_post'],
        subject_types_supported: ['pairwise'],
        id_token_signing_alg_values_supported: ['RS256'],
        response_types_supported: ['code', 'id_token', 'code id_token', 'id_token token'],
        scopes_supported: ['openid', 'profile', 'email', 'offline_access'],
        issuer: `${authority}/v2.0`,
        request_uri_parameter_supported: false,
        userinfo_endpoint: `${url}/oidc/userinfo`,
        authorization_endpoint: `${authority}/oauth2/v2.0/authorize`,
        device_authorization_endpoint: `${authority}/oauth2/v2.0/devicecode`,
        http_logout_supported: true,
        frontchannel_logout_supported: true,
        end_session_endpoint: `${authority}/oauth2/v2.0/logout`,
        claims_supported: ['sub', 'iss', 'aud', 'exp', 'iat', 'nbf', 'tid', 'oid'],
        tenant_region_scope: 'EU',
        cloud_instance_name: 'localhost',
        cloud_graph_host_name: new URL(url).host,
        msgraph_host: new URL(url).host,
      },
      headers,
    );
  }

  function unknown(req: IncomingMessage, target: URL, route: Route): Reply {
    if (route.resource === 'pacing') return json(200, pacingReport());
    if (route.resource === 'delivered') {
      return json(
        200,
        delivered.map(({ attachments, mime, ...message }) => ({
          ...message,
          ...(mime && { mimeSize: mime.length }),
          attachments: attachments.map(({ bytes, ...attachment }) => ({ ...attachment, size: bytes.length })),
        })),
      );
    }
    if (route.resource === 'me') {
      return graphErrorReply(
        req,
        400,
        'BadRequest',
        '/me request is only valid with delegated authentication flow.',
      );
    }
    const segment = target.pathname.split('/').filter(Boolean).at(-1) ?? '';
    return graphErrorReply(
      req,
      404,
      'UnknownRequest',
      `Resource not found for the segment '${decodeSafe(segment) ?? segment}'.`,
    );
  }

  // -------------------------------------------------------------------------------------------
  // Graph

  function graphRequest(
    req: IncomingMessage,
    target: URL,
    route: Route,
    body: ReadBody,
    fault: GraphErrorFault | undefined,
  ): Reply | Promise<Reply> {
    const operation = route.operation as GraphOperation;
    const mailbox = route.mailbox ?? '';
    if (fault) {
      return graphErrorReply(
        req,
        fault.status,
        fault.code,
        fault.message ?? faultMessage(fault, mailbox),
        fault.retryAfterSeconds,
      );
    }
    if (operation === 'uploadChunk') return uploadChunk(req, target, route, body);

    if (body.truncated) {
      throw new GraphError(
        413,
        'ErrorRequestEntityTooLarge',
        `The request payload of ${body.size} bytes exceeds the maximum of ${maxRequestBytes} bytes.`,
      );
    }
    const issued = authenticate(req);
    requireRole(operation, issued);
    if (mailboxes && !mailboxes.has(mailbox)) {
      throw new GraphError(
        404,
        'ErrorInvalidUser',
        `The requested user '${route.mailbox ?? ''}' is invalid.`,
      );
    }
    requireInScope(issued, mailbox);
    switch (operation) {
      case 'sendMail':
        return isMimeBody(req) ? sendMimeMail(req, mailbox, body) : sendMail(req, mailbox, body);
      case 'createDraft':
        return createDraft(req, mailbox, body);
      case 'addAttachment':
        return addAttachment(req, mailbox, route.messageId ?? '', body);
      case 'createUploadSession':
        return createUploadSession(req, mailbox, route.messageId ?? '', body);
      case 'sendDraft':
        return sendDraft(req, mailbox, route.messageId ?? '');
      case 'deleteMessage':
        return deleteMessage(req, mailbox, route.messageId ?? '');
      case 'listMessages':
        return listMessages(req, target, mailbox);
      case 'getMessageContent':
        return messageContent(req, mailbox, route.messageId ?? '');
      case 'findMessages':
        return findMessages(req, target, mailbox, route.folder);
      case 'getMailFolder':
        return mailFolder(req, target, mailbox, route.mailFolder ?? '');
      default:
        throw new GraphError(500, 'InternalServerError', `graph peer: no handler for ${operation}`);
    }
  }

  /**
   * GET /users/{id}/mailFolders/inbox/messages with the query options a poller uses: $filter on
   * receivedDateTime (ge/gt, optionally `and` a le/lt bound), $orderby receivedDateTime asc|desc
   * (Graph's default is desc), $top (default 10, at most 1000), $skip (what @odata.nextLink carries)
   * and $select. Anything else in $filter is refused, as Graph refuses what it cannot parse.
   */
  function listMessages(req: IncomingMessage, target: URL, mailbox: string): Reply {
    let messages = [...(inboxes.get(mailbox) ?? [])];
    const filter = target.searchParams.get('$filter');
    if (filter !== null) {
      const clauses = filter.split(/\s+and\s+/i);
      for (const clause of clauses) {
        const match = /^receivedDateTime\s+(ge|gt|le|lt)\s+(\S+)$/i.exec(clause.trim());
        const bound = match ? Date.parse(match[2] ?? '') : Number.NaN;
        if (!match || Number.isNaN(bound)) {
          throw new GraphError(400, 'BadRequest', 'Invalid filter clause');
        }
        const operator = (match[1] ?? '').toLowerCase();
        messages = messages.filter((message) => {
          const at = Date.parse(message.receivedDateTime);
          return operator === 'ge'
            ? at >= bound
            : operator === 'gt'
              ? at > bound
              : operator === 'le'
                ? at <= bound
                : at < bound;
        });
      }
    }
    const orderBy = (target.searchParams.get('$orderby') ?? 'receivedDateTime desc').trim();
    const order = /^receivedDateTime(\s+(asc|desc))?$/i.exec(orderBy);
    if (!order) throw new GraphError(400, 'BadRequest', `Invalid $orderby: ${orderBy}`);
    const descending = (order[2] ?? 'asc').toLowerCase() === 'desc';
    messages.sort((a, b) => {
      const difference = Date.parse(a.receivedDateTime) - Date.parse(b.receivedDateTime);
      return descending ? -difference : difference;
    });
    const paging = pagingOf(target);
    const select = selectOf(target);
    const page = messages.slice(paging.skip, paging.skip + paging.top).map((message) =>
      selected(
        {
          id: message.id,
          receivedDateTime: message.receivedDateTime,
          subject: message.subject,
          from: { emailAddress: { address: message.from, name: message.from } },
          isRead: false,
          internetMessageId: message.internetMessageId,
        },
        select,
      ),
    );
    return listingReply(
      req,
      target,
      `users('${mailbox}')/mailFolders('inbox')/messages`,
      page,
      paging,
      messages.length,
    );
  }

  /**
   * GET /users/{id}/messages (every folder) and GET /users/{id}/mailFolders/sentitems/messages,
   * with what a client needs to find out whether a message it may have sent exists:
   * $filter=internetMessageId eq '<msg-id>' (an OData string literal, '' for a quote), $select,
   * $top and $skip (shared with the Inbox listing). Newest first; $orderby is refused.
   */
  function findMessages(req: IncomingMessage, target: URL, mailbox: string, folder: Route['folder']): Reply {
    const filter = target.searchParams.get('$filter');
    const wanted = filter === null ? undefined : internetMessageIdFilter(filter);
    if (target.searchParams.has('$orderby')) {
      throw new GraphError(400, 'BadRequest', 'This peer does not sort message lookups ($orderby).');
    }
    const select = selectOf(target);
    for (const field of select ?? []) {
      if (!FOUND_MESSAGE_FIELDS.has(field)) {
        throw new GraphError(
          400,
          'RequestBroker--ParseUri',
          `Could not find a property named '${field}' on type 'microsoft.graph.message'.`,
        );
      }
    }
    const paging = pagingOf(target);
    const matches = storedMessages(mailbox, folder).filter(
      (message) => wanted === undefined || message.internetMessageId === wanted,
    );
    const page = matches
      .slice(paging.skip, paging.skip + paging.top)
      .map((message) => selected(message, select));
    const source = folder === undefined ? 'messages' : `mailFolders('${folder}')/messages`;
    return listingReply(req, target, `users('${mailbox}')/${source}`, page, paging, matches.length);
  }

  /**
   * The mailbox's messages as Graph describes them, newest first by receivedDateTime (within one
   * second: Sent Items, then Drafts, then Inbox, each latest first).
   */
  function storedMessages(mailbox: string, folder: Route['folder']): Record<string, unknown>[] {
    const sent = (sentItems.get(mailbox) ?? []).map((item) => ({
      id: item.id,
      internetMessageId: item.internetMessageId,
      isDraft: false,
      parentFolderId: folderId(mailbox, 'sentitems'),
      receivedDateTime: item.sentDateTime,
      sentDateTime: item.sentDateTime,
      subject: item.subject,
    }));
    if (folder === 'sentitems') return sent.reverse();
    const inbox = (inboxes.get(mailbox) ?? []).map((message) => ({
      id: message.id,
      internetMessageId: message.internetMessageId,
      isDraft: false,
      parentFolderId: folderId(mailbox, 'inbox'),
      receivedDateTime: message.receivedDateTime,
      sentDateTime: message.sentDateTime,
      subject: message.subject,
    }));
    const draftsOfMailbox = [...drafts.values()]
      .filter((draft) => draft.mailbox === mailbox)
      .map((draft) => ({
        id: draft.id,
        internetMessageId: draft.internetMessageId,
        isDraft: true,
        parentFolderId: folderId(mailbox, 'drafts'),
        receivedDateTime: draft.createdDateTime,
        sentDateTime: null,
        subject: typeof draft.message.subject === 'string' ? draft.message.subject : '',
      }));
    return [...inbox, ...draftsOfMailbox, ...sent]
      .reverse()
      .sort((a, b) => Date.parse(b.receivedDateTime) - Date.parse(a.receivedDateTime));
  }

  function folderId(mailbox: string, folder: MailFolderName): string {
    // Opaque and stable, shaped like Exchange's folder ids.
    const digest = createHash('sha256').update(`${mailbox.toLowerCase()}/${folder}`).digest('base64url');
    return `AQMkAD${digest.slice(0, 40)}AAAA=`;
  }

  function listingReply(
    req: IncomingMessage,
    target: URL,
    context: string,
    value: Record<string, unknown>[],
    paging: Paging,
    total: number,
  ): Reply {
    const next = new URL(target.toString());
    next.searchParams.set('$skip', String(paging.skip + paging.top));
    return json(
      200,
      {
        '@odata.context': `${url}/v1.0/$metadata#${context}`,
        value,
        ...(paging.skip + paging.top < total && { '@odata.nextLink': next.toString() }),
      },
      graphHeaders(req),
    );
  }

  /**
   * GET /users/{id}/mailFolders/{folder}: a well-known name (inbox, drafts, sentitems) or the id the
   * peer reports for one, with $select (Graph always includes the id). Counts are the peer's own.
   */
  function mailFolder(req: IncomingMessage, target: URL, mailbox: string, requested: string): Reply {
    const name = (Object.keys(FOLDER_NAMES) as MailFolderName[]).find(
      (folder) => folder === requested.toLowerCase() || folderId(mailbox, folder) === requested,
    );
    if (!name) throw new GraphError(400, 'ErrorInvalidIdMalformed', 'Id is malformed.');
    const total =
      name === 'inbox'
        ? (inboxes.get(mailbox) ?? []).length
        : name === 'sentitems'
          ? (sentItems.get(mailbox) ?? []).length
          : [...drafts.values()].filter((draft) => draft.mailbox === mailbox).length;
    const folder = {
      id: folderId(mailbox, name),
      displayName: FOLDER_NAMES[name],
      parentFolderId: `AQMkAD${createHash('sha256').update(`${mailbox}/root`).digest('base64url').slice(0, 40)}AAAA=`,
      childFolderCount: 0,
      unreadItemCount: name === 'inbox' ? total : 0,
      totalItemCount: total,
      isHidden: false,
    };
    return json(
      200,
      {
        '@odata.context': `${url}/v1.0/$metadata#users('${encodeURIComponent(mailbox)}')/mailFolders/$entity`,
        ...selected(folder, selectOf(target)),
      },
      graphHeaders(req),
    );
  }

  /** GET /users/{id}/messages/{message id}/$value: the message's MIME. */
  function messageContent(req: IncomingMessage, mailbox: string, messageId: string): Reply {
    const message = (inboxes.get(mailbox) ?? []).find((candidate) => candidate.id === messageId);
    if (!message) {
      throw new GraphError(404, 'ErrorItemNotFound', 'The specified object was not found in the store.');
    }
    return {
      status: 200,
      headers: { ...graphHeaders(req), 'content-type': 'text/plain' },
      body: message.mime,
    };
  }

  function faultMessage(fault: GraphErrorFault, mailbox: string): string {
    if (fault.code === 'ErrorInvalidUser') return `The requested user '${mailbox}' is invalid.`;
    return defaultGraphMessage(fault.code, fault.status);
  }

  /** What the token's roles allow: Graph refuses an operation none of its roles grants with 403. */
  function requireRole(operation: GraphOperation, issued: IssuedToken): void {
    if (operation === 'token' || operation === 'uploadChunk') return;
    if (ROLES_FOR[operation].some((role) => issued.roles.includes(role))) return;
    throw new GraphError(403, 'ErrorAccessDenied', defaultGraphMessage('ErrorAccessDenied', 403));
  }

  /** An Application Access Policy: Exchange refuses every request on a mailbox outside it. */
  function requireInScope(issued: IssuedToken, mailbox: string): void {
    const scope = clients.get(issued.clientId.toLowerCase())?.mailboxScope;
    if (scope && !scope.has(mailbox)) throw new GraphError(403, 'ErrorAccessDenied', ACCESS_POLICY_MESSAGE);
  }

  function authenticate(req: IncomingMessage): IssuedToken {
    const authorization = header(req, 'authorization') ?? '';
    const match = /^Bearer\s+(\S*)\s*$/i.exec(authorization);
    const token = match?.[1] ?? '';
    if (!token) throw new GraphError(401, 'InvalidAuthenticationToken', 'Access token is empty.');
    const issued = tokens.get(token);
    if (!issued) {
      throw new GraphError(
        401,
        'InvalidAuthenticationToken',
        'IDX14100: JWT is not well formed: the access token was not issued by this authority.',
      );
    }
    if (issued.expiresAt <= Date.now()) {
      throw new GraphError(
        401,
        'InvalidAuthenticationToken',
        'Lifetime validation failed, the token is expired.',
      );
    }
    return issued;
  }

  function sendMail(req: IncomingMessage, mailbox: string, body: ReadBody): Reply {
    const payload = parseJsonObject(body);
    const saveToSentItems = payload.saveToSentItems ?? true;
    if (typeof saveToSentItems !== 'boolean') {
      throw new GraphError(
        400,
        'RequestBodyRead',
        "Cannot convert the literal to the expected type 'Edm.Boolean' (saveToSentItems).",
      );
    }
    if (payload.message === undefined || payload.message === null) {
      throw new GraphError(400, 'ErrorInvalidParameter', "The value of the parameter 'Message' is empty.");
    }
    const {
      message,
      attachments,
      internetMessageId = assignedMessageId(),
    } = validateMessage(payload.message, 'inline');
    requireRecipients(message);
    const at = acceptSend(mailbox, recipientCount(message));
    delivered.push({
      mailbox,
      via: 'sendMail',
      saveToSentItems,
      at,
      message,
      attachments,
      internetMessageId,
    });
    if (saveToSentItems) saveSentItem(mailbox, message, internetMessageId, at);
    return graphReply(req, 202);
  }

  /**
   * sendMail with `Content-Type: text/plain`: the body is the MIME message, base64. Graph answers a
   * body that is not base64 with ErrorMimeContentInvalidBase64String, and a message without To, Cc
   * or Bcc as it answers a JSON message without recipients.
   */
  async function sendMimeMail(req: IncomingMessage, mailbox: string, body: ReadBody): Promise<Reply> {
    const encoded = body.bytes.toString('latin1').replace(/\s+/g, '');
    if (encoded === '' || !isBase64(encoded)) {
      throw new GraphError(
        400,
        'ErrorMimeContentInvalidBase64String',
        'Invalid base64 string for MIME content.',
      );
    }
    const mime = Buffer.from(encoded, 'base64');
    const parsed = await simpleParser(mime, {
      skipHtmlToText: true,
      skipTextToHtml: true,
      skipTextLinks: true,
      skipImageLinks: true,
    });
    const recipients = (field: AddressObject | AddressObject[] | undefined) => {
      const found = addressesOf(field);
      for (const { address } of found) validateRecipient({ emailAddress: { address } }, 'recipients');
      return found.map((mailbox) => ({ emailAddress: mailbox }));
    };
    const message: Record<string, unknown> = {
      subject: parsed.subject ?? '',
      ...(parsed.from && { from: { emailAddress: addressesOf(parsed.from)[0] } }),
      toRecipients: recipients(parsed.to),
      ccRecipients: recipients(parsed.cc),
      bccRecipients: recipients(parsed.bcc),
    };
    requireRecipients(message);
    const internetMessageId = /^<[^<>\s]+>$/.test(parsed.messageId ?? '')
      ? (parsed.messageId as string)
      : assignedMessageId();
    const at = acceptSend(mailbox, recipientCount(message));
    delivered.push({
      mailbox,
      via: 'mime',
      saveToSentItems: true,
      at,
      message,
      attachments: [],
      internetMessageId,
      mime,
    });
    saveSentItem(mailbox, message, internetMessageId, at);
    return graphReply(req, 202);
  }

  function saveSentItem(
    mailbox: string,
    message: Record<string, unknown>,
    internetMessageId: string,
    at: number,
  ): void {
    const item: SentItem = {
      id: newMessageId(),
      subject: typeof message.subject === 'string' ? message.subject : '',
      internetMessageId,
      sentDateTime: secondPrecision(new Date(at)),
    };
    sentItems.set(mailbox, [...(sentItems.get(mailbox) ?? []), item]);
  }

  function createDraft(req: IncomingMessage, mailbox: string, body: ReadBody): Reply {
    const {
      message,
      attachments,
      internetMessageId = assignedMessageId(),
    } = validateMessage(parseJsonObject(body), 'inline');
    const id = newMessageId();
    const now = new Date();
    drafts.set(id, {
      id,
      mailbox,
      message,
      attachments,
      internetMessageId,
      createdDateTime: secondPrecision(now),
    });
    return json(
      201,
      {
        '@odata.context': `${url}/v1.0/$metadata#users('${encodeURIComponent(mailbox)}')/messages/$entity`,
        '@odata.etag': `W/"${randomBytes(12).toString('base64')}"`,
        id,
        createdDateTime: now.toISOString(),
        lastModifiedDateTime: now.toISOString(),
        isDraft: true,
        hasAttachments: attachments.length > 0,
        parentFolderId: folderId(mailbox, 'drafts'),
        ...message,
        internetMessageId,
      },
      graphHeaders(req),
    );
  }

  function addAttachment(req: IncomingMessage, mailbox: string, messageId: string, body: ReadBody): Reply {
    const draft = findDraft(mailbox, messageId);
    const attachment = validateAttachment(parseJsonObject(body), 'attachment');
    draft.attachments.push(attachment);
    const id = newMessageId();
    return json(
      201,
      {
        '@odata.context': `${url}/v1.0/$metadata#users('${encodeURIComponent(mailbox)}')/messages('${encodeURIComponent(messageId)}')/attachments/$entity`,
        '@odata.type': '#microsoft.graph.fileAttachment',
        id,
        lastModifiedDateTime: new Date().toISOString(),
        name: attachment.name,
        contentType: attachment.contentType,
        size: attachment.bytes.length,
        isInline: attachment.isInline,
        contentId: attachment.contentId ?? null,
      },
      graphHeaders(req),
    );
  }

  function createUploadSession(
    req: IncomingMessage,
    mailbox: string,
    messageId: string,
    body: ReadBody,
  ): Reply {
    const draft = findDraft(mailbox, messageId);
    const payload = parseJsonObject(body);
    const item = payload.AttachmentItem ?? payload.attachmentItem;
    if (!isObject(item)) {
      throw new GraphError(400, 'ErrorInvalidRequest', "The request body must contain an 'AttachmentItem'.");
    }
    if (typeof item.attachmentType !== 'string' || item.attachmentType.toLowerCase() !== 'file') {
      throw new GraphError(400, 'ErrorInvalidRequest', "AttachmentItem.attachmentType must be 'file'.");
    }
    if (typeof item.name !== 'string' || item.name === '') {
      throw new GraphError(400, 'ErrorInvalidRequest', 'AttachmentItem.name is required.');
    }
    const size = item.size;
    if (typeof size !== 'number' || !Number.isInteger(size) || size < 1) {
      throw new GraphError(
        400,
        'ErrorInvalidRequest',
        'AttachmentItem.size must be a positive whole number of bytes.',
      );
    }
    if (size > MAX_UPLOAD_SESSION_BYTES) {
      throw new GraphError(
        400,
        'ErrorAttachmentSizeLimitExceeded',
        `The attachment size ${size} exceeds the limit of ${MAX_UPLOAD_SESSION_BYTES} bytes (150 MB).`,
      );
    }
    const contentType =
      optionalString(item.contentType, 'AttachmentItem.contentType') ?? 'application/octet-stream';
    const contentId = optionalString(item.contentId, 'AttachmentItem.contentId');
    const isInline = optionalBoolean(item.isInline, 'AttachmentItem.isInline') ?? false;
    const id = randomBytes(24).toString('base64url');
    const authToken = randomBytes(32).toString('base64url');
    const expiresAt = Date.now() + UPLOAD_SESSION_LIFETIME_MS;
    sessions.set(id, {
      id,
      mailbox,
      draftId: draft.id,
      authToken,
      name: item.name,
      contentType,
      ...(contentId !== undefined && { contentId }),
      isInline,
      size,
      expiresAt,
      chunks: [],
      next: 0,
    });
    return json(
      201,
      {
        '@odata.context': `${url}/v1.0/$metadata#microsoft.graph.uploadSession`,
        uploadUrl: `${url}/upload/${encodeURIComponent(mailbox)}/${encodeURIComponent(draft.id)}/${id}?authtoken=${authToken}`,
        expirationDateTime: new Date(expiresAt).toISOString(),
        nextExpectedRanges: ['0-'],
      },
      graphHeaders(req),
    );
  }

  function uploadChunk(req: IncomingMessage, target: URL, route: Route, body: ReadBody): Reply {
    // Outlook's upload URLs are pre-authenticated by their authtoken.
    if (header(req, 'authorization') !== undefined) {
      throw new GraphError(
        401,
        'InvalidAuthenticationToken',
        'Do not send an Authorization header to an upload URL',
      );
    }
    const session = sessions.get(route.sessionId ?? '');
    if (
      !session ||
      session.mailbox !== route.mailbox ||
      session.draftId !== route.messageId ||
      session.expiresAt <= Date.now()
    ) {
      throw new GraphError(404, 'ErrorItemNotFound', 'The upload session was not found or has expired.');
    }
    if (target.searchParams.get('authtoken') !== session.authToken) {
      throw new GraphError(
        401,
        'InvalidAuthenticationToken',
        'The authtoken of the upload URL is not valid.',
      );
    }
    const lengthHeader = header(req, 'content-length');
    if (lengthHeader === undefined) {
      throw new GraphError(411, 'ErrorInvalidRequest', 'A Content-Length header is required.');
    }
    const range = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(header(req, 'content-range')?.trim() ?? '');
    if (!range) {
      throw new GraphError(
        400,
        'InvalidRange',
        "The Content-Range header is missing or not of the form 'bytes start-end/total'.",
      );
    }
    const start = Number(range[1]);
    const end = Number(range[2]);
    const total = Number(range[3]);
    if (total !== session.size) {
      throw new GraphError(
        400,
        'InvalidRange',
        `Content-Range total ${total} does not match the session size ${session.size}.`,
      );
    }
    if (end < start) {
      throw new GraphError(400, 'InvalidRange', `Content-Range end ${end} is before its start ${start}.`);
    }
    if (end >= total) {
      throw new GraphError(
        416,
        'InvalidRange',
        `Content-Range end ${end} is beyond the last byte ${total - 1}.`,
      );
    }
    if (start !== session.next) {
      throw new GraphError(
        416,
        'InvalidRange',
        `The range ${start}-${end} is not the next expected range; the next expected range is ${session.next}-.`,
      );
    }
    const length = end - start + 1;
    if (length > MAX_CHUNK_BYTES || body.truncated) {
      throw new GraphError(
        400,
        'InvalidRange',
        `A chunk of ${Math.max(length, body.size)} bytes exceeds the maximum of ${MAX_CHUNK_BYTES} bytes (4 MiB).`,
      );
    }
    if (Number(lengthHeader) !== body.size || body.size !== length) {
      throw new GraphError(
        400,
        'InvalidRange',
        `The Content-Range covers ${length} bytes but the body has ${body.size} bytes.`,
      );
    }
    const draft = drafts.get(session.draftId);
    if (!draft) {
      sessions.delete(session.id);
      throw new GraphError(404, 'ErrorItemNotFound', 'The specified object was not found in the store.');
    }
    session.chunks.push(body.bytes);
    session.next = end + 1;
    if (session.next < session.size) {
      return json(
        200,
        {
          '@odata.context': `${url}/v1.0/$metadata#microsoft.graph.uploadSession`,
          expirationDateTime: new Date(session.expiresAt).toISOString(),
          nextExpectedRanges: [`${session.next}-`],
        },
        graphHeaders(req),
      );
    }
    sessions.delete(session.id);
    const attachmentId = newMessageId();
    draft.attachments.push({
      name: session.name,
      contentType: session.contentType,
      ...(session.contentId !== undefined && { contentId: session.contentId }),
      isInline: session.isInline,
      bytes: Buffer.concat(session.chunks),
      via: 'uploadSession',
    });
    return graphReply(req, 201, {
      location: `${url}/v1.0/users('${encodeURIComponent(session.mailbox)}')/messages('${encodeURIComponent(draft.id)}')/attachments('${encodeURIComponent(attachmentId)}')`,
    });
  }

  function sendDraft(req: IncomingMessage, mailbox: string, messageId: string): Reply {
    const draft = findDraft(mailbox, messageId);
    requireRecipients(draft.message);
    for (const session of sessions.values()) {
      if (session.draftId === draft.id) {
        throw new GraphError(
          400,
          'ErrorInvalidRequest',
          `The attachment upload is not complete: '${session.name}' has ${session.next} of ${session.size} bytes.`,
        );
      }
    }
    // Before the draft is used up: a refused send leaves it to be sent later.
    const at = acceptSend(mailbox, recipientCount(draft.message));
    drafts.delete(draft.id);
    delivered.push({
      mailbox,
      via: 'draft',
      saveToSentItems: true,
      at,
      message: draft.message,
      attachments: draft.attachments,
      internetMessageId: draft.internetMessageId,
    });
    // Sending a draft always keeps it in Sent Items (under a new id: the item moved).
    saveSentItem(mailbox, draft.message, draft.internetMessageId, at);
    return graphReply(req, 202);
  }

  function deleteMessage(req: IncomingMessage, mailbox: string, messageId: string): Reply {
    const draft = findDraft(mailbox, messageId);
    drafts.delete(draft.id);
    for (const session of [...sessions.values()]) {
      if (session.draftId === draft.id) sessions.delete(session.id);
    }
    return graphReply(req, 204);
  }

  function findDraft(mailbox: string, messageId: string): Draft {
    const draft = drafts.get(messageId);
    if (!draft || draft.mailbox !== mailbox) {
      throw new GraphError(404, 'ErrorItemNotFound', 'The specified object was not found in the store.');
    }
    return draft;
  }

  function graphReply(req: IncomingMessage, status: number, extra: Record<string, string> = {}): Reply {
    return { status, headers: { ...graphHeaders(req), ...extra } };
  }

  // -------------------------------------------------------------------------------------------
  // Limits (see GraphMailboxLimits)

  function pacingOf(mailbox: string): MailboxPacing {
    let record = pacing.get(mailbox);
    if (!record) {
      record = emptyPacing();
      pacing.set(mailbox, record);
    }
    return record;
  }

  /** Counts a send request from its arrival; refuses it there when the mailbox's admitted sends are at the limit. */
  function openSendSlot(mailbox: string): SendSlot {
    const record = pacingOf(mailbox);
    const limit = limits.concurrentRequestsPerMailbox;
    const admitted = limit === undefined || record.sendsInProgress < limit;
    record.sendRequestsOpen += 1;
    record.peakSendRequestsOpen = Math.max(record.peakSendRequestsOpen, record.sendRequestsOpen);
    if (admitted) {
      record.sendsInProgress += 1;
      record.peakSendsInProgress = Math.max(record.peakSendsInProgress, record.sendsInProgress);
    } else {
      record.throttled.push({
        at: Date.now(),
        code: 'MailboxConcurrency',
        retryAfterSeconds: CONCURRENCY_RETRY_AFTER_SECONDS,
      });
    }
    let released = false;
    return {
      admitted,
      release: () => {
        if (released) return;
        released = true;
        // Looked up again: reset() may have replaced the record, carrying the counts over.
        const current = pacingOf(mailbox);
        current.sendRequestsOpen -= 1;
        if (admitted) current.sendsInProgress -= 1;
      },
    };
  }

  /**
   * The rate limits' say on a send about to be delivered: throws their 429 when one refuses it, else
   * counts it as accepted and returns its time. Synchronous, so concurrent sends cannot both take the
   * last place in a window.
   */
  function acceptSend(mailbox: string, recipients: number): number {
    const at = Date.now();
    const record = pacingOf(mailbox);
    const refusal = rateRefusal(record, recipients, at);
    if (refusal) {
      const retryAfterSeconds = Math.max(1, Math.ceil(refusal.retryAfterMs / 1000));
      record.throttled.push({
        at,
        code: refusal.code,
        retryAfterSeconds,
        retryAfterMs: refusal.retryAfterMs,
      });
      throw new GraphError(429, refusal.code, refusal.message, retryAfterSeconds);
    }
    record.accepted.push({ at, recipients });
    record.recipientsBefore.push((record.recipientsBefore.at(-1) ?? 0) + recipients);
    return at;
  }

  function rateRefusal(
    record: MailboxPacing,
    recipients: number,
    at: number,
  ): { code: GraphThrottleCode; message: string; retryAfterMs: number } | undefined {
    const { accepted, recipientsBefore } = record;
    const rate = limits.messagesPerMailbox;
    if (rate) {
      const inWindow = accepted.length - firstAfter(accepted, at - rate.windowMs);
      if (inWindow >= rate.count) {
        // Room comes when the send `count` places from the newest leaves the window (the oldest in
        // it, unless the limit was lowered meanwhile).
        const makesRoom = accepted[accepted.length - rate.count] as GraphAcceptedSend;
        return {
          code: 'ApplicationThrottled',
          message: `Mailbox send rate exceeded (${rate.count} messages per ${rate.windowMs} ms).`,
          retryAfterMs: makesRoom.at + rate.windowMs - at,
        };
      }
    }
    const perDay = limits.recipientsPerMailboxPerDay;
    if (perDay !== undefined) {
      const dayMs = limits.dayMs ?? DAY_MS;
      const first = firstAfter(accepted, at - dayMs);
      const total = recipientsBefore.at(-1) ?? 0;
      const inDay = total - (recipientsBefore[first] ?? 0);
      if (inDay + recipients > perDay) {
        // The message fits once enough of the oldest sends are a day old: the last of them decides.
        let leaving = first;
        while (
          leaving < accepted.length - 1 &&
          total - (recipientsBefore[leaving + 1] ?? 0) + recipients > perDay
        ) {
          leaving += 1;
        }
        const leavesAt = accepted[leaving]?.at;
        return {
          code: 'ErrorExceededMessageLimit',
          message: `Mailbox recipient rate exceeded (${perDay} recipients per ${dayMs} ms).`,
          retryAfterMs: leavesAt === undefined ? 0 : leavesAt + dayMs - at,
        };
      }
    }
    return undefined;
  }

  function pacingStatsOf(record: MailboxPacing): GraphMailboxPacingStats {
    const throttledByCode: Record<GraphThrottleCode, number> = {
      MailboxConcurrency: 0,
      ApplicationThrottled: 0,
      ErrorExceededMessageLimit: 0,
    };
    for (const { code } of record.throttled) throttledByCode[code] += 1;
    return {
      acceptedSends: [...record.accepted],
      sendsInProgress: record.sendsInProgress,
      peakSendsInProgress: record.peakSendsInProgress,
      peakSendRequestsOpen: record.peakSendRequestsOpen,
      throttledByCode,
      throttled: [...record.throttled],
    };
  }

  function pacingReport(): GraphPacingReport {
    return {
      limits: checkedLimits(limits),
      mailboxes: Object.fromEntries([...pacing].map(([mailbox, record]) => [mailbox, pacingStatsOf(record)])),
    };
  }

  // -------------------------------------------------------------------------------------------
  // Routing

  function routeOf(method: string, pathname: string): Route {
    const raw = pathname.split('/').filter(Boolean);
    const segments = raw.map((segment) => decodeSafe(segment));
    if (segments.some((segment) => segment === undefined)) return { operation: 'unknown' };
    const parts = segments as string[];
    const lower = parts.map((part) => part.toLowerCase());
    const [first, second, third, fourth, , sixth] = lower;

    if (first === 'mail-relay' && second === 'delivered' && parts.length === 2 && method === 'GET') {
      return { operation: 'unknown', resource: 'delivered' };
    }
    if (first === 'mail-relay' && second === 'pacing' && parts.length === 2 && method === 'GET') {
      return { operation: 'unknown', resource: 'pacing' };
    }
    // Entra ID
    if (second === 'oauth2' && third === 'v2.0' && fourth === 'token' && parts.length === 4) {
      return { operation: 'token', tenant: parts[0] ?? '' };
    }
    if (method === 'GET') {
      if (first === 'common' && second === 'discovery' && third === 'instance' && parts.length === 3) {
        return { operation: 'discovery', resource: 'instance-discovery' };
      }
      if (
        second === 'v2.0' &&
        third === '.well-known' &&
        fourth === 'openid-configuration' &&
        parts.length === 4
      ) {
        return { operation: 'discovery', resource: 'openid-configuration', tenant: parts[0] ?? '' };
      }
      if (second === 'discovery' && third === 'v2.0' && fourth === 'keys' && parts.length === 4) {
        return { operation: 'discovery', resource: 'keys', tenant: parts[0] ?? '' };
      }
    }
    // Upload URLs
    if (first === 'upload' && parts.length === 4 && method === 'PUT') {
      return {
        operation: 'uploadChunk',
        mailbox: (parts[1] ?? '').toLowerCase(),
        messageId: parts[2] ?? '',
        sessionId: parts[3] ?? '',
      };
    }
    // Graph
    if (first === 'v1.0' && second === 'me') return { operation: 'unknown', resource: 'me' };
    if (first !== 'v1.0' || second !== 'users' || parts.length < 4) return { operation: 'unknown' };
    const mailbox = (parts[2] ?? '').toLowerCase();
    const messageId = parts[4] ?? '';
    if (parts.length === 4 && fourth === 'sendmail' && method === 'POST')
      return { operation: 'sendMail', mailbox };
    if (
      parts.length === 6 &&
      fourth === 'mailfolders' &&
      lower[4] === 'inbox' &&
      lower[5] === 'messages' &&
      method === 'GET'
    ) {
      return { operation: 'listMessages', mailbox };
    }
    if (
      parts.length === 6 &&
      fourth === 'mailfolders' &&
      lower[4] === 'sentitems' &&
      lower[5] === 'messages' &&
      method === 'GET'
    ) {
      return { operation: 'findMessages', mailbox, folder: 'sentitems' };
    }
    if (parts.length === 5 && fourth === 'mailfolders' && method === 'GET') {
      return { operation: 'getMailFolder', mailbox, mailFolder: parts[4] ?? '' };
    }
    if (parts.length === 6 && sixth === '$value' && fourth === 'messages' && method === 'GET') {
      return { operation: 'getMessageContent', mailbox, messageId };
    }
    if (fourth !== 'messages') return { operation: 'unknown' };
    if (parts.length === 4 && method === 'GET') return { operation: 'findMessages', mailbox };
    if (parts.length === 4 && method === 'POST') return { operation: 'createDraft', mailbox };
    if (parts.length === 5 && method === 'DELETE') return { operation: 'deleteMessage', mailbox, messageId };
    if (parts.length === 6 && sixth === 'send' && method === 'POST')
      return { operation: 'sendDraft', mailbox, messageId };
    if (parts.length === 6 && sixth === 'attachments' && method === 'POST') {
      return { operation: 'addAttachment', mailbox, messageId };
    }
    if (
      parts.length === 7 &&
      sixth === 'attachments' &&
      lower[6] === 'createuploadsession' &&
      method === 'POST'
    ) {
      return { operation: 'createUploadSession', mailbox, messageId };
    }
    return { operation: 'unknown' };
  }

  // -------------------------------------------------------------------------------------------
  // Responses

  function graphHeaders(req: IncomingMessage): Record<string, string> {
    const requestId = randomUUID();
    return {
      'request-id': requestId,
      'client-request-id': header(req, 'client-request-id') ?? requestId,
      'x-ms-ags-diagnostic': JSON.stringify({ ServerInfo: { DataCenter: 'Local', Slice: 'E', Ring: '0' } }),
      'cache-control': 'no-cache',
    };
  }

  function entraHeaders(req: IncomingMessage): Record<string, string> {
    return {
      'x-ms-request-id': randomUUID(),
      'client-request-id': header(req, 'client-request-id') ?? randomUUID(),
      'x-ms-ests-server': 'mail-relay graph peer',
    };
  }

  function graphErrorReply(
    req: IncomingMessage,
    status: number,
    code: string,
    message: string,
    retryAfterSeconds?: number,
  ): Reply {
    const headers = graphHeaders(req);
    return json(
      status,
      {
        error: {
          code,
          message,
          innerError: {
            date: new Date().toISOString().replace(/\.\d+Z$/, ''),
            'request-id': headers['request-id'],
            'client-request-id': headers['client-request-id'],
          },
        },
      },
      { ...headers, ...(retryAfterSeconds !== undefined && { 'retry-after': String(retryAfterSeconds) }) },
    );
  }

  // -------------------------------------------------------------------------------------------
  // The peer

  const peer: GraphPeer = {
    url,
    authorityHost: url,
    graphEndpoint: url,
    tokenEndpoint,
    caCertificate: serverCertificate.certificatePem,
    get requests() {
      return requests;
    },
    get tokenRequests() {
      return tokenRequests;
    },
    get delivered() {
      return delivered;
    },
    maxConcurrency(mailbox: string): number {
      return maxInFlight.get(mailbox.toLowerCase()) ?? 0;
    },
    get limits() {
      return checkedLimits(limits);
    },
    setLimits(next: GraphMailboxLimits): void {
      limits = checkedLimits(next);
    },
    pacingStats(mailbox: string): GraphMailboxPacingStats {
      return pacingStatsOf(pacing.get(mailbox.toLowerCase()) ?? emptyPacing());
    },
    pacingReport,
    openDrafts(mailbox?: string): number {
      if (mailbox === undefined) return drafts.size;
      const wanted = mailbox.toLowerCase();
      return [...drafts.values()].filter((draft) => draft.mailbox === wanted).length;
    },
    injectFault(fault: GraphFault): void {
      if (fault.lostAnswer !== undefined) checkLostAnswer(fault);
      faults.push({ fault, remaining: fault.times ?? 1 });
    },
    clearFaults(): void {
      faults = [];
    },
    setFaultPlan(plan: GraphFaultPlan | undefined): void {
      faultPlan = plan;
    },
    mailFolderId(mailbox: string, folder: MailFolderName): string {
      return folderId(mailbox, folder);
    },
    deliverToInbox(mailbox: string, mime: string | Buffer, receivedAt = new Date()): string {
      const owner = mailbox.toLowerCase();
      const bytes = Buffer.isBuffer(mime) ? mime : Buffer.from(mime);
      const headerBlock = bytes.toString('latin1').split(/\r?\n\r?\n/, 1)[0] ?? '';
      const unfolded = headerBlock.replace(/\r?\n[ \t]+/g, ' ');
      const header = (name: string) =>
        new RegExp(`^${name}:[ \t]*(.*)$`, 'im').exec(unfolded)?.[1]?.trim() ?? '';
      // Graph reports receivedDateTime to the second.
      const receivedDateTime = secondPrecision(receivedAt);
      const sentAt = Date.parse(header('Date'));
      const message: InboxMessage = {
        id: `AAMkAD${randomUUID().replaceAll('-', '')}`,
        mailbox: owner,
        receivedDateTime,
        subject: header('Subject'),
        from: /<([^>]+)>/.exec(header('From'))?.[1] ?? header('From'),
        mime: bytes,
        internetMessageId: /<[^<>\s]+>/.exec(header('Message-ID'))?.[0] ?? assignedMessageId(),
        sentDateTime: Number.isNaN(sentAt) ? receivedDateTime : secondPrecision(new Date(sentAt)),
      };
      inboxes.set(owner, [...(inboxes.get(owner) ?? []), message]);
      return message.id;
    },
    reset(): void {
      requests.length = 0;
      tokenRequests.length = 0;
      delivered.length = 0;
      drafts.clear();
      sessions.clear();
      inboxes.clear();
      sentItems.clear();
      faults = [];
      maxInFlight.clear();
      // Requests still in flight keep counting.
      for (const [mailbox, count] of inFlight) if (count > 0) maxInFlight.set(mailbox, count);
      for (const [mailbox, record] of [...pacing]) {
        pacing.delete(mailbox);
        if (record.sendRequestsOpen === 0) continue;
        const carried = pacingOf(mailbox);
        carried.sendsInProgress = carried.peakSendsInProgress = record.sendsInProgress;
        carried.sendRequestsOpen = carried.peakSendRequestsOpen = record.sendRequestsOpen;
      }
    },
    isIssuedToken(token: string): { clientId: string } | undefined {
      const issued = tokens.get(token);
      if (!issued || issued.expiresAt <= Date.now()) return undefined;
      return { clientId: issued.clientId };
    },
    close(): Promise<void> {
      return new Promise((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
        for (const socket of sockets) socket.destroy();
      });
    },
  };
  return peer;
}

// ---------------------------------------------------------------------------------------------
// Limits

function emptyPacing(): MailboxPacing {
  return {
    accepted: [],
    recipientsBefore: [0],
    sendsInProgress: 0,
    sendRequestsOpen: 0,
    peakSendsInProgress: 0,
    peakSendRequestsOpen: 0,
    throttled: [],
  };
}

/** The index of the first accepted send later than `since` (sends are in time order). */
function firstAfter(accepted: readonly GraphAcceptedSend[], since: number): number {
  let low = 0;
  let high = accepted.length;
  while (low < high) {
    const middle = (low + high) >> 1;
    if ((accepted[middle]?.at ?? 0) > since) high = middle;
    else low = middle + 1;
  }
  return low;
}

/** The limit fields of `given` (start options carry others), checked, as a fresh copy. */
function checkedLimits(given: GraphMailboxLimits): GraphMailboxLimits {
  const { concurrentRequestsPerMailbox, messagesPerMailbox, recipientsPerMailboxPerDay, dayMs } = given;
  const wholeAtLeastOne = (value: number | undefined, name: string) => {
    if (value !== undefined && !(Number.isInteger(value) && value >= 1)) {
      throw new RangeError(`graph peer: ${name} must be a whole number >= 1, not ${value}`);
    }
  };
  const positiveDuration = (value: number | undefined, name: string) => {
    if (value !== undefined && !(Number.isFinite(value) && value > 0)) {
      throw new RangeError(`graph peer: ${name} must be a finite number of ms > 0, not ${value}`);
    }
  };
  wholeAtLeastOne(concurrentRequestsPerMailbox, 'concurrentRequestsPerMailbox');
  if (messagesPerMailbox !== undefined) {
    // Both are required; a caller in plain JavaScript may leave one out.
    wholeAtLeastOne(messagesPerMailbox.count ?? Number.NaN, 'messagesPerMailbox.count');
    positiveDuration(messagesPerMailbox.windowMs ?? Number.NaN, 'messagesPerMailbox.windowMs');
  }
  wholeAtLeastOne(recipientsPerMailboxPerDay, 'recipientsPerMailboxPerDay');
  positiveDuration(dayMs, 'dayMs');
  return {
    ...(concurrentRequestsPerMailbox !== undefined && { concurrentRequestsPerMailbox }),
    ...(messagesPerMailbox !== undefined && {
      messagesPerMailbox: { count: messagesPerMailbox.count, windowMs: messagesPerMailbox.windowMs },
    }),
    ...(recipientsPerMailboxPerDay !== undefined && { recipientsPerMailboxPerDay }),
    ...(dayMs !== undefined && { dayMs }),
  };
}

// ---------------------------------------------------------------------------------------------
// Message validation (what Graph refuses with 400)

function validateMessage(
  value: unknown,
  via: DeliveredAttachment['via'],
): { message: Record<string, unknown>; attachments: DeliveredAttachment[]; internetMessageId?: string } {
  if (!isObject(value)) {
    throw new GraphError(
      400,
      'RequestBodyRead',
      "An unexpected value was found for 'message'; a JSON object was expected.",
    );
  }
  const { attachments: rawAttachments, ...message } = value;
  if (message.subject !== undefined && message.subject !== null && typeof message.subject !== 'string') {
    throw new GraphError(
      400,
      'RequestBodyRead',
      "Cannot convert the literal to the expected type 'Edm.String' (subject).",
    );
  }
  if (message.body !== undefined && message.body !== null) {
    const body = message.body;
    if (!isObject(body))
      throw new GraphError(400, 'RequestBodyRead', "An unexpected value was found for 'body'.");
    if (body.contentType !== undefined) {
      if (
        typeof body.contentType !== 'string' ||
        !['text', 'html'].includes(body.contentType.toLowerCase())
      ) {
        throw new GraphError(
          400,
          'RequestBodyRead',
          `Requested value '${String(body.contentType)}' was not found (body.contentType must be Text or HTML).`,
        );
      }
    }
    if (body.content !== undefined && body.content !== null && typeof body.content !== 'string') {
      throw new GraphError(
        400,
        'RequestBodyRead',
        "Cannot convert the literal to the expected type 'Edm.String' (body.content).",
      );
    }
  }
  for (const field of ['toRecipients', 'ccRecipients', 'bccRecipients', 'replyTo'] as const) {
    const recipients = message[field];
    if (recipients === undefined || recipients === null) continue;
    if (!Array.isArray(recipients)) {
      throw new GraphError(
        400,
        'RequestBodyRead',
        `An unexpected value was found for '${field}'; an array was expected.`,
      );
    }
    for (const recipient of recipients) validateRecipient(recipient, field);
  }
  if (message.from !== undefined && message.from !== null) validateRecipient(message.from, 'from');
  if (message.sender !== undefined && message.sender !== null) validateRecipient(message.sender, 'sender');
  const headers = message.internetMessageHeaders;
  if (headers !== undefined && headers !== null) {
    if (!Array.isArray(headers)) {
      throw new GraphError(
        400,
        'RequestBodyRead',
        "An unexpected value was found for 'internetMessageHeaders'.",
      );
    }
    for (const entry of headers) {
      if (!isObject(entry) || typeof entry.name !== 'string' || typeof entry.value !== 'string') {
        throw new GraphError(
          400,
          'RequestBodyRead',
          'Each internetMessageHeaders entry needs a string name and value.',
        );
      }
      if (!/^x-/i.test(entry.name)) {
        throw new GraphError(
          400,
          'InvalidInternetMessageHeader',
          `The internet message header name '${entry.name}' should start with 'x-' or 'X-'.`,
        );
      }
    }
  }
  const attachments: DeliveredAttachment[] = [];
  if (rawAttachments !== undefined && rawAttachments !== null) {
    if (!Array.isArray(rawAttachments)) {
      throw new GraphError(
        400,
        'RequestBodyRead',
        "An unexpected value was found for 'attachments'; an array was expected.",
      );
    }
    for (const attachment of rawAttachments) attachments.push(validateAttachment(attachment, via));
  }
  const internetMessageId = validInternetMessageId(message.internetMessageId);
  return { message, attachments, ...(internetMessageId !== undefined && { internetMessageId }) };
}

/** RFC 5322 msg-id: "<" dot-atom-text "@" (dot-atom-text / no-fold-literal) ">", without comments or folding. */
const ATEXT = "[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+";
const DOT_ATOM_TEXT = `${ATEXT}(?:\\.${ATEXT})*`;
const MSG_ID = new RegExp(`^<${DOT_ATOM_TEXT}@(?:${DOT_ATOM_TEXT}|\\[[\\x21-\\x5a\\x5e-\\x7e]*\\])>$`);

/** A client may set internetMessageId when it creates a message; Graph refuses one that is not a msg-id. */
function validInternetMessageId(value: unknown): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string') {
    throw new GraphError(
      400,
      'RequestBodyRead',
      "Cannot convert the literal to the expected type 'Edm.String' (internetMessageId).",
    );
  }
  if (!MSG_ID.test(value)) {
    throw new GraphError(
      400,
      'ErrorInvalidInternetMessageId',
      `The value '${value}' of internetMessageId is invalid: an RFC 5322 msg-id such as <id@domain> is expected.`,
    );
  }
  return value;
}

function assignedMessageId(): string {
  return `<${randomUUID()}@${ASSIGNED_MESSAGE_ID_DOMAIN}>`;
}

/**
 * The one $filter a message lookup understands, in Graph's OData syntax: internetMessageId eq '<value>'
 * (a quote inside the literal is doubled). Anything else is refused, as the Inbox listing refuses
 * what it cannot parse.
 */
function internetMessageIdFilter(filter: string): string {
  const match = /^internetMessageId\s+eq\s+'((?:[^']|'')*)'$/i.exec(filter.trim());
  if (!match) throw new GraphError(400, 'BadRequest', 'Invalid filter clause');
  return (match[1] ?? '').replaceAll("''", "'");
}

// ---------------------------------------------------------------------------------------------
// Query options shared by the listings

interface Paging {
  readonly top: number;
  readonly skip: number;
}

/** $top (default 10, at most 1000) and $skip (what @odata.nextLink carries). */
function pagingOf(target: URL): Paging {
  const top = Number(target.searchParams.get('$top') ?? '10');
  const skip = Number(target.searchParams.get('$skip') ?? '0');
  if (!Number.isInteger(top) || top < 1 || top > 1000 || !Number.isInteger(skip) || skip < 0) {
    throw new GraphError(400, 'BadRequest', 'Invalid $top or $skip');
  }
  return { top, skip };
}

function selectOf(target: URL): string[] | undefined {
  return target.searchParams
    .get('$select')
    ?.split(',')
    .map((field) => field.trim());
}

/** The $select-ed fields of a listed message; Graph always includes its id. */
function selected(full: Record<string, unknown>, select: string[] | undefined): Record<string, unknown> {
  return select
    ? Object.fromEntries(Object.entries(full).filter(([key]) => key === 'id' || select.includes(key)))
    : full;
}

function checkLostAnswer(fault: GraphLostAnswerFault): void {
  if (fault.lostAnswer !== 'hang' && fault.lostAnswer !== 'reset') {
    throw new RangeError(`graph peer: lostAnswer must be 'hang' or 'reset', not ${String(fault.lostAnswer)}`);
  }
  const delay = fault.answerAfterMs;
  // setTimeout would turn Infinity or NaN into 1 ms: the opposite of what was asked.
  if (delay !== undefined && !(Number.isFinite(delay) && delay >= 0)) {
    throw new RangeError(`graph peer: answerAfterMs must be a finite number >= 0, not ${delay}`);
  }
}

function validateRecipient(value: unknown, field: string): void {
  const address = isObject(value) && isObject(value.emailAddress) ? value.emailAddress.address : undefined;
  const name = isObject(value) && isObject(value.emailAddress) ? value.emailAddress.name : undefined;
  if (typeof address !== 'string' || (name !== undefined && name !== null && typeof name !== 'string')) {
    throw new GraphError(
      400,
      'RequestBodyRead',
      `Each '${field}' entry must be {"emailAddress": {"address": string, "name"?: string}}.`,
    );
  }
  if (!/^[^\s@]+@[^\s@]+\.[^\s@]+$/.test(address)) {
    throw new GraphError(
      400,
      'ErrorInvalidRecipients',
      `At least one recipient is not valid., Recipient '${address}' is not resolved. All recipients must be resolved before a message can be submitted.`,
    );
  }
}

/** To + Cc + Bcc: what Exchange's recipient rate limit counts. */
function recipientCount(message: Record<string, unknown>): number {
  return ['toRecipients', 'ccRecipients', 'bccRecipients'].reduce((sum, field) => {
    const recipients = message[field];
    return sum + (Array.isArray(recipients) ? recipients.length : 0);
  }, 0);
}

function requireRecipients(message: Record<string, unknown>): void {
  if (recipientCount(message) === 0) {
    throw new GraphError(
      400,
      'ErrorInvalidRecipients',
      "At least one recipient is not valid., A message can't be submitted without at least one recipient.",
    );
  }
}

function validateAttachment(value: unknown, via: DeliveredAttachment['via']): DeliveredAttachment {
  if (!isObject(value)) throw new GraphError(400, 'RequestBodyRead', 'An attachment must be a JSON object.');
  const type = value['@odata.type'];
  if (typeof type !== 'string' || type.toLowerCase() !== '#microsoft.graph.fileattachment') {
    throw new GraphError(
      400,
      'ErrorInvalidRequest',
      `Attachments need "@odata.type": "#microsoft.graph.fileAttachment" (got ${JSON.stringify(type ?? null)}).`,
    );
  }
  if (typeof value.name !== 'string' || value.name === '') {
    throw new GraphError(400, 'ErrorInvalidRequest', 'A file attachment needs a name.');
  }
  const contentBytes = value.contentBytes;
  if (typeof contentBytes !== 'string') {
    throw new GraphError(400, 'ErrorInvalidRequest', 'A file attachment needs contentBytes (base64).');
  }
  if (!isBase64(contentBytes)) {
    throw new GraphError(
      400,
      'ErrorMimeContentInvalidBase64String',
      'Invalid base64 string for MIME content.',
    );
  }
  const contentType = optionalString(value.contentType, 'contentType') ?? 'application/octet-stream';
  const contentId = optionalString(value.contentId, 'contentId');
  const isInline = optionalBoolean(value.isInline, 'isInline') ?? false;
  return {
    name: value.name,
    contentType,
    ...(contentId !== undefined && { contentId }),
    isInline,
    bytes: Buffer.from(contentBytes, 'base64'),
    via,
  };
}

/** Graph reads a sendMail body as MIME when it is sent as text/plain. */
function isMimeBody(req: IncomingMessage): boolean {
  return /^text\/plain\s*(;|$)/i.test(header(req, 'content-type') ?? '');
}

/** The addresses of an address header, group members included, with their display names. */
function addressesOf(
  field: AddressObject | AddressObject[] | undefined,
): { address: string; name?: string }[] {
  const objects = field === undefined ? [] : Array.isArray(field) ? field : [field];
  const flatten = (entries: AddressObject['value']): { address: string; name?: string }[] =>
    entries.flatMap((entry) => {
      if (entry.group) return flatten(entry.group);
      const address = entry.address ?? '';
      return [entry.name ? { address, name: entry.name } : { address }];
    });
  return objects.flatMap((object) => flatten(object.value));
}

function isBase64(value: string): boolean {
  return value.length % 4 === 0 && /^[A-Za-z0-9+/]*={0,2}$/.test(value);
}

/** A JSON property Graph reads as an OData primitive: absent or null is undefined, a wrong type a 400. */
function optionalOf<T extends 'string' | 'boolean'>(
  value: unknown,
  field: string,
  type: T,
): (T extends 'string' ? string : boolean) | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== type) {
    const edm = type === 'string' ? 'Edm.String' : 'Edm.Boolean';
    throw new GraphError(
      400,
      'RequestBodyRead',
      `Cannot convert the literal to the expected type '${edm}' (${field}).`,
    );
  }
  return value as T extends 'string' ? string : boolean;
}

const optionalString = (value: unknown, field: string) => optionalOf(value, field, 'string');
const optionalBoolean = (value: unknown, field: string) => optionalOf(value, field, 'boolean');

// ---------------------------------------------------------------------------------------------
// Small helpers

interface ReadBody {
  /** Empty when truncated. */
  readonly bytes: Buffer;
  /** Bytes received in all. */
  readonly size: number;
  /** More than the limit arrived: the body was drained, not kept. */
  readonly truncated: boolean;
}

/** Reads the whole body (so the client can finish sending), keeping it only up to `limit`. */
async function readBody(req: IncomingMessage, limit: number): Promise<ReadBody> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    const buffer = chunk as Buffer;
    size += buffer.length;
    if (size <= limit) chunks.push(buffer);
    else chunks.length = 0;
  }
  const truncated = size > limit;
  return { bytes: truncated ? Buffer.alloc(0) : Buffer.concat(chunks, size), size, truncated };
}

function parseJsonObject(body: ReadBody): Record<string, unknown> {
  const text = body.bytes.toString('utf8');
  if (text.trim() === '')
    throw new GraphError(400, 'ErrorInvalidRequest', 'Empty Payload. JSON content expected.');
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new GraphError(
      400,
      'BadRequest',
      'Unable to read JSON request payload. Please ensure Content-Type header is set and payload is of valid JSON format.',
    );
  }
  if (!isObject(value)) throw new GraphError(400, 'BadRequest', 'The request payload must be a JSON object.');
  return value;
}

function register(client: GraphPeerClient): RegisteredClient {
  const registered: RegisteredClient = {
    clientId: client.clientId,
    ...(client.clientSecret !== undefined && { clientSecret: client.clientSecret }),
    roles: [...(client.roles ?? DEFAULT_ROLES)],
    ...(client.mailboxScope !== undefined && {
      mailboxScope: new Set(client.mailboxScope.map((mailbox) => mailbox.toLowerCase())),
    }),
  };
  if (client.certificatePem === undefined) return registered;
  const certificate = new X509Certificate(client.certificatePem);
  return {
    ...registered,
    certificate: {
      sha256: createHash('sha256').update(certificate.raw).digest(),
      sha1: createHash('sha1').update(certificate.raw).digest(),
      publicKey: certificate.publicKey,
      validToMs: Date.parse(certificate.validTo),
    },
  };
}

function decodeJwtPart(part: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));
    return isObject(value) ? value : undefined;
  } catch {
    return undefined;
  }
}

function jwtClaim(jwt: string, claim: string): string | undefined {
  const payload = decodeJwtPart(jwt.split('.')[1] ?? '');
  const value = payload?.[claim];
  return typeof value === 'string' ? value : undefined;
}

function missingParameter(name: string): OAuthError {
  return new OAuthError(
    400,
    'invalid_request',
    `AADSTS900144: The request body must contain the following parameter: '${name}'.`,
  );
}

function newMessageId(): string {
  // Shaped like Exchange ids: long, URL-safe base64 ending in '=', which clients must URL-encode.
  return `AAMkAG${randomBytes(42).toString('base64url')}AAA=`;
}

/** ISO 8601 to the second, as Graph reports message times: "2024-05-01T12:34:56Z". */
function secondPrecision(date: Date): string {
  return `${date.toISOString().slice(0, 19)}Z`;
}

/** Entra ID's timestamp format: "2024-05-01 12:34:56Z". */
function entraTimestamp(date: Date): string {
  return `${date.toISOString().slice(0, 19).replace('T', ' ')}Z`;
}

function header(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value.join(', ') : value;
}

function decodeSafe(segment: string): string | undefined {
  try {
    return decodeURIComponent(segment);
  } catch {
    return undefined;
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function json(status: number, value: unknown, headers: Record<string, string> = {}): Reply {
  return { status, headers: { ...headers, 'content-type': JSON_TYPE }, body: JSON.stringify(value) };
}
