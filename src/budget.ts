/**
 * What peers make a server hold, in bytes, and the server-wide ceiling on it (`max_queued_bytes`).
 *
 * Each connection has an {@link Account} of what it holds: messages waiting in its handler's mailbox (their decoded
 * size; in transit to a worker thread, their bytes too), the unfinished frame it is receiving, and the bytes waiting to
 * be sent to its peer. The per-connection limits bound each account (`mailbox_high_water_bytes` pauses reading,
 * `send_buffer_limit` closes with `slowConsumer`); the {@link QueueBudget} bounds their sum, the way Redis bounds all
 * its clients' buffers together (`maxmemory-clients`):
 *
 * - over three quarters of the budget, a connection that holds input stops being read (its peer's bytes wait in the
 *   kernel) until the total is back under half, or its handler has taken what it held;
 * - over the budget, the connection that holds the most is shed: what it holds is dropped, and it is closed with
 *   `slowConsumer` (most of it was waiting for its peer to read) or `overloaded` (most of it was waiting for its
 *   handler). Shedding runs once the current turn's work is done, so no caller sees its own connection vanish mid-call.
 *
 * A connection whose socket has closed keeps its account while its handler still has messages to take.
 */

import type { Pressure } from './flow.js';

/**
 * What a connection does when the budget sheds it: drop what it holds and close. False when it had already closed
 * and could let go of nothing (what its socket still holds goes when the socket closes, within the close linger).
 */
export interface Shed {
  shed(reason: 'slowConsumer' | 'overloaded', text: string): boolean;
}

export class Account {
  /** Bytes held now: inbound (mailbox, frame being received) plus outbound (waiting to be sent). */
  held = 0;
  /** Of `held`, the outbound part. */
  outbound = 0;

  constructor(
    private readonly budget: QueueBudget | null,
    readonly owner: Shed,
  ) {}

  /** The server-wide pressure the connection's readers obey (its budget), if any. */
  get pressure(): Pressure | null {
    return this.budget;
  }

  /** Inbound bytes held changed by `delta`. */
  inbound(delta: number): void {
    if (delta === 0) return;
    this.held += delta;
    this.budget?.changed(this, delta);
  }

  /** Outbound bytes held are now `bytes`. */
  setOutbound(bytes: number): void {
    const delta = bytes - this.outbound;
    if (delta === 0) return;
    this.outbound = bytes;
    this.held += delta;
    this.budget?.changed(this, delta);
  }
}

export class QueueBudget implements Pressure {
  /** Bytes held by every connection together. */
  used = 0;
  /** Connections shed since the start. */
  shedCount = 0;
  private readonly high: number;
  private readonly low: number;
  /** Accounts that hold something: where shedding looks. */
  private readonly holding = new Set<Account>();
  /** Readers paused by the pressure, to wake when it is over. */
  private readonly waiting = new Set<{ recheck(): void }>();
  private shedScheduled = false;

  constructor(readonly limit: number) {
    this.high = Math.floor(limit * 0.75);
    this.low = Math.floor(limit / 2);
  }

  /** Over three quarters of the budget: connections that hold input are not read. */
  get pressed(): boolean {
    return this.used > this.high;
  }

  /** @internal */
  changed(a: Account, delta: number): void {
    this.used += delta;
    if (a.held > 0) this.holding.add(a);
    else this.holding.delete(a);
    if (delta > 0) {
      if (this.used > this.limit && !this.shedScheduled) {
        this.shedScheduled = true;
        queueMicrotask(() => this.shed());
      }
    } else if (this.waiting.size > 0 && this.used <= this.low) {
      const gates = [...this.waiting];
      this.waiting.clear();
      for (const g of gates) g.recheck();
    }
  }

  /** Calls `gate.recheck()` once the pressure is over. */
  wait(gate: { recheck(): void }): void {
    this.waiting.add(gate);
  }

  unwait(gate: { recheck(): void }): void {
    this.waiting.delete(gate);
  }

  private shed(): void {
    this.shedScheduled = false;
    while (this.used > this.limit) {
      let top: Account | null = null;
      for (const a of this.holding) if (top === null || a.held > top.held) top = a;
      if (top === null) return;
      const before = this.used;
      const outbound = top.outbound * 2 >= top.held;
      const shed = top.owner.shed(
        outbound ? 'slowConsumer' : 'overloaded',
        `the server holds more than max_queued_bytes (${this.limit} bytes) for all connections together, and this connection held the most (${top.held} bytes, ${outbound ? 'waiting for the peer to read' : 'waiting for the handler'}); it was dropped`,
      );
      if (shed) this.shedCount++;
      if (this.used >= before) {
        this.holding.delete(top); // it could not let go of anything more: do not pick it again
      }
    }
  }
}
