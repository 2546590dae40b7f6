import type { BounceCause, FeedbackEvent } from './feedback-event.ts';

export type BounceType = NonNullable<FeedbackEvent['bounceType']>;

/** The causes about the address itself: the only ones that can make a bounce hard. */
const ADDRESS_CAUSES: ReadonlySet<BounceCause> = new Set([
  'user-unknown',
  'mailbox-disabled',
  'host-unknown',
]);

/** Whether a cause is about the address itself (the only causes that can make a bounce hard). */
export function isAddressCause(cause: BounceCause): boolean {
  return ADDRESS_CAUSES.has(cause);
}

/**
 * What the remote server's own words name, per cause. The causes that are not about the address come
 * first and win: a diagnostic that names a quota, a rate, a blocklist, a policy, content or an expiry
 * is about the message, the sender or the moment, whatever status code came with it.
 */
export const CAUSE_PATTERNS: readonly (readonly [BounceCause, readonly RegExp[]])[] = [
  [
    'over-quota',
    [
      /\bover\s*quota\b/i,
      /\bquota (?:exceeded|full)\b/i,
      /\bexceeded? (?:the |their |his |her )?(?:storage |mailbox |disk )?quota\b/i,
      /\b(?:mailbox|mail box|inbox|mail ?folder) (?:is )?(?:full|over|exceeded)\b/i,
      /\binsufficient (?:system )?storage\b/i,
      /\bmailbox size limit\b/i,
      /\bnot enough (?:storage|space|disk)\b/i,
    ],
  ],
  [
    'rate-limited',
    [
      /\brate[ -]?limit/i,
      /\btoo many (?:recipients|messages|mails|connections|emails|requests)\b/i,
      /\b(?:messages|mails|recipients) (?:per|this|an|in the last) (?:hour|minute|day)\b/i,
      /\btry (?:again )?later\b/i,
      /\b(?:receiving|sending) (?:mail )?at a rate\b/i,
      /\bthrottl/i,
      /\bexceeded? (?:the )?(?:daily |hourly )?(?:sending |message )?limit\b/i,
    ],
  ],
  [
    'blocked',
    [
      /\b(?:black|block|deny|dnsbl|rbl)\s*-?list/i,
      /\bblocked\b/i,
      /\bspamhaus\b|\bspamcop\b|\bsorbs\b|\bbarracuda ?central\b|\bDNSBL\b|\bRBL\b/i,
      /(?<!\bnot\s)\blisted (?:on|at|by|in (?:the )?(?:rbl|dnsbl|spamhaus|sbl|cbl|xbl|pbl|block|black))/i,
      /\breputation\b/i,
      /\bIP (?:address )?(?:is |was |has been )?(?:black|block|listed|banned|denied|rejected|not allowed)|\b(?:your|sending|client|the sender'?s?) IP\b/i,
      /\bPTR\b|\breverse (?:dns|lookup)\b|\brdns\b/i,
    ],
  ],
  [
    'content',
    [
      /\bspam\b/i,
      /\bvirus\b|\bmalware\b|\binfected\b/i,
      /\bcontent (?:rejected|filter|policy|violation)|\b(?:message|mail) content\b/i,
      /\bmessage (?:size )?(?:is )?too (?:large|big)\b|\bexceeds? (?:the )?(?:maximum )?(?:message )?size\b/i,
    ],
  ],
  [
    'policy',
    [
      /\bpolicy\b|\bpolicies\b/i,
      /\bnot (?:allowed|permitted|authori[sz]ed)\b/i,
      /\brelay(?:ing)? (?:access )?(?:denied|not permitted|prohibited)\b|\bunable to relay\b/i,
      /\brecipient(?:'s)? preferences\b/i,
      /\b(?:do not|don't|may not|does not) have (?:the )?permission\b/i,
      /\brefused due to\b/i,
      /\baccess denied\b/i,
      /\bSPF\b|\bDMARC\b|\bDKIM\b|\bauthenticat/i,
      /\bsender (?:address )?(?:rejected|denied|blocked|verify failed)\b/i,
    ],
  ],
  [
    'expired',
    [
      /\bexpired\b/i,
      /\bretry time(?:out| not reached|d out)\b/i,
      /\bcould not be delivered within\b/i,
      /\bgiven up\b.*\b(?:days|hours)\b|\bfor (?:the past |more than )?\d+ (?:days|hours)\b/i,
      /\btimed? ?out\b/i,
    ],
  ],
  // A local delivery agent that failed (procmail, a pipe, a full disk): the server's fault, not the address.
  [
    'other',
    [/\bprocmail\b|\bcouldn't create\b|\bcommand (?:died|failed)\b|\bmailer error\b|\bpermission denied\b/i],
  ],
  [
    'host-unknown',
    [
      /\bhost (?:or domain name )?not found\b|\bunknown host\b|\bhost unknown\b/i,
      /\bdomain (?:name )?(?:not found|does ?n[o']t exist|is not valid)\b|\bno such domain\b|\bunknown domain\b/i,
      /\b(?:invalid|illegal) (?:host\/)?domain(?: name)?\b/i,
      /\bno (?:valid )?MX\b|\bnull MX\b|\bMX (?:record )?not found\b/i,
      /\bname or service not known\b|\bNXDOMAIN\b|\bunrouteable (?:mail )?domain\b/i,
      /\bdoes not accept mail\b|\bno SMTP service\b|\bcouldn't find (?:a |any )?(?:mail exchanger|host)\b/i,
    ],
  ],
  ['mailbox-disabled', [/\bdisabled\b/i, /\binactive\b/i, /\bsuspended\b/i, /\bdeactivated\b/i]],
  [
    'user-unknown',
    [
      /\buser unknown\b|\bunknown user\b|\bunknown (?:recipient|mailbox|address|account|local[ -]part)\b/i,
      /\bno such (?:user|mailbox|recipient|address|account|person|local user)\b/i,
      /\b(?:does ?n[o']t|doesn't|not) exists?\b/i,
      /\bmailbox (?:is )?unavailable\b|\bmailbox not found\b|\bmailbox (?:name )?(?:is )?invalid\b/i,
      /\bdoes(?:n't| not) have an? [\w. -]*account\b/i,
      /\b(?:recipient|user) name is not recogni[sz]ed\b/i,
      /\b(?:e-?mail )?address (?:you entered |you specified )?(?:couldn't|could not|can't|cannot) be found\b/i,
      /\b(?:user|recipient|address|mailbox|addressee) (?:is )?(?:not found|unknown|not known|invalid|not recogni[sz]ed)\b/i,
      /\binvalid (?:recipient|address|mailbox|user)\b/i,
      /\bnot listed in\b|\bunrouteable address\b|\bno mailbox\b|\bbad destination mailbox\b/i,
      /\bRecipientNotFound\b|\bno longer (?:valid|available|in use)\b|\bhas moved\b/i,
      // Japanese (Lotus Notes, Domino): a user or address not found, not in the directory.
      /(?:ユーザー?|アドレス|宛先|受信者).*(?:見つかりません|存在しません)|ディレクトリ(?:のリスト)?に(?:は)?(?:見つかりません|ありません)/,
    ],
  ],
];

/**
 * Exchange Online's directory-based edge blocking: "550 5.4.1 Recipient address rejected: Access
 * denied" is its answer for an address its tenant does not have (learn.microsoft.com, "Fix NDR error
 * 550 5.4.1 in Exchange Online"), though "access denied" reads as policy.
 */
export const EXCHANGE_RECIPIENT_NOT_FOUND = /\b5\.4\.1\b.*\bRecipient address rejected: Access denied\b/i;

/** The first cause whose patterns match the text, in the table's order; undefined when none does. */
export function causeFromText(text: string | undefined): BounceCause | undefined {
  if (!text) return undefined;
  if (EXCHANGE_RECIPIENT_NOT_FOUND.test(text)) return 'user-unknown';
  return CAUSE_PATTERNS.find(([, patterns]) => patterns.some((pattern) => pattern.test(text)))?.[0];
}

/**
 * The first enhanced status code (class.subject.detail) in the text, without leading zeros: `5.1.1`
 * from `5.1.1 (Remote SMTP server has rejected address)`, `smtp; 550 5.1.1 <a@b>: user unknown` or
 * qmail's `(#5.1.1)`, but never from an IP address such as 192.0.2.1.
 */
export function enhancedStatus(text: string): string | undefined {
  return enhancedStatuses(text)[0];
}

/** Every enhanced status code in the text, in order. */
function enhancedStatuses(text: string): string[] {
  return [...text.matchAll(/(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?!\.?\d)/g)].map(
    (match) => `${match[1]}.${Number(match[2])}.${Number(match[3])}`,
  );
}

/**
 * The diagnostic's own code: its first, unless that says no more than X.Y.0 and a later one does. A
 * relaying server may put its own unspecific code before the remote's (Amazon SES: "5.1.0 - Unknown
 * address error 550-'5.7.1 … Access denied'"); Exchange's "4.4.7 QUEUE.Expired … 421 4.3.2" is its own.
 */
function diagnosticStatus(diagnostic: string): string | undefined {
  const [first, ...later] = enhancedStatuses(diagnostic);
  return first?.endsWith('.0') ? (later.find((code) => !code.endsWith('.0')) ?? first) : first;
}

/** The class (2, 4 or 5) of the first SMTP reply code in the text (`550 `, `550-`, `said: 550`). */
export function replyClass(text: string): '2' | '4' | '5' | undefined {
  const match = /(?<![\d.#/-])([245])\d\d(?=[ :-]|$)/m.exec(text);
  return match?.[1] as '2' | '4' | '5' | undefined;
}

/**
 * Whether a failed delivery with this enhanced status code (RFC 3463) alone points at the recipient's
 * address, the one kind of failure the relay suppresses the address for:
 * - 5.1.x, addressing: bad mailbox 5.1.1, bad domain 5.1.2, bad syntax 5.1.3, moved 5.1.6, Exchange's
 *   RESOLVER.ADR.RecipientNotFound 5.1.10 and its 5.1.351 "unknown recipient";
 * - 5.2.1, mailbox disabled.
 * Everything else is soft. 4.x.x may still succeed. 5.2.2 mailbox full, 5.3.4 message too large and
 * 5.7.x policy (5.7.1, Exchange's 5.7.708 for a tenant's sending reputation) are about this message or
 * its sender: suppressing the address for them would silently stop mail to someone who can receive it.
 * For the same reason three 5.1.x are soft: 5.1.7 and 5.1.8 are the sender's address, and 5.1.0 ("other
 * address status") is what Exchange Online reports an SPF failure of the sender's domain with.
 * No status at all is soft: nothing says the address is bad.
 */
export function bounceTypeFor(status: string | undefined): BounceType {
  return status !== undefined && addressCauseOf(status) !== undefined ? 'hard' : 'soft';
}

/** X.1.0 other address status, X.1.7 bad sender mailbox syntax, X.1.8 bad sender system address. */
const SENDER_OR_UNSPECIFIED_ADDRESS: ReadonlySet<string> = new Set(['0', '7', '8']);

/** The address cause a permanent status code names by itself, if it names one. */
function addressCauseOf(status: string): BounceCause | undefined {
  const code = enhancedStatus(status);
  if (code === undefined) return undefined;
  const [statusClass, subject, detail = ''] = code.split('.');
  if (statusClass !== '5') return undefined;
  if (subject === '1' && !SENDER_OR_UNSPECIFIED_ADDRESS.has(detail)) {
    return detail === '2' ? 'host-unknown' : 'user-unknown';
  }
  return subject === '2' && detail === '1' ? 'mailbox-disabled' : undefined;
}

/** The cause a status code suggests when the text names none (for the cause kept on soft bounces). */
function statusCauseOf(code: string | undefined): BounceCause {
  if (code === undefined) return 'other';
  const address = addressCauseOf(code);
  if (address) return address;
  const [, subject, detail] = code.split('.');
  if (subject === '2' && detail === '2') return 'over-quota';
  if (subject === '4' && detail === '7') return 'expired';
  if (subject === '7') return 'policy';
  if (subject === '3' && detail === '4') return 'content';
  return 'other';
}

/**
 * X.0.0 and X.Y.0, a class or subject without the detail that would say what failed, and X.4.x, routing
 * and network, which some servers give for a domain that does not exist: the words decide.
 */
function isGeneric(code: string): boolean {
  return code.endsWith('.0') || code.split('.')[1] === '4' || code === NULL_MX_SENDER;
}

/**
 * RFC 7505's null MX code for the sender's domain. sendmail gives it for the recipient's domain too
 * (`Status: 5.7.27`, "550 Host does not accept mail"), so the words decide, and they must not name the
 * sender.
 */
const NULL_MX_SENDER = '5.7.27';

export interface BounceEvidence {
  /** The report's Status field (or what stands for it), when there is one. */
  readonly status?: string | undefined;
  /** The remote server's words for this recipient. */
  readonly diagnostic?: string | undefined;
  /** The report says the failure is permanent without any code (qmail, Exim, Gmail's text). */
  readonly permanent?: boolean | undefined;
}

/** The SMTP command a diagnostic says the refusal answered, when it is not RCPT TO. */
function smtpStage(diagnostic: string): 'sender' | 'data' | undefined {
  // The greeting (qmail: "Connected to … but my name was rejected") is about the sender's server too.
  if (/\b(?:after|in reply to) (?:MAIL FROM|HELO|EHLO)\b|\bmy name was rejected\b/i.test(diagnostic)) {
    return 'sender';
  }
  if (/\bafter end of data\b|\bin reply to end of DATA\b|\bafter DATA\b/i.test(diagnostic)) return 'data';
  return undefined;
}

export interface BounceClassification {
  readonly bounceType: BounceType;
  readonly cause: BounceCause;
  /** The most specific enhanced code the evidence has: a generic Status gives way to the diagnostic's. */
  readonly status?: string;
}

/**
 * Hard only when the evidence agrees. The status to judge is the Status field, unless it is missing or
 * generic (5.0.0, 5.x.0) and the diagnostic has a more specific code of its own (diagnosticStatus).
 * It is hard when it is permanent, and
 * - names the address itself (see bounceTypeFor), and the diagnostic's own code, when it has one, is
 *   no other specific code, or
 * - is generic or missing (with a 5xx reply or a report that says the failure is permanent), and the
 *   diagnostic names an address cause (user unknown, mailbox disabled, host unknown);
 * and, either way, the diagnostic names no other cause (quota, rate, blocklist, content, policy,
 * expiry): those win over any code. A 4.x.x is never hard.
 */
export function classifyBounce(evidence: BounceEvidence): BounceClassification {
  const fromStatus = evidence.status === undefined ? undefined : enhancedStatus(evidence.status);
  const fromDiagnostic =
    evidence.diagnostic === undefined ? undefined : diagnosticStatus(evidence.diagnostic);
  const status =
    fromStatus === undefined ||
    (isGeneric(fromStatus) && fromDiagnostic !== undefined && !isGeneric(fromDiagnostic)) ||
    // X.0.0 gives way to X.Y.0: the subject at least (Gmail: Status 5.0.0, "550 #5.1.0 Address rejected").
    (/^\d\.0\.0$/.test(fromStatus) && /^\d\.[1-9]\d*\.0$/.test(fromDiagnostic ?? ''))
      ? (fromDiagnostic ?? fromStatus)
      : fromStatus;
  const textCause = causeFromText(evidence.diagnostic);
  const stage = evidence.diagnostic === undefined ? undefined : smtpStage(evidence.diagnostic);
  const statusClass =
    status?.[0] ??
    (evidence.diagnostic === undefined ? undefined : replyClass(evidence.diagnostic)) ??
    (evidence.permanent ? '5' : undefined);
  const cause = textCause ?? statusCauseOf(status);
  const result = (bounceType: BounceType): BounceClassification => ({
    bounceType,
    cause,
    ...(status && { status }),
  });

  if (statusClass !== '5') return result('soft');
  if (textCause !== undefined && !ADDRESS_CAUSES.has(textCause)) return result('soft');
  if (status === NULL_MX_SENDER && /\bsender\b/i.test(evidence.diagnostic ?? '')) {
    return { ...result('soft'), cause: 'policy' };
  }
  // Refused at HELO or MAIL FROM: about the sender. Refused at the end of DATA: the address was
  // accepted at RCPT TO, so it exists, and an "unknown user" then is a filter (Japanese carriers do).
  if (stage !== undefined) {
    return { ...result('soft'), cause: stage === 'sender' ? 'policy' : 'content' };
  }
  // The diagnostic's own specific code must not contradict the status (5.1.1 with a 550 5.7.1).
  if (fromDiagnostic && !isGeneric(fromDiagnostic) && addressCauseOf(fromDiagnostic) === undefined) {
    return { ...result('soft'), cause: textCause ?? statusCauseOf(fromDiagnostic) };
  }
  if (status !== undefined && !isGeneric(status)) {
    return result(addressCauseOf(status) === undefined ? 'soft' : 'hard');
  }
  return result(textCause !== undefined ? 'hard' : 'soft');
}
