/**
 * Every error code and close reason lib-chan produces, in one place.
 *
 * A code is lib_chan's own word where lib_chan had one (`badService`, `authFail`, `econnrefused`), so an Erlang
 * programmer reads it at once. The same word travels in a close frame (see docs/PROTOCOL.md), is the `code` of a
 * {@link ChanError} in the client library, and is the `<word>` of the CLI's `chan: <word>: <what happened>` line.
 * docs/ERRORS.md lists each with its cause and fix; a test keeps the two in sync.
 */

/** Why a connection ended: sent in the close frame, and given to both sides' `chan_closed`. */
export const CLOSE_REASONS = {
  normal: 'The handler returned, or one side called close(): the conversation ended as intended.',
  peerClosed: 'The peer closed the socket without a close frame (its process was killed, or the network dropped).',
  shutdown: 'The server is shutting down (SIGTERM, SIGINT or server.close()); reconnect when it is back.',
  timeout:
    'A deadline passed: the handshake (handshake_timeout), heartbeats unanswered (heartbeat_max_missed), a connect (connectTimeout), an rpc (its timeout) or a receive; find what is slow or dead.',
  slowConsumer:
    'More than send_buffer_limit bytes waited for a peer that does not read (or the server was over max_queued_bytes, and this peer held the most unread bytes); read faster, send less, or raise the limit.',
  overloaded:
    'The server was over max_queued_bytes for all connections together, and this connection held the most in messages its handler had not taken; they were dropped. Send less at once, or raise the limit.',
  tooManyConnections:
    'The server was at max_connections, or at max_unauthenticated connections in the handshake; retry later, or raise the limit.',
  protocolError:
    'The peer sent bytes that are not a valid lib-chan message at that point of the protocol (docs/PROTOCOL.md); the text says what was wrong.',
  frameTooLarge:
    'A frame announced a length over max_frame_size (max_frame_size_unauth before authentication); send less or raise the limit.',
  handlerError:
    "The service's handler threw; the close text is the error's message (the stack is in the server's log).",
  serviceDown:
    'The service failed more than restart_intensity times within restart_period and is down: new connections to it are refused until a retry starts it again (after service_retry_delay, doubled after each failed try up to service_retry_max_delay). The server log says why it failed; once fixed, it comes back by itself (no restart).',
  handlerTimeout:
    "The service's handler blocked its worker thread for over handler_block_timeout (a loop that never yields); the worker was replaced.",
  badService: 'The server has no service by the requested name; names are case-sensitive (see the server config).',
  authFail: 'The proof of the secret was wrong, or the service needs a secret and none was given; check the secret.',
  badServer:
    'The server could not prove that it knows the secret (it may be an impostor), or broke the handshake; the client refused it.',
  authThrottled:
    'Too many failed handshakes came from this address (auth_max_failures within auth_failure_window); it is refused for auth_lockout.',
  badCert:
    "The service accepts only clients whose certificate's common name is in its allow_cn list; present an allowed client certificate over TLS.",
  badVersion: 'The client asked for a protocol version the server does not speak; upgrade the older side.',
  internalError:
    "A fault of lib-chan's own while reading a frame (a bug, not the peer's doing); the connection was closed. The log of the side that closed it has the error and its stack: please report it.",
} as const;

export type CloseReason = keyof typeof CLOSE_REASONS;

/** Errors of the client library and the CLI that are not close reasons. */
export const ERROR_CODES = {
  ...CLOSE_REASONS,
  tlsFailed:
    "The TLS handshake failed: the server's certificate is not trusted (wrong --ca, expired, another host name), or the port does not speak TLS.",
  tlsRejected:
    'The server rejected our client certificate (missing, or not signed by its CA); give one with --cert and --key.',
  disconnected:
    'The connection was lost and the channel is reconnecting (reconnect option): the call was not sent, or its answer was lost; retry it.',
  closed:
    "The channel is closed: the call was made after close, or the connection ended while it waited; the error's reason says why.",
  badRequest:
    'The service did not understand the request (the name server answers {error, {badRequest, X}}); check the message shape.',
  storeFull:
    "The name server's store was at store_max_bytes (its answer {error, {storeFull, Text}}): nothing was stored, and the connection carries on. Store less, or raise store_max_bytes.",
  tooLarge:
    'The name server would not store a value it could not send back (its answer {error, {tooLarge, Text}}): {ok, Value} would be over the limits a lookup is answered within (max_frame_size, the decoded-size limit). Store a smaller value, or raise the limits.',
  econnrefused: 'Nothing listens on that host and port: start the server or check the port.',
  nxdomain: 'The host name does not resolve: check the spelling or your DNS.',
  ehostunreach: 'The host or its network cannot be reached.',
  socketError: 'Another socket error (the message names it); the connection could not be used.',
  badTerm:
    'A value cannot be sent: it is not a term lib-chan can encode (functions, symbols, Dates, class instances, cycles, nesting over max_depth).',
  badConfig:
    'The configuration is invalid or a service cannot start: every problem is listed, with file:line:column where it has one.',
  storeFailed:
    'The store (store option: an LMDB directory, a Redis server) could not be read or written: disk full, directory not writable, Redis away. The rpc is answered {error, {storeFailed, Text}} and the connection stays up; the next call tries again (Redis reconnects by itself).',
  aborted:
    "The caller's AbortSignal ended the call (connect, rpc or receive, given { signal }); an rpc's late answer is dropped.",
  usage:
    'A call or command line was used wrongly (reply() to a cast, iterating a mailbox twice, a secret SASLprep refuses, a bad chan argument); the message says how.',
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

/** The error type of lib-chan: `code` is a stable word from {@link ERROR_CODES}. */
export class ChanError extends Error {
  readonly code: ErrorCode;
  /** For `closed`: the close reason of the connection (`normal`, `handlerError`, `shutdown`, ...). */
  readonly reason?: string;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown; reason?: string }) {
    super(message, options);
    this.name = 'ChanError';
    this.code = code;
    if (options?.reason !== undefined) this.reason = options.reason;
  }
}

/**
 * A value over a limit (nesting deeper than max_depth, a decoded size or frame over the receiver's): a fact about the
 * data, not a mistake in the code. An rpc whose answer is over a limit fails with `{error, {Code, Text}}` instead of
 * ending the connection (runtime.ts).
 */
export class LimitError extends ChanError {}

export function isCloseReason(word: unknown): word is CloseReason {
  return typeof word === 'string' && Object.hasOwn(CLOSE_REASONS, word);
}

export function isErrorCode(word: unknown): word is ErrorCode {
  return typeof word === 'string' && Object.hasOwn(ERROR_CODES, word);
}

/** Maps a Node socket error to lib_chan's words (the ones `gen_tcp` would have given). */
export function socketErrorCode(err: NodeJS.ErrnoException): ErrorCode {
  switch (err.code) {
    case 'ECONNREFUSED':
      return 'econnrefused';
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
    case 'EAI_NONAME':
      return 'nxdomain';
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
      return 'ehostunreach';
    case 'ETIMEDOUT':
      return 'timeout';
    default:
      return 'socketError';
  }
}

/** How a connection ended. */
export interface CloseInfo {
  /** A word from CLOSE_REASONS (a newer peer may send one this version does not know). */
  reason: CloseReason | string;
  /** For people: what happened. */
  text: string;
  /** Which side ended the connection. */
  by: 'local' | 'peer';
  /** The socket error that ended it, if one did (a TLS alert, a reset). */
  error?: NodeJS.ErrnoException;
}

/** The error of a call on a connection that has closed: `closed`, with the close reason. */
export function closedError(info: CloseInfo): ChanError {
  return new ChanError('closed', `channel closed (${info.reason}): ${info.text}`, { reason: info.reason });
}
