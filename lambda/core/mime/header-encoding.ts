import libmime from 'libmime';
import addressparser, { type Address } from 'nodemailer/lib/addressparser';
import { buildHeaderValue, encodeWord, encodeWords, quoteString } from 'nodemailer/lib/mime-funcs';

/** A folded header line may be at most 998 octets (RFC 5322 2.1.1). */
const MAX_LINE_OCTETS = 998;
// Encoded words of at most 75 characters (RFC 2047 2) once "=?UTF-8?Q?" and "?=" are around them.
const ENCODED_WORD_CHUNK = 52;
// Headers whose value is free text, so a word too long to fold can be re-encoded as several encoded words.
const UNSTRUCTURED = new Set(['subject', 'comments', 'content-description', 'thread-topic']);
export const ADDRESS_HEADERS = new Set([
  'from',
  'sender',
  'reply-to',
  'to',
  'cc',
  'bcc',
  'resent-from',
  'resent-sender',
  'resent-to',
  'resent-cc',
  'resent-bcc',
  'disposition-notification-to',
]);

// Anything but printable ASCII and tab, or text that a reader would take for an encoded word.
const NEEDS_ENCODED_WORD = /[^\x20-\x7e\t]|=\?/;
const PLAIN_PHRASE = /^[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]+(?: [A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]+)*$/;
const ADDR_SPEC = /^(?:"(?:[^"\\\r\n]|\\.)*"|[^\s"<>,;:()@[\]\\]+)@[^\s"<>,;:()@\\]+$/;

export function decodeWords(text: string): string {
  return libmime.decodeWords(text);
}

export function hasNonAscii(text: string): boolean {
  return /[\u0080-\uffff]/.test(text);
}

/** A display name as a phrase: as it is when plain, quoted when it has specials, encoded words otherwise. */
export function encodeDisplayName(name: string): string {
  if (NEEDS_ENCODED_WORD.test(name)) {
    return encodeWord(name, 'Q', ENCODED_WORD_CHUNK);
  }
  return PLAIN_PHRASE.test(name) ? name : quoteString(name);
}

/** Free text for a header: non-ASCII words and control characters become encoded words. */
export function encodeUnstructured(text: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what needs encoding.
  if (/[\x00-\x08\x0a-\x1f\x7f]/.test(text)) {
    return encodeWord(text, 'Q', ENCODED_WORD_CHUNK);
  }
  return hasNonAscii(text) ? encodeWords(text, 'Q', ENCODED_WORD_CHUNK) : text;
}

/** One mailbox of an address field: its display name decoded ('' when none), its address as written. */
export interface AddressEntry {
  readonly name: string;
  readonly address: string;
}

/** An entry of an address field: a mailbox, or a group (`Team: a@b.com, c@d.com;`) and its members. */
export type AddressNode =
  | { readonly kind: 'mailbox'; readonly name: string; readonly address: string }
  | { readonly kind: 'group'; readonly name: string; readonly members: readonly AddressEntry[] };

/** An address header split by addressparser, display names decoded from encoded words. */
export function parseAddressTree(value: string): AddressNode[] {
  return addressparser(value).map((node: Address): AddressNode => {
    if (node.group) {
      const members = node.group.flatMap((member) =>
        member.group ? [] : [{ name: decodeWords(member.name), address: member.address }],
      );
      return { kind: 'group', name: decodeWords(node.name), members };
    }
    return { kind: 'mailbox', name: decodeWords(node.name), address: node.address };
  });
}

export function flattenAddressTree(nodes: readonly AddressNode[]): AddressEntry[] {
  return nodes.flatMap((node) =>
    node.kind === 'group' ? [...node.members] : [{ name: node.name, address: node.address }],
  );
}

/** Whether an address can be written back between angle brackets without changing what it means. */
export function isWritableAddress(address: string): boolean {
  return ADDR_SPEC.test(address);
}

/** `Name <address>`, the name encoded as a phrase, or the bare address when there is no name. */
export function formatMailbox(entry: { readonly name?: string; readonly address: string }): string {
  return entry.name ? `${encodeDisplayName(entry.name)} <${entry.address}>` : entry.address;
}

/** An address field value from its entries, groups written back as groups. */
export function formatAddressTree(nodes: readonly AddressNode[]): string {
  return nodes
    .map((node) =>
      node.kind === 'group'
        ? `${encodeDisplayName(node.name)}: ${node.members.map(formatMailbox).join(', ')};`
        : formatMailbox(node),
    )
    .join(', ');
}

/** A Content-Type or Content-Disposition value rebuilt so non-ASCII parameters use RFC 2231. */
export function encodeParameterizedValue(value: string): string {
  const parsed = libmime.parseHeaderValue(value);
  return buildHeaderValue({ value: parsed.value || '', params: parsed.params });
}

/** A parameter of a structured value, decoded from RFC 2231 (continuations, charset) or RFC 2047 words. */
export function decodedParameter(value: string, param: string): string | undefined {
  const parsed = libmime.parseHeaderValue(value).params[param.toLowerCase()];
  if (!parsed) {
    return undefined;
  }
  // libmime decodes an RFC 2231 value already; a plain one may hold RFC 2047 words (Outlook, Gmail).
  const extended = new RegExp(`(?:^|;)\\s*${param}\\*`, 'i').test(value);
  return extended ? parsed : decodeWords(parsed);
}

/**
 * The value with every word short enough to fold within 998 octets: free text is re-encoded as several
 * encoded words; a structured value gets a space after its commas, then, as a last resort, inside words.
 */
export function foldableValue(name: string, value: string): string {
  const firstLimit = MAX_LINE_OCTETS - Buffer.byteLength(name) - 2;
  if (!hasOverlongWord(value, firstLimit)) {
    return value;
  }
  if (UNSTRUCTURED.has(name.toLowerCase())) {
    return encodeWord(decodeWords(value), 'Q', ENCODED_WORD_CHUNK);
  }
  const spaced = spaceAfterCommas(value);
  if (!hasOverlongWord(spaced, firstLimit)) {
    return spaced;
  }
  return spaced
    .split(/([ \t]+)/)
    .map((part) => (Buffer.byteLength(part) > firstLimit ? chunk(part, firstLimit).join(' ') : part))
    .join('');
}

function hasOverlongWord(value: string, firstLimit: number): boolean {
  const pieces = value.match(/[ \t]*[^ \t]+/g) ?? [];
  return pieces.some(
    (piece, index) => Buffer.byteLength(piece) > (index === 0 ? firstLimit : MAX_LINE_OCTETS),
  );
}

function spaceAfterCommas(value: string): string {
  let out = '';
  let quoted = false;
  let depth = 0;
  for (let i = 0; i < value.length; i++) {
    const char = value[i] ?? '';
    out += char;
    if (quoted) {
      if (char === '\\') {
        out += value[++i] ?? '';
      } else if (char === '"') {
        quoted = false;
      }
    } else if (char === '"') {
      quoted = true;
    } else if (char === '(' || char === '<') {
      depth++;
    } else if ((char === ')' || char === '>') && depth > 0) {
      depth--;
    } else if (char === ',' && depth === 0 && !/[ \t]/.test(value[i + 1] ?? ' ')) {
      out += ' ';
    }
  }
  return out;
}

function chunk(word: string, maxOctets: number): string[] {
  const chunks: string[] = [];
  let current = '';
  let octets = 0;
  for (const char of word) {
    const size = Buffer.byteLength(char);
    if (octets + size > maxOctets) {
      chunks.push(current);
      current = '';
      octets = 0;
    }
    current += char;
    octets += size;
  }
  return [...chunks, current];
}
