/**
 * Every message of the wire protocol, typed (docs/PROTOCOL.md is the normative text; this is its code).
 *
 * A frame's payload is one MessagePack array whose first element is the message's word:
 *
 * | message                                  | direction | when                                            |
 * | ---------------------------------------- | --------- | ----------------------------------------------- |
 * | `["startService", {version, service, args, scram?, maxFrameSize?}]` | C -> S | first frame of every connection |
 * | `["challenge", {scram}]`                 | S -> C    | the service has a secret: SCRAM server-first     |
 * | `["response", {scram}]`                  | C -> S    | SCRAM client-final, with the proof               |
 * | `["ack", {version, maxFrameSize, heartbeatInterval, scram?}]` | S -> C | accepted; `scram` is the server's signature |
 * | `["cast", X]`                            | C -> S    | one-way message                                  |
 * | `["rpc", Id, X]`                         | C -> S    | request; the handler's answer comes as a reply   |
 * | `["reply", Id, X]`                       | S -> C    | the answer to request Id                          |
 * | `["push", X]`                            | S -> C    | a message that answers no request                 |
 * | `["ping", N]` / `["pong", N]`             | both      | heartbeat: a side that hears nothing pings; the other pongs N |
 * | `["hello", {}]` / `["hello", {version, server}]` | C -> S / S -> C | instead of startService: "is this lib-chan?" (chan ping) |
 * | `["close", Reason, Text]`                | both      | the sender is ending the connection, and why      |
 *
 * A message that does not fit this table, or that arrives at the wrong moment, is a `protocolError`. Ids, N, versions,
 * frame sizes and intervals are integers: a float there (`1.0` included) does not fit.
 */
import { ChanError } from './errors.js';
import { isIntegerNumber, isTermObject, type Term, type TermObject } from './term/model.js';

/** The protocol version this code speaks; a client states its own in `startService`. */
export const PROTOCOL_VERSION = 1;
/** Request ids are unsigned 32-bit integers, 1 upwards, wrapping back to 1. */
export const MAX_REQUEST_ID = 0xffff_ffff;
/** Close texts longer than this are cut (they are for people, not for parsing). */
export const MAX_CLOSE_TEXT = 1024;

/**
 * The first `max` UTF-16 units of `text`, one fewer where the cut would split a surrogate pair. A cut text is a copy:
 * V8 keeps a slice of a long string as a view that holds the whole (a peer's close text of a megabyte would stay alive
 * as long as the 1 KiB kept of it).
 */
export function cutText(text: string, max: number): string {
  if (text.length <= max) return text;
  const code = text.charCodeAt(max - 1);
  const cut = text.slice(0, code >= 0xd800 && code <= 0xdbff ? max - 1 : max);
  return Buffer.from(cut, 'utf16le').toString('utf16le');
}
/**
 * The smallest frame limit a client may state in startService (every message of the protocol but a handler's own
 * fits in it: close texts are cut to fit the peer's limit).
 */
export const MIN_MAX_FRAME_SIZE = 256;
/** The largest frame limit: the most a frame's 4-byte length can say. */
export const MAX_FRAME_LIMIT = 0xffff_ffff;
const MAX_WORD = 64;

export type WireMessage =
  | { kind: 'startService'; version: number; service: string; args: Term; scram?: string; maxFrameSize?: number }
  | { kind: 'challenge'; scram: string }
  | { kind: 'response'; scram: string }
  | { kind: 'ack'; version: number; maxFrameSize: number; heartbeatInterval?: number; scram?: string }
  | { kind: 'cast'; data: Term }
  | { kind: 'rpc'; id: number; data: Term }
  | { kind: 'reply'; id: number; data: Term }
  | { kind: 'push'; data: Term }
  | { kind: 'ping'; n: number }
  | { kind: 'pong'; n: number }
  | { kind: 'hello'; version?: number; server?: string }
  | { kind: 'close'; reason: string; text: string };

/** The value to encode for a message. */
export function toWire(m: WireMessage): Term {
  switch (m.kind) {
    case 'startService': {
      const body: TermObject = { version: m.version, service: m.service, args: m.args };
      if (m.scram !== undefined) body['scram'] = m.scram;
      if (m.maxFrameSize !== undefined) body['maxFrameSize'] = m.maxFrameSize;
      return [m.kind, body];
    }
    case 'challenge':
    case 'response':
      return [m.kind, { scram: m.scram }];
    case 'ack': {
      const body: TermObject = { version: m.version, maxFrameSize: m.maxFrameSize };
      if (m.heartbeatInterval !== undefined) body['heartbeatInterval'] = m.heartbeatInterval;
      if (m.scram !== undefined) body['scram'] = m.scram;
      return [m.kind, body];
    }
    case 'ping':
    case 'pong':
      return [m.kind, m.n];
    case 'hello': {
      const body: TermObject = {};
      if (m.version !== undefined) body['version'] = m.version;
      if (m.server !== undefined) body['server'] = m.server;
      return [m.kind, body];
    }
    case 'cast':
    case 'push':
      return [m.kind, m.data];
    case 'rpc':
    case 'reply':
      return [m.kind, m.id, m.data];
    case 'close':
      return [m.kind, m.reason, m.text];
  }
}

function bad(message: string): ChanError {
  return new ChanError('protocolError', message);
}

function field<T>(body: TermObject, name: string, check: (v: unknown) => v is T, what: string, kind: string): T {
  const v = Object.hasOwn(body, name) ? body[name] : undefined;
  if (!check(v)) throw bad(`${kind}: field '${name}' must be ${what}`);
  return v;
}

const isString = (v: unknown): v is string => typeof v === 'string';
// An integer field takes a MessagePack integer only: a float (1.0 decodes as a Float; -0.0 as the number -0) is refused.
const isNat = (v: unknown): v is number => typeof v === 'number' && isIntegerNumber(v) && v >= 0;
const isRequestId = (v: unknown): v is number => isNat(v) && v >= 1 && v <= MAX_REQUEST_ID;
/** A frame limit a peer may state, or a server be given: an integer from 256 to 4294967295. */
export const isFrameLimit = (v: unknown): v is number => isNat(v) && v >= MIN_MAX_FRAME_SIZE && v <= MAX_FRAME_LIMIT;

/** A message of `n` elements, the word included (a function of its own: no closure per message). */
function arity(a: readonly Term[], kind: string, n: number): void {
  if (a.length !== n) throw bad(`${kind}: expected ${n - 1} element(s) after the word, got ${a.length - 1}`);
}

/**
 * How messages become terms on a connection, and terms messages: lib-chan's protocol (an envelope per message, this
 * file), or the original lib_chan's (original.ts: the term itself, no envelope, no close frame). The middle-man and
 * the connections speak {@link WireMessage} either way.
 */
export interface Dialect {
  readonly name: 'lib-chan' | 'erlang';
  /** The term that carries `m`, or undefined for a message the dialect has no form for (nothing is sent). */
  toWire(m: WireMessage): Term | undefined;
  /** The message a decoded term carries; throws `protocolError` when it is none. */
  fromWire(t: Term): WireMessage;
  /** What tells the peer why the connection ends, or undefined for nothing (the socket just closes). */
  closeFrame(reason: string, text: string, inSession: boolean): Term | undefined;
  /** True for the message that ends a client's handshake with success. */
  isAck(m: WireMessage): boolean;
  /**
   * True for a message nobody waits on (an answer is never a one-way message): it does not count toward the early
   * flush's frames (mm.ts, EARLY_FLUSH_FRAMES).
   */
  oneWay(m: WireMessage): boolean;
}

/** lib-chan's own protocol (docs/PROTOCOL.md). */
export const LIB_CHAN: Dialect = {
  name: 'lib-chan',
  toWire,
  fromWire,
  closeFrame: (reason, text) => ['close', reason, text],
  isAck: (m) => m.kind === 'ack',
  oneWay: (m) => m.kind === 'cast' || m.kind === 'push',
};

/** Reads a decoded payload as a message; throws `protocolError` when it is not one. */
export function fromWire(t: Term): WireMessage {
  if (!Array.isArray(t) || typeof t[0] !== 'string') throw bad('a message must be an array that starts with its word');
  const a = t as readonly Term[];
  const kind = a[0] as string;
  switch (kind) {
    // A session message's kind is given on as this module's own word, not the decoded string: the layers after
    // compare it with their words at once (two strings that are not the same object are compared character by
    // character). The handshake's and close's, rarer, keep the decoded word.
    case 'cast':
      arity(a, kind, 2);
      return { kind: 'cast', data: a[1] as Term };
    case 'push':
      arity(a, kind, 2);
      return { kind: 'push', data: a[1] as Term };
    case 'rpc':
    case 'reply':
      arity(a, kind, 3);
      if (!isRequestId(a[1])) throw bad(`${kind}: the request id must be an integer from 1 to ${MAX_REQUEST_ID}`);
      return { kind: kind === 'rpc' ? 'rpc' : 'reply', id: a[1], data: a[2] as Term };
    case 'ping':
    case 'pong':
      arity(a, kind, 2);
      if (!isNat(a[1]) || a[1] > MAX_REQUEST_ID) throw bad(`${kind}: expected an integer from 0 to ${MAX_REQUEST_ID}`);
      return { kind: kind === 'ping' ? 'ping' : 'pong', n: a[1] };
    case 'close': {
      arity(a, kind, 3);
      const [, reason, text] = a;
      if (!isString(reason) || reason.length > MAX_WORD || !isString(text))
        throw bad('close: expected a reason word and a text');
      return { kind, reason, text: cutText(text, MAX_CLOSE_TEXT) };
    }
    case 'startService':
    case 'challenge':
    case 'response':
    case 'ack':
    case 'hello': {
      arity(a, kind, 2);
      const body = a[1];
      if (!isTermObject(body)) throw bad(`${kind}: expected a map after the word`);
      switch (kind) {
        case 'hello': {
          const m: WireMessage = { kind };
          if (body['version'] !== undefined) m.version = field(body, 'version', isNat, 'a non-negative integer', kind);
          if (body['server'] !== undefined) m.server = field(body, 'server', isString, 'a string', kind).slice(0, 100);
          return m;
        }
        case 'startService': {
          const version = field(body, 'version', isNat, 'a non-negative integer', kind);
          const service = field(body, 'service', isString, 'a string', kind);
          const args = Object.hasOwn(body, 'args') ? (body['args'] as Term) : null;
          const m: WireMessage = { kind, version, service, args };
          const scram = body['scram'];
          if (scram !== undefined) m.scram = field(body, 'scram', isString, 'a string', kind);
          if (body['maxFrameSize'] !== undefined) {
            m.maxFrameSize = field(
              body,
              'maxFrameSize',
              isFrameLimit,
              `an integer from ${MIN_MAX_FRAME_SIZE} to ${MAX_FRAME_LIMIT}`,
              kind,
            );
          }
          return m;
        }
        case 'challenge':
        case 'response':
          return { kind, scram: field(body, 'scram', isString, 'a string', kind) };
        case 'ack': {
          const version = field(body, 'version', isNat, 'a non-negative integer', kind);
          const maxFrameSize = field(body, 'maxFrameSize', isNat, 'a non-negative integer', kind);
          const m: WireMessage = { kind, version, maxFrameSize };
          if (body['heartbeatInterval'] !== undefined)
            m.heartbeatInterval = field(body, 'heartbeatInterval', isNat, 'a non-negative integer', kind);
          if (body['scram'] !== undefined) m.scram = field(body, 'scram', isString, 'a string', kind);
          return m;
        }
      }
    }
  }
  throw bad('unknown message word');
}
