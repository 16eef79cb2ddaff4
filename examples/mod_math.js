// Remote apply, in the spirit of the book's dist_demo:rpc(Pid, M, F, A), with what distributed Erlang lacks: an
// allow-list. {apply, Module, Function, Args} runs Module:Function(Args...) only if {Module, Function, Arity} is on the
// list the service was configured with (ArgsS), and refuses everything else with a clear error.
//
//   {apply, math, sqrt, [2.0]}      -> {ok, 1.4142135623730951}
//   {apply, os, cmd, ["rm -rf /"]}  -> {error, {notAllowed, {os, cmd, 1}}}
//   allowed                         -> [{math, sqrt, 1}, ...]
//
// ArgsS: a list of {Module, Function, Arity}; [] means the default list below. Nothing outside FUNCTIONS can ever be
// allowed: the list only narrows what this module implements.
import { atom, formatTerm, isAtom, isTuple, tuple } from 'lib-chan';

const num = (x) => {
  if (typeof x !== 'number') throw new TypeError(`${formatTerm(x)} is not a number`);
  return x;
};
const list = (x) => {
  if (!Array.isArray(x)) throw new TypeError(`${formatTerm(x)} is not a list`);
  return x;
};

/** Every function this service can run, by "module:function/arity". */
const FUNCTIONS = {
  'math:sqrt/1': (x) => Math.sqrt(num(x)),
  'math:pow/2': (x, y) => num(x) ** num(y),
  'math:abs/1': (x) => Math.abs(num(x)),
  'math:pi/0': () => Math.PI,
  'lists:sum/1': (xs) => list(xs).reduce((a, b) => a + num(b), 0),
  'lists:max/1': (xs) => Math.max(...list(xs).map(num)),
  'lists:reverse/1': (xs) => [...list(xs)].reverse(),
  'lists:seq/2': (a, b) =>
    Array.from({ length: Math.max(0, Math.min(10_000, num(b) - num(a) + 1)) }, (_, i) => num(a) + i),
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
          if (!isTuple(t, undefined, 3) || !isAtom(t.at(0)) || !isAtom(t.at(1)) || typeof t.at(2) !== 'number') {
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
