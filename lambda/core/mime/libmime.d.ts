// libmime ships no types; these are the two functions lambda/core/mime uses.
declare module 'libmime' {
  interface LibmimeHeaderValue {
    /** The value ahead of the parameters, or false when there is none. */
    value: string | false;
    /** Parameters by lowercase name; RFC 2231 continuations joined and decoded from their charset. */
    params: Record<string, string>;
  }
  const libmime: {
    /** Decodes every RFC 2047 encoded word in the text. */
    decodeWords(text: string): string;
    parseHeaderValue(value: string): LibmimeHeaderValue;
  };
  export default libmime;
}
