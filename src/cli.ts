#!/usr/bin/env node
/**
 * `chan`: the command line of lib-chan.
 *
 *   chan serve [CONF]                            run a server (CONF: $CHAN_CONF or conf/lib_chan.conf)
 *   chan connect HOST PORT SERVICE SECRET        a session: type terms, read answers
 *   chan rpc HOST PORT SERVICE SECRET TERM       send TERM, print the answer
 *   chan cast HOST PORT SERVICE SECRET TERM      send TERM, wait for nothing
 *
 * Failures print `chan: <word>: <what happened>` on stderr and exit 1; usage and config errors exit 2.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { connect, type ConnectOptions } from './client.js';
import { ChanError } from './errors.js';
import { ConfigError } from './config/load.js';
import { CliExit, EXIT_FAILURE, EXIT_USAGE, failureLine, failureStatus, parsePort, resolveSecret, usageError } from './cli/common.js';
import { oneShot, type Target } from './cli/oneshot.js';
import { certs, passwd } from './cli/security.js';
import { serve } from './cli/serve.js';
import { session } from './cli/session.js';

const HELP = `chan: lib-chan's command line

usage:
  chan serve [CONF]                          run a server on CONF ($CHAN_CONF, or conf/lib_chan.conf)
  chan connect HOST PORT SERVICE SECRET      open a session: type terms ending in '.', read the answers
  chan rpc HOST PORT SERVICE SECRET TERM     send TERM, print the answer, exit
  chan cast HOST PORT SERVICE SECRET TERM    send TERM, exit once it is delivered
  chan certs [--out certs] [--hosts localhost,127.0.0.1] [--days 365] [--client NAME]... [--force]
                                             make a CA, a server certificate and client certificates
  chan passwd [--iterations 4096]            read a secret from standard input, print its verifier for lib_chan.conf

SECRET is the service's secret; '-' reads it from standard input (it stays out of shell history);
'' (empty) connects to a service that has none.
TERM is Erlang term text: {lookup, joe}  {store, joe, "writing a book"}  (the final '.' is optional).

options of connect, rpc and cast:
  --timeout MS   how long rpc waits for an answer (default 5000)
  --tls          connect over TLS (trusting the public CAs, or --ca)
  --ca FILE      the CA that signs the server's certificate (implies --tls)
  --cert FILE, --key FILE   a client certificate and its key, for servers that ask for one
  --servername NAME         the name the server's certificate must hold (default: HOST)
other options:
  -h, --help     this text
  --version      the version

exit status: 0 done; 1 failed (the line 'chan: <word>: ...' says why); 2 usage or configuration error.
example (the book's session):
  chan serve conf/lib_chan.conf &
  chan cast localhost 1234 nameServer ABXy45 '{store, joe, "writing a book"}.'
  chan rpc localhost 1234 nameServer ABXy45 '{lookup, joe}.'      -> {ok,"writing a book"}`;

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

/** --tls, --ca, --cert, --key, --servername: TLS for a client command (any of the file options implies --tls). */
function clientOptions(v: { tls?: boolean; ca?: string; cert?: string; key?: string; servername?: string }): ConnectOptions {
  if (!v.tls && v.ca === undefined && v.cert === undefined && v.key === undefined) return {};
  if ((v.cert === undefined) !== (v.key === undefined)) throw usageError('--cert and --key go together');
  const read = (flag: string, file: string | undefined): Buffer | undefined => {
    if (file === undefined) return undefined;
    try {
      return readFileSync(file);
    } catch (err) {
      throw usageError(`${flag} ${file}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message}`);
    }
  };
  const ca = read('--ca', v.ca);
  const cert = read('--cert', v.cert);
  const key = read('--key', v.key);
  return { tls: { ...(ca ? { ca } : {}), ...(cert ? { cert } : {}), ...(key ? { key } : {}), ...(v.servername ? { servername: v.servername } : {}) } };
}

async function main(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        help: { type: 'boolean', short: 'h' },
        version: { type: 'boolean' },
        timeout: { type: 'string' },
        tls: { type: 'boolean' },
        ca: { type: 'string' },
        cert: { type: 'string' },
        key: { type: 'string' },
        servername: { type: 'string' },
        out: { type: 'string' },
        hosts: { type: 'string' },
        days: { type: 'string' },
        client: { type: 'string', multiple: true },
        force: { type: 'boolean' },
        iterations: { type: 'string' },
      },
    });
  } catch (err) {
    throw usageError((err as Error).message);
  }
  const { values, positionals } = parsed;
  if (values.version) {
    process.stdout.write(`${version()}\n`);
    return 0;
  }
  const [command, ...rest] = positionals;
  if (values.help || command === undefined || command === 'help') {
    process.stdout.write(`${HELP}\n`);
    return command === undefined && !values.help ? EXIT_USAGE : 0;
  }
  let timeout: number | undefined;
  if (values.timeout !== undefined) {
    if (!/^\d+$/.test(values.timeout) || Number(values.timeout) < 1) throw usageError('--timeout must be a positive number of milliseconds');
    timeout = Number(values.timeout);
  }
  const target = async (n: number, what: string): Promise<Target> => {
    if (rest.length !== n) throw usageError(`chan ${command} takes ${what}`);
    const [host, port, service, secret] = rest as [string, string, string, string];
    return { host, port: parsePort(port), service, secret: await resolveSecret(secret), options: clientOptions(values) };
  };
  switch (command) {
    case 'serve':
      if (rest.length > 1) throw usageError('chan serve takes at most one argument, the config file');
      return serve(rest[0]);
    case 'connect': {
      const t = await target(4, 'HOST PORT SERVICE SECRET');
      const ch = await connect(t.host, t.port, t.service, t.secret, null, t.options);
      return session(ch, t.service, timeout);
    }
    case 'certs':
      if (rest.length > 0) throw usageError('chan certs takes options only: [--out DIR] [--hosts H,H] [--days N] [--client NAME] [--force]');
      return certs(values);
    case 'passwd':
      if (rest.length > 0) throw usageError('chan passwd takes no arguments: it reads the secret from standard input');
      return passwd(values.iterations);
    case 'rpc':
    case 'cast': {
      const t = await target(5, 'HOST PORT SERVICE SECRET TERM');
      return oneShot(command, t, rest[4] as string, timeout);
    }
    default:
      throw usageError(`unknown command '${command}'`);
  }
}

main(process.argv.slice(2)).then(
  (status) => {
    process.exitCode = status;
    // Whatever still holds the event loop (a paused stdin, a lingering socket) must not keep a finished command alive.
    setImmediate(() => process.exit(status));
  },
  (err: unknown) => {
    let status = EXIT_FAILURE;
    if (err instanceof CliExit) {
      process.stderr.write(`${err.message}\n`);
      status = err.status;
    } else if (err instanceof ConfigError) {
      process.stderr.write(`chan: badConfig: the configuration has ${err.problems.length} problem(s); nothing was started\n`);
      for (const p of err.problems) process.stderr.write(`  ${String(p)}\n`);
      status = EXIT_USAGE;
    } else if (err instanceof ChanError) {
      process.stderr.write(`${failureLine(err)}\n`);
      status = failureStatus(err.code);
    } else {
      process.stderr.write(`${failureLine(err)}\n`);
      if (err instanceof Error && err.stack) process.stderr.write(`${err.stack}\n`);
    }
    process.exit(status);
  },
);
