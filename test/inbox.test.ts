/**
 * The inbox a handler reads (and a client's pushes): the order in which waiting readers are served when a `for await`
 * and `receive` calls wait at once, how each kind of end reaches a reader that waits, and that an inbox emptied and
 * filled again keeps its order and its byte count; and how the mailbox in front of it ends its handler's process.
 */
import test from 'ava';
import { ChanError } from '../src/errors.js';
import type { CloseReason } from '../src/errors.js';
import { Inbox, TAKEN } from '../src/inbox.js';
import { silentLogger } from '../src/log.js';
import { LIB_CHAN } from '../src/protocol.js';
import {
  type HandlerExit,
  Mailbox,
  type MailboxOutput,
  type ServiceContext,
  UNLIMITED_MAILBOX,
} from '../src/runtime.js';

/** The handlers here use no ctx. */
const NO_CTX = {} as ServiceContext;

/** Lets every promise callback already due run. */
const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

test('a for-await waiting first is served first; a receive that waits after it gets the next item', async (t) => {
  const inbox = new Inbox<string>();
  const it = inbox[Symbol.asyncIterator]();
  const first = it.next();
  const second = inbox.receive();
  inbox.put('a');
  inbox.put('b');
  t.deepEqual(await first, { done: false, value: 'a' });
  t.is(await second, 'b');
});

test('a receive waiting first is served before a for-await that waits after it', async (t) => {
  const inbox = new Inbox<string>();
  const first = inbox.receive();
  const it = inbox[Symbol.asyncIterator]();
  const second = it.next();
  const third = inbox.receive();
  for (const x of ['a', 'b', 'c']) inbox.put(x);
  t.is(await first, 'a');
  t.deepEqual(await second, { done: false, value: 'b' });
  t.is(await third, 'c');
});

test("next() called again before the first is answered: each gets its own item, in the calls' order", async (t) => {
  const inbox = new Inbox<number>();
  const it = inbox[Symbol.asyncIterator]();
  const calls = [it.next(), it.next(), it.next()];
  for (const x of [1, 2, 3]) inbox.put(x);
  t.deepEqual(
    (await Promise.all(calls)).map((r) => r.value),
    [1, 2, 3],
  );
});

test('an end with a last item reaches a waiting for-await, which then finishes; receive returns it again', async (t) => {
  const inbox = new Inbox<string>();
  const seen: string[] = [];
  const loop = (async () => {
    for await (const x of inbox) seen.push(x);
  })();
  inbox.put('a');
  await settle();
  inbox.end({ last: 'closed' });
  await loop;
  t.deepEqual(seen, ['a', 'closed']);
  t.is(await inbox.receive(), 'closed');
});

test('an end with an error finishes a waiting for-await without throwing; receive rejects with it', async (t) => {
  const inbox = new Inbox<string>();
  const it = inbox[Symbol.asyncIterator]();
  const waiting = it.next();
  const queuedBehind = inbox.receive();
  inbox.end({ error: () => new ChanError('closed', 'the channel closed') });
  t.deepEqual(await waiting, { done: true, value: undefined });
  await t.throwsAsync(queuedBehind, { instanceOf: ChanError, message: 'the channel closed' });
  await t.throwsAsync(inbox.receive(), { message: 'the channel closed' });
  // Finished: another reader may start, and is told the same end.
  t.deepEqual(await inbox[Symbol.asyncIterator]().next(), { done: true, value: undefined });
});

test('what the reader makes of an item is its value; if that throws, next() rejects with it', async (t) => {
  const inbox = new Inbox<number>();
  const it = inbox.iterate({
    [TAKEN]: (x: number) => {
      if (x < 0) throw new Error('negative');
      return x * 10;
    },
  });
  const ok = it.next();
  inbox.put(4);
  t.deepEqual(await ok, { done: false, value: 40 });
  const bad = it.next();
  inbox.put(-1);
  await t.throwsAsync(bad, { message: 'negative' });
  // Queued, or the last item of an ended inbox: a rejection too, not a throw from next().
  inbox.put(-2);
  await t.throwsAsync(it.next(), { message: 'negative' });
  inbox.end({ last: -3 });
  await t.throwsAsync(it.next(), { message: 'negative' });
});

test('an inbox emptied and filled again keeps the order and the bytes of what waits', async (t) => {
  const inbox = new Inbox<number>();
  for (let round = 0; round < 3; round++) {
    for (let i = 0; i < 5; i++) t.is(inbox.put(round * 10 + i, i + 1), i + 1);
    t.is(inbox.size, 5);
    t.is(inbox.bytes, 15);
    const got: number[] = [];
    for (let i = 0; i < 5; i++) got.push(await inbox.receive());
    t.deepEqual(
      got,
      [0, 1, 2, 3, 4].map((i) => round * 10 + i),
    );
    t.is(inbox.size, 0);
    t.is(inbox.bytes, 0);
  }
  // Items queued unweighed after weighed ones were taken count nothing.
  inbox.put(7);
  t.is(inbox.bytes, 0);
  t.is(inbox.drop(), 0);
  t.is(inbox.size, 0);
});

/** A middle-man that records its closes, and throws on the first if told to. */
function output(throwOnNormal: boolean): MailboxOutput & { closes: string[] } {
  const closes: string[] = [];
  return {
    closes,
    send: () => true,
    close(reason: CloseReason) {
      closes.push(reason);
      if (throwOnNormal && reason === 'normal') throw new Error('the close failed');
    },
    closed: null,
    pauseReading: () => {},
    resumeReading: () => {},
    drain: () => Promise.resolve(),
    dialect: LIB_CHAN,
  };
}

test("a handler's end reaches the watcher and done, in order, after the close; a close that throws is a crash", async (t) => {
  for (const [throwOnNormal, handler, expected] of [
    [false, async () => {}, { ok: true }],
    [true, async () => {}, { ok: false, text: 'the close failed' }],
    [
      false,
      () => {
        throw new Error('at once');
      },
      { ok: false, text: 'at once' },
    ],
  ] as const) {
    const out = output(throwOnNormal);
    const told: HandlerExit[] = [];
    const mailbox = new Mailbox(
      out,
      1,
      's',
      'peer',
      { log: silentLogger },
      UNLIMITED_MAILBOX,
      null,
      { handler, argsC: null, argsS: null, ctx: NO_CTX },
      {
        exited: (exit) => told.push(exit),
      },
    );
    mailbox.start();
    t.deepEqual(await mailbox.done, expected);
    t.deepEqual(told, [expected]);
    t.deepEqual(out.closes, expected.ok ? ['normal'] : throwOnNormal ? ['normal', 'handlerError'] : ['handlerError']);
  }
});
