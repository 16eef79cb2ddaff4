/**
 * Inbound flow control, one rule for every queue of messages from a peer (a handler's mailbox, inline or in a
 * worker, and a client's unread pushes): when `highWater` messages, or `highWaterBytes` bytes of them (their decoded
 * size), wait, the socket is no longer read; once both are down to half, it is read again. On a server, the same
 * happens to every connection that holds queued input while the server as a whole is under memory pressure (see
 * budget.ts). What the peer sends meanwhile waits in socket buffers, not in the heap.
 */

/** What reads the socket (a middle-man, or whatever stands for it). */
export interface Reader {
  pauseReading(): void;
  resumeReading(): void;
}

/** The server-wide side of the rule (a QueueBudget): whether to hold back, and a wake-up when that is over. */
export interface Pressure {
  readonly pressed: boolean;
  /** Calls `gate.recheck()` once the pressure is over. */
  wait(gate: HighWater): void;
  /** Forgets a gate that no longer waits (it resumed on its own, or its connection ended). */
  unwait(gate: HighWater): void;
}

/** Where a gate closes: at `highWater` messages waiting, or `highWaterBytes` bytes of them. */
export interface FlowLimits {
  readonly highWater: number;
  readonly highWaterBytes: number;
}

/**
 * The gate. Extend it (the server's mailboxes do: an idle connection holds no object more for it) or hold one (the
 * client's channel, whose reader changes with each reconnect).
 */
export class HighWater {
  private paused = false;
  private waitingNow = 0;
  private bytesNow = 0;

  constructor(
    /** Shared by every gate of a service: one object, not two numbers per connection. */
    private readonly limits: FlowLimits,
    private readonly reader: Reader,
    private readonly pressure: Pressure | null = null,
  ) {}

  /** True while the reader is paused by this gate. */
  get readerPaused(): boolean {
    return this.paused;
  }

  /** A message was queued: `waiting` wait now, `bytes` in all. */
  added(waiting: number, bytes = 0): void {
    this.waitingNow = waiting;
    this.bytesNow = bytes;
    if (
      !this.paused &&
      (waiting >= this.limits.highWater ||
        bytes >= this.limits.highWaterBytes ||
        (bytes > 0 && this.pressure?.pressed === true))
    ) {
      this.paused = true;
      this.reader.pauseReading();
      if (this.pressure?.pressed) this.pressure.wait(this);
    }
  }

  /** Messages were taken: `waiting` are left, `bytes` in all. */
  taken(waiting: number, bytes = 0): void {
    this.waitingNow = waiting;
    this.bytesNow = bytes;
    if (this.paused) this.recheck();
  }

  /** Reads again if nothing holds it back any more (also the pressure's wake-up). */
  recheck(): void {
    if (!this.paused) return;
    if (this.waitingNow > this.limits.highWater >> 1 || this.bytesNow > this.limits.highWaterBytes / 2) return;
    if (this.bytesNow > 0 && this.pressure?.pressed) {
      this.pressure.wait(this);
      return;
    }
    this.paused = false;
    this.pressure?.unwait(this);
    this.reader.resumeReading();
  }

  /** The connection has ended: nothing more to pause or resume, and no wake-up to wait for. */
  stopWatching(): void {
    this.pressure?.unwait(this);
  }
}
