/**
 * The original lib_chan protocol, both ways, against a real Erlang VM (Debian's erlang-nox): escripts written for
 * these tests play the book's client against our erlang_port (test/erlang/book_client.escript) and the book's server
 * against our client and `chan --erlang` (test/erlang/book_server.escript). The hostile-input cases of the main port
 * run against the Erlang port too, beside a well-behaved client.
 */
import { once } from 'node:events';
import { deflateSync } from 'node:zlib';
import test from 'ava';
import { makeVerifier } from '../src/auth/scram.js';
import { TAG, decodeEtf, encodeEtf } from '../src/codec/etf.js';
import { ChanError } from '../src/errors.js';
import { connect } from '../src/client.js';
import { MIN_CHALLENGE_LENGTH, challengeResponse, originalClientHandshake } from '../src/original.js';
import type { WireMessage } from '../src/protocol.js';
import { Atom, Tuple, atom, formatTerm, isTuple, tuple, type Term } from '../src/term/index.js';
import { run, serve } from './cli-helpers.js';
import { RawErlang, hasErlang, runEscript, startEscript, stop } from './erlang-helpers.js';
import {
  BOOK_SERVICE,
  CLOSED_FIELDS,
  besideBystander,
  capturedLog,
  echo,
  lineFields,
  refusal,
  service,
  testServer,
} from './helpers.js';

const u32 = (n: number): number[] => [(n >>> 24) & 0xff, (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff];
const term = (frame: Buffer): string => formatTerm(decodeEtf(frame, 32));
const ERLANG = { erlangPort: 0 };

/** The book's client (our escript) against `port`: what it prints. */
async function bookClient(port: number, svc: string, secret: string, mode: string): Promise<string> {
  const out = await runEscript('book_client', [String(port), svc, secret, mode]);
  if (out.code !== 0) throw new Error(`book_client ended with ${out.code}: ${out.stderr}`);
  return out.stdout;
}

// Tests that need no Erlang VM: our client against our Erlang port, and what raw bytes get there.

test.serial(
  'our client speaks the original protocol to our Erlang port: the book session, and the same store as the main port',
  async (t) => {
    const server = await testServer([BOOK_SERVICE], ERLANG);
    t.teardown(() => server.close());
    t.not(server.erlangPort, 0);
    const ch = await connect('127.0.0.1', server.erlangPort, 'nameServer', 'ABXy45', [], { protocol: 'erlang' });
    ch.cast(tuple(atom('store'), atom('joe'), 'writing a book'));
    t.is(formatTerm(await ch.rpc(tuple(atom('lookup'), atom('joe')))), '{ok,"writing a book"}');
    t.is(formatTerm(await ch.rpc(tuple(atom('lookup'), atom('jim')))), 'undefined');
    await ch.close();
    // What an Erlang node stored, a lib-chan client reads on the main port.
    const main = await connect('127.0.0.1', server.port, 'nameServer', 'ABXy45');
    t.is(formatTerm(await main.rpc(tuple(atom('lookup'), atom('joe')))), '{ok,"writing a book"}');
    await main.close();
    t.is(
      (await refusal(connect('127.0.0.1', server.erlangPort, 'nameServer', 'nope', [], { protocol: 'erlang' }))).code,
      'authFail',
    );
    t.is(
      (await refusal(connect('127.0.0.1', server.erlangPort, 'other', 'x', [], { protocol: 'erlang' }))).code,
      'badService',
    );
  },
);

test.serial(
  "a connection's log lines on the Erlang port say which protocol it spoke, and a refused one has no service",
  async (t) => {
    const { logger, lines } = capturedLog();
    const server = await testServer([BOOK_SERVICE], { ...ERLANG, logger });
    t.teardown(() => server.close());
    const ch = await connect('127.0.0.1', server.erlangPort, 'nameServer', 'ABXy45', [], { protocol: 'erlang' });
    t.is(formatTerm(await ch.rpc(tuple(atom('lookup'), atom('joe')))), 'undefined');
    await ch.close();
    t.is(
      (await refusal(connect('127.0.0.1', server.erlangPort, 'other', 'x', [], { protocol: 'erlang' }))).code,
      'badService',
    );
    await server.close();
    const logged = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    const closed = logged.filter((l) => l['msg'] === 'connection closed');
    t.is(closed.length, 2);
    t.deepEqual(lineFields(logged.find((l) => l['msg'] === 'connection opened')), [
      'conn',
      'peer',
      'protocol',
      'service',
    ]);
    t.deepEqual(lineFields(closed[0]), ['conn', 'peer', 'protocol', 'service', ...CLOSED_FIELDS]);
    t.like(closed[0], { protocol: 'erlang', service: 'nameServer' });
    // Closed in the handshake: no service was accepted, so none is named.
    t.deepEqual(lineFields(closed[1]), ['conn', 'peer', 'protocol', ...CLOSED_FIELDS]);
    t.like(closed[1], { protocol: 'erlang', reason: 'badService', by: 'local' });
  },
);

test.serial(
  'the Erlang port refuses what its MD5 challenge cannot prove, says so at start, and warns that it is not encrypted',
  async (t) => {
    const { logger, lines } = capturedLog();
    const server = await testServer(
      [
        BOOK_SERVICE,
        { ...BOOK_SERVICE, name: 'stored', secret: null, verifier: await makeVerifier('ABXy45') },
        { ...BOOK_SERVICE, name: 'certified', allowCn: ['ops'] },
        service('open', echo),
      ],
      { ...ERLANG, logger },
    );
    t.teardown(() => server.close());
    const log = lines.join('');
    t.regex(log, /"service":"stored".*not served on the Erlang port: service stored has a stored SCRAM verifier/);
    t.regex(log, /"service":"certified".*not served on the Erlang port: service certified takes only TLS clients/);
    t.regex(
      log,
      /"level":40.*"services":\["nameServer","open"\].*MD5 challenge-response and messages travel unencrypted/,
    );
    for (const name of ['stored', 'certified']) {
      const err = await refusal(connect('127.0.0.1', server.erlangPort, name, 'ABXy45', [], { protocol: 'erlang' }));
      t.is(err.code, 'badService');
    }
    // A service without a secret is acked at once, without a challenge.
    const c = await RawErlang.open(server.erlangPort);
    c.frame(encodeEtf(tuple(atom('startService'), atom('open'), []), 32));
    t.is(term(await c.next(0)), 'ack');
    c.frame(encodeEtf(tuple(atom('hello'), 'world'), 32));
    t.is(term(await c.next(1)), '{hello,"world"}');
    c.socket.destroy();
  },
);

test.serial(
  'the challenge is 25 lowercase letters, and the response is the hex MD5 of the challenge and the secret',
  async (t) => {
    const server = await testServer([BOOK_SERVICE], ERLANG);
    t.teardown(() => server.close());
    const c = await RawErlang.open(server.erlangPort);
    c.frame(encodeEtf(tuple(atom('startService'), atom('nameServer'), []), 32));
    const challenge = decodeEtf(await c.next(0), 32);
    t.is(formatTerm(challenge).replace(/"[a-z]{25}"/, 'C'), '{challenge,C}');
    if (!(challenge instanceof Tuple)) throw new Error('the challenge is not a tuple');
    const text = String(challenge.at(1));
    // As erlang:md5("abc" ++ "ABXy45") and erlang:md5("abc" ++ [252]) print in hex (checked in an Erlang shell).
    t.is(challengeResponse('abc', 'ABXy45'), '3044ced70407cfbe5053bfc1ebc76f1f');
    t.is(challengeResponse('abc', 'ü'), '274e7df151081664c1972ce48b12d7bf');
    // In either case: the hex is compared without it.
    c.frame(encodeEtf(tuple(atom('response'), challengeResponse(text, 'ABXy45').toUpperCase()), 32));
    t.is(term(await c.next(1)), 'ack');
    c.socket.destroy();
  },
);

test.serial(
  'every limit of the main port holds on the Erlang port: handshake timeout, throttling, max_connections',
  async (t) => {
    const server = await testServer([BOOK_SERVICE], {
      ...ERLANG,
      handshakeTimeout: 300,
      authMaxFailures: 2,
      maxConnections: 2,
    });
    t.teardown(() => server.close());
    // Silent past handshake_timeout: told timeout, and closed.
    const idle = await RawErlang.open(server.erlangPort);
    await idle.closed;
    t.is(term(idle.terms[0] as Buffer), 'timeout');
    // Two wrong secrets lock the address out, on both ports.
    for (let i = 0; i < 2; i++)
      t.is(
        (await refusal(connect('127.0.0.1', server.erlangPort, 'nameServer', 'bad', [], { protocol: 'erlang' }))).code,
        'authFail',
      );
    t.is(
      (await refusal(connect('127.0.0.1', server.erlangPort, 'nameServer', 'ABXy45', [], { protocol: 'erlang' }))).code,
      'authThrottled',
    );
    t.is((await refusal(connect('127.0.0.1', server.port, 'nameServer', 'ABXy45'))).code, 'authThrottled');
    // Connections of both ports count against one max_connections.
    const a = await RawErlang.open(server.port);
    const b = await RawErlang.open(server.erlangPort);
    const refused = await RawErlang.open(server.erlangPort);
    await refused.closed;
    t.is(term(refused.terms[0] as Buffer), 'tooManyConnections');
    a.socket.destroy();
    b.socket.destroy();
  },
);

test.serial(
  'hostile input on the Erlang port closes that connection only, before anything of its size is allocated',
  async (t) => {
    const services = [BOOK_SERVICE, service('open', echo)];
    await besideBystander(t, services, ERLANG, async (server) => {
      // A length prefix of 4 GiB before the handshake: refused at its header, and told so.
      const huge = await RawErlang.open(server.erlangPort);
      huge.socket.write(Buffer.from([0xff, 0xff, 0xff, 0xff]));
      await huge.closed;
      t.is(term(huge.terms[0] as Buffer), 'frameTooLarge');
      const bomb = deflateSync(Buffer.alloc(64 << 20));
      const attacks: [string, Buffer][] = [
        ['deep nesting', Buffer.from([131, ...Array(40).fill([TAG.SMALL_TUPLE, 1]).flat(), TAG.NIL])],
        ['a compressed bomb', Buffer.from([131, TAG.COMPRESSED, ...u32(64 << 20), ...bomb])],
        ['a huge atom', Buffer.from([131, TAG.ATOM, 0xff, 0xff, ...Buffer.alloc(0xffff, 97)])],
        ['a 4-billion-element tuple header', Buffer.from([131, TAG.LARGE_TUPLE, ...u32(0xffff_ffff)])],
        ['a pid', Buffer.from([131, TAG.NEW_PID, TAG.SMALL_ATOM_UTF8, 1, 97, ...u32(1), ...u32(0), ...u32(0)])],
        ['a 72-bit integer', Buffer.from([131, TAG.SMALL_BIG, 9, 0, ...Array(9).fill(1)])],
      ];
      for (const [what, payload] of attacks) {
        // In the session, where frames may be as large as max_frame_size.
        const c = await RawErlang.open(server.erlangPort);
        c.frame(encodeEtf(tuple(atom('startService'), atom('open'), []), 32));
        t.is(term(await c.next(0)), 'ack', what);
        c.frame(payload);
        await c.closed;
        t.is(c.terms.length, 1, `${what}: nothing is sent in the session, not even a reason`);
      }
      // The port still serves.
      const ch = await connect('127.0.0.1', server.erlangPort, 'open', null, [], { protocol: 'erlang' });
      t.is(formatTerm(await ch.rpc(atom('still_here'))), 'still_here');
      await ch.close();
    });
  },
);

test.serial(
  'the name server does not push a refused store to an Erlang client, whose next rpc would take it',
  async (t) => {
    const { logger, lines } = capturedLog();
    const server = await testServer([BOOK_SERVICE], { ...ERLANG, storeMaxBytes: 1000, logger });
    t.teardown(() => server.close());
    const ch = await connect('127.0.0.1', server.erlangPort, 'nameServer', 'ABXy45', [], { protocol: 'erlang' });
    ch.cast(tuple(atom('store'), atom('big'), 'x'.repeat(2000)));
    t.is(formatTerm(await ch.rpc(tuple(atom('lookup'), atom('big')))), 'undefined');
    t.regex(lines.join(''), /"refused":"\{error,\{storeFull,.*a store was refused/);
    await ch.close();
  },
);

test.serial(
  'the original protocol has no request ids: an rpc that times out closes the channel, a term with no rpc waiting is a push',
  async (t) => {
    const twice = service('twice', async (mm) => {
      for await (const m of mm) {
        if (m.type === 'chan_closed') return;
        if (!(m.data instanceof Atom && m.data.name === 'silent')) {
          mm.send(m.data);
          mm.send(tuple(atom('again'), m.data));
        }
      }
    });
    const server = await testServer([twice], ERLANG);
    t.teardown(() => server.close());
    const ch = await connect('127.0.0.1', server.erlangPort, 'twice', null, [], { protocol: 'erlang' });
    t.is(formatTerm(await ch.rpc(atom('one'))), 'one');
    t.is(formatTerm(await ch.receive()), '{again,one}');
    const err = await refusal(ch.flush());
    t.is(err.code, 'usage');
    const late = await refusal(ch.rpc(atom('silent'), { timeout: 100 }));
    t.is(late.code, 'timeout');
    const info = await ch.closed;
    t.is(info.reason, 'timeout');
    t.regex(info.text, /cannot match a late answer/);
    t.is(
      (await refusal(connect('127.0.0.1', server.erlangPort, 'twice', null, [], { protocol: 'erlang', tls: {} }))).code,
      'usage',
    );
  },
);

// Tests against a real Erlang VM.

if (hasErlang) {
  test.serial(
    "the book's client (an escript) runs the book session on the Erlang port, and is refused as lib_chan refuses",
    async (t) => {
      const server = await testServer([BOOK_SERVICE], ERLANG);
      t.teardown(() => server.close());
      const port = server.erlangPort;
      t.is(
        await bookClient(port, 'nameServer', 'ABXy45', 'book'),
        '{ok,"writing a book"}\nundefined\n{ok,[8734,32,97,110,100,32,252]}\n',
      );
      t.is(await bookClient(port, 'nameServer', 'wrong', 'connect'), '{error,authFail}\n');
      t.is(await bookClient(port, 'noSuchService', 'ABXy45', 'connect'), '{error,badService}\n');
      // Erlang's Unicode atom reached the name server as an atom.
      const ch = await connect('127.0.0.1', server.port, 'nameServer', 'ABXy45');
      t.is(formatTerm(await ch.rpc(tuple(atom('lookup'), atom('Ünïcødé')))), '{ok,"∞ and ü"}');
      await ch.close();
    },
  );

  test.serial(
    'every type Erlang sends reaches a handler and comes back as Erlang sent it, inline and in a worker thread',
    async (t) => {
      const echoArg = service('echo', async (mm) => {
        for await (const m of mm) {
          if (m.type === 'chan_closed') return;
          mm.send(m.data instanceof Tuple ? (m.data.at(1) as Term) : null);
        }
      });
      const server = await testServer([echoArg, { ...BOOK_SERVICE, name: 'worker', isolation: 'worker' }], ERLANG);
      t.teardown(() => server.close());
      t.is(
        await bookClient(server.erlangPort, 'echo', 'none', 'types'),
        [
          '42',
          '-7',
          '4611686018427387904',
          '2.5',
          '1.0',
          'atom',
          "'Ünïcødé'",
          '[115,116,114,105,110,103]',
          '[8734]',
          '[]',
          '[1,[2]]',
          '<<1,2,3>>',
          '{a,{b}}',
          '#{k => v,[115] => 1}',
          'true',
          'false',
          '',
        ].join('\n'),
      );
      t.is(
        await bookClient(server.erlangPort, 'worker', 'ABXy45', 'book'),
        '{ok,"writing a book"}\nundefined\n{ok,[8734,32,97,110,100,32,252]}\n',
      );
    },
  );

  test.serial("our client and chan --erlang run the book session against the book's server (an escript)", async (t) => {
    const { child, firstLine } = await startEscript('book_server', ['nameServer', 'ABXy45']);
    t.teardown(() => stop(child));
    const port = Number(firstLine);
    const ch = await connect('127.0.0.1', port, 'nameServer', 'ABXy45', [], { protocol: 'erlang' });
    ch.cast(tuple(atom('store'), atom('joe'), 'writing a book'));
    t.is(formatTerm(await ch.rpc(tuple(atom('lookup'), atom('joe')))), '{ok,"writing a book"}');
    t.is(formatTerm(await ch.rpc(tuple(atom('lookup'), atom('jim')))), 'undefined');
    const back = await ch.rpc(
      tuple(atom('echo'), tuple(atom('Ünïcødé'), 'héllo ∞', [1.5, -(2n ** 63n)], Buffer.from('b'))),
    );
    t.is(formatTerm(back), '{\'Ünïcødé\',"héllo ∞",[1.5,-9223372036854775808],<<"b">>}');
    await ch.close();
    const args = ['--erlang', '127.0.0.1', String(port), 'nameServer', 'ABXy45'];
    const cast = await run(['cast', ...args, '{store, jim, "writing too"}']);
    t.is(cast.status, 0, cast.stderr);
    const rpc = await run(['rpc', ...args, '{lookup, jim}', '{lookup, joe}', '{lookup, nobody}']);
    t.is(rpc.stdout, '{ok,"writing too"}\n{ok,"writing a book"}\nundefined\n');
    t.is(rpc.status, 0);
    const wrong = await run(['rpc', '--erlang', '127.0.0.1', String(port), 'nameServer', 'bad', '{lookup, joe}']);
    t.is(wrong.status, 1);
    t.regex(wrong.stderr, /^chan: authFail: wrong secret for service nameServer/);
    const missing = await run(['rpc', '--erlang', '127.0.0.1', String(port), 'other', 'x', '{lookup, joe}']);
    t.regex(missing.stderr, /^chan: badService: /);
    const tls = await run(['rpc', '--erlang', '--tls', '127.0.0.1', String(port), 'nameServer', 'x', 'a']);
    t.is(tls.status, 2);
    const session = await run(['connect', ...args], { input: 'cast {store, ann, "a session"}.\n{lookup, ann}.\n' });
    t.is(session.stdout, '{ok,"a session"}\n');
    t.is(session.status, 0, session.stderr);
  });

  test.serial(
    'chan serve with CHAN_ERLANG_PORT serves the book session to an Erlang client, and says so at start',
    async (t) => {
      const { child, line } = await serve(['conf/lib_chan.conf'], { CHAN_ERLANG_PORT: '0' });
      t.teardown(() => void child.kill('SIGKILL'));
      const warning = await line(/listening for Erlang peers/);
      t.regex(warning, /"level":40/);
      const port = Number(/"port":(\d+)/.exec(warning)?.[1]);
      t.is(
        await bookClient(port, 'nameServer', 'ABXy45', 'book'),
        '{ok,"writing a book"}\nundefined\n{ok,[8734,32,97,110,100,32,252]}\n',
      );
      child.kill('SIGTERM');
      t.is((await once(child, 'exit'))[0], 0);
    },
  );

  test.serial('a service without a secret, in the original protocol: acked without a challenge', async (t) => {
    const { child, firstLine } = await startEscript('book_server', ['open', 'none']);
    t.teardown(() => stop(child));
    const ch = await connect('127.0.0.1', Number(firstLine), 'open', null, [], { protocol: 'erlang' });
    t.is(formatTerm(await ch.rpc(tuple(atom('echo'), 7))), '7');
    await ch.close();
    t.true(
      (await refusal(
        connect('127.0.0.1', Number(firstLine), 'open', null, [], { protocol: 'erlang' }).then((c) =>
          c.rpc(tuple(atom('silent'), 1), { timeout: 50 }),
        ),
      )) instanceof ChanError,
    );
  });
} else {
  console.log('Erlang tests skipped: escript (Debian erlang-nox) is not installed');
  test.skip('the book session against a real Erlang VM, both ways (escript not installed)', () => {});
}

test(`our client of the original protocol answers no challenge under ${MIN_CHALLENGE_LENGTH} characters (an impostor choosing an empty one would get a bare MD5 of the secret)`, async (t) => {
  const given = async (challenge: string): Promise<string> => {
    let answered = false;
    const io = {
      send(m: WireMessage): void {
        if (m.kind === 'cast' && isTuple(m.data, 'response', 2)) answered = true;
      },
      next: async (): Promise<WireMessage> =>
        answered ? { kind: 'cast', data: atom('ack') } : { kind: 'cast', data: tuple(atom('challenge'), challenge) },
    };
    return originalClientHandshake(io, { service: 's', secret: 'ABXy45', args: null }).then(
      () => (answered ? 'answered' : 'acked'),
      (err: unknown) => (err instanceof ChanError ? err.code : String(err)),
    );
  };
  t.is(await given(''), 'badServer');
  t.is(await given('a'.repeat(MIN_CHALLENGE_LENGTH - 1)), 'badServer');
  t.is(await given('a'.repeat(MIN_CHALLENGE_LENGTH)), 'answered');
  t.is(await given('qwertyuiopasdfghjklzxcvbn'), 'answered');
});
