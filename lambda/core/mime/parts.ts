import { parseHeaderValue } from 'nodemailer/lib/mime-funcs';
import { type HeaderField, splitEntity } from './raw-mime.ts';

/** An entity (a message or a body part): its header fields and its body bytes, CRLF. */
export interface Entity {
  readonly headers: readonly HeaderField[];
  readonly body: Buffer;
}

export interface ContentType {
  /** Lowercase `type/subtype`. */
  readonly type: string;
  readonly params: Readonly<Record<string, string>>;
}

/** Deeper nesting than this is read as a leaf, so a hostile message cannot exhaust the stack. */
export const MAX_DEPTH = 32;

export function fieldValue(headers: readonly HeaderField[], name: string): string | undefined {
  const wanted = name.toLowerCase();
  return headers.find((field) => field.name.toLowerCase() === wanted)?.value;
}

/** The Content-Type of an entity, `defaultType` when absent or unreadable (RFC 2045 5.2). */
export function contentTypeOf(headers: readonly HeaderField[], defaultType: string): ContentType {
  const value = fieldValue(headers, 'content-type');
  const parsed = value === undefined ? undefined : parseHeaderValue(value, { stripComments: true });
  const type = parsed?.value.toLowerCase() ?? '';
  return /^[^/\s]+\/[^/\s]+$/.test(type)
    ? { type, params: parsed?.params ?? {} }
    : { type: defaultType, params: {} };
}

/** The lowercase Content-Transfer-Encoding, '' when absent. */
export function transferEncodingOf(headers: readonly HeaderField[]): string {
  const value = fieldValue(headers, 'content-transfer-encoding') ?? '';
  return parseHeaderValue(value, { stripComments: true }).value.trim().toLowerCase();
}

/** The default type of the parts of a multipart: message/rfc822 in a digest (RFC 2046 5.1.5). */
export function childDefaultType(multipartType: string): string {
  return multipartType === 'multipart/digest' ? 'message/rfc822' : 'text/plain';
}

/** Where a part's bytes lie in the body of its multipart, the CRLF before the next delimiter excluded. */
export interface PartRange {
  readonly start: number;
  readonly end: number;
}

/**
 * The parts of a multipart body (RFC 2046 5.1.1): what lies between the delimiter lines. A missing close
 * delimiter ends the last part at the end of the body; lines after the close delimiter are the epilogue.
 */
export function splitMultipart(body: Buffer, boundary: string): PartRange[] {
  const dashBoundary = Buffer.from(`--${boundary}`, 'latin1');
  const parts: PartRange[] = [];
  let partStart = -1;
  for (const delimiter of delimiterLines(body, dashBoundary)) {
    if (partStart >= 0) {
      parts.push({ start: partStart, end: Math.max(partStart, delimiter.start - 2) });
    }
    if (delimiter.close) {
      return parts;
    }
    partStart = delimiter.next;
  }
  if (partStart >= 0) {
    parts.push({ start: partStart, end: body.length });
  }
  return parts;
}

function* delimiterLines(
  body: Buffer,
  dashBoundary: Buffer,
): Generator<{ start: number; next: number; close: boolean }> {
  const lineStart = Buffer.concat([Buffer.from('\r\n'), dashBoundary]);
  let start = body.subarray(0, dashBoundary.length).equals(dashBoundary) ? 0 : -1;
  if (start === -1) {
    const found = body.indexOf(lineStart);
    start = found === -1 ? -1 : found + 2;
  }
  while (start !== -1) {
    const crlf = body.indexOf('\r\n', start);
    const lineEnd = crlf === -1 ? body.length : crlf;
    const rest = body.subarray(start + dashBoundary.length, lineEnd).toString('latin1');
    // A boundary that is only the start of a longer word is not a delimiter.
    const close = rest.startsWith('--');
    if (/^[ \t]*$/.test(close ? rest.slice(2) : rest)) {
      yield { start, next: crlf === -1 ? body.length : crlf + 2, close };
    }
    const found = body.indexOf(lineStart, lineEnd);
    start = found === -1 ? -1 : found + 2;
  }
}

/** A leaf part: not a multipart (a message/rfc822 is a leaf), with its IMAP-style part number. */
export interface Leaf extends Entity {
  readonly path: string;
  readonly contentType: ContentType;
}

/** The leaf parts of a message in document order; a single-part message is its own leaf, part 1. */
export function leavesOf(message: Entity): Leaf[] {
  const leaves: Leaf[] = [];
  const walk = (entity: Entity, path: string, defaultType: string, depth: number) => {
    const contentType = contentTypeOf(entity.headers, defaultType);
    const boundary = contentType.params.boundary;
    if (!contentType.type.startsWith('multipart/') || !boundary || depth >= MAX_DEPTH) {
      leaves.push({ ...entity, path: path || '1', contentType });
      return;
    }
    splitMultipart(entity.body, boundary).forEach((range, index) => {
      const bytes = entity.body.subarray(range.start, range.end);
      const { headers, bodyStart } = splitEntity(bytes);
      const childPath = path ? `${path}.${index + 1}` : `${index + 1}`;
      walk(
        { headers, body: bytes.subarray(bodyStart) },
        childPath,
        childDefaultType(contentType.type),
        depth + 1,
      );
    });
  };
  walk(message, '', 'text/plain', 0);
  return leaves;
}
