/** The fixed limits of docs/OPTIONS.md ("Fixed limits"), each crossed. */
import { readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import test from 'ava';
import { loadHistory, HISTORY_LINES } from '../src/cli/session.js';
import { connect } from '../src/client.js';
import { msgpackCodec } from '../src/codec/index.js';
import { ChanError } from '../src/errors.js';
import { FrameParser, frame } from '../src/frame.js';
import { CLOSE_LINGER_MS } from '../src/mm.js';
import { fromWire, toWire } from '../src/protocol.js';
import { MAX_PARSE_DEPTH, TermSyntaxError, parseTerm } from '../src/term/index.js';
import { RawClient, service, testServer, tempDir } from './helpers.js';

test('term text nested deeper than 1000 levels is refused, not a stack overflow', (t) => {
  t.notThrows(() => parseTerm('['.repeat(MAX_PARSE_DEPTH) + ']'.repeat(MAX_PARSE_DEPTH)));
  const err = t.throws(() => parseTerm('['.repeat(MAX_PARSE_DEPTH + 2) + ']'.repeat(MAX_PARSE_DEPTH + 2)), {
    instanceOf: TermSyntaxError,
  });
  t.regex(err?.message ?? '', /nested deeper than 1000 levels/);
});

/** A server that challenges with `iterations` and nothing more. */
async function challenger(iterations: number): Promise<{ port: number; close: () => void }> {
  const codec = msgpackCodec({ maxDepth: 32 });
  const server = net.createServer((socket) => {
    socket.on('error', () => {});
    const parser = new FrameParser(1 << 16, (p) => {
      const m = fromWire(codec.decode(p));
      if (m.kind !== 'startService') return;
      const nonce = /r=([^,]+)/.exec(m.scram ?? '')?.[1] ?? '';
      socket.write(
        frame(codec.encode(toWire({ kind: 'challenge', scram: `r=${nonce}x,s=QUJDREVGR0g=,i=${iterations}` }), 0)),
      );
    });
    socket.on('data', (c: Buffer) => parser.push(c));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { port: (server.address() as net.AddressInfo).port, close: () => server.close() };
}

test('a client refuses a server asking for fewer than 4096 or more than 1,000,000 iterations (badServer)', async (t) => {
  for (const i of [1000, 2_000_000]) {
    const s = await challenger(i);
    t.teardown(s.close);
    const err = await t.throwsAsync(connect('127.0.0.1', s.port, 'x', 'secret'), { instanceOf: ChanError });
    t.is(err?.code, 'badServer', String(i));
    t.regex(err?.message ?? '', new RegExp(`asks for ${i} iterations`));
  }
});

test('the client’s maxFrameSize holds both ways: the server refuses to send more, and a server that sends more is cut off', async (t) => {
  const server = await testServer([
    service('big', async (mm) => {
      mm.push('x'.repeat(5000)); // the client said 1024 in its startService: this throws frameTooLarge here
      await mm.receive();
    }),
  ]);
  t.teardown(() => server.close());
  const ch = await connect('127.0.0.1', server.port, 'big', null, null, { maxFrameSize: 1024 });
  const info = await ch.closed;
  t.is(info.reason, 'handlerError');
  t.regex(info.text, /5\d{3} bytes is over the peer's max_frame_size of 1024/);

  // A server that ignores the client's limit.
  const codec = msgpackCodec({ maxDepth: 32 });
  const rogue = net.createServer((socket) => {
    socket.on('error', () => {});
    socket.once('data', () => {
      socket.write(
        frame(codec.encode(toWire({ kind: 'ack', version: 1, maxFrameSize: 1 << 20, heartbeatInterval: 0 }), 0)),
      );
      socket.write(frame(codec.encode(toWire({ kind: 'push', data: 'y'.repeat(5000) }), 0)));
    });
  });
  await new Promise<void>((resolve) => rogue.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    rogue.close();
  });
  const victim = await connect('127.0.0.1', (rogue.address() as net.AddressInfo).port, 'x', null, null, {
    maxFrameSize: 1024,
  });
  const closed = await victim.closed;
  t.is(closed.reason, 'frameTooLarge');
  t.is(closed.by, 'local');
});

test(`a side that closed waits ${CLOSE_LINGER_MS} ms for its peer, then destroys the socket`, async (t) => {
  const server = await testServer([service('quit', async (mm) => void (await mm.receive()))]);
  t.teardown(() => server.close());
  const c = await RawClient.started(server.port, 'quit');
  c.socket.pause(); // it never reads the close, so it never closes its side
  const started = Date.now();
  c.send({ kind: 'cast', data: 'bye' }); // the handler returns: the server closes
  while (server.stats().connections > 0) await new Promise((r) => setTimeout(r, 20)); // gone once destroyed
  const took = Date.now() - started;
  t.true(took >= CLOSE_LINGER_MS - 100 && took < CLOSE_LINGER_MS + 2000, `${took} ms`);
});

test(`the session history keeps the last ${HISTORY_LINES} lines`, (t) => {
  const file = path.join(tempDir(), 'h');
  writeFileSync(file, `${Array.from({ length: HISTORY_LINES + 50 }, (_, i) => `line ${i}`).join('\n')}\n`);
  const loaded = loadHistory(file);
  t.is(loaded.length, HISTORY_LINES);
  t.is(loaded[0], `line ${HISTORY_LINES + 49}`); // newest first, as readline wants
  t.is(
    readFileSync(file, 'utf8')
      .split('\n')
      .filter((l) => l !== '').length,
    HISTORY_LINES,
  );
});

test('a worker pool is 1 to 64 workers, and only with worker isolation', async (t) => {
  const { parseConfig } = await import('../src/config/load.js');
  const bad = (opts: string): string => {
    try {
      parseConfig(`{port, 1}.\n{service, s, password, none, mfa, m, f, a${opts}}.`, { env: {} });
      return 'accepted';
    } catch (err) {
      return (err as Error).message;
    }
  };
  t.regex(bad(', {isolation, worker}, {workers, 65}'), /workers must be a whole number from 1 to 64/);
  t.regex(bad(', {workers, 2}'), /workers needs \{isolation, worker\}/);
  t.regex(bad(', {isolation, thread}'), /isolation is inline or worker/);
  t.is(bad(', {isolation, worker}, {workers, 64}'), 'accepted');
});
