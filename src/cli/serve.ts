/** `chan serve [CONF]`: runs a server on a config file until SIGINT or SIGTERM. */
import { ConfigError, loadConfigFile, type ServerConfig } from '../config/load.js';
import { createLogger } from '../log.js';
import { inCluster, joinCluster, processCount, runPrimary, takeStoreTurns, workerId } from '../cluster.js';
import { shareMetrics } from '../metrics.js';
import { startServer, type ServerStats } from '../server.js';

const DEFAULT_CONF = 'conf/lib_chan.conf';

/** The config file a command uses: the one named, else $CHAN_CONF, else conf/lib_chan.conf. */
export function confFile(arg: string | undefined): string {
  return arg ?? process.env['CHAN_CONF'] ?? DEFAULT_CONF;
}
/** The exit status when a second SIGINT or SIGTERM cuts a graceful shutdown short. */
export const EXIT_SECOND_SIGNAL = 1;

/** How often `chan serve` sums up handler crashes and service restarts (only when there were some). */
export const SUMMARY_INTERVAL = 60_000;

/**
 * One line on what crashed since the last summary, or null when nothing did: "service poison: 2 crashes;
 * service busy: 1 crash, 1 restart, down".
 */
export function crashSummary(before: ServerStats['services'], now: ServerStats['services']): string | null {
  const parts: string[] = [];
  for (const [name, s] of Object.entries(now)) {
    const b = before[name] ?? { crashes: 0, restarts: 0, status: 'up' };
    const crashes = s.crashes - b.crashes;
    const restarts = s.restarts - b.restarts;
    if (crashes === 0 && restarts === 0 && s.status === b.status) continue;
    const bits = [];
    if (crashes > 0) bits.push(`${crashes} crash${crashes === 1 ? '' : 'es'}`);
    if (restarts > 0) bits.push(`${restarts} restart${restarts === 1 ? '' : 's'}`);
    if (s.status !== b.status || s.status === 'down') bits.push(s.status);
    parts.push(`service ${name}: ${bits.join(', ')}`);
  }
  return parts.length > 0 ? parts.join('; ') : null;
}

/** The store chan serve uses when neither the config, CHAN_STORE nor --store names one: names outlive a restart. */
export const DEFAULT_SERVE_STORE = 'lmdb:data';

/** The config chan serve runs: the file's, with CHAN_* and --store over it, and the embedded store by default. */
function serveConfig(file: string, store: string | undefined): ServerConfig {
  if (store !== undefined) process.env['CHAN_STORE'] = store; // --store: over the file and the environment
  const loaded = loadConfigFile(file); // a ConfigError becomes "chan: badConfig: ..." and exit 2
  return { ...loaded, store: loaded.store ?? DEFAULT_SERVE_STORE };
}

export async function serve(confArg: string | undefined, store?: string, processes?: string): Promise<number> {
  const file = confFile(confArg);
  if (processes !== undefined) process.env['CHAN_PROCESSES'] = processes; // --processes: over the file and the env
  const config = serveConfig(file, store);
  const count = processCount(config.processes);
  if (count > 1 && !inCluster()) {
    const log = createLogger({ level: config.logLevel }).child({ role: 'primary' });
    log.info({ config: file }, 'lib-chan starting');
    return runPrimary(config, count, () => serveConfig(file, store), log);
  }
  if (inCluster()) {
    // The primary's admin port asks every process for its metrics, this one too while it starts.
    if (config.adminPort !== null) shareMetrics(null);
    // From the start: the primary relays these (Ctrl-C reaches every process of the group), and a process must not die
    // of one while it starts; only its SIGTERM and its reload message count here.
    process.on('SIGINT', () => {});
    process.on('SIGHUP', () => {});
    // Its opens of an LMDB directory take turns with its siblings' (store/lmdb-gate.ts).
    takeStoreTurns();
  }
  const base = createLogger({ level: config.logLevel });
  // A server process of several says which it is on every line.
  const log = inCluster() ? base.child({ worker: workerId() }) : base;
  log.info({ config: file }, 'lib-chan starting');
  const server = await startServer(config, { logger: log });
  // New secrets, verifiers and certificates for new connections; a broken file changes nothing.
  const reload = (): void => {
    let next: ServerConfig;
    try {
      next = serveConfig(file, store);
    } catch (err) {
      const problems = err instanceof ConfigError ? err.problems.map(String) : [String(err)];
      log.error({ problems }, 'reload refused: the configuration has problems; the running settings stay');
      return;
    }
    server.reload(next).then(
      (notApplied) => {
        for (const n of notApplied) log.warn(`not applied until a restart: ${n}`);
      },
      (err: unknown) => log.error({ err }, 'reload failed; the running settings stay'),
    );
  };
  if (inCluster()) joinCluster(server, reload);
  // An error that escapes a handler's awaited code is caught by the runtime; one thrown from a callback nobody awaits
  // (a timer in an inline handler) cannot be tied to a connection. A rejected promise nobody awaits is logged and the
  // server carries on; an uncaught exception leaves the process in an unknown state, so it is logged and the server
  // exits (run such code with {isolation, worker}).
  process.on('unhandledRejection', (err) =>
    log.error({ err }, 'a promise nobody awaited was rejected (from a handler?); carrying on'),
  );
  process.on('uncaughtException', (err) => {
    log.fatal({ err }, 'uncaught exception outside any handler; exiting');
    process.exit(70);
  });
  let last = server.stats().services;
  const summary = setInterval(() => {
    const now = server.stats().services;
    const line = crashSummary(last, now);
    if (line) log.warn({ services: now }, `in the last minute: ${line}`);
    last = now;
  }, SUMMARY_INTERVAL);
  summary.unref();
  return new Promise((resolve) => {
    let stopping = false;
    const onSignal = (signal: NodeJS.Signals): void => {
      if (stopping) {
        // In a process of several, the primary decides when enough is enough (it ends us with SIGKILL): a signal
        // sent to the whole process group and then relayed by the primary arrives twice, and is one request.
        if (inCluster()) return;
        log.warn({ signal }, 'second signal: exiting at once');
        resolve(EXIT_SECOND_SIGNAL);
        return;
      }
      stopping = true;
      log.info({ signal }, 'shutting down');
      void server.close().then(() => resolve(0));
    };
    process.on('SIGTERM', onSignal);
    if (!inCluster()) {
      process.on('SIGINT', onSignal);
      process.on('SIGHUP', reload);
    }
  });
}
