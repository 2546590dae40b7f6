import { randomBytes } from 'node:crypto';
import type { AddressInfo, Socket } from 'node:net';
import {
  SMTPServer,
  type SMTPServerAddress,
  type SMTPServerAuthentication,
  type SMTPServerDataStream,
  type SMTPServerSession,
} from 'smtp-server';
import { createServerCertificate } from './certificates.ts';

/**
 * A local SMTP peer (smtp-server based) on 127.0.0.1 that stands in for Exchange Online's inbound
 * MX (connector relay), Microsoft 365 client submission (587 + XOAUTH2) and third-party smart hosts.
 * It answers with Exchange's replies, records what it received and every command-level decision,
 * and can be told to refuse at any stage, or to take a message and never say so (`SmtpLostReply`:
 * the client cannot tell whether the message went). Quiet: smtp-server's logger is off.
 */

export type SmtpAuthMethod = 'PLAIN' | 'LOGIN' | 'XOAUTH2';

export interface SmtpPeerOptions {
  /** default 0 (free port); host always 127.0.0.1 */
  port?: number;
  /** 'starttls' (default): plain connect, STARTTLS offered; 'implicit': TLS from the first byte (port 465 style); 'none': no TLS offered */
  tls?: 'starttls' | 'implicit' | 'none';
  /** Refuse MAIL FROM before STARTTLS with `530 5.7.0 Must issue a STARTTLS command first` (Exchange does for connectors requiring TLS). default false */
  requireTls?: boolean;
  /** AUTH methods offered; empty/absent = no AUTH (connector mode). */
  authMethods?: SmtpAuthMethod[];
  /** Accepted PLAIN/LOGIN credentials. */
  users?: { username: string; password: string }[];
  /**
   * XOAUTH2: accept the bearer token if this returns a truthy value (tests pass graphPeer.isIssuedToken,
   * which returns `{ clientId }` or undefined). The username must also be given.
   */
  verifyBearerToken?: (token: string, username: string) => unknown;
  /** Max message size advertised (SIZE) and enforced: bigger -> `552 5.3.4 Message size exceeds fixed maximum message size`. default 35 MiB */
  maxMessageBytes?: number;
  /** Banner host name. default 'mail-relay-smtp-peer.local' */
  hostname?: string;
  /**
   * Offer SMTPUTF8 (RFC 6531) in the EHLO reply; false stands in for a server that cannot take
   * addresses with non-ASCII local parts. default true
   */
  smtpUtf8?: boolean;
  /** Called for each accepted message (local mode saves them as .eml files). */
  onReceived?: (message: ReceivedMessage) => void;
  /** Consulted at each stage no queued fault matches (see `SmtpFaultPlan`). */
  faultPlan?: SmtpFaultPlan;
  /**
   * Holds the reply that accepts a message (after DATA) this long once the message has arrived, as a
   * server that takes time to queue it; refusals are not held. The benchmark (scripts/bench) sets it
   * for a fixed provider answer time. default 0
   */
  answerDelayMs?: number;
  /**
   * When the greeting is sent after a client connects. smtp-server waits 100 ms (it checks for
   * clients that talk first), which most servers do not; the benchmark sets 0. Not with tls
   * 'implicit'. default: smtp-server's 100 ms
   */
  greetingDelayMs?: number;
}

export interface ReceivedMessage {
  envelope: { mailFrom: string; rcptTo: string[] };
  /** exact DATA bytes (dot-unstuffed, without the terminating <CRLF>.<CRLF>) */
  raw: Buffer;
  /** TLS was active (STARTTLS or implicit) */
  secure: boolean;
  /** The client said SMTPUTF8 in MAIL FROM */
  smtpUtf8: boolean;
  authenticatedUser?: string;
  authMethod?: SmtpAuthMethod;
  at: number;
}

export type SmtpStage = 'connect' | 'auth' | 'mailFrom' | 'rcptTo' | 'data';

export interface SmtpRejection {
  stage: SmtpStage;
  /**
   * For rcptTo: only this recipient (case-insensitive); otherwise every recipient. For mailFrom: only
   * this sender, if given. For auth: only this username. For data: only transactions with this
   * recipient. Ignored for connect.
   */
  address?: string;
  /** The full reply, e.g. '550 5.7.708 Service unavailable. Access denied, traffic not accepted from this IP.' */
  reply: string;
  /** default Infinity for rcptTo with an address, else 1 */
  times?: number;
  lostReply?: never;
}

/**
 * No reply after DATA: the peer takes the whole message and records it in `received` (a real server
 * would have queued it), then does not send the final reply. 'hang': never replies, and keeps the
 * connection open until the client closes it; 'close': drops the connection at once.
 */
export interface SmtpLostReply {
  stage: 'data';
  lostReply: 'hang' | 'close';
  /** Only transactions with this recipient (case-insensitive). */
  address?: string;
  /** default 1 */
  times?: number;
  reply?: never;
}

export type SmtpFault = SmtpRejection | SmtpLostReply;

/**
 * What the plan is told about the command: for auth the username, for mailFrom the sender, for
 * rcptTo the recipient; for data the envelope's recipients.
 */
export interface SmtpFaultContext {
  readonly address?: string;
  readonly recipients?: readonly string[];
}

/**
 * Decides, per command, whether to fail it (randomised soak tests). Consulted only when no queued
 * fault matches; the stage, address and times of the fault it returns are ignored. A lostReply
 * applies at the data stage only: returned for another stage, the peer refuses the command with
 * `451 4.3.0` naming the mistake.
 */
export type SmtpFaultPlan = (stage: SmtpStage, context: SmtpFaultContext) => SmtpFault | undefined;

export interface SmtpTranscriptEntry {
  stage: SmtpStage | 'starttls';
  address?: string;
  accepted: boolean;
  reply?: string;
  /** data only: the message was accepted and recorded, and this is what became of the reply. */
  lostReply?: SmtpLostReply['lostReply'];
}

export interface SmtpPeer {
  readonly host: '127.0.0.1';
  readonly port: number;
  /** PEM of the self-signed server cert (SAN IP 127.0.0.1, DNS localhost), for clients to trust */
  readonly caCertificate: string;
  readonly received: readonly ReceivedMessage[];
  /** Every command-level event, for assertions. `reply` is set for refusals. */
  readonly transcript: readonly SmtpTranscriptEntry[];
  /** Connections accepted (to check pooling: several messages over one connection). */
  readonly connections: number;
  /** Queues a refusal, or (stage data) a lost reply. */
  reject(fault: SmtpFault): void;
  /** Removes queued faults (not the fault plan). */
  clearRejections(): void;
  /** Replaces the fault plan (undefined: none). reset() and clearRejections() leave it in place. */
  setFaultPlan(plan: SmtpFaultPlan | undefined): void;
  /** Clears records (received, transcript, connection count) and queued faults. */
  reset(): void;
  close(): Promise<void>;
}

const HOST = '127.0.0.1';
const DEFAULT_MAX_MESSAGE_BYTES = 35 * 1024 * 1024;
const DEFAULT_HOSTNAME = 'mail-relay-smtp-peer.local';

const REPLY_AUTH_FAILED = '535 5.7.3 Authentication unsuccessful';
const REPLY_MUST_STARTTLS = '530 5.7.0 Must issue a STARTTLS command first';
const REPLY_TOO_BIG = '552 5.3.4 Message size exceeds fixed maximum message size';
/** The plan's mistakes are answered, visibly, rather than thrown inside smtp-server's handlers. */
const REPLY_LOST_REPLY_MISPLACED =
  '451 4.3.0 smtp peer: the fault plan returned a lostReply for a stage other than data';
const REPLY_NOT_A_REPLY = '451 4.3.0 smtp peer: the fault plan returned a reply that is not an SMTP reply';

interface QueuedRejection {
  rejection: SmtpFault;
  remaining: number;
}

interface PeerUser {
  username: string;
  method: SmtpAuthMethod;
}

const SMTP_REPLY = /^([2-5]\d\d)(?: (.*))?$/s;

/** An Error smtp-server writes as exactly `reply` (enhanced status codes are hidden, so nothing is prefixed). */
function replyError(reply: string): Error & { responseCode: number } {
  const match = SMTP_REPLY.exec(reply);
  if (!match) throw new Error(`Not an SMTP reply: ${JSON.stringify(reply)}`);
  const error = new Error(match[2] ?? '') as Error & { responseCode: number };
  error.responseCode = Number(match[1]);
  return error;
}

function isSmtpReply(reply: unknown): reply is string {
  return typeof reply === 'string' && SMTP_REPLY.test(reply);
}

function sameAddress(a: string, b: string): boolean {
  return a.toLowerCase() === b.toLowerCase();
}

export async function startSmtpPeer(options: SmtpPeerOptions = {}): Promise<SmtpPeer> {
  const tlsMode = options.tls ?? 'starttls';
  const requireTls = options.requireTls ?? false;
  const authMethods = [...new Set(options.authMethods ?? [])];
  const users = options.users ?? [];
  const maxMessageBytes = options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
  const hostname = options.hostname ?? DEFAULT_HOSTNAME;
  const answerDelayMs = options.answerDelayMs ?? 0;
  const greetingDelayMs = options.greetingDelayMs;
  if (greetingDelayMs !== undefined && (tlsMode === 'implicit' || !(greetingDelayMs >= 0))) {
    throw new RangeError("smtp peer: greetingDelayMs must be >= 0, and cannot be set with tls 'implicit'");
  }

  const certificate = await createServerCertificate();

  const received: ReceivedMessage[] = [];
  const transcript: SmtpTranscriptEntry[] = [];
  let rejections: QueuedRejection[] = [];
  let faultPlan = options.faultPlan;
  let connections = 0;
  const sockets = new Set<Socket>();

  /**
   * The fault for this command: the first matching queued one (counted down), else the plan's.
   * A rejection comes back as its reply text.
   */
  function takeFault(
    stage: SmtpStage,
    matches: (address: string) => boolean,
    context: SmtpFaultContext,
  ): string | SmtpLostReply | undefined {
    const queued = rejections.find(
      (entry) =>
        entry.remaining > 0 &&
        entry.rejection.stage === stage &&
        (entry.rejection.address === undefined || stage === 'connect' || matches(entry.rejection.address)),
    );
    if (queued) {
      queued.remaining -= 1;
      rejections = rejections.filter((entry) => entry.remaining > 0);
    }
    const fault = queued?.rejection ?? faultPlan?.(stage, context);
    if (fault === undefined) return undefined;
    if (fault.lostReply === undefined) return isSmtpReply(fault.reply) ? fault.reply : REPLY_NOT_A_REPLY;
    return stage === 'data' ? fault : REPLY_LOST_REPLY_MISPLACED;
  }

  /** The refusal for a command before DATA (a lostReply only applies at data). */
  function takeRejection(
    stage: Exclude<SmtpStage, 'data'>,
    matches: (address: string) => boolean,
    context: SmtpFaultContext,
  ): string | undefined {
    const fault = takeFault(stage, matches, context);
    return typeof fault === 'string' ? fault : undefined;
  }

  function refuse(
    stage: SmtpStage,
    address: string | undefined,
    reply: string,
    callback: (err: Error) => void,
  ): void {
    transcript.push({ stage, ...(address !== undefined && { address }), accepted: false, reply });
    callback(replyError(reply));
  }

  function accept(stage: SmtpTranscriptEntry['stage'], address?: string): void {
    transcript.push({ stage, ...(address !== undefined && { address }), accepted: true });
  }

  const server = new SMTPServer({
    name: hostname,
    banner: 'Microsoft ESMTP MAIL Service ready',
    logger: false,
    disableReverseLookup: true,
    // Exchange's replies carry their enhanced codes in the text given; smtp-server must not add its own.
    hideENHANCEDSTATUSCODES: true,
    hideSMTPUTF8: options.smtpUtf8 === false,
    key: certificate.privateKeyPem,
    cert: certificate.certificatePem,
    secure: tlsMode === 'implicit',
    hideSTARTTLS: tlsMode !== 'starttls',
    disabledCommands: [
      ...(tlsMode !== 'starttls' ? ['STARTTLS'] : []),
      ...(authMethods.length === 0 ? ['AUTH'] : []),
    ],
    authMethods: authMethods.length > 0 ? authMethods : ['PLAIN', 'LOGIN'],
    authOptional: authMethods.length === 0,
    // Without TLS at all, AUTH must still be possible (third-party smart host on a plain port).
    allowInsecureAuth: tlsMode === 'none',
    size: maxMessageBytes,
    // The size limit is enforced in onData, with Exchange's reply.
    rejectOversized: false,
    closeTimeout: 1000,

    onConnect(_session, callback) {
      connections += 1;
      const reply = takeRejection('connect', () => true, {});
      if (reply) return refuse('connect', undefined, reply, callback);
      accept('connect');
      callback();
    },

    onSecure(_socket, _session, callback) {
      // Implicit TLS is part of the connection, not a STARTTLS command.
      if (tlsMode === 'starttls') accept('starttls');
      callback();
    },

    onAuth(auth: SMTPServerAuthentication, _session, callback) {
      const method = auth.method as SmtpAuthMethod;
      const username = auth.username ?? '';
      const reply = takeRejection('auth', (address) => sameAddress(address, username), { address: username });
      if (reply) return refuse('auth', username, reply, callback);
      let ok = false;
      if (authMethods.includes(method)) {
        if (method === 'XOAUTH2') {
          ok =
            username !== '' &&
            typeof auth.accessToken === 'string' &&
            auth.accessToken !== '' &&
            Boolean(options.verifyBearerToken?.(auth.accessToken, username));
        } else {
          ok = users.some((user) => user.username === username && user.password === auth.password);
        }
      }
      if (!ok) return refuse('auth', username, REPLY_AUTH_FAILED, callback);
      accept('auth', username);
      const user: PeerUser = { username, method };
      callback(null, { user });
    },

    onMailFrom(address: SMTPServerAddress, session: SMTPServerSession, callback) {
      const sender = address.address;
      if (requireTls && tlsMode !== 'none' && !session.secure) {
        return refuse('mailFrom', sender, REPLY_MUST_STARTTLS, callback);
      }
      const reply = takeRejection('mailFrom', (wanted) => sameAddress(wanted, sender), { address: sender });
      if (reply) return refuse('mailFrom', sender, reply, callback);
      accept('mailFrom', sender);
      callback();
    },

    onRcptTo(address: SMTPServerAddress, _session, callback) {
      const recipient = address.address;
      const reply = takeRejection('rcptTo', (wanted) => sameAddress(wanted, recipient), {
        address: recipient,
      });
      if (reply) return refuse('rcptTo', recipient, reply, callback);
      accept('rcptTo', recipient);
      callback();
    },

    onData(stream: SMTPServerDataStream, session: SMTPServerSession, callback) {
      const chunks: Buffer[] = [];
      stream.on('data', (chunk: Buffer) => {
        // Past the limit the bytes are counted (by smtp-server) but no longer kept.
        if (!stream.sizeExceeded) chunks.push(chunk);
      });
      stream.once('end', () => {
        const mailFrom = session.envelope.mailFrom ? session.envelope.mailFrom.address : '';
        const rcptTo = session.envelope.rcptTo.map((recipient) => recipient.address);
        if (stream.sizeExceeded) return refuse('data', undefined, REPLY_TOO_BIG, callback);
        const fault = takeFault('data', (wanted) => rcptTo.some((to) => sameAddress(to, wanted)), {
          recipients: rcptTo,
        });
        if (typeof fault === 'string') return refuse('data', undefined, fault, callback);
        const user = session.user as PeerUser | undefined;
        const message: ReceivedMessage = {
          envelope: { mailFrom, rcptTo },
          raw: Buffer.concat(chunks),
          secure: session.secure,
          smtpUtf8: session.envelope.smtpUtf8 === true,
          ...(user && { authenticatedUser: user.username, authMethod: user.method }),
          at: Date.now(),
        };
        received.push(message);
        options.onReceived?.(message);
        if (fault) return loseReply(session, fault.lostReply);
        accept('data');
        const id = `<${randomBytes(12).toString('hex')}@${hostname}>`;
        const reply = `2.6.0 ${id} [InternalId=${received.length}] Queued mail for delivery`;
        if (answerDelayMs > 0) setTimeout(() => callback(null, reply), answerDelayMs);
        else callback(null, reply);
      });
      stream.once('error', () => {
        // The connection went away mid-DATA; nothing to record.
      });
    },
  });

  /** The message is in and recorded; the client never gets the reply that says so. */
  function loseReply(session: SMTPServerSession, mode: SmtpLostReply['lostReply']): void {
    transcript.push({ stage: 'data', accepted: true, lostReply: mode });
    // Not calling onData's callback is the hang: smtp-server sends nothing and, while a handler is
    // pending, does not time the client out, so the connection stays until the client closes it.
    if (mode === 'hang') return;
    for (const connection of server.connections) {
      // After STARTTLS _socket is the TLS socket; destroying it drops the TCP connection too.
      if (connection.session === session) connection._socket.destroy();
    }
  }

  // MAIL FROM with SIZE=n over the limit: smtp-server refuses before onMailFrom with its own text.
  // Give it Exchange's reply instead, on every connection.
  const connect = server.connect.bind(server);
  server.connect = (socket, socketOptions) => {
    const before = new Set(server.connections);
    connect(socket, socketOptions);
    for (const connection of server.connections) {
      if (before.has(connection)) continue;
      const validate = connection._validateMailParams.bind(connection);
      connection._validateMailParams = (parsed) => {
        const problem = validate(parsed);
        if (problem?.code === 552) {
          transcript.push({
            stage: 'mailFrom',
            address: parsed.address,
            accepted: false,
            reply: REPLY_TOO_BIG,
          });
          return { code: 552, message: REPLY_TOO_BIG.slice(4), enhancedCode: null };
        }
        return problem;
      };
      if (greetingDelayMs !== undefined) {
        // smtp-server's own 100 ms timer then finds nothing to do.
        const greet = connection.connectionReady.bind(connection);
        connection.connectionReady = () => undefined;
        setTimeout(greet, greetingDelayMs);
      }
    }
  };

  server.on('error', () => {
    // Client errors (resets, bad TLS) are not the peer's problem; they only end that connection.
  });
  server.server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });

  await new Promise<void>((resolve, reject) => {
    server.server.once('error', reject);
    server.listen(options.port ?? 0, HOST, () => {
      server.server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.server.address() as AddressInfo;

  const peer: SmtpPeer = {
    host: HOST,
    port,
    caCertificate: certificate.certificatePem,
    get received() {
      return received;
    },
    get transcript() {
      return transcript;
    },
    get connections() {
      return connections;
    },
    reject(fault: SmtpFault): void {
      // Validated now rather than mid-session.
      if (fault.lostReply === undefined) replyError(fault.reply);
      else if (fault.stage !== 'data' || (fault.lostReply !== 'hang' && fault.lostReply !== 'close')) {
        throw new Error(
          `smtp peer: a lostReply is 'hang' or 'close' at stage data: ${JSON.stringify(fault)}`,
        );
      }
      const times = fault.times ?? (fault.stage === 'rcptTo' && fault.address !== undefined ? Infinity : 1);
      rejections.push({ rejection: fault, remaining: times });
    },
    clearRejections(): void {
      rejections = [];
    },
    setFaultPlan(plan: SmtpFaultPlan | undefined): void {
      faultPlan = plan;
    },
    reset(): void {
      received.length = 0;
      transcript.length = 0;
      connections = 0;
      rejections = [];
    },
    close(): Promise<void> {
      return new Promise((resolve) => {
        server.close(() => resolve());
        for (const socket of sockets) socket.destroy();
      });
    },
  };
  return peer;
}
