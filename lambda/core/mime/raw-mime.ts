import { decodeUnknownText } from './charset.ts';
import { foldableValue } from './header-encoding.ts';

/** One header field: the value unfolded (the CRLF of each fold removed) and raw (encoded words kept). */
export interface HeaderField {
  readonly name: string;
  readonly value: string;
}

/** A message as header fields and body bytes; the body is everything after the blank line, in CRLF. */
export interface RawMime {
  readonly headers: readonly HeaderField[];
  readonly body: Buffer;
}

const CRLF = Buffer.from('\r\n');
const FIELD_START = /^([\x21-\x39\x3b-\x7e]+)[ \t]*:/;
const FIELD_NAME = /^[\x21-\x39\x3b-\x7e]+$/;
const FOLD_AT = 78;

/** The same bytes with every bare LF and bare CR made CRLF; the very same Buffer when there was none. */
export function toCrlf(bytes: Buffer): Buffer {
  // Latin-1 maps each byte to one character and back, so the regular expressions see the raw bytes.
  const text = bytes.toString('latin1');
  if (!/\r(?!\n)|(?<!\r)\n/.test(text)) {
    return bytes;
  }
  return Buffer.from(text.replace(/\r\n?|\n/g, '\r\n'), 'latin1');
}

/**
 * The header fields of an entity already in CRLF and the offset where its body starts. The header block
 * ends at the first blank line, or at the first line that is neither a field nor a fold of one (that line
 * is the start of the body), or at the end of the bytes.
 */
export function splitEntity(bytes: Buffer): { headers: HeaderField[]; bodyStart: number } {
  const headers: HeaderField[] = [];
  let field: Buffer[] = [];
  const flush = () => {
    if (field.length > 0) {
      headers.push(toField(Buffer.concat(field)));
      field = [];
    }
  };
  let position = 0;
  while (position < bytes.length) {
    const crlf = bytes.indexOf(CRLF, position);
    const lineEnd = crlf === -1 ? bytes.length : crlf;
    const next = crlf === -1 ? bytes.length : crlf + 2;
    const first = bytes[position];
    if (lineEnd === position) {
      flush();
      return { headers, bodyStart: next };
    }
    if (first === 0x20 || first === 0x09) {
      if (field.length === 0) {
        break;
      }
      field.push(bytes.subarray(position, lineEnd));
    } else if (
      FIELD_START.test(bytes.subarray(position, Math.min(lineEnd, position + 200)).toString('latin1'))
    ) {
      flush();
      field.push(bytes.subarray(position, lineEnd));
    } else {
      break;
    }
    position = next;
  }
  flush();
  return { headers, bodyStart: position };
}

function toField(bytes: Buffer): HeaderField {
  const { text } = decodeUnknownText(bytes);
  const colon = text.indexOf(':');
  return {
    name: text.slice(0, colon).replace(/[ \t]+$/, ''),
    value: text.slice(colon + 1).replace(/^[ \t]+|[ \t]+$/g, ''),
  };
}

/**
 * Reads a message tolerantly: line endings become CRLF everywhere; header bytes that are not valid UTF-8
 * are read as Windows-1252.
 */
export function parseRawMime(bytes: Buffer): RawMime {
  const crlf = toCrlf(bytes);
  const { headers, bodyStart } = splitEntity(crlf);
  return { headers, body: crlf.subarray(bodyStart) };
}

/** Header fields folded at whitespace to 78 characters where possible, a blank line, the body. */
export function serializeRawMime(mime: RawMime): Buffer {
  return Buffer.concat([serializeHeaders(mime.headers), mime.body]);
}

/** The header block including the blank line that ends it. */
export function serializeHeaders(headers: readonly HeaderField[]): Buffer {
  const lines = headers.map(({ name, value }) => foldField(name, value));
  return Buffer.from(`${lines.join('')}\r\n`, 'utf8');
}

function foldField(name: string, rawValue: string): string {
  // A value is unfolded, so a CR or LF in it can only have been put there by code: never emit one.
  const value = foldableValue(name, rawValue.replace(/[\r\n]+/g, ' '));
  // Each piece is a run of whitespace and the word after it; a fold goes in front of a piece. The first
  // word stays on the line of the field name.
  const [first = '', ...rest] = value.match(/[ \t]*[^ \t]+|[ \t]+$/g) ?? [];
  const lines: string[] = [];
  let current = first === '' ? `${name}:` : `${name}: ${first}`;
  for (const piece of rest) {
    if (current.length + piece.length > FOLD_AT && /[^ \t]/.test(piece)) {
      lines.push(current);
      current = piece;
    } else {
      current += piece;
    }
  }
  lines.push(current);
  return lines.map((line) => `${line}\r\n`).join('');
}

export function headerValues(mime: RawMime, name: string): string[] {
  const wanted = name.toLowerCase();
  return mime.headers.filter((field) => field.name.toLowerCase() === wanted).map((field) => field.value);
}

export function firstHeader(mime: RawMime, name: string): string | undefined {
  return headerValues(mime, name)[0];
}

/**
 * The fields with `name` set to `value`: the first field of that name takes the value and any others
 * go, or the field is added at the top (or the `end`) when there is none. Throws on a CR or LF (header
 * injection).
 */
export function withHeaderField(
  headers: readonly HeaderField[],
  name: string,
  value: string,
  addAt: 'top' | 'end' = 'top',
): HeaderField[] {
  if (!FIELD_NAME.test(name)) {
    throw new Error(`"${name}" is not a valid header field name`);
  }
  if (/[\r\n]/.test(value)) {
    throw new Error(`the value for header ${name} must not contain CR or LF characters (header injection)`);
  }
  const wanted = name.toLowerCase();
  const index = headers.findIndex((field) => field.name.toLowerCase() === wanted);
  if (index === -1) {
    return addAt === 'top' ? [{ name, value }, ...headers] : [...headers, { name, value }];
  }
  return headers.flatMap((field, at) => {
    if (at === index) {
      return [{ name: field.name, value }];
    }
    return field.name.toLowerCase() === wanted ? [] : [field];
  });
}

export function withHeader(mime: RawMime, name: string, value: string): RawMime {
  return { headers: withHeaderField(mime.headers, name, value), body: mime.body };
}

export function withoutHeaders(mime: RawMime, ...names: string[]): RawMime {
  const unwanted = new Set(names.map((name) => name.toLowerCase()));
  return {
    headers: mime.headers.filter((field) => !unwanted.has(field.name.toLowerCase())),
    body: mime.body,
  };
}
