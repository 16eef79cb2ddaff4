/**
 * `npm run bench -- --codec`: the codec and the frame parser alone, beside msgpackr 2.1.3 in the same run (as ws keeps its
 * parser benchmarks beside its end-to-end ones). For each case: operations a second for lib-chan's encode and decode,
 * and msgpackr's on the same value where msgpackr applies (data without atoms and tuples: it has no such types, so the
 * rows with them carry lib-chan's figures alone, and a row of the same shape in strings shows what atoms cost beyond
 * strings). msgpackr decodes as lib-chan would have to run it on untrusted input: its own types off.
 * FrameParser.push: frames of 125 B, 64 KiB, 200 KiB and 1 MiB through the parser, in one chunk and in 16 KiB chunks.
 *
 *   npm run bench -- --codec [--ms 300]     (or npm run bench:codec [-- --ms 300])
 */
import { parseArgs } from 'node:util';
import { Packr, Unpackr } from 'msgpackr';
import { decode, encode } from '../src/codec/msgpack.js';
import { FrameParser, frame } from '../src/frame.js';
import { atom, tuple, type Term } from '../src/term/model.js';

const { values } = parseArgs({ options: { ms: { type: 'string', default: '300' } } });
const ms = Number(values.ms);
if (!Number.isInteger(ms) || ms < 1 || ms > 60_000) {
  process.stderr.write(`--ms ${values.ms}: a whole number of milliseconds from 1 to 60000\n`);
  process.exit(2);
}

const packr = new Packr({ useRecords: false, structuredClone: false });
const unpackr = new Unpackr({
  useRecords: false,
  structuredClone: false,
  mapsAsObjects: true,
  // @ts-expect-error msgpackr reads 'auto' (integers past 2^53 as bigints) but its index.d.ts does not list it
  int64AsType: 'auto',
});

/** Operations a second of `f`, run for about `ms` (after a warm-up of a tenth of that). */
function rate(f: () => unknown): number {
  const until = (t: number): number => {
    let n = 0;
    const end = performance.now() + t;
    while (performance.now() < end) {
      for (let i = 0; i < 64; i++) f();
      n += 64;
    }
    return n;
  };
  until(ms / 10);
  const t0 = performance.now();
  const n = until(ms);
  return n / ((performance.now() - t0) / 1000);
}

const value100 = 'x'.repeat(100);
const big = (n: number): Buffer => Buffer.alloc(n, 7);

/** [name, lib-chan's term, the same data for msgpackr (without atoms and tuples), or null where it does not apply] */
const CASES: [string, Term, unknown][] = [
  ['{lookup, joe}', tuple(atom('lookup'), atom('joe')), null],
  ['["lookup", "joe"] (the same, in strings)', ['lookup', 'joe'], ['lookup', 'joe']],
  ['{ok, V}, V 100 bytes', tuple(atom('ok'), value100), null],
  ['["ok", V], V 100 bytes', ['ok', value100], ['ok', value100]],
  ['50 tuples {k, N, "v"} in a list', Array.from({ length: 50 }, (_, i) => tuple(atom('k'), i, 'v')), null],
  [
    '50 lists ["k", N, "v"] in a list',
    Array.from({ length: 50 }, (_, i) => ['k', i, 'v']),
    Array.from({ length: 50 }, (_, i) => ['k', i, 'v']),
  ],
  ['binary 100 B', big(100), big(100)],
  ['binary 64 KiB', big(64 * 1024), big(64 * 1024)],
  ['binary 1 MiB', big(1024 * 1024), big(1024 * 1024)],
  ['string 64 KiB', 'y'.repeat(64 * 1024), 'y'.repeat(64 * 1024)],
];

const fmt = (n: number): string =>
  n >= 1e6 ? `${(n / 1e6).toFixed(2)} M` : n >= 1e3 ? `${(n / 1e3).toFixed(1)} k` : n.toFixed(0);
const rows: string[] = [];
for (const [name, term, plain] of CASES) {
  const bytes = encode(term, 64);
  const enc = rate(() => encode(term, 64));
  const dec = rate(() => decode(bytes, 64, Number.POSITIVE_INFINITY));
  let mEnc = '-';
  let mDec = '-';
  let ratios = '-';
  if (plain !== null) {
    const packed = Buffer.from(packr.pack(plain));
    const e = rate(() => packr.pack(plain));
    const d = rate(() => unpackr.unpack(packed));
    mEnc = fmt(e);
    mDec = fmt(d);
    ratios = `${(enc / e).toFixed(2)} / ${(dec / d).toFixed(2)}`;
  }
  rows.push(`| ${name} | ${bytes.length} | ${fmt(enc)} | ${fmt(dec)} | ${mEnc} | ${mDec} | ${ratios} |`);
}

const parserRows: string[] = [];
for (const size of [125, 64 * 1024, 200 * 1024, 1024 * 1024]) {
  const f = frame(big(size));
  let got = 0;
  const parser = new FrameParser(2 * 1024 * 1024, () => {
    got++;
  });
  const whole = rate(() => parser.push(f));
  const chunks: Buffer[] = [];
  for (let i = 0; i < f.length; i += 16 * 1024) chunks.push(f.subarray(i, i + 16 * 1024));
  const split = rate(() => {
    for (const c of chunks) parser.push(c);
  });
  void got;
  parserRows.push(
    `| ${size >= 1024 ? `${size / 1024} KiB` : `${size} B`} | ${fmt(whole)} | ${fmt(split)} | ${((split * size) / 1e6).toFixed(0)} MB/s |`,
  );
}

console.log(
  [
    `Node ${process.version}; ${ms} ms per figure; msgpackr 2.1.3 with its own types off`,
    '',
    '| value | bytes | encode/s | decode/s | msgpackr encode/s | msgpackr decode/s | lib-chan / msgpackr (encode / decode) |',
    '| --- | --- | --- | --- | --- | --- | --- |',
    ...rows,
    '',
    '| FrameParser.push, one frame of | frames/s, in one chunk (no copy) | frames/s, in 16 KiB chunks | bytes/s, in 16 KiB chunks |',
    '| --- | --- | --- | --- |',
    ...parserRows,
  ].join('\n'),
);
