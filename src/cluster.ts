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
 * Messages, primary <-> process: `{t: 'listening', port}` and `{t: 'authFail', address}` up; `{t: 'lock', address,
 * ms}` and `{t: 'reload'}` down.
 */
import cluster, { type Worker } from 'node:cluster';
import { availableParallelism } from 'node:os';
import { AuthThrottle } from './auth/throttle.js';
import { ChanError } from './errors.js';
import type { GroupMessage } from './group-bus.js';
import type { Logger } from './log.js';
import { RestartPolicy } from './restart-policy.js';
import type { ChanServer } from './server.js';
import type { ServerConfig } from './config/load.js';

type Up = { t: 'listening'; port: number } | { t: 'authFail'; address: string } | GroupMessage;
type Down = { t: 'lock'; address: string; ms: number } | { t: 'reload' };

/** The number of server processes `processes` asks for (`auto`: one per CPU). */
export function processCount(processes: number | 'auto'): number {
  return processes === 'auto' ? availableParallelism() : processes;
}

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
export function runPrimary(
  config: ServerConfig,
  count: number,
  load: () => ServerConfig,
  log: Logger,
): Promise<number> {
  if ((config.store ?? 'memory:') === 'memory:')
    throw new ChanError(
      'badConfig',
      `store memory: cannot be shared by ${count} processes (each would keep names of its own): use lmdb:DIR or redis://HOST:PORT/DB, or processes 1`,
    );
  const throttle = new AuthThrottle({
    maxFailures: config.authMaxFailures,
    window: config.authFailureWindow,
    lockout: config.authLockout,
  });
  const policy = new RestartPolicy(config);
  const listening = new Map<number, number>();
  let stopping = false;
  let retryTimer: NodeJS.Timeout | null = null;

  const broadcast = (m: Down): void => {
    for (const w of Object.values(cluster.workers ?? {})) w?.send(m);
  };
  const fork = (): Worker => {
    const w = cluster.fork();
    w.on('message', (m: Up) => {
      if (m.t === 'listening') {
        listening.set(w.id, m.port);
        if (listening.size === count)
          log.info({ port: m.port, processes: count, pids: workerPids() }, 'every process is listening');
      } else if (m.t === 'group') {
        // A publish to a group: every other process delivers it to its own members.
        for (const other of Object.values(cluster.workers ?? {})) if (other && other !== w) other.send(m);
      } else if (m.t === 'authFail' && throttle.fail(m.address)) {
        broadcast({ t: 'lock', address: m.address, ms: config.authLockout });
        log.warn({ peer: m.address, lockout: config.authLockout }, 'address locked out in every process');
      }
    });
    return w;
  };

  return new Promise((resolve) => {
    cluster.on('exit', (w, code, signal) => {
      listening.delete(w.id);
      if (stopping) {
        if (Object.keys(cluster.workers ?? {}).length === 0) resolve(0);
        return;
      }
      const decision = policy.failed(Date.now());
      const how = signal ? `signal ${signal}` : `code ${code}`;
      if (decision.action === 'restart') {
        log.warn({ worker: w.id, pid: w.process.pid, code, signal }, `server process died (${how}); replacing it`);
        fork();
        return;
      }
      const delay = policy.retryDelay();
      policy.tryFailed();
      log.error(
        { worker: w.id, code, signal, delay },
        `server process died (${how}) after ${config.restartIntensity} restarts within restart_period; replacing it in ${delay} ms`,
      );
      retryTimer = setTimeout(() => {
        retryTimer = null;
        if (!stopping) fork();
      }, delay);
    });
    const stop = (signal: NodeJS.Signals): void => {
      if (stopping) {
        log.warn({ signal }, 'second signal: ending every process at once');
        for (const w of Object.values(cluster.workers ?? {})) w?.process.kill('SIGKILL');
        resolve(1);
        return;
      }
      stopping = true;
      if (retryTimer) clearTimeout(retryTimer);
      log.info({ signal }, 'shutting down every process');
      const workers = Object.values(cluster.workers ?? {});
      if (workers.length === 0) resolve(0);
      for (const w of workers) w?.process.kill('SIGTERM');
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
    process.on('SIGHUP', () => {
      // Validated once, here: a broken file changes nothing anywhere; a good one is reloaded by every process.
      try {
        load();
      } catch (err) {
        log.error({ err }, 'reload refused: the configuration has problems; every process keeps its settings');
        return;
      }
      broadcast({ t: 'reload' });
    });
    log.info({ processes: count, store: config.store }, `starting ${count} server processes`);
    for (let i = 0; i < count; i++) fork();
  });
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
  process.on('message', (m: Down) => {
    if (m.t === 'lock') server.throttle.lock(m.address, m.ms);
    else if (m.t === 'reload') reload();
  });
  send({ t: 'listening', port: server.port });
}
