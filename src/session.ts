/**
 * The session's rules, once the handshake is over, for both sides (docs/PROTOCOL.md section 5):
 *
 * - a client sends `cast` and `rpc`; a server sends `reply` and `push`; either may `ping`, `pong` and `close` (those
 *   three are the middle-man's). Anything else is a protocolError.
 * - an rpc's id is the client's to choose; one id waits for one answer at a time, and at most
 *   {@link MAX_UNANSWERED_RPCS} wait at once on a connection.
 * - the server's handler answers with `send`, which takes the oldest rpc the handler has received and not answered
 *   (lib_chan's "the next send is the answer"), else it is a push; or with `reply(m, X)`, which answers `m` itself.
 * - the client matches a reply to its rpc by id; a reply for an id it no longer waits for (the rpc gave up) is dropped,
 *   never given to another rpc.
 *
 * Server and client both keep their side of these rules here. (Pings, pongs and close frames, allowed on either side
 * at any time after the ack, are the middle-man's: mm.ts and heartbeat.ts.)
 */
import { ChanError } from './errors.js';
import { MAX_TIMER_MS, abortedError } from './inbox.js';
import { MAX_REQUEST_ID, type WireMessage } from './protocol.js';
import type { Term } from './term/model.js';
import { WaitingIds } from './waiting.js';

/**
 * rpcs of one connection that may wait for an answer at once; one more is a protocolError. (A handler that never
 * answers must not let a client grow the set of waiting ids without bound.)
 */
export const MAX_UNANSWERED_RPCS = 65_536;

/**
 * What the server counts against max_queued_bytes for each rpc waiting for an answer (its id in the connection's
 * table, and in the admin port's rpc clock), in whole steps of {@link WAITING_RPCS_STEP} rpcs: a connection whose
 * handler takes rpcs and answers them late holds what it holds in the open, and is shed like any other when the server
 * is over the budget.
 */
export const WAITING_RPC_BYTES = 64;
export const WAITING_RPCS_STEP = 64;

/** The bytes counted for `n` rpcs waiting: nothing under a step, so that answering in turn costs no accounting. */
export function waitingRpcsCharge(n: number): number {
  return (n - (n % WAITING_RPCS_STEP)) * WAITING_RPC_BYTES;
}

/** Whether `n` rpcs waiting, just after one more arrived (or one fewer, once answered), changed the charge. */
export function waitingStepCrossed(n: number, arrived: boolean): boolean {
  return n % WAITING_RPCS_STEP === (arrived ? 0 : WAITING_RPCS_STEP - 1);
}

/** What each side may receive in the session (ping, pong and close never reach these rules: the middle-man's). */
const MAY_RECEIVE = {
  server: new Set<WireMessage['kind']>(['cast', 'rpc']),
  client: new Set<WireMessage['kind']>(['reply', 'push']),
} as const;

/** Why `m` may not reach `receiver` in the session, or null when it may. */
export function sessionFault(receiver: 'server' | 'client', m: WireMessage): string | null {
  if (MAY_RECEIVE[receiver].has(m.kind)) return null;
  return `a ${receiver === 'server' ? 'client' : 'server'} may not send ${m.kind} after the handshake`;
}

/** An rpc the handler has not received yet, and one it has (the number each waiting id keeps). */
const NOT_RECEIVED = 0;
const RECEIVED = 1;

function ifReceived(id: number, state: number): number | undefined {
  return state === RECEIVED ? id : undefined;
}

/**
 * The server's side: which rpcs wait for an answer, in the order they arrived, and which of them the handler has
 * received. The handler receives its mailbox in that order, so the ones it has received come first: the oldest it has
 * received is the first, when it has received that one. (The ids themselves are kept as {@link WaitingIds} keeps
 * them: one in two fields, more in a Map.)
 */
export class RpcAnswers extends WaitingIds {
  /** Rpcs waiting for an answer. */
  get waiting(): number {
    return this.size;
  }

  /** An rpc arrived: null, or why the connection must close (protocolError). */
  arrived(id: number): string | null {
    if (this.has(id)) return `request id ${id} is already waiting for its answer`;
    if (this.size >= MAX_UNANSWERED_RPCS)
      return `more than ${MAX_UNANSWERED_RPCS} rpcs are waiting for an answer on this connection`;
    this.add(id, NOT_RECEIVED);
    return null;
  }

  /** The handler took the message of rpc `id` from its mailbox. */
  taken(id: number): void {
    this.set(id, RECEIVED);
  }

  /** The rpc that `send` answers now: the oldest the handler has received, if any. */
  oldestReceived(): number | undefined {
    return this.withOldest(ifReceived);
  }

  isWaiting(id: number): boolean {
    return this.has(id);
  }

  /**
   * Why the handler may not `reply` to `requestId` (undefined: the message was a cast), or null when it may. An rpc
   * already answered is a usage error while the connection is open; once it has ended, nothing waits any more.
   */
  replyFault(requestId: number | undefined): string | null {
    if (requestId === undefined) return 'reply(): that message was a cast; only an rpc expects an answer';
    if (!this.has(requestId)) return `reply(): request ${requestId} is already answered`;
    return null;
  }

  answered(id: number): void {
    this.remove(id);
  }
}

/** Where an rpc is sent: the client's connection. */
export interface RpcSender {
  send(m: WireMessage): unknown;
}

interface Pending {
  readonly id: number;
  resolve(x: Term): void;
  reject(err: Error): void;
  /** When it times out (performance.now()), or Infinity. */
  deadline: number;
  /** Its timeout, ms, for the error's words. */
  timeout: number;
}

/** A timer that fires this little early still counts its deadline as passed (timers keep whole milliseconds). */
const DEADLINE_SLACK_MS = 1;

/** The slots an rpc table starts with (a power of two; it doubles when half of them hold an rpc). */
const FIRST_SLOTS = 64;

function sweepRpcs(rpcs: PendingRpcs): void {
  rpcs.sweep();
}

/**
 * The client's side: the rpcs it waits on, by id, each with its deadline. One timer serves them all, armed for the
 * earliest deadline (rather than a timer per rpc, armed and cleared at every call): with the usual single timeout it
 * fires about once per timeout, finds nothing late, and is armed again for the oldest rpc still waiting. It keeps the
 * process alive only while an rpc waits, as a timer per rpc did.
 *
 * The rpcs are kept in an array indexed by the low bits of their ids, not in a Map: ids count up (skipping one whose
 * slot is taken, so an id is not used again before the count wraps at 2^32), and a Map with an entry added and one
 * removed per rpc keeps replacing its table; each table it drops, once the collector has moved it to the old
 * generation, keeps the rpcs it held (their promises, their answers) alive through every young collection until the
 * next full one. The array is replaced only when it doubles.
 */
export class PendingRpcs {
  private slots: (Pending | undefined)[] = new Array<Pending | undefined>(FIRST_SLOTS).fill(undefined);
  private mask = FIRST_SLOTS - 1;
  private count = 0;
  private lastId = 0;
  /** No rpc older than this id waits (the original protocol's answers go to the oldest). */
  private oldestId = 1;
  private timer: NodeJS.Timeout | null = null;
  /** The deadline the timer is armed for (Infinity: none). */
  private armedFor = Number.POSITIVE_INFINITY;

  get size(): number {
    return this.count;
  }

  private find(id: number): Pending | undefined {
    const p = this.slots[id & this.mask];
    return p !== undefined && p.id === id ? p : undefined;
  }

  /**
   * Starts an rpc: picks a free id, sets its deadline, and sends `data` as that rpc through `to` (a throw from its
   * `send` rejects the rpc). A timeout too long for a timer (Infinity, over 24.8 days) means none.
   */
  start(timeout: number, to: RpcSender, data: Term, signal?: AbortSignal): Promise<Term> {
    if (signal?.aborted) return Promise.reject(abortedError(signal));
    const id = this.nextId();
    return new Promise<Term>((resolve, reject) => {
      if (signal) {
        // Only for an rpc that can be aborted: its listener goes once the rpc is settled, either way.
        const onAbort = (): void => {
          if (!this.find(id)) return;
          this.forget(id);
          reject(abortedError(signal));
        };
        signal.addEventListener('abort', onAbort, { once: true });
        const settled = (): void => signal.removeEventListener('abort', onAbort);
        const [res, rej] = [resolve, reject];
        resolve = (x) => {
          settled();
          res(x);
        };
        reject = (err) => {
          settled();
          rej(err);
        };
      }
      const deadline = timeout <= MAX_TIMER_MS ? performance.now() + timeout : Number.POSITIVE_INFINITY;
      this.slots[id & this.mask] = { id, resolve, reject, deadline, timeout };
      this.count++;
      if (deadline < this.armedFor) this.arm(deadline);
      else if (this.count === 1) this.timer?.ref();
      try {
        to.send({ kind: 'rpc', id, data });
      } catch (err) {
        this.forget(id);
        reject(err);
      }
    });
  }

  /** A reply arrived: settles its rpc; false when no rpc waits for that id (it gave up). */
  settle(id: number, data: Term): boolean {
    const p = this.find(id);
    if (!p) return false;
    this.forget(id);
    p.resolve(data);
    return true;
  }

  /**
   * The original lib_chan protocol has no request ids: a term from the server answers the oldest rpc still waiting.
   * False when none waits.
   */
  settleOldest(data: Term): boolean {
    if (this.count === 0) return false;
    // Ids were given in order: the oldest waiting is the first from oldestId that still waits (each id is passed once).
    while (!this.find(this.oldestId)) this.oldestId = this.oldestId >= MAX_REQUEST_ID ? 1 : this.oldestId + 1;
    return this.settle(this.oldestId, data);
  }

  /** Every rpc still waiting fails with `err` (made only if one waits), and the timer is let go. */
  rejectAll(err: Error | (() => Error)): void {
    this.disarm();
    if (this.count === 0) return;
    const e = typeof err === 'function' ? err() : err;
    for (const p of this.waiting()) {
      this.forget(p.id);
      p.reject(e);
    }
  }

  /** @internal The timer fired: the rpcs past their deadline fail (their ids are forgotten: a late answer is dropped). */
  sweep(): void {
    this.timer = null;
    this.armedFor = Number.POSITIVE_INFINITY;
    const now = performance.now() + DEADLINE_SLACK_MS;
    let next = Number.POSITIVE_INFINITY;
    for (const p of this.waiting()) {
      if (p.deadline <= now) {
        this.forget(p.id);
        p.reject(new ChanError('timeout', `no answer within ${p.timeout} ms`));
      } else if (p.deadline < next) {
        next = p.deadline;
      }
    }
    if (next < Number.POSITIVE_INFINITY) this.arm(next);
  }

  /** The rpcs waiting now, oldest first (a copy: the caller may forget them as it goes). */
  private waiting(): Pending[] {
    const age = (p: Pending): number => (this.lastId - p.id + MAX_REQUEST_ID) % MAX_REQUEST_ID;
    return this.slots.filter((p): p is Pending => p !== undefined).sort((x, y) => age(y) - age(x));
  }

  private forget(id: number): void {
    const slot = id & this.mask;
    if (this.slots[slot]?.id !== id) return;
    this.slots[slot] = undefined;
    this.count--;
    if (this.count > 0) return;
    // Nothing waits: the timer may stay armed (to be reused), but no longer keeps the process alive; a table grown by a
    // burst of rpcs goes back to its first size.
    this.timer?.unref();
    this.oldestId = this.lastId >= MAX_REQUEST_ID ? 1 : this.lastId + 1;
    if (this.slots.length > FIRST_SLOTS) {
      this.slots = new Array<Pending | undefined>(FIRST_SLOTS).fill(undefined);
      this.mask = FIRST_SLOTS - 1;
    }
  }

  private arm(deadline: number): void {
    if (this.timer) clearTimeout(this.timer);
    this.armedFor = deadline;
    this.timer = setTimeout(sweepRpcs, Math.max(0, deadline - performance.now()), this);
  }

  private disarm(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.armedFor = Number.POSITIVE_INFINITY;
  }

  /** The next id whose slot is free (with at most half the slots taken, one or two tries), the table grown first. */
  private nextId(): number {
    if (2 * (this.count + 1) > this.slots.length) this.grow();
    do {
      this.lastId = this.lastId >= MAX_REQUEST_ID ? 1 : this.lastId + 1;
    } while (this.slots[this.lastId & this.mask] !== undefined);
    return this.lastId;
  }

  /** Twice the slots: ids apart in the old table's low bits are apart in the new one's. */
  private grow(): void {
    const slots = new Array<Pending | undefined>(2 * this.slots.length).fill(undefined);
    const mask = slots.length - 1;
    for (const p of this.slots) if (p !== undefined) slots[p.id & mask] = p;
    this.slots = slots;
    this.mask = mask;
  }
}
