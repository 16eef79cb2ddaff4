/**
 * Fairness before authentication: who may hold one of the `max_unauthenticated` places of connections that have not
 * finished their handshake (TLS handshakes in progress included), so that one address cannot lock everyone out.
 *
 * Addresses are counted by group: an IPv4 address alone, an IPv6 address by its /64 (one machine's, or one
 * customer's, share of addresses; an IPv4 address written as IPv6 is the IPv4 address). For a newcomer:
 *
 * 1. its group already holds `max_unauthenticated_per_address` places: refused;
 * 2. a place is free: admitted;
 * 3. all places are taken: the group that holds the most gives up its oldest place, if it holds at least as many as
 *    the newcomer's would (among groups holding as many, the one whose oldest place is oldest gives it up: the way
 *    sshd's MaxStartups drops early, but aimed at whoever holds the most, and at the longest silent); otherwise the
 *    newcomer is refused.
 *
 * So a flooding address holds at most its share; while the table is full of a few addresses' connections, a newcomer
 * from another address still gets in; and when many addresses hold one place each, places go to the newest, so a
 * client that finishes its handshake promptly gets through however many silent ones are reopened. Every decision is
 * O(groups), and there are at most `max_unauthenticated` groups.
 */
import net from 'node:net';

/** A place in the table: released when its connection leaves the handshake; `evict` ends a connection pushed out. */
export interface Ticket {
  readonly group: string;
  /** Gives the place back (the handshake ended, one way or another). Idempotent. */
  release(): void;
  /** From now on, eviction calls `evict` (a TLS connection's place passes from its raw socket to its connection). */
  onEvict(evict: (text: string) => void): void;
}

interface Place extends Ticket {
  evict: (text: string) => void;
  released: boolean;
  /** When it was given (a count): the oldest goes first. */
  readonly seq: number;
}

/** The group an address counts in: itself for IPv4, its /64 for IPv6. */
export function addressGroup(address: string): string {
  if (!address.includes(':')) return address; // IPv4: no regular expression, nothing made
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return mapped[1] as string;
  if (net.isIPv6(address)) return `${expandIPv6(address).slice(0, 4).join(':')}::/64`;
  return address;
}

/** The eight 16-bit groups of an IPv6 address, as lowercase hex without leading zeros. */
function expandIPv6(address: string): string[] {
  const bare = address.split('%')[0] as string; // no zone index
  const [head, tail] = bare.includes('::') ? (bare.split('::') as [string, string]) : [bare, null];
  const left = head === '' ? [] : head.split(':');
  const right = tail === null || tail === '' ? [] : tail.split(':');
  // An embedded IPv4 (::1.2.3.4) is the last two groups.
  const last = right.length > 0 ? right : left;
  const v4 =
    last.length > 0 && (last[last.length - 1] as string).includes('.')
      ? (last.pop() as string).split('.').map(Number)
      : null;
  if (v4)
    last.push(
      ((v4[0] as number) * 256 + (v4[1] as number)).toString(16),
      ((v4[2] as number) * 256 + (v4[3] as number)).toString(16),
    );
  const fill = tail === null ? [] : Array<string>(8 - left.length - right.length).fill('0');
  return [...left, ...fill, ...right].map((g) => parseInt(g, 16).toString(16));
}

export class Admission {
  private readonly groups = new Map<string, Place[]>();
  private count = 0;
  private seq = 0;
  /** Newcomers refused, and places given up to newcomers, since the start. */
  refused = 0;
  evicted = 0;

  constructor(
    public maxTotal: number,
    public maxPerGroup: number,
  ) {}

  /** Places taken now. */
  get size(): number {
    return this.count;
  }

  /**
   * A newcomer from `address`: its ticket, or the sentence that refuses it. `evict` ends the connection if it is
   * later pushed out by a newcomer from a less represented address.
   */
  admit(address: string, evict: (text: string) => void): Ticket | string {
    const group = addressGroup(address);
    const mine = this.groups.get(group)?.length ?? 0;
    if (mine >= this.maxPerGroup) {
      this.refused++;
      return `${group} already has max_unauthenticated_per_address (${this.maxPerGroup}) connections in the handshake`;
    }
    if (this.count >= this.maxTotal) {
      let top: Place[] | undefined;
      for (const places of this.groups.values()) {
        if (
          !top ||
          places.length > top.length ||
          (places.length === top.length && (places[0] as Place).seq < (top[0] as Place).seq)
        )
          top = places;
      }
      if (!top || top.length < mine + 1) {
        this.refused++;
        return `the server has max_unauthenticated (${this.maxTotal}) connections in the handshake`;
      }
      const oldest = top[0] as Place;
      this.evicted++;
      this.release(oldest);
      oldest.evict(
        `pushed out of the handshake: the server has max_unauthenticated (${this.maxTotal}) connections in it, and ${oldest.group} holds the most`,
      );
    }
    const place: Place = {
      group,
      evict,
      released: false,
      seq: this.seq++,
      release: () => this.release(place),
      onEvict: (fn) => {
        place.evict = fn;
      },
    };
    const places = this.groups.get(group);
    if (places) places.push(place);
    else this.groups.set(group, [place]);
    this.count++;
    return place;
  }

  private release(place: Place): void {
    if (place.released) return;
    place.released = true;
    this.count--;
    const places = this.groups.get(place.group) as Place[];
    places.splice(places.indexOf(place), 1);
    if (places.length === 0) this.groups.delete(place.group);
  }
}
