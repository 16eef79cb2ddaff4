/**
 * How group publishes leave this process (groups.ts): to the other server processes of a `processes` > 1 server
 * through the primary (node:cluster's IPC channel, which the primary relays), or to every server sharing a Redis store
 * through Redis pub/sub (one channel, `libchan:groups`, a subscriber connection of its own).
 */
import cluster from 'node:cluster';
import { decodedSizeLimit, msgpackCodec } from './codec/index.js';
import type { GroupBus } from './groups.js';
import { ChanError } from './errors.js';
import { GroupBacklog, groupMessageSize, type GroupMessage } from './group-backlog.js';
import type { Logger } from './log.js';
import { describeStore } from './store/store.js';

/** The bus to the other processes of this server, in a process forked by a primary. */
export function clusterBus(log: Logger): GroupBus {
  const backlog = new GroupBacklog(log, 'the other processes');
  return {
    send(b) {
      const m: GroupMessage = { t: 'group', ...b, payload: Buffer.from(b.payload).toString('base64') };
      backlog.send(groupMessageSize(m), (done) => {
        // The callback runs once the message is written, or with an error if the channel has closed.
        if (process.send) process.send(m, undefined, undefined, done);
        else done();
      });
    },
    receive(deliver, refused) {
      process.on('message', (m: Partial<GroupMessage> | null) => {
        if (m?.t !== 'group') return;
        const { origin, service, group, payload } = m;
        if (typeof origin !== 'string' || typeof service !== 'string' || typeof group !== 'string') {
          refused(new Error('a group message without its origin, service or group'));
          return;
        }
        if (typeof payload !== 'string') {
          refused(new Error('a group message without its payload'));
          return;
        }
        deliver({ origin, service, group, payload: Buffer.from(payload, 'base64') });
      });
    },
    close: async () => {},
  };
}

/** True in a process forked by a primary (a bus to its siblings is needed). */
export function hasSiblings(): boolean {
  return cluster.isWorker;
}

const CHANNEL = 'libchan:groups';
/** An envelope is decoded within the budget of a frame of its own size, or of this many bytes for a small one. */
const ENVELOPE_FLOOR = 64 * 1024;
const codec = msgpackCodec({ maxDepth: 4 });

/**
 * The bus to every server sharing the Redis at `url`. Publishes while Redis is away are lost (logged): groups are
 * messages, not storage, as with Redis pub/sub itself.
 */
export async function redisBus(url: string, log: Logger): Promise<GroupBus> {
  const { Redis } = await import('ioredis');
  const { REDIS_OPTIONS, closeRedis } = await import('./store/redis.js');
  const pub = new Redis(url, REDIS_OPTIONS);
  // The subscriber: ioredis subscribes it again after each reconnection (autoResubscribe), and a SUBSCRIBE cut off on
  // the way is sent again (safe to repeat); no command timeout (a subscriber waits, by nature).
  const sub = new Redis(url, { ...REDIS_OPTIONS, autoResendUnfulfilledCommands: true, commandTimeout: undefined });
  for (const r of [pub, sub]) r.on('error', () => {});
  try {
    await Promise.all([pub.connect(), sub.connect()]);
    await sub.subscribe(CHANNEL);
    // And once more on every reconnection, in case the automatic one was lost with a connection cut in between.
    sub.on('ready', () => {
      sub.subscribe(CHANNEL).catch((err: unknown) => log.warn({ err }, 'groups could not subscribe again'));
    });
  } catch (err) {
    await Promise.all([closeRedis(pub), closeRedis(sub)]);
    throw new ChanError(
      'badConfig',
      `groups cannot subscribe to ${CHANNEL} on ${describeStore(url)}: ${err instanceof Error ? err.message : String(err)}`,
    );
  }
  const backlog = new GroupBacklog(log, 'Redis');
  return {
    send(b) {
      const bytes = codec.encode([b.origin, b.service, b.group, Buffer.from(b.payload)], 0);
      backlog.send(bytes.length, (done) => {
        pub
          .publish(CHANNEL, bytes)
          .catch((err: unknown) => log.warn({ err }, 'a group publish did not reach Redis'))
          .finally(done);
      });
    },
    receive(deliver, refused) {
      // Anyone who can reach the Redis can publish on the channel: what is not an envelope of ours is dropped.
      sub.on('messageBuffer', (_channel: Buffer, message: Buffer) => {
        let m: unknown;
        try {
          m = codec.decode(message, decodedSizeLimit(Math.max(message.length, ENVELOPE_FLOOR)));
        } catch (err) {
          refused(err);
          return;
        }
        const [origin, service, group, payload] = Array.isArray(m) && m.length === 4 ? m : [];
        if (
          typeof origin !== 'string' ||
          typeof service !== 'string' ||
          typeof group !== 'string' ||
          !(payload instanceof Uint8Array)
        ) {
          refused(new Error(`a message on ${CHANNEL} that is not a group broadcast`));
          return;
        }
        deliver({ origin, service, group, payload });
      });
    },
    async close() {
      await Promise.all([closeRedis(pub), closeRedis(sub)]);
    },
  };
}
