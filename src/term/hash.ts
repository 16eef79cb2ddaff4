/**
 * Terms compared by value, fast enough for hostile input: the codec's check that no map has a key twice.
 *
 * `termKey` (print.ts) builds a string per term, and a map key that is itself a map keyed by a map... is built again
 * at every level: a 15 KB frame took 150 ms that way. Here each term gets a 30-bit structural hash instead, in one
 * walk that allocates nothing, remembered for every map and for every list or tuple that nests (so an enclosing key
 * reuses its parts'), and two terms are compared in full only when their hashes meet. The hash is seeded per process,
 * and every step of it goes through the seed, so that a peer cannot choose keys that meet.
 */
import { randomInt } from 'node:crypto';
import { Atom, Float, Tuple, isIntegerNumber, isSafeBigInt, isTermObject, type Term } from './model.js';
import { termKey } from './print.js';

const SEED = randomInt(0, 2 ** 31);
const scratch = new DataView(new ArrayBuffer(8));

/** Atoms that are the same term as a JavaScript value (print.ts, PRINTED_AS_JS): hashed as that value. */
const AS_JS = new Set(['null', 'undefined', 'NaN', 'Infinity', '-Infinity']);

/**
 * One step of the hash. Its result keeps 30 bits: a small integer to V8 (a Smi), so that a hash is never a heap
 * number, neither as a function's result nor as a key of the Map that TermMap keeps.
 */
function mix(h: number, x: number): number {
  h = Math.imul(h ^ x, 0x9e3779b1);
  return (h ^ (h >>> 15)) & 0x3fffffff;
}

function stringHash(tag: number, s: string): number {
  let h = mix(SEED ^ tag, s.length);
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return mix(h, tag);
}

function numberHash(n: number): number {
  return isIntegerNumber(n) ? mix(mix(SEED ^ 3, n | 0), Math.floor(n / 2 ** 32)) : floatHash(n);
}

/** A float's hash, whether it is held as a number or a Float: 1.0 hashes apart from 1. */
function floatHash(n: number): number {
  if (!Number.isFinite(n)) return stringHash(10, String(n));
  scratch.setFloat64(0, n);
  return mix(mix(SEED ^ 9, scratch.getInt32(0)), scratch.getInt32(4));
}

/**
 * A hash that is equal for terms termKey calls equal. Maps, and lists and tuples that nest, are remembered in `memo`.
 */
export function termHash(t: Term, memo: WeakMap<object, number>): number {
  switch (typeof t) {
    case 'string':
      return stringHash(2, t);
    case 'number':
      return numberHash(t);
    case 'boolean':
      return mix(SEED ^ 4, t ? 1 : 0);
    case 'bigint':
      return isSafeBigInt(t) ? numberHash(Number(t)) : stringHash(3, t.toString());
    case 'undefined':
      return stringHash(10, 'undefined');
  }
  if (t === null) return stringHash(10, 'null');
  if (t instanceof Float) return floatHash(t.value);
  if (t instanceof Atom) {
    if (t.name === 'true' || t.name === 'false') return mix(SEED ^ 4, t.name === 'true' ? 1 : 0);
    return AS_JS.has(t.name) ? stringHash(10, t.name) : stringHash(5, t.name);
  }
  if (t instanceof Uint8Array) {
    let h = mix(SEED ^ 8, t.length);
    for (let i = 0; i < t.length; i++) h = Math.imul(h ^ (t[i] as number), 0x01000193);
    return mix(h, 8);
  }
  if (t instanceof Tuple || Array.isArray(t)) {
    const items = t instanceof Tuple ? t.elements : (t as readonly Term[]);
    // A term whose parts are all scalars costs no more to hash again than to look up, and remembering it would cost a
    // WeakMap entry (and the collector's work on it) per key looked up: only terms that nest are remembered, which is
    // what keeps hashing a deep term linear (an enclosing term reuses its parts' hashes).
    let nested = false;
    for (const item of items) if (isContainer(item)) nested = true;
    if (nested) {
      const known = memo.get(t);
      if (known !== undefined) return known;
    }
    let h = mix(SEED ^ (t instanceof Tuple ? 6 : 7), items.length);
    for (const item of items) h = mix(h, termHash(item, memo));
    if (nested) memo.set(t, h);
    return h;
  }
  // A map: its entries in any order (a sum of their hashes); remembered whatever it holds. An entry's hash takes the
  // key and then the value through seeded steps: one step on both (mix(hk, hv) depends only on hk ^ hv) would give
  // every entry whose key equals its value the same hash, whatever the seed, and a peer the keys that all meet.
  const known = memo.get(t);
  if (known !== undefined) return known;
  let sum = 0;
  let n = 0;
  if (t instanceof Map) {
    for (const [k, v] of t) {
      sum = (sum + entryHash(termHash(k, memo), termHash(v, memo))) | 0;
      n++;
    }
  } else if (isTermObject(t)) {
    for (const k of Object.keys(t)) {
      sum = (sum + entryHash(stringHash(2, k), termHash(t[k] as Term, memo))) | 0;
      n++;
    }
  }
  const h = mix(mix(SEED ^ 11, n), sum);
  memo.set(t, h);
  return h;
}

/** A map entry's hash: its key's, then its value's, each through a step of its own. */
function entryHash(key: number, value: number): number {
  return mix(mix(SEED ^ 12, key), value);
}

/** A list, tuple or map (not a binary, Float or Atom). */
function isContainer(t: Term): boolean {
  return (
    typeof t === 'object' && t !== null && !(t instanceof Atom) && !(t instanceof Float) && !(t instanceof Uint8Array)
  );
}

/**
 * Whether two terms are equal as termKey compares them (atoms by name, maps whatever their order, 5 and 5n), by
 * walking both, with their hashes (remembered in `memo`) to tell most differences at once.
 */
export function sameTerm(a: Term, b: Term, memo: WeakMap<object, number>): boolean {
  const quick = quickVerdict(a, b);
  if (quick !== undefined) return quick;
  if (termHash(a, memo) !== termHash(b, memo)) return false;
  return sameStructure(a, b, memo);
}

/**
 * The common cases at once, without hashing: two numbers (as termKey tells them), the same value, two strings that
 * are not the same, two atoms (compared by name). Undefined when it takes more to tell.
 */
function quickVerdict(a: Term, b: Term): boolean | undefined {
  // Two numbers as termKey tells them: the float -0.0 is not the integer 0, NaN is NaN.
  if (typeof a === 'number' && typeof b === 'number') return Object.is(a, b);
  if (a === b) return true;
  if (typeof a === 'string' && typeof b === 'string') return false;
  if (a instanceof Atom && b instanceof Atom) return a.name === b.name;
  return undefined;
}

/** Whether two terms whose hashes are equal are equal (sameTerm without comparing their hashes). */
function sameParts(a: Term, b: Term, memo: WeakMap<object, number>): boolean {
  const quick = quickVerdict(a, b);
  return quick !== undefined ? quick : sameStructure(a, b, memo);
}

/** Whether two terms that {@link quickVerdict} could not tell apart are equal, part by part. */
function sameStructure(a: Term, b: Term, memo: WeakMap<object, number>): boolean {
  const seqA = a instanceof Tuple ? a.elements : Array.isArray(a) ? (a as readonly Term[]) : null;
  const seqB = b instanceof Tuple ? b.elements : Array.isArray(b) ? (b as readonly Term[]) : null;
  if (seqA || seqB) {
    if (!seqA || !seqB || a instanceof Tuple !== b instanceof Tuple || seqA.length !== seqB.length) return false;
    for (let i = 0; i < seqA.length; i++) if (!sameTerm(seqA[i] as Term, seqB[i] as Term, memo)) return false;
    return true;
  }
  const mapA = entriesOf(a);
  const mapB = entriesOf(b);
  if (mapA || mapB) {
    if (!mapA || !mapB || mapA.length !== mapB.length) return false;
    const inB = new TermMap<Term>(memo);
    for (const [k, v] of mapB) inB.set(k, v);
    for (const [k, v] of mapA) {
      const w = inB.get(k);
      if (w === undefined || !sameTerm(v, w.value, memo)) return false;
    }
    return true;
  }
  // Scalars: their keys are short to make (a string or binary as long as itself).
  return termKey(a) === termKey(b);
}

function entriesOf(t: Term): [Term, Term][] | null {
  if (t instanceof Map) return [...t];
  if (isTermObject(t)) return Object.keys(t).map((k) => [k, t[k] as Term]);
  return null;
}

/** One entry of a {@link TermMap}. */
export interface TermEntry<V> {
  value: V;
  /** A number the map's owner keeps with the entry (the memory store: what the entry costs). */
  weight: number;
}

/**
 * What a flat key is made of, for comparing it without following its objects: {@link flatten} sets these two and
 * returns the key's shape (0: not flat). Module variables rather than an object, so that a lookup allocates nothing.
 */
let flatA: FlatPart = 0;
let flatB: FlatPart = 0;
type FlatPart = string | number;

/** The kinds of a flat key's parts: an atom (its name), a string, an integer (a number). */
const ATOM = 1;
const STRING = 2;
const INTEGER = 3;

/**
 * The shape of `t` if it is flat, in the sense of this map: an atom (other than the words that are also JavaScript
 * values: true, false, null...), a string or an integer, alone or as the elements of a tuple of one or two; 0 for any
 * other term. For a flat term it sets {@link flatA} and {@link flatB} to its parts (a name, a string, a number), so
 * that two flat terms are equal exactly when their shapes and parts are (===), as sameTerm would find.
 */
function flatten(t: Term): number {
  if (t instanceof Tuple) {
    const items = t.elements;
    if (items.length === 2) {
      const k0 = flatPart(items[0] as Term);
      if (k0 === 0) return 0;
      const a = flatA;
      const k1 = flatPart(items[1] as Term);
      if (k1 === 0) return 0;
      flatB = flatA;
      flatA = a;
      return 32 + 4 * k0 + k1;
    }
    if (items.length === 1) {
      const k0 = flatPart(items[0] as Term);
      flatB = 0;
      return k0 === 0 ? 0 : 16 + k0;
    }
    return 0;
  }
  const k = flatPart(t);
  flatB = 0;
  return k;
}

/** The kind of a flat part (0: not one), its value left in {@link flatA}. */
function flatPart(t: Term): number {
  if (typeof t === 'string') {
    flatA = t;
    return STRING;
  }
  if (typeof t === 'number') {
    if (!isIntegerNumber(t)) return 0;
    flatA = t;
    return INTEGER;
  }
  if (typeof t === 'bigint') {
    // 5n is the integer 5, as termKey has it.
    if (!isSafeBigInt(t)) return 0;
    flatA = Number(t);
    return INTEGER;
  }
  if (t instanceof Atom) {
    const name = t.name;
    if (name === 'true' || name === 'false' || AS_JS.has(name)) return 0;
    flatA = name;
    return ATOM;
  }
  return 0;
}

/**
 * A TermMap's entry. A flat key is kept as its shape and parts only (the term itself is let go: in a store of millions
 * of keys, three objects less each for the collector to keep and walk); another key as the term, its shape 0.
 */
class Entry<V> implements TermEntry<V> {
  constructor(
    readonly key: Term | undefined,
    public value: V,
    public weight: number,
    readonly shape: number,
    readonly a: FlatPart,
    readonly b: FlatPart,
  ) {}
}

/** An entry for `key`, probed as `p`. */
function entry<V>(key: Term, p: Probe, value: V, weight: number): Entry<V> {
  return new Entry(p.shape === 0 ? key : undefined, value, weight, p.shape, p.a, p.b);
}

/** A key with what {@link flatten} found of it (read at once: comparing nested keys flattens others). */
interface Probe {
  shape: number;
  a: FlatPart;
  b: FlatPart;
}

/** The probe of `key`, in `p` (one per map, reused: a lookup allocates nothing). */
function probe(p: Probe, key: Term): Probe {
  p.shape = flatten(key);
  // Parts only for a flat key: for another, flatA and flatB still hold what an earlier key left, which an entry must
  // not keep alive.
  p.a = p.shape === 0 ? 0 : flatA;
  p.b = p.shape === 0 ? 0 : flatB;
  return p;
}

/**
 * The hash a map files a probed key under: a flat key's from its shape and parts (no walk of its objects), another's
 * {@link termHash}. Equal keys get equal hashes because a term equal to a flat term is flat, with the same shape and
 * parts ({@link holds}); a flat key and another may meet in a hash, as any two keys may.
 */
function keyHash(p: Probe, key: Term, memo: WeakMap<object, number>): number {
  if (p.shape === 0) return termHash(key, memo);
  return mix(mix(mix(SEED ^ 13, p.shape), partHash(p.a)), partHash(p.b));
}

/** @internal For tests: the hash a {@link TermMap} files `key` under (to find keys whose hashes meet). */
export function mapHash(key: Term): number {
  return keyHash(probe({ shape: 0, a: 0, b: 0 }, key), key, new WeakMap());
}

/** A flat part's hash: a name or a string by its characters, an integer by its value. */
function partHash(x: FlatPart): number {
  return typeof x === 'string' ? stringHash(2, x) : numberHash(x);
}

/**
 * Whether `e` holds the probed key: where either is flat, by shape and parts (a term equal to a flat term is flat:
 * {@link flatten} takes 5n as 5 and leaves the atoms that are JavaScript values to the whole-term path, on both
 * sides); else by value, the whole term.
 */
function holds<V>(e: Entry<V>, p: Probe, key: Term, memo: WeakMap<object, number>): boolean {
  if (p.shape !== 0 || e.shape !== 0) return e.shape === p.shape && e.a === p.a && e.b === p.b;
  return sameParts(e.key as Term, key, memo);
}

/**
 * A map whose keys are terms compared by value (sameTerm), each found in time proportional to the key. A hash held by
 * one key (the usual case) holds its entry itself; only keys whose hashes meet share an array. A flat key (an atom, a
 * string, an integer, or a tuple of one or two of them: most keys) is kept and compared as the parts its entry holds,
 * not by following the stored key's objects (a tuple, its elements, an atom): in a large map each is a cache miss.
 */
export class TermMap<V> {
  private readonly byHash = new Map<number, Entry<V> | Entry<V>[]>();
  private count = 0;
  /** What was found of the key being looked up (a map's own: comparing nested keys uses other maps). */
  private readonly p: Probe = { shape: 0, a: 0, b: 0 };

  constructor(private readonly memo: WeakMap<object, number> = new WeakMap()) {}

  get size(): number {
    return this.count;
  }

  /** The entry whose key equals `key`, if any: its `value` and `weight` may be changed in place. */
  get(key: Term): TermEntry<V> | undefined {
    const p = probe(this.p, key);
    const slot = this.byHash.get(keyHash(p, key, this.memo));
    if (slot === undefined) return undefined;
    if (!Array.isArray(slot)) return holds(slot, p, key, this.memo) ? slot : undefined;
    for (const e of slot) if (holds(e, p, key, this.memo)) return e;
    return undefined;
  }

  /**
   * Sets the value (and weight) for `key`; returns the value it replaced, if any (undefined when the key is new).
   */
  set(key: Term, value: V, weight = 0): { replaced: V } | undefined {
    const p = probe(this.p, key);
    const h = keyHash(p, key, this.memo);
    const slot = this.byHash.get(h);
    if (slot === undefined) {
      this.byHash.set(h, entry(key, p, value, weight));
      this.count++;
      return undefined;
    }
    const bucket = Array.isArray(slot) ? slot : [slot];
    for (const e of bucket) {
      if (holds(e, p, key, this.memo)) {
        const replaced = e.value;
        e.value = value;
        e.weight = weight;
        return { replaced };
      }
    }
    bucket.push(entry(key, p, value, weight));
    if (bucket.length === 2) this.byHash.set(h, bucket);
    this.count++;
    return undefined;
  }

  /** Removes the entry whose key equals `key`; true if there was one. */
  delete(key: Term): boolean {
    const p = probe(this.p, key);
    const h = keyHash(p, key, this.memo);
    const slot = this.byHash.get(h);
    if (slot === undefined) return false;
    if (!Array.isArray(slot)) {
      if (!holds(slot, p, key, this.memo)) return false;
      this.byHash.delete(h);
    } else {
      const i = slot.findIndex((e) => holds(e, p, key, this.memo));
      if (i < 0) return false;
      slot.splice(i, 1);
      if (slot.length === 1) this.byHash.set(h, slot[0] as Entry<V>);
    }
    this.count--;
    return true;
  }
}

/** A set of terms by value: `add` says whether an equal term was there already. */
export class TermSet {
  private readonly map: TermMap<true>;

  constructor(memo: WeakMap<object, number> = new WeakMap()) {
    this.map = new TermMap(memo);
  }

  /** Adds `t`; false (and nothing added) when an equal term is already in the set. */
  add(t: Term): boolean {
    return this.map.set(t, true) === undefined;
  }
}
