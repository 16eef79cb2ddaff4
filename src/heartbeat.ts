/**
 * Dead-peer detection, like Erlang's net_ticktime. A side that has heard nothing from its peer for `interval` ms
 * sends a ping (the peer answers with a pong, which counts as hearing from it), and again every `interval` ms while
 * the silence lasts; once the silence reaches `interval * maxMissed` ms the peer is dead. Any frame counts as hearing
 * from the peer, so a busy connection carries no pings, an idle one a ping and a pong per interval, and a dead peer
 * is noticed within `interval * maxMissed` ms (15 s x 4 = 60 s by default).
 *
 * While this side has stopped reading (back-pressure), silence is its own doing and does not count. One timer per
 * connection, re-armed only when it fires; timers of a second or more share one Node timer (timer-wheel.ts: up to
 * about a tenth of a second late, and about 0.1 KB each instead of a `Timeout`'s 0.2 KB). The host (the middle-man)
 * and the clock are small interfaces so that tests drive a heartbeat with fakes.
 */

import { TimerWheel, WheelTimer } from './timer-wheel.js';

export interface HeartbeatHost {
  sendPing(n: number): void;
  /** The peer has been silent for `silentMs`. */
  dead(silentMs: number): void;
}

export interface Clock {
  now(): number;
  /** Calls `fn(arg)` after `ms`; returns a handle for `cancel`. (One shared function, no closure per timer.) */
  after<A>(ms: number, fn: (arg: A) => void, arg: A): unknown;
  cancel(handle: unknown): void;
}

/**
 * Timers of at least this many ms (a heartbeat's check, 15 s apart by default) share one Node timer, in slots of
 * {@link WHEEL_SLOT_MS}: they fire up to that much late. Shorter ones (heartbeats of under a second) get a Node timer
 * each, on time.
 */
export const WHEEL_MIN_MS = 1000;
export const WHEEL_SLOT_MS = 100;
const wheel = new TimerWheel(WHEEL_SLOT_MS);

/**
 * Whole milliseconds on the monotonic clock since the process started: unmoved when the wall clock is set, and a small
 * integer to V8 for the first 24 days of a process, so that a field keeping one needs no heap number of its own (16
 * bytes a connection, per such field; after that, the fields hold heap numbers again).
 */
export function monotonicMs(): number {
  return Math.floor(performance.now());
}

export const realClock: Clock = {
  now: monotonicMs,
  after(ms, fn, arg) {
    if (ms >= WHEEL_MIN_MS) return wheel.add(ms, fn, arg);
    const t = setTimeout(fn, ms, arg);
    t.unref();
    return t;
  },
  cancel(handle) {
    if (handle instanceof WheelTimer) wheel.cancel(handle);
    else clearTimeout(handle as NodeJS.Timeout);
  },
};

function heartbeatCheck(hb: Heartbeat): void {
  hb.check();
}

export class Heartbeat {
  private lastHeard: number;
  private lastPing = 0;
  private suspended = false;
  private seq = 0;
  private timer: unknown = null;
  /** Round-trip time of the last answered ping, ms (undefined until one is answered). */
  rtt: number | undefined;
  /** Silence, in ms, after which the peer is dead. */
  readonly limit: number;

  constructor(
    private readonly host: HeartbeatHost,
    readonly interval: number,
    maxMissed: number,
    private readonly clock: Clock = realClock,
  ) {
    this.limit = interval * maxMissed;
    this.lastHeard = clock.now();
  }

  /** Starts watching (a no-op when the interval is 0: heartbeats off). */
  start(): void {
    if (this.interval <= 0 || this.timer) return;
    this.lastHeard = this.clock.now();
    this.schedule(this.interval);
  }

  stop(): void {
    if (this.timer !== null) this.clock.cancel(this.timer);
    this.timer = null;
    this.stopped = true;
  }

  private stopped = false;

  /** Something arrived from the peer. */
  heard(): void {
    this.lastHeard = this.clock.now();
  }

  /** The peer answered ping `n`. */
  pong(n: number): void {
    const now = this.clock.now();
    this.lastHeard = now;
    if (n === this.seq && this.lastPing > 0) this.rtt = now - this.lastPing;
  }

  /** This side stopped (true) or resumed (false) reading. */
  suspend(on: boolean): void {
    this.suspended = on;
    this.lastHeard = this.clock.now();
  }

  private schedule(ms: number): void {
    this.timer = this.clock.after(Math.max(1, ms), heartbeatCheck, this);
  }

  /** @internal Run by the timer. */
  check(): void {
    this.timer = null;
    const now = this.clock.now();
    // While this side is not reading, the peer's answers cannot arrive: its silence does not count, but it must
    // still hear from us, or it would take us for dead.
    if (this.suspended) this.lastHeard = now;
    const silent = now - this.lastHeard;
    if (silent >= this.limit) {
      this.host.dead(silent);
      return;
    }
    if ((silent >= this.interval || this.suspended) && now - this.lastPing >= this.interval) {
      this.seq = this.seq >= 0xffff_ffff ? 1 : this.seq + 1;
      this.lastPing = now;
      this.stopped = false;
      this.host.sendPing(this.seq);
      if (this.stopped) return; // sending closed the connection
    }
    const nextPing = Math.max(this.suspended ? this.lastPing : this.lastHeard, this.lastPing) + this.interval;
    const deadline = this.lastHeard + this.limit;
    this.schedule(Math.min(nextPing, deadline) - now);
  }
}
