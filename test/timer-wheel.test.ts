/**
 * The shared timer of the heartbeats' checks: every timer fires once, never before its time, in the order of its
 * slot (several slots due at once included); a cancelled one never fires, even when cancelled by another of its slot;
 * timers added while a slot fires are served; one that throws does not stop the others; a delay past Node's longest
 * is capped; and the real clock sends short timers to Node and long ones to the wheel.
 */
import test from 'ava';
import { WHEEL_MIN_MS, realClock } from '../src/heartbeat.js';
import { TimerWheel, WheelTimer } from '../src/timer-wheel.js';

/** The wheel's Node timer does not keep the process alive (as the heartbeats' never did): a test keeps it open. */
function keepAlive(t: { teardown(fn: () => void): void }): void {
  const h = setInterval(() => {}, 60_000);
  t.teardown(() => clearInterval(h));
}

test('each timer fires once, not before its time, slot by slot', async (t) => {
  keepAlive(t);
  const wheel = new TimerWheel(20);
  const delays = [70, 10, 45, 10, 0, 30];
  const fired: { i: number; early: number }[] = [];
  const timers: WheelTimer[] = [];
  const start = performance.now();
  await new Promise<void>((resolve) => {
    for (const [i, ms] of delays.entries())
      timers.push(
        wheel.add(
          ms,
          (n: number) => {
            fired.push({ i: n, early: ms - (performance.now() - start) });
            if (fired.length === delays.length) resolve();
          },
          i,
        ),
      );
  });
  t.deepEqual(fired.map((f) => f.i).sort(), [0, 1, 2, 3, 4, 5]);
  for (const f of fired) t.true(f.early <= 0, `timer ${f.i} fired ${f.early.toFixed(1)} ms early`);
  // By slot: nothing due in a later slot fired before something due in an earlier one.
  const slots = fired.map((f) => (timers[f.i] as WheelTimer).slot);
  t.deepEqual(
    slots,
    [...slots].sort((x, y) => x - y),
  );
  t.is(wheel.size, 0);
});

test('slots due at once fire slot by slot, whatever order they were added in', async (t) => {
  keepAlive(t);
  const wheel = new TimerWheel(10);
  const order: number[] = [];
  await new Promise<void>((resolve) => {
    for (const ms of [60, 20, 40, 0])
      wheel.add(
        ms,
        (n: number) => {
          order.push(n);
          if (order.length === 4) resolve();
        },
        ms,
      );
    // The loop is held past every due time: one firing finds all four slots due.
    const until = performance.now() + 80;
    while (performance.now() < until);
  });
  t.deepEqual(order, [0, 20, 40, 60]);
});

test('a timer that throws does not stop the others, of its slot or later ones; its error goes on', async (t) => {
  keepAlive(t);
  const errors: unknown[] = [];
  const wheel = new TimerWheel(10, (err) => errors.push(err));
  const ran: string[] = [];
  await new Promise<void>((resolve) => {
    wheel.add(
      5,
      () => {
        throw new Error('a faulty timer');
      },
      null,
    );
    wheel.add(5, (s: string) => ran.push(s), 'same slot');
    wheel.add(
      40,
      (s: string) => {
        ran.push(s);
        resolve();
      },
      'later slot',
    );
  });
  t.deepEqual(ran, ['same slot', 'later slot']);
  t.deepEqual(
    errors.map((e) => (e as Error).message),
    ['a faulty timer'],
  );
  t.is(wheel.size, 0);
});

test('a cancelled timer never fires, even when a timer of its own slot cancels it', async (t) => {
  keepAlive(t);
  const wheel = new TimerWheel(50);
  const ran: string[] = [];
  const cancelledEarly = wheel.add(20, (s: string) => ran.push(s), 'cancelled before');
  wheel.cancel(cancelledEarly);
  let victim: WheelTimer | null = null;
  const done = new Promise<void>((resolve) => {
    // Same slot: whichever runs first cancels the other, so exactly one of the pair runs.
    wheel.add(
      10,
      (s: string) => {
        ran.push(s);
        if (victim) wheel.cancel(victim);
      },
      'first',
    );
    victim = wheel.add(
      10,
      (s: string) => {
        ran.push(s);
      },
      'second',
    );
    wheel.add(60, () => resolve(), null);
  });
  await done;
  t.deepEqual(ran, ['first']);
  t.is(wheel.size, 0);
});

test('a timer added while a slot fires is served in its own slot', async (t) => {
  keepAlive(t);
  const wheel = new TimerWheel(10);
  const order: number[] = [];
  await new Promise<void>((resolve) => {
    wheel.add(
      5,
      () => {
        order.push(1);
        wheel.add(
          15,
          () => {
            order.push(2);
            resolve();
          },
          null,
        );
      },
      null,
    );
  });
  t.deepEqual(order, [1, 2]);
});

test('the real clock gives timers of a second or more to the wheel and shorter ones to Node; both cancel', (t) => {
  let ran = 0;
  const long = realClock.after(WHEEL_MIN_MS, () => ran++, null);
  const short = realClock.after(WHEEL_MIN_MS - 1, () => ran++, null);
  t.true(long instanceof WheelTimer);
  t.false(short instanceof WheelTimer);
  realClock.cancel(long);
  realClock.cancel(short);
  t.is((long as WheelTimer).fn, null);
  t.is(ran, 0);
});

test("a timer beyond Node's longest delay waits on a capped Node timer, not one that overflows to 1 ms", async (t) => {
  const warnings: string[] = [];
  const onWarning = (w: Error): void => {
    warnings.push(w.name);
  };
  process.on('warning', onWarning);
  t.teardown(() => process.off('warning', onWarning));
  const wheel = new TimerWheel(100);
  let ran = false;
  const far = wheel.add(3e9, () => (ran = true), null);
  // Node reports an overflowing delay as a warning on the next tick.
  await new Promise((resolve) => setImmediate(resolve));
  await new Promise((resolve) => setImmediate(resolve));
  wheel.cancel(far);
  t.false(ran);
  t.deepEqual(
    warnings.filter((w) => w === 'TimeoutOverflowWarning'),
    [],
  );
});
