/**
 * Terms as JSON, for people and programs that would rather type and read JSON (`chan --json`). Plain JSON values
 * stand for themselves (objects are maps with string keys, arrays are lists); what JSON cannot say is written as an
 * object with one `$` key:
 *
 *   {"$atom": "joe"}          the atom joe
 *   {"$tuple": [...]}         a tuple
 *   {"$binary": "aGk="}       a binary, base64
 *   {"$int": "123456789012345678901"}   an integer beyond JavaScript's safe range
 *   {"$float": 1}             a float whose value is whole (1.0): a plain JSON 1 (or 1.0) is the integer 1
 *                             (-0.0 is written {"$float": 0} by JSON.stringify, and comes back 0.0: still a float)
 *   {"$map": [[K, V], ...]}   a map whose keys are not all strings
 *
 * So `{lookup, joe}` is `{"$tuple": [{"$atom": "lookup"}, {"$atom": "joe"}]}`.
 */
import { Atom, Tuple, float, isFloat, isTermObject, mapKey, type Term, type TermObject } from './model.js';

export function termToJson(t: Term): unknown {
  if (t instanceof Atom) return { $atom: t.name };
  // A JSON reader takes 1 and 1.0 alike for the integer: only a float that is not whole can go as a plain number.
  if (isFloat(t)) {
    const n = typeof t === 'number' ? t : t.value;
    return Number.isInteger(n) ? { $float: n } : n;
  }
  if (t instanceof Tuple) return { $tuple: t.elements.map(termToJson) };
  if (t instanceof Uint8Array) return { $binary: Buffer.from(t.buffer, t.byteOffset, t.length).toString('base64') };
  if (typeof t === 'bigint') return { $int: t.toString() };
  if (Array.isArray(t)) return (t as readonly Term[]).map(termToJson);
  if (t instanceof Map) return { $map: [...t].map(([k, v]) => [termToJson(k), termToJson(v)]) };
  if (isTermObject(t)) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(t)) out[k] = termToJson(v);
    return out;
  }
  return t;
}

export class JsonTermError extends Error {}

export function jsonToTerm(v: unknown): Term {
  if (v === null || typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') return v;
  if (Array.isArray(v)) return v.map(jsonToTerm);
  if (typeof v !== 'object') throw new JsonTermError(`not JSON: ${typeof v}`);
  const o = v as Record<string, unknown>;
  const keys = Object.keys(o);
  if (keys.length === 1 && keys[0]?.startsWith('$')) {
    const [key] = keys as [string];
    const x = o[key];
    switch (key) {
      case '$atom':
        if (typeof x !== 'string') throw new JsonTermError('$atom takes a string');
        return new Atom(x);
      case '$tuple':
        if (!Array.isArray(x)) throw new JsonTermError('$tuple takes an array');
        return new Tuple(x.map(jsonToTerm));
      case '$binary':
        if (typeof x !== 'string') throw new JsonTermError('$binary takes a base64 string');
        return Buffer.from(x, 'base64');
      case '$int':
        if (typeof x !== 'string' || !/^-?\d+$/.test(x)) throw new JsonTermError('$int takes a string of digits');
        return BigInt(x);
      case '$float':
        if (typeof x !== 'number') throw new JsonTermError('$float takes a number');
        return float(x);
      case '$map':
        if (!Array.isArray(x) || !x.every((e) => Array.isArray(e) && e.length === 2))
          throw new JsonTermError('$map takes [[key, value], ...]');
        return new Map(x.map(([k, val]: unknown[]) => [mapKey(jsonToTerm(k)), jsonToTerm(val)]));
    }
  }
  const out: TermObject = {};
  for (const k of keys) {
    if (k === '__proto__')
      Object.defineProperty(out, k, { value: jsonToTerm(o[k]), enumerable: true, writable: true, configurable: true });
    else out[k] = jsonToTerm(o[k]);
  }
  return out;
}

/** Reads one term written as JSON; throws JsonTermError with a reason. */
export function parseJsonTerm(text: string): Term {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (err) {
    throw new JsonTermError(`not valid JSON: ${(err as Error).message}`);
  }
  return jsonToTerm(v);
}

export function formatJsonTerm(t: Term): string {
  return JSON.stringify(termToJson(t));
}
