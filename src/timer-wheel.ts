/**
 * Timers that may fire a little late, sharing one Node timer: the heartbeats' checks, of which an idle server keeps
 * one per connection. A Node `Timeout` with its argument costs about 0.2 KB; an entry here costs its own three fields
 * and a place in a set. Due times are rounded up to the next slot of `slotMs`; every timer of a slot fires together,
 * slots in order, no earlier than its due time and, on a machine that is not overloaded, about a slot after it at
 * most. A timer that throws does not keep the others from running: its error is thrown on its own right after (an
 * uncaught exception, as from a Node timer of its own). The Node timer is armed for the earliest slot that holds a
 * timer, and does not keep the process alive.
 */

import { MAX_TIMER_MS } from './inbox.js';

/** One timer: `cancel` empties it (a timer cancelled while its slot fires does not run). */
export class WheelTimer {
  constructor(
    public fn: ((arg: unknown) => void) | null,
    public arg: unknown,
    readonly slot: number,
  ) {}
}

export class TimerWheel {
  /** Timers by slot (slot n ends at `n * slotMs` on the monotonic clock, `performance.now()`: small integers). */
  private readonly slots = new Map<number, Set<WheelTimer>>();
  private timer: NodeJS.Timeout | null = null;
  private armedSlot = Number.POSITIVE_INFINITY;
  constructor(
    readonly slotMs: number,
    /** Where a timer's throw goes (by default thrown on its own, right after the slot: an uncaught exception). */
    private readonly onError: (err: unknown) => void = throwLater,
  ) {}

  /** Timers waiting. */
  get size(): number {
    let n = 0;
    for (const s of this.slots.values()) n += s.size;
    return n;
  }

  /** Calls `fn(arg)` once `ms` have passed (a slot late at most). */
  add<A>(ms: number, fn: (arg: A) => void, arg: A): WheelTimer {
    const slot = Math.ceil((performance.now() + Math.max(0, ms)) / this.slotMs);
    const t = new WheelTimer(fn as (arg: unknown) => void, arg, slot);
    let set = this.slots.get(slot);
    if (!set) {
      set = new Set();
      this.slots.set(slot, set);
    }
    set.add(t);
    if (slot < this.armedSlot) this.arm(slot);
    return t;
  }

  cancel(t: WheelTimer): void {
    t.fn = null;
    t.arg = null;
    const set = this.slots.get(t.slot);
    if (set?.delete(t) && set.size === 0) this.slots.delete(t.slot);
    // The Node timer stays armed: when it fires for nothing, it is armed for the next slot that holds a timer.
  }

  private arm(slot: number): void {
    if (this.timer) clearTimeout(this.timer);
    this.armedSlot = slot;
    // (Past Node's longest delay the timer fires for nothing, and is armed again: see fire.)
    const ms = Math.min(MAX_TIMER_MS, Math.max(1, Math.ceil(slot * this.slotMs - performance.now())));
    this.timer = setTimeout(fireWheel, ms, this);
    this.timer.unref();
  }

  /** @internal Run by the Node timer. */
  fire(): void {
    this.timer = null;
    this.armedSlot = Number.POSITIVE_INFINITY;
    const now = Math.floor(performance.now() / this.slotMs);
    const due: number[] = [];
    for (const slot of this.slots.keys()) if (slot <= now) due.push(slot);
    due.sort((a, b) => a - b); // slot by slot, however they were put in the map
    for (const slot of due) {
      const set = this.slots.get(slot) as Set<WheelTimer>;
      this.slots.delete(slot);
      for (const t of set) {
        const fn = t.fn;
        if (fn === null) continue; // cancelled by a timer that ran before it
        const arg = t.arg;
        t.fn = null;
        t.arg = null;
        try {
          fn(arg);
        } catch (err) {
          // One timer's fault is its own (as with a Node timer each): the others run.
          this.onError(err);
        }
      }
    }
    let next = Number.POSITIVE_INFINITY;
    for (const slot of this.slots.keys()) if (slot < next) next = slot;
    if (next < this.armedSlot) this.arm(next);
  }
}

function throwLater(err: unknown): void {
  process.nextTick(rethrow, err);
}

function rethrow(err: unknown): never {
  throw err;
}

function fireWheel(w: TimerWheel): void {
  w.fire();
}
