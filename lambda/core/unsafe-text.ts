/**
 * Characters that make a header say something other than what it shows: bidirectional overrides and
 * isolates turn "invoice‮fdp.exe" into what looks like a PDF, invisible spaces hide a look-alike
 * sender, and NUL or other control characters break parsers downstream. Zero-width joiners (U+200C,
 * U+200D) are allowed: Persian, Indic scripts and emoji sequences need them.
 */
const UNSAFE: readonly { readonly pattern: RegExp; readonly what: string }[] = [
  { pattern: /[\u202A-\u202E\u2066-\u2069]/u, what: 'a bidirectional override or isolate' },
  { pattern: /[\u200B\u2060\uFEFF]/u, what: 'a zero-width space' },
  // CR and LF are header injection, refused as such where text meets headers.
  // biome-ignore lint/suspicious/noControlCharactersInRegex: finding control characters is the point.
  { pattern: /[\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F]/u, what: 'a control character' },
];

/**
 * Why this display name, subject or file name must not go into a header ("contains a bidirectional
 * override or isolate (U+202E)"), or undefined when it may. Names the character, never the text.
 */
export function unsafeTextProblem(value: string): string | undefined {
  for (const { pattern, what } of UNSAFE) {
    const match = pattern.exec(value);
    if (match) {
      const codePoint = (match[0].codePointAt(0) ?? 0).toString(16).toUpperCase().padStart(4, '0');
      return `contains ${what} (U+${codePoint}), which would make it display as something it is not`;
    }
  }
  return undefined;
}
