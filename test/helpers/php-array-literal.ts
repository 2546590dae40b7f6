/**
 * Reads a PHP array literal as `json_encode` would write it, for the README's PHP snippet (PHP itself
 * is not part of the toolchain). Strict, for the subset a message literal needs: `[...]` with
 * `'key' => value` pairs (an object) or plain items (a list), single-quoted strings, double-quoted
 * strings without `$` or `\` (no interpolation or escapes to guess at), integers, true/false/null,
 * comments and trailing commas. Anything else (variables, constants, function calls, concatenation,
 * `array(...)`) throws, so the test can never read a snippet differently from PHP.
 */
export function phpArrayLiteral(source: string, start: number): { value: unknown; end: number } {
  const reader = new Reader(source, start);
  const value = reader.value();
  return { value, end: reader.position };
}

class Reader {
  constructor(
    private readonly source: string,
    public position: number,
  ) {}

  value(): unknown {
    this.skip();
    const rest = this.source.slice(this.position);
    if (rest.startsWith('[')) return this.array();
    if (rest.startsWith("'")) return this.singleQuoted();
    if (rest.startsWith('"')) return this.doubleQuoted();
    const integer = /^-?\d+(?![\w.])/.exec(rest);
    if (integer) {
      this.position += integer[0].length;
      return Number(integer[0]);
    }
    const keyword = /^(true|false|null)\b/i.exec(rest);
    if (keyword?.[1]) {
      this.position += keyword[0].length;
      return { true: true, false: false, null: null }[keyword[1].toLowerCase() as 'true' | 'false' | 'null'];
    }
    throw this.unsupported();
  }

  private array(): unknown {
    this.position += 1;
    const items: unknown[] = [];
    const pairs: [string, unknown][] = [];
    for (;;) {
      this.skip();
      if (this.source[this.position] === ']') {
        this.position += 1;
        break;
      }
      const first = this.value();
      this.skip();
      if (this.source.startsWith('=>', this.position)) {
        this.position += 2;
        if (typeof first !== 'string' || items.length > 0)
          throw this.unsupported('keys must be strings, on every item');
        pairs.push([first, this.value()]);
      } else {
        if (pairs.length > 0) throw this.unsupported('an item without a key among keyed items');
        items.push(first);
      }
      this.skip();
      if (this.source[this.position] === ',') this.position += 1;
      else if (this.source[this.position] !== ']') throw this.unsupported('expected , or ]');
    }
    if (pairs.length === 0) return items;
    const keys = new Set(pairs.map(([key]) => key));
    if (keys.size !== pairs.length) throw this.unsupported('a key given twice');
    return Object.fromEntries(pairs);
  }

  private singleQuoted(): string {
    let text = '';
    for (let index = this.position + 1; index < this.source.length; index += 1) {
      const char = this.source[index];
      if (char === '\\' && (this.source[index + 1] === "'" || this.source[index + 1] === '\\')) {
        text += this.source[index + 1];
        index += 1;
      } else if (char === "'") {
        this.position = index + 1;
        return text;
      } else {
        text += char;
      }
    }
    throw this.unsupported('an unterminated string');
  }

  private doubleQuoted(): string {
    const end = this.source.indexOf('"', this.position + 1);
    const text = this.source.slice(this.position + 1, end);
    if (end < 0 || /[$\\]/.test(text)) throw this.unsupported('a double-quoted string with $ or \\');
    this.position = end + 1;
    return text;
  }

  /** Whitespace and comments. */
  private skip(): void {
    for (;;) {
      const rest = this.source.slice(this.position);
      const skipped = /^(\s+|\/\/[^\n]*|#(?!\[)[^\n]*|\/\*[\s\S]*?\*\/)/.exec(rest);
      if (!skipped) return;
      this.position += skipped[0].length;
    }
  }

  private unsupported(why = 'not a literal this reader knows'): Error {
    const line = this.source.slice(0, this.position).split('\n').length;
    return new Error(
      `PHP array literal, line ${line}: ${why}: ${JSON.stringify(this.source.slice(this.position, this.position + 30))}`,
    );
  }
}
