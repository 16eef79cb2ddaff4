/**
 * Reads Erlang term text: what `file:consult/1` reads from `lib_chan.conf` and what a person types at `chan connect`.
 *
 * Supported: atoms (bare and 'quoted'), "strings" (adjacent strings concatenate), integers (`42`, `-7`, `16#ff`,
 * `1_000`, `$a`), floats (`2.5`, `1.0e-3`; `1.0` is a `Float`, never the integer 1), tuples, proper lists
 * (`[a | [b]]` too), binaries (`<<"text">>`, `<<1,2,3>>`), maps (`#{k => v}`) and `%` comments. Not supported, with
 * a clear error: variables, improper lists, binary segment types, expressions. Every error carries the line and column
 * where it was found; an error caused by the text ending too soon is marked `incomplete`, so a REPL knows to read
 * another line.
 */
import { Tuple, atom, float, mapKey, narrowInteger, type Term } from './model.js';

/** A term with the position it was read from, and the positions of its elements (tuples and lists). */
export interface Located {
  term: Term;
  line: number;
  column: number;
  items?: Located[];
}

export class TermSyntaxError extends Error {
  readonly line: number;
  readonly column: number;
  /** True when more text could complete the term (unterminated string, missing `}` or `.`). */
  readonly incomplete: boolean;
  /** The message without the position. */
  readonly reason: string;
  constructor(reason: string, line: number, column: number, incomplete = false) {
    super(`line ${line}, column ${column}: ${reason}`);
    this.name = 'TermSyntaxError';
    this.reason = reason;
    this.line = line;
    this.column = column;
    this.incomplete = incomplete;
  }
}

/** Atoms longer than this are refused, as Erlang refuses them. */
export const MAX_ATOM_LENGTH = 255;
/** Deeper nesting is refused rather than overflowing the stack. */
export const MAX_PARSE_DEPTH = 1000;

/** Reads a sequence of terms, each ending with `.` (the format of `lib_chan.conf`). */
export function parseTerms(text: string): Term[] {
  return parseTermsLocated(text).map((l) => l.term);
}

/** Like {@link parseTerms}, keeping the position of every term and element (for error messages about them). */
export function parseTermsLocated(text: string): Located[] {
  const p = new Parser(text);
  const out: Located[] = [];
  while (p.peek().kind !== 'eof') {
    out.push(p.term(0));
    p.expectDot();
  }
  return out;
}

/**
 * Reads as many terms as it can: after a syntax error it skips to the end of that term (the next `.`) and goes on, so
 * that a config file with three mistakes gets three messages, as `check_terms` gave.
 */
export function parseTermsRecovering(text: string): { terms: Located[]; errors: TermSyntaxError[] } {
  const p = new Parser(text);
  const terms: Located[] = [];
  const errors: TermSyntaxError[] = [];
  for (;;) {
    try {
      if (p.peek().kind === 'eof') break;
      terms.push(p.term(0));
      p.expectDot();
    } catch (err) {
      if (!(err instanceof TermSyntaxError)) throw err;
      errors.push(err);
      if (err.incomplete || !p.skipToDot()) break;
    }
  }
  return { terms, errors };
}

/** Reads exactly one term; the terminating `.` is optional. */
export function parseTerm(text: string): Term {
  const p = new Parser(text);
  if (p.peek().kind === 'eof') p.fail(p.peek(), 'expected a term', true);
  const located = p.term(0);
  if (p.peek().kind === 'dot') p.next();
  const rest = p.peek();
  if (rest.kind !== 'eof') p.fail(rest, `unexpected ${describe(rest)} after the term`);
  return located.term;
}

type Kind = 'atom' | 'var' | 'string' | 'int' | 'float' | 'punct' | 'dot' | 'eof';
interface Token {
  kind: Kind;
  text: string;
  value?: string | number | bigint;
  line: number;
  column: number;
}

function describe(t: Token): string {
  switch (t.kind) {
    case 'eof':
      return 'end of input';
    case 'dot':
      return "'.'";
    case 'string':
      return 'a string';
    default:
      return `'${t.text}'`;
  }
}

class Parser {
  private readonly lexer: Lexer;
  private lookahead: Token | null = null;
  private failedAtDot = false;
  constructor(text: string) {
    this.lexer = new Lexer(text);
  }

  peek(): Token {
    this.lookahead ??= this.lexer.next();
    return this.lookahead;
  }

  next(): Token {
    const t = this.peek();
    this.lookahead = null;
    return t;
  }

  fail(t: Token, reason: string, incomplete = t.kind === 'eof'): never {
    this.failedAtDot = t.kind === 'dot';
    throw new TermSyntaxError(reason, t.line, t.column, incomplete);
  }

  /** After an error: skips past the `.` that ends the broken term. False when the text ended first. */
  skipToDot(): boolean {
    const afterDot = this.failedAtDot;
    this.failedAtDot = false;
    this.lookahead = null;
    if (afterDot) return true;
    for (;;) {
      let t: Token;
      try {
        t = this.lexer.next();
      } catch {
        if (!this.lexer.skipChar()) return false;
        continue;
      }
      if (t.kind === 'dot') return true;
      if (t.kind === 'eof') return false;
    }
  }

  expectDot(): void {
    const t = this.next();
    if (t.kind !== 'dot') this.fail(t, `expected '.' after the term, found ${describe(t)}`);
  }

  private expectPunct(text: string, context: string): Token {
    const t = this.next();
    if (t.kind !== 'punct' || t.text !== text) this.fail(t, `expected '${text}' ${context}, found ${describe(t)}`);
    return t;
  }

  term(depth: number): Located {
    const t = this.next();
    if (depth > MAX_PARSE_DEPTH) this.fail(t, `term nested deeper than ${MAX_PARSE_DEPTH} levels`);
    const at = { line: t.line, column: t.column };
    switch (t.kind) {
      case 'atom':
        return { term: t.value === 'true' ? true : t.value === 'false' ? false : atom(t.value as string), ...at };
      case 'string': {
        let s = t.value as string;
        while (this.peek().kind === 'string') s += this.next().value as string;
        return { term: s, ...at };
      }
      case 'int':
        return { term: t.value as number | bigint, ...at };
      case 'float':
        // 1.0 is a float, not the integer 1: a Float when a number would be taken for the integer.
        return { term: float(t.value as number), ...at };
      case 'var':
        // Not quoted back: in a config file this is often a secret someone forgot to put in quotes.
        return this.fail(
          t,
          'a variable is not a term (an atom starts with a lower-case letter or is quoted; a string is in double quotes)',
        );
      case 'punct':
        switch (t.text) {
          case '{': {
            const items = this.sequence('}', depth);
            return { term: new Tuple(items.map((i) => i.term)), items, ...at };
          }
          case '[': {
            const items = this.sequence(']', depth);
            return { term: items.map((i) => i.term), items, ...at };
          }
          case '<<':
            return { term: this.binary(), ...at };
          case '#{':
            return { term: this.map(depth), ...at };
        }
        return this.fail(t, `unexpected ${describe(t)}`);
      case 'dot':
      case 'eof':
        return this.fail(t, `expected a term, found ${describe(t)}`);
    }
  }

  /** Elements up to `close` (a tuple's `}`, a list's `]`); a list may end with `| Tail` where Tail is a list. */
  private sequence(close: '}' | ']', depth: number): Located[] {
    const items: Located[] = [];
    if (this.peek().kind === 'punct' && this.peek().text === close) {
      this.next();
      return items;
    }
    const isList = close === ']';
    for (;;) {
      items.push(this.term(depth + 1));
      const t = this.next();
      if (t.kind === 'punct' && t.text === ',') continue;
      if (t.kind === 'punct' && t.text === close) return items;
      if (isList && t.kind === 'punct' && t.text === '|') {
        const tail = this.term(depth + 1);
        if (!Array.isArray(tail.term))
          this.fail(this.tokenAt(tail), 'improper lists are not supported: the tail after | must be a list');
        items.push(...(tail.items ?? []));
        this.expectPunct(']', 'after the tail of a list');
        return items;
      }
      this.fail(
        t,
        isList
          ? `expected ',', '|' or ']' in a list, found ${describe(t)}`
          : `expected ',' or '}' in a tuple, found ${describe(t)}`,
      );
    }
  }

  private tokenAt(l: Located): Token {
    return { kind: 'punct', text: '', line: l.line, column: l.column };
  }

  private binary(): Uint8Array {
    const bytes: number[] = [];
    if (this.peek().kind === 'punct' && this.peek().text === '>>') {
      this.next();
      return new Uint8Array(0);
    }
    for (;;) {
      const t = this.next();
      if (t.kind === 'string') {
        for (const ch of t.value as string) {
          const code = ch.codePointAt(0) as number;
          if (code > 255) this.fail(t, 'a binary segment string may only hold characters 0..255 (use a plain string)');
          bytes.push(code);
        }
      } else if (t.kind === 'int' && typeof t.value === 'number' && t.value >= 0 && t.value <= 255) {
        bytes.push(t.value);
      } else {
        this.fail(t, `a binary segment must be a string or an integer 0..255, found ${describe(t)}`);
      }
      const sep = this.next();
      if (sep.kind === 'punct' && sep.text === ',') continue;
      if (sep.kind === 'punct' && sep.text === '>>') return Uint8Array.from(bytes);
      this.fail(sep, `expected ',' or '>>' in a binary, found ${describe(sep)}`);
    }
  }

  private map(depth: number): Map<Term, Term> {
    const m = new Map<Term, Term>();
    if (this.peek().kind === 'punct' && this.peek().text === '}') {
      this.next();
      return m;
    }
    for (;;) {
      const key = this.term(depth + 1);
      this.expectPunct('=>', 'between a map key and its value');
      const value = this.term(depth + 1);
      m.set(mapKey(key.term), value.term);
      const t = this.next();
      if (t.kind === 'punct' && t.text === ',') continue;
      if (t.kind === 'punct' && t.text === '}') return m;
      this.fail(t, `expected ',' or '}' in a map, found ${describe(t)}`);
    }
  }
}

const ATOM_START = /[a-z]/;
const NAME_CHAR = /[a-zA-Z0-9_@]/;
const VAR_START = /[A-Z_]/;
const DIGIT = /[0-9]/;

class Lexer {
  private pos = 0;
  private line = 1;
  private lineStart = 0;
  constructor(private readonly src: string) {}

  private get column(): number {
    return this.pos - this.lineStart + 1;
  }

  private fail(reason: string, line: number, column: number, incomplete = false): never {
    throw new TermSyntaxError(reason, line, column, incomplete);
  }

  /** Steps over one character (error recovery); false at the end of the text. */
  skipChar(): boolean {
    if (this.pos >= this.src.length) return false;
    if (this.src[this.pos] === '\n') {
      this.line++;
      this.lineStart = this.pos + 1;
    }
    this.pos++;
    return true;
  }

  private skipSpaceAndComments(): void {
    const s = this.src;
    while (this.pos < s.length) {
      const c = s[this.pos] as string;
      if (c === '\n') {
        this.pos++;
        this.line++;
        this.lineStart = this.pos;
      } else if (c === ' ' || c === '\t' || c === '\r' || c === '\f' || c === '\v') {
        this.pos++;
      } else if (c === '%') {
        while (this.pos < s.length && s[this.pos] !== '\n') this.pos++;
      } else {
        return;
      }
    }
  }

  next(): Token {
    this.skipSpaceAndComments();
    const s = this.src;
    const line = this.line;
    const column = this.column;
    const tok = (kind: Kind, text: string, value?: string | number | bigint): Token => ({
      kind,
      text,
      value,
      line,
      column,
    });
    if (this.pos >= s.length) return tok('eof', '');
    const c = s[this.pos] as string;
    const c2 = s.slice(this.pos, this.pos + 2);

    if (ATOM_START.test(c)) {
      const start = this.pos;
      while (this.pos < s.length && NAME_CHAR.test(s[this.pos] as string)) this.pos++;
      const name = s.slice(start, this.pos);
      if (name.length > MAX_ATOM_LENGTH) this.fail(`atom longer than ${MAX_ATOM_LENGTH} characters`, line, column);
      return tok('atom', name, name);
    }
    if (VAR_START.test(c)) {
      const start = this.pos;
      while (this.pos < s.length && NAME_CHAR.test(s[this.pos] as string)) this.pos++;
      return tok('var', s.slice(start, this.pos));
    }
    if (c === "'") {
      const name = this.quoted("'", 'quoted atom', line, column);
      if ([...name].length > MAX_ATOM_LENGTH) this.fail(`atom longer than ${MAX_ATOM_LENGTH} characters`, line, column);
      return tok('atom', `'${name}'`, name);
    }
    if (c === '"') return tok('string', '"', this.quoted('"', 'string', line, column));
    if (DIGIT.test(c)) return this.number(line, column, 1);
    if (
      (c === '-' || c === '+') &&
      this.pos + 1 < s.length &&
      (DIGIT.test(s[this.pos + 1] as string) || s[this.pos + 1] === '$')
    ) {
      this.pos++;
      if (s[this.pos] === '$') return this.char(line, column, c === '-' ? -1 : 1);
      return this.number(line, column, c === '-' ? -1 : 1);
    }
    if (c === '$') return this.char(line, column, 1);
    if (c2 === '<<' || c2 === '>>' || c2 === '#{' || c2 === '=>') {
      this.pos += 2;
      return tok('punct', c2);
    }
    if ('{}[](),|'.includes(c)) {
      this.pos++;
      return tok('punct', c);
    }
    if (c === '.') {
      const after = s[this.pos + 1];
      if (after === undefined || /\s|%/.test(after)) {
        this.pos++;
        return tok('dot', '.');
      }
    }
    return this.fail(`unexpected character '${c}'`, line, column);
  }

  private number(line: number, column: number, sign: 1 | -1): Token {
    const s = this.src;
    const digits = (allowed: RegExp): string => {
      const start = this.pos;
      while (
        this.pos < s.length &&
        (allowed.test(s[this.pos] as string) || (s[this.pos] === '_' && allowed.test(s[this.pos + 1] ?? '')))
      )
        this.pos++;
      return s.slice(start, this.pos).replaceAll('_', '');
    };
    const start = this.pos;
    const intPart = digits(DIGIT);
    if (s[this.pos] === '#') {
      const base = Number(intPart);
      if (base < 2 || base > 36) this.fail(`base ${intPart} is not between 2 and 36`, line, column);
      this.pos++;
      const alphabet = '0123456789abcdefghijklmnopqrstuvwxyz'.slice(0, base);
      const body = digits(new RegExp(`[${alphabet}${alphabet.slice(10).toUpperCase()}]`, ''));
      if (body === '') this.fail(`expected base-${base} digits after '${intPart}#'`, line, column);
      let n = 0n;
      for (const d of body.toLowerCase()) n = n * BigInt(base) + BigInt(alphabet.indexOf(d));
      return this.integerToken(sign < 0 ? -n : n, s.slice(start, this.pos), line, column);
    }
    if (s[this.pos] === '.' && DIGIT.test(s[this.pos + 1] ?? '')) {
      this.pos++;
      const frac = digits(DIGIT);
      let exp = '';
      if ((s[this.pos] === 'e' || s[this.pos] === 'E') && /[-+0-9]/.test(s[this.pos + 1] ?? '')) {
        const save = this.pos;
        this.pos++;
        let expSign = '';
        if (s[this.pos] === '-' || s[this.pos] === '+') expSign = s[this.pos++] as string;
        const expDigits = digits(DIGIT);
        if (expDigits === '') this.pos = save;
        else exp = `e${expSign}${expDigits}`;
      }
      const value = sign * Number(`${intPart}.${frac}${exp}`);
      if (!Number.isFinite(value)) this.fail('float out of range', line, column);
      return { kind: 'float', text: s.slice(start, this.pos), value, line, column };
    }
    return this.integerToken(BigInt(intPart) * BigInt(sign), s.slice(start, this.pos), line, column);
  }

  private integerToken(n: bigint, text: string, line: number, column: number): Token {
    return { kind: 'int', text, value: narrowInteger(n), line, column };
  }

  private char(line: number, column: number, sign: 1 | -1): Token {
    this.pos++; // the $
    if (this.pos >= this.src.length) this.fail("expected a character after '$'", line, column, true);
    let code: number;
    if (this.src[this.pos] === '\\') {
      code = this.escapeSequence(line, column).codePointAt(0) as number;
    } else {
      code = this.src.codePointAt(this.pos) as number;
      this.pos += code > 0xffff ? 2 : 1;
    }
    return { kind: 'int', text: '$', value: sign * code, line, column };
  }

  /** Reads a quoted string or atom whose opening quote is at `pos`; returns its contents. */
  private quoted(quote: string, what: string, line: number, column: number): string {
    const s = this.src;
    this.pos++;
    let out = '';
    for (;;) {
      if (this.pos >= s.length) this.fail(`unterminated ${what}`, line, column, true);
      const c = s[this.pos] as string;
      if (c === quote) {
        this.pos++;
        return out;
      }
      if (c === '\\') {
        out += this.escapeSequence(line, column);
        continue;
      }
      if (c === '\n') {
        this.line++;
        this.lineStart = this.pos + 1;
      }
      out += c;
      this.pos++;
    }
  }

  /** Reads one escape sequence starting at the backslash at `pos`. */
  private escapeSequence(line: number, column: number): string {
    const s = this.src;
    const escLine = this.line;
    const escColumn = this.column;
    this.pos++; // the backslash
    if (this.pos >= s.length) this.fail('unterminated escape sequence', line, column, true);
    const c = s[this.pos++] as string;
    const simple: Record<string, string> = {
      b: '\b',
      d: '\x7f',
      e: '\x1b',
      f: '\f',
      n: '\n',
      r: '\r',
      s: ' ',
      t: '\t',
      v: '\v',
    };
    if (simple[c] !== undefined) return simple[c];
    if (/[0-7]/.test(c)) {
      let oct = c;
      while (oct.length < 3 && /[0-7]/.test(s[this.pos] ?? '')) oct += s[this.pos++];
      return String.fromCodePoint(parseInt(oct, 8));
    }
    if (c === 'x') {
      let hex: string;
      if (s[this.pos] === '{') {
        const end = s.indexOf('}', this.pos);
        hex = end < 0 ? '' : s.slice(this.pos + 1, end);
        if (!/^[0-9a-fA-F]{1,6}$/.test(hex))
          this.fail('bad \\x{...} escape: expected 1 to 6 hex digits', escLine, escColumn);
        this.pos = end + 1;
      } else {
        hex = s.slice(this.pos, this.pos + 2);
        if (!/^[0-9a-fA-F]{2}$/.test(hex))
          this.fail('bad \\x escape: expected two hex digits or \\x{...}', escLine, escColumn);
        this.pos += 2;
      }
      const code = parseInt(hex, 16);
      if (code > 0x10ffff) this.fail('escape is beyond the last Unicode code point', escLine, escColumn);
      return String.fromCodePoint(code);
    }
    if (c === '^') {
      const ctl = s[this.pos++];
      if (ctl === undefined || !/[a-zA-Z@[\\\]^_?]/.test(ctl)) this.fail('bad \\^ control escape', escLine, escColumn);
      return String.fromCharCode(ctl === '?' ? 0x7f : ctl.toUpperCase().charCodeAt(0) & 0x1f);
    }
    if (c === '\n') {
      this.line++;
      this.lineStart = this.pos;
    }
    // Erlang: any other escaped character stands for itself (\\, \', \", ...).
    return c;
  }
}
