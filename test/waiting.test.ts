/**
 * WaitingIds: ids in arrival order with a number each, one kept in fields and more in a Map, against a plain model.
 */
import test from 'ava';
import { WaitingIds } from '../src/waiting.js';
import { seededRandom } from './helpers.js';

/** Its methods are for subclasses: this one opens them to the test as they are. */
class Open extends WaitingIds {
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

/** Every question WaitingIds answers, asked of it and of the model. */
function agree(t: { deepEqual(a: unknown, b: unknown, m?: string): void }, w: Open, model: Kept[], ids: number[]) {
  t.deepEqual(w.size, model.length, 'size');
  t.deepEqual(
    w.withOldest((id, value) => ({ id, value })),
    model[0],
    'the oldest',
  );
  for (const id of ids) {
    const kept = model.find((k) => k.id === id);
    t.deepEqual(w.has(id), kept !== undefined, `has ${id}`);
    t.deepEqual(w.get(id), kept?.value, `get ${id}`);
  }
}

test('ids keep their arrival order and their numbers, one at a time and many, through waves that empty it', (t) => {
  const w = new Open();
  const model: Kept[] = [];
  // Ids up to 2^32 - 1 (past V8's small integers), numbers that are times (doubles) and 0.
  const ids = [0, 1, 7, 2 ** 30, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 2, 2 ** 32 - 1, 12_345, 99];
  const random = seededRandom(11);
  let emptiedAfterMany = 0;
  let most = 0;
  for (let step = 0; step < 6_000; step++) {
    const growing = Math.floor(step / 40) % 2 === 0;
    const op = random(10);
    const id = ids[random(ids.length)] as number;
    const kept = model.find((k) => k.id === id);
    if (op < (growing ? 5 : 2)) {
      if (kept === undefined) {
        const value = random(3) === 0 ? 0 : performance.now() + random(1000) / 7;
        w.add(id, value);
        model.push({ id, value });
      }
    } else if (op < 6) {
      // Out of order as well as the oldest: a removal anywhere gives back the number it had (or, with remove, not).
      if (op === 5) w.remove(id);
      else t.is(w.delete(id), kept?.value);
      if (kept) model.splice(model.indexOf(kept), 1);
    } else if (op < 8) {
      const value = step * 1.5;
      w.set(id, value);
      if (kept) kept.value = value;
    } else if (model.length > 0) {
      const oldest = model.shift() as Kept;
      t.is(w.delete(oldest.id), oldest.value);
    }
    if (model.length === 0 && most > 1) emptiedAfterMany++;
    most = model.length === 0 ? 0 : Math.max(most, model.length);
    agree(t, w, model, ids);
  }
  t.true(emptiedAfterMany > 20, `emptied after holding two or more ${emptiedAfterMany} times`);
  // Cleared while holding many: empty, and as good as new after.
  for (const id of [5, 6, 7]) w.add(id, id * 10);
  w.clear();
  agree(t, w, [], [5, 6, 7]);
  w.add(6, 60);
  w.add(5, 50);
  agree(
    t,
    w,
    [
      { id: 6, value: 60 },
      { id: 5, value: 50 },
    ],
    [5, 6, 7],
  );
  t.is(w.delete(7), undefined);
  w.set(7, 1);
  t.false(w.has(7));
});
