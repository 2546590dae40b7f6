import { isUtf8 } from 'node:buffer';

// Windows-1252 differs from ISO-8859-1 only in 0x80–0x9F, where it has printable characters (€, curly
// quotes, dashes) instead of C1 controls. The five unassigned bytes keep their Latin-1 meaning. Written
// out because Node builds without full ICU decode the 'windows-1252' label as Latin-1.
const WINDOWS_1252_HIGH = [
  0x20ac, 0x81, 0x201a, 0x192, 0x201e, 0x2026, 0x2020, 0x2021, 0x2c6, 0x2030, 0x160, 0x2039, 0x152, 0x8d,
  0x17d, 0x8f, 0x90, 0x2018, 0x2019, 0x201c, 0x201d, 0x2022, 0x2013, 0x2014, 0x2dc, 0x2122, 0x161, 0x203a,
  0x153, 0x9d, 0x17e, 0x178,
];

export function hasEightBit(bytes: Buffer): boolean {
  // Latin-1 maps each byte to one character, and a regular expression scans it faster than a loop.
  return /[\x80-\xff]/.test(bytes.toString('latin1'));
}

/**
 * Text from bytes in an unknown charset: UTF-8 when the bytes are valid UTF-8, else Windows-1252 (a
 * superset of Latin-1 in practice), what printers, older CRMs and Windows software write.
 */
export function decodeUnknownText(bytes: Buffer): { text: string; charset: 'utf-8' | 'windows-1252' } {
  if (isUtf8(bytes)) {
    return { text: bytes.toString('utf8'), charset: 'utf-8' };
  }
  const text = bytes
    .toString('latin1')
    .replace(/[\x80-\x9f]/g, (c) =>
      String.fromCharCode(WINDOWS_1252_HIGH[c.charCodeAt(0) - 0x80] ?? c.charCodeAt(0)),
    );
  return { text, charset: 'windows-1252' };
}
