/**
 * A latency histogram in the manner of HdrHistogram: values (microseconds) are counted in buckets whose width grows
 * with the value, so that any value up to an hour is kept within 0.1% of itself in fixed memory (about 40 KiB),
 * whatever the number of samples.
 */
const SUB = 2048; // values below this are exact; above, 1024 buckets per power of two
const HALF = SUB / 2;
const MAX_SHIFT = 22; // 2048 << 22 microseconds is over an hour

export class Histogram {
  private readonly counts = new Float64Array(SUB + MAX_SHIFT * HALF);
  count = 0;
  min = Number.POSITIVE_INFINITY;
  max = 0;

  /** Records one value, in microseconds (rounded; negative values count as 0). */
  record(us: number): void {
    const v = Math.max(0, Math.round(us));
    const i = index(v);
    this.counts[i] = (this.counts[i] as number) + 1;
    this.count++;
    if (v < this.min) this.min = v;
    if (v > this.max) this.max = v;
  }

  /** The value at percentile `p` (0 to 100): the smallest value that at least p% of the samples do not exceed. */
  percentile(p: number): number {
    if (this.count === 0) return 0;
    const rank = Math.max(1, Math.ceil((p / 100) * this.count));
    let seen = 0;
    for (let i = 0; i < this.counts.length; i++) {
      seen += this.counts[i] as number;
      if (seen >= rank) return Math.min(this.max, highest(i));
    }
    return this.max;
  }
}

function index(v: number): number {
  if (v < SUB) return v;
  const shift = Math.min(MAX_SHIFT, Math.floor(Math.log2(v)) - 10);
  return SUB + (shift - 1) * HALF + Math.min(HALF - 1, (v >> shift) - HALF);
}

/** The largest value that falls in bucket `i`. */
function highest(i: number): number {
  if (i < SUB) return i;
  const shift = Math.floor((i - SUB) / HALF) + 1;
  const sub = ((i - SUB) % HALF) + HALF;
  return ((sub + 1) << shift) - 1;
}
