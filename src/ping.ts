/**
 * `ping`: is there a lib-chan server at host:port, which protocol version does it speak, how far is it? One `hello`
 * exchange instead of a handshake, so no service name or secret is needed (docs/PROTOCOL.md, "hello").
 */
import { msgpackCodec } from './codec/index.js';
import { ChanError } from './errors.js';
import { CLIENT_DEFAULTS } from './client-options.js';
import { silentLogger } from './log.js';
import type { CloseInfo } from './errors.js';
import { MiddleMan } from './mm.js';
import type { WireMessage } from './protocol.js';
import { tlsClientTransport, type TlsClientOptions } from './tls.js';
import { tcp } from './transport.js';

export interface PingResult {
  /** The protocol version the server speaks. */
  version: number;
  /** How the server names itself, e.g. "lib-chan 0.1.0". */
  server: string;
  /** Connect plus one round trip, ms. */
  ms: number;
}

export async function ping(
  host: string,
  port: number,
  options: { tls?: TlsClientOptions; timeout?: number } = {},
): Promise<PingResult> {
  const timeout = options.timeout ?? CLIENT_DEFAULTS.connectTimeout;
  const started = performance.now();
  const transport = options.tls ? tlsClientTransport(options.tls) : tcp;
  const { socket } = await transport.connect(host, port, timeout);
  // One deadline for the whole ping: what connecting took is not given again to the answer.
  const left = Math.max(1, Math.ceil(started + timeout - performance.now()));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      // Rejected first: closing calls onClosed at once, which would reject with a vaguer reason.
      reject(
        new ChanError(
          'timeout',
          `${host}:${port} accepted a connection but did not answer hello within ${timeout} ms of the ping's start`,
        ),
      );
      mm.close('timeout', 'no hello');
    }, left);
    const mm = new MiddleMan(
      socket,
      { codec: msgpackCodec({ maxDepth: 4 }), maxFrameSize: 16 * 1024, sendBufferLimit: 1 << 20, log: silentLogger },
      {},
      {
        onMessage(m: WireMessage) {
          if (m.kind === 'hello' && m.version !== undefined) {
            clearTimeout(timer);
            resolve({ version: m.version, server: m.server ?? '?', ms: performance.now() - started });
          }
          mm.close('normal', 'ping done');
        },
        onClosed(info: CloseInfo) {
          clearTimeout(timer);
          // A TLS port says nothing to a plain hello (or sends an alert): it just closes.
          const maybeTls = !options.tls && (/speaks TLS/.test(info.text) || mm.stats.bytesIn === 0);
          reject(
            maybeTls
              ? new ChanError(
                  'closed',
                  `${host}:${port} closed the connection without answering hello: a TLS port (ping it with --tls, and --ca for your own CA), or not a lib-chan server (${info.reason})`,
                )
              : new ChanError(
                  info.reason === 'protocolError' ? 'protocolError' : 'closed',
                  `${host}:${port} is not a lib-chan server, or one too old to answer hello (${info.reason}: ${info.text})`,
                ),
          );
        },
      },
    );
    mm.send({ kind: 'hello' });
  });
}
