/**
 * What a client connection can be told: the options of `connect`, their defaults, and where it connects to.
 */
import { SaltedPasswordCache } from './auth/scram.js';
import { DEFAULTS } from './config/options.js';
import type { Logger } from './log.js';
import type { Term } from './term/model.js';
import type { TlsClientOptions } from './tls.js';
import type { Transport } from './transport.js';

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
  /** Attempts after a connection is lost before the channel gives up and closes (default 10). */
  retries?: number;
  /** The delay before the first attempt, ms (default 100); each later one doubles it... */
  initialDelay?: number;
  /** ...up to this, ms (default 10000). */
  maxDelay?: number;
  /**
   * How much of each delay is random, 0 to 1 (default 0.5): the delay is cut by up to this fraction, so that
   * clients that lost the same server do not all come back at the same moment.
   */
  jitter?: number;
}

export const RECONNECT_DEFAULTS = { retries: 10, initialDelay: 100, maxDelay: 10_000, jitter: 0.5 } as const;

export interface ConnectOptions {
  /** ms for the TCP (or TLS) connection and the handshake together (default 10000). */
  connectTimeout?: number;
  /** Default timeout of `rpc`, ms (default 5000). */
  rpcTimeout?: number;
  /** Largest frame accepted from the server, bytes (default 1 MiB). */
  maxFrameSize?: number;
  /** Deepest nesting accepted and sent (default 32). */
  maxDepth?: number;
  /** Heartbeat interval, ms: the server's (from its ack) unless given; 0 turns the client's heartbeats off. */
  heartbeatInterval?: number;
  /** A server silent for this many intervals is dead: the channel closes with `timeout` (default 4). */
  heartbeatMaxMissed?: number;
  /** Unread pushes at which the client stops reading the socket (default 1024); it reads again below half. */
  mailboxHighWater?: number;
  /** Unread pushes' decoded size, bytes, at which the client stops reading the socket (default 4 MiB); again below half. */
  mailboxHighWaterBytes?: number;
  /** Bytes queued for a server that does not read before the channel closes with `slowConsumer` (default 8 MiB). */
  sendBufferLimit?: number;
  /** Connect over TLS: `{}` trusts the public CAs; `{ ca }` a CA of your own (chan certs makes one). */
  tls?: TlsClientOptions;
  /**
   * Where salted passwords are remembered between connects (PBKDF2 is the slow part of a handshake): a process-wide
   * cache unless given; `false` derives every time.
   */
  saltedPasswordCache?: SaltedPasswordCache | false;
  /**
   * Reconnect when the connection is lost (off by default, as in lib_chan): re-dial and re-authenticate with
   * exponential back-off and jitter. `true` takes the defaults of {@link RECONNECT_DEFAULTS}.
   */
  reconnect?: ReconnectOptions | boolean;
  /** The local address to connect from (on a host with several). */
  localAddress?: string;
  logger?: Logger;
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
