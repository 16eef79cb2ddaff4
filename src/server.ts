/**
 * The server (lib_chan's server side): one port, many named services. `startServer` validates the configuration,
 * starts every service, and only then listens. For each connection it runs a middle-man, the handshake (bounded by
 * `handshake_timeout` and `max_frame_size_unauth`), and, once the client is acknowledged, the handler process of the
 * requested service (see runtime.ts). A connection's faults stay in that connection.
 */
import type { Duplex } from 'node:stream';
import { msgpackCodec, type Codec } from './codec/index.js';
import { loadConfigFile, type ServerConfig } from './config/load.js';
import { DEFAULTS } from './config/options.js';
import { ServerHandshake, type ServiceAuth } from './handshake.js';
import { silentLogger, type Logger } from './log.js';
import { MiddleMan, type CloseInfo, type MMController } from './mm.js';
import { startServices, stopServices, type RunningService, type ServiceDefinition } from './modules.js';
import type { WireMessage } from './protocol.js';
import type { Term } from './term/model.js';
import { Mailbox, runHandler } from './runtime.js';
import { tcp, type Listening, type Transport } from './transport.js';

export interface ServerStats {
  /** Connections open, in the handshake or running a handler. */
  connections: number;
  /** Of those, the ones still in the handshake. */
  unauthenticated: number;
  /** Connections refused at max_connections or max_unauthenticated since the start. */
  refused: number;
  /** Messages waiting in handlers' mailboxes. */
  queuedMessages: number;
  /** Bytes waiting to be sent to clients. */
  queuedBytes: number;
}

/** The limits and timings of a running server (see docs/OPTIONS.md). */
export type ServerSettings = Omit<ServerConfig, 'port' | 'host' | 'codePath' | 'logLevel' | 'services'>;

/** Everything `startServer` needs; every setting left out takes its value from {@link DEFAULTS}. */
export interface ServerOptions extends Partial<ServerSettings> {
  port: number;
  host?: string;
  services: ServiceDefinition[];
  codePath?: readonly string[];
  /** Where the server logs; silent unless given (`chan serve` gives one). */
  logger?: Logger;
  transport?: Transport;
}

/**
 * Starts a server from a config file's path, a loaded {@link ServerConfig}, or {@link ServerOptions}. Resolves once it
 * listens; rejects with a `badConfig` ChanError (nothing started) or the listen error.
 */
export async function startServer(config: string | ServerConfig | ServerOptions, extra: { logger?: Logger } = {}): Promise<ChanServer> {
  const options: ServerOptions = typeof config === 'string' ? loadConfigFile(config) : config;
  const log = extra.logger ?? options.logger ?? silentLogger;
  const services = await startServices(options.services, options.codePath ?? DEFAULTS.codePath, log);
  const server = new ChanServer(options, services, log);
  try {
    await server.listen(options.host ?? DEFAULTS.host, options.port);
  } catch (err) {
    await stopServices(services, log);
    throw err;
  }
  return server;
}

export class ChanServer {
  private listening: Listening | null = null;
  private readonly services: Map<string, RunningService>;
  private readonly connections = new Set<ServerConnection>();
  private nextId = 1;
  private closing: Promise<void> | null = null;
  readonly settings: ServerSettings;
  readonly codec: Codec;
  private readonly transport: Transport;

  /** Use {@link startServer}. */
  constructor(
    options: ServerOptions,
    services: RunningService[],
    readonly log: Logger,
  ) {
    this.services = new Map(services.map((s) => [s.name, s]));
    this.settings = {
      handshakeTimeout: options.handshakeTimeout ?? DEFAULTS.handshakeTimeout,
      maxFrameSizeUnauth: options.maxFrameSizeUnauth ?? DEFAULTS.maxFrameSizeUnauth,
      maxFrameSize: options.maxFrameSize ?? DEFAULTS.maxFrameSize,
      maxDepth: options.maxDepth ?? DEFAULTS.maxDepth,
      heartbeatInterval: options.heartbeatInterval ?? DEFAULTS.heartbeatInterval,
      heartbeatMaxMissed: options.heartbeatMaxMissed ?? DEFAULTS.heartbeatMaxMissed,
      mailboxHighWater: options.mailboxHighWater ?? DEFAULTS.mailboxHighWater,
      sendBufferLimit: options.sendBufferLimit ?? DEFAULTS.sendBufferLimit,
      maxConnections: options.maxConnections ?? DEFAULTS.maxConnections,
      maxUnauthenticated: options.maxUnauthenticated ?? DEFAULTS.maxUnauthenticated,
    };
    this.codec = msgpackCodec({ maxDepth: this.settings.maxDepth });
    this.transport = options.transport ?? tcp;
  }

  /** @internal */
  async listen(host: string, port: number): Promise<void> {
    this.listening = await this.transport.listen(host, port, this.serverOnConnection);
    this.log.info({ host: this.listening.host, port: this.listening.port, services: [...this.services.keys()] }, 'listening');
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
    return { connections: this.connections.size, unauthenticated: this.unauthenticated, refused: this.refusedTotal, queuedMessages, queuedBytes };
  }

  /** @internal */
  service(name: string): RunningService | undefined {
    return this.services.get(name);
  }

  /**
   * Stops accepting, closes every connection with reason `shutdown` (handlers get `chan_closed`), runs the services'
   * `stop`, and resolves when all sockets are closed.
   */
  close(): Promise<void> {
    this.closing ??= (async () => {
      // The listener's close completes only once every connection has ended: start it, then end them.
      const stopped = this.listening?.close();
      const open = [...this.connections];
      for (const c of open) c.shutdown();
      await Promise.all(open.map((c) => c.done));
      await stopped;
      await stopServices([...this.services.values()], this.log);
      this.log.info('closed');
    })();
    return this.closing;
  }

  /** Connections still in the handshake. */
  get unauthenticatedCount(): number {
    return this.unauthenticated;
  }

  private unauthenticated = 0;
  private refusedTotal = 0;
  private refusedSinceLog = 0;
  private lastRefusalLog = 0;

  /** @internal A connection finished its handshake, or ended before it did. */
  leftHandshake(): void {
    this.unauthenticated--;
  }

  private readonly serverOnConnection = (socket: Duplex, peer: string): void => {
    if (this.closing) {
      socket.destroy();
      return;
    }
    const s = this.settings;
    const full =
      this.connections.size >= s.maxConnections
        ? `the server has max_connections (${s.maxConnections}) connections open`
        : this.unauthenticated >= s.maxUnauthenticated
          ? `the server has max_unauthenticated (${s.maxUnauthenticated}) connections in the handshake`
          : null;
    if (full) {
      this.refuse(socket, peer, full);
      return;
    }
    this.unauthenticated++;
    const c = new ServerConnection(this, socket, peer, this.nextId++);
    this.connections.add(c);
    void c.done.then(() => this.connections.delete(c));
  };

  /** Tells the peer why, closes, and logs at most one line per 10 s however many are refused. */
  private refuse(socket: Duplex, peer: string, text: string): void {
    const mm = new MiddleMan(socket, { codec: this.codec, maxFrameSize: 0, sendBufferLimit: this.settings.sendBufferLimit, log: this.log }, NO_CONTROLLER);
    mm.close('tooManyConnections', text);
    this.refusedTotal++;
    this.refusedSinceLog++;
    const now = Date.now();
    if (now - this.lastRefusalLog >= 10_000) {
      this.log.warn({ refused: this.refusedSinceLog, peer }, `refusing connections: ${text}`);
      this.refusedSinceLog = 0;
      this.lastRefusalLog = now;
    }
  }
}

const NO_CONTROLLER: MMController = { onMessage: () => {}, onClosed: () => {} };

/** One client connection: its middle-man, its handshake, then its handler. */
class ServerConnection implements MMController {
  private readonly mm: MiddleMan;
  private readonly handshake: ServerHandshake;
  private mailbox: Mailbox | null = null;
  private handshakeTimer: NodeJS.Timeout | null;
  private log: Logger;
  private readonly openedAt = Date.now();
  /** Resolves when the socket is closed. */
  readonly done: Promise<void>;

  constructor(
    private readonly server: ChanServer,
    socket: Duplex,
    private readonly peer: string,
    private readonly id: number,
  ) {
    this.log = server.log.child({ conn: id, peer });
    this.done = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    const s = server.settings;
    this.mm = new MiddleMan(socket, { codec: server.codec, maxFrameSize: s.maxFrameSizeUnauth, sendBufferLimit: s.sendBufferLimit, log: this.log }, this);
    this.handshake = new ServerHandshake(this.lookup, s.maxFrameSize, s.heartbeatInterval);
    this.handshakeTimer = setTimeout(this.handshakeOnTimeout, server.settings.handshakeTimeout);
    this.log.debug('connection opened');
  }

  private readonly lookup = (name: string): ServiceAuth | undefined => {
    const s = this.server.service(name);
    return s && { name: s.name, verifier: s.verifier };
  };

  private readonly handshakeOnTimeout = (): void => {
    this.handshakeTimer = null;
    this.mm.close('timeout', `handshake not completed within handshake_timeout (${this.server.settings.handshakeTimeout} ms)`);
  };

  shutdown(): void {
    this.mm.close('shutdown', 'the server is shutting down');
  }

  get queuedMessages(): number {
    return this.mailbox?.queued ?? 0;
  }

  get queuedBytes(): number {
    return this.mm.queuedBytes;
  }

  onMessage(m: WireMessage): void {
    if (this.mailbox) {
      this.mailbox.fromClient(m);
      return;
    }
    const out = this.handshake.step(m);
    switch (out.kind) {
      case 'send':
        this.mm.send(out.message);
        return;
      case 'refuse':
        // The service name comes from the peer: cut it, so a hostile client cannot fill the log.
        this.log[out.reason === 'authFail' ? 'warn' : 'info']({ reason: out.reason, service: m.kind === 'startService' ? m.service.slice(0, 100) : undefined }, out.text);
        this.mm.close(out.reason, out.text);
        return;
      case 'accept':
        this.accept(out.service, out.args, out.ack, m);
        return;
    }
  }

  private accept(name: string, argsC: Term, ack: WireMessage, first: WireMessage): void {
    const service = this.server.service(name) as RunningService;
    this.endHandshake();
    this.log = this.log.child({ service: name });
    this.mm.setMaxFrameSize(this.server.settings.maxFrameSize);
    if (first.kind === 'startService' && first.maxFrameSize !== undefined) this.mm.peerMaxFrameSize = first.maxFrameSize;
    this.mm.send(ack);
    const s = this.server.settings;
    this.mm.startHeartbeat(s.heartbeatInterval, s.heartbeatMaxMissed);
    this.mailbox = new Mailbox(this.mm, this.id, name, this.peer, this.log, s.mailboxHighWater);
    this.log.debug('authenticated');
    const ctx = { service: name, state: service.state, log: this.log };
    void runHandler(service.handler, this.mailbox, this.mm, argsC, service.args, ctx);
  }

  /** Leaves the handshake phase (accepted or closed); runs once. */
  private endHandshake(): void {
    if (this.handshakeOver) return;
    this.handshakeOver = true;
    if (this.handshakeTimer) clearTimeout(this.handshakeTimer);
    this.handshakeTimer = null;
    this.server.leftHandshake();
  }

  private handshakeOver = false;

  onClosed(info: CloseInfo): void {
    this.endHandshake();
    this.mailbox?.closed(info);
    const s = this.mm.stats;
    this.log.info(
      {
        reason: info.reason,
        by: info.by,
        ms: Date.now() - this.openedAt,
        framesIn: s.framesIn,
        framesOut: s.framesOut,
        bytesIn: s.bytesIn,
        bytesOut: s.bytesOut,
      },
      'connection closed',
    );
  }
}
