/**
 * The session's bookkeeping on each side, without a connection: the client's table of rpcs waiting (ids, answers in any
 * order, deadlines, the original protocol's oldest-first) and the server's record of the rpcs its handler owes.
 */
import assert from 'node:assert/strict';
import test from 'ava';
import fc from 'fast-check';
import { ChanError } from '../src/errors.js';
import { MAX_REQUEST_ID, type WireMessage } from '../src/protocol.js';
import { PendingRpcs, RpcAnswers } from '../src/session.js';
import type { Term } from '../src/term/model.js';
import { Crossings } from './helpers.js';

/** A sender that keeps the ids of the rpcs it was given. */
function recorder(): { ids: number[]; send(m: WireMessage): void } {
  const ids: number[] = [];
  return {
    ids,
    send(m) {
      if (m.kind === 'rpc') ids.push(m.id);
    },
  };
}

test('5,000 rpcs waiting at once are each settled by their own id, in any order, and their ids are all different', async (t) => {
  const rpcs = new PendingRpcs();
  const to = recorder();
  const answers = Array.from({ length: 5000 }, (_, i) => rpcs.start(60_000, to, i));
  t.is(rpcs.size, 5000);
  t.is(new Set(to.ids).size, 5000);
  // Answered backwards, odd ones first: each rpc gets the answer sent for its own id.
  const order = [...to.ids.keys()].sort((a, b) => (a % 2) - (b % 2) || b - a).reverse();
  for (const i of order) t.true(rpcs.settle(to.ids[i] as number, `answer ${i}`));
  t.is(rpcs.size, 0);
  t.deepEqual(
    await Promise.all(answers),
    Array.from({ length: 5000 }, (_, i) => `answer ${i}`),
  );
  // An id already settled, or never given, settles nothing.
  t.false(rpcs.settle(to.ids[0] as number, 'again'));
  t.false(rpcs.settle(MAX_REQUEST_ID, 'never asked'));
});

test('an id is not given again before the count wraps: the late answer to an rpc that gave up reaches no later rpc', async (t) => {
  const rpcs = new PendingRpcs();
  const to = recorder();
  const gaveUp = rpcs.start(1, to, 'slow');
  const err = await t.throwsAsync(gaveUp);
  t.is((err as ChanError).code, 'timeout');
  const lateId = to.ids[0] as number;
  // Many rpcs later, some still waiting (their slots taken), the late answer arrives: nobody takes it.
  const later: Promise<Term>[] = [];
  for (let i = 0; i < 3000; i++) {
    const p = rpcs.start(60_000, to, i);
    if (i % 3 === 0) later.push(p);
    else rpcs.settle(to.ids.at(-1) as number, i);
  }
  t.false(to.ids.slice(1).includes(lateId));
  t.false(rpcs.settle(lateId, 'late'));
  rpcs.rejectAll(new ChanError('closed', 'test over'));
  const settled = await Promise.allSettled(later);
  t.true(settled.every((s) => s.status === 'rejected'));
  t.is(rpcs.size, 0);
});

test('the original protocol answers the oldest rpc waiting, past ones that timed out or were answered out of turn', async (t) => {
  const rpcs = new PendingRpcs();
  const to = recorder();
  const first = rpcs.start(60_000, to, 1);
  const timesOut = rpcs.start(1, to, 2);
  const third = rpcs.start(60_000, to, 3);
  const fourth = rpcs.start(60_000, to, 4);
  await t.throwsAsync(timesOut);
  t.true(rpcs.settleOldest('to the first'));
  t.true(rpcs.settle(to.ids[3] as number, 'to the fourth, by its id'));
  t.true(rpcs.settleOldest('to the third'));
  t.false(rpcs.settleOldest('to nobody'));
  t.is(await first, 'to the first');
  t.is(await third, 'to the third');
  t.is(await fourth, 'to the fourth, by its id');
});

test("the server's record: send answers the oldest rpc the handler has received; a repeated id and a reply twice are faults", (t) => {
  const a = new RpcAnswers();
  for (const id of [7, 3, 9]) t.is(a.arrived(id), null);
  t.regex(a.arrived(3) ?? '', /request id 3 is already waiting/);
  // Nothing received yet: send would push.
  t.is(a.oldestReceived(), undefined);
  a.taken(7);
  a.taken(3);
  t.is(a.oldestReceived(), 7);
  a.answered(7);
  t.is(a.oldestReceived(), 3);
  t.regex(a.replyFault(7) ?? '', /request 7 is already answered/);
  t.is(a.replyFault(9), null);
  // Answered out of turn (reply to 9, not yet received as oldest): 3 is still the one send answers.
  a.answered(9);
  t.is(a.oldestReceived(), 3);
  a.answered(3);
  t.is(a.oldestReceived(), undefined);
  // An id is free again once answered.
  t.is(a.arrived(7), null);
  t.true(a.isWaiting(7));
});

/** The model of the server's record: the waiting ids in arrival order, each with whether the handler has it. */
interface Owed {
  id: number;
  taken: boolean;
}

/** The record under test, with the test's own count of the most that waited since none did. */
class Answers extends RpcAnswers {
  most = 0;
}

/** What the runs crossed, over all of them. */
const reached = new Crossings();

/** The ids the model runs draw from: up to 2^32 - 1, past a small integer's range too. */
const OWED_IDS = Array.from({ length: 64 }, (_, i) => i * 0x0400_0001);

/**
 * The rpcs the model owes are waiting and no other, and the oldest is offered to `send` exactly when the handler has
 * it.
 */
function owes(model: Owed[], a: Answers): void {
  for (const id of OWED_IDS)
    assert.equal(
      a.isWaiting(id),
      model.some((w) => w.id === id),
      `${id} waits`,
    );
  assert.equal(a.oldestReceived(), model[0]?.taken ? model[0].id : undefined, 'the oldest received');
  reached.note(a, model.length);
}

type Step = fc.Command<Owed[], Answers>;

/** rpcs arrive (a burst of several, or one); an id already waiting is the connection's fault. */
class Arrive implements Step {
  constructor(readonly ids: number[]) {}
  check(): boolean {
    return true;
  }
  run(model: Owed[], a: Answers): void {
    for (const id of this.ids) {
      const fault = a.arrived(id);
      if (model.some((w) => w.id === id)) assert.match(fault ?? '', /already waiting/);
      else {
        assert.equal(fault, null);
        model.push({ id, taken: false });
      }
    }
    owes(model, a);
  }
  toString(): string {
    return `arrive(${this.ids.join(', ')})`;
  }
}

/** The handler receives its mailbox in order: the oldest not yet received, `n` of them. */
class Receive implements Step {
  constructor(readonly n: number) {}
  check(): boolean {
    return true;
  }
  run(model: Owed[], a: Answers): void {
    for (let i = 0; i < this.n; i++) {
      const next = model.find((w) => !w.taken);
      if (!next) break;
      a.taken(next.id);
      next.taken = true;
    }
    owes(model, a);
  }
  toString(): string {
    return `receive(${this.n})`;
  }
}

/** reply(m, X): a waiting rpc, in or out of turn (the one at `at`, counted round the waiting ones). */
class Reply implements Step {
  constructor(readonly at: number) {}
  check(model: Readonly<Owed[]>): boolean {
    return model.length > 0;
  }
  run(model: Owed[], a: Answers): void {
    const w = model.splice(this.at % model.length, 1)[0] as Owed;
    assert.equal(a.replyFault(w.id), null);
    a.answered(w.id);
    assert.match(a.replyFault(w.id) ?? '', /already answered/);
    owes(model, a);
  }
  toString(): string {
    return `reply(#${this.at})`;
  }
}

/** send: the oldest, once the handler has it, `n` times (a handler that answers in turn). */
class Send implements Step {
  constructor(readonly n: number) {}
  check(): boolean {
    return true;
  }
  run(model: Owed[], a: Answers): void {
    for (let i = 0; i < this.n; i++) {
      const oldest = a.oldestReceived();
      assert.equal(oldest, model[0]?.taken ? model[0].id : undefined);
      if (oldest === undefined) break;
      a.answered(oldest);
      model.shift();
    }
    owes(model, a);
  }
  toString(): string {
    return `send(${this.n})`;
  }
}

test("the server's record keeps arrival order and faults whether one rpc waits or many (model)", (t) => {
  const id = fc.constantFrom(...OWED_IDS);
  const count = fc.integer({ min: 1, max: 24 });
  const steps = fc.commands(
    [
      fc.uniqueArray(id, { minLength: 1, maxLength: 24 }).map((ids) => new Arrive(ids)),
      count.map((n) => new Receive(n)),
      fc.nat().map((at) => new Reply(at)),
      count.map((n) => new Send(n)),
    ],
    { maxCommands: 100, size: 'max' },
  );
  fc.assert(
    fc.property(steps, (cmds) => fc.modelRun(() => ({ model: [] as Owed[], real: new Answers() }), cmds)),
    { numRuns: 300 },
  );
  t.log(`the most waiting at once: ${reached.peak}; none waiting after two or more: ${reached.emptiedAfterMany} times`);
  t.true(reached.peak > 16, `at most ${reached.peak} waited at once`); // many at once, in the Map
  t.true(reached.emptiedAfterMany > 100, `none waited again after many did: ${reached.emptiedAfterMany} times`);
});

test("the server's record, cleared, has nothing waiting", (t) => {
  const a = new RpcAnswers();
  for (const id of [3, 9, 4]) t.is(a.arrived(id), null);
  a.taken(3);
  a.clear();
  t.false(a.isWaiting(3));
  t.is(a.oldestReceived(), undefined);
  t.is(a.arrived(3), null);
  t.true(a.isWaiting(3));
});

test('when the connection ends, the rpcs waiting are failed oldest first, however their ids fell in the table', async (t) => {
  const rpcs = new PendingRpcs();
  const to = recorder();
  // Ids past the first table's 64 slots, some settled, so that the waiting ones sit out of slot order.
  const kept: Promise<Term>[] = [];
  for (let i = 0; i < 200; i++) {
    const p = rpcs.start(60_000, to, i);
    if (i % 7 === 3) kept.push(p.catch(() => i));
    else rpcs.settle(to.ids.at(-1) as number, i);
  }
  const order: number[] = [];
  for (const p of kept) void p.then((i) => order.push(i as number));
  rpcs.rejectAll(new ChanError('closed', 'the connection ended'));
  await Promise.all(kept);
  t.deepEqual(
    order,
    [...order].sort((a, b) => a - b),
  );
  t.is(order.length, kept.length);
  t.is(rpcs.size, 0);
});
