// Remote apply, in the spirit of the book's dist_demo:rpc(Pid, M, F, A), with what distributed Erlang lacks: an
// allow-list. {apply, Module, Function, Args} runs Module:Function(Args...) only if {Module, Function, Arity} is on the
// list the service was configured with (ArgsS), and refuses everything else with a clear error.
//
//   {apply, math, sqrt, [2.0]}      -> {ok, 1.4142135623730951}
//   {apply, math, sqrt, [4]}        -> {ok, 2.0}     (a float, as in Erlang)
//   {apply, os, cmd, ["rm -rf /"]}  -> {error, {notAllowed, {os, cmd, 1}}}
//   allowed                         -> [{math, sqrt, 1}, ...]
//
// ArgsS: a list of {Module, Function, Arity}; [] means the default list below. Nothing outside FUNCTIONS can ever be
// allowed: the list only narrows what this module implements.
import { Float, atom, float, formatTerm, isAtom, isFloat, isTuple, tuple } from 'lib-chan';

// A float whose value is whole (4.0) arrives as a Float, not a number: JavaScript's one number type would make it the
// integer 4. Results keep Erlang's kinds: math functions answer floats (float() makes 2 the float 2.0), abs and sum
// answer floats when given floats, max answers the element it picked.
const num = (x) => {
  if (x instanceof Float) return x.value;
  if (typeof x !== 'number') throw new TypeError(`${formatTerm(x)} is not a number`);
  return x;
};
const int = (x) => {
  if (!Number.isSafeInteger(x)) throw new TypeError(`${formatTerm(x)} is not an integer`);
  return x;
};
const list = (x) => {
  if (!Array.isArray(x)) throw new TypeError(`${formatTerm(x)} is not a list`);
  return x;
};

/** Every function this service can run, by "module:function/arity". */
const FUNCTIONS = {
  'math:sqrt/1': (x) => float(Math.sqrt(num(x))),
  'math:pow/2': (x, y) => float(num(x) ** num(y)),
  'math:abs/1': (x) => (isFloat(x) ? float(Math.abs(num(x))) : Math.abs(num(x))),
  'math:pi/0': () => float(Math.PI),
  'lists:sum/1': (xs) => {
    const sum = list(xs).reduce((a, b) => a + num(b), 0);
    return xs.some(isFloat) ? float(sum) : sum;
  },
  'lists:max/1': (xs) => {
    if (list(xs).length === 0) throw new TypeError('[] has no maximum');
    return xs.reduce((max, x) => (num(x) > num(max) ? x : max));
  },
  'lists:reverse/1': (xs) => [...list(xs)].reverse(),
  'lists:seq/2': (a, b) =>
    Array.from({ length: Math.max(0, Math.min(10_000, int(b) - int(a) + 1)) }, (_, i) => int(a) + i),
  'erlang:node/0': () => atom(`lib-chan@${process.pid}`),
};

const DEFAULT_ALLOWED = [
  'math:sqrt/1',
  'math:pow/2',
  'math:abs/1',
  'math:pi/0',
  'lists:sum/1',
  'lists:max/1',
  'lists:reverse/1',
  'erlang:node/0',
];

const mfaKey = (m, f, a) => `${m}:${f}/${a}`;
const mfaTerm = (key) => {
  const [, m, f, a] = /^(\w+):(\w+)\/(\d+)$/.exec(key);
  return tuple(atom(m), atom(f), Number(a));
};

export function start(argsS) {
  const wanted =
    Array.isArray(argsS) && argsS.length > 0
      ? argsS.map((t) => {
          if (!isTuple(t, undefined, 3) || !isAtom(t.at(0)) || !isAtom(t.at(1)) || !Number.isSafeInteger(t.at(2))) {
            throw new Error(`mod_math: ArgsS must be a list of {Module, Function, Arity}, found ${formatTerm(t)}`);
          }
          return mfaKey(t.at(0).name, t.at(1).name, t.at(2));
        })
      : DEFAULT_ALLOWED;
  for (const k of wanted)
    if (!FUNCTIONS[k]) throw new Error(`mod_math: ${k} is not a function this service implements`);
  return { allowed: new Set(wanted) };
}

export async function start_me_up(mm, _argsC, _argsS, ctx) {
  const { allowed } = ctx.state;
  for await (const m of mm) {
    if (m.type === 'chan_closed') return;
    const x = m.data;
    if (isAtom(x, 'allowed')) {
      mm.send([...allowed].map(mfaTerm));
    } else if (isTuple(x, 'apply', 4) && isAtom(x.at(1)) && isAtom(x.at(2)) && Array.isArray(x.at(3))) {
      const key = mfaKey(x.at(1).name, x.at(2).name, x.at(3).length);
      if (!allowed.has(key)) {
        mm.send(tuple(atom('error'), tuple(atom('notAllowed'), tuple(x.at(1), x.at(2), x.at(3).length))));
        continue;
      }
      try {
        mm.send(tuple(atom('ok'), FUNCTIONS[key](...x.at(3))));
      } catch (err) {
        mm.send(tuple(atom('error'), tuple(atom('badarg'), err.message)));
      }
    } else {
      mm.send(tuple(atom('error'), tuple(atom('badRequest'), x)));
    }
  }
}
