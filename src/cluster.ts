/**
 * Every core: `chan serve` with `processes` > 1. A primary process forks N server processes (node:cluster), which
 * serve the same port (the primary hands each new connection to the next process), and supervises them as OTP would:
 * a process that dies is replaced at once, up to `restart_intensity` times in `restart_period`; past that, after
 * `service_retry_delay`, doubling up to `service_retry_max_delay` (restart-policy.ts). The others keep serving
 * meanwhile, and clients with `reconnect` come back on their own.
 *
 * The primary serves nothing itself. It says when every process listens, forwards SIGTERM and SIGINT (each process
 * drains as one server would), validates the config once on SIGHUP and has every process reload it, and keeps what
 * must be global: failure throttling. Each process tells the primary of each failed handshake; the primary counts them
 * for all processes, and when an address reaches `auth_max_failures` it locks the address out in every process.
 *
 * It also takes the processes' opens of an LMDB directory in turn (store/lmdb-gate.ts says why): a process about to
 * open it asks (`storeOpen?`); the primary asks every other process that has it open to hold its writes (`storeHold`,
 * answered by `storeHeld` once their writes in flight are committed), then lets the opener open (`storeOpen!`), and
 * releases the others (`storeRelease`) when it says it has (`storeOpened`) or exits. One that does not answer in time
 * (STORE_TURN_TIMEOUT past handler_block_timeout) is ended (SIGKILL), as one that hangs would stall every write.
 *
 * Messages, primary <-> process: `{t: 'listening', port}`, `{t: 'authFail', address}`, `{t: 'storeOpen?'}`,
 * `{t: 'storeHeld', turn}` and `{t: 'storeOpened'}` up; `{t: 'lock', address, ms}`, `{t: 'reload'}`,
 * `{t: 'storeHold', turn}`, `{t: 'storeOpen!'}` and `{t: 'storeRelease'}` down.
 */
import cluster, { type Worker } from 'node:cluster';
import { availableParallelism } from 'node:os';
import { AuthThrottle, throttleSettings } from './auth/throttle.js';
import { ChanError } from './errors.js';
import { GroupBacklog, groupMessageSize, type GroupMessage } from './group-backlog.js';
import type { Logger } from './log.js';
import { RestartPolicy } from './restart-policy.js';
import type { ChanServer } from './server.js';
import type { ServerConfig } from './config/load.js';
import { openStore } from './store/index.js';
import { hold, release, setOpenGuard } from './store/lmdb-gate.js';
import { MAX_TIMER_MS } from './inbox.js';
import { describeStore } from './store/store.js';
import { startAdmin } from './admin.js';
import { ClusterMetrics, emptyStatus, mergeStatus, shareMetrics, type StatusReport } from './metrics.js';
import { SERVER_NAME } from './version.js';

type Up =
  | { t: 'listening'; port: number }
  | { t: 'authFail'; address: string }
  | { t: 'storeOpen?' }
  | { t: 'storeHeld'; turn: number }
  | { t: 'storeOpened' }
  | { t: 'admin!'; id: number; value: unknown }
  | GroupMessage;
/** Messages from the primary to a server process. */
export type Down =
  | { t: 'lock'; address: string; ms: number }
  | { t: 'reload' }
  | { t: 'storeHold'; turn: number }
  | { t: 'storeOpen!' }
  | { t: 'storeRelease' }
  /** The primary's admin port asks each process for its status or its readiness. */
  | { t: 'admin?'; id: number; what: 'status' | 'ready' };

/**
 * How long the primary's admin port waits for a process to answer, ms: longer than a process waits for its store
 * (READY_STORE_TIMEOUT, 2 s), so that a store that hangs is reported as such, not as a process that did not answer.
 */
const ADMIN_ASK_TIMEOUT = 3000;

/**
 * How long, ms, the primary waits for a process to hold its writes (its writes in flight committed) while a sibling
 * opens the LMDB directory, and for the sibling to open it, past `handler_block_timeout` (a worker thread blocked with
 * writes counted is ended by its watchdog first, and forgotten): one that takes longer is ended with SIGKILL (and
 * replaced), since every write of the server waits on it meanwhile. A hold takes a commit's time, an open milliseconds.
 */
export const STORE_TURN_TIMEOUT = 10_000;

/** The number of server processes `processes` asks for (`auto`: one per CPU). */
export function processCount(processes: number | 'auto'): number {
  return processes === 'auto' ? availableParallelism() : processes;
}

/** Set in the environment of the server processes a primary forks. */
export const UNDER_PRIMARY = 'LIB_CHAN_UNDER_PRIMARY';

/** True in a server process forked by a primary. */
export function inCluster(): boolean {
  return cluster.isWorker;
}

/** Which server process this is (1, 2, ...; a replacement gets the next number), in one forked by a primary. */
export function workerId(): number | undefined {
  return cluster.worker?.id;
}

/**
 * The primary: forks `count` server processes (each runs the same command line, and so loads the same config) and
 * supervises them until SIGTERM or SIGINT. `load` re-reads the config (SIGHUP): it throws when the file has problems.
 * Resolves with the exit status.
 */
export async function runPrimary(
  config: ServerConfig,
  count: number,
  load: () => ServerConfig,
  log: Logger,
): Promise<number> {
  const url = config.store ?? 'memory:';
  if (url === 'memory:')
    throw new ChanError(
      'badConfig',
      `store memory: cannot be shared by ${count} processes (each would keep names of its own): use lmdb:DIR or redis://HOST:PORT/DB, or processes 1`,
    );
  // Opened once here, and closed: a store the processes could not open refuses the server, in one line, before any
  // process starts (rather than each process failing and being replaced, forever).
  await (await openStore(url)).close();
  const throttle = new AuthThrottle(throttleSettings(config));
  const policy = new RestartPolicy(config);
  const listening = new Map<number, number>();
  /** Processes forked and not yet exited (cluster.workers can keep one past its exit until its channel closes). */
  const live = new Set<number>();
  let started = false;
  let stopping = false;
  let retrying = false;
  /** Replacements waiting out their back-off, one for each process that died meanwhile. */
  const retryTimers = new Set<NodeJS.Timeout>();
  const startedAt = Date.now();
  /** The admin port's questions to the processes, waiting for their answers. */
  const asks = new Map<number, (value: unknown) => void>();
  let nextAsk = 1;
  // At most what a timer can wait: past it, Node would fire it at once.
  const turns = storeTurns(log, Math.min(STORE_TURN_TIMEOUT + config.handlerBlockTimeout, MAX_TIMER_MS));

  const send = (w: Worker | undefined, m: Down | GroupMessage): void => {
    // A process whose channel has closed (it is exiting) is skipped: the message could only be lost.
    if (w?.isConnected()) w.send(m);
  };
  /** The group messages waiting on the channel to each process, by its id. */
  const groupBacklogs = new Map<number, GroupBacklog>();
  const broadcast = (m: Down): void => {
    for (const w of Object.values(cluster.workers ?? {})) send(w, m);
  };

  /** Asks every process `what`: its answer, or null from one that does not answer in time. */
  const ask = (what: 'status' | 'ready'): Promise<unknown[]> =>
    Promise.all(
      Object.values(cluster.workers ?? {})
        .filter((w): w is Worker => w !== undefined && listening.has(w.id))
        .map(
          (w) =>
            new Promise<unknown>((resolve) => {
              const id = nextAsk++;
              const timer = setTimeout(() => {
                asks.delete(id);
                resolve(null);
              }, ADMIN_ASK_TIMEOUT);
              asks.set(id, (value) => {
                clearTimeout(timer);
                resolve(value);
              });
              send(w, { t: 'admin?', id, what });
            }),
        ),
    );
  // The admin port is the primary's: one for all the processes, their metrics aggregated, their status merged.
  const metrics = config.adminPort === null ? null : new ClusterMetrics(() => listening.size);
  const admin =
    config.adminPort === null || metrics === null
      ? null
      : await startAdmin(
          config.adminHost,
          config.adminPort,
          config.adminToken,
          {
            metrics: () => metrics.text(),
            readiness: async () => {
              const problems: string[] = [];
              if (stopping) problems.push('shutting down');
              if (listening.size < count)
                problems.push(`${count - listening.size} of ${count} server processes are not listening`);
              const answers = await ask('ready');
              answers.forEach((a, i) => {
                if (a === null) problems.push(`server process ${i + 1} did not answer`);
                else for (const p of a as string[]) problems.push(`server process ${i + 1}: ${p}`);
              });
              return problems;
            },
            status: async () =>
              mergeStatus(
                (await ask('status')).filter((r): r is StatusReport => r !== null),
                { pid: process.pid, uptime: Math.round((Date.now() - startedAt) / 1000) },
              ) ??
              emptyStatus({
                server: SERVER_NAME,
                pid: process.pid,
                uptime: Math.round((Date.now() - startedAt) / 1000),
                store: describeStore(url),
                closing: stopping,
              }),
          },
          log,
        );
  if (admin) log.info({ host: admin.host, port: admin.port }, 'admin port listening (for every process)');
  const status = await new Promise<number>((resolve) => {
    const fork = (): Worker => {
      // The variable tells the process that a primary serves the admin port (not any cluster it might run in).
      const w = cluster.fork({ [UNDER_PRIMARY]: '1' });
      live.add(w.id);
      w.on('error', (err) => log.warn({ err, worker: w.id }, 'a message to a server process was lost'));
      w.on('message', (m: Up) => {
        if (w.isDead()) return; // a message that comes after its process's exit
        if (m.t === 'admin!') {
          asks.get(m.id)?.(m.value);
          asks.delete(m.id);
        } else if (m.t === 'storeOpen?' || m.t === 'storeHeld' || m.t === 'storeOpened') {
          turns.message(w, m);
        } else if (m.t === 'listening') {
          listening.set(w.id, m.port);
          // A process that starts late learns the lockouts in force.
          for (const [address, ms] of throttle.activeLocks()) send(w, { t: 'lock', address, ms });
          if (retrying) {
            retrying = false;
            policy.recovered();
          }
          if (listening.size === count) {
            started = true;
            log.info({ port: m.port, processes: count, pids: workerPids() }, 'every process is listening');
          }
        } else if (m.t === 'group') {
          // A publish to a group: every other process delivers it to its own members (within each channel's backlog).
          for (const other of Object.values(cluster.workers ?? {})) {
            // (Not one that has exited and is still listed until its channel closes: its backlog is gone.)
            if (!other || other === w || !live.has(other.id) || !other.isConnected()) continue;
            let backlog = groupBacklogs.get(other.id);
            if (!backlog) groupBacklogs.set(other.id, (backlog = new GroupBacklog(log, `process ${other.id}`)));
            backlog.send(groupMessageSize(m), (done) => other.send(m, undefined, undefined, done));
          }
        } else if (m.t === 'authFail' && throttle.fail(m.address)) {
          broadcast({ t: 'lock', address: m.address, ms: throttle.settings.lockout });
          log.warn({ peer: m.address, lockout: throttle.settings.lockout }, 'address locked out in every process');
        }
      });
      return w;
    };
    const stopAll = (status: number): void => {
      stopping = true;
      exitStatus = status;
      for (const t of retryTimers) clearTimeout(t);
      if (live.size === 0) resolve(status);
      for (const w of Object.values(cluster.workers ?? {})) if (w && live.has(w.id)) w.process.kill('SIGTERM');
    };
    let exitStatus = 0;
    cluster.on('exit', (w, code, signal) => {
      groupBacklogs.delete(w.id);
      const wasListening = listening.delete(w.id);
      live.delete(w.id);
      turns.exited(w);
      if (stopping) {
        if (live.size === 0) resolve(exitStatus);
        return;
      }
      const how = signal ? `signal ${signal}` : `code ${code}`;
      if (!started && !wasListening) {
        // It could not start (its one line says why): the server does not start, as with one process.
        log.error({ worker: w.id, code, signal }, `a server process could not start (${how}); stopping`);
        stopAll(code || 1);
        return;
      }
      if (retrying && !wasListening) policy.tryFailed(); // a retry that died before it listened
      const decision = retrying ? { action: 'down' as const } : policy.failed(Date.now());
      metrics?.restarted();
      if (decision.action === 'restart') {
        log.warn({ worker: w.id, pid: w.process.pid, code, signal }, `server process died (${how}); replacing it`);
        fork();
        return;
      }
      const delay = policy.retryDelay();
      retrying = true;
      log.error(
        { worker: w.id, code, signal, delay },
        `server process died (${how}) after ${config.restartIntensity} restarts within restart_period; replacing it in ${delay} ms`,
      );
      const timer = setTimeout(() => {
        retryTimers.delete(timer);
        if (!stopping) fork();
      }, delay);
      retryTimers.add(timer);
    });
    const stop = (signal: NodeJS.Signals): void => {
      if (stopping) {
        log.warn({ signal }, 'second signal: ending every process at once');
        for (const w of Object.values(cluster.workers ?? {})) w?.process.kill('SIGKILL');
        resolve(1);
        return;
      }
      log.info({ signal }, 'shutting down every process');
      stopAll(0);
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
    process.on('SIGHUP', () => {
      // Validated once, here: a broken file changes nothing anywhere; a good one is reloaded by every process.
      let next: ServerConfig;
      try {
        next = load();
      } catch (err) {
        log.error({ err }, 'reload refused: the configuration has problems; every process keeps its settings');
        return;
      }
      throttle.settings = throttleSettings(next);
      broadcast({ t: 'reload' });
    });
    log.info({ processes: count, store: describeStore(url) }, `starting ${count} server processes`);
    for (let i = 0; i < count; i++) fork();
  });
  await admin?.close();
  return status;
}

/** What the turns need of a server process (a cluster Worker; a test's stand-in). */
export interface TurnTaker {
  readonly id: number;
  isDead(): boolean;
  isConnected(): boolean;
  send(m: Down): unknown;
  readonly process: { readonly pid?: number | undefined; kill(signal?: NodeJS.Signals | number): boolean };
}

/** The store messages a server process sends the primary. */
export type TurnMessage = Extract<Up, { t: 'storeOpen?' | 'storeHeld' | 'storeOpened' }>;

/**
 * @internal The primary's side of the LMDB open turns (exported for its tests): one process opens at a time, while
 * every other one that has the directory open holds its writes. `message` takes the processes' store messages,
 * `exited` a process's exit; a process that has not answered `timeout` ms after its part began is ended (SIGKILL).
 */
export function storeTurns(
  log: Logger,
  timeout: number,
): {
  message: (w: TurnTaker, m: TurnMessage) => void;
  exited: (w: TurnTaker) => void;
} {
  /** The processes that have the directory open. */
  const opened = new Map<number, TurnTaker>();
  /** The processes waiting for their turn to open it, first come first served. */
  const queue: TurnTaker[] = [];
  /** The turn under way: who opens, which processes it holds (and which have not said they hold yet). */
  let current: {
    turn: number;
    opener: TurnTaker;
    held: TurnTaker[];
    unanswered: Set<number>;
    granted: boolean;
    timer: NodeJS.Timeout;
  } | null = null;
  let turns = 0;

  const send = (w: TurnTaker, m: Down): void => {
    if (w.isConnected()) w.send(m);
  };
  /** Ends a process that has not answered in time: every write of the server waits on it. */
  const overdue = (w: TurnTaker, what: string): void => {
    log.error({ worker: w.id, pid: w.process.pid, timeout }, `server process did not ${what} in time; ending it`);
    w.process.kill('SIGKILL');
  };
  const next = (): void => {
    while (current === null && queue.length > 0) {
      const opener = queue.shift() as TurnTaker;
      if (opener.isDead()) continue;
      // One whose channel has closed (it is exiting) cannot be asked.
      const held = [...opened.values()].filter((w) => w !== opener && !w.isDead() && w.isConnected());
      const turn = ++turns;
      current = {
        turn,
        opener,
        held,
        unanswered: new Set(held.map((w) => w.id)),
        granted: false,
        timer: setTimeout(() => {
          if (current?.turn !== turn) return;
          if (current.granted) overdue(opener, 'open the store');
          else for (const w of held) if (current.unanswered.has(w.id)) overdue(w, 'hold its writes');
        }, timeout),
      };
      for (const w of held) send(w, { t: 'storeHold', turn });
      grantIfHeld();
    }
  };
  const grantIfHeld = (): void => {
    if (current === null || current.granted || current.unanswered.size > 0) return;
    current.granted = true;
    current.timer.refresh();
    send(current.opener, { t: 'storeOpen!' });
  };
  const finish = (): void => {
    if (current === null) return;
    clearTimeout(current.timer);
    for (const w of current.held) send(w, { t: 'storeRelease' });
    current = null;
    next();
  };
  return {
    message(w, m) {
      if (m.t === 'storeOpen?') {
        queue.push(w);
        next();
      } else if (m.t === 'storeHeld') {
        if (current?.turn !== m.turn) return; // the answer to a turn that has ended
        current.unanswered.delete(w.id);
        grantIfHeld();
      } else if (current?.opener === w) {
        opened.set(w.id, w);
        finish();
      }
    },
    exited(w) {
      opened.delete(w.id);
      const queued = queue.indexOf(w);
      if (queued >= 0) queue.splice(queued, 1);
      if (current === null) return;
      if (current.opener === w) finish();
      else if (current.unanswered.delete(w.id)) grantIfHeld();
    },
  };
}

/**
 * In a server process, before it opens its store: opening an LMDB directory waits for this process's turn (the
 * primary holds the others' writes meanwhile), and this process holds its own writes when a sibling's turn comes.
 */
export function takeStoreTurns(): void {
  const send = (m: Up): void => {
    process.send?.(m);
  };
  /** The opens waiting for their turn, in the order they asked (the primary answers in that order). */
  const granted: (() => void)[] = [];
  process.on('message', (m: Down) => {
    if (m.t === 'storeOpen!') granted.shift()?.();
    else if (m.t === 'storeHold') {
      const turn = m.turn;
      void hold().then(() => send({ t: 'storeHeld', turn }));
    } else if (m.t === 'storeRelease') release();
  });
  setOpenGuard(
    () =>
      new Promise((resolve) => {
        granted.push(() => resolve(() => send({ t: 'storeOpened' })));
        send({ t: 'storeOpen?' });
      }),
  );
}

function workerPids(): number[] {
  return Object.values(cluster.workers ?? {}).flatMap((w) => (w?.process.pid === undefined ? [] : [w.process.pid]));
}

/**
 * In a server process: tells the primary it listens and of every failed handshake, applies the lockouts the primary
 * decides, and reloads (with `reload`) when the primary asks.
 */
export function joinCluster(server: ChanServer, reload: () => void): void {
  const send = (m: Up): void => {
    process.send?.(m);
  };
  server.throttle.onFailure = (address) => send({ t: 'authFail', address });
  const registry = server.metricsRegistry;
  if (registry) shareMetrics(registry);
  process.on('message', (m: Down) => {
    if (m.t === 'lock') server.throttle.lock(m.address, m.ms);
    else if (m.t === 'reload') reload();
    else if (m.t === 'admin?') {
      const answer = m.what === 'status' ? Promise.resolve(server.status()) : server.readiness();
      void answer.then(
        (value) => send({ t: 'admin!', id: m.id, value }),
        (err: unknown) => send({ t: 'admin!', id: m.id, value: [`failed: ${String(err)}`] }),
      );
    }
  });
  send({ t: 'listening', port: server.port });
}
