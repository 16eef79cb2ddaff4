/**
 * Prints terms as Erlang term text, the way the Erlang shell does: `{ok,"writing a book"}`.
 *
 * The output parses back to an equal term (see `parse.ts`) for every value the parser can produce. Map keys are
 * printed in sorted order, so `formatTerm` is also a canonical form: {@link termKey} relies on that.
 */
import { Atom, Float, Tuple, isIntegerNumber, isTermObject, type Term } from './model.js';

const BARE_ATOM = /^[a-z][a-zA-Z0-9_@]*$/;
// Erlang's reserved words must be quoted to be read back as atoms.
const RESERVED = new Set([
  'after',
  'and',
  'andalso',
  'band',
  'begin',
  'bnot',
  'bor',
  'bsl',
  'bsr',
  'bxor',
  'case',
  'catch',
  'cond',
  'div',
  'else',
  'end',
  'fun',
  'if',
  'let',
  'maybe',
  'not',
  'of',
  'or',
  'orelse',
  'receive',
  'rem',
  'try',
  'when',
  'xor',
]);
/** Terms nested deeper than this are refused rather than overflowing the stack (cyclic objects, for one). */
const MAX_PRINT_DEPTH = 10_000;

/** Prints a term as Erlang term text (without the terminating `.`). */
export function formatTerm(term: Term): string {
  const out: string[] = [];
  write(term, out, 0);
  return out.join('');
}

/**
 * A string that is equal for equal terms and different for different ones; usable as a `Map` key. Built in one pass,
 * in time and length proportional to the term (maps by their entries in sorted order); only a term nested deeper than
 * {@link QUICK_KEY_DEPTH} (never one that was decoded) falls back to its printed form. The short forms start with a
 * control character that printed forms never do, so the two cannot collide.
 */
export function termKey(term: Term): string {
  // The common keys (an atom, a string, an integer) need no list of parts.
  const single = scalarKey(term);
  if (single !== undefined) return single;
  const parts: string[] = [];
  return keyParts(term, parts, 0) ? parts.join(SEP) : formatTerm(term);
}

/** Past this nesting termKey prints the term instead (a cyclic object is caught there). */
export const QUICK_KEY_DEPTH = 64;

const SEP = '\x01';
/** Atoms that print as JavaScript's null, undefined, NaN and infinities print: each is the same term as that value. */
const PRINTED_AS_JS = new Set(['null', 'undefined', 'NaN', 'Infinity', '-Infinity']);

/**
 * The key of a term that holds no others, or undefined. Every form starts with its kind (a control character) and is
 * self-delimiting (a length, or characters that never include the separator), so that a list of them, joined, is
 * unambiguous.
 */
function scalarKey(t: Term): string | undefined {
  switch (typeof t) {
    case 'string':
      return `\x02${t.length}${SEP}${t}`;
    case 'number':
      return isIntegerNumber(t) ? `\x03${t}` : floatKey(t);
    case 'boolean':
      return t ? '\x04true' : '\x04false';
    case 'bigint':
      return `\x03${t}`;
    case 'undefined':
      return '\x0aundefined';
  }
  if (t === null) return '\x0anull';
  if (t instanceof Float) return floatKey(t.value);
  if (t instanceof Atom) {
    // Atoms true and false are the booleans (term/model.ts); keep them equal whichever way they come.
    if (t.name === 'true' || t.name === 'false') return `\x04${t.name}`;
    if (PRINTED_AS_JS.has(t.name)) return `\x0a${t.name}`;
    return `\x05${t.name.length}${SEP}${t.name}`;
  }
  if (t instanceof Uint8Array)
    return `\x08${t.length}${SEP}${Buffer.from(t.buffer, t.byteOffset, t.length).toString('latin1')}`;
  return undefined;
}

/** A float's key, whether it is held as a number or a Float: never an integer's (1.0 is not 1). */
function floatKey(n: number): string {
  return Number.isFinite(n) ? `\x09${Object.is(n, -0) ? '-0' : n}` : `\x0a${n}`;
}

/** Appends the parts of `t`'s key; false when it is nested too deep (or is not a term). */
function keyParts(t: Term, out: string[], depth: number): boolean {
  const single = scalarKey(t);
  if (single !== undefined) {
    out.push(single);
    return true;
  }
  if (depth > QUICK_KEY_DEPTH) return false;
  if (t instanceof Tuple || Array.isArray(t)) {
    const items = t instanceof Tuple ? t.elements : (t as readonly Term[]);
    out.push(`${t instanceof Tuple ? '\x06' : '\x07'}${items.length}`);
    for (const item of items) if (!keyParts(item, out, depth + 1)) return false;
    return true;
  }
  // A map: its entries in the order of their keys' keys (maps are equal whatever order they were written in).
  const entries: [string, string][] = [];
  const one = (x: Term): string | undefined => {
    const parts: string[] = [];
    return keyParts(x, parts, depth + 1) ? parts.join(SEP) : undefined;
  };
  if (t instanceof Map) {
    for (const [k, v] of t) {
      const kk = one(k);
      const vk = one(v);
      if (kk === undefined || vk === undefined) return false;
      entries.push([kk, vk]);
    }
  } else if (isTermObject(t)) {
    for (const k of Object.keys(t)) {
      const vk = one(t[k] as Term);
      if (vk === undefined) return false;
      entries.push([scalarKey(k) as string, vk]);
    }
  } else {
    return false;
  }
  entries.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  out.push(`\x0b${entries.length}`);
  for (const [k, v] of entries) out.push(k, v);
  return true;
}

/** Structural equality of two terms (atoms by name, tuples and lists element by element). */
export function termEquals(a: Term, b: Term): boolean {
  return a === b || termKey(a) === termKey(b);
}

export function formatAtom(name: string): string {
  if (BARE_ATOM.test(name) && !RESERVED.has(name)) return name;
  return `'${escapeText(name, "'")}'`;
}

export function formatString(s: string): string {
  return `"${escapeText(s, '"')}"`;
}

function write(term: Term, out: string[], depth: number): void {
  if (depth > MAX_PRINT_DEPTH) throw new RangeError(`term is nested deeper than ${MAX_PRINT_DEPTH} levels`);
  switch (typeof term) {
    case 'string':
      out.push(formatString(term));
      return;
    case 'number':
      out.push(formatNumber(term));
      return;
    case 'bigint':
      out.push(term.toString());
      return;
    case 'boolean':
      out.push(term ? 'true' : 'false');
      return;
    case 'undefined':
      // Not a Term, but JavaScript callers produce it; Erlang's word for "nothing" is the atom undefined.
      out.push('undefined');
      return;
  }
  if (term === null) {
    out.push('null');
  } else if (term instanceof Atom) {
    out.push(formatAtom(term.name));
  } else if (term instanceof Float) {
    out.push(formatFloat(term.value));
  } else if (term instanceof Tuple) {
    writeSeq('{', term.elements, '}', out, depth);
  } else if (Array.isArray(term)) {
    writeSeq('[', term as readonly Term[], ']', out, depth);
  } else if (term instanceof Uint8Array) {
    out.push(formatBinary(term));
  } else if (term instanceof Map) {
    const entries = [...term].map(([k, v]) => [formatTerm(k), v] as const);
    writeMap(entries, out, depth);
  } else if (isTermObject(term)) {
    writeMap(
      Object.keys(term).map((k) => [formatString(k), term[k] as Term] as const),
      out,
      depth,
    );
  } else {
    throw new TypeError(`not a term: ${Object.prototype.toString.call(term)}`);
  }
}

function writeSeq(open: string, items: readonly Term[], close: string, out: string[], depth: number): void {
  out.push(open);
  for (let i = 0; i < items.length; i++) {
    if (i > 0) out.push(',');
    write(items[i] as Term, out, depth + 1);
  }
  out.push(close);
}

function writeMap(entries: (readonly [string, Term])[], out: string[], depth: number): void {
  entries.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  out.push('#{');
  entries.forEach(([key, value], i) => {
    if (i > 0) out.push(',');
    out.push(key, ' => ');
    write(value, out, depth + 1);
  });
  out.push('}');
}

function formatNumber(n: number): string {
  return isIntegerNumber(n) ? String(n) : formatFloat(n);
}

function formatFloat(n: number): string {
  if (Object.is(n, -0)) return '-0.0';
  if (!Number.isFinite(n)) return formatAtom(String(n));
  // Erlang floats need a digit on both sides of the point: 1 is written 1.0, 1e-7 is 1.0e-7 and 1e+300 is 1.0e300
  // (whole numbers past 2^53 too: they are floats, and their digits alone would read back as an integer).
  const s = String(n);
  const e = s.indexOf('e');
  const mantissa = e < 0 ? s : s.slice(0, e);
  const exponent = e < 0 ? '' : s.slice(e).replace('+', '');
  return (mantissa.includes('.') ? mantissa : `${mantissa}.0`) + exponent;
}

function formatBinary(bytes: Uint8Array): string {
  if (bytes.length === 0) return '<<>>';
  let printable = true;
  for (const b of bytes) {
    if (b < 0x20 || b > 0x7e) {
      printable = b === 0x0a || b === 0x09;
      if (!printable) break;
    }
  }
  if (printable)
    return `<<${formatString(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString('latin1'))}>>`;
  return `<<${bytes.join(',')}>>`;
}

const ESCAPES: Record<string, string> = {
  '\\': '\\\\',
  '\b': '\\b',
  '\x7f': '\\d',
  '\x1b': '\\e',
  '\f': '\\f',
  '\n': '\\n',
  '\r': '\\r',
  '\t': '\\t',
  '\v': '\\v',
};

function escapeText(s: string, quote: string): string {
  let out = '';
  for (const ch of s) {
    const code = ch.codePointAt(0) as number;
    if (ch === quote) out += `\\${quote}`;
    else if (ESCAPES[ch] !== undefined) out += ESCAPES[ch];
    else if (code < 0x20 || (code >= 0x80 && code < 0xa0) || (code >= 0xd800 && code <= 0xdfff))
      out += `\\x{${code.toString(16).toUpperCase()}}`;
    else out += ch;
  }
  return out;
}
