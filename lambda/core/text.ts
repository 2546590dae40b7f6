/** Cuts text to at most `max` UTF-16 code units without splitting a surrogate pair. */
export function truncate(text: string, max: number): string {
  if (text.length <= max) return text;
  const cut = text.slice(0, max);
  const last = cut.charCodeAt(cut.length - 1);
  return last >= 0xd800 && last <= 0xdbff ? cut.slice(0, -1) : cut;
}

// Characters SQS rejects in message bodies and attribute values (it allows #x9 #xA #xD #x20-#xD7FF
// #xE000-#xFFFD #x10000-#x10FFFF); lone surrogates are handled by toWellFormed.
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point.
const SQS_DISALLOWED = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]/g;

/** Text SQS will accept, whatever a provider put in its error message. */
export function toSqsText(text: string, max: number): string {
  return truncate(text, max).toWellFormed().replace(SQS_DISALLOWED, '\uFFFD');
}
