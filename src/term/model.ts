/**
 * The JavaScript model of Erlang terms.
 *
 * Erlang keeps atoms apart from strings and tuples apart from lists; so does this model, because the book's
 * protocol depends on it (`{store, joe, "writing a book"}` is a tuple of two atoms and a string). The mapping:
 *
 * | Erlang                | JavaScript                                                       |
 * | --------------------- | ---------------------------------------------------------------- |
 * | atom `joe`            | `Atom` (`atom('joe')`)                                           |
 * | atoms `true`, `false` | `true`, `false`                                                  |
 * | tuple `{a, 1}`        | `Tuple` (`tuple(atom('a'), 1)`)                                  |
 * | list `[1, 2]`         | `Array`                                                          |
 * | string `"abc"`        | `string`                                                         |
 * | integer               | `number` that is a safe integer, or `bigint`                     |
 * | float `2.5`           | `number` that is not a safe integer (2.5, -0.0, 1.0e300)         |
 * | float `1.0`           | `Float` (`float(1)`): a float whose value is a safe integer      |
 * | binary `<<"abc">>`    | `Uint8Array` (a `Buffer` when decoded)                           |
 * | map `#{k => v}`       | `Map`, or a plain object when keys are strings                   |
 *
 * Erlang keeps `1` and `1.0` apart (`=:=`, map keys), and JavaScript has one `number` for both: a `number` that is a
 * safe integer (and not -0) is always the integer, so a float whose value is whole is a {@link Float} object instead.
 * Make floats with {@link float}, which boxes only when it must (`float(2.5) === 2.5`); test with {@link isFloat}.
 *
 * `null` has no Erlang counterpart; it travels as MessagePack nil and prints as the atom `null`.
 * Atoms are never interned in a table that grows: a peer cannot grow one by inventing names (Erlang's atom-table
 * exhaustion). The decoder remembers a few short atoms it met lately, in a table of fixed size, and gives every decode
 * of one the same frozen Atom: compare atoms by name ({@link isAtom}, {@link termEquals}), never by identity.
 */

/** An Erlang atom: a name that is not a string. Compare with {@link isAtom} or {@link termEquals}. */
export class Atom {
  readonly name: string;
  constructor(name: string) {
    this.name = name;
  }
  toString(): string {
    return this.name;
  }
}

/** An Erlang tuple: a fixed-size sequence that is not a list. */
export class Tuple {
  readonly elements: readonly Term[];
  constructor(elements: readonly Term[]) {
    this.elements = elements;
  }
  get size(): number {
    return this.elements.length;
  }
  /** The element at a zero-based index (Erlang's `element(I + 1, T)`). */
  at(index: number): Term | undefined {
    return this.elements[index];
  }
  [Symbol.iterator](): Iterator<Term> {
    return this.elements[Symbol.iterator]();
  }
}

/**
 * A float whose value is a whole number (`1.0`), which a plain `number` would make the integer `1`. Any float may be
 * held as one (`new Float(2.5)` is the float 2.5 everywhere), but {@link float} makes one only when it must. Arithmetic
 * on it (`valueOf`) gives a plain number: pass a result that must stay a float through {@link float}.
 */
export class Float {
  readonly value: number;
  constructor(value: number) {
    this.value = value;
  }
  valueOf(): number {
    return this.value;
  }
  /** As JavaScript writes the number, with `.0` where that would read as an integer (`${float(1)}` is `1.0`). */
  toString(): string {
    const s = String(this.value);
    return /^-?\d+$/.test(s) ? `${s}.0` : s;
  }
}

/** A number JavaScript would take for the integer term: a safe integer, and not -0 (which only a float can be). */
export function isIntegerNumber(n: number): boolean {
  return Number.isSafeInteger(n) && !Object.is(n, -0);
}

/** The float `n`: a {@link Float} when `n` would otherwise be the integer term, else `n` itself. */
export function float(n: number): Float | number {
  return isIntegerNumber(n) ? new Float(n) : n;
}

/**
 * `k` as a key of a JavaScript `Map`: the float -0.0 as a {@link Float}, since a `Map` stores the key -0 as 0, which
 * is the integer.
 */
export function mapKey(k: Term): Term {
  return Object.is(k, -0) ? new Float(-0) : k;
}

/** True for a float term: a {@link Float}, or a number that is not a safe integer (2.5, -0, 1e300). */
export function isFloat(x: unknown): x is Float | number {
  return x instanceof Float || (typeof x === 'number' && !isIntegerNumber(x));
}

/** A map whose keys are all strings, as MessagePack maps usually are. */
export interface TermObject {
  [key: string]: Term;
}

/** Any value that lib-chan can carry and print. */
export type Term =
  | Atom
  | Tuple
  | string
  | number
  | Float
  | bigint
  | boolean
  | null
  | Uint8Array
  | readonly Term[]
  | TermObject
  | Map<Term, Term>;

/** Makes an atom. */
export function atom(name: string): Atom {
  return new Atom(name);
}

/** Makes a tuple: `tuple(atom('lookup'), atom('joe'))` is `{lookup, joe}`. */
export function tuple(...elements: Term[]): Tuple {
  return new Tuple(elements);
}

/** True when `x` is an atom, and, if `name` is given, that atom. */
export function isAtom(x: unknown, name?: string): x is Atom {
  return x instanceof Atom && (name === undefined || x.name === name);
}

/**
 * True when `x` is a tuple whose first element is the atom `tag` (when given) and whose size is `size` (when given):
 * `isTuple(x, 'store', 3)` matches `{store, K, V}`.
 */
export function isTuple(x: unknown, tag?: string, size?: number): x is Tuple {
  if (!(x instanceof Tuple)) return false;
  if (size !== undefined && x.elements.length !== size) return false;
  return tag === undefined || isAtom(x.elements[0], tag);
}

/** True for a plain object (a string-keyed map), not an array, Atom, Tuple, binary or Map. */
export function isTermObject(x: unknown): x is TermObject {
  if (x === null || typeof x !== 'object') return false;
  const proto = Object.getPrototypeOf(x);
  return proto === Object.prototype || proto === null;
}

const MIN_SAFE = BigInt(Number.MIN_SAFE_INTEGER);
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

/** True for a bigint a number holds exactly (from -(2^53 - 1) to 2^53 - 1). */
export function isSafeBigInt(n: bigint): boolean {
  return n >= MIN_SAFE && n <= MAX_SAFE;
}

/** An integer as terms hold it: a number when one holds it exactly, else the bigint. */
export function narrowInteger(n: bigint): number | bigint {
  return isSafeBigInt(n) ? Number(n) : n;
}
