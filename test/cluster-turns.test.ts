/**
 * The primary's LMDB open turns (cluster.ts, storeTurns), as a machine driven by hand: one process opens at a time;
 * every other process that has the directory open is asked to hold its writes first; the opener goes once all have
 * answered or exited; the others are released once it has opened or exited; a process that does not answer in time is
 * ended. (The turns between real processes, with each open slowed down, are tested in test/cluster.test.ts.)
 */
import test, { type ExecutionContext } from 'ava';
import { storeTurns, type Down, type TurnTaker } from '../src/cluster.js';
import { silentLogger } from '../src/log.js';

/** A server process as the turns see it: what it was sent, and whether it was ended. */
class Proc implements TurnTaker {
  readonly sent: Down[] = [];
  dead = false;
  connected = true;
  killed: Promise<NodeJS.Signals | number | undefined>;
  private onKill: (s: NodeJS.Signals | number | undefined) => void = () => {};
  readonly process = {
    pid: 1000,
    kill: (signal?: NodeJS.Signals | number): boolean => {
      this.onKill(signal);
      return true;
    },
  };

  constructor(readonly id: number) {
    this.killed = new Promise((resolve) => (this.onKill = resolve));
  }
  isDead(): boolean {
    return this.dead;
  }
  isConnected(): boolean {
    return this.connected;
  }
  send(m: Down): boolean {
    this.sent.push(m);
    return true;
  }
  /** What it was sent, by kind, in order. */
  get kinds(): string[] {
    return this.sent.map((m) => m.t);
  }
  /** The turn number of the last hold it was asked for. */
  get turn(): number {
    const hold = this.sent.findLast((m) => m.t === 'storeHold');
    if (hold?.t !== 'storeHold') throw new Error('never asked to hold');
    return hold.turn;
  }
}

/**
 * The turns, for one test: every process they have seen counts as exited when the test ends, so that no turn's timer
 * outlives it (a timer left running keeps the test file alive until it fires), whether the test passed or not.
 */
function turnsFor(t: ExecutionContext, timeout: number): ReturnType<typeof storeTurns> {
  const turns = storeTurns(silentLogger, timeout);
  const seen = new Set<TurnTaker>();
  t.teardown(() => {
    for (const w of seen) turns.exited(w);
  });
  return {
    message(w, m) {
      seen.add(w);
      turns.message(w, m);
    },
    exited: turns.exited,
  };
}

/** Processes `a` and `b` have opened, in turn. */
function twoOpened(turns: ReturnType<typeof storeTurns>): [Proc, Proc] {
  const a = new Proc(1);
  const b = new Proc(2);
  turns.message(a, { t: 'storeOpen?' });
  turns.message(a, { t: 'storeOpened' });
  turns.message(b, { t: 'storeOpen?' });
  turns.message(b, { t: 'storeHeld', turn: 0 }); // an answer to no turn: nothing
  turns.message(a, { t: 'storeHeld', turn: a.turn });
  turns.message(b, { t: 'storeOpened' });
  return [a, b];
}

test('the first opener goes at once; the next waits until every process that has it open holds, then releases them', (t) => {
  const turns = turnsFor(t, 60_000);
  const [a, b] = twoOpened(turns);
  t.deepEqual(a.kinds, ['storeOpen!', 'storeHold', 'storeRelease']);
  t.deepEqual(b.kinds, ['storeOpen!']);

  // A replacement: both are asked to hold; it goes only when both have said so.
  const c = new Proc(3);
  turns.message(c, { t: 'storeOpen?' });
  t.deepEqual(c.kinds, []);
  turns.message(a, { t: 'storeHeld', turn: a.turn });
  t.deepEqual(c.kinds, [], 'one of two held');
  turns.message(b, { t: 'storeHeld', turn: b.turn - 1 }); // an answer to an earlier turn
  t.deepEqual(c.kinds, []);
  turns.message(b, { t: 'storeHeld', turn: b.turn });
  t.deepEqual(c.kinds, ['storeOpen!']);
  t.is(a.kinds.at(-1), 'storeHold', 'held while it opens');
  turns.message(c, { t: 'storeOpened' });
  t.is(a.kinds.at(-1), 'storeRelease');
  t.is(b.kinds.at(-1), 'storeRelease');
});

test('opens asked for during a turn wait for it, in order; an opener that exits ends its turn', (t) => {
  const turns = turnsFor(t, 60_000);
  const [a, b] = twoOpened(turns);
  const c = new Proc(3);
  const d = new Proc(4);
  turns.message(c, { t: 'storeOpen?' });
  turns.message(d, { t: 'storeOpen?' });
  t.is(a.kinds.filter((k) => k === 'storeHold').length, 2);
  turns.message(a, { t: 'storeHeld', turn: a.turn });
  t.deepEqual(c.kinds, [], 'the other has not answered');
  // The other process exits without answering: it holds nothing any more.
  b.dead = true;
  turns.exited(b);
  t.deepEqual(c.kinds, ['storeOpen!']);
  t.deepEqual(d.kinds, []);
  // c dies while it opens: its turn ends, the others are released, and d's turn begins.
  c.dead = true;
  turns.exited(c);
  t.deepEqual(a.kinds.slice(-2), ['storeRelease', 'storeHold']);
  turns.message(a, { t: 'storeHeld', turn: a.turn });
  t.deepEqual(d.kinds, ['storeOpen!'], 'only a is left to hold');
  turns.message(d, { t: 'storeOpened' });
  t.is(a.kinds.at(-1), 'storeRelease');
});

test('a process that does not hold in time is ended; so is an opener that does not open in time', async (t) => {
  const turns = turnsFor(t, 30);
  const [a, b] = twoOpened(turns);
  const c = new Proc(3);
  turns.message(c, { t: 'storeOpen?' });
  turns.message(a, { t: 'storeHeld', turn: a.turn });
  t.is(await b.killed, 'SIGKILL', 'b never answered');
  b.dead = true;
  turns.exited(b);
  t.deepEqual(c.kinds, ['storeOpen!']);
  t.is(await c.killed, 'SIGKILL', 'c never said it opened');
  c.dead = true;
  turns.exited(c);
  t.is(a.kinds.at(-1), 'storeRelease');
});

test('a process whose channel has closed (it is exiting) is not asked to hold, nor waited on', (t) => {
  const turns = turnsFor(t, 60_000);
  const [a, b] = twoOpened(turns);
  b.connected = false;
  const c = new Proc(3);
  turns.message(c, { t: 'storeOpen?' });
  turns.message(a, { t: 'storeHeld', turn: a.turn });
  t.deepEqual(c.kinds, ['storeOpen!']);
  turns.message(c, { t: 'storeOpened' });
  t.is(a.kinds.at(-1), 'storeRelease');
  t.deepEqual(b.kinds, ['storeOpen!'], 'never asked to hold, nor released');
});
