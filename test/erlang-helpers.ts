/**
 * Real Erlang for the tests of the original protocol: escripts written for these tests (test/erlang/), run by Debian's
 * erlang-nox. `.ci/run` installs it; without it the tests that need it say so and are skipped.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import net from 'node:net';
import { FrameParser } from '../src/frame.js';

export const hasErlang = await new Promise<boolean>((resolve) =>
  execFile('escript', ['-s', '/dev/null'], (err) =>
    resolve(err === null || (err as { code?: unknown }).code !== 'ENOENT'),
  ),
);

/** The path of one of the test escripts. */
export function script(name: string): string {
  return `test/erlang/${name}.escript`;
}

/** Runs an escript to its end: its exit code and what it printed. */
export function runEscript(
  name: string,
  args: string[],
  timeoutMs = 20_000,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile('escript', [script(name), ...args], { timeout: timeoutMs }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? null) : 0, stdout, stderr }),
    );
  });
}

/** Starts an escript that keeps running (a server): stopped by its PID at teardown. */
export async function startEscript(name: string, args: string[]): Promise<{ child: ChildProcess; firstLine: string }> {
  const child = spawn('escript', [script(name), ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  let text = '';
  child.stdout.setEncoding('utf8');
  const firstLine = await new Promise<string>((resolve, reject) => {
    const onData = (chunk: string): void => {
      text += chunk;
      const nl = text.indexOf('\n');
      if (nl >= 0) {
        child.stdout.off('data', onData);
        resolve(text.slice(0, nl));
      }
    };
    child.stdout.on('data', onData);
    child.once('exit', (code) => reject(new Error(`escript ${name} ended (${code}) before it printed a line`)));
  });
  return { child, firstLine };
}

export function stop(child: ChildProcess): void {
  if (child.exitCode === null && child.pid !== undefined) child.kill('SIGKILL');
}

/**
 * The echo escript, connected: `echo(bytes)` sends one external term and resolves with the four frames Erlang answers
 * (its default encoding, with UTF-8 atoms, compressed, and how it prints the term as a binary term).
 */
export async function erlangEcho(): Promise<{ echo: (etf: Buffer) => Promise<Buffer[]>; close: () => void }> {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as net.AddressInfo).port;
  const child = spawn('escript', [script('echo'), String(port)], { stdio: ['ignore', 'inherit', 'inherit'] });
  const [socket] = (await once(server, 'connection')) as [net.Socket];
  server.close();
  const frames: Buffer[] = [];
  let wake: (() => void) | null = null;
  const parser = new FrameParser(64 << 20, (p) => {
    frames.push(Buffer.from(p));
    wake?.();
  });
  socket.on('data', (chunk: Buffer) => parser.push(chunk));
  return {
    async echo(etf: Buffer): Promise<Buffer[]> {
      const header = Buffer.alloc(4);
      header.writeUInt32BE(etf.length);
      socket.write(Buffer.concat([header, etf]));
      while (frames.length < 4) await new Promise<void>((resolve) => (wake = resolve));
      return frames.splice(0, 4);
    },
    close(): void {
      socket.destroy();
      stop(child);
    },
  };
}

/** A client of the Erlang port that writes bytes by hand (frames of external terms, or anything else). */
export class RawErlang {
  readonly terms: Buffer[] = [];
  readonly closed: Promise<void>;
  private wake: (() => void) | null = null;

  private constructor(readonly socket: net.Socket) {
    const parser = new FrameParser(64 << 20, (p) => {
      this.terms.push(Buffer.from(p));
      this.wake?.();
    });
    socket.on('data', (chunk: Buffer) => parser.push(chunk));
    socket.on('error', () => {});
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()));
    void this.closed.then(() => this.wake?.());
  }

  static async open(port: number): Promise<RawErlang> {
    const socket = net.connect({ host: '127.0.0.1', port });
    await once(socket, 'connect');
    return new RawErlang(socket);
  }

  /** Sends `payload` in a frame (a 4-byte length first). */
  frame(payload: Uint8Array): void {
    const header = Buffer.alloc(4);
    header.writeUInt32BE(payload.length);
    this.socket.write(Buffer.concat([header, payload]));
  }

  /** The payload of frame `index` from the server; rejects if the socket closes first. */
  async next(index: number): Promise<Buffer> {
    while (this.terms.length <= index) {
      if (this.socket.destroyed || this.socket.readableEnded)
        throw new Error(`closed after ${this.terms.length} frames`);
      await new Promise<void>((resolve) => (this.wake = resolve));
    }
    return this.terms[index] as Buffer;
  }
}
