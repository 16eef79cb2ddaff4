import { Writable } from 'node:stream';
import test from 'ava';
import { createLogger, escapeControl, levelName, prettyLine } from '../src/log.js';
import { BOOK_SERVICE, RawClient, testServer } from './helpers.js';

test('a terminal gets one readable line per event: time, level, message, fields, and an error stack indented', (t) => {
  const line = prettyLine(
    JSON.stringify({
      level: 40,
      time: Date.UTC(2026, 0, 2, 12, 1, 2, 345),
      pid: 9,
      msg: 'refusing connections',
      peer: '127.0.0.1:5000',
      times: 3,
    }),
  );
  t.is(line, '12:01:02.345 \x1b[33mWARN \x1b[0m refusing connections  peer=127.0.0.1:5000 times=3\n');
  const crash = prettyLine(
    JSON.stringify({ level: 50, time: 0, msg: 'handler crashed', err: { stack: 'Error: boom\n    at x' } }),
  );
  t.is(crash, '00:00:00.000 \x1b[31mERROR\x1b[0m handler crashed\n    Error: boom\n        at x\n');
  t.is(prettyLine('not json'), 'not json');
});

test("pino's level numbers are named as pino names them", (t) => {
  t.deepEqual([10, 20, 30, 40, 50, 60].map(levelName), ['trace', 'debug', 'info', 'warn', 'error', 'fatal']);
  t.is(levelName(35), undefined);
});

test('a service name with terminal escapes, sent by a peer, is printed escaped on the terminal and in the JSON log', async (t) => {
  const pretty: string[] = [];
  const json: string[] = [];
  const sink = (into: string[]): Writable =>
    new Writable({
      write: (c, _e, cb) => {
        into.push(String(c));
        cb();
      },
    });
  for (const [into, isPretty] of [
    [pretty, true],
    [json, false],
  ] as const) {
    const server = await testServer([BOOK_SERVICE], { logger: createLogger({ pretty: isPretty, stream: sink(into) }) });
    const c = await RawClient.open(server.port);
    // Sets the window title, clears the screen, and turns the rest of the line around.
    c.send({ kind: 'startService', version: 1, service: '\x1b]0;pwned\x07\x1b[2J\u202emoc.live', args: null });
    t.is((await c.closeMessage())?.reason, 'badService');
    await server.close();
  }
  const line = pretty.find((l) => l.includes('no service named')) ?? '';
  t.false(/\x1b[\]]|\x1b\[2J|\x07|\u202e/.test(line), JSON.stringify(line));
  t.true(line.includes('\\x1b]0;pwned\\x07\\x1b[2J\\u202emoc.live'), JSON.stringify(line));
  const entry = JSON.parse(json.find((l) => l.includes('no service named')) ?? '{}') as Record<string, string>;
  t.is(entry['service'], '\\x1b]0;pwned\\x07\\x1b[2J\\u202emoc.live');
});

test('escapeControl writes C0, C1, DEL and bidirectional controls as escapes and leaves other text alone', (t) => {
  t.is(escapeControl('plain é 😀 text'), 'plain é 😀 text');
  t.is(escapeControl('a\x00b\x7fc\x9bd\u2028e\u2066f'), 'a\\x00b\\x7fc\\x9bd\\u2028e\\u2066f');
});
