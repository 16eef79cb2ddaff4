/**
 * A transport with no sockets: two duplex streams wired to each other, in one process. For tests (of lib-chan, and of
 * a program's own handlers) that need a server and a client but no port: pass the same `memoryTransport()` as the
 * `transport` option of `startServer` and of `connect`.
 *
 * What it keeps of TCP: bytes arrive in order, in the chunks they were written in; a side that stops reading makes
 * the other side's writes wait (back-pressure through the streams' high-water marks); `end()` is a FIN the other side
 * reads as 'end'; `destroy()` is a reset the other side sees as its end and close. What it does not have: TLS, Nagle,
 * addresses (the peer's address is the `localAddress` the client gave, else `memory`, so throttling and fairness by
 * address can be tested too).
 */
import { Duplex } from 'node:stream';
import { ChanError } from './errors.js';
import type { OnConnection, Transport } from './transport.js';

/** One end of a {@link duplexPair}. */
class PairedEnd extends Duplex {
  peer!: PairedEnd;
  /** A write that waits for the peer to read (the peer's buffer was over its high-water mark). */
  private waitingWrite: (() => void) | null = null;

  override _read(): void {
    const resume = this.peer.waitingWrite;
    this.peer.waitingWrite = null;
    resume?.();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, done: (err?: Error | null) => void): void {
    if (this.peer.destroyed || this.peer.readableEnded) {
      done();
      return;
    }
    if (this.peer.push(chunk)) done();
    else this.waitingWrite = () => done();
  }

  override _final(done: (err?: Error | null) => void): void {
    if (!this.peer.destroyed) this.peer.push(null);
    done();
  }

  override _destroy(err: Error | null, done: (err?: Error | null) => void): void {
    const resume = this.waitingWrite;
    this.waitingWrite = null;
    resume?.();
    const peer = this.peer;
    if (!peer.destroyed) {
      // A reset: the peer reads its end now, and closes.
      if (!peer.readableEnded) peer.push(null);
      process.nextTick(() => peer.destroy());
    }
    done(err);
  }
}

/** Two connected duplex streams: what one writes, the other reads. */
export function duplexPair(): [Duplex, Duplex] {
  const a = new PairedEnd();
  const b = new PairedEnd();
  a.peer = b;
  b.peer = a;
  return [a, b];
}

/**
 * A transport in memory: `listen` takes any port (0 picks a free one), `connect` reaches the listener on that port
 * (or fails with `econnrefused`). One instance is one network: give the server and its clients the same one.
 */
export function memoryTransport(): Transport {
  const listeners = new Map<number, OnConnection>();
  let nextPort = 1;
  let connections = 0;
  return {
    name: 'memory',
    async listen(host, port, onConnection) {
      const chosen = port === 0 ? nextPort++ : port;
      if (listeners.has(chosen)) throw new ChanError('badConfig', `memory port ${chosen} is already listening`);
      listeners.set(chosen, onConnection);
      return {
        host,
        port: chosen,
        close: async () => {
          listeners.delete(chosen);
        },
      };
    },
    async connect(host, port, _timeout, localAddress) {
      const onConnection = listeners.get(port);
      if (!onConnection)
        throw new ChanError('econnrefused', `cannot connect to ${host}:${port}: nothing listens there`);
      const [client, server] = duplexPair();
      const address = localAddress ?? 'memory';
      const n = ++connections;
      // Accepted on the next turn, as a real listener would: the client has its socket first.
      setImmediate(() => onConnection(server, { address, name: `${address}#${n}` }));
      return { socket: client, peer: `${host}:${port}` };
    },
  };
}
