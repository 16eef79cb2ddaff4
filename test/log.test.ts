import test from 'ava';
import { levelName, prettyLine } from '../src/log.js';

test('a terminal gets one readable line per event: time, level, message, fields, and an error stack indented', (t) => {
  const line = prettyLine(JSON.stringify({ level: 40, time: Date.UTC(2026, 0, 2, 12, 1, 2, 345), pid: 9, msg: 'refusing connections', peer: '127.0.0.1:5000', times: 3 }));
  t.is(line, '12:01:02.345 \x1b[33mWARN \x1b[0m refusing connections  peer=127.0.0.1:5000 times=3\n');
  const crash = prettyLine(JSON.stringify({ level: 50, time: 0, msg: 'handler crashed', err: { stack: 'Error: boom\n    at x' } }));
  t.is(crash, '00:00:00.000 \x1b[31mERROR\x1b[0m handler crashed\n    Error: boom\n        at x\n');
  t.is(prettyLine('not json'), 'not json');
});

test("pino's level numbers are named as pino names them", (t) => {
  t.deepEqual([10, 20, 30, 40, 50, 60].map(levelName), ['trace', 'debug', 'info', 'warn', 'error', 'fatal']);
  t.is(levelName(35), undefined);
});
