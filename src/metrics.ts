/**
 * What a running server tells those who watch it: the {@link Observer} every part reports to (handshakes, closes,
 * crashes, restarts, refusals, rpc times, store operations), and {@link ServerMetrics}, the one behind the admin port,
 * which keeps them as Prometheus metrics (prom-client, names prefixed `libchan_`) and as a short list of recent events
 * for the status page. Without an admin port the observer is {@link NO_OBSERVER}, which does nothing and times nothing.
 */
import type * as promClient from 'prom-client';
import { isCloseReason } from './errors.js';
import { lazyRequire } from './lazy.js';
import type { MMStats } from './mm.js';
import { type TimingRow, Timings, timingsHistogram } from './timings.js';
import { WaitingIds } from './waiting.js';

/** A service's state and counts, as `server.stats()` and the metrics give them. */
export interface ServiceStats {
  status: 'up' | 'down';
  /** Handler processes that ended with an error, a timeout or their worker's death. */
  crashes: number;
  /** Restarts of the service itself. */
  restarts: number;
}

/** Where the server's parts report what happens. Every method is cheap; none may throw. */
export interface Observer {
  /** Whether rpcs are timed (the one report that costs on every message). */
  readonly timesRpcs: boolean;
  /** A handshake ended: `ack`, or the refusal's word. `service`: a service the server has, else null. */
  handshake(outcome: string, service: string | null): void;
  /** A connection ended, with what it carried since it was last told (its handshake's frames are told apart). */
  closed(reason: string, service: string | null, stats: MMStats): void;
  /** Frames a connection carried for `service` (null: in the handshake), told once it moves on. */
  carried(service: string | null, stats: MMStats): void;
  /** A connection was refused before its handshake (tooManyConnections). */
  refused(text: string): void;
  /** A handler process ended with an error. */
  crashed(service: string, text: string): void;
  /** A service was restarted (`down`: it failed past its restart intensity and is down). */
  restarted(service: string, text: string, down: boolean): void;
  /** An rpc was answered, `seconds` after it arrived. */
  rpc(service: string, seconds: number): void;
  /** A store operation of backend `backend` took `seconds`; `failed` when it threw or rejected. */
  store(backend: string, op: string, seconds: number, failed: boolean): void;
}

export const NO_OBSERVER: Observer = {
  timesRpcs: false,
  handshake() {},
  closed() {},
  carried() {},
  refused() {},
  crashed() {},
  restarted() {},
  rpc() {},
  store() {},
};

/**
 * Times the rpcs of one connection, from arrival to answer, for an observer that wants them (nothing is kept for one
 * that does not: see {@link RpcClock.for}).
 */
export class RpcClock extends WaitingIds {
  // The ids are the rpcs waiting for an answer, each with when it arrived (performance.now()).
  private constructor(
    private readonly observer: Observer,
    private readonly service: string,
  ) {
    super();
  }

  /** A clock for a connection of `service`, or null when `observer` does not time rpcs. */
  static for(observer: Observer | undefined, service: string): RpcClock | null {
    return observer?.timesRpcs ? new RpcClock(observer, service) : null;
  }

  arrived(id: number): void {
    // An id that waits already is the session's fault to report (its first arrival is the one timed).
    if (!this.has(id)) this.add(id, performance.now());
  }

  answered(id: number): void {
    const t = this.delete(id);
    if (t !== undefined) this.observer.rpc(this.service, (performance.now() - t) / 1000);
  }
}

/** One line of the status page's "recent" list. */
export interface RecentEvent {
  /** ms since the epoch. */
  at: number;
  kind: 'refused' | 'crash' | 'restart' | 'down';
  service: string | null;
  /** The refusal's word, for kind `refused`. */
  reason?: string;
  text: string;
}

/**
 * A word as a metric label: lib-chan's own words only. A peer's close frame may name any reason of up to 64
 * characters; as a label, each would be a series of its own, which a client could invent without end.
 */
export function word(w: string): string {
  return w === 'ack' || w === 'hello' || isCloseReason(w) ? w : 'other';
}

/** Outcomes that are the server turning a client away (not an ack, a ping's hello, or a client that left). */
const NOT_REFUSALS = new Set(['ack', 'hello', 'peerClosed', 'normal', 'shutdown', 'other']);

export function isRefusal(outcome: string): boolean {
  return !NOT_REFUSALS.has(outcome);
}

/** Events kept for the status page. */
export const RECENT_EVENTS = 50;

/** What the metrics read of the server when they are scraped (the rest is counted as it happens). */
export interface MetricsSource {
  /** Open connections: the service of each (null in the handshake), and what it has carried so far. */
  connections(): Iterable<{ service: string | null; protocol: string; stats: MMStats }>;
  services(): Record<string, ServiceStats>;
  held(): { mailboxMessages: number; sendBufferBytes: number; heldBytes: number; shed: number; refused: number };
  throttledAddresses(): number;
}

const loadPromClient = lazyRequire<typeof promClient>('prom-client');

/** Seconds, for an rpc's time: from 0.1 ms to 10 s. */
export const RPC_BUCKETS = [
  0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
];
/** Seconds, for a store operation. */
export const STORE_BUCKETS = [0.00001, 0.00005, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1];

const HANDSHAKE = '(handshake)';

/** The admin port's observer: Prometheus metrics in their own registry, and the recent events. */
export class ServerMetrics implements Observer {
  readonly timesRpcs = true;
  readonly registry: promClient.Registry;
  readonly recent: RecentEvent[] = [];
  private readonly handshakes: promClient.Counter<'service' | 'outcome'>;
  private readonly closes: promClient.Counter<'reason'>;
  /** rpc times by service, and store operations by backend and op: counted here, read when scraped. */
  private readonly rpcTimes = new Timings(['service'], RPC_BUCKETS);
  private readonly storeTimes = new Timings(['backend', 'op'], STORE_BUCKETS);
  /** Handshakes by outcome word, for the status page. */
  readonly outcomes = new Map<string, number>();
  /** What closed connections carried, by service: added to the open ones' figures when scraped. */
  private readonly carriedBy = new Map<string, MMStats>();
  private source: MetricsSource | null = null;

  constructor() {
    const p = loadPromClient();
    const registry = new p.Registry();
    this.registry = registry;
    p.collectDefaultMetrics({ register: registry, prefix: 'libchan_' });
    const registers = [registry];
    this.handshakes = new p.Counter({
      name: 'libchan_handshakes_total',
      help: 'Handshakes by outcome: ack, or the refusal word (authFail, badService, authThrottled, ...); service is empty when the client asked for one the server does not have.',
      labelNames: ['service', 'outcome'],
      registers,
    });
    this.closes = new p.Counter({
      name: 'libchan_connections_closed_total',
      help: 'Connections closed, by close reason (docs/ERRORS.md).',
      labelNames: ['reason'],
      registers,
    });
    timingsHistogram(p, this.rpcTimes, {
      name: 'libchan_rpc_duration_seconds',
      help: "Time from an rpc's arrival to its answer being sent, by service.",
      labelNames: ['service'],
      registers,
    });
    const storeTimes = this.storeTimes;
    const storeCounter = (name: string, help: string, pick: (row: TimingRow) => number): void => {
      new p.Counter({
        name,
        help,
        labelNames: ['backend', 'op'],
        registers,
        collect() {
          this.reset();
          for (const row of storeTimes.each()) if (pick(row) > 0) this.inc(row.labels, pick(row));
        },
      });
    };
    storeCounter(
      'libchan_store_operations_total',
      'Store operations of the services on the main thread, by backend (memory, lmdb, redis) and operation.',
      (row) => row.count,
    );
    storeCounter(
      'libchan_store_errors_total',
      'Store operations that failed, by backend and operation.',
      (row) => row.failed,
    );
    timingsHistogram(p, this.storeTimes, {
      name: 'libchan_store_duration_seconds',
      help: 'How long store operations took, by backend and operation.',
      labelNames: ['backend', 'op'],
      registers,
    });
    const metrics = this;
    new p.Gauge({
      name: 'libchan_connections_open',
      help: 'Connections open, by service ((handshake) for those not authenticated yet) and protocol (lib-chan, erlang).',
      labelNames: ['service', 'protocol'],
      registers,
      collect() {
        this.reset();
        for (const c of metrics.source?.connections() ?? [])
          this.inc({ service: c.service ?? HANDSHAKE, protocol: c.protocol });
      },
    });
    const carriedCounter = (name: string, help: string, pick: (s: MMStats) => number): void => {
      new p.Counter({
        name,
        help,
        labelNames: ['service'],
        registers,
        collect() {
          this.reset();
          for (const [service, n] of metrics.totals(pick)) this.inc({ service }, n);
        },
      });
    };
    carriedCounter('libchan_messages_received_total', 'Frames received from clients, by service.', (s) => s.framesIn);
    carriedCounter('libchan_messages_sent_total', 'Frames sent to clients, by service.', (s) => s.framesOut);
    carriedCounter('libchan_bytes_received_total', 'Bytes received from clients, by service.', (s) => s.bytesIn);
    carriedCounter('libchan_bytes_sent_total', 'Bytes sent to clients, by service.', (s) => s.bytesOut);
    const perService = (
      name: string,
      help: string,
      pick: (s: ServiceStats) => number,
      kind: 'Counter' | 'Gauge',
    ): void => {
      const options = {
        name,
        help,
        labelNames: ['service'] as const,
        registers,
        // Across processes (processes > 1): up only where every process has it up.
        ...(kind === 'Gauge' ? { aggregator: 'min' as const } : {}),
        collect(this: promClient.Counter<'service'> | promClient.Gauge<'service'>) {
          this.reset();
          for (const [service, s] of Object.entries(metrics.source?.services() ?? {})) this.inc({ service }, pick(s));
        },
      };
      if (kind === 'Counter') new p.Counter(options);
      else new p.Gauge(options);
    };
    perService(
      'libchan_handler_crashes_total',
      'Handler processes that ended with an error.',
      (s) => s.crashes,
      'Counter',
    );
    perService('libchan_service_restarts_total', 'Restarts of each service.', (s) => s.restarts, 'Counter');
    perService(
      'libchan_service_up',
      '1 while the service takes connections, 0 while it is down.',
      (s) => (s.status === 'up' ? 1 : 0),
      'Gauge',
    );
    const held = (name: string, help: string, pick: (h: ReturnType<MetricsSource['held']>) => number): void => {
      new p.Gauge({
        name,
        help,
        registers,
        collect() {
          const h = metrics.source?.held();
          this.set(h ? pick(h) : 0);
        },
      });
    };
    held('libchan_mailbox_messages', "Messages waiting in handlers' mailboxes.", (h) => h.mailboxMessages);
    held('libchan_send_buffer_bytes', 'Bytes waiting to be sent to clients.', (h) => h.sendBufferBytes);
    held(
      'libchan_held_bytes',
      'What all connections make the server hold (max_queued_bytes bounds it).',
      (h) => h.heldBytes,
    );
    new p.Counter({
      name: 'libchan_connections_shed_total',
      help: 'Connections dropped for holding the most while the server was over max_queued_bytes.',
      registers,
      collect() {
        this.reset();
        this.inc(metrics.source?.held().shed ?? 0);
      },
    });
    new p.Counter({
      name: 'libchan_connections_refused_total',
      help: 'Connections refused at max_connections or the handshake places (tooManyConnections).',
      registers,
      collect() {
        this.reset();
        this.inc(metrics.source?.held().refused ?? 0);
      },
    });
    new p.Gauge({
      name: 'libchan_throttled_addresses',
      help: 'Addresses (IPv6: /64s) locked out for failed handshakes now.',
      registers,
      // Every process holds the same lockouts.
      aggregator: 'max',
      collect() {
        this.set(metrics.source?.throttledAddresses() ?? 0);
      },
    });
  }

  /** The server whose figures are read when scraped. */
  watch(source: MetricsSource): void {
    this.source = source;
  }

  /** What connections have carried, by service: the closed ones', and the open ones' so far. */
  totals(pick: (s: MMStats) => number): Map<string, number> {
    const out = new Map<string, number>();
    for (const [service, s] of this.carriedBy) out.set(service, pick(s));
    for (const c of this.source?.connections() ?? []) {
      const service = c.service ?? HANDSHAKE;
      out.set(service, (out.get(service) ?? 0) + pick(c.stats));
    }
    return out;
  }

  private note(e: RecentEvent): void {
    this.recent.push(e);
    if (this.recent.length > RECENT_EVENTS) this.recent.shift();
  }

  handshake(given: string, service: string | null): void {
    const outcome = word(given);
    this.handshakes.inc({ service: service ?? '', outcome });
    this.outcomes.set(outcome, (this.outcomes.get(outcome) ?? 0) + 1);
    if (isRefusal(outcome))
      this.note({ at: Date.now(), kind: 'refused', service, reason: outcome, text: `handshake refused: ${outcome}` });
  }

  closed(reason: string, service: string | null, stats: MMStats): void {
    this.closes.inc({ reason: word(reason) });
    this.carried(service, stats);
  }

  carried(service: string | null, stats: MMStats): void {
    const key = service ?? HANDSHAKE;
    const sum = this.carriedBy.get(key) ?? { framesIn: 0, framesOut: 0, bytesIn: 0, bytesOut: 0 };
    sum.framesIn += stats.framesIn;
    sum.framesOut += stats.framesOut;
    sum.bytesIn += stats.bytesIn;
    sum.bytesOut += stats.bytesOut;
    this.carriedBy.set(key, sum);
  }

  refused(text: string): void {
    this.note({ at: Date.now(), kind: 'refused', service: null, reason: 'tooManyConnections', text });
  }

  crashed(service: string, text: string): void {
    this.note({ at: Date.now(), kind: 'crash', service, text });
  }

  restarted(service: string, text: string, down: boolean): void {
    this.note({ at: Date.now(), kind: down ? 'down' : 'restart', service, text });
  }

  rpc(service: string, seconds: number): void {
    this.rpcTimes.observe(service, '', seconds);
  }

  store(backend: string, op: string, seconds: number, failed: boolean): void {
    this.storeTimes.observe(backend, op, seconds, failed);
  }
}

/** What /status.json answers, and the status page shows. */
export interface StatusReport {
  server: string;
  pid: number;
  /** ms since the epoch, when the report was made. */
  now: number;
  /** Seconds since the server started. */
  uptime: number;
  closing: boolean;
  /** Server processes (1, or `processes` under a primary). */
  processes: number;
  ports: { name: string; host: string; port: number }[];
  store: string;
  connections: { open: number; handshake: number };
  services: (ServiceStats & { name: string; connections: number; erlang: boolean | null })[];
  totals: {
    messagesIn: number;
    messagesOut: number;
    bytesIn: number;
    bytesOut: number;
    handshakes: Record<string, number>;
    refusedHandshakes: number;
  };
  held: { mailboxMessages: number; sendBufferBytes: number; heldBytes: number };
  throttledAddresses: number;
  recent: RecentEvent[];
}

/**
 * The reports of several server processes as one (the primary's /status.json): counts added, a service down if it is
 * down in any process, the recent events of all, newest last.
 */
export function mergeStatus(
  reports: readonly StatusReport[],
  primary: { pid: number; uptime: number },
): StatusReport | null {
  const first = reports[0];
  if (!first) return null;
  const sum = (pick: (r: StatusReport) => number): number => reports.reduce((n, r) => n + pick(r), 0);
  const services = new Map<string, StatusReport['services'][number]>();
  for (const r of reports) {
    for (const s of r.services) {
      const had = services.get(s.name);
      if (!had) {
        services.set(s.name, { ...s });
        continue;
      }
      had.connections += s.connections;
      had.crashes += s.crashes;
      had.restarts += s.restarts;
      if (s.status === 'down') had.status = 'down';
    }
  }
  const handshakes: Record<string, number> = {};
  for (const r of reports)
    for (const [outcome, n] of Object.entries(r.totals.handshakes))
      handshakes[outcome] = (handshakes[outcome] ?? 0) + n;
  return {
    ...first,
    pid: primary.pid,
    now: Date.now(),
    uptime: primary.uptime,
    closing: reports.some((r) => r.closing),
    processes: reports.length,
    connections: { open: sum((r) => r.connections.open), handshake: sum((r) => r.connections.handshake) },
    services: [...services.values()],
    totals: {
      messagesIn: sum((r) => r.totals.messagesIn),
      messagesOut: sum((r) => r.totals.messagesOut),
      bytesIn: sum((r) => r.totals.bytesIn),
      bytesOut: sum((r) => r.totals.bytesOut),
      handshakes,
      refusedHandshakes: sum((r) => r.totals.refusedHandshakes),
    },
    held: {
      mailboxMessages: sum((r) => r.held.mailboxMessages),
      sendBufferBytes: sum((r) => r.held.sendBufferBytes),
      heldBytes: sum((r) => r.held.heldBytes),
    },
    throttledAddresses: Math.max(...reports.map((r) => r.throttledAddresses)),
    recent: reports
      .flatMap((r) => r.recent)
      .sort((a, b) => a.at - b.at)
      .slice(-RECENT_EVENTS),
  };
}

/**
 * The primary's metrics (processes > 1): every server process's, aggregated by prom-client's AggregatorRegistry (each
 * metric by its aggregator: a sum unless it says otherwise), and the primary's own: server processes and their restarts.
 */
export class ClusterMetrics {
  private readonly aggregator: promClient.AggregatorRegistry<promClient.PrometheusContentType>;
  private readonly own: promClient.Registry;
  private readonly restarts: promClient.Counter;

  constructor(processes: () => number) {
    const p = loadPromClient();
    this.aggregator = new p.AggregatorRegistry();
    this.own = new p.Registry();
    this.restarts = new p.Counter({
      name: 'libchan_process_restarts_total',
      help: 'Server processes the primary replaced after they died.',
      registers: [this.own],
    });
    new p.Gauge({
      name: 'libchan_processes',
      help: 'Server processes listening.',
      registers: [this.own],
      collect() {
        this.set(processes());
      },
    });
  }

  restarted(): void {
    this.restarts.inc();
  }

  async text(): Promise<{ contentType: string; text: string }> {
    const [all, own] = await Promise.all([this.aggregator.clusterMetrics(), this.own.metrics()]);
    return { contentType: this.own.contentType, text: `${all}\n${own}` };
  }
}

/**
 * In a server process under a primary: its metrics answer the primary's AggregatorRegistry (which asks every
 * process; one that made no AggregatorRegistry of its own would never answer).
 */
export function shareMetrics(registry: promClient.Registry | null): void {
  const p = loadPromClient();
  if (!sharing) {
    sharing = true;
    new p.AggregatorRegistry();
  }
  // Until its server has metrics (while it starts), a process answers with none rather than not at all.
  p.AggregatorRegistry.setRegistries([registry ?? new p.Registry()]);
}

let sharing = false;

/** A status report with nothing in it: what the primary says when no process answers. */
export function emptyStatus(at: {
  server: string;
  pid: number;
  uptime: number;
  store: string;
  closing: boolean;
}): StatusReport {
  return {
    ...at,
    now: Date.now(),
    processes: 0,
    ports: [],
    connections: { open: 0, handshake: 0 },
    services: [],
    totals: { messagesIn: 0, messagesOut: 0, bytesIn: 0, bytesOut: 0, handshakes: {}, refusedHandshakes: 0 },
    held: { mailboxMessages: 0, sendBufferBytes: 0, heldBytes: 0 },
    throttledAddresses: 0,
    recent: [],
  };
}
