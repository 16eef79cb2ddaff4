/**
 * The transport role: how bytes get to the other side. Only this module (and, later, its TLS sibling) imports
 * `net`; the middle-man, server and client see a `Duplex` and a peer name.
 */
import net from 'node:net';
import { Writable, type Duplex } from 'node:stream';
import type { Ticket } from './admission.js';
import { ChanError, socketErrorCode, type ErrorCode } from './errors.js';

export interface Listening {
  host: string;
  port: number;
  /** Stops accepting; connections already open are not touched. */
  close(): Promise<void>;
}

/** Who is on the other end. */
export interface PeerInfo {
  /** `address:port`, for logs. */
  name: string;
  /** The address alone: what failure throttling counts by. */
  address: string;
  /** The common name of the client certificate, when TLS verified one. */
  certCn?: string;
}

/**
 * A new connection. `admitted`: its place among unauthenticated connections, when the transport had to give it one
 * before handing it over (TLS: before the TLS handshake), or the sentence that refused it a place.
 */
export type OnConnection = (socket: Duplex, peer: PeerInfo, admitted?: Ticket | string) => void;

export interface Transport {
  readonly name: string;
  listen(host: string, port: number, onConnection: OnConnection): Promise<Listening>;
  /** Opens a connection; rejects with a ChanError named by lib_chan's words (econnrefused, nxdomain, timeout, ...). */
  connect(
    host: string,
    port: number,
    timeout: number,
    localAddress?: string,
  ): Promise<{ socket: Duplex; peer: string }>;
}

export function peerInfo(socket: net.Socket): PeerInfo {
  const address = socket.remoteAddress ?? '?';
  const host = address.includes(':') ? `[${address}]` : address;
  // Joined, not concatenated: V8 keeps a concatenation of 13 characters or more as its two parts and a node over
  // them (88 bytes for 127.0.0.1:50476, which every connection keeps); a join makes one flat string (32 bytes).
  return { address, name: [host, ':', socket.remotePort ?? '?'].join('') };
}

/**
 * Gives V8's layout of a stream's write state room for the field every socket gains with its first finished write.
 * V8 fixes how many fields the objects of a constructor hold in themselves when the seventh is made, to fit the most
 * that any of them had by then. A socket's write state (Node's `WritableState`, in Node 20 to 26) gains a field with
 * its first finished write (its write callback's slot, `kWriteCbValue`, set to null); in a process whose first streams
 * had not written by then (a server's, whose log goes to its file descriptor directly) the field does not fit, and
 * every socket then keeps it in a separate property store: 40 bytes more a connection, and a slower field. One stream
 * that writes once, before the first connection, settles the layout with the field. Called when listening and when
 * connecting; only the first call does anything, and it does nothing if seven streams were made before it. (It leans
 * on how Node's streams keep their state: measure again on a new Node line, docs/BENCHMARKS.md.)
 */
export function settleStreamLayout(): void {
  if (layoutSettler) return;
  layoutSettler = new Writable({ write: (_chunk, _encoding, done) => done() });
  layoutSettler.write(EMPTY_CHUNK);
}

/**
 * The stream that wrote, kept: V8 forgets a layout no live object has at a full collection, and one before the seventh
 * write state (a heap snapshot, memory pressure at start) would otherwise undo the settling.
 */
let layoutSettler: Writable | null = null;
const EMPTY_CHUNK = Buffer.alloc(0);

/**
 * Why a port cannot be listened on, in one sentence with lib_chan's word: `socketError` (the address in use, not this
 * machine's, not allowed) or `nxdomain` (a host name that does not resolve).
 */
export function listenError(err: unknown, host: string, port: number): ChanError {
  const code = (err as NodeJS.ErrnoException | null)?.code;
  const where = `${host.includes(':') ? `[${host}]` : host}:${port}`;
  const why =
    code === 'EADDRINUSE'
      ? 'the address is in use (another server on that port?)'
      : code === 'EADDRNOTAVAIL'
        ? "the address is not one of this machine's"
        : code === 'EACCES'
          ? 'permission denied (ports below 1024 need privileges)'
          : code === 'ENOTFOUND' || code === 'EAI_AGAIN'
            ? 'the host name does not resolve'
            : err instanceof Error
              ? err.message
              : String(err);
  return new ChanError(
    code === 'ENOTFOUND' || code === 'EAI_AGAIN' ? 'nxdomain' : 'socketError',
    `cannot listen on ${where}: ${why}`,
    {
      cause: err,
    },
  );
}

/** Listens with a `net.Server` (or `tls.Server`) already made; resolves with the address it got. */
export function listenOn(server: net.Server, host: string, port: number): Promise<Listening> {
  settleStreamLayout();
  return new Promise((resolve, reject) => {
    const failed = (err: Error): void => reject(listenError(err, host, port));
    server.once('error', failed);
    server.listen({ host, port }, () => {
      server.off('error', failed);
      const address = server.address() as net.AddressInfo;
      resolve({
        host: address.address,
        port: address.port,
        close: () => new Promise((done) => server.close(() => done())),
      });
    });
  });
}

/**
 * Waits for a connection being opened (`ready`: TCP's 'connect', TLS's 'secureConnect'). Resolves with the socket,
 * Nagle's algorithm off (else an rpc after a cast waits for the peer's delayed ACK, about 40 ms; no TCP keepalive:
 * lib-chan's own heartbeats find dead peers, sooner, on both sides). Rejects with `describe`'s word and sentence for
 * an error, or with `timeout` after `timeout` ms (the socket destroyed).
 */
export function opened(
  socket: net.Socket,
  ready: 'connect' | 'secureConnect',
  where: { host: string; port: number; timeout: number; what: string },
  describe: (err: NodeJS.ErrnoException) => { code: ErrorCode; text: string },
): Promise<{ socket: Duplex; peer: string }> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new ChanError('timeout', `no ${where.what} to ${where.host}:${where.port} within ${where.timeout} ms`));
    }, where.timeout);
    socket.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      const { code, text } = describe(err);
      reject(new ChanError(code, `cannot connect to ${where.host}:${where.port}: ${text}`, { cause: err }));
    });
    socket.once(ready, () => {
      clearTimeout(timer);
      socket.removeAllListeners('error');
      socket.setNoDelay(true);
      resolve({ socket, peer: peerInfo(socket).name });
    });
  });
}

export const tcp: Transport = {
  name: 'tcp',
  listen(host, port, onConnection) {
    // noDelay: as for a client (see opened), set as each connection is accepted.
    const server = net.createServer({ noDelay: true }, (socket) => onConnection(socket, peerInfo(socket)));
    return listenOn(server, host, port);
  },
  connect(host, port, timeout, localAddress) {
    settleStreamLayout();
    const socket = net.connect({ host, port, ...(localAddress ? { localAddress } : {}) });
    return opened(socket, 'connect', { host, port, timeout, what: 'connection' }, (err) => ({
      code: socketErrorCode(err),
      text: err.message,
    }));
  },
};
