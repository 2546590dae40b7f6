/**
 * Readers for the bounces that are not RFC 3464 reports: the plain-text messages of qmail, Exim (3 and
 * 4), Postfix and sendmail without DSN, Gmail and Google Groups, Exchange 2003, OpenSMTPD, Lotus Notes,
 * Yahoo and the like. They share one shape: an introduction, then each failed address at the start of a
 * line with the remote server's words after it or on the lines below (Lotus Notes: above), then a
 * marker and the returned original. The same reading gives an RFC 3464 report's text its words per
 * address (recipientWords).
 */

/** One recipient as a plain-text bounce reports it. */
export interface TextRecipient {
  readonly recipient: string;
  readonly diagnostic?: string;
  readonly delayed: boolean;
}

export interface TextReport {
  /** Which reader recognised it (for tests and counts). */
  readonly format: TextFormat;
  readonly recipients: readonly TextRecipient[];
  /**
   * A failure notice rather than a delay warning: servers send one only once they have given up, so
   * without any code its failure counts as permanent (its words still have to name an address cause).
   */
  readonly permanent: boolean;
  /** The text after the original-message marker: the returned original, when quoted. */
  readonly original?: string;
  /** The report's own text, before the original. */
  readonly text: string;
}

export const TEXT_FORMATS = [
  'qmail',
  'exim',
  'postfix',
  'sendmail',
  'gmail',
  'google-groups',
  'exchange-2003',
  'opensmtpd',
  'notes',
  'generic',
] as const;
export type TextFormat = (typeof TEXT_FORMATS)[number];

/** Lotus Notes' heading over its reasons, each on the line above the address it concerns. */
const NOTES_FAILURE_REASONS = /-{3,}\s*Failure Reasons\s*-{3,}/i;

/** Each format's introduction, the words that make a plain-text message a bounce. */
const INTRODUCTIONS: readonly (readonly [TextFormat, RegExp])[] = [
  ['qmail', /\bThis is the qmail-send program\b|\bqmail-send\b/i],
  // Exim 3 writes its log and the failed addresses between ruled lines: "|---- Failed addresses follow: ---|".
  [
    'exim',
    /\bThis message was created automatically by mail delivery software\b|^\|?-{3,}\s*Failed addresses follow:?\s*-{3,}/im,
  ],
  ['postfix', /\bThis is the mail system at host\b|\bThis is the Postfix program\b/i],
  [
    'sendmail',
    /-{3,}\s*The following addresses? had (?:permanent fatal|delivery) errors|-{3,}\s*Transcript of session follows/i,
  ],
  [
    'gmail',
    /\bDel[ie]very to the following recipients? (?:failed|has been delayed|was aborted)\b|\bYour message wasn't delivered to\b/i,
  ],
  ['google-groups', /\bthe group you tried to contact\b|\bGoogle Groups\b/i],
  [
    'exchange-2003',
    /\bYour message did not reach some or all of the intended recipients\b|\bdid not reach the following recipient/i,
  ],
  // OpenSMTPD's greeting, above a failure or a delay ("A message is delayed for more than 4 hours").
  ['opensmtpd', /\bThis is the MAILER-DAEMON, please DO NOT REPLY to this e-?mail\b/i],
  // Notes' "Failure Reasons" block; Domino's "Your message … was not delivered to:", the address below.
  ['notes', new RegExp(String.raw`${NOTES_FAILURE_REASONS.source}|^\s*was not delivered to:\s*$`, 'im')],
  [
    'generic',
    /\ban error (?:has )?occurred while (?:trying|attempting) to deliver\b|\b(?:unable|could not|couldn't|cannot|was not able|wasn't able) (?:to )?(?:be )?deliver(?:ed)?\b|\bhad trouble delivering\b|\bdelivery (?:has )?failed\b|\bundeliver(?:able|ed)\b|\bpermanent (?:error|failure)\b|\bfollowing address(?:es|\(es\))? (?:failed|had)\b/i,
  ],
];

/** A bounce's sender: a mailer daemon, a postmaster or a delivery system. */
const DAEMON_SENDER =
  /\b(?:mailer-daemon|mail-daemon|postmaster|mailer|mail delivery (?:system|subsystem|service)|mail administrator|system administrator)\b/i;
/** Whether a message's From is a mailer daemon, a postmaster or a delivery system. */
export function fromMailerDaemon(from: string): boolean {
  return DAEMON_SENDER.test(from);
}

/** A bounce's subject. */
const BOUNCE_SUBJECT =
  /\b(?:undeliver|undelivered|returned mail|delivery (?:status notification|failure|failed|problem|has failed|notification)|failure notice|mail delivery failed|non-?delivery|could not (?:be )?deliver|warning: could not send|returning message to sender)/i;

/**
 * Where the returned original starts: a dashed line naming a copy, the original, the unsent message;
 * Exchange's "Original message headers:".
 */
const ORIGINAL_MARKER =
  /^[ \t]*\|?(?:-{2,}|={2,}).*\b(?:copy of|original|unsent message|returned message|header of the|rejected message|message follows|message text follows)\b.*$|^[ \t]*Original message headers:[ \t]*$/im;

/** A header line of the returned original, at the start of a line (the capture marks it as kept). */
const ORIGINAL_HEADER = /^(Received|Return-Path|DKIM-Signature|Message-I[dD]|MIME-Version)[ \t]*:/m;

/**
 * An address at the start of a line, after spaces, a quote or an angle bracket, or after a reply code
 * (sendmail's `550 <a@b>... User unknown`).
 */
const LEADING_ADDRESS =
  /^[ \t]*(?:[245]\d\d[ -](?:[245]\.\d{1,3}\.\d{1,3} )?)?(?:"|<|mailto:)?([^\s<>"@,;:()[\]]+@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)(?:"|>)?(.*)$/;

const DELAYED =
  /\b(?:delayed|has not yet been delivered|will (?:continue|keep) (?:trying|to try)|still trying|warning: could not send|not yet been delivered|this is a warning message only)\b/i;

export interface TextMessage {
  readonly from: string;
  readonly subject: string;
  /** The message's text: its first text/plain part or its body. */
  readonly text: string;
  /** X-Failed-Recipients (Exim, Google), when present. */
  readonly failedRecipients: readonly string[];
}

/**
 * Reads a plain-text bounce; undefined when the message is not one: it must have a bounce's
 * introduction, come from a mailer daemon (or carry a bounce's subject and a known MTA's introduction),
 * and name at least one failed address.
 */
export function readTextReport(message: TextMessage): TextReport | undefined {
  const { report, original } = splitOriginal(message.text);
  const format = INTRODUCTIONS.find(([, pattern]) => pattern.test(report))?.[0];
  if (format === undefined) return undefined;
  // A person forwarding a bounce, an auto-reply quoting one: only a daemon's message, or one with a
  // bounce's subject and a known MTA's own introduction, is read.
  const fromDaemon = fromMailerDaemon(message.from);
  const forwarded = /^\s*(?:fwd?|re|aw|wg|tr)\s*:/i.test(message.subject);
  if (!fromDaemon && (forwarded || format === 'generic' || !BOUNCE_SUBJECT.test(message.subject))) {
    return undefined;
  }

  const delayed = DELAYED.test(report) && !/\bpermanent/i.test(report);
  const blocks = recipientBlocks(report, message.from);
  // Exim and Google name the failed addresses in a header too: the ones the text does not show
  // (Google Groups' text names only the group) still count, with the whole report as the evidence.
  const named = new Set(blocks.map((block) => block.recipient));
  for (const address of message.failedRecipients) {
    if (!named.has(address)) blocks.push({ recipient: address, lines: reportLines(report) });
  }
  // sendmail's failed "address" may be a program (`"|exec procmail …"`); the report is still read when
  // its text carries RFC 3464 recipient fields (a multipart that could not be split), which the caller reads.
  if (blocks.length === 0 && !/^Final-Recipient[ \t]*:/im.test(report)) return undefined;
  const reasonsAbove = NOTES_FAILURE_REASONS.test(report);
  const diagnostics = blocks.map((block) => (reasonsAbove ? block.above : diagnosticOf(block, report)));
  // Addresses listed together share the one error: below the last (Gmail, sendmail), or above the first
  // (Lotus Notes).
  if (reasonsAbove) {
    for (let index = 1; index < diagnostics.length; index++) {
      diagnostics[index] ??= diagnostics[index - 1];
    }
  } else {
    for (let index = diagnostics.length - 2; index >= 0; index--) {
      diagnostics[index] ??= diagnostics[index + 1];
    }
  }
  const recipients = blocks.map((block, index) => {
    const diagnostic = diagnostics[index];
    return { recipient: block.recipient, delayed, ...(diagnostic && { diagnostic }) };
  });
  return { format, recipients, permanent: !delayed, text: report, ...(original && { original }) };
}

/**
 * What the human-readable part of an RFC 3464 report says about each address it names, for recipients
 * whose delivery-status block has no Diagnostic-Code (OpenSMTPD, Gmail and sendmail often write only
 * `Status: 5.0.0` there and put the remote server's words in the text).
 */
export function recipientWords(message: Pick<TextMessage, 'from' | 'text'>): ReadonlyMap<string, string> {
  const { report } = splitOriginal(message.text);
  const words = new Map<string, string>();
  for (const block of recipientBlocks(report, message.from)) {
    const diagnostic = diagnosticOf(block, report);
    if (diagnostic) words.set(block.recipient, diagnostic);
  }
  return words;
}

/** The returned original's header as a report's text quotes it, when it does. */
export function quotedOriginal(text: string): string | undefined {
  return splitOriginal(text).original?.replace(/^\s+/, '') || undefined;
}

/** The report's own text, and the returned original after its marker when quoted. */
function splitOriginal(text: string): { readonly report: string; readonly original?: string } {
  // The report ends at the marker, or where the original's header starts without one (Zoho, X3).
  const marker = ORIGINAL_MARKER.exec(text) ?? ORIGINAL_HEADER.exec(text);
  if (!marker) return { report: text };
  return {
    report: text.slice(0, marker.index),
    original: text.slice(marker.index + (marker[1] === undefined ? marker[0].length : 0)),
  };
}

interface Block {
  readonly recipient: string;
  readonly lines: string[];
  /** The last non-blank line above the address (Lotus Notes writes the reason there). */
  readonly above?: string;
}

/**
 * Each line that starts with an address starts a recipient; the rest of that line and the lines below,
 * up to the next such line, are its words. The report's own sender is not a recipient, nor is an
 * address that a line of a session transcript (`>>> RCPT To:`, `<<< 550`) starts with.
 */
function recipientBlocks(report: string, from: string): Block[] {
  const sender = /<([^<>]+@[^<>]+)>/.exec(from)?.[1]?.toLowerCase() ?? from.trim().toLowerCase();
  const blocks: Block[] = [];
  let current: Block | undefined;
  let above: string | undefined;
  const bulleted = BULLETED_LIST.test(report);
  for (const line of report.split(/\r?\n/)) {
    const match =
      LEADING_ADDRESS.exec(line) ??
      (bulleted ? BULLETED_ADDRESS.exec(line) : null) ??
      firstMatch(INLINE_RECIPIENTS, line);
    const address = match?.[1]?.toLowerCase().replace(/\.$/, '');
    if (match && address && address !== sender && !isHeaderLine(line)) {
      const existing = blocks.find((block) => block.recipient === address);
      current = existing ?? { recipient: address, lines: [], ...(above && { above }) };
      if (!existing) blocks.push(current);
      // The reply code before the address is part of the words.
      const before = /^\s*([245]\d\d[ -](?:[245]\.\d{1,3}\.\d{1,3} )?)/.exec(line)?.[1] ?? '';
      current.lines.push(`${before}${match[2] ?? ''}`);
    } else if (current && TRANSCRIPT_LINE.test(line) && !line.toLowerCase().includes(current.recipient)) {
      // A session transcript's line about another host or address ends this recipient's words.
      current = undefined;
    } else if (current) {
      current.lines.push(line);
    }
    if (line.trim() !== '') above = match ? undefined : line.trim();
  }
  return blocks;
}

/** An address (the capture), as the patterns below name it. */
const ADDRESS = String.raw`([^\s<>"@,;:()[\]]+@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)`;

/**
 * Sentences and labelled fields that name an address as the failed recipient, anywhere on a line (an
 * address in any other sentence is not read): each captures the address, then the rest of the line.
 * - Gmail: "Your message wasn't delivered to a@b because …";
 * - X6: "SMTP Server <host> rejected recipient <a@b> (…)", "The following recipients returned permanent
 *   errors: a@b. Reason: …";
 * - Zoho: "[Status: Error, Address: <a@b>, ResponseCode 421, …]";
 * - Sun/Oracle Messaging Server (PMDF): "Recipient address: a@b", its Reason and code on the lines below.
 */
const INLINE_RECIPIENTS: readonly RegExp[] = [
  new RegExp(String.raw`\bwasn't delivered to <?${ADDRESS}>?(.*)$`, 'i'),
  new RegExp(String.raw`\brejected recipient <${ADDRESS}>(.*)$`, 'i'),
  new RegExp(String.raw`\bThe following recipients? returned permanent errors?: <?${ADDRESS}>?(.*)$`, 'i'),
  new RegExp(String.raw`^\s*\[Status: [^,\]]*, Address: <${ADDRESS}>(.*)$`, 'i'),
  new RegExp(String.raw`^\s*Recipient address:\s*<?${ADDRESS}>?(.*)$`, 'i'),
];

function firstMatch(patterns: readonly RegExp[], line: string): RegExpExecArray | null {
  for (const pattern of patterns) {
    const match = pattern.exec(line);
    if (match) return match;
  }
  return null;
}

/**
 * A list of failed recipients with a bullet before each ("Delivery to the following recipients failed
 * permanently:" then "   * a@b", X3 and Gmail's older text): a bulleted line is read as an address
 * only when it holds nothing else, and only under that introduction.
 */
const BULLETED_LIST = /\bDel[ie]very to the following recipients? (?:failed|was aborted)\b/i;
const BULLETED_ADDRESS = new RegExp(String.raw`^[ \t]*\*[ \t]+<?${ADDRESS}>?[ \t]*()$`);

/**
 * A line of a sendmail session transcript: a command or reply (`>>>`, `<<<`), where the session was,
 * or a reply about an address or host (`550 <a@b>... User unknown`, `550 host (smtp)... Host unknown`).
 */
const TRANSCRIPT_LINE = /^\s*(?:>>>|<<<|(?:\.{3}\s*)?while talking)|^\s*[245]\d\d[ -].*\.\.\./i;

function isHeaderLine(line: string): boolean {
  return /^[ \t]*(?:from|to|cc|sender|reply-to|return-path)\s*:/i.test(line);
}

function reportLines(report: string): string[] {
  return report.split(/\r?\n/);
}

/**
 * A recipient's words, on one line. When its own block has no reply or status code (sendmail lists the
 * addresses, then a transcript), the transcript line that names the address with a code is added.
 */
function hasCode(text: string | undefined): boolean {
  return text !== undefined && /\b[245]\d\d\b|[245]\.\d{1,3}\.\d{1,3}/.test(text);
}

function diagnosticOf(block: Block, report: string): string | undefined {
  let text = block.lines.join(' ');
  if (!hasCode(text)) {
    const line = report
      .split(/\r?\n/)
      .find(
        (candidate) => candidate.toLowerCase().includes(block.recipient) && /\b[45]\d\d\b/.test(candidate),
      );
    if (line) text = `${text} ${line}`;
  }
  // The separator after an address at the start of a line (`a@b: 550 …`) is not part of the words.
  const words = text
    .replace(/\s+/g, ' ')
    .replace(/^[\s:]+/, '')
    .trim();
  return words || undefined;
}
