/**
 * The config role: `file:consult` + `check_terms`. Reads `lib_chan.conf` (Erlang terms; the book's file works as it
 * is) or a JSON file of the same shape, applies `CHAN_*` environment variables (they win over the file), validates
 * everything with convict, and either returns a complete {@link ServerConfig} or throws a {@link ConfigError} that
 * lists every problem found, each with file:line:column. Nothing listens until this has succeeded.
 *
 * Term file:                                        JSON file:
 *   {port, 1234}.                                     {"port": 1234,
 *   {service, nameServer, password, "ABXy45",          "services": [{"name": "nameServer", "password": "ABXy45",
 *    mfa, mod_name_server, start_me_up, notUsed}.                     "mfa": ["mod_name_server", "start_me_up", "notUsed"]}]}
 *
 * `password, none` (JSON: `"password": null`) is a service without a secret.
 */
import type { ServiceDefinition } from '../modules.js';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { createSecureContext } from 'node:tls';
import { certificateProblem } from '../tls.js';
import type convictModule from 'convict';
import { ChanError } from '../errors.js';
import { MAX_FRAME_LIMIT, MIN_MAX_FRAME_SIZE, isFrameLimit } from '../protocol.js';
import { parseStoreUrl } from '../store/index.js';
import { lazyRequire } from '../lazy.js';
import { Atom, Float, Tuple, isAtom, type Term } from '../term/model.js';
import { parseTermsRecovering, type Located } from '../term/parse.js';
import { formatTerm } from '../term/print.js';
import { locateJson, positions, type Position } from './json-locate.js';
import { parseVerifier, secretProblem, type ScramVerifier } from '../auth/scram.js';
import { LOG_LEVELS, OPTIONS, OPTION_BY_KEY, TLS_VERSIONS, VERIFY_CLIENT, type OptionSpec } from './options.js';

/** convict and its dependencies take tens of ms to load, and a client never reads a config. */
const loadConvict = lazyRequire<typeof convictModule>('convict');

/** Options written as a group: `{tls, [{cert, ...}]}` in a term file, `"tls": {"cert": ...}` in JSON. */
const GROUPS = new Set(OPTIONS.filter((o) => o.key.includes('.')).map((o) => o.key.split('.')[0] as string));

/**
 * One `{service, ...}` entry: a service definition as a file gives it, always by module and function, with its ArgsS
 * as written (null when the entry has none).
 */
export type ServiceConfig = Omit<ServiceDefinition, 'handler' | 'start' | 'stop'> & {
  module: string;
  function: string;
  args: Term;
};

export interface ServerConfig {
  /** TCP port that serves every service (0 picks a free one). Required: in the file or in CHAN_PORT. `port`, `CHAN_PORT`. */
  port: number;
  /**
   * Address to listen on. The default accepts local clients only; use "0.0.0.0" or "::" to accept others. `host`,
   * `CHAN_HOST`.
   * @default '127.0.0.1'
   */
  host: string;
  /**
   * A second TCP port that speaks the original lib_chan protocol (Erlang's External Term Format, MD5
   * challenge-response, no TLS) for Erlang nodes, serving the same services: only those with a plaintext secret or
   * none (see docs/ERLANG.md). Off unless set; 0 picks a free one. `erlang_port`, `CHAN_ERLANG_PORT`.
   * @default null
   */
  erlangPort: number | null;
  /**
   * Address the Erlang port listens on; unset, the same as host. Its secrets cross the network as MD5
   * challenge-responses and its messages unencrypted: bind it to a private address. `erlang_host`, `CHAN_ERLANG_HOST`.
   * @default null
   */
  erlangHost: string | null;
  /**
   * An HTTP port for operators: /metrics (Prometheus), /healthz, /readyz, and a live status page at / (see
   * docs/OPERATIONS.md). Off unless set; 0 picks a free one. `admin_port`, `CHAN_ADMIN_PORT`.
   * @default null
   */
  adminPort: number | null;
  /**
   * Address the admin port listens on. Any address but a loopback one (127.0.0.1, ::1, localhost) needs admin_token.
   * `admin_host`, `CHAN_ADMIN_HOST`.
   * @default '127.0.0.1'
   */
  adminHost: string;
  /**
   * A token every admin request but /healthz and /readyz must carry (Authorization: Bearer TOKEN, or ?token=TOKEN for
   * a browser); at least 16 characters. Required when admin_host is not a loopback address. `admin_token`,
   * `CHAN_ADMIN_TOKEN`.
   * @default null
   */
  adminToken: string | null;
  /**
   * Folders searched for service modules named in a service's mfa; relative ones resolve against the config file's
   * folder (those from CHAN_CODE_PATH against the working directory, as TLS files from variables do). In
   * CHAN_CODE_PATH, separated by ':'. `code_path`, `CHAN_CODE_PATH`.
   * @default []
   */
  codePath: string[];
  /**
   * A connection that has not completed the handshake (startService to ack) in this time is closed with reason
   * timeout. `handshake_timeout`, `CHAN_HANDSHAKE_TIMEOUT` (ms).
   * @default 10_000
   */
  handshakeTimeout: number;
  /**
   * Largest frame accepted before authentication; a longer one closes the connection with frameTooLarge before it is
   * read. From 256 (the smallest limit a peer may state) to 4294967295. `max_frame_size_unauth`,
   * `CHAN_MAX_FRAME_SIZE_UNAUTH` (bytes).
   * @default 16_384
   */
  maxFrameSizeUnauth: number;
  /**
   * Largest frame accepted after authentication; a longer one closes the connection with frameTooLarge before it is
   * read. From 256 (the smallest limit a peer may state; the ack tells clients this one) to 4294967295.
   * `max_frame_size`, `CHAN_MAX_FRAME_SIZE` (bytes).
   * @default 1_048_576
   */
  maxFrameSize: number;
  /**
   * Deepest nesting of lists, tuples and maps in a message; a deeper one closes the connection with protocolError.
   * `max_depth`, `CHAN_MAX_DEPTH`.
   * @default 32
   */
  maxDepth: number;
  /**
   * After this long without a frame from the peer, a side sends a ping; 0 turns heartbeats off. Told to clients in the
   * ack. `heartbeat_interval`, `CHAN_HEARTBEAT_INTERVAL` (ms).
   * @default 15_000
   */
  heartbeatInterval: number;
  /**
   * A peer silent for this many heartbeat intervals in a row is dead: the connection closes with reason timeout (4 x
   * 15 s: within 60 s; the checks of intervals of a second or more share one timer and run up to about 0.1 s late).
   * `heartbeat_max_missed`, `CHAN_HEARTBEAT_MAX_MISSED`.
   * @default 4
   */
  heartbeatMaxMissed: number;
  /**
   * When a handler's mailbox holds this many messages, the server stops reading that client's socket; it reads again
   * below half. `mailbox_high_water`, `CHAN_MAILBOX_HIGH_WATER`.
   * @default 1024
   */
  mailboxHighWater: number;
  /**
   * When a handler's mailbox holds messages of this decoded size in all (what they take in memory, not on the wire),
   * the server stops reading that client's socket; it reads again below half. `mailbox_high_water_bytes`,
   * `CHAN_MAILBOX_HIGH_WATER_BYTES` (bytes).
   * @default 4_194_304
   */
  mailboxHighWaterBytes: number;
  /**
   * When more than this is queued for a client that does not read, the connection closes with slowConsumer (a handler
   * can await mm.drain()). `send_buffer_limit`, `CHAN_SEND_BUFFER_LIMIT` (bytes).
   * @default 8_388_608
   */
  sendBufferLimit: number;
  /**
   * What every connection together may make the server hold: mailboxes (decoded size), frames being received, bytes
   * waiting to be sent. Past three quarters, connections that hold input stop being read; past it, the one holding the
   * most is dropped and closed with slowConsumer or overloaded. `max_queued_bytes`, `CHAN_MAX_QUEUED_BYTES` (bytes).
   * @default 268_435_456
   */
  maxQueuedBytes: number;
  /**
   * What a built-in name server's store keeps (one per service; one per worker with {isolation, worker}): keys and
   * values by their decoded size, plus 256 bytes an entry. A store past it is answered {error, {storeFull, Text}} and
   * nothing is stored; lookups and other connections carry on. `store_max_bytes`, `CHAN_STORE_MAX_BYTES` (bytes).
   * @default 67_108_864
   */
  storeMaxBytes: number;
  /**
   * With this many connections open, a new one is sent a close with reason tooManyConnections and closed (given 2 s
   * to read it; past max_unauthenticated refusals waiting at once, a new one is closed without a word).
   * `max_connections`, `CHAN_MAX_CONNECTIONS`.
   * @default 1024
   */
  maxConnections: number;
  /**
   * Connections in the handshake at most, TLS handshakes included. When full, the address (IPv6: the /64) holding the
   * most gives up its oldest to a newcomer from an address holding fewer; otherwise the newcomer is told
   * tooManyConnections. `max_unauthenticated`, `CHAN_MAX_UNAUTHENTICATED`.
   * @default 64
   */
  maxUnauthenticated: number;
  /**
   * Connections in the handshake from one address (IPv6: one /64) at most; one more is told tooManyConnections. Keeps
   * one address from taking all of max_unauthenticated. `max_unauthenticated_per_address`,
   * `CHAN_MAX_UNAUTHENTICATED_PER_ADDRESS`.
   * @default 32
   */
  maxUnauthenticatedPerAddress: number;
  /**
   * A TLS handshake not finished in this time is cut off (the socket is destroyed). `tls_handshake_timeout`,
   * `CHAN_TLS_HANDSHAKE_TIMEOUT` (ms).
   * @default 5000
   */
  tlsHandshakeTimeout: number;
  /**
   * After this many failed handshakes (authFail) from one address within auth_failure_window, that address is refused
   * with authThrottled. `auth_max_failures`, `CHAN_AUTH_MAX_FAILURES`.
   * @default 5
   */
  authMaxFailures: number;
  /**
   * The window in which auth_max_failures failures lock an address out. `auth_failure_window`,
   * `CHAN_AUTH_FAILURE_WINDOW` (ms).
   * @default 60_000
   */
  authFailureWindow: number;
  /**
   * How long a locked-out address is refused with authThrottled; then it may try again. `auth_lockout`,
   * `CHAN_AUTH_LOCKOUT` (ms).
   * @default 60_000
   */
  authLockout: number;
  /**
   * A service whose own work fails is restarted; one that fails again after this many restarts within restart_period
   * is marked down (serviceDown). `restart_intensity`, `CHAN_RESTART_INTENSITY`.
   * @default 3
   */
  restartIntensity: number;
  /**
   * The window in which restart_intensity restarts are allowed (OTP: intensity and period). `restart_period`,
   * `CHAN_RESTART_PERIOD` (ms).
   * @default 5000
   */
  restartPeriod: number;
  /**
   * A service down past restart_intensity is started again after this long; it serves again once its start succeeds.
   * Each failed try doubles the wait. `service_retry_delay`, `CHAN_SERVICE_RETRY_DELAY` (ms).
   * @default 10_000
   */
  serviceRetryDelay: number;
  /**
   * The longest wait between tries to start a service that is down. `service_retry_max_delay`,
   * `CHAN_SERVICE_RETRY_MAX_DELAY` (ms).
   * @default 300_000
   */
  serviceRetryMaxDelay: number;
  /**
   * A service's start (in each of its workers, with worker isolation) must return within this long: at server start,
   * the server refuses to start, naming the service; at a restart, it counts as a failure. `start_timeout`,
   * `CHAN_START_TIMEOUT` (ms).
   * @default 30_000
   */
  startTimeout: number;
  /**
   * With {isolation, worker}: a worker whose handler has not yielded for this long is terminated, its connections
   * closed with handlerTimeout, and it is replaced. `handler_block_timeout`, `CHAN_HANDLER_BLOCK_TIMEOUT` (ms).
   * @default 5000
   */
  handlerBlockTimeout: number;
  /**
   * On SIGTERM or SIGINT, handlers have this long to finish after their clients are told shutdown; then they are
   * abandoned and the server exits. `shutdown_timeout`, `CHAN_SHUTDOWN_TIMEOUT` (ms).
   * @default 10_000
   */
  shutdownTimeout: number;
  /** TLS for the port, or null for plain TCP. PEM texts, read from the files the config names. */
  tls: TlsConfig | null;
  /**
   * Least severe log level written: fatal, error, warn, info, debug, trace, silent. `log_level`, `CHAN_LOG_LEVEL`.
   * @default 'info'
   */
  logLevel: string;
  /**
   * Where services keep what they store (the name server's names): `memory:` (nothing kept), `lmdb:DIR` (an embedded
   * store on disk, relative to the working directory) or `redis://HOST:PORT/DB` (shared by several servers). null:
   * `memory:` for a program's startServer, `lmdb:data` for chan serve. `store`, `CHAN_STORE`. See docs/SCALING.md.
   * @default null
   */
  store: string | null;
  /**
   * chan serve: server processes serving the port, from 1 to 1024, or `auto` (one per CPU); past 1 a primary forks and
   * supervises them, and the store must be one they share. `processes`, `CHAN_PROCESSES`. See docs/SCALING.md.
   * @default 1
   */
  processes: number | 'auto';
  services: ServiceConfig[];
}

/** The limits and timings of a running server (see docs/OPTIONS.md): the config but for where to listen and what to serve. */
export type ServerSettings = Omit<ServerConfig, 'port' | 'host' | 'codePath' | 'logLevel' | 'services' | 'tls'>;

export interface TlsConfig {
  cert: string;
  key: string;
  ca?: string;
  verifyClient: 'none' | 'optional' | 'required';
  minVersion: 'TLSv1.2' | 'TLSv1.3';
  /** The files the PEM texts came from (for logs and reloads). */
  files: { cert: string; key: string; ca?: string };
}

export type { Position } from './json-locate.js';

export class ConfigProblem {
  constructor(
    readonly file: string,
    readonly message: string,
    readonly at?: Position,
  ) {}
  toString(): string {
    return this.at
      ? `${this.file}:${this.at.line}:${this.at.column}: ${this.message}`
      : `${this.file}: ${this.message}`;
  }
}

/** A configuration that must not be started; `problems` holds every problem found, in file order. */
export class ConfigError extends ChanError {
  readonly problems: readonly ConfigProblem[];
  constructor(problems: ConfigProblem[]) {
    super('badConfig', `invalid configuration:\n${problems.map((p) => `  ${p}`).join('\n')}`);
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

export interface LoadOptions {
  /** Where `CHAN_*` variables are read from; `process.env` unless given (tests pass their own). */
  env?: Record<string, string | undefined>;
  /** Filled with where each option's value came from: `file:line`, `CHAN_*`, or `default` (for chan check). */
  sources?: Map<string, string>;
}

/** Reads, checks and returns the configuration in `file` (`.json` is JSON; anything else is Erlang terms). */
export function loadConfigFile(file: string, options: LoadOptions = {}): ServerConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new ConfigError([
      new ConfigProblem(file, e.code === 'ENOENT' ? 'no such file' : `cannot read: ${e.message}`),
    ]);
  }
  return parseConfig(text, { ...options, file, format: file.endsWith('.json') ? 'json' : 'terms' });
}

export interface ParseOptions extends LoadOptions {
  /** Named in messages; relative code_path entries resolve against its folder. */
  file?: string;
  format?: 'terms' | 'json';
}

/** Like {@link loadConfigFile}, for text already in memory. */
export function parseConfig(text: string, options: ParseOptions = {}): ServerConfig {
  const file = options.file ?? '<config>';
  const raw = options.format === 'json' ? fromJson(text, file) : fromTerms(text, file);
  const config = validate(raw, file, path.dirname(path.resolve(file)), options.env ?? process.env);
  if (options.sources) {
    const env = options.env ?? process.env;
    for (const o of OPTIONS) {
      const at = raw.options.get(o.key)?.at;
      options.sources.set(
        o.key,
        env[o.env] !== undefined ? o.env : raw.options.has(o.key) ? `${file}${at ? `:${at.line}` : ''}` : 'default',
      );
    }
  }
  return config;
}

/** Options and services as written, each with where it was written. */
interface RawConfig {
  options: Map<string, { value: unknown; at?: Position }>;
  services: { value: Record<string, unknown>; at?: Position; fields: Map<string, Position> }[];
  problems: ConfigProblem[];
}

// ---------------------------------------------------------------------------------------------------------------------
// Erlang term files

function fromTerms(text: string, file: string): RawConfig {
  const raw: RawConfig = { options: new Map(), services: [], problems: [] };
  const { terms, errors } = parseTermsRecovering(text);
  for (const err of errors) raw.problems.push(new ConfigProblem(file, err.reason, err));
  const problem = (at: Position, message: string): void => {
    raw.problems.push(new ConfigProblem(file, message, at));
  };
  for (const t of terms) {
    const items = t.items ?? [];
    if (!(t.term instanceof Tuple) || !isAtom(t.term.at(0))) {
      problem(t, `expected {Option, Value} or {service, ...}, found ${formatTerm(t.term)}`);
      continue;
    }
    const key = (t.term.at(0) as Atom).name;
    if (key === 'service') {
      const service = serviceFromTerm(t, problem);
      if (service) raw.services.push(service);
      continue;
    }
    if (items.length !== 2) {
      problem(t, `expected {${key}, Value}: a tuple of two elements, found ${items.length}`);
      continue;
    }
    const value = items[1] as Located;
    if (GROUPS.has(key)) {
      // {tls, [{cert, "..."}, {key, "..."}]}: each pair is the option tls.cert, tls.key, ...
      if (!Array.isArray(value.term)) {
        problem(value, `expected {${key}, [{Option, Value}, ...]}`);
        continue;
      }
      for (const pair of value.items ?? []) {
        if (!(pair.term instanceof Tuple) || pair.term.size !== 2 || !isAtom(pair.term.at(0))) {
          problem(pair, `expected {Option, Value} inside {${key}, [...]}`);
          continue;
        }
        const sub = (pair.term.at(0) as Atom).name;
        addOption(raw, file, `${key}.${sub}`, plain(pair.term.at(1) as Term), pair.items?.[1], pair);
      }
      continue;
    }
    addOption(raw, file, key, plain(value.term), value, t);
  }
  return raw;
}

function addOption(
  raw: RawConfig,
  file: string,
  key: string,
  value: unknown,
  valueAt?: Position,
  keyAt?: Position,
): void {
  const spec = OPTION_BY_KEY.get(key);
  if (!spec) {
    if (OPTION_BY_KEY.has(`tls.${key}`)) {
      const where = `{tls, [{${key}, ...}]} in a term file, "tls": {"${key}": ...} in JSON`;
      raw.problems.push(new ConfigProblem(file, `'${key}' is a TLS option: it goes in the tls list (${where})`, keyAt));
      return;
    }
    const hint = suggest(key, [...OPTION_BY_KEY.keys(), 'service']);
    raw.problems.push(
      new ConfigProblem(file, `unknown option '${key}'${hint ? ` (did you mean '${hint}'?)` : ''}`, keyAt),
    );
    return;
  }
  const first = raw.options.get(key);
  if (first) {
    const where = first.at ? ` (first set at line ${first.at.line})` : '';
    raw.problems.push(new ConfigProblem(file, `option '${key}' is set twice${where}`, keyAt));
    return;
  }
  raw.options.set(key, { value, at: valueAt });
}

const SERVICE_SHAPE = '{service, Name, password, Secret | none, mfa, Module, Function, ArgsS}';
const SERVICE_OPTIONS = ['allow_cn', 'isolation', 'workers'];

function serviceFromTerm(t: Located, problem: (at: Position, m: string) => void): RawConfig['services'][number] | null {
  const items = t.items ?? [];
  if (items.length < 8) {
    problem(t, `a service is ${SERVICE_SHAPE}: 8 elements, found ${items.length}`);
    return null;
  }
  const [, name, kind, secret, mfa, mod, fun, args] = items as Located[];
  let ok = true;
  if (kind && !isAtom(kind.term, 'password') && !isAtom(kind.term, 'verifier')) {
    problem(kind, `expected the atom 'password' or 'verifier' here: a service is ${SERVICE_SHAPE}`);
    ok = false;
  }
  if (mfa && !isAtom(mfa.term, 'mfa')) {
    problem(mfa, `expected the atom 'mfa' here: a service is ${SERVICE_SHAPE}`);
    ok = false;
  }
  if (!ok) return null;
  const fields = new Map<string, Position>();
  const value: Record<string, unknown> = {};
  const put = (field: string, l: Located | undefined, v: unknown): void => {
    if (!l) return;
    fields.set(field, l);
    value[field] = v;
  };
  put('name', name, nameOf(name?.term));
  if (isAtom(kind?.term, 'verifier')) put('verifier', secret, secretOf(secret?.term));
  else put('password', secret, isAtom(secret?.term, 'none') ? null : secretOf(secret?.term));
  put('module', mod, nameOf(mod?.term));
  put('function', fun, nameOf(fun?.term));
  put('args', args, args?.term ?? null);
  for (const opt of items.slice(8)) {
    const pair = opt.term;
    if (
      !(pair instanceof Tuple) ||
      pair.size !== 2 ||
      !isAtom(pair.at(0)) ||
      !SERVICE_OPTIONS.includes((pair.at(0) as Atom).name)
    ) {
      problem(opt, `after ArgsS a service takes options {Key, Value}, with Key one of: ${SERVICE_OPTIONS.join(', ')}`);
      return null;
    }
    put((pair.at(0) as Atom).name, opt.items?.[1] ?? opt, plain(pair.at(1) as Term));
  }
  return { value, at: t, fields };
}

/** An atom or string as its text; anything else kept, for the validator to name. */
function nameOf(t: Term | undefined): unknown {
  if (t instanceof Atom) return t.name;
  return t;
}

function secretOf(t: Term | undefined): unknown {
  if (t instanceof Uint8Array) return Buffer.from(t).toString('utf8');
  return t;
}

/** A term as convict sees it: atoms as their names, tuples as their text, lists as arrays. */
function plain(t: Term): unknown {
  if (t instanceof Atom) return t.name;
  if (t instanceof Tuple) return formatTerm(t);
  // No option takes a float, and every format refuses NaN; convict would read a Float's field as a nested option.
  if (t instanceof Float) return Number.NaN;
  if (Array.isArray(t)) return t.map(plain);
  return t;
}

// ---------------------------------------------------------------------------------------------------------------------
// JSON files

function fromJson(text: string, file: string): RawConfig {
  const raw: RawConfig = { options: new Map(), services: [], problems: [] };
  let doc: unknown;
  let where: Map<string, Position>;
  try {
    doc = JSON.parse(text);
    where = locateJson(text);
  } catch (err) {
    const m = /position (\d+)/.exec((err as Error).message);
    const at = m ? positions(text)(Number(m[1])) : undefined;
    raw.problems.push(
      new ConfigProblem(
        file,
        `not valid JSON: ${(err as Error).message.replace(/ in JSON at position \d+.*$/, '')}`,
        at,
      ),
    );
    return raw;
  }
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) {
    raw.problems.push(new ConfigProblem(file, 'a JSON config must be an object', { line: 1, column: 1 }));
    return raw;
  }
  for (const [key, value] of Object.entries(doc as Record<string, unknown>)) {
    if (GROUPS.has(key) && value !== null && typeof value === 'object' && !Array.isArray(value)) {
      for (const [sub, v] of Object.entries(value as Record<string, unknown>)) {
        addOption(raw, file, `${key}.${sub}`, v, where.get(`${key}.${sub}`), where.get(`${key}.${sub}#key`));
      }
      continue;
    }
    if (key !== 'services') {
      addOption(raw, file, key, value, where.get(key), where.get(`${key}#key`));
      continue;
    }
    if (!Array.isArray(value)) {
      raw.problems.push(new ConfigProblem(file, 'services must be a list of service objects', where.get(key)));
      continue;
    }
    value.forEach((s: unknown, i: number) => {
      const at = where.get(`services.${i}`);
      if (s === null || typeof s !== 'object' || Array.isArray(s)) {
        raw.problems.push(new ConfigProblem(file, `services[${i}] must be an object {name, password, mfa}`, at));
        return;
      }
      const fields = new Map<string, Position>();
      const v: Record<string, unknown> = {};
      for (const [k, fv] of Object.entries(s as Record<string, unknown>)) {
        const fat = where.get(`services.${i}.${k}`);
        if (k === 'mfa') {
          const mfa = Array.isArray(fv) ? fv : [];
          if (!Array.isArray(fv) || fv.length !== 3) {
            raw.problems.push(new ConfigProblem(file, 'mfa must be [Module, Function, ArgsS]', fat));
          }
          for (const [j, name] of (['module', 'function', 'args'] as const).entries()) {
            v[name] = mfa[j] ?? (name === 'args' ? null : undefined);
            const pos = where.get(`services.${i}.mfa.${j}`) ?? fat;
            if (pos) fields.set(name, pos);
          }
        } else if (k === 'name' || k === 'password' || k === 'verifier' || SERVICE_OPTIONS.includes(k)) {
          v[k] = fv;
          if (fat) fields.set(k, fat);
        } else {
          raw.problems.push(
            new ConfigProblem(
              file,
              `services[${i}]: unknown field '${k}' (expected name, password or verifier, mfa, ${SERVICE_OPTIONS.join(', ')})`,
              fat,
            ),
          );
        }
      }
      raw.services.push({ value: v, at, fields });
    });
  }
  return raw;
}

// ---------------------------------------------------------------------------------------------------------------------
// Validation

let formatsAdded = false;
function addFormats(): void {
  if (formatsAdded) return;
  formatsAdded = true;
  const convict = loadConvict();
  const strictInt = (v: unknown): unknown => (typeof v === 'string' && /^\s*-?\d+\s*$/.test(v) ? Number(v) : v);
  const isInt = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v);
  convict.addFormat({
    name: 'lib-chan-port',
    coerce: strictInt,
    validate(v: unknown) {
      if (!isInt(v) || v < 0 || v > 65535) throw new Error('must be an integer from 0 to 65535');
    },
  });
  convict.addFormat({
    name: 'lib-chan-nat',
    coerce: strictInt,
    validate(v: unknown) {
      if (!isInt(v) || v < 0) throw new Error('must be a non-negative integer');
    },
  });
  convict.addFormat({
    name: 'lib-chan-positive',
    coerce: strictInt,
    validate(v: unknown) {
      if (!isInt(v) || v < 1) throw new Error('must be a positive integer');
    },
  });
  convict.addFormat({
    name: 'lib-chan-frame-size',
    coerce: strictInt,
    validate(v: unknown) {
      if (!isFrameLimit(v))
        throw new Error(
          `must be an integer from ${MIN_MAX_FRAME_SIZE} to ${MAX_FRAME_LIMIT} (docs/PROTOCOL.md, section 1)`,
        );
    },
  });
  convict.addFormat({
    name: 'lib-chan-host',
    validate(v: unknown) {
      if (typeof v !== 'string' || v.trim() === '') throw new Error('must be a host name or address, as a string');
    },
  });
  convict.addFormat({
    name: 'lib-chan-paths',
    coerce: (v: string) => v.split(path.delimiter).filter((p) => p !== ''),
    validate(v: unknown) {
      if (!Array.isArray(v) || !v.every((p) => typeof p === 'string' && p !== '')) {
        throw new Error('must be a list of folder names, as strings: ["examples"]');
      }
    },
  });
  convict.addFormat({
    name: 'lib-chan-token',
    validate(v: unknown) {
      if (v !== null && (typeof v !== 'string' || v.length < 16 || /\s/.test(v)))
        throw new Error('must be a string of at least 16 characters, without spaces');
    },
  });
  convict.addFormat({
    name: 'lib-chan-file',
    validate(v: unknown) {
      if (v !== null && (typeof v !== 'string' || v === '')) throw new Error('must be a file name, as a string');
    },
  });
  convict.addFormat({
    name: 'lib-chan-verify-client',
    validate(v: unknown) {
      if (typeof v !== 'string' || !(VERIFY_CLIENT as readonly string[]).includes(v))
        throw new Error(`must be one of ${VERIFY_CLIENT.join(', ')}`);
    },
  });
  convict.addFormat({
    name: 'lib-chan-tls-version',
    validate(v: unknown) {
      if (typeof v !== 'string' || !(TLS_VERSIONS as readonly string[]).includes(v))
        throw new Error(`must be one of ${TLS_VERSIONS.join(', ')}`);
    },
  });
  convict.addFormat({
    name: 'lib-chan-processes',
    validate(v: unknown) {
      if (v === 'auto') return;
      if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > 1024)
        throw new Error('must be a whole number from 1 to 1024, or auto');
    },
    coerce: strictInt,
  });
  convict.addFormat({
    name: 'lib-chan-store',
    validate(v: unknown) {
      if (v === null) return;
      const what = typeof v === 'string' ? parseStoreUrl(v) : 'must be a store URL, as a string';
      if (typeof what === 'string') throw new Error(what);
    },
  });
  convict.addFormat({
    name: 'lib-chan-log-level',
    validate(v: unknown) {
      if (typeof v !== 'string' || !(LOG_LEVELS as readonly string[]).includes(v)) {
        throw new Error(`must be one of ${LOG_LEVELS.join(', ')}`);
      }
    },
  });
}

const FORMAT_NAMES: Record<OptionSpec['format'], string> = {
  port: 'lib-chan-port',
  host: 'lib-chan-host',
  nat: 'lib-chan-nat',
  positive: 'lib-chan-positive',
  frameSize: 'lib-chan-frame-size',
  paths: 'lib-chan-paths',
  logLevel: 'lib-chan-log-level',
  store: 'lib-chan-store',
  processes: 'lib-chan-processes',
  file: 'lib-chan-file',
  verifyClient: 'lib-chan-verify-client',
  tlsVersion: 'lib-chan-tls-version',
  token: 'lib-chan-token',
};

/** Sets `key` in `obj`, where a dotted key (`tls.cert`) is a member of a group. */
function setDotted(obj: Record<string, unknown>, key: string, value: unknown): void {
  const [group, sub] = key.split('.');
  if (sub === undefined) obj[key] = value;
  else ((obj[group as string] ??= {}) as Record<string, unknown>)[sub] = value;
}

function schema(): convictModule.Schema<Record<string, unknown>> {
  const s: Record<string, unknown> = {};
  for (const o of OPTIONS) {
    setDotted(s, o.key, {
      doc: o.doc,
      format: FORMAT_NAMES[o.format],
      default: o.default,
      env: o.env,
      nullable: o.default === null,
      ...(o.sensitive ? { sensitive: true } : {}),
    });
  }
  return s as convictModule.Schema<Record<string, unknown>>;
}

function validate(raw: RawConfig, file: string, dir: string, env: Record<string, string | undefined>): ServerConfig {
  addFormats();
  const problems = [...raw.problems];
  const conf = loadConvict()(schema(), { env, args: [] });
  const values: Record<string, unknown> = {};
  for (const [key, { value }] of raw.options) setDotted(values, key, value);
  conf.load(values);
  try {
    conf.validate({ allowed: 'strict' });
  } catch (err) {
    for (const line of (err as Error).message.split('\n')) {
      const m = /^([\w.]+): (.*)$/.exec(line);
      const key = m?.[1] ?? '';
      const spec = OPTION_BY_KEY.get(key);
      const message = (m?.[2] ?? line).replace(/: value was .*$/, '');
      if (spec && env[spec.env] !== undefined) {
        problems.push(new ConfigProblem(file, `${key}: ${message} (from the environment variable ${spec.env})`));
      } else {
        problems.push(new ConfigProblem(file, `${key}: ${message}`, raw.options.get(key)?.at));
      }
    }
  }
  const get = (key: string): unknown => conf.get(key as never);
  const adminHost = get('admin_host');
  if (get('admin_port') !== null && get('admin_token') === null && !isLoopback(adminHost)) {
    const spec = OPTION_BY_KEY.get('admin_host');
    problems.push(
      new ConfigProblem(
        file,
        `admin_host: ${String(adminHost)} is not a loopback address, so the admin port needs admin_token (at least 16 characters; openssl rand -hex 24 makes one)${spec && env[spec.env] !== undefined ? ` (from the environment variable ${spec.env})` : ''}`,
        raw.options.get('admin_host')?.at,
      ),
    );
  }
  if (get('port') === null && raw.problems.length === 0) {
    problems.push(new ConfigProblem(file, 'no port: add {port, N}. to the file, or set CHAN_PORT'));
  }

  const services: ServiceConfig[] = [];
  const seen = new Map<string, Position | undefined>();
  for (const s of raw.services) {
    const at = (field: string): Position | undefined => s.fields.get(field) ?? s.at;
    const v = s.value;
    let ok = true;
    const bad = (field: string, message: string): void => {
      problems.push(new ConfigProblem(file, message, at(field)));
      ok = false;
    };
    const name = v['name'];
    if (typeof name !== 'string' || name === '') bad('name', 'a service name must be an atom or a non-empty string');
    else if (seen.has(name)) {
      const first = seen.get(name);
      bad('name', `service '${name}' is defined twice${first ? ` (first at line ${first.line})` : ''}`);
    } else seen.set(name, at('name'));
    let secret = v['password'] ?? null;
    let verifier: ScramVerifier | undefined;
    if ('verifier' in v) {
      const parsed =
        typeof v['verifier'] === 'string'
          ? parseVerifier(v['verifier'])
          : 'a verifier must be a string (chan passwd prints one)';
      if (typeof parsed === 'string') bad('verifier', parsed);
      else verifier = parsed;
      secret = null;
    } else if (secret !== null && (typeof secret !== 'string' || secret === '')) {
      bad('password', 'a password must be a non-empty string, or the atom none for a service without one');
    } else if (secret !== null) {
      const problem = secretProblem(secret);
      if (problem !== null) bad('password', `the password of service '${String(name)}' ${problem}`);
    }
    const isolation = v['isolation'];
    if (isolation !== undefined && isolation !== 'inline' && isolation !== 'worker')
      bad('isolation', 'isolation is inline or worker');
    const workers = v['workers'];
    if (
      workers !== undefined &&
      (typeof workers !== 'number' || !Number.isInteger(workers) || workers < 1 || workers > 64)
    ) {
      bad('workers', 'workers must be a whole number from 1 to 64');
    } else if (workers !== undefined && isolation !== 'worker') {
      bad('workers', 'workers needs {isolation, worker}');
    }
    const allowCn = v['allow_cn'];
    if (
      allowCn !== undefined &&
      (!Array.isArray(allowCn) || allowCn.length === 0 || !allowCn.every((c) => typeof c === 'string' && c !== ''))
    ) {
      bad('allow_cn', 'allow_cn must be a non-empty list of certificate common names, as strings: {allow_cn, ["ops"]}');
    }
    for (const field of ['module', 'function'] as const) {
      const x = v[field];
      if (typeof x !== 'string' || x === '')
        bad(field, `the ${field} of a service's mfa must be an atom or a non-empty string`);
    }
    if (ok) {
      services.push({
        name: name as string,
        secret: secret as string | null,
        ...(verifier ? { verifier } : {}),
        ...(allowCn !== undefined ? { allowCn: allowCn as string[] } : {}),
        ...(isolation !== undefined ? { isolation: isolation as 'inline' | 'worker' } : {}),
        ...(workers !== undefined ? { workers: workers as number } : {}),
        module: v['module'] as string,
        function: v['function'] as string,
        args: (v['args'] ?? null) as Term,
      });
    }
  }
  if (raw.services.length === 0 && raw.problems.length === 0) {
    problems.push(new ConfigProblem(file, `no services: add at least one ${SERVICE_SHAPE}.`));
  }
  if (problems.length > 0) {
    problems.sort(
      (a, b) => (a.at?.line ?? Infinity) - (b.at?.line ?? Infinity) || (a.at?.column ?? 0) - (b.at?.column ?? 0),
    );
    throw new ConfigError(problems);
  }
  const fromEnv = env['CHAN_CODE_PATH'] !== undefined;
  const fromTable = OPTIONS.filter((o) => !o.key.includes('.')).map((o): [string, unknown] => [o.prop, get(o.key)]);
  return {
    ...validated<Omit<ServerConfig, 'codePath' | 'services' | 'tls'>>(fromTable),
    codePath: (get('code_path') as string[]).map((p) => path.resolve(fromEnv ? process.cwd() : dir, p)),
    services,
    tls: tlsConfig(get, raw, file, dir, env),
  };
}

/** True for an address only this machine can reach: 127.0.0.0/8, ::1, localhost. */
export function isLoopback(host: unknown): boolean {
  if (typeof host !== 'string') return false;
  const h = host.trim().toLowerCase();
  return h === 'localhost' || h === '::1' || h === '[::1]' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}

/** The settings the option table names, each read through convict, which has checked it against its format. */
function validated<T>(entries: Iterable<[string, unknown]>): T {
  return Object.fromEntries(entries) as T;
}

/**
 * The TLS settings with their files read, or null when no certificate is configured. Throws a ConfigError for a
 * file that cannot be read or a combination that cannot work.
 */
function tlsConfig(
  get: (key: string) => unknown,
  raw: RawConfig,
  file: string,
  dir: string,
  env: Record<string, string | undefined>,
): TlsConfig | null {
  const problems: ConfigProblem[] = [];
  const at = (key: string): Position | undefined => raw.options.get(key)?.at;
  const pathOf = (key: string): string | undefined => {
    const v = get(key) as string | null;
    if (v === null) return undefined;
    const spec = OPTION_BY_KEY.get(key) as OptionSpec;
    return path.resolve(env[spec.env] !== undefined ? process.cwd() : dir, v);
  };
  const read = (key: string): string | undefined => {
    const p = pathOf(key);
    if (p === undefined) return undefined;
    try {
      return readFileSync(p, 'utf8');
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      problems.push(
        new ConfigProblem(
          file,
          `${key}: cannot read ${p}: ${e.code === 'ENOENT' ? 'no such file (chan certs makes one)' : e.message}`,
          at(key),
        ),
      );
      return undefined;
    }
  };
  const certFile = pathOf('tls.cert');
  const keyFile = pathOf('tls.key');
  const verifyClient = get('tls.verify_client') as TlsConfig['verifyClient'];
  if (certFile === undefined && keyFile === undefined) {
    if (raw.options.has('tls.ca') || raw.options.has('tls.verify_client') || raw.options.has('tls.min_version')) {
      problems.push(
        new ConfigProblem(
          file,
          'tls: the port serves TLS only with both cert and key',
          at('tls.ca') ?? at('tls.verify_client') ?? at('tls.min_version'),
        ),
      );
    }
  } else if (certFile === undefined || keyFile === undefined) {
    problems.push(new ConfigProblem(file, 'tls: cert and key go together: give both', at('tls.cert') ?? at('tls.key')));
  }
  if (verifyClient !== 'none' && get('tls.ca') === null) {
    problems.push(
      new ConfigProblem(
        file,
        `tls: verify_client ${verifyClient} needs the ca that signs client certificates`,
        at('tls.verify_client'),
      ),
    );
  }
  const cert = read('tls.cert');
  const key = read('tls.key');
  const ca = read('tls.ca');
  if (problems.length === 0 && cert !== undefined && key !== undefined) {
    try {
      createSecureContext({ cert, key, ...(ca !== undefined ? { ca } : {}) });
      const dated = certificateProblem(cert);
      if (dated) problems.push(new ConfigProblem(file, `tls.cert: ${dated}`, at('tls.cert')));
    } catch (err) {
      problems.push(
        new ConfigProblem(
          file,
          `tls: the certificate, key and ca do not work together: ${(err as Error).message}`,
          at('tls.cert'),
        ),
      );
    }
  }
  if (problems.length > 0) throw new ConfigError(problems);
  if (cert === undefined || key === undefined) return null;
  const caFile = pathOf('tls.ca');
  return {
    cert,
    key,
    ...(ca !== undefined ? { ca } : {}),
    verifyClient,
    minVersion: get('tls.min_version') as TlsConfig['minVersion'],
    files: { cert: certFile as string, key: keyFile as string, ...(caFile ? { ca: caFile } : {}) },
  };
}

/** The known name closest to `word`, if it is close enough to be a likely typo. */
function suggest(word: string, known: string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Math.max(2, Math.floor(word.length / 3)) + 1;
  for (const k of known) {
    const d = editDistance(word, k);
    if (d < bestDistance) {
      best = k;
      bestDistance = d;
    }
  }
  return best;
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(
        (prev[j] as number) + 1,
        (cur[j - 1] as number) + 1,
        (prev[j - 1] as number) + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
    }
    prev = cur;
  }
  return prev[b.length] as number;
}
