/**
 * The handshake: lib_chan's steps and words, carrying a SCRAM-SHA-256 proof (see auth/scram.ts). Every rule before
 * the session is here: `hello` (only as a connection's first message), the version, the service, allow_cn, failure
 * throttling (checked at both steps, counted on authFail), SCRAM, and the client's frame limit.
 *
 *   client                                                   server
 *   ["hello", {version}]                                   ->
 *                                                         <- ["hello", {version, server}], then close normal
 *   ["startService", {version, service, args, scram: CF}] ->
 *                                                         <- ["challenge", {scram: SF}]      the service has a secret
 *                                                         <- ["ack", {version, maxFrameSize, heartbeatInterval}]: no secret
 *                                                         <- ["close", "badService", Text]   no such service
 *                                                         <- ["close", "badVersion", Text]   unknown protocol version
 *                                                         <- ["close", "badCert", Text]      allow_cn, and the client
 *                                                                                            certificate is missing or not listed
 *   ["response", {scram: CFinal}]                          ->
 *                                                         <- ["ack", {version, maxFrameSize, heartbeatInterval, scram: "v=..."}]
 *                                                         <- ["close", "authFail", Text]     wrong proof, or no secret given
 *
 * CF is SCRAM's client-first message (`n,,n=<service>,r=<client nonce>`), SF its server-first
 * (`r=<nonce>,s=<salt>,i=<iterations>`), CFinal its client-final (`c=biws,r=<nonce>,p=<proof>`). The client checks
 * the server's signature in the ack; a server that cannot give it is refused with badServer. Anything else, at any
 * step, is a protocolError. The server's side is a state machine with no I/O (its clock and nonces can be given); the
 * client's is an async procedure.
 */
import * as scram from './auth/scram.js';
import { ChanError, isCloseReason, type CloseReason } from './errors.js';
import { MIN_MAX_FRAME_SIZE, PROTOCOL_VERSION, type WireMessage } from './protocol.js';
import { SERVER_NAME } from './version.js';
import type { Term } from './term/model.js';

/** What the server knows of a service for the handshake. */
export interface ServiceAuth {
  name: string;
  /** null: a service without a secret. */
  verifier: scram.ScramVerifier | null;
  /** When set, only a client whose verified TLS certificate has one of these common names may use the service. */
  allowCn?: readonly string[];
  /** Why the service takes no connections now (it is down), or null. */
  refusal?(): { reason: CloseReason; text: string } | null;
}

/** Failure throttling as the handshake sees it (auth/throttle.ts; shared by every connection of the server). */
export interface FailureCount {
  /** ms until `address` may try again; 0 when it may now. */
  lockedFor(address: string): number;
  /** Counts a failed proof; true when that locks the address out. */
  fail(address: string): boolean;
}

export interface ServerHandshakeOptions<S extends ServiceAuth> {
  /** The services a client may ask for, as the handshake reads them (swapped whole on reload). */
  lookup: (name: string) => S | undefined;
  /** The frame limit and heartbeat interval the ack announces. */
  maxFrameSize: number;
  heartbeatInterval: number;
  /** The client's address (what throttling counts by) and the common name of its verified TLS certificate, if any. */
  peer: { address: string; certCn?: string };
  throttle?: FailureCount;
  /** Where server nonces come from (fixed ones make docs/PROTOCOL.md's worked example). */
  newNonce?: () => string;
}

/**
 * What a step decided. `peerMaxFrameSize` (on every outcome from startService on): the largest frame the client said
 * it accepts, which every frame sent from then on must fit, a refusal's close frame too. `answer` on a close: a message
 * that goes before the close frame (hello's answer).
 */
export type HandshakeOutcome<S extends ServiceAuth = ServiceAuth> = (
  | { kind: 'send'; message: WireMessage }
  /** `service`: the entry the lookup gave, for the connection to attach to. */
  | { kind: 'accept'; service: S; args: Term; ack: WireMessage }
  | { kind: 'close'; reason: CloseReason; text: string; answer?: WireMessage; lockedOut?: boolean }
) & { peerMaxFrameSize?: number };

/** The server's side of one connection's handshake. Feed it each message with `step`. */
export class ServerHandshake<S extends ServiceAuth = ServiceAuth> {
  private state:
    | { at: 'start' }
    | {
        at: 'challenged';
        service: S;
        verifier: scram.ScramVerifier;
        args: Term;
        nonce: string;
        clientFirstBare: string;
        serverFirst: string;
      }
    | { at: 'done' } = { at: 'start' };

  private readonly newNonce: () => string;
  /** The client's frame limit, once its startService has said it. */
  private peerMaxFrameSize: number | undefined;

  constructor(private readonly o: ServerHandshakeOptions<S>) {
    this.newNonce = o.newNonce ?? scram.newNonce;
  }

  /** The service asked for, once known (for logs). */
  service: string | undefined;

  step(m: WireMessage): HandshakeOutcome<S> {
    const out = this.decide(m);
    return this.peerMaxFrameSize === undefined ? out : { ...out, peerMaxFrameSize: this.peerMaxFrameSize };
  }

  private decide(m: WireMessage): HandshakeOutcome<S> {
    const s = this.state;
    if (s.at === 'start' && m.kind === 'hello') {
      // "Is this lib-chan, and which version?" (chan ping): answered without a secret, then the connection ends.
      this.state = { at: 'done' };
      const answer: WireMessage = { kind: 'hello', version: PROTOCOL_VERSION, server: SERVER_NAME };
      return { kind: 'close', reason: 'normal', text: 'hello answered', answer };
    }
    if (m.kind === 'startService' && m.maxFrameSize !== undefined && s.at !== 'done')
      this.peerMaxFrameSize = m.maxFrameSize;
    if (m.kind === 'startService' || m.kind === 'response') {
      // A locked-out address gets authThrottled for any handshake message, before its place in the exchange is checked.
      const throttled = this.throttled();
      if (throttled) return throttled;
    }
    if (s.at === 'start' && m.kind === 'startService') return this.start(m);
    if (s.at === 'challenged' && m.kind === 'response') return this.finish(s, m.scram);
    this.state = { at: 'done' };
    const expected = s.at === 'start' ? 'startService' : s.at === 'challenged' ? 'response' : 'nothing more';
    return refuse('protocolError', `expected ${expected} during the handshake, got ${m.kind}`);
  }

  /**
   * Checked at both steps: a client that opened many handshakes at once must not get a guess in on each of them.
   */
  private throttled(): HandshakeOutcome<S> | null {
    const lockedFor = this.o.throttle?.lockedFor(this.o.peer.address) ?? 0;
    if (lockedFor === 0) return null;
    this.state = { at: 'done' };
    return refuse(
      'authThrottled',
      `too many failed handshakes from ${this.o.peer.address}; try again in ${Math.ceil(lockedFor / 1000)} s`,
    );
  }

  /** A wrong or missing proof: counted against the client's address. */
  private authFail(text: string): HandshakeOutcome<S> {
    const lockedOut = this.o.throttle?.fail(this.o.peer.address) ?? false;
    return { kind: 'close', reason: 'authFail', text, lockedOut };
  }

  private start(m: Extract<WireMessage, { kind: 'startService' }>): HandshakeOutcome<S> {
    this.state = { at: 'done' };
    if (m.version !== PROTOCOL_VERSION) {
      return refuse('badVersion', `this server speaks protocol version ${PROTOCOL_VERSION}, not ${m.version}`);
    }
    const service = this.o.lookup(m.service);
    if (!service) return refuse('badService', `no service named ${JSON.stringify(m.service.slice(0, 100))}`);
    this.service = service.name;
    const refusal = service.refusal?.();
    if (refusal) return refuse(refusal.reason, refusal.text);
    const certCn = this.o.peer.certCn;
    if (service.allowCn && (certCn === undefined || !service.allowCn.includes(certCn))) {
      const given =
        certCn === undefined
          ? 'no verified client certificate was given'
          : `certificate CN ${JSON.stringify(certCn)} is not allowed`;
      return refuse(
        'badCert',
        `service ${service.name} needs a TLS client certificate whose CN is in its allow_cn; ${given}`,
      );
    }
    if (service.verifier === null) return this.accept(service, m.args);
    if (m.scram === undefined) return this.authFail(`service ${service.name} needs a secret and none was given`);
    const first = scram.parseClientFirst(m.scram);
    if (!first)
      return refuse(
        'protocolError',
        'startService: scram is not a SCRAM client-first message (n,,n=<service>,r=<nonce>)',
      );
    if (first.user !== service.name)
      return refuse('protocolError', 'startService: the SCRAM user name must be the service name');
    // The verifier of this moment: a reload during the handshake does not change the salt the client was given.
    const v = service.verifier;
    const nonce = first.nonce + this.newNonce();
    const serverFirst = scram.serverFirst(nonce, v.salt, v.iterations);
    this.state = {
      at: 'challenged',
      service,
      verifier: v,
      args: m.args,
      nonce,
      clientFirstBare: first.bare,
      serverFirst,
    };
    return { kind: 'send', message: { kind: 'challenge', scram: serverFirst } };
  }

  private finish(
    s: Extract<ServerHandshake<S>['state'], { at: 'challenged' }>,
    clientFinal: string,
  ): HandshakeOutcome<S> {
    this.state = { at: 'done' };
    const final = scram.parseClientFinal(clientFinal);
    if (!final)
      return refuse(
        'protocolError',
        'response: scram is not a SCRAM client-final message (c=biws,r=<nonce>,p=<proof>)',
      );
    if (final.nonce !== s.nonce)
      return refuse('protocolError', 'response: the nonce is not the one from the challenge');
    const auth = scram.authMessage(s.clientFirstBare, s.serverFirst, final.withoutProof);
    if (!scram.verifyClientProof(s.verifier, auth, final.proof))
      return this.authFail(`wrong secret for service ${s.service.name}`);
    const signature = scram.serverSignature(s.verifier.serverKey, auth).toString('base64');
    return this.accept(s.service, s.args, `v=${signature}`);
  }

  private accept(service: S, args: Term, signature?: string): HandshakeOutcome<S> {
    const ack: WireMessage = {
      kind: 'ack',
      version: PROTOCOL_VERSION,
      maxFrameSize: this.o.maxFrameSize,
      heartbeatInterval: this.o.heartbeatInterval,
    };
    if (signature !== undefined) ack.scram = signature;
    return { kind: 'accept', service, args, ack };
  }
}

function refuse<S extends ServiceAuth>(reason: CloseReason, text: string): HandshakeOutcome<S> {
  return { kind: 'close', reason, text };
}

/** Iteration counts a client accepts from a server: below is weak, above is a way to make the client burn CPU. */
export const MAX_ITERATIONS = scram.MAX_ITERATIONS;

/** How the client side talks to its connection during the handshake. */
export interface HandshakeIO {
  send(m: WireMessage): void;
  /** The next message from the server; rejects when the connection ends (with the close reason). */
  next(): Promise<WireMessage>;
}

export interface ClientHandshakeOptions {
  service: string;
  /** null for a service without a secret. */
  secret: string | null;
  args: Term;
  /** Derives the salted password; a cache can stand in for PBKDF2 here. */
  saltedPassword?: (secret: string, salt: Buffer, iterations: number) => Promise<Buffer>;
  /** The client nonce (random unless given: fixed ones make docs/PROTOCOL.md's worked example). */
  nonce?: string;
  /** Told to the server: the largest frame this client accepts. */
  maxFrameSize?: number;
}

/** The client's side. Resolves with the server's ack, or rejects with a {@link ChanError} named by lib_chan's words. */
export async function clientHandshake(
  io: HandshakeIO,
  o: ClientHandshakeOptions,
): Promise<Extract<WireMessage, { kind: 'ack' }>> {
  const clientNonce = o.nonce ?? scram.newNonce();
  const clientFirstBare = scram.clientFirstBare(o.service, clientNonce);
  const start: WireMessage = { kind: 'startService', version: PROTOCOL_VERSION, service: o.service, args: o.args };
  if (o.secret !== null) start.scram = scram.GS2_HEADER + clientFirstBare;
  if (o.maxFrameSize !== undefined) start.maxFrameSize = o.maxFrameSize;
  io.send(start);

  const first = expectFrom(await io.next(), 'challenge', 'ack');
  if (first.kind === 'ack') {
    if (o.secret !== null) {
      throw new ChanError(
        'badServer',
        `the server accepted ${o.service} without proving it knows the secret (connect with no secret if the service has none)`,
      );
    }
    return checkedAck(first);
  }
  if (o.secret === null) throw new ChanError('authFail', `service ${o.service} needs a secret`);
  const sf = scram.parseServerFirst(first.scram);
  if (!sf?.nonce.startsWith(clientNonce) || sf.nonce.length === clientNonce.length) {
    throw new ChanError(
      'badServer',
      `the challenge is not a valid SCRAM server-first message for our nonce (or its salt is over ${scram.MAX_SALT_BYTES} bytes)`,
    );
  }
  if (sf.iterations < scram.MIN_ITERATIONS || sf.iterations > MAX_ITERATIONS) {
    throw new ChanError(
      'badServer',
      `the server asks for ${sf.iterations} iterations; accepted: ${scram.MIN_ITERATIONS} to ${MAX_ITERATIONS}`,
    );
  }
  const salted = await (o.saltedPassword ?? scram.saltedPassword)(o.secret, sf.salt, sf.iterations);
  const withoutProof = scram.clientFinalWithoutProof(sf.nonce);
  const auth = scram.authMessage(clientFirstBare, first.scram, withoutProof);
  io.send({ kind: 'response', scram: `${withoutProof},p=${scram.clientProof(salted, auth).toString('base64')}` });

  const ack = expectFrom(await io.next(), 'ack');
  if (ack.scram === undefined || !scram.verifyServerFinal(salted, auth, ack.scram)) {
    throw new ChanError('badServer', 'the server could not prove that it knows the secret');
  }
  return checkedAck(ack);
}

/**
 * Refuses (badServer) an ack no lib-chan server sends: another protocol version, or a frame limit under the smallest a
 * peer may state (the client could send it nothing, not even a ping or a close).
 */
function checkedAck<A extends { version: number; maxFrameSize: number }>(ack: A): A {
  if (ack.version !== PROTOCOL_VERSION)
    throw new ChanError(
      'badServer',
      `the server acked protocol version ${ack.version}; this client speaks ${PROTOCOL_VERSION}`,
    );
  if (ack.maxFrameSize < MIN_MAX_FRAME_SIZE)
    throw new ChanError(
      'badServer',
      `the server states a frame limit of ${ack.maxFrameSize} bytes, under the ${MIN_MAX_FRAME_SIZE} every peer must accept`,
    );
  return ack;
}

function expectFrom<K extends WireMessage['kind']>(m: WireMessage, ...kinds: K[]): Extract<WireMessage, { kind: K }> {
  if ((kinds as string[]).includes(m.kind)) return m as Extract<WireMessage, { kind: K }>;
  if (m.kind === 'close') {
    throw new ChanError(isCloseReason(m.reason) ? m.reason : 'protocolError', m.text || m.reason);
  }
  throw new ChanError('protocolError', `expected ${kinds.join(' or ')} during the handshake, got ${m.kind}`);
}
