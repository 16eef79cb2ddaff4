/**
 * The session's bookkeeping on each side, without a connection: the client's table of rpcs waiting (ids, answers in any
 * order, deadlines, the original protocol's oldest-first) and the server's record of the rpcs its handler owes.
 */
import test from 'ava';
import { ChanError } from '../src/errors.js';
import { MAX_REQUEST_ID, type WireMessage } from '../src/protocol.js';
import { PendingRpcs, RpcAnswers } from '../src/session.js';
import type { Term } from '../src/term/model.js';
import { seededRandom } from './helpers.js';

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

test("the server's record keeps arrival order and faults whether one rpc waits or many", (t) => {
  // Against a plain model: the waiting ids in arrival order, each with whether the handler has received it.
  const a = new RpcAnswers();
  const model: { id: number; taken: boolean }[] = [];
  const random = seededRandom(7);
  let peak = 0;
  let drainedAfterPeak = 0;
  let sinceDrained = 0;
  for (let step = 0; step < 20_000; step++) {
    // Waves: grow to many for a while, then drain to none, so both ways of keeping them are crossed, again and again.
    const growing = Math.floor(step / 500) % 2 === 0;
    const op = random(10);
    const id = random(64) * 0x0400_0001; // ids up to 2^32 - 1: past a small integer's range too
    if (op < (growing ? 5 : 2)) {
      const waiting = model.some((w) => w.id === id);
      const fault = a.arrived(id);
      if (waiting) t.regex(fault ?? '', /already waiting/);
      else {
        t.is(fault, null);
        model.push({ id, taken: false });
      }
    } else if (op < 7) {
      // The handler receives its mailbox in order: the oldest not yet received.
      const next = model.find((w) => !w.taken);
      if (next) {
        a.taken(next.id);
        next.taken = true;
      }
    } else if (op < 8 && model.length > 0) {
      // reply(m, X): any waiting rpc, in or out of turn.
      const w = model.splice(random(model.length), 1)[0] as { id: number };
      t.is(a.replyFault(w.id), null);
      a.answered(w.id);
      t.regex(a.replyFault(w.id) ?? '', /already answered/);
    } else {
      // send: the oldest, when the handler has received it.
      const oldest = model[0]?.taken ? model[0].id : undefined;
      t.is(a.oldestReceived(), oldest);
      if (oldest !== undefined) {
        a.answered(oldest);
        model.shift();
      }
    }
    if (model.length === 0 && sinceDrained > 1) drainedAfterPeak++;
    sinceDrained = model.length === 0 ? 0 : Math.max(sinceDrained, model.length);
    peak = Math.max(peak, model.length);
    if (step % 97 === 0) for (const w of model) t.true(a.isWaiting(w.id));
  }
  t.true(peak > 16, `at most ${peak} waited at once`); // many at once, in the Map
  t.true(drainedAfterPeak > 5, `none waited again after many did: ${drainedAfterPeak} times`);
  a.clear();
  t.false(a.isWaiting(model[0]?.id ?? 0));
  t.is(a.oldestReceived(), undefined);
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
