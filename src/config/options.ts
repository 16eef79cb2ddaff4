/**
 * Every server option: its name in `lib_chan.conf`, its `CHAN_*` variable, its default and unit. The one table that
 * the loader, the convict schema and docs/OPTIONS.md (kept in sync by a test) follow. Durations are milliseconds and
 * sizes bytes, everywhere.
 */

/** The defaults, in the library's camelCase. */
export const DEFAULTS = {
  host: '127.0.0.1',
  /** null: no Erlang port. */
  erlangPort: null as number | null,
  /** null: the same address as `host`. */
  erlangHost: null as string | null,
  /** null: no admin port. */
  adminPort: null as number | null,
  adminHost: '127.0.0.1',
  /** null: none (the admin port must then be on a loopback address). */
  adminToken: null as string | null,
  codePath: [] as readonly string[],
  handshakeTimeout: 10_000,
  maxFrameSizeUnauth: 16 * 1024,
  maxFrameSize: 1024 * 1024,
  maxDepth: 32,
  heartbeatInterval: 15_000,
  heartbeatMaxMissed: 4,
  mailboxHighWater: 1024,
  mailboxHighWaterBytes: 4 * 1024 * 1024,
  sendBufferLimit: 8 * 1024 * 1024,
  maxQueuedBytes: 256 * 1024 * 1024,
  storeMaxBytes: 64 * 1024 * 1024,
  maxConnections: 1024,
  maxUnauthenticated: 64,
  maxUnauthenticatedPerAddress: 32,
  tlsHandshakeTimeout: 5000,
  authMaxFailures: 5,
  authFailureWindow: 60_000,
  authLockout: 60_000,
  restartIntensity: 3,
  restartPeriod: 5000,
  serviceRetryDelay: 10_000,
  serviceRetryMaxDelay: 300_000,
  startTimeout: 30_000,
  handlerBlockTimeout: 5000,
  shutdownTimeout: 10_000,
  logLevel: 'info',
  /** null: `memory:` for a program's startServer, `lmdb:data` for chan serve. */
  store: null as string | null,
  processes: 1 as number | 'auto',
} as const;

export type OptionFormat =
  | 'port'
  | 'host'
  | 'nat'
  | 'positive'
  | 'frameSize'
  | 'paths'
  | 'logLevel'
  | 'store'
  | 'processes'
  | 'file'
  | 'verifyClient'
  | 'tlsVersion'
  | 'token';

export interface OptionSpec {
  /** The option's name in `lib_chan.conf` and in JSON configs. */
  key: string;
  /** The library's name for it: the key in camelCase (`tls.verify_client` is `tls.verifyClient`). */
  prop: string;
  /** The variable that sets it: CHAN_ and the key in capitals, `.` as `_` (`CHAN_TLS_VERIFY_CLIENT`). */
  env: string;
  format: OptionFormat;
  unit: 'ms' | 'bytes' | 'levels' | 'messages' | 'connections' | 'intervals' | 'failures' | 'restarts' | '';
  default: unknown;
  doc: string;
  /** A secret: never shown (convict's errors, chan check). */
  sensitive?: boolean;
}

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export const VERIFY_CLIENT = ['none', 'optional', 'required'] as const;
export const TLS_VERSIONS = ['TLSv1.3', 'TLSv1.2'] as const;

const ROWS: readonly Omit<OptionSpec, 'prop' | 'env'>[] = [
  {
    key: 'port',
    format: 'port',
    unit: '',
    default: null,
    doc: 'TCP port that serves every service (0 picks a free one). Required: in the file or in CHAN_PORT.',
  },
  {
    key: 'host',
    format: 'host',
    unit: '',
    default: DEFAULTS.host,
    doc: 'Address to listen on. The default accepts local clients only; use "0.0.0.0" or "::" to accept others.',
  },
  {
    key: 'erlang_port',
    format: 'port',
    unit: '',
    default: DEFAULTS.erlangPort,
    doc: "A second TCP port that speaks the original lib_chan protocol (Erlang's External Term Format, MD5 challenge-response, no TLS) for Erlang nodes, serving the same services: only those with a plaintext secret or none (see docs/ERLANG.md). Off unless set; 0 picks a free one.",
  },
  {
    key: 'erlang_host',
    format: 'host',
    unit: '',
    default: DEFAULTS.erlangHost,
    doc: 'Address the Erlang port listens on; unset, the same as host. Its secrets cross the network as MD5 challenge-responses and its messages unencrypted: bind it to a private address.',
  },
  {
    key: 'admin_port',
    format: 'port',
    unit: '',
    default: DEFAULTS.adminPort,
    doc: 'An HTTP port for operators: /metrics (Prometheus), /healthz, /readyz, and a live status page at / (see docs/OPERATIONS.md). Off unless set; 0 picks a free one.',
  },
  {
    key: 'admin_host',
    format: 'host',
    unit: '',
    default: DEFAULTS.adminHost,
    doc: 'Address the admin port listens on. Any address but a loopback one (127.0.0.1, ::1, localhost) needs admin_token.',
  },
  {
    key: 'admin_token',
    format: 'token',
    unit: '',
    default: DEFAULTS.adminToken,
    doc: 'A token every admin request but /healthz and /readyz must carry (Authorization: Bearer TOKEN, or ?token=TOKEN for a browser); at least 16 characters. Required when admin_host is not a loopback address.',
    sensitive: true,
  },
  {
    key: 'code_path',
    format: 'paths',
    unit: '',
    default: DEFAULTS.codePath,
    doc: "Folders searched for service modules named in a service's mfa; relative ones resolve against the config file's folder (those from CHAN_CODE_PATH against the working directory, as TLS files from variables do). In CHAN_CODE_PATH, separated by ':'.",
  },
  {
    key: 'handshake_timeout',
    format: 'positive',
    unit: 'ms',
    default: DEFAULTS.handshakeTimeout,
    doc: 'A connection that has not completed the handshake (startService to ack) in this time is closed with reason timeout.',
  },
  {
    key: 'max_frame_size_unauth',
    format: 'frameSize',
    unit: 'bytes',
    default: DEFAULTS.maxFrameSizeUnauth,
    doc: 'Largest frame accepted before authentication; a longer one closes the connection with frameTooLarge before it is read. From 256 (the smallest limit a peer may state) to 4294967295.',
  },
  {
    key: 'max_frame_size',
    format: 'frameSize',
    unit: 'bytes',
    default: DEFAULTS.maxFrameSize,
    doc: 'Largest frame accepted after authentication; a longer one closes the connection with frameTooLarge before it is read. From 256 (the smallest limit a peer may state; the ack tells clients this one) to 4294967295.',
  },
  {
    key: 'max_depth',
    format: 'positive',
    unit: 'levels',
    default: DEFAULTS.maxDepth,
    doc: 'Deepest nesting of lists, tuples and maps in a message; a deeper one closes the connection with protocolError.',
  },
  {
    key: 'heartbeat_interval',
    format: 'nat',
    unit: 'ms',
    default: DEFAULTS.heartbeatInterval,
    doc: 'After this long without a frame from the peer, a side sends a ping; 0 turns heartbeats off. Told to clients in the ack.',
  },
  {
    key: 'heartbeat_max_missed',
    format: 'positive',
    unit: 'intervals',
    default: DEFAULTS.heartbeatMaxMissed,
    doc: 'A peer silent for this many heartbeat intervals in a row is dead: the connection closes with reason timeout (4 x 15 s: within 60 s; the checks of intervals of a second or more share one timer and run up to about 0.1 s late). Silence is timed on the monotonic clock: setting the wall clock changes nothing, and time a machine spends suspended does not count.',
  },
  {
    key: 'mailbox_high_water',
    format: 'positive',
    unit: 'messages',
    default: DEFAULTS.mailboxHighWater,
    doc: "When a handler's mailbox holds this many messages, the server stops reading that client's socket; it reads again below half.",
  },
  {
    key: 'mailbox_high_water_bytes',
    format: 'positive',
    unit: 'bytes',
    default: DEFAULTS.mailboxHighWaterBytes,
    doc: "When a handler's mailbox holds messages of this decoded size in all (what they take in memory, not on the wire), the server stops reading that client's socket; it reads again below half.",
  },
  {
    key: 'send_buffer_limit',
    format: 'positive',
    unit: 'bytes',
    default: DEFAULTS.sendBufferLimit,
    doc: 'When more than this is queued for a client that does not read, the connection closes with slowConsumer (a handler can await mm.drain()).',
  },
  {
    key: 'max_queued_bytes',
    format: 'positive',
    unit: 'bytes',
    default: DEFAULTS.maxQueuedBytes,
    doc: 'What every connection together may make the server hold: mailboxes (decoded size), frames being received, bytes waiting to be sent. Past three quarters, connections that hold input stop being read; past it, the one holding the most is dropped and closed with slowConsumer or overloaded.',
  },
  {
    key: 'store_max_bytes',
    format: 'positive',
    unit: 'bytes',
    default: DEFAULTS.storeMaxBytes,
    doc: "What a built-in name server's store keeps (one per service; one per worker with {isolation, worker}): keys and values by their decoded size, plus 256 bytes an entry. A store past it is answered {error, {storeFull, Text}} and nothing is stored; lookups and other connections carry on.",
  },
  {
    key: 'max_connections',
    format: 'positive',
    unit: 'connections',
    default: DEFAULTS.maxConnections,
    doc: 'With this many connections open, a new one is sent a close with reason tooManyConnections and closed (given 2 s to read it; past max_unauthenticated refusals waiting at once, a new one is closed without a word).',
  },
  {
    key: 'max_unauthenticated',
    format: 'positive',
    unit: 'connections',
    default: DEFAULTS.maxUnauthenticated,
    doc: 'Connections in the handshake at most, TLS handshakes included. When full, the address (IPv6: the /64) holding the most gives up its oldest to a newcomer from an address holding fewer; otherwise the newcomer is told tooManyConnections.',
  },
  {
    key: 'max_unauthenticated_per_address',
    format: 'positive',
    unit: 'connections',
    default: DEFAULTS.maxUnauthenticatedPerAddress,
    doc: 'Connections in the handshake from one address (IPv6: one /64) at most; one more is told tooManyConnections. Keeps one address from taking all of max_unauthenticated.',
  },
  {
    key: 'auth_max_failures',
    format: 'positive',
    unit: 'failures',
    default: DEFAULTS.authMaxFailures,
    doc: 'After this many failed handshakes (authFail) from one address within auth_failure_window, that address is refused with authThrottled.',
  },
  {
    key: 'auth_failure_window',
    format: 'positive',
    unit: 'ms',
    default: DEFAULTS.authFailureWindow,
    doc: 'The window in which auth_max_failures failures lock an address out.',
  },
  {
    key: 'auth_lockout',
    format: 'positive',
    unit: 'ms',
    default: DEFAULTS.authLockout,
    doc: 'How long a locked-out address is refused with authThrottled; then it may try again.',
  },
  {
    key: 'tls.cert',
    format: 'file',
    unit: '',
    default: null,
    doc: "The server's certificate (PEM). With tls.key, the port speaks TLS only. Relative to the config file's folder.",
  },
  {
    key: 'tls.key',
    format: 'file',
    unit: '',
    default: null,
    doc: "The server's private key (PEM); keep it mode 0600.",
  },
  {
    key: 'tls.ca',
    format: 'file',
    unit: '',
    default: null,
    doc: 'The CA certificate(s) that sign client certificates (needed for verify_client optional or required).',
  },
  {
    key: 'tls.verify_client',
    format: 'verifyClient',
    unit: '',
    default: 'none',
    doc: 'none: no client certificates; optional: checked when given; required: a client without one signed by ca fails the TLS handshake.',
  },
  {
    key: 'tls.min_version',
    format: 'tlsVersion',
    unit: '',
    default: 'TLSv1.3',
    doc: 'The oldest TLS version accepted: TLSv1.3, or TLSv1.2 for old clients.',
  },
  {
    key: 'tls_handshake_timeout',
    format: 'positive',
    unit: 'ms',
    default: DEFAULTS.tlsHandshakeTimeout,
    doc: 'A TLS handshake not finished in this time is cut off (the socket is destroyed).',
  },
  {
    key: 'restart_intensity',
    format: 'nat',
    unit: 'restarts',
    default: DEFAULTS.restartIntensity,
    doc: 'A service whose own work fails is restarted; one that fails again after this many restarts within restart_period is marked down (serviceDown).',
  },
  {
    key: 'restart_period',
    format: 'positive',
    unit: 'ms',
    default: DEFAULTS.restartPeriod,
    doc: 'The window in which restart_intensity restarts are allowed (OTP: intensity and period).',
  },
  {
    key: 'service_retry_delay',
    format: 'positive',
    unit: 'ms',
    default: DEFAULTS.serviceRetryDelay,
    doc: 'A service down past restart_intensity is started again after this long; it serves again once its start succeeds. Each failed try doubles the wait.',
  },
  {
    key: 'service_retry_max_delay',
    format: 'positive',
    unit: 'ms',
    default: DEFAULTS.serviceRetryMaxDelay,
    doc: 'The longest wait between tries to start a service that is down.',
  },
  {
    key: 'start_timeout',
    format: 'positive',
    unit: 'ms',
    default: DEFAULTS.startTimeout,
    doc: "A service's start (in each of its workers, with worker isolation) must return within this long: at server start, the server refuses to start, naming the service; at a restart, it counts as a failure.",
  },
  {
    key: 'handler_block_timeout',
    format: 'positive',
    unit: 'ms',
    default: DEFAULTS.handlerBlockTimeout,
    doc: 'With {isolation, worker}: a worker whose handler has not yielded for this long is terminated, its connections closed with handlerTimeout, and it is replaced.',
  },
  {
    key: 'shutdown_timeout',
    format: 'positive',
    unit: 'ms',
    default: DEFAULTS.shutdownTimeout,
    doc: 'On SIGTERM or SIGINT, handlers have this long to finish after their clients are told shutdown; then they are abandoned and the server exits.',
  },
  {
    key: 'store',
    format: 'store',
    unit: '',
    default: DEFAULTS.store,
    doc: "Where services keep what they store (the name server's names): memory: (nothing kept), lmdb:DIR (an embedded store on disk, relative to the working directory; one server's, with all its processes: another server on it is refused) or redis://HOST:PORT/DB (shared by several servers). Unset: chan serve uses lmdb:data, a program's startServer memory:. See docs/SCALING.md.",
  },
  {
    key: 'processes',
    format: 'processes',
    unit: '',
    default: DEFAULTS.processes,
    doc: 'chan serve: server processes serving the port, from 1 to 1024, or auto (one per CPU). Past 1, a primary process forks them (node:cluster) and replaces one that dies; they need a store they can share (lmdb: or redis://, not memory:). Connection limits count per process; failure throttling counts across them. See docs/SCALING.md.',
  },
  {
    key: 'log_level',
    format: 'logLevel',
    unit: '',
    default: DEFAULTS.logLevel,
    doc: `Least severe log level written: ${LOG_LEVELS.join(', ')}.`,
  },
];

/** `snake_case` to `camelCase` (config keys, service function names). */
export function camelCase(name: string): string {
  return name.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}

export const OPTIONS: readonly OptionSpec[] = ROWS.map((o) => ({
  ...o,
  prop: camelCase(o.key),
  env: `CHAN_${o.key.toUpperCase().replace('.', '_')}`,
}));

export const OPTION_BY_KEY: ReadonlyMap<string, OptionSpec> = new Map(OPTIONS.map((o) => [o.key, o]));
