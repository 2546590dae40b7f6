import {
  createServer,
  request as httpRequest,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import type { AddressInfo } from 'node:net';
import { type AddressObject, simpleParser } from 'mailparser';
import { LOOPBACK } from './emulators.ts';

/** What the relay handed to SES for one message, byte for byte. */
export interface CapturedSend {
  readonly messageId: string;
  readonly fromEmailAddress: string | undefined;
  readonly destination: { to: string[]; cc: string[]; bcc: string[] };
  readonly raw: Buffer;
  readonly tags: Record<string, string>;
  readonly configurationSetName: string | undefined;
  /** Set when a lost-answer fault withheld SES's answer to this (accepted) send. */
  readonly answerWithheld?: SesLostAnswer['lostAnswer'];
}

/** A scripted SES error response (e.g. 503, or 400 MessageRejected): the send is not forwarded. */
export interface InjectedError {
  readonly status: number;
  readonly code: string;
  readonly message?: string;
  /** How many consecutive sends fail this way. @default 1 */
  readonly times?: number;
  readonly lostAnswer?: never;
}

/**
 * A lost answer: the send is forwarded to the emulator and recorded exactly as a successful one
 * (`sent`, listeners), then the client does not get SES's answer. 'hang': never answered, the
 * connection stays open until the client closes it; 'reset': the connection is destroyed.
 */
export interface SesLostAnswer {
  readonly lostAnswer: 'hang' | 'reset';
  /**
   * Withhold the answer this long only: then 'hang' writes the real answer (a late answer, which a
   * client with a shorter timeout never reads) and 'reset' destroys the connection.
   */
  readonly answerAfterMs?: number;
  /** How many consecutive sends lose their answer this way. @default 1 */
  readonly times?: number;
  readonly status?: never;
  readonly code?: never;
}

export type InjectedFault = InjectedError | SesLostAnswer;

/** Decides, per SendEmail, whether to fail it (randomised soak tests); `times` of its result is ignored. */
export type SesFaultPlan = () => InjectedFault | undefined;

/** Account limits the capture enforces as SES does, so that a client's pacing can be proven against them. */
export interface SesSendLimits {
  /**
   * SES's maximum send rate: recipients per second across the account (Destination To + Cc + Bcc; for
   * a raw message without Destination, its To, Cc and Bcc headers), over a sliding 1-second window. A
   * send that would take the window beyond it is answered as SES answers: 400 ThrottlingException
   * "Maximum sending rate exceeded.", not forwarded, not counted. A message with more recipients than
   * the rate goes when the window is empty (SES lets a send through while it has quota left).
   * Absent: no limit.
   */
  readonly maxSendRate?: number;
}

/** A SendEmail the rate let through to the emulator. */
export interface SesAcceptedSend {
  /** Epoch ms */
  readonly at: number;
  readonly recipients: number;
}

/** The send rate GetAccount reports when no limit is set: more than local bursts reach. */
const UNLIMITED_LOCAL_SEND_RATE = 10_000;

/** What the account's sends met, for a test or bench to assert its pacing on (also GET /mail-relay/pacing). */
export interface SesPacingStats {
  readonly limits: SesSendLimits;
  /**
   * Oldest first; counted from when the capture lets a send through, and dropped again if the
   * emulator refuses it.
   */
  readonly accepted: readonly SesAcceptedSend[];
  /** Sends refused with ThrottlingException by maxSendRate (injected faults are not counted), oldest first. */
  readonly throttled: readonly SesAcceptedSend[];
}

/** maxSendRate is off unless given; `setLimits` changes it later. */
export interface SesCaptureOptions extends SesSendLimits {
  /** Consulted for each SendEmail when no injected fault is left. */
  readonly faultPlan?: SesFaultPlan;
}

/** The account as GetAccount describes it; each field absent keeps the capture's default. */
export interface SesAccountState {
  /** false: the SES sandbox (verified recipients only). @default true */
  readonly productionAccessEnabled?: boolean;
  /** false: SES paused sending for the whole account. @default true */
  readonly sendingEnabled?: boolean;
  /** HEALTHY, PROBATION or SHUTDOWN. @default 'HEALTHY' */
  readonly enforcementStatus?: string;
  /** @default 1_000_000 */
  readonly max24HourSend?: number;
  /** @default the sends the capture recorded */
  readonly sentLast24Hours?: number;
}

/** Verification, DKIM and MAIL FROM statuses, as SES v2 spells them. */
export type SesVerificationStatus = 'PENDING' | 'SUCCESS' | 'FAILED' | 'TEMPORARY_FAILURE' | 'NOT_STARTED';
export type SesDkimStatus = SesVerificationStatus;
export type SesMailFromStatus = 'PENDING' | 'SUCCESS' | 'FAILED' | 'TEMPORARY_FAILURE';

/** An identity as GetEmailIdentity describes it; each field absent keeps the default (verified, DKIM SUCCESS). */
export interface SesIdentityState {
  /** VerifiedForSendingStatus. @default true */
  readonly verified?: boolean;
  /** VerificationStatus. @default 'SUCCESS' when verified, else 'PENDING' */
  readonly verificationStatus?: SesVerificationStatus;
  /** DkimAttributes.Status. @default 'SUCCESS' */
  readonly dkimStatus?: SesDkimStatus;
  /** A custom MAIL FROM domain (MailFromAttributes). @default none, or `mail.<domain>` with a mailFromStatus */
  readonly mailFromDomain?: string;
  readonly mailFromStatus?: SesMailFromStatus;
}

/** A configuration set as GetConfigurationSet describes it. */
export interface SesConfigurationSetState {
  /** SendingOptions.SendingEnabled (false: paused, e.g. by the relay's bounce/complaint brake). */
  readonly sendingEnabled: boolean;
}

const SEND_EMAIL_PATH = '/v2/email/outbound-emails';
const SEND_RATE_WINDOW_MS = 1000;

/**
 * Sits in front of the SES emulator. Everything passes through; for SendEmail it keeps the raw MIME
 * and the envelope (the emulator's store drops custom headers and Bcc for raw messages), serves them
 * at /mail-relay/sent and /mail-relay/raw/<messageId>, and can answer with scripted errors or lose
 * the answer to a send it forwarded (the client cannot tell whether the message went). It can also
 * enforce the account's maximum send rate (`SesSendLimits`), reporting at /mail-relay/pacing.
 *
 * It also answers what `mail-relay doctor` reads, which the emulator does not know, in the shapes SES
 * v2 returns: GetAccount, GetEmailIdentity and GetConfigurationSet. Unscripted (local mode), every
 * identity is verified with DKIM SUCCESS (aws-ses-v2-local accepts any sender) and every
 * configuration set exists and sends; `setAccount`, `setIdentity` and `setConfigurationSet` script
 * other answers (an identity or set scripted as undefined is answered 404 NotFoundException). The
 * scripted state only changes those answers: sends are not refused by it (inject faults for that).
 */
export class SesCapture {
  readonly sent: CapturedSend[] = [];
  sendAttempts = 0;
  private readonly faults: { fault: InjectedFault; remaining: number }[] = [];
  private readonly listeners: ((send: CapturedSend) => void)[] = [];
  private server: Server | undefined;
  private faultPlan: SesFaultPlan | undefined;
  private limits: SesSendLimits;
  /** Every send the rate let through (the window is its tail), and those it refused. */
  private readonly accepted: SesAcceptedSend[] = [];
  private readonly throttled: SesAcceptedSend[] = [];
  private accountState: SesAccountState = {};
  /** Scripted identities and configuration sets; undefined: scripted as absent. */
  private readonly identities = new Map<string, SesIdentityState | undefined>();
  private readonly configurationSets = new Map<string, SesConfigurationSetState | undefined>();

  constructor(
    private readonly upstream: string,
    options: SesCaptureOptions = {},
  ) {
    this.faultPlan = options.faultPlan;
    this.limits = checkedLimits(options);
  }

  /** Replaces the limits (`{}`: none). Sends accepted before still count in the window. */
  setLimits(limits: SesSendLimits): void {
    this.limits = checkedLimits(limits);
  }

  /** Replaces what GetAccount reports beyond the send rate (`{}`: the defaults). */
  setAccount(state: SesAccountState): void {
    this.accountState = { ...state };
  }

  /** Scripts what GetEmailIdentity answers for an identity; undefined: it does not exist (404). */
  setIdentity(identity: string, state: SesIdentityState | undefined): void {
    this.identities.set(identity.toLowerCase(), state && { ...state });
  }

  /** Scripts what GetConfigurationSet answers for a set; undefined: it does not exist (404). */
  setConfigurationSet(name: string, state: SesConfigurationSetState | undefined): void {
    this.configurationSets.set(name, state && { ...state });
  }

  /** A snapshot of the limits and what the sends met. */
  pacingStats(): SesPacingStats {
    return {
      limits: { ...this.limits },
      accepted: [...this.accepted],
      throttled: [...this.throttled],
    };
  }

  /** Called with each send SES accepted (local mode's SES feedback simulator listens). */
  onSent(listener: (send: CapturedSend) => void): void {
    this.listeners.push(listener);
  }

  injectFault(fault: InjectedFault): void {
    if (fault.lostAnswer !== undefined) checkLostAnswer(fault);
    this.faults.push({ fault, remaining: fault.times ?? 1 });
  }

  /** Replaces the fault plan (undefined: none). */
  setFaultPlan(plan: SesFaultPlan | undefined): void {
    this.faultPlan = plan;
  }

  async listen(port: number): Promise<string> {
    this.server = createServer((req, res) => {
      void this.serve(req, res);
    });
    await new Promise<void>((resolve, reject) => {
      this.server?.once('error', reject).listen(port, LOOPBACK, resolve);
    });
    return `http://${LOOPBACK}:${(this.server.address() as AddressInfo).port}`;
  }

  /** Stops listening and drops every open connection, including those whose answer is withheld. */
  close(): Promise<void> {
    const server = this.server;
    if (!server) return Promise.resolve();
    return new Promise((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  }

  private async serve(req: IncomingMessage, res: ServerResponse): Promise<void> {
    let reply: Reply;
    let lostAnswer: SesLostAnswer | undefined;
    try {
      ({ reply, lostAnswer } = await this.handle(req));
    } catch (error) {
      reply = { status: 502, headers: {}, body: `ses capture: ${String(error)}` };
    }
    // The client (or close()) went away meanwhile: nobody to answer.
    if (res.destroyed) return;
    if (lostAnswer) withholdAnswer(res, reply, lostAnswer);
    else res.writeHead(reply.status, reply.headers).end(reply.body);
  }

  /**
   * The account as SES v2 GetAccount describes it: by default production access, sending on, and the
   * enforced maximum send rate (without one, a rate no local burst reaches); `setAccount` changes it.
   */
  private account(): Record<string, unknown> {
    const state = this.accountState;
    return {
      ProductionAccessEnabled: state.productionAccessEnabled ?? true,
      SendingEnabled: state.sendingEnabled ?? true,
      EnforcementStatus: state.enforcementStatus ?? 'HEALTHY',
      DedicatedIpAutoWarmupEnabled: false,
      SendQuota: {
        Max24HourSend: state.max24HourSend ?? 1_000_000,
        MaxSendRate: this.limits.maxSendRate ?? UNLIMITED_LOCAL_SEND_RATE,
        SentLast24Hours: state.sentLast24Hours ?? this.sent.length,
      },
    };
  }

  /** GetEmailIdentity's answer (SES matches identities case-insensitively). */
  private emailIdentity(identity: string): Reply {
    const key = identity.toLowerCase();
    const state = this.identities.has(key) ? this.identities.get(key) : {};
    if (state === undefined) {
      return errorReply(404, 'NotFoundException', `Email identity ${identity} does not exist.`);
    }
    const verified = state.verified ?? true;
    const dkimStatus = state.dkimStatus ?? 'SUCCESS';
    const isAddress = identity.includes('@');
    const domain = isAddress ? identity.slice(identity.lastIndexOf('@') + 1) : identity;
    const mailFromDomain =
      state.mailFromDomain ?? (state.mailFromStatus !== undefined ? `mail.${domain}` : undefined);
    return json(200, {
      IdentityType: isAddress ? 'EMAIL_ADDRESS' : 'DOMAIN',
      FeedbackForwardingStatus: true,
      VerifiedForSendingStatus: verified,
      VerificationStatus: state.verificationStatus ?? (verified ? 'SUCCESS' : 'PENDING'),
      DkimAttributes: {
        SigningEnabled: dkimStatus === 'SUCCESS',
        Status: dkimStatus,
        SigningAttributesOrigin: 'AWS_SES',
        ...(!isAddress && {
          // Easy DKIM's three selectors, each published as <token>._domainkey.<domain> CNAME.
          Tokens: [1, 2, 3].map((index) => `local${index}${domain.replace(/[^a-z0-9]/gi, '')}`),
          CurrentSigningKeyLength: 'RSA_2048_BIT',
          NextSigningKeyLength: 'RSA_2048_BIT',
        }),
      },
      // SES answers BehaviorOnMxFailure alone when the identity has no custom MAIL FROM domain.
      MailFromAttributes: {
        ...(mailFromDomain !== undefined && {
          MailFromDomain: mailFromDomain,
          MailFromDomainStatus: state.mailFromStatus ?? 'SUCCESS',
        }),
        BehaviorOnMxFailure: 'USE_DEFAULT_VALUE',
      },
      Policies: {},
      Tags: [],
    });
  }

  /** GetConfigurationSet's answer. */
  private configurationSet(name: string): Reply {
    const state = this.configurationSets.has(name)
      ? this.configurationSets.get(name)
      : { sendingEnabled: true };
    if (state === undefined) {
      return errorReply(404, 'NotFoundException', `Configuration set <${name}> does not exist.`);
    }
    return json(200, {
      ConfigurationSetName: name,
      DeliveryOptions: { TlsPolicy: 'OPTIONAL' },
      ReputationOptions: { ReputationMetricsEnabled: true },
      SendingOptions: { SendingEnabled: state.sendingEnabled },
      SuppressionOptions: { SuppressedReasons: ['BOUNCE', 'COMPLAINT'] },
      Tags: [],
    });
  }

  private async handle(req: IncomingMessage): Promise<{ reply: Reply; lostAnswer?: SesLostAnswer }> {
    const body = await readBody(req);
    const url = req.url ?? '/';
    if (req.method === 'GET' && url === '/mail-relay/pacing') {
      return { reply: json(200, this.pacingStats()) };
    }
    // GetAccount: the emulator answers it only from an environment variable; the capture answers
    // with the send rate it enforces, which is what the relay paces SES sends to.
    if (req.method === 'GET' && url.split('?')[0] === '/v2/email/account') {
      return { reply: json(200, this.account()) };
    }
    // GetEmailIdentity and GetConfigurationSet, which the emulator does not answer (doctor reads them).
    const identity = /^\/v2\/email\/identities\/([^/?]+)(?:\?.*)?$/.exec(url);
    if (req.method === 'GET' && identity) {
      return { reply: this.emailIdentity(decodeURIComponent(identity[1] ?? '')) };
    }
    const configurationSet = /^\/v2\/email\/configuration-sets\/([^/?]+)(?:\?.*)?$/.exec(url);
    if (req.method === 'GET' && configurationSet) {
      return { reply: this.configurationSet(decodeURIComponent(configurationSet[1] ?? '')) };
    }
    if (req.method === 'GET' && url === '/mail-relay/sent') {
      const summary = this.sent.map(({ raw, ...rest }) => ({ ...rest, bytes: raw.length }));
      return { reply: json(200, summary) };
    }
    const raw = /^\/mail-relay\/raw\/([^/?]+?)(?:\.eml)?$/.exec(url);
    if (req.method === 'GET' && raw) {
      const found = this.sent.find((send) => send.messageId === decodeURIComponent(raw[1] ?? ''));
      return {
        reply: found
          ? { status: 200, headers: { 'content-type': 'message/rfc822' }, body: found.raw }
          : json(404, { message: 'no such message' }),
      };
    }
    if (req.method !== 'POST' || !url.startsWith(SEND_EMAIL_PATH)) {
      return { reply: await forward(this.upstream, req, body) };
    }

    this.sendAttempts += 1;
    const fault = this.takeFault();
    if (fault !== undefined && fault.lostAnswer === undefined) {
      const { status, code, message = `injected ${code}` } = fault;
      return { reply: errorReply(status, code, message) };
    }
    // Counted before it is forwarded, so concurrent sends cannot all take the window's last places.
    const counted = this.countRecipients(await recipientsOf(body));
    if (!counted) {
      const throttled = errorReply(400, 'ThrottlingException', 'Maximum sending rate exceeded.');
      return { reply: throttled, ...(fault && { lostAnswer: fault }) };
    }
    const uncount = () => this.accepted.splice(this.accepted.indexOf(counted), 1);
    let reply: Reply & { body: Buffer };
    try {
      reply = await forward(this.upstream, req, body);
    } catch (error) {
      uncount();
      throw error;
    }
    if (reply.status === 200) this.record(body, reply.body, fault?.lostAnswer);
    else uncount();
    return { reply, ...(fault && { lostAnswer: fault }) };
  }

  /** Lets a send through the rate and counts it (returns its entry), or records its refusal (undefined). */
  private countRecipients(recipients: number): SesAcceptedSend | undefined {
    const send: SesAcceptedSend = { at: Date.now(), recipients };
    const rate = this.limits.maxSendRate;
    if (rate !== undefined) {
      let inWindow = 0;
      for (let index = this.accepted.length - 1; index >= 0; index -= 1) {
        const earlier = this.accepted[index] as SesAcceptedSend;
        if (earlier.at <= send.at - SEND_RATE_WINDOW_MS) break;
        inWindow += earlier.recipients;
      }
      if (inWindow > 0 && inWindow + recipients > rate) {
        this.throttled.push(send);
        return undefined;
      }
    }
    this.accepted.push(send);
    return send;
  }

  /** The next injected fault (counted down), else the plan's. */
  private takeFault(): InjectedFault | undefined {
    const scripted = this.faults[0];
    if (!scripted) {
      const planned = this.faultPlan?.();
      if (planned?.lostAnswer !== undefined) checkLostAnswer(planned);
      return planned;
    }
    scripted.remaining -= 1;
    if (scripted.remaining <= 0) this.faults.shift();
    return scripted.fault;
  }

  private record(
    requestBody: Buffer,
    responseBody: Buffer,
    answerWithheld: SesLostAnswer['lostAnswer'] | undefined,
  ): void {
    const request = JSON.parse(requestBody.toString('utf8')) as SendEmailRequest;
    const { MessageId } = JSON.parse(responseBody.toString('utf8')) as { MessageId: string };
    const send: CapturedSend = {
      messageId: MessageId,
      fromEmailAddress: request.FromEmailAddress,
      destination: {
        to: request.Destination?.ToAddresses ?? [],
        cc: request.Destination?.CcAddresses ?? [],
        bcc: request.Destination?.BccAddresses ?? [],
      },
      raw: Buffer.from(request.Content?.Raw?.Data ?? '', 'base64'),
      tags: Object.fromEntries((request.EmailTags ?? []).map((tag) => [tag.Name, tag.Value])),
      configurationSetName: request.ConfigurationSetName,
      ...(answerWithheld !== undefined && { answerWithheld }),
    };
    this.sent.push(send);
    for (const listener of this.listeners) listener(send);
  }
}

/** The recipients SES counts for a SendEmail: its Destination, else (a raw message) the MIME's To, Cc and Bcc. */
async function recipientsOf(requestBody: Buffer): Promise<number> {
  let request: SendEmailRequest;
  try {
    request = JSON.parse(requestBody.toString('utf8')) as SendEmailRequest;
  } catch {
    // Not JSON: the emulator refuses it; nothing to count.
    return 0;
  }
  const { ToAddresses = [], CcAddresses = [], BccAddresses = [] } = request.Destination ?? {};
  if (request.Destination !== undefined || request.Content?.Raw?.Data === undefined) {
    return ToAddresses.length + CcAddresses.length + BccAddresses.length;
  }
  try {
    const parsed = await simpleParser(Buffer.from(request.Content.Raw.Data, 'base64'), {
      skipHtmlToText: true,
      skipTextToHtml: true,
      skipTextLinks: true,
      skipImageLinks: true,
    });
    return [parsed.to, parsed.cc, parsed.bcc].reduce((sum, field) => sum + addressCount(field), 0);
  } catch {
    // Unreadable MIME: the emulator refuses it; nothing to count.
    return 0;
  }
}

/** The addresses of an address header, group members included. */
function addressCount(field: AddressObject | AddressObject[] | undefined): number {
  const objects = field === undefined ? [] : Array.isArray(field) ? field : [field];
  const count = (entries: AddressObject['value']): number =>
    entries.reduce((sum, entry) => sum + (entry.group ? count(entry.group) : 1), 0);
  return objects.reduce((sum, object) => sum + count(object.value), 0);
}

function checkedLimits({ maxSendRate }: SesSendLimits): SesSendLimits {
  if (maxSendRate !== undefined && !(Number.isInteger(maxSendRate) && maxSendRate >= 1)) {
    throw new RangeError(`ses capture: maxSendRate must be a whole number >= 1, not ${maxSendRate}`);
  }
  return maxSendRate === undefined ? {} : { maxSendRate };
}

/** An SES v2 (REST-JSON) error answer: the SDK names the error after x-amzn-ErrorType. */
function errorReply(status: number, code: string, message: string): Reply {
  return {
    status,
    headers: { 'content-type': 'application/json', 'x-amzn-errortype': code },
    body: JSON.stringify({ message }),
  };
}

interface SendEmailRequest {
  FromEmailAddress?: string;
  Destination?: { ToAddresses?: string[]; CcAddresses?: string[]; BccAddresses?: string[] };
  Content?: { Raw?: { Data?: string } };
  EmailTags?: { Name: string; Value: string }[];
  ConfigurationSetName?: string;
}

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer | string;
}

const json = (status: number, value: unknown): Reply => ({
  status,
  headers: { 'content-type': 'application/json' },
  body: JSON.stringify(value),
});

async function readBody(stream: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

function forward(upstream: string, req: IncomingMessage, body: Buffer): Promise<Reply & { body: Buffer }> {
  return new Promise((resolve, reject) => {
    const target = new URL(req.url ?? '/', upstream);
    const outgoing = httpRequest(
      target,
      { method: req.method, headers: { ...req.headers, host: target.host } },
      async (response) => {
        try {
          const { 'transfer-encoding': _chunked, ...headers } = response.headers;
          resolve({ status: response.statusCode ?? 502, headers, body: await readBody(response) });
        } catch (error) {
          reject(error);
        }
      },
    );
    outgoing.once('error', reject).end(body);
  });
}

/**
 * SES processed the send; the client does not get the answer (or gets it only late). A timer is
 * dropped when the connection closes, so a client that gives up (or close()) leaves nothing behind.
 */
function withholdAnswer(res: ServerResponse, reply: Reply, fault: SesLostAnswer): void {
  if (fault.answerAfterMs === undefined) {
    if (fault.lostAnswer === 'reset') res.destroy();
    return;
  }
  const timer = setTimeout(() => {
    if (res.destroyed) return;
    if (fault.lostAnswer === 'reset') res.destroy();
    else res.writeHead(reply.status, reply.headers).end(reply.body);
  }, fault.answerAfterMs);
  res.once('close', () => clearTimeout(timer));
}

function checkLostAnswer(fault: SesLostAnswer): void {
  if (fault.lostAnswer !== 'hang' && fault.lostAnswer !== 'reset') {
    throw new RangeError(
      `ses capture: lostAnswer must be 'hang' or 'reset', not ${String(fault.lostAnswer)}`,
    );
  }
  const delay = fault.answerAfterMs;
  // setTimeout would turn Infinity or NaN into 1 ms: the opposite of what was asked.
  if (delay !== undefined && !(Number.isFinite(delay) && delay >= 0)) {
    throw new RangeError(`ses capture: answerAfterMs must be a finite number >= 0, not ${delay}`);
  }
}
