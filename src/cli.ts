#!/usr/bin/env node
/**
 * `chan`: the command line of lib-chan. Each command is a row of COMMANDS (its usage, its one-line summary, its
 * help); `chan help COMMAND` and `chan COMMAND --help` print the help. Failures print `chan: <word>: <what happened>`
 * on stderr and exit 1; usage and config errors exit 2.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import type { ConnectOptions } from './client.js';
import { ChanError } from './errors.js';
import { ConfigError } from './config/load.js';
import {
  CliExit,
  EXIT_FAILURE,
  EXIT_USAGE,
  failureLine,
  failureStatus,
  parsePort,
  positive,
  resolveSecret,
  usageError,
} from './cli/common.js';
import type { Destination } from './client-options.js';
import type { Profile } from './cli/profiles.js';
import { VERSION } from './version.js';

const CONNECTION_OPTIONS = `  --erlang              speak the original lib_chan protocol, to an Erlang lib_chan server or a server's
                        erlang_port (no TLS; see docs/ERLANG.md)
  --connect-timeout MS  how long connecting and the handshake may take (default 10000)
  --tls                 connect over TLS (trusting the public CAs, or --ca)
  --ca FILE             the CA that signs the server's certificate (implies --tls)
  --cert FILE --key FILE  a client certificate and its key, for servers that ask for one
  --servername NAME     the name the server's certificate must hold (default: HOST)`;

const SECRET_NOTE = `SECRET is the service's secret; '-' reads it from standard input (it stays out of shell history);
'' (empty) connects to a service that has none. @NAME stands for HOST PORT SERVICE saved by chan profile save.`;

/** The commands that connect to a service: they take @NAME for a saved profile's HOST PORT SERVICE. */
const CONNECTING = new Set(['connect', 'rpc', 'cast', 'bench']);

/** Each command: how many positional arguments it takes (at least, at most), its usage line, summary and help. */
const COMMANDS: Record<string, { positionals: [number, number]; usage: string; summary: string; help: string }> = {
  serve: {
    positionals: [0, 1],
    usage: 'chan serve [CONF] [--store URL] [--processes N|auto]',
    summary: 'run a server on CONF ($CHAN_CONF, or conf/lib_chan.conf)',
    help: `Runs a server until SIGINT or SIGTERM (which close every connection with reason shutdown, give handlers
shutdown_timeout to finish, and exit 0; a second signal exits at once). SIGHUP reloads secrets, verifiers and
certificates for new connections. CONF is Erlang terms (lib_chan.conf) or JSON (.json); every option can also be set
by a CHAN_* variable (docs/OPTIONS.md). Logs are JSON lines, readable lines on a terminal.
--store URL: where services keep what they store, over the config's store and $CHAN_STORE: memory:, lmdb:DIR or
redis://HOST:PORT/DB. Unset, chan serve keeps it in lmdb:data (under the working directory): names outlive a
restart. --processes N|auto: N server processes on the port (auto: one per CPU), under a primary that replaces one
that dies; they need a store they share (lmdb: or redis://).`,
  },
  check: {
    positionals: [0, 1],
    usage: 'chan check [CONF]',
    summary: 'validate CONF and print the settings in effect, and where each came from',
    help: `Validates CONF as chan serve would before it listens (without listening, starting services or creating
anything): the file, every option, the code_path folders, each service's module and function (imported, which runs
its top-level code, but not started), the certificate's dates, and the store (Redis answering, an LMDB folder that can
be written). Then prints every setting with its value and its source (the file and line, a CHAN_* variable, or the
default). Secrets are masked.
Exit 0 when valid; 2, with every problem listed, when not.`,
  },
  connect: {
    positionals: [4, 4],
    usage: 'chan connect [options] HOST PORT SERVICE SECRET',
    summary: 'a session: type terms ending in ".", read the answers',
    help: `Opens a session with SERVICE. Type a term ending in '.': 'cast T.' sends it, 'rpc T.' (or just 'T.') waits for
the answer and prints it. As in erl, Enter without the '.' continues the term on the next line, and a line may hold
several terms. 'help' lists the commands; Tab completes them and the atoms the session has seen; the history is kept
in ~/.chan_history ($CHAN_HISTORY; empty: none), a term typed over several lines as one entry. Ctrl-C clears the line
(or the term being continued), or abandons the rpc being waited for; Ctrl-D on an empty line, or quit, leaves.
Pushes from the server are printed as they arrive. With piped input it reads to the end (the last term may omit its
'.'), waits for every answer, and exits 0 (1 if anything failed or the server closed the connection).
${SECRET_NOTE}

options:
  --json                type and print JSON instead of Erlang terms ({"$atom": "joe"}, {"$tuple": [...]})
  --timeout MS          how long an rpc waits for its answer (default 5000)
${CONNECTION_OPTIONS}`,
  },
  rpc: {
    positionals: [5, Infinity],
    usage: 'chan rpc [options] HOST PORT SERVICE SECRET TERM...',
    summary: 'send each TERM, print each answer, exit',
    help: `Sends each TERM as an rpc over one connection (all at once: pipelined), prints the answers in order, one per
line, and exits 0. TERM is Erlang term text ({lookup, joe}; the final '.' is optional); '-' reads terms from standard
input (each ending with '.'; with --json, one JSON value per line).
${SECRET_NOTE}

options:
  --json                TERMs and answers in JSON
  --timeout MS          how long each rpc waits for its answer (default 5000)
${CONNECTION_OPTIONS}`,
  },
  cast: {
    positionals: [5, Infinity],
    usage: 'chan cast [options] HOST PORT SERVICE SECRET TERM...',
    summary: 'send each TERM, wait for no answer, exit 0 once the server has confirmed reading them',
    help: `Sends each TERM as a cast (no answer), then a ping, and exits 0 once the server's pong confirms that it has
read everything before it (exit 1, with the reason, when it does not: the connection lost, a shutdown, --timeout).
With --erlang there is no such confirmation: it exits 0 once the terms have been handed to the network.
TERM as for chan rpc ('-': from standard input).
${SECRET_NOTE}

options:
  --json                TERMs in JSON
${CONNECTION_OPTIONS}`,
  },
  ping: {
    positionals: [2, 2],
    usage: 'chan ping [options] HOST PORT',
    summary: 'is a lib-chan server there, and which protocol does it speak (no secret needed)',
    help: `Asks HOST:PORT "hello" instead of starting a service, and prints the server's name, its protocol version and
the round trip. Exit 0 when a lib-chan server answered, 1 otherwise.

options:
  --timeout MS          how long to wait for the answer, connecting included (default 10000)
${CONNECTION_OPTIONS}`,
  },
  bench: {
    positionals: [4, 4],
    usage: 'chan bench [options] HOST PORT SERVICE SECRET',
    summary: 'load a name-server service and print ops/s, latency percentiles and CPU per operation',
    help: `Runs scenarios of kvs lookups (values of --size bytes on --keys pre-stored keys; every answer checked) against
SERVICE, then prints a table: ops/s, p50/p90/p99/p99.9/max latency, client and server CPU time per operation.
  rpc        -c connections, each sending one lookup at a time (default -c 1,16)
  store      -c connections, each sending one store at a time, answered once committed (not in the default run)
  pipeline   one connection with -w lookups in flight (default 64)
  cast       one-way stores on one connection, verified at the end by reading the last one back
  connect    connect + authenticate + close, one after another, -c at once (default 1 and 16)
  idle       --idle authenticated connections held open (default 1000); server memory per connection, read after
             holding them --idle-hold ms (default 1000), and at half of them
Server CPU and memory need --server-pid (a local server, read from /proc). A progress line shows while it runs.
${SECRET_NOTE}

options:
  --scenario LIST       some of rpc,store,pipeline,cast,connect,idle (default: all but store)
  -c LIST  -w N         connections for rpc; requests in flight for pipeline
  -d MS | -n COUNT      how long each scenario runs (default 5000 ms), or how many operations
  --size BYTES --keys N --idle N --idle-hold MS
  --server-pid PID      the server's process, for its CPU time and memory
  --pin CPU             run on one CPU (taskset); pin the server to the same one for sequential latency
  --json                the results as JSON
  --report FILE.html    also write a page to share: the table, and each scenario's latency percentile curve (SVG)
${CONNECTION_OPTIONS}`,
  },
  profile: {
    positionals: [1, 5],
    usage:
      'chan profile save NAME HOST PORT SERVICE [--tls] [--ca F] [--cert F --key F] [--erlang] | list | delete NAME',
    summary: 'save where a service is, to connect with @NAME (never the secret)',
    help: `Saves HOST PORT SERVICE, and the TLS and --erlang flags, under NAME; then chan connect @NAME SECRET,
chan rpc @NAME SECRET TERM..., chan cast and chan bench take @NAME in their place. The secret is never saved: give it
on each command ('-' reads it from standard input). 'list' shows the profiles, 'delete NAME' removes one. The file is
$CHAN_PROFILES, else ~/.config/lib-chan/profiles.json ($XDG_CONFIG_HOME), written mode 0600.`,
  },
  certs: {
    positionals: [0, 0],
    usage: 'chan certs [--out certs] [--hosts localhost,127.0.0.1] [--days 365] [--client NAME]... [--force]',
    summary: 'make a CA, a server certificate and client certificates',
    help: `Writes ca.pem, server.pem (its subject alternative names are --hosts) and client-NAME.pem for each --client,
each with its *-key.pem (mode 0600), into --out. An existing CA is reused, so --client NAME later adds a client signed
by it; no existing file is replaced without --force.`,
  },
  passwd: {
    positionals: [0, 0],
    usage: 'chan passwd [--iterations 4096]',
    summary: 'read a secret, print its SCRAM verifier for the config',
    help: `Reads a secret from standard input (a hidden prompt, asked twice, on a terminal) and prints its verifier,
"SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>", for {service, S, verifier, "...", mfa, M, F, A}.
The server then never holds the secret. --iterations is from 4096 to 1000000 (clients refuse more).`,
  },
};

function overview(): string {
  const width = Math.max(...Object.values(COMMANDS).map((c) => c.usage.split(' [')[0]?.length ?? 0)) + 2;
  const rows = Object.entries(COMMANDS).map(([, c]) => `  ${(c.usage.split(' [')[0] ?? '').padEnd(width)}${c.summary}`);
  return `chan: lib-chan's command line (version ${VERSION})

commands:
${rows.join('\n')}

'chan help COMMAND' (or 'chan COMMAND --help') says more. --version prints the version.
exit status: 0 done; 1 failed (the line 'chan: <word>: ...' says why); 2 usage or configuration error.

the book's session:
  chan serve conf/lib_chan.conf &
  chan cast localhost 1234 nameServer ABXy45 '{store, joe, "writing a book"}.'
  chan rpc localhost 1234 nameServer ABXy45 '{lookup, joe}.'      -> {ok,"writing a book"}`;
}

function commandHelp(name: string): string {
  const c = COMMANDS[name];
  if (!c) throw usageError(`no command '${name}'`);
  return `usage: ${c.usage}\n\n${c.help}`;
}

/** --tls, --ca, --cert, --key, --servername: TLS for a client command (any of the file options implies --tls). */
function tlsOptions(v: {
  tls?: boolean;
  ca?: string;
  cert?: string;
  key?: string;
  servername?: string;
}): ConnectOptions['tls'] | undefined {
  if (!v.tls && v.ca === undefined && v.cert === undefined && v.key === undefined) return undefined;
  if ((v.cert === undefined) !== (v.key === undefined)) throw usageError('--cert and --key go together');
  const read = (flag: string, file: string | undefined): Buffer | undefined => {
    if (file === undefined) return undefined;
    try {
      return readFileSync(file);
    } catch (err) {
      throw usageError(
        `${flag} ${file}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message}`,
      );
    }
  };
  const ca = read('--ca', v.ca);
  const cert = read('--cert', v.cert);
  const key = read('--key', v.key);
  return {
    ...(ca ? { ca } : {}),
    ...(cert ? { cert } : {}),
    ...(key ? { key } : {}),
    ...(v.servername ? { servername: v.servername } : {}),
  };
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
        'connect-timeout': { type: 'string' },
        json: { type: 'boolean' },
        tls: { type: 'boolean' },
        erlang: { type: 'boolean' },
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
        scenario: { type: 'string', multiple: true },
        c: { type: 'string', short: 'c' },
        w: { type: 'string', short: 'w' },
        d: { type: 'string', short: 'd' },
        n: { type: 'string', short: 'n' },
        size: { type: 'string' },
        keys: { type: 'string' },
        idle: { type: 'string' },
        'idle-hold': { type: 'string' },
        'server-pid': { type: 'string' },
        pin: { type: 'string' },
        report: { type: 'string' },
        store: { type: 'string' },
        processes: { type: 'string' },
      },
    });
  } catch (err) {
    throw usageError((err as Error).message);
  }
  const { values, positionals } = parsed;
  if (values.version) {
    process.stdout.write(`${VERSION}\n`);
    return 0;
  }
  const [command, ...given] = positionals;
  // `@NAME` for HOST PORT SERVICE: a saved profile (chan profile), whose TLS and protocol flags come with it.
  let rest = given;
  let saved: Profile | null = null;
  if (command !== undefined && CONNECTING.has(command) && given[0]?.startsWith('@')) {
    const { profile } = await import('./cli/profiles.js');
    saved = profile(given[0]);
    rest = [saved.host, String(saved.port), saved.service, ...given.slice(1)];
  }
  if (command === 'help') {
    process.stdout.write(`${rest[0] ? commandHelp(rest[0]) : overview()}\n`);
    return 0;
  }
  if (command === undefined) {
    process.stdout.write(`${overview()}\n`);
    return values.help ? 0 : EXIT_USAGE;
  }
  const spec = COMMANDS[command];
  if (!spec) throw usageError(`unknown command '${command}'`);
  if (values.help) {
    process.stdout.write(`${commandHelp(command)}\n`);
    return 0;
  }
  const [fewest, most] = spec.positionals;
  if (rest.length < fewest || rest.length > most) throw usageError(spec.usage);
  const timeout =
    values.timeout === undefined
      ? undefined
      : positive('--timeout', values.timeout, 'a positive number of milliseconds');
  const json = values.json === true;
  const connectTimeout =
    values['connect-timeout'] === undefined
      ? undefined
      : positive('--connect-timeout', values['connect-timeout'], 'a positive number of milliseconds');
  const target = async (): Promise<Destination> => {
    const [host, port, service, secret] = rest as [string, string, string, string];
    const tls = tlsOptions({ ...(saved?.tls ? { tls: true, ...saved.tls } : {}), ...values });
    const erlang = values.erlang === true || saved?.erlang === true;
    if (tls && erlang) throw usageError('--erlang speaks the original lib_chan protocol, which has no TLS');
    const options: ConnectOptions = erlang ? { protocol: 'erlang' } : tls ? { tls } : {};
    if (connectTimeout !== undefined) options.connectTimeout = connectTimeout;
    return { host, port: parsePort(port), service, secret: await resolveSecret(secret), options };
  };
  // Each command's module is loaded when it runs: a server does not carry the session's REPL, the benchmark or the
  // client in its heap (what a process loads at its start sets how large V8 makes its young generation).
  switch (command) {
    case 'serve': {
      const { serve } = await import('./cli/serve.js');
      return serve(rest[0], values.store, values.processes);
    }
    case 'check': {
      const { check } = await import('./cli/check.js');
      return await check(rest[0]);
    }
    case 'connect': {
      const [{ connect }, { argsFor }, { session }] = await Promise.all([
        import('./client.js'),
        import('./cli/oneshot.js'),
        import('./cli/session.js'),
      ]);
      const t = await target();
      const ch = await connect(t.host, t.port, t.service, t.secret, argsFor(t), t.options);
      return session(ch, t.service, { timeout, json });
    }
    case 'rpc':
    case 'cast': {
      const { oneShot } = await import('./cli/oneshot.js');
      return oneShot(command, await target(), rest.slice(4), { timeout, json });
    }
    case 'bench': {
      const { bench } = await import('./cli/bench.js');
      return bench(await target(), values);
    }
    case 'ping': {
      const { pingCommand } = await import('./cli/ping.js');
      return pingCommand(
        rest[0] as string,
        parsePort(rest[1] as string),
        tlsOptions(values),
        connectTimeout ?? timeout,
      );
    }
    case 'certs': {
      const { certs } = await import('./cli/security.js');
      return certs(values);
    }
    case 'passwd': {
      const { passwd } = await import('./cli/security.js');
      return passwd(values.iterations);
    }
    case 'profile': {
      const { profileCommand } = await import('./cli/profiles.js');
      return profileCommand(rest, values);
    }
  }
  throw usageError(`unknown command '${command}'`);
}

main(process.argv.slice(2)).then(
  (status) => {
    process.exitCode = status;
    // Whatever still holds the event loop (a paused stdin, a lingering socket) must not keep a finished command alive;
    // but what was written to stdout and stderr (pipes may be asynchronous) goes out first.
    exitAfterOutput(status);
  },
  (err: unknown) => {
    let status = EXIT_FAILURE;
    if (err instanceof CliExit) {
      process.stderr.write(`${err.message}\n`);
      status = err.status;
    } else if (err instanceof ConfigError) {
      process.stderr.write(
        `chan: badConfig: the configuration has ${err.problems.length} problem(s); nothing was started\n`,
      );
      for (const p of err.problems) process.stderr.write(`  ${String(p)}\n`);
      status = EXIT_USAGE;
    } else if (err instanceof ChanError) {
      process.stderr.write(`${failureLine(err)}\n`);
      status = failureStatus(err.code);
    } else {
      process.stderr.write(`${failureLine(err)}\n`);
      if (err instanceof Error && err.stack) process.stderr.write(`${err.stack}\n`);
    }
    exitAfterOutput(status);
  },
);

/** Exits with `status` once stdout and stderr have taken everything written to them. */
function exitAfterOutput(status: number): void {
  let waiting = 2;
  const done = (): void => {
    if (--waiting === 0) setImmediate(() => process.exit(status));
  };
  process.stdout.write('', done);
  process.stderr.write('', done);
}
