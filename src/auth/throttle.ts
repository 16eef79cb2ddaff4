/**
 * Failure throttling per peer address: after `maxFailures` failed handshakes from one address within `window` ms,
 * handshakes from that address are refused with `authThrottled` for `lockout` ms. Other addresses are not affected.
 * The table is bounded (`maxAddresses`, least recently failed first out), so a flood of addresses cannot grow it.
 */

export interface ThrottleSettings {
  maxFailures: number;
  window: number;
  lockout: number;
}

export const MAX_THROTTLED_ADDRESSES = 65_536;

interface Entry {
  failures: number[];
  lockedUntil: number;
}

export class AuthThrottle {
  private readonly table = new Map<string, Entry>();

  constructor(
    public settings: ThrottleSettings,
    private readonly now: () => number = Date.now,
    readonly maxAddresses = MAX_THROTTLED_ADDRESSES,
  ) {}

  /** Milliseconds left of this address's lockout, or 0. */
  lockedFor(address: string): number {
    const e = this.table.get(address);
    if (!e) return 0;
    const left = e.lockedUntil - this.now();
    return left > 0 ? left : 0;
  }

  /** Records a failure; returns true if it locked the address out. */
  fail(address: string): boolean {
    const now = this.now();
    const { maxFailures, window, lockout } = this.settings;
    let e = this.table.get(address);
    if (e) this.table.delete(address); // re-insert: most recent last
    e ??= { failures: [], lockedUntil: 0 };
    e.failures = e.failures.filter((t) => now - t < window);
    e.failures.push(now);
    let locked = false;
    if (e.failures.length >= maxFailures) {
      e.lockedUntil = now + lockout;
      e.failures = [];
      locked = true;
    }
    this.table.set(address, e);
    if (this.table.size > this.maxAddresses) this.table.delete(this.table.keys().next().value as string);
    return locked;
  }

  get size(): number {
    return this.table.size;
  }
}
