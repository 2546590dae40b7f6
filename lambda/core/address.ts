/** A parsed mailbox: `"Ana Pérez" <ana@example.com>` → { name: 'Ana Pérez', address: 'ana@example.com' }. */
export interface Mailbox {
  readonly name?: string;
  readonly address: string;
}

// Dot-atom local part and an LDH domain with a TLD. Deliberately ASCII-only: SES and Exchange need
// international domains in punycode, and SMTPUTF8 local parts are not accepted by SES.
const LOCAL_PART = "[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*";
const DOMAIN = '(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\\.)+[A-Za-z][A-Za-z0-9-]{0,61}[A-Za-z0-9]';
const ADDRESS_PATTERN = new RegExp(`^${LOCAL_PART}@${DOMAIN}$`);
const DOMAIN_PATTERN = new RegExp(`^${DOMAIN}$`);
const NAME_ADDR_PATTERN = /^(.*?)\s*<([^<>]*)>$/s;

const CRLF_PATTERN = /[\r\n]/;
const QUOTED_STRING = /"((?:[^"\\]|\\.)*)"/g;
const DISPLAY_NAME_PATTERN = /^(?:[^"\\]|"(?:[^"\\]|\\.)*")*$/;

export function isEmailAddress(value: string): boolean {
  return value.length <= 254 && ADDRESS_PATTERN.test(value);
}

export function isDomainName(value: string): boolean {
  return value.length <= 253 && DOMAIN_PATTERN.test(value);
}

export type ParsedMailbox = { ok: true; mailbox: Mailbox } | { ok: false; reason: string };

/** Accepts `a@b.com`, `<a@b.com>`, `Name <a@b.com>` and `"Name, Inc." <a@b.com>`. */
export function parseMailbox(input: string): ParsedMailbox {
  if (CRLF_PATTERN.test(input)) {
    return { ok: false, reason: 'must not contain CR or LF characters (header injection)' };
  }
  const trimmed = input.trim();
  const nameAddr = NAME_ADDR_PATTERN.exec(trimmed);
  const rawName = nameAddr ? (nameAddr[1] ?? '').trim() : '';
  const address = (nameAddr ? (nameAddr[2] ?? '') : trimmed).trim();
  if (!isEmailAddress(address)) {
    return {
      ok: false,
      reason: 'is not a valid email address (expected "a@example.com" or "Name <a@example.com>")',
    };
  }
  // A display name is plain words and "quoted strings" (RFC 5322 phrase): quotes must pair up, and a
  // backslash escapes the next character inside quotes.
  if (/[<>]/.test(rawName) || !DISPLAY_NAME_PATTERN.test(rawName)) {
    return { ok: false, reason: 'has a display name with unbalanced quotes or angle brackets' };
  }
  const name = rawName.replace(QUOTED_STRING, (_, inner: string) => inner.replace(/\\(.)/g, '$1'));
  return { ok: true, mailbox: name ? { name, address } : { address } };
}

export function domainOf(address: string): string {
  return address.slice(address.lastIndexOf('@') + 1).toLowerCase();
}

/**
 * Whether a sender identity (a domain or a full address, as verified in SES) covers an address.
 * A domain covers addresses at exactly that domain, matching how the IAM policy is scoped.
 */
export function identityCovers(identity: string, address: string): boolean {
  const normalized = identity.toLowerCase();
  return normalized.includes('@') ? normalized === address.toLowerCase() : normalized === domainOf(address);
}
