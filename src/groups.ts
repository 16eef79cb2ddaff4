/**
 * Groups of connections (Erlang's `pg`, socket.io's rooms): a handler adds its connection to a named group, leaves
 * it, and publishes a term that every member receives as a push, wherever the member is connected: this process,
 * another process of the same server (through the primary, cluster.ts), or another server sharing the Redis store
 * (Redis pub/sub).
 *
 * As with `pg`, a member that goes away leaves every group it was in: a connection that ends (closed, crashed, cut)
 * is removed at once. What is not kept anywhere but in each process: who the members are. A publish reaches the
 * members each process has at that moment; a process (or server) that dies takes its members with it, and the others
 * learn of it only through what the application publishes (the IRC example's `left`), not through a registry.
 *
 * Group names are terms, compared by value (termKey); groups are per service. A publish is delivered in order to the
 * members of one process; across processes and servers, in the order each one receives them. Delivery to a member is
 * the member's push: over its client's frame or decoded-size limit, that member alone misses it (logged).
 */
import { randomUUID } from 'node:crypto';
import { decodedSizeLimit, msgpackCodec, type Codec } from './codec/index.js';
import { ThrottledLog, type Logger } from './log.js';
import type { Term } from './term/model.js';
import { termKey } from './term/print.js';

/** A connection in groups, as groups see it: a push, and a way to learn that it ended. */
export interface Member {
  push(x: unknown): boolean;
  /** Runs `fn` once the connection has ended (at once if it has); returns what takes it back. */
  onClose(fn: () => void): () => void;
}

/** What crosses to other processes and servers: a publish, as bytes, from one origin. */
export interface Broadcast {
  origin: string;
  service: string;
  group: string;
  /** The codec's bytes of the term published. */
  payload: Uint8Array;
}

/** How publishes reach other processes or servers; null on a server of one process with no shared store. */
export interface GroupBus {
  send(b: Broadcast): void;
  /** Called with every broadcast from elsewhere; `refused` with what came that is not one. */
  receive(deliver: (b: Broadcast) => void, refused: (err: unknown) => void): void;
  close(): Promise<void>;
}

/** The publishing side's: any term a handler gives (its members' pushes apply their limits). */
const codec = msgpackCodec({ maxDepth: Number.MAX_SAFE_INTEGER });

/** Every group of every service of one server process. */
export class Groups {
  /** service -> group key -> members, each with what takes back its close watcher (so a leave leaves nothing). */
  private readonly services = new Map<string, Map<string, Map<Member, () => void>>>();
  /** This process: its own broadcasts come back from Redis, and are dropped (delivered here already). */
  readonly origin = randomUUID();
  /**
   * What comes from the bus is decoded as a client's message is: within the server's max_depth, and the decoded-size
   * budget of a frame of max_frame_size (of the payload's own size, for a larger one). It may be a broadcast from
   * another process, or anything anyone published on the Redis channel.
   */
  private readonly incoming: Codec;
  private readonly maxFrameSize: number;
  private refusedLog: ThrottledLog | null = null;

  constructor(
    private readonly bus: GroupBus | null,
    private readonly log: Logger,
    limits: { readonly maxDepth: number; readonly maxFrameSize: number },
  ) {
    this.incoming = msgpackCodec({ maxDepth: limits.maxDepth });
    this.maxFrameSize = limits.maxFrameSize;
    bus?.receive(
      (b) => {
        if (b.origin === this.origin) return;
        const members = this.services.get(b.service)?.get(b.group);
        if (!members || members.size === 0) return;
        let x: Term;
        try {
          x = this.incoming.decode(b.payload, decodedSizeLimit(Math.max(b.payload.length, this.maxFrameSize)));
        } catch (err) {
          this.refused(err);
          return;
        }
        this.deliver(members, x, null);
      },
      (err) => this.refused(err),
    );
  }

  /** A broadcast that is not a term within the limits: dropped, and logged (at most once per 10 s). */
  refused(err: unknown): void {
    (this.refusedLog ??= new ThrottledLog(this.log, 'warn')).note(
      { err: { message: err instanceof Error ? err.message : String(err) } },
      'a group broadcast from elsewhere was dropped: not a term within max_depth and the decoded-size limit',
    );
  }

  /** The groups of one service, as its handlers use them (`ctx.groups`). */
  of(service: string): ServiceGroups {
    return new ServiceGroups(this, service);
  }

  /** @internal */
  join(service: string, group: Term, member: Member): void {
    let groups = this.services.get(service);
    if (!groups) {
      groups = new Map();
      this.services.set(service, groups);
    }
    const key = termKey(group);
    let members = groups.get(key);
    if (!members) {
      members = new Map();
      groups.set(key, members);
    }
    if (members.has(member)) return;
    // Set first: a connection already closed runs the watcher at once, and its leave must find the member.
    members.set(member, () => {});
    // The key, not the term: a handler that changes its term after joining must not strand the member.
    const unwatch = member.onClose(() => this.leaveKey(service, key, member));
    if (members.has(member)) members.set(member, unwatch ?? (() => {}));
  }

  /** @internal */
  leave(service: string, group: Term, member: Member): boolean {
    return this.leaveKey(service, termKey(group), member);
  }

  private leaveKey(service: string, key: string, member: Member): boolean {
    const groups = this.services.get(service);
    const members = groups?.get(key);
    const unwatch = members?.get(member);
    if (!members || unwatch === undefined) return false;
    members.delete(member);
    unwatch();
    if (members.size === 0) groups?.delete(key);
    return true;
  }

  /** @internal */
  members(service: string, group: Term): number {
    return this.services.get(service)?.get(termKey(group))?.size ?? 0;
  }

  /** @internal */
  publish(service: string, group: Term, x: Term, except: Member | null): void {
    const key = termKey(group);
    const members = this.services.get(service)?.get(key);
    if (members) this.deliver(members, x, except);
    this.bus?.send({ origin: this.origin, service, group: key, payload: codec.encode(x, 0) });
  }

  private deliver(members: Map<Member, unknown>, x: Term, except: Member | null): void {
    for (const m of [...members.keys()]) {
      if (m === except) continue;
      try {
        m.push(x);
      } catch (err) {
        // Over that member's limits: it alone misses the message.
        this.log.warn(
          { err: { message: err instanceof Error ? err.message : String(err) } },
          'a group member missed a publish',
        );
      }
    }
  }

  close(): Promise<void> {
    return this.bus?.close() ?? Promise.resolve();
  }
}

/** A service's groups: what a handler's `ctx.groups` offers. */
export class ServiceGroups {
  constructor(
    private readonly groups: Groups,
    private readonly service: string,
  ) {}

  /** Adds the connection `mm` to `group` (a term); it leaves by itself when its connection ends. */
  join(group: Term, mm: Member): void {
    this.groups.join(this.service, group, mm);
  }

  /** Takes `mm` out of `group`; false if it was not in it. */
  leave(group: Term, mm: Member): boolean {
    return this.groups.leave(this.service, group, mm);
  }

  /**
   * Sends `x` as a push to every member of `group` (but `except`, in this process), in every process of the server
   * and every server that shares its Redis store.
   */
  publish(group: Term, x: Term, options: { except?: Member } = {}): void {
    this.groups.publish(this.service, group, x, options.except ?? null);
  }

  /** How many members `group` has in this process. */
  localMembers(group: Term): number {
    return this.groups.members(this.service, group);
  }
}
