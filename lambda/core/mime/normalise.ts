import * as base64 from 'nodemailer/lib/base64';
import * as qp from 'nodemailer/lib/qp';
import { toAsciiDomain } from '../address.ts';
import { decodeUnknownText, hasEightBit } from './charset.ts';
import {
  ADDRESS_HEADERS,
  type AddressNode,
  encodeParameterizedValue,
  encodeUnstructured,
  flattenAddressTree,
  foldableValue,
  formatAddressTree,
  hasNonAscii,
  isWritableAddress,
  parseAddressTree,
} from './header-encoding.ts';
import {
  childDefaultType,
  contentTypeOf,
  type Entity,
  fieldValue,
  MAX_DEPTH,
  splitMultipart,
  transferEncodingOf,
} from './parts.ts';
import {
  type HeaderField,
  type RawMime,
  serializeRawMime,
  splitEntity,
  toCrlf,
  withHeaderField,
} from './raw-mime.ts';

export interface NormaliseOptions {
  /** The time a missing Date header is set to. */
  readonly now: Date;
}

export interface NormalisedMime {
  readonly mime: RawMime;
  /** What was changed, in short words for logs: header names and part numbers, never content. */
  readonly changes: string[];
}

const MAX_BODY_LINE_OCTETS = 998;
const ENCODED_LINE_LENGTH = 76;
const UNENCODED = new Set(['', '7bit', '8bit', 'binary']);

/**
 * Makes a message as submitted safe to relay through SES, SMTP and Graph while keeping every byte that
 * was already fine: CRLF line endings, 7-bit headers, bodies without 8-bit bytes or over-long lines
 * (re-encoded per leaf part; other parts, boundaries, preamble and epilogue keep their bytes), a Date,
 * and a From that Exchange accepts. Adds no Message-ID. Normalising the result changes nothing.
 */
export function normaliseMime(bytes: Buffer, options: NormaliseOptions): NormalisedMime {
  const changes: string[] = [];
  const crlf = toCrlf(bytes);
  if (crlf !== bytes) {
    changes.push('line endings: CRLF');
  }
  const { headers, bodyStart } = splitEntity(crlf);
  const message: Entity = { headers: repairFrom(headers, changes), body: crlf.subarray(bodyStart) };
  const normalised = normaliseEntity(message, '', 'text/plain', 0, changes) ?? message;

  let result = normalised.headers;
  if (normalised.body !== message.body && fieldValue(result, 'mime-version') === undefined) {
    result = withHeaderField(result, 'MIME-Version', '1.0', 'end');
    changes.push('MIME-Version: added');
  }
  if (fieldValue(result, 'date') === undefined) {
    result = withHeaderField(result, 'Date', rfc5322Date(options.now));
    changes.push('Date: added');
  }
  return { mime: { headers: result, body: normalised.body }, changes };
}

/** `Tue, 14 May 2024 09:05:00 +0000`. */
function rfc5322Date(date: Date): string {
  return date.toUTCString().replace(/GMT$/, '+0000');
}

/**
 * Exchange refuses to send as a From whose display name holds an address, which is how printers and
 * scanners write it: the name goes when it is the address, else its `@` becomes ` at `.
 */
function repairFrom(headers: readonly HeaderField[], changes: string[]): readonly HeaderField[] {
  const values = headers.filter((field) => field.name.toLowerCase() === 'from');
  // Two From fields are for inspectMime to report; rewriting one would drop the other.
  const value = values.length === 1 ? values[0]?.value : undefined;
  if (value === undefined) {
    return headers;
  }
  const tree = parseAddressTree(value);
  // addressparser already drops a name that equals the address, so an @ before the < shows that case.
  const phraseHasAt = value.includes('<') && value.replace(/<[^>]*>/g, '').includes('@');
  const nameHasAt = flattenAddressTree(tree).some((entry) => entry.name.includes('@'));
  if (!(phraseHasAt || nameHasAt) || !writable(tree)) {
    return headers;
  }
  const repaired = tree.map((node): AddressNode => {
    if (node.kind === 'group') {
      return node;
    }
    const name = node.name.trim().toLowerCase() === node.address.toLowerCase() ? '' : node.name;
    return { ...node, name: name.replace(/\s*@\s*/g, ' at ') };
  });
  const rebuilt = formatAddressTree(repaired);
  if (rebuilt === value) {
    return headers;
  }
  changes.push('From: display name with @');
  return withHeaderField(headers, 'From', rebuilt);
}

function writable(tree: readonly AddressNode[]): boolean {
  return flattenAddressTree(tree).every((entry) => isWritableAddress(entry.address));
}

/** The entity with its headers and body made safe, or undefined when it already was. */
function normaliseEntity(
  entity: Entity,
  path: string,
  defaultType: string,
  depth: number,
  changes: string[],
): Entity | undefined {
  const label = path ? `part ${path}` : 'body';
  const headers = normaliseHeaders(entity.headers, path ? `part ${path} ` : '', changes);
  const contentType = contentTypeOf(headers, defaultType);
  const boundary = contentType.params.boundary;
  let body: Buffer | undefined;
  let leafHeaders: readonly HeaderField[] = headers;
  if (contentType.type.startsWith('multipart/') && boundary && depth < MAX_DEPTH) {
    body = normaliseMultipartBody(
      entity.body,
      boundary,
      path,
      childDefaultType(contentType.type),
      depth,
      changes,
    );
  } else {
    const leaf = normaliseLeaf({ headers, body: entity.body }, defaultType, label, changes);
    body = leaf?.body;
    leafHeaders = leaf?.headers ?? headers;
  }
  if (body === undefined && leafHeaders === entity.headers) {
    return undefined;
  }
  return { headers: leafHeaders, body: body ?? entity.body };
}

function normaliseMultipartBody(
  body: Buffer,
  boundary: string,
  path: string,
  defaultType: string,
  depth: number,
  changes: string[],
): Buffer | undefined {
  const chunks: Buffer[] = [];
  let copied = 0;
  splitMultipart(body, boundary).forEach((range, index) => {
    const bytes = body.subarray(range.start, range.end);
    const { headers, bodyStart } = splitEntity(bytes);
    const childPath = path ? `${path}.${index + 1}` : `${index + 1}`;
    const part = { headers, body: bytes.subarray(bodyStart) };
    const changed = normaliseEntity(part, childPath, defaultType, depth + 1, changes);
    if (changed === undefined) {
      return;
    }
    // Unchanged header fields keep their bytes; changed ones are written out again.
    const replacement =
      changed.headers === headers
        ? Buffer.concat([bytes.subarray(0, bodyStart), changed.body])
        : serializeRawMime(changed);
    chunks.push(body.subarray(copied, range.start), replacement);
    copied = range.end;
  });
  if (chunks.length === 0) {
    return undefined;
  }
  chunks.push(body.subarray(copied));
  return Buffer.concat(chunks);
}

/** Header fields with raw 8-bit text encoded and over-long words split; the same array when fine. */
function normaliseHeaders(
  headers: readonly HeaderField[],
  where: string,
  changes: string[],
): readonly HeaderField[] {
  let changed = false;
  const result = headers.map((field) => {
    const encoded = hasNonAscii(field.value) ? encodeField(field) : field.value;
    if (encoded !== field.value) {
      changes.push(`${where}${field.name}: encoded words`);
    }
    const value = foldableValue(field.name, encoded);
    if (value !== encoded) {
      changes.push(`${where}${field.name}: long word split`);
    }
    changed ||= value !== field.value;
    return value === field.value ? field : { name: field.name, value };
  });
  return changed ? result : headers;
}

function encodeField(field: HeaderField): string {
  const name = field.name.toLowerCase();
  if (ADDRESS_HEADERS.has(name)) {
    // Names become encoded words and international domains punycode; a UTF-8 local part (SMTPUTF8)
    // has no 7-bit form and stays. A list with an address that cannot be written back safely is left
    // for inspectMime to report.
    const tree = parseAddressTree(field.value);
    return writable(tree) ? formatAddressTree(tree.map(withAsciiDomains)) : field.value;
  }
  if (name === 'content-type' || name === 'content-disposition') {
    return encodeParameterizedValue(field.value);
  }
  return encodeUnstructured(field.value);
}

function withAsciiDomains(node: AddressNode): AddressNode {
  return node.kind === 'group'
    ? {
        ...node,
        members: node.members.map((member) => ({ ...member, address: asciiDomain(member.address) })),
      }
    : { ...node, address: asciiDomain(node.address) };
}

function asciiDomain(address: string): string {
  const at = address.lastIndexOf('@');
  return `${address.slice(0, at)}@${toAsciiDomain(address.slice(at + 1)) ?? address.slice(at + 1)}`;
}

/**
 * A leaf with a body that cannot travel as it is re-encoded: quoted-printable for text, base64 for the
 * rest. A body without a Content-Type and with 8-bit bytes gets a charset: UTF-8 when the bytes are
 * UTF-8, else they are read as Windows-1252 and written as UTF-8.
 */
function normaliseLeaf(
  leaf: Entity,
  defaultType: string,
  label: string,
  changes: string[],
): Entity | undefined {
  const encoding = transferEncodingOf(leaf.headers);
  const longLines = hasLongLines(leaf.body);
  if (encoding === 'base64' && longLines) {
    changes.push(`${label}: base64 rewrapped`);
    const decoded = Buffer.from(leaf.body.toString('latin1'), 'base64');
    return {
      headers: leaf.headers,
      body: Buffer.from(base64.wrap(base64.encode(decoded), ENCODED_LINE_LENGTH)),
    };
  }
  if (encoding === 'quoted-printable' && longLines) {
    changes.push(`${label}: quoted-printable rewrapped`);
    return {
      headers: leaf.headers,
      body: Buffer.from(qp.wrap(leaf.body.toString('latin1'), ENCODED_LINE_LENGTH), 'latin1'),
    };
  }
  const eightBit = hasEightBit(leaf.body);
  if (!UNENCODED.has(encoding) || !(eightBit || longLines)) {
    return undefined;
  }
  let headers = leaf.headers;
  let content = leaf.body;
  if (eightBit && defaultType === 'text/plain' && fieldValue(headers, 'content-type') === undefined) {
    const { text, charset } = decodeUnknownText(content);
    content = Buffer.from(text, 'utf8');
    headers = withHeaderField(headers, 'Content-Type', 'text/plain; charset=utf-8', 'end');
    changes.push(charset === 'utf-8' ? `${label}: charset utf-8` : `${label}: windows-1252 to utf-8`);
  }
  const text = contentTypeOf(headers, defaultType).type.startsWith('text/');
  const body = text
    ? qp.wrap(qp.encode(content), ENCODED_LINE_LENGTH)
    : base64.wrap(base64.encode(content), ENCODED_LINE_LENGTH);
  const transferEncoding = text ? 'quoted-printable' : 'base64';
  changes.push(`${label}: ${transferEncoding}`);
  return {
    headers: withHeaderField(headers, 'Content-Transfer-Encoding', transferEncoding, 'end'),
    body: Buffer.from(body, 'latin1'),
  };
}

function hasLongLines(body: Buffer): boolean {
  let start = 0;
  while (start < body.length) {
    const crlf = body.indexOf('\r\n', start);
    const end = crlf === -1 ? body.length : crlf;
    if (end - start > MAX_BODY_LINE_OCTETS) {
      return true;
    }
    start = end + 2;
  }
  return false;
}
