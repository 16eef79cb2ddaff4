import test from 'ava';
import fc from 'fast-check';
import { ChanError } from '../src/errors.js';
import { FrameParser, frame } from '../src/frame.js';

function collect(max = 1024): { parser: FrameParser; frames: string[] } {
  const frames: string[] = [];
  const parser = new FrameParser(max, (p) => frames.push(p.toString()));
  return { parser, frames };
}

test("an object sink is given each payload as a range of the chunk it lies in (no view made), or of the frame's own buffer", (t) => {
  const got: { same: boolean; text: string }[] = [];
  const merged = Buffer.concat([frame(Buffer.from('one')), frame(Buffer.from('two'))]);
  const parser = new FrameParser(1024, {
    onFrameRange: (bytes, start, end) => got.push({ same: bytes === merged, text: bytes.toString('utf8', start, end) }),
  });
  parser.push(merged);
  // A frame split across chunks is assembled in a buffer of its own: the range is all of it.
  const split = frame(Buffer.from('three'));
  parser.push(split.subarray(0, 6));
  parser.push(split.subarray(6));
  t.deepEqual(got, [
    { same: true, text: 'one' },
    { same: true, text: 'two' },
    { same: false, text: 'three' },
  ]);
});

test('parses frames merged into one write', (t) => {
  const { parser, frames } = collect();
  parser.push(Buffer.concat([frame(Buffer.from('one')), frame(Buffer.from('two')), frame(Buffer.alloc(0))]));
  t.deepEqual(frames, ['one', 'two', '']);
});

test('parses a frame split across writes, even inside its header', (t) => {
  const { parser, frames } = collect();
  const bytes = frame(Buffer.from('hello'));
  for (const b of bytes) parser.push(Buffer.from([b]));
  t.deepEqual(frames, ['hello']);
  t.is(parser.buffered, 0);
});

test('rejects a frame larger than maxFrameSize before allocating it', (t) => {
  const { parser, frames } = collect(16);
  parser.push(frame(Buffer.alloc(16, 0x61)));
  t.is(frames.length, 1);
  const err = t.throws(() => parser.push(Buffer.from([0xff, 0xff, 0xff, 0xff])), { instanceOf: ChanError });
  t.is(err?.code, 'frameTooLarge');
  t.is(parser.buffered, 0);
  parser.push(frame(Buffer.from('ignored after the error')));
  t.is(frames.length, 1);
});

test('the limit can be raised between chunks (after authentication)', (t) => {
  const { parser, frames } = collect(4);
  parser.maxFrameSize = 100;
  parser.push(frame(Buffer.alloc(50, 0x62)));
  t.is(frames[0]?.length, 50);
});

test('frames survive any split points and merges (property)', (t) => {
  fc.assert(
    fc.property(
      fc.array(fc.uint8Array({ maxLength: 40 }), { maxLength: 20 }),
      fc.array(fc.integer({ min: 1, max: 30 }), { minLength: 1, maxLength: 50 }),
      (payloads, cuts) => {
        const stream = Buffer.concat(payloads.map((p) => frame(p)));
        const got: Buffer[] = [];
        const parser = new FrameParser(64, (p) => got.push(Buffer.from(p)));
        let off = 0;
        for (let i = 0; off < stream.length; i++) {
          const n = cuts[i % cuts.length] as number;
          parser.push(stream.subarray(off, off + n));
          off += n;
        }
        if (got.length !== payloads.length) throw new Error(`got ${got.length} frames, wanted ${payloads.length}`);
        got.forEach((g, i) => {
          if (!g.equals(payloads[i] as Uint8Array)) throw new Error(`frame ${i} differs`);
        });
      },
    ),
    { numRuns: 2000 },
  );
  t.pass();
});

test('random bytes never make the parser throw anything but frameTooLarge or hold more than the limit (property)', (t) => {
  fc.assert(
    fc.property(fc.array(fc.uint8Array({ maxLength: 64 }), { maxLength: 10 }), (chunks) => {
      const parser = new FrameParser(32, () => {});
      for (const c of chunks) {
        try {
          parser.push(Buffer.from(c));
        } catch (err) {
          if (!(err instanceof ChanError) || err.code !== 'frameTooLarge') throw err;
          return;
        }
        if (parser.buffered > 32 + 4) throw new Error(`buffered ${parser.buffered}`);
      }
    }),
    { numRuns: 5000 },
  );
  t.pass();
});

test('a frame over 64 KiB that arrives a byte at a time is held in at most twice the bytes that have arrived', (t) => {
  const len = 1024 * 1024;
  const frames: Buffer[] = [];
  const p = new FrameParser(2 * len, (payload) => frames.push(Buffer.from(payload)));
  const bytes = Buffer.alloc(4 + len, 7);
  bytes.writeUInt32BE(len, 0);
  let worst = 0;
  for (let i = 0; i < bytes.length; i++) {
    p.push(bytes.subarray(i, i + 1));
    if (i > 4 && frames.length === 0) worst = Math.max(worst, p.buffered / Math.max(64 * 1024, i - 3));
  }
  t.true(worst <= 2, `held ${worst.toFixed(2)} x`);
  t.is(frames.length, 1);
  t.is(frames[0]?.length, len);
  t.true(frames[0]?.every((b) => b === 7));
});

test('a stopped parser keeps nothing of later chunks, paused or not (a connection closed while paused reads on to its end)', (t) => {
  const { parser, frames } = collect();
  parser.push(frame(Buffer.from('one')));
  parser.pause();
  parser.push(frame(Buffer.from('held while paused')));
  t.true(parser.buffered > 0);
  parser.stop();
  t.is(parser.buffered, 0);
  for (let i = 0; i < 100; i++) parser.push(Buffer.alloc(64 * 1024, 1));
  t.is(parser.buffered, 0);
  parser.resume();
  parser.push(frame(Buffer.from('two')));
  t.deepEqual(frames, ['one']);
  t.is(parser.buffered, 0);
});
