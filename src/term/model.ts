/**
 * The JavaScript model of Erlang terms.
 *
 * Erlang keeps atoms apart from strings and tuples apart from lists; so does this model, because the book's
 * protocol depends on it (`{store, joe, "writing a book"}` is a tuple of two atoms and a string). The mapping:
 *
 * | Erlang                | JavaScript                                   |
 * | --------------------- | -------------------------------------------- |
 * | atom `joe`            | `Atom` (`atom('joe')`)                       |
 * | atoms `true`, `false` | `true`, `false`                              |
 * | tuple `{a, 1}`        | `Tuple` (`tuple(atom('a'), 1)`)              |
 * | list `[1, 2]`         | `Array`                                      |
 * | string `"abc"`        | `string`                                     |
 * | integer               | `number` (safe range) or `bigint`            |
 * | float                 | `number`                                     |
 * | binary `<<"abc">>`    | `Uint8Array` (a `Buffer` when decoded)       |
 * | map `#{k => v}`       | `Map`, or a plain object when keys are strings |
 *
 * `null` has no Erlang counterpart; it travels as MessagePack nil and prints as the atom `null`.
 * Atoms are never interned: a peer cannot grow a table by inventing names (Erlang's atom-table exhaustion).
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
