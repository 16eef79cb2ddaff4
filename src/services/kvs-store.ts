/**
 * The book's `kvs`: a key-value store whose keys are any term, compared by value (`{location, joe}` finds what was
 * stored under `{location, joe}`; the atom `joe`, the string "joe" and the binary <<"joe">> are three keys).
 * It keeps its entries in the service's part of the server's store (the `store` option: memory, LMDB on disk, or Redis
 * shared by several servers), so with a durable store the names outlive the process.
 *
 * Values are kept as the terms they arrived as (a term comes back exactly as it went in), within two limits:
 *
 * - a value is stored only if its lookup answer, `{ok, Value}`, can be sent back within the server's limits (depth,
 *   frame size, decoded size): a value that could never be read back is refused, never kept as poison;
 * - the store keeps at most `store_max_bytes`: keys and values by what they take in memory (their decoded size,
 *   docs/PROTOCOL.md), plus {@link ENTRY_OVERHEAD} an entry. A store past it is refused with
 *   `{error, {storeFull, Text}}`; nothing else changes.
 */
import { decodedSizeLimit, flatCost, measure, stringCost, utf8Length } from '../codec/msgpack.js';
import { LimitError } from '../errors.js';
import type { ServiceLimits } from '../modules.js';
import { errorTerm } from '../runtime.js';
import { ALREADY_COMMITTED, type Namespace, type PutResult } from '../store/store.js';
import { Atom, Tuple, type Term } from '../term/model.js';

const OK = new Atom('ok');
const UNDEFINED = new Atom('undefined');

/** What an entry costs beyond its key and value: the map's slot, the buffer object, the key string's header. */
export const ENTRY_OVERHEAD = 256;

/**
 * What an answer's envelope adds around a value, at most: `["reply", Id, {error, {Why, V}}]` is 1 + 2 levels, about
 * 400 bytes of decoded size and 32 bytes on the wire.
 */
const ENVELOPE_COST = 512;
const ENVELOPE_BYTES = 64;

/** No limits: a store for programs and benchmarks that keep their own. */
export const NO_LIMITS: ServiceLimits = Object.freeze({
  maxDepth: 1000,
  maxFrameSize: Number.POSITIVE_INFINITY,
  storeMaxBytes: Number.POSITIVE_INFINITY,
});

/**
 * What `value` takes in memory (its decoded size) if it can be sent inside an answer that wraps it in `wrap` more
 * levels, within `limits`; otherwise the LimitError that says why not.
 */
export function sizeWithin(value: Term, wrap: number, limits: ServiceLimits): number | LimitError {
  try {
    const m = measure(value, limits.maxDepth - wrap, decodedSizeLimit(limits.maxFrameSize) - ENVELOPE_COST);
    if (m.bytes > limits.maxFrameSize - ENVELOPE_BYTES) {
      return new LimitError(
        'frameTooLarge',
        `the value takes ${m.bytes} bytes; with its answer around it, that is over max_frame_size (${limits.maxFrameSize})`,
      );
    }
    return m.size;
  } catch (err) {
    if (err instanceof LimitError) return err;
    throw err;
  }
}

/** What a store decided: refused (the answer to give), or stored, durable once `committed` settles. */
export type StoreOutcome = { refused: Tuple } | { committed: Promise<void> };

/** A store that is durable already (memory:, or a backend that commits at once): one outcome shared by all. */
const COMMITTED: StoreOutcome = Object.freeze({ committed: ALREADY_COMMITTED });

function found(value: Term | undefined): Tuple | Atom {
  return value === undefined ? UNDEFINED : new Tuple([OK, value]);
}

export class KvsStore {
  /** The outcome of the latest stores that wait on one commit (a backend answers a batch's puts with one promise). */
  private batch: { committed: Promise<void> } = { committed: ALREADY_COMMITTED };
  /** The commit the latest cast store waits on, already watched for failure ({@link firstToWatch}). */
  private watched: Promise<void> | null = null;

  /**
   * The largest decoded size and UTF-8 length of a string value that are sure to fit its answer (see decide). With
   * decoded sizes up to 8 times max_frame_size, the bytes are what decides; the size is checked all the same.
   */
  private readonly textCostRoom: number;
  private readonly textBytesRoom: number;

  constructor(
    /** The service's part of the server's store (store/): memory, LMDB or Redis. */
    private readonly namespace: Namespace,
    private readonly limits: ServiceLimits = NO_LIMITS,
  ) {
    this.textCostRoom = decodedSizeLimit(limits.maxFrameSize) - ENVELOPE_COST;
    // A string's header takes at most 5 bytes.
    this.textBytesRoom = limits.maxFrameSize - ENVELOPE_BYTES - 5;
  }

  /**
   * `kvs:store(Key, Value)`: stored (later lookups of this process see it at once; `committed` settles once it is
   * durable), or refused with the answer to give: `{error, {tooLarge, Text}}` for a value that could not be read back,
   * `{error, {storeFull, Text}}` past `store_max_bytes`. Rejects with `storeFailed` when the store cannot be written.
   */
  async store(key: Term, value: Term): Promise<StoreOutcome> {
    const cost = this.decide(key, value);
    if (typeof cost !== 'number') return { refused: cost };
    return this.outcome(await this.namespace.put(key, value, cost, this.limits.storeMaxBytes));
  }

  /** {@link store} done at once, where the backend can (memory:, lmdb:); null where it cannot. Throws `storeFailed`. */
  storeNow(key: Term, value: Term): StoreOutcome | null {
    if (!this.namespace.putNow) return null;
    const cost = this.decide(key, value);
    if (typeof cost !== 'number') return { refused: cost };
    return this.outcome(this.namespace.putNow(key, value, cost, this.limits.storeMaxBytes));
  }

  /** What storing `value` under `key` costs, or the refusal to answer when its answer could not be sent back. */
  private decide(key: Term, value: Term): number | Tuple {
    // Most stores: a string under a small flat key, sized here without measure's walk (the same figures; what is
    // not sure to fit, measure decides).
    if (typeof value === 'string') {
      const keyCost = flatCost(key);
      const len = utf8Length(value);
      const size = stringCost(len, value.length);
      if (keyCost >= 0 && size <= this.textCostRoom && len <= this.textBytesRoom)
        return keyCost + size + ENTRY_OVERHEAD;
    }
    // {ok, Value} is one level around the value.
    const size = sizeWithin(value, 1, this.limits);
    if (size instanceof LimitError)
      return errorTerm('tooLarge', `not stored: its answer {ok, Value} could not be sent back (${size.message})`);
    return measure(key, Number.POSITIVE_INFINITY).size + size + ENTRY_OVERHEAD;
  }

  private outcome(put: PutResult): StoreOutcome {
    if (put.stored) {
      if (put.committed === ALREADY_COMMITTED) return COMMITTED;
      if (this.batch.committed !== put.committed) this.batch = Object.freeze({ committed: put.committed });
      return this.batch;
    }
    return {
      refused: errorTerm(
        'storeFull',
        `not stored: the store would hold ${put.wouldHold} bytes, over store_max_bytes (${this.limits.storeMaxBytes})`,
      ),
    };
  }

  /**
   * Whether `committed` (a cast store's, which nobody waits on) is not yet watched for failure: true for the first
   * store of a batch, false for the rest, so that a failed batch is logged once, not once a store.
   */
  firstToWatch(committed: Promise<void>): boolean {
    if (committed === this.watched) return false;
    this.watched = committed;
    return true;
  }

  /** `kvs:lookup(Key) -> {ok, Value} | undefined`. Rejects with `storeFailed` when the store cannot be read. */
  async lookup(key: Term): Promise<Tuple | Atom> {
    return found(await this.namespace.get(key));
  }

  /** {@link lookup} answered at once, where the backend can (memory:, lmdb:); null where it cannot. */
  lookupNow(key: Term): Tuple | Atom | null {
    return this.namespace.getNow ? found(this.namespace.getNow(key)) : null;
  }

  /** What the store holds, bytes (as store_max_bytes counts it). */
  get bytes(): number {
    return this.namespace.bytes;
  }
}
