/**
 * WaitingIds: ids in arrival order with a number each, one kept in fields and more in a Map, against a plain model.
 */
import assert from 'node:assert/strict';
import test from 'ava';
import fc from 'fast-check';
import { WaitingIds } from '../src/waiting.js';
import { Crossings } from './helpers.js';

/** Its methods are for subclasses: this one opens them to the test as they are. */
class Open extends WaitingIds {
  /** The most it has held since it was last empty (the test's own count). */
  most = 0;

  override get size(): number {
    return super.size;
  }
  override has(id: number): boolean {
    return super.has(id);
  }
  override add(id: number, value: number): void {
    super.add(id, value);
  }
  override get(id: number): number | undefined {
    return super.get(id);
  }
  override set(id: number, value: number): void {
    super.set(id, value);
  }
  override withOldest<R>(fn: (id: number, value: number) => R): R | undefined {
    return super.withOldest(fn);
  }
  override delete(id: number): number | undefined {
    return super.delete(id);
  }
  override remove(id: number): void {
    super.remove(id);
  }
}

interface Kept {
  id: number;
  value: number;
}

/** Ids up to 2^32 - 1 (past V8's small integers). */
const IDS = [0, 1, 7, 2 ** 30, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 2, 2 ** 32 - 1, 12_345, 99];

/** Every question WaitingIds answers, asked of it and of the model; throws where they differ. */
function agree(w: Open, model: Kept[]): void {
  assert.equal(w.size, model.length, 'size');
  assert.deepEqual(
    w.withOldest((id, value) => ({ id, value })),
    model[0],
    'the oldest',
  );
  for (const id of IDS) {
    const kept = model.find((k) => k.id === id);
    assert.equal(w.has(id), kept !== undefined, `has ${id}`);
    assert.equal(w.get(id), kept?.value, `get ${id}`);
  }
}

/** What the runs crossed, over all of them: one kept and many, both ways. */
const crossed = new Crossings();

function noted(model: Kept[], w: Open): void {
  agree(w, model);
  crossed.note(w, model.length);
}

type Command = fc.Command<Kept[], Open>;

class Add implements Command {
  constructor(
    readonly ids: number[],
    readonly value: number,
  ) {}
  check(): boolean {
    return true;
  }
  run(model: Kept[], w: Open): void {
    // An id is added only when it is not there (the subclasses' rule): a burst of several, or one.
    for (const id of this.ids) {
      if (model.some((k) => k.id === id)) continue;
      w.add(id, this.value);
      model.push({ id, value: this.value });
    }
    noted(model, w);
  }
  toString(): string {
    return `add(${this.ids.join(', ')}; ${this.value})`;
  }
}

class Take implements Command {
  /** How: `delete` gives back the number; `remove` does not. Either, out of order as well as the oldest. */
  constructor(
    readonly id: number,
    readonly how: 'delete' | 'remove',
  ) {}
  check(): boolean {
    return true;
  }
  run(model: Kept[], w: Open): void {
    const kept = model.find((k) => k.id === this.id);
    if (this.how === 'remove') w.remove(this.id);
    else assert.equal(w.delete(this.id), kept?.value, `delete ${this.id}`);
    if (kept) model.splice(model.indexOf(kept), 1);
    noted(model, w);
  }
  toString(): string {
    return `${this.how}(${this.id})`;
  }
}

/** The oldest, taken as the server's answers take it: found with withOldest, then deleted. */
class TakeOldest implements Command {
  check(): boolean {
    return true;
  }
  run(model: Kept[], w: Open): void {
    const oldest = model.shift();
    const id = w.withOldest((i) => i);
    assert.equal(id, oldest?.id, 'the oldest');
    if (id !== undefined) assert.equal(w.delete(id), oldest?.value, `delete the oldest, ${id}`);
    noted(model, w);
  }
  toString(): string {
    return 'oldest()';
  }
}

class Change implements Command {
  constructor(
    readonly id: number,
    readonly value: number,
  ) {}
  check(): boolean {
    return true;
  }
  run(model: Kept[], w: Open): void {
    // A number changed in place; an id not there is left out.
    w.set(this.id, this.value);
    const kept = model.find((k) => k.id === this.id);
    if (kept) kept.value = this.value;
    noted(model, w);
  }
  toString(): string {
    return `set(${this.id}, ${this.value})`;
  }
}

class Clear implements Command {
  check(): boolean {
    return true;
  }
  run(model: Kept[], w: Open): void {
    w.clear();
    model.length = 0;
    noted(model, w);
  }
  toString(): string {
    return 'clear()';
  }
}

test('ids keep their arrival order and their numbers, one at a time and many, through steps that empty it (model)', (t) => {
  const id = fc.constantFrom(...IDS);
  // Numbers that are times (doubles), and 0.
  const value = fc.oneof(fc.constant(0), fc.double({ min: 0, max: 1e7, noNaN: true }));
  // Weighted so that runs grow to several ids and empty again (a clear now and then).
  const commands = fc.commands(
    [
      fc.oneof(
        {
          weight: 4,
          arbitrary: fc
            .tuple(fc.uniqueArray(id, { minLength: 1, maxLength: 4 }), value)
            .map(([ids, v]) => new Add(ids, v)),
        },
        {
          weight: 3,
          arbitrary: fc
            .tuple(id, fc.constantFrom('delete', 'remove') as fc.Arbitrary<Take['how']>)
            .map(([i, how]) => new Take(i, how)),
        },
        { weight: 1, arbitrary: fc.constant(new TakeOldest()) },
        { weight: 2, arbitrary: fc.tuple(id, value).map(([i, v]) => new Change(i, v)) },
        { weight: 1, arbitrary: fc.constant(new Clear()) },
      ),
    ],
    { maxCommands: 200, size: 'max' },
  );
  fc.assert(
    fc.property(commands, (cmds) => fc.modelRun(() => ({ model: [] as Kept[], real: new Open() }), cmds)),
    { numRuns: 400 },
  );
  // The runs crossed both ways of keeping ids, many times over.
  t.log(`steps with two or more kept: ${crossed.many}; emptied after holding two or more: ${crossed.emptiedAfterMany}`);
  t.true(crossed.many > 1000, `two or more kept after ${crossed.many} steps`);
  t.true(crossed.emptiedAfterMany > 100, `emptied after holding two or more ${crossed.emptiedAfterMany} times`);
});

test('cleared while holding many, it is as good as new', (t) => {
  const w = new Open();
  for (const id of [5, 6, 7]) w.add(id, id * 10);
  w.clear();
  t.notThrows(() => agree(w, []));
  w.add(6, 60);
  w.add(5, 50);
  t.notThrows(() =>
    agree(w, [
      { id: 6, value: 60 },
      { id: 5, value: 50 },
    ]),
  );
  t.is(w.delete(7), undefined);
  w.set(7, 1);
  t.false(w.has(7));
});
