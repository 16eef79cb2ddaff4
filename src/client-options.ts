/**
 * What a client connection can be told: the options of `connect`, their defaults, and where it connects to.
 */
import { SaltedPasswordCache } from './auth/scram.js';
import { DEFAULTS } from './config/options.js';
import type { Logger } from './log.js';
import type { Term } from './term/model.js';
import type { TlsClientOptions } from './tls.js';
import type { Transport } from './transport.js';
// For {@link memoryTransport} in the TSDoc.
import type { memoryTransport } from './memory-transport.js';

/** The close text a server sees when the client closes its channel. */
export const CLIENT_CLOSED = 'the client closed the channel';

/** Client defaults; every one can be changed per connection in {@link ConnectOptions}. */
export const CLIENT_DEFAULTS = {
  /** Connecting plus the handshake must finish within this many ms. */
  connectTimeout: 10_000,
  /** An rpc with no answer after this many ms rejects with `timeout`. */
  rpcTimeout: 5000,
  maxFrameSize: DEFAULTS.maxFrameSize,
  maxDepth: DEFAULTS.maxDepth,
  heartbeatMaxMissed: DEFAULTS.heartbeatMaxMissed,
  mailboxHighWater: DEFAULTS.mailboxHighWater,
  mailboxHighWaterBytes: DEFAULTS.mailboxHighWaterBytes,
  sendBufferLimit: DEFAULTS.sendBufferLimit,
} as const;

export interface ReconnectOptions {
  /**
   * Attempts after a connection is lost before the channel gives up and closes.
   * @default 10
   */
  retries?: number;
  /**
   * The delay before the first attempt, ms; each later one doubles it...
   * @default 100
   */
  initialDelay?: number;
  /**
   * ...up to this, ms.
   * @default 10_000
   */
  maxDelay?: number;
  /**
   * How much of each delay is random, 0 to 1: the delay is cut by up to this fraction, so that clients that lost the
   * same server do not all come back at the same moment.
   * @default 0.5
   */
  jitter?: number;
}

export const RECONNECT_DEFAULTS = { retries: 10, initialDelay: 100, maxDelay: 10_000, jitter: 0.5 } as const;

export interface ConnectOptions {
  /**
   * ms for the TCP (or TLS) connection and the handshake together; past it, connect rejects with `timeout`.
   * @default 10_000
   */
  connectTimeout?: number;
  /**
   * The timeout of an `rpc` that gives none, ms; past it the rpc rejects with `timeout`.
   * @default 5000
   */
  rpcTimeout?: number;
  /**
   * Largest frame accepted from the server, bytes (256 to 2^32-1; told to the server, which sends nothing larger).
   * @default 1_048_576
   */
  maxFrameSize?: number;
  /**
   * Deepest nesting accepted and sent.
   * @default 32
   */
  maxDepth?: number;
  /**
   * Heartbeat interval, ms: the server's (from its ack) unless given; 0 turns the client's heartbeats off.
   * @default the server's heartbeat_interval
   */
  heartbeatInterval?: number;
  /**
   * A server silent for this many intervals is dead: the channel closes with `timeout`.
   * @default 4
   */
  heartbeatMaxMissed?: number;
  /**
   * Unread pushes at which the client stops reading the socket; it reads again below half.
   * @default 1024
   */
  mailboxHighWater?: number;
  /**
   * Unread pushes' decoded size, bytes, at which the client stops reading the socket; it reads again below half.
   * @default 4_194_304
   */
  mailboxHighWaterBytes?: number;
  /**
   * Bytes queued for a server that does not read before the channel closes with `slowConsumer`.
   * @default 8_388_608
   */
  sendBufferLimit?: number;
  /**
   * Connect over TLS: `{}` trusts the public CAs; `{ ca }` a CA of your own (chan certs makes one).
   * @default plain TCP
   */
  tls?: TlsClientOptions;
  /**
   * Which protocol the server speaks: lib-chan's, or `erlang`, the original lib_chan's (an Erlang lib_chan server, or
   * a lib-chan server's erlang_port; docs/ERLANG.md). The original has no TLS, no heartbeats, no request ids and no
   * close frames: an rpc takes the next term the server sends as its answer, and one that times out closes the
   * channel (its answer, arriving late, would otherwise be taken by the next rpc).
   * @default 'lib-chan'
   */
  protocol?: 'lib-chan' | 'erlang';
  /**
   * Where salted passwords are remembered between connects (PBKDF2 is the slow part of a handshake); `false` derives
   * every time.
   * @default defaultSaltedPasswordCache, one for the process
   */
  saltedPasswordCache?: SaltedPasswordCache | false;
  /**
   * Reconnect when the connection is lost (off by default, as in lib_chan): re-dial and re-authenticate with
   * exponential back-off and jitter. `true` takes the defaults of {@link RECONNECT_DEFAULTS}.
   * @default false
   */
  reconnect?: ReconnectOptions | boolean;
  /**
   * The local address to connect from (on a host with several).
   * @default the system's choice
   */
  localAddress?: string;
  /**
   * Gives up connecting when aborted: `connect` rejects with `aborted` and the connection is closed. Once connected,
   * the signal no longer matters (close the channel with `close()`).
   */
  signal?: AbortSignal;
  /**
   * Where the channel logs (reconnects, dropped late answers).
   * @default silent
   */
  logger?: Logger;
  /**
   * How bytes get to the server: TCP, TLS (from `tls`), or your own ({@link memoryTransport} for tests).
   * @default TCP, or TLS when `tls` is given
   */
  transport?: Transport;
}

/** The cache every connect uses unless told otherwise. */
export const defaultSaltedPasswordCache = new SaltedPasswordCache();

/** Where to connect, and as what. */
export interface Target {
  host: string;
  port: number;
  service: string;
  secret: string | null;
  argsC: Term;
}

/** Where to connect, and with what (a command line's HOST PORT SERVICE SECRET and options). */
export interface Destination extends Omit<Target, 'argsC'> {
  options: ConnectOptions;
}
