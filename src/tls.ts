/**
 * The TLS transport: the same lib-chan protocol inside TLS (1.3 by default, 1.2 when allowed). What Node's `tls` does
 * not do for us is done here: a TLS handshake that does not finish within `tlsHandshakeTimeout` is destroyed (Node's
 * own `handshakeTimeout` only emits an event and leaves the socket open); TLS errors become lib-chan's words with a
 * sentence that says what to fix; and the certificates can be replaced while the server runs (new connections get
 * the new ones).
 */
import { X509Certificate } from 'node:crypto';
import net from 'node:net';
import tls from 'node:tls';
import { ChanError, socketErrorCode, type ErrorCode } from './errors.js';
import { ThrottledLog, type Logger } from './log.js';
import type { Ticket } from './admission.js';
import {
  listenOn,
  opened,
  peerInfo,
  settleStreamLayout,
  type Listening,
  type PeerInfo,
  type Transport,
} from './transport.js';

export type VerifyClient = 'none' | 'optional' | 'required';
export type TlsVersion = 'TLSv1.2' | 'TLSv1.3';

/** A server certificate this close to its end is warned about, at start and at each reload. */
export const CERT_EXPIRY_WARNING_DAYS = 30;

/**
 * Why a server certificate (the first in `certPem`) cannot serve now: it has expired, or is not valid yet; null when
 * it can. Such a certificate is refused like a broken one (every client would fail its TLS handshake).
 */
export function certificateProblem(certPem: string, now = Date.now()): string | null {
  const { validFrom, validTo } = certificateValidity(certPem);
  if (now > validTo.getTime())
    return `the certificate expired on ${validTo.toISOString()}: renew it (chan certs makes one)`;
  if (now < validFrom.getTime())
    return `the certificate is not valid until ${validFrom.toISOString()}: check the clock, or its dates`;
  return null;
}

/** When the server certificate (the first in `certPem`) begins and ends. */
export function certificateValidity(certPem: string): { validFrom: Date; validTo: Date } {
  const cert = new X509Certificate(certPem);
  return { validFrom: new Date(cert.validFrom), validTo: new Date(cert.validTo) };
}

/** Days left before the certificate ends, when fewer than CERT_EXPIRY_WARNING_DAYS; else null. */
export function expiresSoon(certPem: string, now = Date.now()): { days: number; validTo: Date } | null {
  const { validTo } = certificateValidity(certPem);
  const days = Math.floor((validTo.getTime() - now) / 86_400_000);
  return days < CERT_EXPIRY_WARNING_DAYS ? { days, validTo } : null;
}

/** PEM texts (not file names) and policy of a TLS server. */
export interface TlsServerSettings {
  cert: string;
  key: string;
  ca?: string;
  verifyClient: VerifyClient;
  minVersion: TlsVersion;
  handshakeTimeout: number;
  /**
   * TLS handshakes refused a place (see admission.ts) that may still run to their end, so that their clients can be
   * told `tooManyConnections` in a close frame; past it, a refused connection is reset at once.
   */
  maxRefusing: number;
}

/**
 * Who gets a place among the unauthenticated connections (admission.ts): a ticket, or the sentence that refuses.
 * A TLS handshake takes its place as soon as its TCP connection is accepted.
 */
export type Gate = (address: string, evict: (text: string) => void) => Ticket | string;

export interface TlsTransport extends Transport {
  /**
   * Checks new certificates, CA and client verification, and returns the function that applies them to connections
   * from then on (open ones keep theirs). Throws, and changes nothing, when they do not work (a key that does not
   * match its certificate).
   */
  prepare(settings: TlsServerSettings): () => void;
}

function contextOptions(s: TlsServerSettings): tls.SecureContextOptions {
  return { cert: s.cert, key: s.key, ...(s.ca ? { ca: s.ca } : {}), minVersion: s.minVersion };
}

/**
 * A TLS server transport. `gate` gives each TCP connection its place before its TLS handshake; a connection refused
 * one is taken through the handshake (up to `maxRefusing` at once) and handed over with the refusal, to be told
 * `tooManyConnections`. `log` hears about handshakes that failed, at most once per 10 s (a scan must not flood it).
 */
export function tlsServerTransport(initial: TlsServerSettings, log: Logger, gate: Gate): TlsTransport {
  let settings = initial;
  const failures = new ThrottledLog(log, 'info');
  // Node's handshakeTimeout only reports; these timers close. Keyed by peer address and port, the one thing the raw
  // socket and the TLS socket made from it both show.
  const handshaking = new Map<string, { timer: NodeJS.Timeout; raw: net.Socket; admitted: Ticket | string }>();
  let refusing = 0;
  let server: tls.Server | null = null;
  return {
    name: 'tls',
    prepare(next) {
      tls.createSecureContext(contextOptions(next)); // throws for a bad certificate or key, before anything changes
      return () => {
        settings = next;
        if (!server) return;
        server.setSecureContext(contextOptions(next));
        // Node reads these two from the server for each new connection (they are not in its typings).
        const policy = server as tls.Server & { requestCert: boolean; rejectUnauthorized: boolean };
        policy.requestCert = next.verifyClient !== 'none';
        policy.rejectUnauthorized = next.verifyClient === 'required';
      };
    },
    listen(host, port, onConnection) {
      server = tls.createServer({
        ...contextOptions(settings),
        requestCert: settings.verifyClient !== 'none',
        rejectUnauthorized: settings.verifyClient === 'required',
        noDelay: true, // as for TCP (see opened in transport.ts)
      });
      server.on('connection', (raw: net.Socket) => {
        raw.on('error', () => {});
        const key = peerInfo(raw).name;
        const admitted = gate(raw.remoteAddress ?? '?', () => raw.destroy());
        if (typeof admitted === 'string') {
          if (refusing >= settings.maxRefusing) {
            failures.note(
              { peer: key },
              `refusing connections: ${admitted}; too many refusals in their TLS handshake to tell this one`,
            );
            raw.destroy();
            return;
          }
          refusing++;
          raw.once('close', () => refusing--);
        }
        const entry = { timer: setTimeout(() => raw.destroy(), settings.handshakeTimeout), raw, admitted };
        handshaking.set(key, entry);
        raw.once('close', () => {
          clearTimeout(entry.timer);
          if (handshaking.get(key) === entry) handshaking.delete(key);
          // A handshake that never finished gives its place back (once finished, its connection gives it back).
          if (typeof admitted !== 'string') admitted.release();
        });
      });
      server.on('secureConnection', (socket: tls.TLSSocket) => {
        const peer: PeerInfo = peerInfo(socket);
        const entry = handshaking.get(peer.name);
        if (entry) clearTimeout(entry.timer);
        handshaking.delete(peer.name);
        if (socket.authorized) {
          const cn = socket.getPeerCertificate().subject?.CN;
          if (typeof cn === 'string') peer.certCn = cn;
        }
        onConnection(socket, peer, entry?.admitted);
      });
      server.on('tlsClientError', (err: NodeJS.ErrnoException, socket: tls.TLSSocket) => {
        failures.note(
          { peer: peerInfo(socket).name, code: err.code },
          `TLS handshake failed: ${describeServerTlsError(err)}`,
        );
        socket.destroy();
      });
      return listenOn(server, host, port).then((l) => ({
        ...l,
        close: () => {
          // The listener waits for every socket: those still in their TLS handshake are cut now.
          for (const { raw } of handshaking.values()) raw.destroy();
          return l.close();
        },
      }));
    },
    connect() {
      return Promise.reject(new ChanError('usage', 'a server transport does not connect'));
    },
  };
}

/** What a client needs for TLS: PEM texts, and the name to check the server's certificate against. */
export interface TlsClientOptions {
  /** CA certificate(s) that sign the server's certificate (default: Node's list of public CAs). */
  ca?: string | Buffer;
  /** Client certificate and key, for servers that ask for one. */
  cert?: string | Buffer;
  key?: string | Buffer;
  /** The name the server's certificate must hold (default: the host connected to). */
  servername?: string;
  minVersion?: TlsVersion;
}

export function tlsClientTransport(o: TlsClientOptions): Transport {
  return {
    name: 'tls',
    listen() {
      return Promise.reject(new ChanError('usage', 'a client transport does not listen'));
    },
    connect(host, port, timeout, localAddress) {
      const servername = o.servername ?? (net.isIP(host) ? undefined : host);
      settleStreamLayout();
      const socket = tls.connect({
        host,
        port,
        ...(localAddress ? { localAddress } : {}),
        ...(o.ca !== undefined ? { ca: o.ca } : {}),
        ...(o.cert !== undefined ? { cert: o.cert } : {}),
        ...(o.key !== undefined ? { key: o.key } : {}),
        ...(servername !== undefined ? { servername } : {}),
        // An IP address is checked against the certificate's IP addresses.
        checkServerIdentity: (_name, cert) => tls.checkServerIdentity(o.servername ?? host, cert),
        minVersion: o.minVersion ?? 'TLSv1.3',
      });
      return opened(socket, 'secureConnect', { host, port, timeout, what: 'TLS connection' }, describeTlsError);
    },
  };
}

const UNTRUSTED = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_SIGNATURE_FAILURE',
  'CERT_UNTRUSTED',
]);

/** lib-chan's word and a sentence for a TLS (or socket) error. */
export function describeTlsError(err: NodeJS.ErrnoException): { code: ErrorCode; text: string } {
  const code = err.code ?? '';
  if (UNTRUSTED.has(code))
    return {
      code: 'tlsFailed',
      text: `the server's certificate is not signed by a CA we trust (${code}); pass its CA (--ca)`,
    };
  if (code === 'CERT_HAS_EXPIRED')
    return { code: 'tlsFailed', text: "the server's certificate has expired (CERT_HAS_EXPIRED)" };
  if (code === 'CERT_NOT_YET_VALID')
    return { code: 'tlsFailed', text: "the server's certificate is not valid yet (CERT_NOT_YET_VALID)" };
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID')
    return { code: 'tlsFailed', text: `the server's certificate is not for this host name: ${err.message}` };
  if (
    code === 'ERR_SSL_WRONG_VERSION_NUMBER' ||
    code === 'ERR_SSL_PACKET_LENGTH_TOO_LONG' ||
    code === 'ERR_SSL_HTTP_REQUEST'
  ) {
    return {
      code: 'tlsFailed',
      text: `the other side does not speak TLS (${code}): a plaintext lib-chan port? connect without TLS`,
    };
  }
  if (
    /ALERT_(CERTIFICATE_REQUIRED|BAD_CERTIFICATE|UNKNOWN_CA|CERTIFICATE_UNKNOWN|CERTIFICATE_EXPIRED|ACCESS_DENIED|CERTIFICATE_REVOKED|UNSUPPORTED_CERTIFICATE)/.test(
      code,
    )
  ) {
    return {
      code: 'tlsRejected',
      text: `the server rejected our client certificate (${code}); it wants one signed by its CA (--cert, --key)`,
    };
  }
  if (/^ERR_SSL_/.test(code)) return { code: 'tlsFailed', text: `TLS failed: ${err.message}` };
  return { code: socketErrorCode(err), text: err.message };
}

/** What a failed TLS handshake means, seen from the server. */
function describeServerTlsError(err: NodeJS.ErrnoException): string {
  const code = err.code ?? '';
  if (
    code === 'ERR_SSL_WRONG_VERSION_NUMBER' ||
    code === 'ERR_SSL_HTTP_REQUEST' ||
    code === 'ERR_SSL_PACKET_LENGTH_TOO_LONG'
  ) {
    return `the client does not speak TLS (${code}): a plaintext lib-chan client? it must connect with TLS`;
  }
  if (code === 'ECONNRESET') return 'the client went away during the TLS handshake';
  if (/PEER_DID_NOT_RETURN_A_CERTIFICATE|CERTIFICATE_VERIFY_FAILED|UNKNOWN_CA|BAD_CERTIFICATE/.test(code)) {
    return `the client's certificate is missing or not signed by the configured ca (${code})`;
  }
  return `${err.message.trim()} (${code})`;
}

export type { Listening };
