/**
 * Failure throttling per peer address: after `maxFailures` failed handshakes from one address within `window` ms,
 * handshakes from that address are refused with `authThrottled` for `lockout` ms. Other addresses are not affected.
 * Addresses are counted by group (admission.ts: IPv4 alone, IPv6 by /64), so that the 2^64 addresses of one IPv6
 * network are one address here.
 *
 * The table is bounded (`maxAddresses` entries) without letting anyone flush a lockout:
 *
 * - a locked address is never forgotten before its lockout ends (lockouts usually end in the order they began, so
 *   ended ones are dropped from the front at no cost; a reload that shortens auth_lockout, or a clock set back, can
 *   leave ended ones behind, which are dropped when met, and all at once when the table is full);
 * - an address with failures but no lockout yet is forgotten first, least recently failed first (it loses fewer than
 *   `maxFailures` failures);
 * - when every entry is a lockout (an attacker with `maxAddresses` addresses, each locked), the failures of every
 *   address not in the table are counted together, as one: once they reach `maxFailures`, every address not in the
 *   table is locked out too, until the lockout ends. Legitimate clients not in the table pay for that attack; it is
 *   the price of a bounded table, and it is said in docs/SECURITY.md.
 */
import { addressGroup } from '../admission.js';

export interface ThrottleSettings {
  maxFailures: number;
  window: number;
  lockout: number;
}

export const MAX_THROTTLED_ADDRESSES = 65_536;

/** The throttle's settings from the server's options (auth_max_failures, auth_failure_window, auth_lockout). */
export function throttleSettings(s: {
  authMaxFailures: number;
  authFailureWindow: number;
  authLockout: number;
}): ThrottleSettings {
  return { maxFailures: s.authMaxFailures, window: s.authFailureWindow, lockout: s.authLockout };
}

export class AuthThrottle {
  /** Locked addresses and when their lockout ends, in the order they were locked. */
  private readonly locked = new Map<string, number>();
  /** Addresses with recent failures and no lockout, least recently failed first. */
  private readonly failing = new Map<string, number[]>();
  /** Failures and lockout of every address not in a table full of lockouts. */
  private overflowFailures: number[] = [];
  private overflowLockedUntil = 0;
  private lastSweep = Number.NEGATIVE_INFINITY;

  constructor(
    public settings: ThrottleSettings,
    private readonly now: () => number = Date.now,
    readonly maxAddresses = MAX_THROTTLED_ADDRESSES,
  ) {}

  /** Addresses (IPv6: /64s) locked out now. */
  get lockedOut(): number {
    this.dropEnded(this.now());
    return this.locked.size;
  }

  /** Milliseconds left of this address's lockout, or 0. */
  lockedFor(address: string): number {
    const now = this.now();
    this.dropEnded(now);
    const group = addressGroup(address);
    const until = this.locked.get(group);
    if (until !== undefined) return Math.max(0, until - now);
    if (this.overflowLockedUntil > now && !this.failing.has(group)) return this.overflowLockedUntil - now;
    return 0;
  }

  /**
   * Told of every failure this table records (before it is counted): with several processes, each tells the primary,
   * which counts them all and locks an address out everywhere (cluster.ts).
   */
  onFailure: ((address: string) => void) | null = null;

  /**
   * Locks `address` out for `ms` from now (a lockout decided elsewhere: the primary's count of every process). Bounded
   * like the rest of the table: when it is full, the lockout falls on every address outside it.
   */
  lock(address: string, ms: number): void {
    const now = this.now();
    const group = addressGroup(address);
    this.failing.delete(group);
    this.locked.delete(group); // re-inserted: lockouts stay in the order they end, as a rule
    if (this.full()) this.dropAllEnded(now);
    if (this.full()) {
      // As fail() does: the address that failed least recently without being locked makes room, if there is one.
      const oldest = this.failing.keys().next();
      if (!oldest.done) this.failing.delete(oldest.value);
    }
    if (this.full()) this.overflowLockedUntil = Math.max(this.overflowLockedUntil, now + ms);
    else this.locked.set(group, now + ms);
  }

  /** The lockouts in force, each an address (or /64) and the ms left: for a process that starts late. */
  activeLocks(): [string, number][] {
    const now = this.now();
    this.dropEnded(now);
    return [...this.locked].filter(([, until]) => until > now).map(([group, until]) => [group, until - now]);
  }

  /** Records a failure; returns true if it locked the address out. */
  fail(address: string): boolean {
    this.onFailure?.(address);
    const now = this.now();
    this.dropEnded(now);
    const group = addressGroup(address);
    const until = this.locked.get(group);
    if (until !== undefined) {
      if (until > now) return false;
      this.locked.delete(group); // ended, though not at the front
    }
    const { window, maxFailures, lockout } = this.settings;
    let failures = this.failing.get(group);
    if (failures) {
      this.failing.delete(group); // re-inserted below: most recent last
    } else if (this.full()) {
      this.dropAllEnded(now);
      if (this.full()) {
        // Forget the address that failed least recently without being locked, if there is one.
        const oldest = this.failing.keys().next();
        if (oldest.done) return this.failOverflow(now);
        this.failing.delete(oldest.value);
      }
    }
    failures = (failures ?? []).filter((t) => now - t < window);
    failures.push(now);
    if (failures.length >= maxFailures) {
      this.locked.set(group, now + lockout);
      return true;
    }
    this.failing.set(group, failures);
    return false;
  }

  private failOverflow(now: number): boolean {
    const { window, maxFailures, lockout } = this.settings;
    this.overflowFailures = this.overflowFailures.filter((t) => now - t < window);
    this.overflowFailures.push(now);
    if (this.overflowFailures.length < maxFailures) return false;
    this.overflowFailures = [];
    this.overflowLockedUntil = now + lockout;
    return true;
  }

  /** Lockouts end in the order they began, as a rule: the ended ones are at the front. */
  private dropEnded(now: number): void {
    for (const [group, until] of this.locked) {
      if (until > now) break;
      this.locked.delete(group);
    }
  }

  /** Every ended lockout, wherever it is (the table is full: worth a look at all of it, once a second at most). */
  private dropAllEnded(now: number): void {
    if (now - this.lastSweep < 1000) return;
    this.lastSweep = now;
    for (const [group, until] of this.locked) if (until <= now) this.locked.delete(group);
  }

  private full(): boolean {
    return this.locked.size + this.failing.size >= this.maxAddresses;
  }

  /** Addresses in the table (locked or with recent failures). */
  get size(): number {
    return this.locked.size + this.failing.size;
  }

  /** Addresses locked out now (the addresses outside a full table count as one). */
  get lockedCount(): number {
    this.dropEnded(this.now());
    return this.locked.size + (this.overflowLockedUntil > this.now() ? 1 : 0);
  }
}
