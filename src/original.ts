/**
 * The original lib_chan protocol (Programming Erlang's lib_chan, lib_chan_auth and lib_chan_mm), for Erlang peers:
 * docs/ERLANG.md is its description for users. Frames are `{packet, 4}` with one external term each (codec/etf.ts).
 *
 *   client                                    server
 *   {startService, Service, ArgsC}         ->
 *                                          <- {challenge, C}    the service has a secret; C: 25 lowercase letters
 *                                          <- ack               the service has none
 *                                          <- badService        no such service (then the server closes)
 *   {response, R}                          ->                   R: the lowercase hex MD5 of C ++ Secret, a string
 *                                          <- ack | authFail    (after authFail the server closes)
 *
 * After `ack` every frame is one message, both ways: there are no request ids, no heartbeats and no close frame. A
 * client's rpc sends its term and takes the next term that arrives as its answer.
 *
 * On lib-chan's side, every term that arrives is a `cast` to the middle-man's sink (the handler's mailbox yields
 * `{chan, MM, X}` as on the main port, without a request id, so `send` pushes), and every message sent is its term
 * alone. During the handshake a server tells a refused client why with the reason's word as an atom (`badService`,
 * `authFail`, `authThrottled`, `tooManyConnections`, ...), which the book's client returns as `{error, Word}`.
 */
import { createHash, randomInt, timingSafeEqual } from 'node:crypto';
import { ChanError, isCloseReason, type CloseReason } from './errors.js';
import type { FailureCount, HandshakeIO, HandshakeOutcome, ServiceAuth } from './handshake.js';
import type { Dialect, WireMessage } from './protocol.js';
import { Atom, isAtom, isTuple, tuple, type Term } from './term/model.js';

/** The length of a challenge, in lowercase letters (as the original server makes them). */
export const CHALLENGE_LETTERS = 25;

function carried(m: WireMessage): Term | undefined {
  switch (m.kind) {
    case 'cast':
    case 'push':
    case 'rpc':
    case 'reply':
      return m.data;
    default:
      return undefined; // pings, pongs and close frames do not exist in the original protocol
  }
}

const asCast = (t: Term): WireMessage => ({ kind: 'cast', data: t });
/** Every message of the original protocol is sent one way, and any may be the answer a peer waits on. */
const neverOneWay = (): boolean => false;
const isAckTerm = (m: WireMessage): boolean => m.kind === 'cast' && isAtom(m.data, 'ack');

/** The original protocol, a server's side: a refusal during the handshake is told as its word, an atom. */
export const ORIGINAL_SERVER: Dialect = {
  name: 'erlang',
  toWire: carried,
  fromWire: asCast,
  closeFrame: (reason, _text, inSession) => (inSession ? undefined : new Atom(reason)),
  isAck: isAckTerm,
  oneWay: neverOneWay,
};

/** The original protocol, a client's side: it never sends anything when it closes. */
export const ORIGINAL_CLIENT: Dialect = {
  name: 'erlang',
  toWire: carried,
  fromWire: asCast,
  closeFrame: () => undefined,
  isAck: isAckTerm,
  oneWay: neverOneWay,
};

/** The shortest challenge the client answers (a server's are CHALLENGE_LENGTH letters). */
export const MIN_CHALLENGE_LENGTH = 16;

/** A new challenge: 25 random lowercase letters. */
export function newChallenge(): string {
  let s = '';
  for (let i = 0; i < CHALLENGE_LETTERS; i++) s += String.fromCharCode(97 + randomInt(26));
  return s;
}

/**
 * The answer to challenge `c` for `secret`: the lowercase hex MD5 of the challenge followed by the secret. Erlang
 * hashes a string as its bytes, so the secret counts as Latin-1 when every character fits a byte; one with other
 * characters counts as its UTF-8 bytes (an Erlang client must then give the secret as those bytes).
 */
export function challengeResponse(c: string, secret: string): string {
  const latin1 = /^[\0-\xff]*$/.test(secret);
  const bytes = Buffer.concat([Buffer.from(c, 'latin1'), Buffer.from(secret, latin1 ? 'latin1' : 'utf8')]);
  return createHash('md5').update(bytes).digest('hex');
}

/** What the original handshake needs of a service besides lib-chan's: its plaintext secret, which MD5 needs itself. */
export interface OriginalServiceAuth extends ServiceAuth {
  /** The plaintext secret; null for a service without one, or one whose secret is stored as a SCRAM verifier. */
  readonly secret: string | null;
}

/** Why `service` cannot be served on the Erlang port, or null when it can. */
export function originalRefusal(service: OriginalServiceAuth): string | null {
  if (service.allowCn)
    return `service ${service.name} takes only TLS clients with a certificate (allow_cn), and the Erlang port has no TLS`;
  if (service.verifier !== null && service.secret === null)
    return `service ${service.name} has a stored SCRAM verifier, and the Erlang port's MD5 challenge needs the plaintext secret`;
  return null;
}

export interface OriginalServerHandshakeOptions<S extends OriginalServiceAuth> {
  lookup: (name: string) => S | undefined;
  peer: { address: string };
  throttle?: FailureCount;
  /** Where challenges come from (a fixed one for tests). */
  challenge?: () => string;
}

/** The server's side of one connection's original handshake: the same outcomes as lib-chan's (handshake.ts). */
export class OriginalServerHandshake<S extends OriginalServiceAuth> {
  private state: { at: 'start' } | { at: 'challenged'; service: S; args: Term; challenge: string } | { at: 'done' } = {
    at: 'start',
  };

  /** The service asked for, once known (for logs). */
  service: string | undefined;

  constructor(private readonly o: OriginalServerHandshakeOptions<S>) {}

  step(m: WireMessage): HandshakeOutcome<S> {
    const s = this.state;
    const x = m.kind === 'cast' ? m.data : undefined;
    if (s.at !== 'done') {
      // A locked-out address is refused at either step, as on the main port.
      const lockedFor = this.o.throttle?.lockedFor(this.o.peer.address) ?? 0;
      if (lockedFor > 0) {
        this.state = { at: 'done' };
        return refuse(
          'authThrottled',
          `too many failed handshakes from ${this.o.peer.address}; try again in ${Math.ceil(lockedFor / 1000)} s`,
        );
      }
    }
    if (s.at === 'start' && isTuple(x, 'startService', 3)) return this.start(x.at(1) as Term, x.at(2) as Term);
    if (s.at === 'challenged' && isTuple(x, 'response', 2)) return this.finish(s, x.at(1) as Term);
    this.state = { at: 'done' };
    const expected =
      s.at === 'start' ? '{startService, Service, ArgsC}' : s.at === 'challenged' ? '{response, R}' : 'nothing more';
    return refuse('protocolError', `expected ${expected} during the handshake`);
  }

  private start(name: Term, args: Term): HandshakeOutcome<S> {
    this.state = { at: 'done' };
    const wanted = name instanceof Atom ? name.name : typeof name === 'string' ? name : null;
    if (wanted === null) return refuse('protocolError', 'startService: the service must be an atom or a string');
    const service = this.o.lookup(wanted);
    if (!service) return refuse('badService', `no service named ${JSON.stringify(wanted.slice(0, 100))}`);
    this.service = service.name;
    const refusal = service.refusal?.();
    if (refusal) return refuse(refusal.reason, refusal.text);
    const notHere = originalRefusal(service);
    if (notHere) return refuse('badService', notHere);
    if (service.secret === null) return accept(service, args);
    const challenge = (this.o.challenge ?? newChallenge)();
    this.state = { at: 'challenged', service, args, challenge };
    return { kind: 'send', message: { kind: 'push', data: tuple(new Atom('challenge'), challenge) } };
  }

  private finish(s: { service: S; args: Term; challenge: string }, r: Term): HandshakeOutcome<S> {
    this.state = { at: 'done' };
    const secret = s.service.secret;
    const expected = Buffer.from(challengeResponse(s.challenge, secret ?? ''), 'latin1');
    // Hex in either case: the book writes it in lowercase, and the case says nothing about the secret.
    const given = typeof r === 'string' ? Buffer.from(r.toLowerCase(), 'latin1') : Buffer.alloc(0);
    if (secret === null || given.length !== expected.length || !timingSafeEqual(given, expected)) {
      const lockedOut = this.o.throttle?.fail(this.o.peer.address) ?? false;
      return { kind: 'close', reason: 'authFail', text: `wrong secret for service ${s.service.name}`, lockedOut };
    }
    return accept(s.service, s.args);
  }
}

function accept<S extends ServiceAuth>(service: S, args: Term): HandshakeOutcome<S> {
  return { kind: 'accept', service, args, ack: { kind: 'push', data: new Atom('ack') } };
}

function refuse<S extends ServiceAuth>(reason: CloseReason, text: string): HandshakeOutcome<S> {
  return { kind: 'close', reason, text };
}

/**
 * The client's side of the original handshake. Resolves once the server has said `ack`; rejects with a
 * {@link ChanError} named by the server's word (`badService`, `authFail`, ...).
 */
export async function originalClientHandshake(
  io: HandshakeIO,
  o: { service: string; secret: string | null; args: Term },
): Promise<void> {
  io.send({ kind: 'cast', data: tuple(new Atom('startService'), new Atom(o.service), o.args) });
  const first = answer(await io.next());
  if (isAtom(first, 'ack')) return;
  if (!isTuple(first, 'challenge', 2) || typeof first.at(1) !== 'string') throw refusedBy(first, o.service);
  if (o.secret === null) throw new ChanError('authFail', `service ${o.service} needs a secret`);
  // A short (or empty) challenge would have us send little more than an MD5 of the secret, for an impostor to look up:
  // lib_chan's are 25 random letters.
  if ((first.at(1) as string).length < MIN_CHALLENGE_LENGTH)
    throw new ChanError(
      'badServer',
      `the server's challenge has ${(first.at(1) as string).length} characters, under the ${MIN_CHALLENGE_LENGTH} this client answers`,
    );
  const response = challengeResponse(first.at(1) as string, o.secret);
  io.send({ kind: 'cast', data: tuple(new Atom('response'), response) });
  const second = answer(await io.next());
  if (!isAtom(second, 'ack')) throw refusedBy(second, o.service);
}

function answer(m: WireMessage): Term {
  if (m.kind === 'cast') return m.data;
  throw new ChanError('protocolError', `unexpected ${m.kind} during the handshake`);
}

/** What the server's refusal means: its word, or a protocolError when it said something else. */
function refusedBy(x: Term, service: string): ChanError {
  if (isAtom(x, 'authFail')) return new ChanError('authFail', `wrong secret for service ${service}`);
  if (isAtom(x, 'badService')) return new ChanError('badService', `the server has no service named ${service}`);
  if (x instanceof Atom && isCloseReason(x.name)) return new ChanError(x.name, `the server refused: ${x.name}`);
  return new ChanError('protocolError', 'the server did not answer the handshake as lib_chan does');
}
