/**
 * The admin port (`admin_port`): plain `node:http` for operators, beside the service port.
 *
 *   GET /healthz       200 "ok": the process answers
 *   GET /readyz        200 "ready", or 503 with one line per problem: not listening (or shutting down), a service
 *                      down, the store not answering
 *   GET /metrics       Prometheus text (metrics.ts)
 *   GET /status.json   what the status page shows
 *   GET /              the live status page (admin-page.ts): no build step, no framework, polls /status.json
 *
 * With `admin_token`, every path but /healthz and /readyz needs it, as `Authorization: Bearer TOKEN` or `?token=TOKEN`
 * (which the page passes on to its own requests); without one the port must be on a loopback address (the config
 * refuses anything else). Only GET and HEAD; small, short requests (see the limits below).
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Logger } from './log.js';
import { statusPage } from './admin-page.js';
import type { StatusReport } from './metrics.js';
import { listenError } from './transport.js';

/** What the admin port serves, from the server it watches. */
export interface AdminSource {
  /** The Prometheus text and its content type. */
  metrics(): Promise<{ contentType: string; text: string }>;
  /** Why the server is not ready: nothing when it is. */
  readiness(): Promise<string[]>;
  /** What /status.json answers. */
  status(): StatusReport | Promise<StatusReport>;
}

/** The admin port's own limits: it serves a few operators and a scraper, never the public. */
export const ADMIN_LIMITS = {
  /**
   * Connections open at once. A new one past them takes the place of the oldest that is not in a request (idle, or
   * still sending its headers), so that idle connections cannot keep a liveness probe out; when every one is in a
   * request, the new one is closed at once.
   */
  maxConnections: 64,
  /** How often Node checks the two timeouts below, ms. */
  checkInterval: 1000,
  /**
   * A connection silent this long is closed, ms: an idle one, or one whose request stopped halfway (the one limit that
   * also holds for a connection that never sends a byte).
   */
  silence: 5000,
  /** A request's headers must arrive within this, ms. */
  headersTimeout: 5000,
  /** A whole request, ms. */
  requestTimeout: 10_000,
  /** An idle keep-alive connection is closed after this, ms. */
  keepAliveTimeout: 5000,
} as const;

export interface AdminServer {
  readonly host: string;
  readonly port: number;
  close(): Promise<void>;
}

export async function startAdmin(
  host: string,
  port: number,
  token: string | null,
  source: AdminSource,
  log: Logger,
): Promise<AdminServer> {
  const expected = token === null ? null : digest(token);
  const server: Server = createServer({ connectionsCheckingInterval: ADMIN_LIMITS.checkInterval }, (req, res) => {
    handle(req, res, expected, source).catch((err: unknown) => {
      log.error({ err }, 'the admin port failed to answer a request');
      if (!res.headersSent) send(res, 500, 'text/plain; charset=utf-8', 'internal error\n');
      else res.destroy();
    });
  });
  // Connections in the order they came (oldest first), and those in a request (headers read, answer not yet sent).
  const open = new Set<Socket>();
  const inRequest = new WeakSet<Socket>();
  server.on('connection', (socket: Socket) => {
    if (open.size >= ADMIN_LIMITS.maxConnections) {
      let idle: Socket | null = null;
      for (const s of open)
        if (!inRequest.has(s)) {
          idle = s;
          break;
        }
      if (idle === null) {
        socket.destroy();
        return;
      }
      open.delete(idle);
      idle.destroy();
    }
    open.add(socket);
    socket.once('close', () => open.delete(socket));
  });
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    const socket = req.socket as Socket;
    inRequest.add(socket);
    res.once('close', () => inRequest.delete(socket));
  });
  server.headersTimeout = ADMIN_LIMITS.headersTimeout;
  server.requestTimeout = ADMIN_LIMITS.requestTimeout;
  server.keepAliveTimeout = ADMIN_LIMITS.keepAliveTimeout;
  server.timeout = ADMIN_LIMITS.silence;
  await new Promise<void>((resolve, reject) => {
    const failed = (err: Error): void => reject(listenError(err, host, port));
    server.once('error', failed);
    server.listen({ host, port }, () => {
      server.off('error', failed);
      resolve();
    });
  });
  const address = server.address();
  const bound = typeof address === 'object' && address !== null ? address : { address: host, port };
  return {
    host: bound.address,
    port: bound.port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}

/** Compared in constant time (both sides hashed first, so their lengths tell nothing either). */
function tokenMatches(given: string | null, expected: Buffer): boolean {
  return given !== null && timingSafeEqual(digest(given), expected);
}

/** A Host header that names this machine by a loopback name or address (with or without a port). */
function loopbackHost(host: string | undefined): boolean {
  if (host === undefined) return true; // HTTP/1.0: no Host, no name to rebind
  const name = host.replace(/:\d+$/, '').toLowerCase();
  return name === 'localhost' || name === '[::1]' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(name);
}

/** The token a request carries, from its Authorization header or its ?token= parameter. */
function givenToken(req: IncomingMessage, url: URL): string | null {
  const header = req.headers.authorization;
  if (header?.startsWith('Bearer ')) return header.slice(7).trim();
  return url.searchParams.get('token');
}

async function handle(
  req: IncomingMessage,
  res: ServerResponse,
  expected: Buffer | null,
  source: AdminSource,
): Promise<void> {
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.setHeader('Allow', 'GET, HEAD');
    send(res, 405, 'text/plain; charset=utf-8', 'only GET and HEAD\n');
    return;
  }
  const url = new URL(req.url ?? '/', 'http://admin');
  // Without a token the port is on loopback: a request whose Host names anything else comes from a web page that
  // rebound a name of its own to 127.0.0.1 (DNS rebinding), and is refused.
  if (expected === null && !loopbackHost(req.headers.host)) {
    send(res, 403, 'text/plain; charset=utf-8', 'this admin port answers only requests addressed to a loopback host\n');
    return;
  }
  const authorized = expected === null || tokenMatches(givenToken(req, url), expected);
  switch (url.pathname) {
    case '/healthz':
      send(res, 200, 'text/plain; charset=utf-8', 'ok\n');
      return;
    case '/readyz': {
      // Open to probes without the token; what is wrong (service names, the store) only to those with it.
      const problems = await source.readiness();
      if (problems.length === 0) send(res, 200, 'text/plain; charset=utf-8', 'ready\n');
      else if (!authorized)
        send(
          res,
          503,
          'text/plain; charset=utf-8',
          `not ready: ${problems.length} problem(s) (the token shows which)\n`,
        );
      else send(res, 503, 'text/plain; charset=utf-8', `not ready:\n${problems.map((p) => `  ${p}\n`).join('')}`);
      return;
    }
  }
  if (!authorized) {
    res.setHeader('WWW-Authenticate', 'Bearer realm="lib-chan admin"');
    send(res, 401, 'text/plain; charset=utf-8', 'this admin port needs its token: Authorization: Bearer TOKEN\n');
    return;
  }
  switch (url.pathname) {
    case '/metrics': {
      const m = await source.metrics();
      send(res, 200, m.contentType, m.text);
      return;
    }
    case '/status.json':
      send(res, 200, 'application/json; charset=utf-8', JSON.stringify(await source.status()));
      return;
    case '/': {
      // The page's own script and style are allowed by a nonce; nothing else runs, and it talks only to this port.
      const nonce = randomBytes(16).toString('base64');
      res.setHeader(
        'Content-Security-Policy',
        `default-src 'none'; script-src 'nonce-${nonce}'; style-src 'nonce-${nonce}'; connect-src 'self'; base-uri 'none'; frame-ancestors 'none'`,
      );
      send(res, 200, 'text/html; charset=utf-8', statusPage(nonce, await source.status()));
      return;
    }
    default:
      send(res, 404, 'text/plain; charset=utf-8', 'not found: try /, /metrics, /healthz, /readyz, /status.json\n');
  }
}

function send(res: ServerResponse, status: number, type: string, body: string): void {
  res.statusCode = status;
  res.setHeader('Content-Type', type);
  res.setHeader('Cache-Control', 'no-store');
  res.setHeader('X-Content-Type-Options', 'nosniff');
  // The token may be in the page's address: never sent on to another site.
  res.setHeader('Referrer-Policy', 'no-referrer');
  res.end(res.req.method === 'HEAD' ? undefined : body);
}
