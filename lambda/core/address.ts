import { domainToASCII } from 'node:url';
import { unsafeTextProblem } from './unsafe-text.ts';

/** A parsed mailbox: `"Ana Pérez" <ana@example.com>` → { name: 'Ana Pérez', address: 'ana@example.com' }. */
export interface Mailbox {
  readonly name?: string;
  /** The address with its domain in ASCII (punycode); the local part as written (SMTPUTF8 may need it in UTF-8). */
  readonly address: string;
}

// Local part: a dot-atom or a quoted string (RFC 5321 4.1.2), each also taking UTF-8 beyond ASCII
// (RFC 6531 3.3), except controls, unpaired surrogates and spaces, which only hide what an address says.
const UTF8_NON_ASCII = '[^\\p{ASCII}\\p{Cc}\\p{Cs}\\p{White_Space}]';
const ATEXT = `(?:[A-Za-z0-9!#$%&'*+/=?^_\`{|}~-]|${UTF8_NON_ASCII})`;
const DOT_ATOM = `${ATEXT}+(?:\\.${ATEXT}+)*`;
const QUOTED_LOCAL = `"(?:[\\x20\\x21\\x23-\\x5B\\x5D-\\x7E]|\\\\[\\x20-\\x7E]|${UTF8_NON_ASCII})*"`;
const LOCAL_PART_PATTERN = new RegExp(`^(?:${DOT_ATOM}|${QUOTED_LOCAL})$`, 'u');
// An LDH domain with a TLD, checked on the ASCII form: SES and Exchange take international domains in
// punycode only.
const DOMAIN = '(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\\.)+[A-Za-z][A-Za-z0-9-]{0,61}[A-Za-z0-9]';
const DOMAIN_PATTERN = new RegExp(`^${DOMAIN}$`);
// What domainToASCII may see: letters, digits, dots, hyphens and non-ASCII. Anything else it would read
// as part of a URL ("a/b.com" → "a").
const DOMAIN_CHARACTERS = /^(?:[A-Za-z0-9.-]|\P{ASCII})+$/u;
const NON_ASCII = /\P{ASCII}/u;
/** SMTP's limit for a path, in octets (RFC 5321 4.5.3.1.3 and Errata 1690). */
const MAX_ADDRESS_OCTETS = 254;

const CRLF_PATTERN = /[\r\n]/;
const QUOTED_STRING = /"((?:[^"\\]|\\.)*)"/g;
const DISPLAY_NAME_PATTERN = /^(?:[^"\\]|"(?:[^"\\]|\\.)*")*$/;
const WHITESPACE = /\s+/g;

const INVALID_ADDRESS = 'is not a valid email address (expected "a@example.com" or "Name <a@example.com>")';
const BAD_NAME = 'has a display name with unbalanced quotes or angle brackets';

type Checked<T> = { ok: true; value: T } | { ok: false; reason: string };

/**
 * An address as SMTP carries it: `a@example.com`, `"john doe"@example.com`, `josé@example.com`,
 * `ana@bücher.de`. No display name, comments or surrounding spaces.
 */
export function isEmailAddress(value: string): boolean {
  return checkAddress(value).ok;
}

/** A domain name, ASCII or international (`bücher.de`), that has an ASCII form with a TLD. */
export function isDomainName(value: string): boolean {
  return toAsciiDomain(value) !== undefined;
}

/**
 * The domain in ASCII: an international one in punycode (`bücher.de` → `xn--bcher-kva.de`, lower case
 * as IDNA maps it), an ASCII one as given. Undefined when it is not a domain name with a TLD.
 */
export function toAsciiDomain(domain: string): string | undefined {
  const checked = checkDomain(domain);
  return checked.ok ? checked.value : undefined;
}

/** Whether the address has a non-ASCII local part, which only a server offering SMTPUTF8 can carry (RFC 6531). */
export function needsSmtpUtf8(address: string): boolean {
  const at = address.lastIndexOf('@');
  return NON_ASCII.test(at < 0 ? address : address.slice(0, at));
}

export type ParsedMailbox = { ok: true; mailbox: Mailbox } | { ok: false; reason: string };

/**
 * Accepts `a@b.com`, `<a@b.com>`, `Name <a@b.com>`, `"Name, Inc." <a@b.com>` and RFC 5322 comments
 * (`a@b.com (Name)`, `Name <a@b.com> (sales)`): comments are dropped, and without a display name the
 * comment becomes the name (the obsolete `address (Name)` style). The address comes back with its
 * domain in ASCII.
 */
export function parseMailbox(input: string): ParsedMailbox {
  if (CRLF_PATTERN.test(input)) {
    return { ok: false, reason: 'must not contain CR or LF characters (header injection)' };
  }
  const scanned = withoutComments(input);
  if (scanned === 'unbalanced comment') {
    return { ok: false, reason: 'has a comment with unbalanced parentheses' };
  }
  if (scanned === 'unbalanced quote') {
    return { ok: false, reason: input.trimEnd().endsWith('>') ? BAD_NAME : INVALID_ADDRESS };
  }
  const parts = splitNameAddr(scanned.text);
  if (!parts) return { ok: false, reason: INVALID_ADDRESS };
  const address = checkAddress(parts.addrSpec);
  if (!address.ok) return address;
  // A display name is plain words and "quoted strings" (RFC 5322 phrase): quotes must pair up, and a
  // backslash escapes the next character inside quotes.
  const rawName = parts.name.trim();
  if (/[<>]/.test(rawName) || !DISPLAY_NAME_PATTERN.test(rawName)) {
    return { ok: false, reason: BAD_NAME };
  }
  const name = phraseText(rawName) || commentName(scanned.comments);
  const problem = unsafeTextProblem(name);
  if (problem) return { ok: false, reason: `display name ${problem}` };
  return { ok: true, mailbox: name ? { name, address: address.value } : { address: address.value } };
}

/** The lower-cased ASCII domain of an address (`Ana@Bücher.DE` → `xn--bcher-kva.de`). */
export function domainOf(address: string): string {
  return comparableDomain(address.slice(address.lastIndexOf('@') + 1));
}

/** Whether two addresses name the same mailbox: any case, and a domain in Unicode or punycode alike. */
export function sameAddress(a: string, b: string): boolean {
  const localOf = (address: string) => address.slice(0, Math.max(0, address.lastIndexOf('@'))).toLowerCase();
  return a.includes('@') && b.includes('@') && localOf(a) === localOf(b) && domainOf(a) === domainOf(b);
}

/**
 * Whether a sender identity (a domain or a full address, as verified in SES) covers an address.
 * A domain covers addresses at exactly that domain, matching how the IAM policy is scoped; Unicode and
 * punycode spellings of a domain are the same domain.
 */
export function identityCovers(identity: string, address: string): boolean {
  return identity.includes('@')
    ? sameAddress(identity, address)
    : comparableDomain(identity) === domainOf(address);
}

function comparableDomain(domain: string): string {
  return (toAsciiDomain(domain) ?? domain).toLowerCase();
}

/** An addr-spec, checked, with its domain in ASCII. */
function checkAddress(spec: string): Checked<string> {
  const unsafe = unsafeTextProblem(spec);
  if (unsafe) return { ok: false, reason: `address ${unsafe}` };
  const at = spec.lastIndexOf('@');
  if (at <= 0 || !LOCAL_PART_PATTERN.test(spec.slice(0, at))) return { ok: false, reason: INVALID_ADDRESS };
  const domain = checkDomain(spec.slice(at + 1));
  if (!domain.ok) return domain;
  const address = `${spec.slice(0, at)}@${domain.value}`;
  if (Buffer.byteLength(address) > MAX_ADDRESS_OCTETS) {
    return { ok: false, reason: `is longer than ${MAX_ADDRESS_OCTETS} octets, the most SMTP carries` };
  }
  return { ok: true, value: address };
}

function checkDomain(domain: string): Checked<string> {
  if (!DOMAIN_CHARACTERS.test(domain)) return { ok: false, reason: INVALID_ADDRESS };
  // ASCII stays as written (case included); only an international domain is converted (UTS 46).
  const ascii = NON_ASCII.test(domain) ? domainToASCII(domain) : domain;
  if (ascii === '') {
    return { ok: false, reason: 'has a domain that is not a valid international domain name (IDNA)' };
  }
  return ascii.length <= 253 && DOMAIN_PATTERN.test(ascii)
    ? { ok: true, value: ascii }
    : { ok: false, reason: INVALID_ADDRESS };
}

/**
 * The input without its RFC 5322 comments (each becomes a space), and the comments' text. A comment is
 * `(…)` outside a quoted string; comments nest, and a backslash escapes the next character in both.
 */
function withoutComments(
  input: string,
): { text: string; comments: string[] } | 'unbalanced comment' | 'unbalanced quote' {
  let text = '';
  let comment = '';
  const comments: string[] = [];
  let depth = 0;
  let quoted = false;
  for (let index = 0; index < input.length; index += 1) {
    const char = input.charAt(index);
    const escaped = char === '\\' && index + 1 < input.length;
    if (depth > 0) {
      if (escaped) {
        index += 1;
        comment += input.charAt(index);
      } else if (char === ')' && depth === 1) {
        depth = 0;
        comments.push(comment);
        comment = '';
        text += ' ';
      } else {
        if (char === '(') depth += 1;
        if (char === ')') depth -= 1;
        comment += char;
      }
    } else if (quoted) {
      text += char;
      if (escaped) {
        index += 1;
        text += input.charAt(index);
      } else if (char === '"') {
        quoted = false;
      }
    } else if (char === '(') {
      depth = 1;
    } else if (char === ')') {
      return 'unbalanced comment';
    } else {
      if (char === '"') quoted = true;
      text += char;
    }
  }
  if (depth > 0) return 'unbalanced comment';
  if (quoted) return 'unbalanced quote';
  return { text, comments };
}

/**
 * `Name <addr>` split at its last `<` outside quotes (so a quoted local part may hold `<`), or a bare
 * addr-spec. Undefined when the brackets do not close the input.
 */
function splitNameAddr(text: string): { name: string; addrSpec: string } | undefined {
  const opens: number[] = [];
  const closes: number[] = [];
  let quoted = false;
  for (let index = 0; index < text.length; index += 1) {
    const char = text.charAt(index);
    if (quoted && char === '\\') index += 1;
    else if (char === '"') quoted = !quoted;
    else if (!quoted && char === '<') opens.push(index);
    else if (!quoted && char === '>') closes.push(index);
  }
  const open = opens.at(-1);
  if (open === undefined) return closes.length === 0 ? { name: '', addrSpec: text.trim() } : undefined;
  const close = closes.filter((index) => index > open);
  if (close.length !== 1 || close[0] !== text.trimEnd().length - 1) return undefined;
  return { name: text.slice(0, open), addrSpec: text.slice(open + 1, close[0]).trim() };
}

/** A phrase's text: quoted strings unquoted and unescaped, runs of spaces outside them made one. */
function phraseText(phrase: string): string {
  let text = '';
  let last = 0;
  for (const match of phrase.matchAll(QUOTED_STRING)) {
    text += phrase.slice(last, match.index).replace(WHITESPACE, ' ');
    text += (match[1] ?? '').replace(/\\(.)/gs, '$1');
    last = match.index + match[0].length;
  }
  return (text + phrase.slice(last).replace(WHITESPACE, ' ')).trim();
}

function commentName(comments: readonly string[]): string {
  return comments
    .map((comment) => comment.replace(WHITESPACE, ' ').trim())
    .filter((comment) => comment !== '')
    .join(' ');
}
