/**
 * The listener (lib_chan's server side): one port, many named services. `startServer` validates the configuration,
 * starts every service, and only then listens. It accepts connections within `max_connections` and the fair share of
 * places in the handshake (admission.ts), hands each to a connection (connection.ts: handshake, then the handler
 * process), and owns what is server-wide: the directory of services handshakes read (swapped whole by `reload`), failure
 * throttling, the byte budget of all connections, stats, and shutdown.
 */
import { Socket } from 'node:net';
import path from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import cluster from 'node:cluster';
import type { Duplex } from 'node:stream';
import { etfCodec, msgpackCodec, type Codec } from './codec/index.js';
import { Admission, type Ticket } from './admission.js';
import { AuthThrottle, throttleSettings } from './auth/throttle.js';
import { QueueBudget } from './budget.js';
import { loadConfigFile, type ServerConfig, type ServerSettings, type TlsConfig } from './config/load.js';
import { ServerConnection, libChanPort, type ConnectionHost, type PortProtocol } from './connection.js';
import { DEFAULTS, OPTIONS } from './config/options.js';
import { ChanError } from './errors.js';
import { MAX_FRAME_LIMIT, MIN_MAX_FRAME_SIZE, isFrameLimit } from './protocol.js';
import { ThrottledLog, silentLogger, type Logger } from './log.js';
import { MiddleMan, type MessageSink } from './mm.js';
import { ORIGINAL_SERVER, OriginalServerHandshake, originalRefusal } from './original.js';
import { NO_OBSERVER, ServerMetrics, isRefusal, type Observer, type StatusReport } from './metrics.js';
import { startAdmin, type AdminServer, type AdminSource } from './admin.js';
import { observedStore } from './store/observed.js';
import { SERVER_NAME } from './version.js';
import type { MMStats } from './mm.js';
import { ServiceDirectory, type DirectoryEntry } from './directory.js';
import type { ServiceDefinition } from './modules.js';
import { startServices, stopServices, type Service, type ServiceStats } from './supervisor.js';
import { clusterBus, hasSiblings, redisBus } from './group-bus.js';
import { Groups } from './groups.js';
import { openStore } from './store/index.js';
import { describeStore, type Store } from './store/store.js';
import {
  certificateProblem,
  expiresSoon,
  tlsServerTransport,
  type TlsServerSettings,
  type TlsTransport,
} from './tls.js';
import { tcp, type Listening, type PeerInfo, type Transport } from './transport.js';

export interface ServerStats {
  /** Connections open, in the handshake or running a handler. */
  connections: number;
  /** Connections in the handshake (TLS handshakes in progress included). */
  unauthenticated: number;
  /** Connections refused at max_connections, max_unauthenticated or max_unauthenticated_per_address since the start. */
  refused: number;
  /** Connections pushed out of the handshake by newcomers from addresses holding fewer, since the start. */
  evicted: number;
  /** Messages waiting in handlers' mailboxes. */
  queuedMessages: number;
  /** Bytes waiting to be sent to clients. */
  queuedBytes: number;
  /**
   * What every connection together makes the server hold, bytes: mailboxes (decoded size), frames being received,
   * bytes waiting to be sent, rpcs waiting for an answer (64 bytes each, in steps of 64). `max_queued_bytes` bounds it.
   */
  heldBytes: number;
  /** Connections dropped for holding the most while the server was over max_queued_bytes, since the start. */
  shed: number;
  /** Per service: up or down, handler crashes, service restarts. */
  services: Record<string, ServiceStats>;
}

/** Everything `startServer` needs; every setting left out takes its value from {@link DEFAULTS}. */
export interface ServerOptions extends Partial<ServerSettings> {
  port: number;
  host?: string;
  services: ServiceDefinition[];
  codePath?: readonly string[];
  /** The log level for worker threads (default: the logger's). */
  logLevel?: string;
  /** TLS for the port (PEM texts); plain TCP when absent. */
  tls?: TlsConfig | null;
  /** Where the server logs; silent unless given (`chan serve` gives one). */
  logger?: Logger;
  transport?: Transport;
}

// Every setting must have a default: this fails to compile otherwise.
const everySettingHasADefault: Exclude<keyof ServerSettings, keyof typeof DEFAULTS> extends never ? true : never = true;
void everySettingHasADefault;

/** Every setting: the one given, or its default. (The settings are the DEFAULTS but for where to listen and log.) */
function serverSettings(options: ServerOptions): ServerSettings {
  const { host: _host, codePath: _codePath, logLevel: _logLevel, ...defaults } = DEFAULTS;
  const given = Object.entries(options).filter(([key, value]) => value !== undefined && key in defaults);
  return { ...defaults, ...Object.fromEntries(given) };
}

/**
 * Starts a server from a config file's path, a loaded {@link ServerConfig}, or {@link ServerOptions}. Resolves once it
 * listens; rejects with a `badConfig` ChanError (nothing started) or the listen error.
 */
export async function startServer(
  config: string | ServerConfig | ServerOptions,
  extra: { logger?: Logger } = {},
): Promise<ChanServer> {
  const options: ServerOptions = typeof config === 'string' ? loadConfigFile(config) : config;
  const log = extra.logger ?? options.logger ?? silentLogger;
  if (options.tls) checkCertificate(options.tls, log);
  const settings = serverSettings(options);
  checkFrameLimits(settings);
  const storeUrl = settings.store ?? 'memory:';
  // Someone watches only with an admin port: the metrics, and the store's operations timed for them.
  const metrics = settings.adminPort === null ? null : new ServerMetrics();
  const observer = metrics ?? NO_OBSERVER;
  const opened = await openStore(storeUrl);
  const store = metrics ? observedStore(opened, storeUrl.split(':')[0] ?? 'store', metrics) : opened;
  log.info({ store: store.description }, 'store opened');
  const supervision = { ...settings, logLevel: options.logLevel ?? (log.level as string), storeUrl };
  let services: Service[] = [];
  let server: ChanServer;
  let groups: Groups | null = null;
  try {
    // Publishes reach the servers sharing a Redis store through Redis, the other processes of this one through the
    // primary; a server alone keeps them in the process.
    const bus = storeUrl.startsWith('redis') ? await redisBus(storeUrl, log) : hasSiblings() ? clusterBus(log) : null;
    groups = new Groups(bus, log, settings);
    services = await startServices(
      options.services,
      options.codePath ?? DEFAULTS.codePath,
      supervision,
      log,
      store,
      groups,
    );
    for (const s of services) s.observer = observer;
    const byName = new Map(services.map((s) => [s.name, s]));
    const directory = await ServiceDirectory.build(options.services, byName);
    server = new ChanServer(options, settings, byName, directory, store, groups, log, metrics);
    await server.listen(options.host ?? DEFAULTS.host, options.port);
  } catch (err) {
    await stopServices(services, 0);
    await groups?.close();
    await store.close();
    throw err;
  }
  return server;
}

/**
 * The options a reload applies (the throttling), or reports in a sentence of its own (the port, the store, the Erlang
 * port and host); TLS's are the `tls.` ones.
 */
const RELOADED_APART: ReadonlySet<string> = new Set([
  'authMaxFailures',
  'authFailureWindow',
  'authLockout',
  'port',
  'store',
  'erlangPort',
  'erlangHost',
]);

export class ChanServer implements ConnectionHost {
  private listening: Listening | null = null;
  /** The admin port (admin_port), when there is one. */
  private admin: AdminServer | null = null;
  /** Told of handshakes, closes, crashes and rpc times: the admin port's metrics, or nobody. */
  readonly observer: Observer;
  private readonly startedAt = Date.now();
  /** The Erlang port (erlang_port), when there is one. */
  private erlangListening: Listening | null = null;

  private readonly connections = new Set<ServerConnection>();
  private nextId = 1;
  private closing: Promise<void> | null = null;
  readonly codec: Codec;
  /** What the main port speaks (lib-chan's protocol), and the Erlang port (the original lib_chan's). */
  private readonly mainProtocol: PortProtocol;
  private readonly erlangProtocol: PortProtocol;
  private readonly transport: Transport;
  private readonly tlsTransport: TlsTransport | null = null;
  /** @internal Failed handshakes per peer address. */
  readonly throttle: AuthThrottle;
  /** @internal What all connections hold together (max_queued_bytes). */
  readonly budget: QueueBudget;
  /** @internal Places for connections in the handshake, shared fairly by address. */
  readonly admission: Admission;
  private refusedTotal = 0;
  private refusals: ThrottledLog | null = null;
  /** Refused connections being told why (until their sockets close). */
  private refusing = 0;
  /** What a reload compares with, beside the settings: where the server listens, loads code from, and logs at. */
  private readonly startedWith: ReadonlyMap<string, unknown>;

  /** Use {@link startServer}. */
  constructor(
    options: ServerOptions,
    /** The limits and timings in force (SIGHUP may change the throttling ones). */
    readonly settings: ServerSettings,
    private readonly services: ReadonlyMap<string, Service>,
    /** What handshakes read of the services: replaced whole by a reload. */
    private directory: ServiceDirectory,
    /** Where the services keep what they store; closed last. */
    private readonly store: Store,
    private readonly groups: Groups,
    readonly log: Logger,
    /** The admin port's metrics (null without one). */
    private readonly metrics: ServerMetrics | null = null,
  ) {
    const startedWith = new Map<string, unknown>([
      ['host', options.host ?? DEFAULTS.host],
      ['codePath', resolvedPaths(options.codePath ?? DEFAULTS.codePath)],
    ]);
    // (A server given a logger and no level leaves the level to that logger: a reload has nothing to compare.)
    if (options.logLevel !== undefined) startedWith.set('logLevel', options.logLevel);
    this.startedWith = startedWith;
    this.observer = metrics ?? NO_OBSERVER;
    metrics?.watch({
      connections: () => this.connectionSnapshots(),
      services: () => this.serviceStats(),
      held: () => this.held(),
      throttledAddresses: () => this.throttle.lockedOut,
    });
    this.codec = msgpackCodec({ maxDepth: settings.maxDepth });
    this.mainProtocol = libChanPort(this.codec);
    this.erlangProtocol = {
      codec: etfCodec({ maxDepth: settings.maxDepth }),
      dialect: ORIGINAL_SERVER,
      heartbeats: false,
      // An Erlang peer states no limit: it is sent nothing larger than this server accepts.
      peerMaxFrameSize: settings.maxFrameSize,
      handshake: (host, peer) =>
        new OriginalServerHandshake({
          lookup: (name) => host.auth(name),
          peer: { address: peer.address },
          throttle: host.throttle,
        }),
    };
    this.throttle = new AuthThrottle(throttleSettings(settings));
    this.budget = new QueueBudget(settings.maxQueuedBytes);
    this.admission = new Admission(settings.maxUnauthenticated, settings.maxUnauthenticatedPerAddress);
    if (options.tls) {
      this.tlsTransport = tlsServerTransport(this.tlsSettings(options.tls), log, (address, evict) =>
        this.admission.admit(address, evict),
      );
      this.transport = this.tlsTransport;
    } else {
      this.transport = options.transport ?? tcp;
    }
  }

  private tlsSettings(t: TlsConfig): TlsServerSettings {
    return {
      cert: t.cert,
      key: t.key,
      ...(t.ca ? { ca: t.ca } : {}),
      verifyClient: t.verifyClient,
      minVersion: t.minVersion,
      handshakeTimeout: this.settings.tlsHandshakeTimeout,
      maxRefusing: this.settings.maxUnauthenticated,
    };
  }

  /** True when the port speaks TLS. */
  get tls(): boolean {
    return this.tlsTransport !== null;
  }

  /**
   * Applies a changed configuration to new connections (what SIGHUP does): service secrets and verifiers, allow_cn,
   * the TLS certificates and CA, and failure throttling. Open connections carry on as they are. Every other change
   * needs a restart (the port, the host, TLS on or off, services added, removed or given another module, the limits,
   * timings and other options) and is not applied; each is returned as a sentence.
   */
  async reload(config: ServerConfig): Promise<string[]> {
    const notApplied: string[] = [];
    if (config.port !== 0 && config.port !== this.port)
      notApplied.push(`port ${config.port}: restart to listen on another port`);
    if ((config.store ?? 'memory:') !== (this.settings.store ?? 'memory:'))
      notApplied.push(`store ${describeStore(config.store ?? 'memory:')}: restart to use another store`);
    if (
      (config.erlangPort ?? null) !== this.settings.erlangPort ||
      (config.erlangHost ?? null) !== this.settings.erlangHost
    )
      notApplied.push(`erlang_port ${config.erlangPort ?? 'off'}: restart to change the Erlang port or its host`);
    if ((config.tls !== null) !== this.tls)
      notApplied.push(`tls ${config.tls ? 'on' : 'off'}: restart to change whether the port speaks TLS`);
    const names = new Set(config.services.map((s) => s.name));
    for (const name of this.services.keys())
      if (!names.has(name)) notApplied.push(`service ${name} removed: restart to remove it`);
    for (const def of config.services) {
      const running = this.services.get(def.name);
      if (!running) notApplied.push(`service ${def.name} added: restart to start it`);
      else if (def.module !== running.module || def.function !== running.function)
        notApplied.push(`service ${def.name}: restart to change its mfa`);
    }
    notApplied.push(...this.otherChanges(config));
    // Everything computed and checked first (a certificate that does not match its key, or is out of date, throws
    // here): the switch itself cannot fail half-way.
    const directory = await ServiceDirectory.build(config.services, this.services, this.directory);
    if (config.tls) checkCertificate(config.tls, this.log);
    const applyTls = config.tls && this.tlsTransport ? this.tlsTransport.prepare(this.tlsSettings(config.tls)) : null;
    this.directory = directory;
    applyTls?.();
    Object.assign(this.settings, {
      authMaxFailures: config.authMaxFailures,
      authFailureWindow: config.authFailureWindow,
      authLockout: config.authLockout,
    });
    this.throttle.settings = throttleSettings(this.settings);
    this.log.info({ services: [...this.services.keys()], notApplied }, 'configuration reloaded');
    return notApplied;
  }

  /** The options a reload neither applies nor reports above that `config` changes, as sentences. */
  private otherChanges(config: ServerConfig): string[] {
    const next = new Map<string, unknown>(Object.entries(config));
    next.set('codePath', resolvedPaths(config.codePath));
    const now = new Map<string, unknown>([...Object.entries(this.settings), ...this.startedWith]);
    const changed: string[] = [];
    for (const o of OPTIONS) {
      if (RELOADED_APART.has(o.prop) || o.prop.startsWith('tls.') || !next.has(o.prop) || !now.has(o.prop)) continue;
      const value = next.get(o.prop);
      if (isDeepStrictEqual(value, now.get(o.prop))) continue;
      changed.push(`${o.key}${o.sensitive ? ' (changed)' : ` ${JSON.stringify(value)}`}: restart to apply it`);
    }
    return changed;
  }

  /** @internal */
  async listen(host: string, port: number): Promise<void> {
    this.listening = await this.transport.listen(host, port, this.serverOnConnection);
    this.log.info(
      { host: this.listening.host, port: this.listening.port, tls: this.tls, services: [...this.services.keys()] },
      'listening',
    );
    try {
      await this.listenErlang(host);
      const adminPort = this.settings.adminPort;
      // In a process of several the primary serves the admin port, for all of them (cluster.ts).
      // (LIB_CHAN_UNDER_PRIMARY is cluster.ts's UNDER_PRIMARY: set only in the processes our own primary forks.)
      if (adminPort !== null && !(cluster.isWorker && process.env['LIB_CHAN_UNDER_PRIMARY'] === '1')) {
        const source: AdminSource = {
          metrics: () => this.metricsText(),
          readiness: () => this.readiness(),
          status: () => this.status(),
        };
        this.admin = await startAdmin(this.settings.adminHost, adminPort, this.settings.adminToken, source, this.log);
        this.log.info(
          { host: this.admin.host, port: this.admin.port, token: this.settings.adminToken !== null },
          'admin port listening: /metrics, /healthz, /readyz, and the status page at /',
        );
      }
    } catch (err) {
      await Promise.all([this.listening.close(), this.erlangListening?.close()]);
      throw err;
    }
  }

  private async listenErlang(host: string): Promise<void> {
    const erlangPort = this.settings.erlangPort;
    if (erlangPort === null) return;
    this.erlangListening = await tcp.listen(this.settings.erlangHost ?? host, erlangPort, this.erlangOnConnection);
    const served = [...this.services.keys()].filter((name) => {
      const entry = this.directory.get(name);
      const refusal = entry ? originalRefusal(entry) : `service ${name} has no entry`;
      if (refusal) this.log.info({ service: name }, `not served on the Erlang port: ${refusal}`);
      return refusal === null;
    });
    this.log.warn(
      { host: this.erlangListening.host, port: this.erlangListening.port, services: served },
      'listening for Erlang peers (the original lib_chan protocol): secrets are proven by MD5 challenge-response and messages travel unencrypted; keep this port on a private network',
    );
  }

  /** The Erlang port (erlang_port), or 0 when there is none. */
  get erlangPort(): number {
    return this.erlangListening?.port ?? 0;
  }

  /** The admin port (admin_port), or 0 when there is none. */
  get adminPort(): number {
    return this.admin?.port ?? 0;
  }

  /** The open connections as the metrics read them. */
  private *connectionSnapshots(): Iterable<{ service: string | null; protocol: string; stats: MMStats }> {
    for (const c of this.connections) {
      const s = c.snapshot;
      if (s) yield s;
    }
  }

  private serviceStats(): Record<string, ServiceStats> {
    const out: Record<string, ServiceStats> = {};
    for (const [name, s] of this.services) out[name] = s.stats();
    return out;
  }

  private held(): {
    mailboxMessages: number;
    sendBufferBytes: number;
    heldBytes: number;
    shed: number;
    refused: number;
  } {
    const s = this.stats();
    return {
      mailboxMessages: s.queuedMessages,
      sendBufferBytes: s.queuedBytes,
      heldBytes: s.heldBytes,
      shed: s.shed,
      refused: s.refused,
    };
  }

  /** The Prometheus text. */
  private async metricsText(): Promise<{ contentType: string; text: string }> {
    if (!this.metrics) throw new Error('no metrics without an admin port');
    const registry = this.metrics.registry;
    return { contentType: registry.contentType, text: await registry.metrics() };
  }

  /** @internal The admin port's metrics registry (null without an admin port): a primary aggregates them. */
  get metricsRegistry(): ServerMetrics['registry'] | null {
    return this.metrics?.registry ?? null;
  }

  /** @internal Why the server is not ready (nothing when it is): /readyz. */
  async readiness(): Promise<string[]> {
    const problems: string[] = [];
    if (this.closing) problems.push('shutting down');
    if (!this.listening) problems.push('not listening');
    for (const [name, s] of this.services) if (s.status !== 'up') problems.push(`service ${name} is down`);
    const check = this.store.check?.bind(this.store);
    if (check) {
      const answered = await within(
        check().then(
          () => null,
          (err: unknown) => (err instanceof Error ? err.message : String(err)),
        ),
        READY_STORE_TIMEOUT,
      );
      if (answered === undefined)
        problems.push(`the store (${this.store.description}) did not answer within ${READY_STORE_TIMEOUT} ms`);
      else if (answered !== null) problems.push(`the store (${this.store.description}) failed: ${answered}`);
    }
    return problems;
  }

  /** @internal What the status page shows: /status.json (a {@link StatusReport}). */
  status(): StatusReport {
    const stats = this.stats();
    const byService = new Map<string, number>();
    let handshake = 0;
    for (const { service } of this.connectionSnapshots()) {
      if (service === null) handshake++;
      else byService.set(service, (byService.get(service) ?? 0) + 1);
    }
    const ports = [{ name: this.tls ? 'tls' : 'tcp', host: this.host, port: this.port }];
    if (this.erlangListening)
      ports.push({ name: 'erlang', host: this.erlangListening.host, port: this.erlangListening.port });
    const m = this.metrics;
    let refusedHandshakes = 0;
    for (const [outcome, n] of m?.outcomes ?? []) if (isRefusal(outcome)) refusedHandshakes += n;
    const total = (pick: (s: MMStats) => number): number => {
      let sum = 0;
      for (const n of m?.totals(pick).values() ?? []) sum += n;
      return sum;
    };
    return {
      server: SERVER_NAME,
      pid: process.pid,
      now: Date.now(),
      uptime: Math.round((Date.now() - this.startedAt) / 1000),
      closing: this.closing !== null,
      processes: 1,
      ports,
      store: this.store.description,
      connections: { open: stats.connections, handshake },
      services: [...this.services].map(([name, s]) => {
        const entry = this.directory.get(name);
        return {
          name,
          ...s.stats(),
          connections: byService.get(name) ?? 0,
          erlang: this.erlangListening ? entry !== undefined && originalRefusal(entry) === null : null,
        };
      }),
      totals: {
        messagesIn: total((s) => s.framesIn),
        messagesOut: total((s) => s.framesOut),
        bytesIn: total((s) => s.bytesIn),
        bytesOut: total((s) => s.bytesOut),
        handshakes: Object.fromEntries(m?.outcomes ?? []),
        refusedHandshakes,
      },
      held: { mailboxMessages: stats.queuedMessages, sendBufferBytes: stats.queuedBytes, heldBytes: stats.heldBytes },
      throttledAddresses: this.throttle.lockedOut,
      recent: m?.recent ?? [],
    };
  }

  /** The port it listens on (useful after asking for port 0). */
  get port(): number {
    return this.listening?.port ?? 0;
  }

  get host(): string {
    return this.listening?.host ?? '';
  }

  /** Connections open now, in the handshake or running a handler. */
  get connectionCount(): number {
    return this.connections.size;
  }

  /** What the server holds now: connections, those still in the handshake, queued messages and bytes. */
  stats(): ServerStats {
    let queuedMessages = 0;
    let queuedBytes = 0;
    for (const c of this.connections) {
      queuedMessages += c.queuedMessages;
      queuedBytes += c.queuedBytes;
    }
    const services = this.serviceStats();
    return {
      connections: this.connections.size,
      unauthenticated: this.admission.size,
      refused: this.refusedTotal + this.admission.refused,
      evicted: this.admission.evicted,
      queuedMessages,
      queuedBytes,
      heldBytes: this.budget.used,
      shed: this.budget.shedCount,
      services,
    };
  }

  /** @internal What a handshake starting now reads of that service, and the running service it attaches to. */
  auth(name: string): DirectoryEntry | undefined {
    return this.directory.get(name);
  }

  /**
   * Stops accepting, closes every connection with reason `shutdown` (handlers get `chan_closed`), runs the services'
   * `stop`, and resolves when all sockets are closed.
   */
  close(): Promise<void> {
    this.closing ??= (async () => {
      const timeout = this.settings.shutdownTimeout;
      const deadline = Date.now() + timeout;
      for (const s of this.services.values()) s.beginShutdown(); // no restarts from here on
      // The listener's close completes only once every connection has ended: start it, then end them.
      const stopped = Promise.all([this.listening?.close(), this.erlangListening?.close()]);
      const open = [...this.connections];
      this.log.info(
        { connections: open.length, shutdownTimeout: timeout },
        'shutting down: closing every connection with reason shutdown',
      );
      for (const c of open) c.shutdown();
      // Handlers get chan_closed after the messages already in their mailboxes, and may finish; then time is up.
      const processes = open.map((c) => c.handlerDone).filter((p): p is Promise<unknown> => p !== null);
      const running = new Set(processes);
      for (const p of processes) void p.then(() => running.delete(p));
      await within(Promise.all(processes), timeout);
      const late = running.size;
      if (late > 0)
        this.log.warn(
          { handlers: late },
          `${late} handler(s) still running after shutdown_timeout (${timeout} ms): abandoned`,
        );
      // Sockets whose peers are slow to close, and TLS handshakes in progress, are cut at the deadline.
      const left = (): number => Math.max(0, deadline - Date.now());
      await within(Promise.all(open.map((c) => c.done)), left());
      for (const c of open) c.destroy();
      await within(stopped ?? Promise.resolve(), left());
      // Whatever is left of shutdown_timeout, for the services' stop (workers that do not answer are ended).
      await stopServices([...this.services.values()], Math.max(0, deadline - Date.now()));
      await this.groups.close().catch((err: unknown) => this.log.error({ err }, 'the group bus did not close cleanly'));
      // What the services stored is committed before the process may go.
      await this.store.close().catch((err: unknown) => this.log.error({ err }, 'the store did not close cleanly'));
      // Last: until here it said, on /readyz, that the server was shutting down.
      await this.admin?.close();
      this.log.info('closed');
    })();
    return this.closing;
  }

  private readonly serverOnConnection = (socket: Duplex, peer: PeerInfo, admitted?: Ticket | string): void =>
    this.accept(socket, peer, admitted, this.mainProtocol);

  private readonly erlangOnConnection = (socket: Duplex, peer: PeerInfo): void => {
    // The original protocol has no heartbeats: TCP's keepalive finds a peer that vanished, after heartbeat_interval of
    // silence (and the system's probes).
    const interval = this.settings.heartbeatInterval;
    if (interval > 0 && socket instanceof Socket) socket.setKeepAlive(true, interval);
    this.accept(socket, peer, undefined, this.erlangProtocol);
  };

  /** A new connection on either port: within max_connections and a fair share of the handshake places, or refused. */
  private accept(socket: Duplex, peer: PeerInfo, admitted: Ticket | string | undefined, protocol: PortProtocol): void {
    if (this.closing) {
      if (typeof admitted === 'object') admitted.release(); // (a refusal holds no place)
      socket.destroy();
      return;
    }
    const s = this.settings;
    if (typeof admitted === 'string') {
      // Refused a place before its TLS handshake (counted then, and its refusals capped there): now it can be told why.
      this.refuse(socket, peer, admitted, protocol, false);
      return;
    }
    if (this.connections.size >= s.maxConnections) {
      admitted?.release();
      this.refusedTotal++;
      this.refuse(socket, peer, `the server has max_connections (${s.maxConnections}) connections open`, protocol);
      return;
    }
    // Over TLS the place was given before the TLS handshake; over TCP it is given now.
    const ticket: Ticket | string = admitted ?? this.admission.admit(peer.address, destroyUnowned);
    if (typeof ticket === 'string') {
      this.refuse(socket, peer, ticket, protocol);
      return;
    }
    this.connections.add(new ServerConnection(this, socket, peer, this.nextId++, ticket, protocol));
  }

  /** @internal A connection's socket has closed. */
  forget(c: ServerConnection): void {
    this.connections.delete(c);
  }

  /**
   * Tells the peer why, closes, and logs (at most one line per 10 s however many are refused). A refused connection
   * is given up to CLOSE_LINGER_MS to read why and close its side; up to max_unauthenticated of them at once, past
   * which one is closed at once without a word (a flood of connections past max_connections holds no more sockets).
   * `capped` false: the TLS transport has capped it already (those refused a place before their TLS handshake).
   */
  private refuse(socket: Duplex, peer: PeerInfo, text: string, protocol: PortProtocol, capped = true): void {
    const log = (this.refusals ??= new ThrottledLog(this.log, 'warn'));
    this.observer.refused(text);
    if (socket.destroyed) return; // (gone already: nobody to tell, and no close to wait for)
    if (capped) {
      if (this.refusing >= this.settings.maxUnauthenticated) {
        log.note({ peer: peer.name }, `refusing connections: ${text}; too many refusals at once to tell this one`);
        socket.destroy();
        return;
      }
      this.refusing++;
      socket.once('close', () => this.refusing--);
    }
    const mm = new MiddleMan(
      socket,
      {
        codec: protocol.codec,
        dialect: protocol.dialect,
        maxFrameSize: 0,
        sendBufferLimit: this.settings.sendBufferLimit,
        log: this.log,
      },
      {},
      DEAF,
    );
    mm.close('tooManyConnections', text);
    log.note({ peer: peer.name }, `refusing connections: ${text}`);
  }
}

/**
 * Refuses (badConfig) frame limits a config file could not give: under 256 (the smallest a peer may state: clients
 * refuse a server acking less) or over what a frame header can say.
 */
function checkFrameLimits(s: ServerSettings): void {
  for (const [key, value] of [
    ['max_frame_size', s.maxFrameSize],
    ['max_frame_size_unauth', s.maxFrameSizeUnauth],
  ] as const) {
    if (!isFrameLimit(value))
      throw new ChanError(
        'badConfig',
        `${key}: must be an integer from ${MIN_MAX_FRAME_SIZE} to ${MAX_FRAME_LIMIT}, not ${value}`,
      );
  }
}

/**
 * Refuses (badConfig) a server certificate that has expired or is not valid yet: every client would fail against it.
 * Warns when one has fewer than CERT_EXPIRY_WARNING_DAYS left.
 */
function checkCertificate(t: TlsConfig, log: Logger): void {
  const problem = certificateProblem(t.cert);
  if (problem) throw new ChanError('badConfig', `tls.cert: ${problem}`);
  const soon = expiresSoon(t.cert);
  if (soon)
    log.warn(
      { validTo: soon.validTo.toISOString(), days: soon.days },
      `the TLS certificate expires in ${soon.days} days: renew it (chan certs) and reload (SIGHUP)`,
    );
}

/** Folders as absolute paths without a trailing separator, to compare two lists of them. */
function resolvedPaths(folders: readonly string[]): string[] {
  return folders.map((p) => path.resolve(p));
}

/** A refused connection's middle-man hears nothing: it only says why and closes. */
const DEAF: MessageSink = { onMessage: () => {}, onClosed: () => {} };

/** A ticket's eviction before its connection has taken it over (it never is: the connection takes it at once). */
function destroyUnowned(): void {}

/** How long /readyz waits for the store to answer, ms. */
export const READY_STORE_TIMEOUT = 2000;

/** Waits for `p`, or `ms` milliseconds, whichever comes first: `p`'s value, or undefined when time ran out. */
function within<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([p, new Promise<undefined>((resolve) => (timer = setTimeout(resolve, ms, undefined)))]).finally(
    () => clearTimeout(timer),
  );
}
