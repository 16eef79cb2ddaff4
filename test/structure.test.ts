/**
 * The shape of the code: no import cycles among the modules of src/ (type-only imports included: a cycle of types is
 * a cycle of concepts); middle-men made only by connections (and by the listener's refusal and the one-shot ping,
 * which have no session); the Channel using none.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import test from 'ava';

const SRC = path.resolve('src');

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sources(path.join(dir, e.name)) : e.name.endsWith('.ts') ? [path.join(dir, e.name)] : [],
  );
}

function importsOf(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const found: string[] = [];
  for (const m of text.matchAll(/^(?:import|export)\s[^;]*?from\s+'(\.[^']+)'/gms)) {
    found.push(path.resolve(path.dirname(file), (m[1] as string).replace(/\.js$/, '.ts')));
  }
  return found;
}

const graph = new Map(sources(SRC).map((f) => [f, importsOf(f)]));

test('src/ has no import cycles', (t) => {
  const cycles: string[] = [];
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const visit = (f: string): void => {
    state.set(f, 'open');
    stack.push(f);
    for (const g of graph.get(f) ?? []) {
      if (state.get(g) === 'open') {
        cycles.push([...stack.slice(stack.indexOf(g)), g].map((x) => path.relative(SRC, x)).join(' -> '));
      } else if (!state.has(g) && graph.has(g)) {
        visit(g);
      }
    }
    stack.pop();
    state.set(f, 'done');
  };
  for (const f of graph.keys()) if (!state.has(f)) visit(f);
  t.deepEqual(cycles, []);
});

test('only connections make middle-men: the Channel and the handler runtime reach them through their connection', (t) => {
  const makers = [...graph.keys()]
    .filter((f) => /new MiddleMan\(/.test(readFileSync(f, 'utf8')))
    .map((f) => path.relative(SRC, f))
    .sort();
  t.deepEqual(makers, ['client-connection.ts', 'connection.ts', 'ping.ts', 'server.ts']);
  t.false(
    /from '\.\/mm\.js'/.test(readFileSync(path.join(SRC, 'client.ts'), 'utf8').replace(/import type[^;]*;/g, '')),
  );
});
