/**
 * lib-chan: named, secret-guarded services on one port (Joe Armstrong's lib_chan for Node.js).
 *
 * Client: {@link connect} -> {@link Channel} (`cast`, `rpc`, `receive`, `close`); {@link kvsClient} for the name server.
 * Server: {@link startServer} with a config file or options; handlers are `(mm, argsC, argsS, ctx)` (see {@link MM}).
 * Terms: {@link atom}, {@link tuple}, {@link float}, {@link parseTerm}, {@link formatTerm}.
 */
export {
  connect,
  Channel,
  CLIENT_DEFAULTS,
  RECONNECT_DEFAULTS,
  defaultSaltedPasswordCache,
  backoff,
  type ConnectOptions,
  type RpcOptions,
  type ReconnectOptions,
  type ChannelState,
  type StateChange,
  type ChannelStats,
} from './client.js';
export { SaltedPasswordCache, makeVerifier, formatVerifier, parseVerifier, type ScramVerifier } from './auth/scram.js';
export type { TlsClientOptions } from './tls.js';
export { memoryTransport, duplexPair } from './memory-transport.js';
export type { Transport, PeerInfo, Listening } from './transport.js';
export { makeCertificate, writeCerts, type KeyPair, type CertSpec } from './certs.js';
export { kvsClient, type KvsClient } from './kvs.js';
export { startServer, ChanServer, type ServerOptions, type ServerStats } from './server.js';
export type { ServerSettings } from './config/load.js';
export type { ServiceDefinition, ServiceLimits, StartContext } from './modules.js';
export { ALREADY_COMMITTED } from './store/store.js';
export type { Namespace, PutResult } from './store/store.js';
export type { ServiceGroups } from './groups.js';
export { behaviour } from './runtime.js';
export type {
  MM,
  ChanMessage,
  ChanClosedMessage,
  MailboxMessage,
  Handler,
  Behaviour,
  ServiceContext,
} from './runtime.js';
export type { CloseInfo } from './errors.js';
export type { ReceiveOptions } from './inbox.js';
export { ChanError, ERROR_CODES, CLOSE_REASONS, type ErrorCode, type CloseReason } from './errors.js';
export {
  loadConfigFile,
  parseConfig,
  ConfigError,
  ConfigProblem,
  type ServerConfig,
  type ServiceConfig,
  type TlsConfig,
} from './config/load.js';
export { DEFAULTS, OPTIONS } from './config/options.js';
export { createLogger, type Logger } from './log.js';
export { PROTOCOL_VERSION } from './protocol.js';
export { ping, type PingResult } from './ping.js';
export { VERSION } from './version.js';
export {
  Atom,
  Tuple,
  Float,
  atom,
  tuple,
  float,
  isAtom,
  isTuple,
  isFloat,
  formatTerm,
  parseTerm,
  parseTerms,
  termEquals,
  termKey,
  TermSyntaxError,
  parseJsonTerm,
  formatJsonTerm,
  termToJson,
  jsonToTerm,
  type Term,
  type TermObject,
} from './term/index.js';
