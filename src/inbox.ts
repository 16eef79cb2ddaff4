/**
 * An ordered queue read the way an Erlang process reads its mailbox: `await receive({ timeout })` for one item, or
 * `for await` over all of them. It ends in one of two ways: with a last item that every later `receive` returns again
 * (the handler's `{chan_closed, MM}`), or with an error that every later `receive` rejects with (a client's pushes
 * after the channel closed). Two iterations at once throw: two readers would each miss half the messages. (One after
 * the other is fine: a `for await` that breaks lets the next one start.)
 */
import { ChanError } from './errors.js';

/** The longest delay a Node timer takes (2^31 - 1 ms); a longer one would fire at once. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/** Shared by every inbox with no item, waiter or weighed item yet: never pushed to (replaced on first use). */
const EMPTY: never[] = [];

interface Waiter<T> {
  resolve(item: T): void;
  reject(err: Error): void;
  timer: NodeJS.Timeout | null;
}

export interface ReceiveOptions {
  /** Milliseconds to wait; the promise rejects with a `timeout` ChanError if nothing came. Default: wait forever. */
  timeout?: number;
  /** Stops waiting when aborted: the promise rejects with an `aborted` ChanError (nothing is taken). */
  signal?: AbortSignal;
}

export class Inbox<T> implements AsyncIterable<T> {
  /** Shared and empty until the first item is queued. */
  private items: T[] = EMPTY as T[];
  /** Each queued item's weight (bytes), beside `items`; made when the first weighed item is queued. */
  private weights: number[] = EMPTY as number[];
  private weighed = 0;
  private head = 0;
  private waiters: Waiter<T>[] = EMPTY as Waiter<T>[];
  /** The iterator's pending `next()`, when it waited with no receive ahead of it (served before `waiters`). */
  private reader: InboxIterator<T, unknown> | null = null;
  private ending: { last: T } | { error: Error } | null = null;
  private iterating = false;

  /** Items waiting to be received. */
  get size(): number {
    return this.items.length - this.head;
  }

  /** The weights of the items waiting, together. */
  get bytes(): number {
    return this.weighed;
  }

  /**
   * Hands `item` to a waiting receiver, or queues it with its `weight` (what it costs to hold, in bytes). Returns
   * the weight now held for it: `weight` if it was queued, 0 if it went straight to a receiver or the inbox has ended.
   */
  put(item: T, weight = 0): number {
    if (this.ending) return 0;
    const r = this.reader;
    if (r) {
      this.reader = null;
      r.answer(item);
      return 0;
    }
    const w = this.waiters.length > 0 ? this.waiters.shift() : undefined;
    if (w) {
      if (this.waiters.length === 0) this.waiters = EMPTY as Waiter<T>[];
      if (w.timer) clearTimeout(w.timer);
      w.resolve(item);
      return 0;
    }
    this.queue(item, weight);
    return weight;
  }

  private queue(item: T, weight: number): void {
    if (weight > 0 && this.weights === EMPTY)
      this.weights = this.items.length === 0 ? [] : new Array<number>(this.items.length).fill(0);
    if (this.items === EMPTY) this.items = [];
    this.items.push(item);
    if (this.weights !== EMPTY) this.weights.push(weight);
    this.weighed += weight;
  }

  /**
   * Drops every item waiting (not the end, if it is queued) and returns their weight: what a connection that is
   * being cut held in its mailbox.
   */
  drop(): number {
    const dropped = this.weighed;
    const e = this.ending;
    const last = e && 'last' in e && this.items.length > this.head && this.items[this.items.length - 1] === e.last;
    this.items = last ? [e.last] : (EMPTY as T[]);
    this.weights = EMPTY as number[];
    this.weighed = 0;
    this.head = 0;
    return dropped;
  }

  /** Ends the inbox. With `last`, it is received after the queued items, and again by every later receive. */
  end(ending: { last: T } | { error: Error | (() => Error) }): void {
    if (this.ending) return;
    if ('error' in ending && typeof ending.error === 'function') {
      // An error given as a factory is made when first received, once (a stack trace is not free).
      const make = ending.error;
      let made: Error | null = null;
      this.ending = {
        get error(): Error {
          made ??= make();
          return made;
        },
      };
    } else {
      this.ending = ending as { last: T } | { error: Error };
    }
    const e = this.ending;
    const r = this.reader;
    this.reader = null;
    const waiters = this.waiters;
    this.waiters = EMPTY as Waiter<T>[];
    if ('last' in e && waiters.length === 0 && !r) this.queue(e.last, 0);
    if (r) {
      if ('last' in e) r.answer(e.last);
      else r.answer(undefined, e.error);
    }
    for (const w of waiters) {
      if (w.timer) clearTimeout(w.timer);
      if ('last' in e) w.resolve(e.last);
      else w.reject(e.error);
    }
  }

  receive(options: ReceiveOptions = {}): Promise<T> {
    if (this.head < this.items.length) return Promise.resolve(this.take());
    if (this.ending)
      return 'last' in this.ending ? Promise.resolve(this.ending.last) : Promise.reject(this.ending.error);
    const signal = options.signal;
    if (signal?.aborted) return Promise.reject(abortedError(signal));
    return new Promise((resolve, reject) => {
      const w: Waiter<T> = { resolve, reject, timer: null };
      if (signal) {
        // Only for a receive that can be aborted: its listener goes once the receive is settled, either way.
        const onAbort = (): void => {
          const i = this.waiters.indexOf(w);
          if (i >= 0) this.waiters.splice(i, 1);
          if (w.timer) clearTimeout(w.timer);
          reject(abortedError(signal));
        };
        signal.addEventListener('abort', onAbort, { once: true });
        w.resolve = (item) => {
          signal.removeEventListener('abort', onAbort);
          resolve(item);
        };
        w.reject = (err) => {
          signal.removeEventListener('abort', onAbort);
          reject(err);
        };
      }
      if (options.timeout !== undefined && options.timeout <= MAX_TIMER_MS) {
        // (A timeout too long for a timer, Infinity say, means none.)
        const ms = options.timeout;
        w.timer = setTimeout(() => {
          const i = this.waiters.indexOf(w);
          if (i >= 0) this.waiters.splice(i, 1);
          w.reject(new ChanError('timeout', `nothing received within ${ms} ms`));
        }, ms);
      }
      if (this.waiters === EMPTY) this.waiters = [];
      this.waiters.push(w);
    });
  }

  private take(): T {
    const item = this.items[this.head] as T;
    if (this.weights !== EMPTY) this.weighed -= this.weights[this.head] as number;
    this.items[this.head++] = undefined as T;
    if (this.head === this.items.length) {
      // Empty again: the arrays go (an idle connection holds none, whatever it was sent before).
      this.items = EMPTY as T[];
      this.weights = EMPTY as number[];
      this.head = 0;
    } else if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      if (this.weights !== EMPTY) this.weights = this.weights.slice(this.head);
      this.head = 0;
    }
    return item;
  }

  /**
   * The items, then the end. A plain iterator object rather than an async generator: a handler's `for await` costs
   * one promise per message, and an idle connection holds no generator.
   */
  [Symbol.asyncIterator](): AsyncIterator<T> {
    return this.iterate(AS_IS as InboxReader<T, T>);
  }

  /** Iterates with `reader[TAKEN]` applied to each item as it is taken (one promise per item, no wrapping iterator). */
  iterate<U>(reader: InboxReader<T, U>): AsyncIterator<U> {
    if (this.iterating) throw new ChanError('usage', 'this inbox is already being iterated; one reader only');
    this.iterating = true;
    return new InboxIterator(this, reader);
  }

  /** @internal A reader stopped (break, or the end): another may start. */
  iterationEnded(): void {
    this.iterating = false;
  }

  /**
   * @internal Takes the next queued item (the end's last item included, once, when it was queued), or undefined when
   * none is queued: for items that are never undefined (a behaviour's mailbox).
   */
  shift(): T | undefined {
    return this.head < this.items.length ? this.take() : undefined;
  }

  /** @internal Takes the next queued item, if there is one (the iterator's fast path). */
  takeQueued(): { item: T } | null {
    return this.head < this.items.length ? { item: this.take() } : null;
  }

  /**
   * @internal The iterator waits for the next item in the reader's place, if nobody waits before it (then it is
   * served first); false if it must queue as a receive.
   */
  waitFirst(it: InboxIterator<T, unknown>): boolean {
    if (this.reader !== null || this.waiters.length > 0) return false;
    this.reader = it;
    return true;
  }

  /** @internal The end the inbox was given, if any. */
  get endedWith(): { last: T } | { error: Error } | null {
    return this.ending;
  }
}

/** The method an inbox's reader is called by (a symbol: not a name a handler's `mm` shows). */
export const TAKEN: unique symbol = Symbol('taken');

/** What an iterator makes of each item it takes (the mailbox counts it as received). */
export interface InboxReader<T, U> {
  [TAKEN](item: T): U;
}

const AS_IS: InboxReader<unknown, unknown> = { [TAKEN]: (x) => x };

const DONE: IteratorResult<never> = Object.freeze({ done: true, value: undefined });

/**
 * A `for await` over an inbox. While it waits for an item it holds one promise and its two settling functions, kept
 * here (no waiter object, no promise chained on a receive): the state of every idle connection's handler.
 */
class InboxIterator<T, U> implements AsyncIterator<U> {
  private finished = false;
  private resolveNext: ((r: IteratorResult<U>) => void) | null = null;
  private rejectNext: ((err: unknown) => void) | null = null;

  constructor(
    private readonly inbox: Inbox<T>,
    private readonly reader: InboxReader<T, U>,
  ) {}

  next(): Promise<IteratorResult<U>> {
    if (this.finished) return Promise.resolve(DONE);
    // An item already waiting is handed over at once: one resolved promise, no waiter.
    const queued = this.inbox.takeQueued();
    if (queued) return this.settled(queued.item, null);
    const e = this.inbox.endedWith;
    if (e) return 'last' in e ? this.settled(e.last, null) : this.settled(undefined, e.error);
    if (this.resolveNext === null && this.inbox.waitFirst(this as InboxIterator<T, unknown>))
      return new Promise((resolve, reject) => {
        this.resolveNext = resolve;
        this.rejectNext = reject;
      });
    // Behind a receive that waits (or a next() not yet answered): in line with them.
    return this.inbox.receive().then(
      (item) => this.result(item),
      (err: unknown) => this.ended(err),
    );
  }

  /** An answer for `next()` at once: what the reader makes of the item (or the end), or its throw as a rejection. */
  private settled(item: T | undefined, error: Error | null): Promise<IteratorResult<U>> {
    try {
      return Promise.resolve(error ? this.ended(error) : this.result(item as T));
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /** @internal The inbox answers the waiting `next()`: an item, or (with `error`) the end it was given. */
  answer(item: T | undefined, error: Error | null = null): void {
    const resolve = this.resolveNext as (r: IteratorResult<U>) => void;
    const reject = this.rejectNext as (err: unknown) => void;
    this.resolveNext = this.rejectNext = null;
    try {
      resolve(error ? this.ended(error) : this.result(item as T));
    } catch (err) {
      reject(err);
    }
  }

  private ended(err: unknown): IteratorResult<U> {
    const e = this.inbox.endedWith;
    if (e && 'error' in e && err === e.error) {
      this.finished = true;
      this.inbox.iterationEnded();
      return DONE;
    }
    throw err;
  }

  private result(item: T): IteratorResult<U> {
    const e = this.inbox.endedWith;
    if (e && 'last' in e && item === e.last) {
      this.finished = true;
      this.inbox.iterationEnded();
    }
    return { done: false, value: this.reader[TAKEN](item) };
  }

  return(): Promise<IteratorResult<U>> {
    this.finished = true;
    this.inbox.iterationEnded();
    return Promise.resolve(DONE);
  }
}

/** The error of a call its AbortSignal ended: `aborted`, with the signal's reason as its cause. */
export function abortedError(signal: AbortSignal): ChanError {
  return new ChanError('aborted', 'aborted by its AbortSignal', { cause: signal.reason });
}
