import test from 'ava';
import { connect, type Channel } from '../src/client.js';
import { ChanError } from '../src/errors.js';
import { behaviour, type ChanClosedMessage, type Handler, type MailboxMessage } from '../src/runtime.js';
import { atom, formatTerm, tuple } from '../src/term/index.js';
import { RawClient, capturedLog, crash, echo, service, testServer } from './helpers.js';

async function open(port: number, name: string, argsC: unknown = null): Promise<Channel> {
  return connect('127.0.0.1', port, name, null, argsC as never);
}

function rejection(p: Promise<unknown>): Promise<ChanError> {
  return p.then(
    () => {
      throw new Error('expected a rejection');
    },
    (e: unknown) => {
      if (!(e instanceof ChanError)) throw e;
      return e;
    },
  );
}

test('the mailbox yields {chan, MM, X} in order, then {chan_closed, MM} with the reason', async (t) => {
  let seen: MailboxMessage[] = [];
  const done = new Promise<void>((resolve) => {
    const handler: Handler = async (mm) => {
      for await (const m of mm) seen.push(m);
      resolve();
    };
    void testServer([service('s', handler)]).then(async (server) => {
      t.teardown(() => server.close());
      const ch = await open(server.port, 's');
      ch.cast(1);
      ch.cast(tuple(atom('two')));
      ch.cast('three');
      await ch.close();
    });
  });
  await done;
  t.deepEqual(
    seen.slice(0, 3).map((m) => (m.type === 'chan' ? formatTerm(m.data) : m.type)),
    ['1', '{two}', '"three"'],
  );
  const last = seen[3] as ChanClosedMessage;
  t.is(last.type, 'chan_closed');
  t.is(last.reason, 'normal');
  t.is(seen.length, 4);
  seen = [];
});

test('a handler that answers each request with one send, in order, is a correct rpc server', async (t) => {
  const server = await testServer([service('echo', echo)]);
  t.teardown(() => server.close());
  const ch = await open(server.port, 'echo');
  const answers = await Promise.all(Array.from({ length: 200 }, (_, i) => ch.rpc(i)));
  t.deepEqual(
    answers,
    Array.from({ length: 200 }, (_, i) => i),
  );
  await ch.close();
});

test('an rpc that timed out never takes the answer meant for the next one', async (t) => {
  const slowThenFast: Handler = async (mm) => {
    for await (const m of mm) {
      if (m.type === 'chan_closed') return;
      if (m.data === 'slow') await new Promise((r) => setTimeout(r, 300));
      mm.send(`answer to ${String(m.data)}`);
    }
  };
  const server = await testServer([service('s', slowThenFast)]);
  t.teardown(() => server.close());
  const ch = await open(server.port, 's');
  t.is((await rejection(ch.rpc('slow', { timeout: 50 }))).code, 'timeout');
  t.is(await ch.rpc('fast'), 'answer to fast');
  await ch.close();
});

test('pushes are never taken for answers, and send with no rpc waiting is a push', async (t) => {
  const greeter: Handler = async (mm) => {
    mm.send('welcome'); // no rpc received yet: a push
    for await (const m of mm) {
      if (m.type === 'chan_closed') return;
      mm.push('before the answer');
      if (m.type === 'chan') mm.reply(m, 'the answer');
    }
  };
  const server = await testServer([service('s', greeter)]);
  t.teardown(() => server.close());
  const ch = await open(server.port, 's');
  t.is(await ch.rpc('q'), 'the answer');
  t.is(await ch.receive(), 'welcome');
  t.is(await ch.receive(), 'before the answer');
  await ch.close();
});

test('a cast received before an rpc does not steal its answer', async (t) => {
  // The book's kvs answers {lookup, K} with send: as a cast, that must be a push, not the answer to a later rpc.
  const server = await testServer([{ name: 'kvs', secret: null, module: 'mod_name_server', function: 'start_me_up' }]);
  t.teardown(() => server.close());
  const ch = await open(server.port, 'kvs');
  await ch.rpc(tuple(atom('store'), atom('a'), 'A'));
  await ch.rpc(tuple(atom('store'), atom('b'), 'B'));
  ch.cast(tuple(atom('lookup'), atom('a')));
  t.is(formatTerm(await ch.rpc(tuple(atom('lookup'), atom('b')))), '{ok,"B"}');
  t.is(formatTerm(await ch.receive()), '{ok,"A"}');
  await ch.close();
});

test('mm.close() ends the conversation: the client sees normal, pending rpcs reject with closed', async (t) => {
  const closer: Handler = async (mm) => {
    await mm.receive();
    mm.close();
  };
  const server = await testServer([service('s', closer)]);
  t.teardown(() => server.close());
  const ch = await open(server.port, 's');
  const err = await rejection(ch.rpc('bye'));
  t.is(err.code, 'closed');
  t.is(err.reason, 'normal');
  t.is((await ch.closed).reason, 'normal');
  t.is((await ch.closed).by, 'peer');
  t.is((await rejection(ch.rpc('again'))).code, 'closed');
  t.throws(() => ch.cast('again'), { instanceOf: ChanError, message: /channel closed/ });
});

test('a handler that returns ends the connection normally', async (t) => {
  const server = await testServer([service('s', async () => {})]);
  t.teardown(() => server.close());
  const ch = await open(server.port, 's');
  const info = await ch.closed;
  t.is(info.reason, 'normal');
  t.regex(info.text, /handler returned/);
});

test('a crashing handler closes only its own connection, with its message and not its stack', async (t) => {
  const { logger, lines } = capturedLog();
  const server = await testServer([service('crash', crash), service('echo', echo)], { logger });
  t.teardown(() => server.close());
  const bystanders = await Promise.all([open(server.port, 'echo'), open(server.port, 'echo')]);
  const victim = await open(server.port, 'crash');
  const err = await rejection(victim.rpc('poison'));
  t.is(err.reason, 'handlerError');
  const info = await victim.closed;
  t.is(info.reason, 'handlerError');
  t.is(info.text, 'poison message');
  t.false(info.text.includes('at '));
  for (const [i, ch] of bystanders.entries()) t.is(await ch.rpc(`still here ${i}`), `still here ${i}`);
  const crashLine = lines
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .find((l) => l['msg'] === 'handler crashed');
  t.truthy(crashLine);
  t.is(crashLine?.['service'], 'crash');
  t.regex(String((crashLine?.['err'] as { stack?: string })?.stack), /poison message\n\s+at /);
  await Promise.all(bystanders.map((c) => c.close()));
});

test('a handler that is not async: its throw is a crash, its return a normal end', async (t) => {
  const server = await testServer([
    service('throws', () => {
      throw new Error('thrown before any await');
    }),
    service('returns', () => undefined),
  ]);
  t.teardown(() => server.close());
  const thrown = await (await open(server.port, 'throws')).closed;
  t.deepEqual([thrown.reason, thrown.text], ['handlerError', 'thrown before any await']);
  const returned = await (await open(server.port, 'returns')).closed;
  t.deepEqual([returned.reason, returned.text], ['normal', 'the handler returned']);
});

test('a handler crash that is not an Error still closes with handlerError', async (t) => {
  const server = await testServer([service('s', async () => Promise.reject('a string'))]);
  t.teardown(() => server.close());
  const ch = await open(server.port, 's');
  t.deepEqual({ ...(await ch.closed), by: undefined }, { reason: 'handlerError', text: 'a string', by: undefined });
});

test('receive({timeout}) rejects with timeout when nothing arrives', async (t) => {
  let outcome = '';
  const waiter: Handler = async (mm) => {
    try {
      await mm.receive({ timeout: 30 });
    } catch (err) {
      outcome = (err as ChanError).code;
    }
  };
  const server = await testServer([service('s', waiter)]);
  t.teardown(() => server.close());
  const ch = await open(server.port, 's');
  await ch.closed;
  t.is(outcome, 'timeout');
});

test('after chan_closed, receive returns chan_closed again; two iterations at once throw', async (t) => {
  const results: string[] = [];
  const h: Handler = async (mm) => {
    const first = await mm.receive();
    const again = await mm.receive();
    results.push(first.type, again.type);
    const it = mm[Symbol.asyncIterator](); // a reader that has not finished...
    try {
      await mm[Symbol.asyncIterator]().next(); // ...and a second one at the same time
    } catch (err) {
      results.push((err as ChanError).code);
    }
    await it.next();
  };
  const server = await testServer([service('s', h)]);
  t.teardown(() => server.close());
  const ch = await open(server.port, 's');
  await ch.close();
  await server.close();
  t.deepEqual(results, ['chan_closed', 'chan_closed', 'usage']);
});

test('reply() to a cast is a usage error in the handler; the connection carries on', async (t) => {
  const h: Handler = async (mm) => {
    for await (const m of mm) {
      if (m.type === 'chan_closed') return;
      try {
        mm.reply(m, 'x');
      } catch (err) {
        mm.push((err as ChanError).code);
      }
    }
  };
  const server = await testServer([service('s', h)]);
  t.teardown(() => server.close());
  const ch = await open(server.port, 's');
  ch.cast('c');
  t.is(await ch.receive(), 'usage');
  t.is(await ch.rpc('r'), 'x');
  await ch.close();
});

test('ArgsC, ArgsS and the service state reach the handler', async (t) => {
  let starts = 0;
  const h: Handler<{ hits: number }> = async (mm, argsC, argsS, ctx) => {
    ctx.state.hits++;
    mm.send(tuple(argsC, argsS, ctx.state.hits, ctx.service));
    await mm.receive();
  };
  const server = await testServer([
    service('s', h as Handler, null, {
      args: atom('notUsed'),
      start: () => {
        starts++;
        return { hits: 0 };
      },
    }),
  ]);
  t.teardown(() => server.close());
  const a = await open(server.port, 's', 'client args');
  t.is(formatTerm(await a.receive()), '{"client args",notUsed,1,"s"}');
  const b = await open(server.port, 's', null);
  t.is(formatTerm(await b.receive()), '{null,notUsed,2,"s"}');
  t.is(starts, 1);
  await Promise.all([a.close(), b.close()]);
});

test('a value that cannot be encoded is refused where it is sent, and nothing breaks', async (t) => {
  const h: Handler = async (mm) => {
    for await (const m of mm) {
      if (m.type === 'chan_closed') return;
      try {
        mm.send(() => 1);
      } catch (err) {
        mm.send((err as ChanError).code);
      }
    }
  };
  const server = await testServer([service('s', h)]);
  t.teardown(() => server.close());
  const ch = await open(server.port, 's');
  t.is(await ch.rpc('go'), 'badTerm');
  t.throws(() => ch.cast(new Date()), { instanceOf: ChanError, message: /Date is not a term/ });
  t.is((await rejection(ch.rpc(Symbol('s')))).code, 'badTerm');
  t.is(await ch.rpc('again'), 'badTerm');
  await ch.close();
});

test('a message over the server limit is refused by the client before sending', async (t) => {
  const server = await testServer([service('echo', echo)], { maxFrameSize: 1000 });
  t.teardown(() => server.close());
  const ch = await open(server.port, 'echo');
  t.is((await rejection(ch.rpc('x'.repeat(2000)))).code, 'frameTooLarge');
  t.is(await ch.rpc('small'), 'small');
  await ch.close();
});

test('after the handshake: an oversized frame or undecodable payload closes only that connection', async (t) => {
  const server = await testServer([service('echo', echo)], { maxFrameSize: 1000 });
  t.teardown(() => server.close());
  const good = await open(server.port, 'echo');
  for (const [bytes, reason] of [
    [Buffer.from([0, 0, 0x10, 0]), 'frameTooLarge'],
    [Buffer.from([0, 0, 0, 2, 0xc1, 0xc1]), 'protocolError'],
    [Buffer.from([0, 0, 0, 3, 0x92, 0xa4, 0x63]), 'protocolError'],
  ] as const) {
    const c = await RawClient.started(server.port, 'echo');
    c.write(bytes);
    t.is((await c.closeMessage())?.reason, reason);
    t.is(await good.rpc('fine'), 'fine');
  }
  await good.close();
});

test('a client may not send server messages after the handshake', async (t) => {
  const server = await testServer([service('echo', echo)]);
  t.teardown(() => server.close());
  const c = await RawClient.started(server.port, 'echo');
  c.send({ kind: 'reply', id: 1, data: 'x' });
  const close = await c.closeMessage();
  t.is(close?.reason, 'protocolError');
  t.regex(close?.text ?? '', /may not send reply/);
});

test('server.close() tells every client shutdown and handlers see chan_closed', async (t) => {
  const reasons: string[] = [];
  const h: Handler = async (mm) => {
    for await (const m of mm) if (m.type === 'chan_closed') reasons.push(m.reason);
  };
  const server = await testServer([service('s', h)]);
  const chs = await Promise.all([open(server.port, 's'), open(server.port, 's')]);
  await server.close();
  for (const ch of chs) t.is((await ch.closed).reason, 'shutdown');
  t.deepEqual(reasons, ['shutdown', 'shutdown']);
  t.is(server.connectionCount, 0);
});

test('a handler error with a huge message still reaches the client as handlerError, cut to 1024 characters', async (t) => {
  const server = await testServer([service('s', async () => Promise.reject(new Error('x'.repeat(2_000_000))))]);
  t.teardown(() => server.close());
  const ch = await open(server.port, 's');
  const info = await ch.closed;
  t.is(info.reason, 'handlerError');
  t.is(info.text.length, 1024);
});

test('a for-await that breaks lets another start; two at once still throw', async (t) => {
  const server = await testServer([
    service('p', async (mm) => {
      for (let i = 0; i < 4; i++) mm.push(i);
      await mm.receive();
    }),
  ]);
  t.teardown(() => server.close());
  const ch = await connect('127.0.0.1', server.port, 'p', null);
  for await (const x of ch) if (x === 1) break;
  const it = ch[Symbol.asyncIterator]();
  t.is((await it.next()).value, 2);
  t.throws(() => ch[Symbol.asyncIterator](), { instanceOf: ChanError, message: /already being iterated/ });
  await ch.close();
});

test('a handler that closes before its first await still gets chan_closed: its mailbox is the sink before it runs', async (t) => {
  let seen: (type: string) => void;
  const received = new Promise<string>((resolve) => (seen = resolve));
  const handler: Handler = async (mm) => {
    mm.close(); // synchronously, before any await
    seen((await mm.receive({ timeout: 5000 })).type);
  };
  const server = await testServer([service('s', handler)]);
  t.teardown(() => server.close());
  const ch = await open(server.port, 's');
  t.is((await ch.closed).reason, 'normal');
  t.is(await received, 'chan_closed');
});

test('a behaviour: a throw amid a batch ends the process there; what followed in the batch is never handled', async (t) => {
  const handled: string[] = [];
  const b = behaviour({
    handle: (m) => {
      handled.push(String(m.data));
      if (m.data === 'crash') throw new Error('crashed amid a batch');
    },
  });
  const server = await testServer([service('b', b), service('echo', echo)]);
  t.teardown(() => server.close());
  const bystander = await open(server.port, 'echo');
  const ch = await open(server.port, 'b');
  for (const x of ['a', 'crash', 'b', 'c']) ch.cast(x); // one write: one chunk on the server's side
  const info = await ch.closed;
  t.deepEqual([info.reason, info.text], ['handlerError', 'crashed amid a batch']);
  t.deepEqual(handled, ['a', 'crash']);
  t.is(await bystander.rpc('still here'), 'still here');
  await bystander.close();
});

test("a behaviour's handler called as a plain function is the same process as an async function", async (t) => {
  const closed: string[] = [];
  const inner = behaviour<unknown, { n: number }>({
    init: () => ({ n: 0 }),
    handle: (m, mm, _ctx, state) => {
      if (m.data === 'crash') throw new Error('crashed inside');
      state.n++;
      mm.send(tuple(m.data, state.n));
    },
    closed: (m) => void closed.push(m.reason),
  });
  // A handler of one's own that hands its connection on after an await: the mailbox runs it as any async function.
  const outer: Handler = async (mm, argsC, argsS, ctx) => {
    await Promise.resolve();
    return inner(mm, argsC, argsS, ctx);
  };
  const server = await testServer([service('o', outer)]);
  t.teardown(() => server.close());
  const ch = await open(server.port, 'o');
  t.is(formatTerm(await ch.rpc('x')), '{"x",1}');
  t.is(formatTerm(await ch.rpc('y')), '{"y",2}');
  await ch.close();
  const victim = await open(server.port, 'o');
  t.is((await rejection(victim.rpc('crash'))).reason, 'handlerError');
  t.is((await victim.closed).text, 'crashed inside');
  t.deepEqual(closed, ['normal']);
});

test("a behaviour whose handle waits: its client's reading stops at mailbox_high_water, and nothing is lost", async (t) => {
  let open_: () => void = () => {};
  const gate = new Promise<void>((resolve) => (open_ = resolve));
  let count = 0;
  const b = behaviour({
    handle: (m, mm) => {
      if (m.data === 'count') return void mm.send(count);
      count++;
      if (count === 1) return gate; // holds every later message in the mailbox
      return undefined;
    },
  });
  const server = await testServer([service('g', b)], { mailboxHighWater: 100 });
  t.teardown(() => server.close());
  const ch = await connect('127.0.0.1', server.port, 'g', null, null, { rpcTimeout: 30_000 });
  for (let i = 0; i < 5000; i++) ch.cast(i);
  const counted = ch.rpc('count');
  while (server.stats().queuedMessages < 100) await new Promise((r) => setTimeout(r, 5));
  await new Promise((r) => setTimeout(r, 50)); // time to read more, if reading had not stopped
  t.is(server.stats().queuedMessages, 100);
  open_();
  t.is(await counted, 5000);
  t.is(server.stats().queuedMessages, 0);
  t.is(server.stats().heldBytes, 0);
  await ch.close();
});

test('a behaviour at shutdown: closed gets chan_closed with shutdown, and the server closes without waiting', async (t) => {
  const reasons: string[] = [];
  const b = behaviour({ handle: () => undefined, closed: (m) => void reasons.push(m.reason) });
  // A process that did not end would hold close() for a minute: past the test's own timeout.
  const server = await testServer([service('b', b)], { shutdownTimeout: 60_000 });
  const chs = await Promise.all([open(server.port, 'b'), open(server.port, 'b')]);
  chs[0]?.cast('busy once');
  await server.close();
  for (const ch of chs) t.is((await ch.closed).reason, 'shutdown');
  t.deepEqual(reasons, ['shutdown', 'shutdown']);
});
