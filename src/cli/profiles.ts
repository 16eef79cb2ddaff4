/**
 * Saved profiles, as the nats CLI keeps contexts: `chan profile save kvs localhost 1234 nameServer` once, then
 * `chan connect @kvs ABXy45` (or `chan rpc @kvs - '{lookup, joe}'`). A profile holds where and how to connect (host,
 * port, service, --tls and its files, --erlang), never the secret: that is still given on each command (`-` reads it
 * from standard input). The file is `$CHAN_PROFILES`, else `$XDG_CONFIG_HOME/lib-chan/profiles.json` (by default
 * `~/.config/lib-chan/profiles.json`), written mode 0600.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import path from 'node:path';
import { EXIT_OK, parsePort, usageError } from './common.js';

export interface Profile {
  host: string;
  port: number;
  service: string;
  /** File names, as given to --ca, --cert, --key (absolute); `tls` alone: TLS with the public CAs. */
  tls?: { ca?: string; cert?: string; key?: string; servername?: string };
  erlang?: boolean;
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

export function profilesFile(): string {
  const env = process.env['CHAN_PROFILES'];
  if (env) return env;
  const config = process.env['XDG_CONFIG_HOME'] || path.join(homedir(), '.config');
  return path.join(config, 'lib-chan', 'profiles.json');
}

function load(file: string): Record<string, Profile> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return {};
  }
  try {
    const parsed = JSON.parse(text) as unknown;
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error('not an object');
    return parsed as Record<string, Profile>;
  } catch (err) {
    throw usageError(`${file} is not a profiles file (${(err as Error).message}): fix or remove it`);
  }
}

/** The profile `@NAME` stands for; a usage error naming the file when there is none. */
export function profile(at: string): Profile {
  const name = at.slice(1);
  const file = profilesFile();
  const all = load(file);
  const found: unknown = Object.hasOwn(all, name) ? all[name] : undefined;
  if (found === undefined)
    throw usageError(`no profile '${name}' in ${file} (chan profile save ${name} HOST PORT SERVICE)`);
  // The file may have been edited by hand: what it holds is checked before it is used.
  const p = found as Partial<Profile> | null;
  const valid =
    p !== null &&
    typeof p === 'object' &&
    typeof p.host === 'string' &&
    typeof p.service === 'string' &&
    Number.isInteger(p.port) &&
    (p.port as number) >= 0 &&
    (p.port as number) <= 65535 &&
    (p.tls === undefined || (typeof p.tls === 'object' && p.tls !== null)) &&
    (p.erlang === undefined || typeof p.erlang === 'boolean');
  if (!valid) throw usageError(`profile '${name}' in ${file} is not host, port and service: save it again`);
  return p as Profile;
}

export interface ProfileFlags {
  tls?: boolean;
  ca?: string;
  cert?: string;
  key?: string;
  servername?: string;
  erlang?: boolean;
}

/** `chan profile save NAME HOST PORT SERVICE [flags]`, `chan profile list`, `chan profile delete NAME`. */
export function profileCommand(args: string[], flags: ProfileFlags): number {
  const [action, name, ...rest] = args;
  const file = profilesFile();
  const all = load(file);
  const write = (): void => {
    mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
    writeFileSync(file, `${JSON.stringify(all, null, 2)}\n`, { mode: 0o600 });
  };
  switch (action) {
    case 'list': {
      const names = Object.keys(all).sort();
      if (names.length === 0) process.stdout.write(`no profiles in ${file}\n`);
      for (const n of names) {
        const p = all[n] as Profile;
        const how = [p.tls ? 'tls' : '', p.erlang ? 'erlang' : ''].filter((x) => x).join(', ');
        process.stdout.write(`@${n}  ${p.host} ${p.port} ${p.service}${how ? `  (${how})` : ''}\n`);
      }
      return EXIT_OK;
    }
    case 'save': {
      if (name === undefined || !NAME.test(name) || rest.length !== 3)
        throw usageError('chan profile save NAME HOST PORT SERVICE [--tls] [--ca F] [--cert F --key F] [--erlang]');
      const [host, port, service] = rest as [string, string, string];
      const p: Profile = { host, port: parsePort(port), service };
      if (flags.tls || flags.ca || flags.cert || flags.key || flags.servername) {
        const abs = (f: string | undefined): string | undefined => (f === undefined ? undefined : path.resolve(f));
        p.tls = JSON.parse(
          JSON.stringify({
            ca: abs(flags.ca),
            cert: abs(flags.cert),
            key: abs(flags.key),
            servername: flags.servername,
          }),
        ) as NonNullable<Profile['tls']>;
      }
      if (flags.erlang) p.erlang = true;
      all[name] = p;
      write();
      process.stdout.write(`saved @${name}: ${host} ${p.port} ${service} (no secret is saved) in ${file}\n`);
      return EXIT_OK;
    }
    case 'delete': {
      if (name === undefined || !Object.hasOwn(all, name)) throw usageError(`no profile '${name ?? ''}' in ${file}`);
      delete all[name];
      write();
      return EXIT_OK;
    }
    default:
      throw usageError('chan profile save NAME HOST PORT SERVICE ... | chan profile list | chan profile delete NAME');
  }
}
