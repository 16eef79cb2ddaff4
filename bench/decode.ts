/**
 * `npm run bench:decode`: the worst a frame can cost to decode. For each kind of value, a frame of `max_frame_size`
 * (1 MiB) holding as many of them as fit, decoded with the decoded-size budget a server gives it (8 MiB): how long
 * the event loop is held, and whether the frame is accepted or refused (frameTooLarge, as soon as the budget is
 * passed). msgpackr, which has no such budget, decodes the same bytes in the same run for reference (its own types
 * off, as lib-chan would have to run it on untrusted input).
 *
 *   npm run bench:decode [-- --runs 7]
 */
import { parseArgs } from 'node:util';
import { Unpackr } from 'msgpackr';
import { decode, decodedSizeLimit } from '../src/codec/msgpack.js';
import { ChanError } from '../src/errors.js';

const { values } = parseArgs({ options: { runs: { type: 'string', default: '7' } } });
const runs = Number(values.runs);
const FRAME = 1024 * 1024;
const BUDGET = decodedSizeLimit(FRAME);

const b = (...xs: number[]): Buffer => Buffer.from(xs);
const str = (s: string): Buffer => Buffer.concat([b(0xa0 | Buffer.byteLength(s)), Buffer.from(s)]);

/** One item per kind: what a hostile peer would repeat to fill a frame. */
const ITEMS: [string, (i: number) => Buffer][] = [
  ['empty map', () => b(0x80)],
  ['empty list', () => b(0x90)],
  ['nil', () => b(0xc0)],
  ['small integer', () => b(0x05)],
  ['float', () => b(0xcb, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0)],
  ['integer > 2^53', () => b(0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)],
  ['1-char string', () => str('a')],
  ['12-char string', () => str('abcdefghijkl')],
  ['16-char string', () => str('abcdefghijklmnop')],
  ['2-byte UTF-8 char', () => str('é')],
  ['8 x é (16 bytes)', () => str('éééééééé')],
  ['empty binary', () => b(0xc4, 0)],
  ['1-char atom', () => b(0xd4, 1, 0x61)],
  ['empty tuple', () => b(0xd4, 2, 0x90)],
  ['map, 1 key', () => b(0x81, 0xa1, 0x61, 0x01)],
  ['map, 1 unique key', (i) => Buffer.concat([b(0x81), str(`k${i}`), b(0xc0)])],
];

/** A map keyed by a map keyed by a map... 29 deep, around a list of small integers: every level's key holds the rest. */
function nestedKeys(): Buffer {
  let inner = Buffer.concat([b(0xdd, 0, 0, 0, 0), Buffer.alloc(900_000, 0x05)]);
  inner.writeUInt32BE(900_000, 1);
  for (let i = 0; i < 29; i++) inner = Buffer.concat([b(0x81), inner, b(0xc0)]);
  return inner;
}

function frameOf(item: (i: number) => Buffer): Buffer {
  const parts: Buffer[] = [];
  let size = 5;
  for (let i = 0; ; i++) {
    const x = item(i);
    if (size + x.length > FRAME) break;
    parts.push(x);
    size += x.length;
  }
  const header = b(0xdd, 0, 0, 0, 0);
  header.writeUInt32BE(parts.length, 1);
  return Buffer.concat([header, ...parts]);
}

function time(f: () => void): number {
  const times: number[] = [];
  for (let r = 0; r < runs; r++) {
    const t0 = performance.now();
    f();
    times.push(performance.now() - t0);
  }
  times.sort((x, y) => x - y);
  return times[times.length >> 1] as number;
}

const unpackr = new Unpackr({
  useRecords: false,
  structuredClone: false,
  mapsAsObjects: true,
  // @ts-expect-error msgpackr reads 'auto' (integers past 2^53 as bigints) but its index.d.ts does not list it
  int64AsType: 'auto',
});
const rows: string[][] = [];
let worst = { name: '', ms: 0 };
const FRAMES: [string, Buffer][] = [
  ...ITEMS.map(([name, item]): [string, Buffer] => [name, frameOf(item)]),
  ['map keys nested 29 deep', nestedKeys()],
];
for (const [name, frame] of FRAMES) {
  let outcome = '';
  const ms = time(() => {
    try {
      decode(frame, 33, BUDGET);
      outcome = 'accepted';
    } catch (err) {
      outcome = err instanceof ChanError ? err.code : 'error';
    }
  });
  let reference = '-'; // (atoms and tuples are lib-chan's extension types, which msgpackr does not know)
  try {
    unpackr.unpack(frame);
    reference = time(() => unpackr.unpack(frame)).toFixed(1);
  } catch {}
  if (ms > worst.ms) worst = { name, ms };
  rows.push([name, String(frame.length), outcome, ms.toFixed(1), reference]);
}
console.log(
  `Decoding one frame of at most ${FRAME} bytes, decoded-size budget ${BUDGET} bytes; medians of ${runs} runs, ms.\n`,
);
console.log('| value repeated | frame bytes | lib-chan | lib-chan ms | msgpackr ms (no budget) |');
console.log('| --- | --- | --- | --- | --- |');
for (const r of rows) console.log(`| ${r.join(' | ')} |`);
console.log(`\nworst: ${worst.name}, ${worst.ms.toFixed(1)} ms`);
