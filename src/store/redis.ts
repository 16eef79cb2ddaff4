/**
 * `redis://[user:password@]host:port/db`: a store shared by several servers, on several machines, through Redis
 * (ioredis). Per service three keys: `libchan:{service}:v`, a hash of entries (the codec's bytes of [Key, Value]) by
 * key digest; `libchan:{service}:c`, a hash of what each entry counts against store_max_bytes; and
 * `libchan:{service}:bytes`, their total. A put is one Lua script, so the limit holds across servers.
 *
 * One connection per store: commands run in the order they are sent, so a get after a put sees it. While Redis is away
 * calls fail at once with `storeFailed` (no queue of commands to replay late), and ioredis reconnects by itself, with a
 * back-off up to 5 s. Durability is the Redis server's: with `appendonly yes` and `appendfsync always` an acknowledged
 * store survives the loss of the Redis process.
 */
import { Redis } from 'ioredis';
import { msgpackCodec } from '../codec/index.js';
import { ChanError } from '../errors.js';
import type { Term } from '../term/model.js';
import {
  ALREADY_COMMITTED,
  describeStore,
  made,
  storageKey,
  type Namespace,
  type PutResult,
  type Store,
} from './store.js';

const codec = msgpackCodec({ maxDepth: Number.MAX_SAFE_INTEGER });

/**
 * KEYS: entries, costs, total. ARGV: field, entry, cost, max. Returns {1, the new total} when stored, {0, the total
 * refused} when not (a flag apart from the total: a total someone reset may be anything).
 */
const PUT = `
local old = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
local after = tonumber(redis.call('GET', KEYS[3]) or '0') - old + tonumber(ARGV[3])
if after > tonumber(ARGV[4]) then return {0, after} end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
redis.call('SET', KEYS[3], after)
return {1, after}`;

/** KEYS: entries, costs, total. ARGV: field. Returns {0} when there was no entry, else {1, the new total}. */
const DELETE = `
local old = redis.call('HGET', KEYS[2], ARGV[1])
if not old then return {0} end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
return {1, redis.call('DECRBY', KEYS[3], tonumber(old))}`;

function storeFailed(err: unknown): ChanError {
  return new ChanError('storeFailed', `the Redis store failed: ${err instanceof Error ? err.message : String(err)}`, {
    cause: err,
  });
}

/** A script's answer, {flag} or {flag, total}: anything else is the store failing (storeFailed). */
function scriptAnswer(result: unknown, what: string): [number, number | undefined] {
  if (Array.isArray(result) && (result[0] === 0 || result[0] === 1) && typeof (result[1] ?? 0) === 'number')
    return [result[0], result[1] as number | undefined];
  throw storeFailed(`the ${what} script answered ${JSON.stringify(result)}`);
}

class RedisNamespace implements Namespace {
  private readonly keys: [string, string, string];
  private held = 0;

  constructor(
    private readonly redis: Redis,
    service: string,
  ) {
    const base = `libchan:${service}`;
    this.keys = [`${base}:v`, `${base}:c`, `${base}:bytes`];
  }

  async get(key: Term): Promise<Term | undefined> {
    let bytes: Buffer | null;
    try {
      bytes = await this.redis.hgetBuffer(this.keys[0], storageKey(key));
    } catch (err) {
      throw storeFailed(err);
    }
    if (bytes === null) return undefined;
    const entry = codec.decode(bytes, Infinity);
    return Array.isArray(entry) ? (entry[1] as Term) : undefined;
  }

  async put(key: Term, value: Term, cost: number, maxBytes: number): Promise<PutResult> {
    const entry = codec.encode([key, value], 0);
    let result: unknown;
    try {
      const max = Number.isFinite(maxBytes) ? maxBytes : Number.MAX_SAFE_INTEGER;
      result = await this.redis.eval(PUT, 3, ...this.keys, storageKey(key), entry, cost, max);
    } catch (err) {
      throw storeFailed(err);
    }
    const [stored, total] = scriptAnswer(result, 'put');
    if (stored === 0) return { stored: false, wouldHold: total ?? 0 };
    this.held = total ?? this.held;
    return { stored: true, committed: ALREADY_COMMITTED };
  }

  async delete(key: Term): Promise<boolean> {
    let result: unknown;
    try {
      result = await this.redis.eval(DELETE, 3, ...this.keys, storageKey(key));
    } catch (err) {
      throw storeFailed(err);
    }
    const [deleted, total] = scriptAnswer(result, 'delete');
    if (deleted === 0) return false;
    this.held = total ?? this.held;
    return true;
  }

  /**
   * What the namespace holds, all servers together, as Redis counted it at this process's latest put or delete (0
   * before either; the total is in Redis, where puts check it).
   */
  get bytes(): number {
    return this.held;
  }
}

export class RedisStore implements Store {
  private readonly spaces = new Map<string, RedisNamespace>();

  private constructor(
    private readonly redis: Redis,
    readonly description: string,
  ) {}

  /**
   * Connects to `url` and checks that Redis answers. Throws a `badConfig` ChanError, with the reason, when it does not:
   * a server that cannot reach its store at start refuses to start.
   */
  static async open(url: string): Promise<RedisStore> {
    const description = describeStore(url);
    const redis = new Redis(url, REDIS_OPTIONS);
    // Connection errors are reported by the calls that fail (storeFailed); the event itself needs a listener.
    redis.on('error', () => {});
    try {
      await redis.connect();
      await redis.ping();
    } catch (err) {
      redis.disconnect();
      throw new ChanError(
        'badConfig',
        `store ${description} cannot be reached: ${err instanceof Error ? err.message : String(err)}`,
        { cause: err },
      );
    }
    return new RedisStore(redis, description);
  }

  async namespace(service: string): Promise<Namespace> {
    return made(this.spaces, service, () => new RedisNamespace(this.redis, service));
  }

  async close(): Promise<void> {
    this.spaces.clear();
    await closeRedis(this.redis);
  }

  async check(): Promise<void> {
    await this.redis.ping();
  }
}

/**
 * How lib-chan talks to Redis: no queue of commands while it is away (calls fail at once, with `storeFailed`), no
 * command sent again after a reconnect (nothing written late, behind the caller's back), every command answered or
 * failed within 5 s (a Redis cut off without a reset does not hang a handler), reconnection by itself with back-off.
 */
export const REDIS_OPTIONS = {
  lazyConnect: true,
  enableOfflineQueue: false,
  autoResendUnfulfilledCommands: false,
  maxRetriesPerRequest: 1,
  connectTimeout: 5000,
  commandTimeout: 5000,
  retryStrategy: (times: number) => Math.min(100 * 2 ** Math.min(times, 6), 5000),
} as const;

/** QUIT, or, when Redis does not answer it within a second, the connection dropped. */
export async function closeRedis(redis: Redis): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<void>((resolve) => (timer = setTimeout(resolve, 1000)));
  await Promise.race([
    redis.quit().then(
      () => undefined,
      () => undefined,
    ),
    late,
  ]);
  clearTimeout(timer);
  redis.disconnect();
}
