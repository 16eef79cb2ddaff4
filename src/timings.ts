/**
 * Timings for the admin port's metrics ({@link Timings}), counted in plain fields on the message path and read by
 * prom-client only when scraped ({@link timingsHistogram}): prom-client's own `observe` and `inc` build and hash a
 * string of the label values at every call.
 */
import type * as promClient from 'prom-client';

/** The observations of one set of label values: per bucket (not summed up), their sum and number, and failures. */
export interface TimingRow {
  readonly labels: Readonly<Record<string, string>>;
  readonly counts: number[];
  sum: number;
  count: number;
  failed: number;
}

/**
 * Times by one or two labels, counted in plain fields on the message path and read by prom-client when scraped
 * ({@link timingsHistogram}, and counters that read `count` and `failed`). prom-client's own `observe` builds and
 * hashes a string of the label values at every call: with the admin port on, a pipelined lookup (an rpc timed, a
 * store read timed and counted) cost the server nearly twice the CPU it costs without.
 */
export class Timings {
  /** Rows by their first label's value, then their second's (or ''). */
  private readonly rows = new Map<string, Map<string, TimingRow>>();
  /**
   * The same rows in the order they were made: the order they are read in, as a prom-client histogram lists its
   * series. (An error counter's series follow the same order, where prom-client would list one when it first
   * failed; Prometheus gives the order no meaning.)
   */
  private readonly made: TimingRow[] = [];

  constructor(
    private readonly names: readonly [string] | readonly [string, string],
    readonly bounds: readonly number[],
  ) {}

  /** Counts an observation of `seconds` for the label values `a` (and `b`, for two labels). */
  observe(a: string, b: string, seconds: number, failed = false): void {
    // A time that is not a number would make the sum NaN for good (prom-client refuses one; a clock never gives one).
    if (!Number.isFinite(seconds)) return;
    let byB = this.rows.get(a);
    if (byB === undefined) {
      byB = new Map();
      this.rows.set(a, byB);
    }
    let row = byB.get(b);
    if (row === undefined) {
      const [first, second] = this.names;
      row = {
        labels: second === undefined ? { [first]: a } : { [first]: a, [second]: b },
        counts: new Array<number>(this.bounds.length).fill(0),
        sum: 0,
        count: 0,
        failed: 0,
      };
      byB.set(b, row);
      this.made.push(row);
    }
    // The first bucket whose bound is at least `seconds` (Prometheus's `le`); past the last, +Inf only (the count).
    const bounds = this.bounds;
    let i = 0;
    while (i < bounds.length && seconds > (bounds[i] as number)) i++;
    if (i < bounds.length) row.counts[i] = (row.counts[i] as number) + 1;
    row.sum += seconds;
    row.count++;
    if (failed) row.failed++;
  }

  each(): readonly TimingRow[] {
    return this.made;
  }

  reset(): void {
    this.rows.clear();
    this.made.length = 0;
  }
}

/**
 * A prom-client histogram that reads its figures from `timings` when scraped: the same series as prom-client's own
 * (`_bucket` by `le`, summed up, then `+Inf`, `_sum`, `_count`), in the same shape, for the registry's text and for
 * the primary's sum across processes.
 */
export function timingsHistogram<L extends string>(
  p: typeof promClient,
  timings: Timings,
  config: { name: string; help: string; labelNames: readonly L[]; registers: promClient.Registry[] },
): promClient.Histogram<L> {
  const { name, help } = config;
  // One sample, as prom-client's histogram makes it (no exemplars: null on a bucket, undefined on the sum and count).
  const value = (
    labels: Record<string, string | number>,
    row: TimingRow,
    v: number,
    suffix: string,
    exemplar: null | undefined,
  ) => ({ labels, sharedLabels: row.labels, value: v, metricName: `${name}${suffix}`, exemplar });
  class Read extends p.Histogram<L> {
    /** What the registry reads (prom-client's `get` reads it too, and moves each row's labels in with `le`). */
    async getForPromString() {
      const values = [];
      for (const row of timings.each()) {
        let sum = 0;
        timings.bounds.forEach((le, i) => {
          sum += row.counts[i] as number;
          values.push(value({ le }, row, sum, '_bucket', null));
        });
        values.push(
          value({ le: '+Inf' }, row, row.count, '_bucket', null),
          value({}, row, row.sum, '_sum', undefined),
          value({}, row, row.count, '_count', undefined),
        );
      }
      return { name, help, type: 'histogram', values, aggregator: 'sum' };
    }

    override reset(): void {
      super.reset();
      timings.reset();
    }
  }
  return new Read({ ...config, buckets: [...timings.bounds] });
}
