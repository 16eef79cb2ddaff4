/**
 * Service modules: finding the module a service's mfa names, its handler function, and starting the service.
 *
 * `{service, S, ..., mfa, Mod, Func, ArgsS}` names a module `Mod` and a handler `Func` in it. `Mod` is one of the
 * built-in modules (`mod_name_server`), or `Mod.js` / `Mod.mjs` in a folder of `code_path`, searched in order.
 * `Func` is looked up as written and then in camelCase (`start_me_up` finds `startMeUp`). A module may also export
 * `start(argsS, ctx)`, run once when the server starts (the book's `kvs:start()`); what it returns is shared by
 * every handler of that service as `ctx.state`, and its optional `stop(state)` runs when the server closes.
 * Every problem is found before the server listens, and all of them are reported together.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { makeVerifier, type ScramVerifier } from './auth/scram.js';
import { ChanError } from './errors.js';
import type { Logger } from './log.js';
import type { Handler } from './runtime.js';
import type { Term } from './term/model.js';

/** A service as the server runs it. */
export interface ServiceDefinition<S = unknown> {
  name: string;
  /** The plaintext secret, or null for none (or when `verifier` is given). */
  secret: string | null;
  /** A stored SCRAM verifier instead of a plaintext secret. */
  verifier?: ScramVerifier;
  /** Only TLS clients whose verified certificate has one of these common names may use the service. */
  allowCn?: string[];
  /** Where the handler comes from: a module and function (as in lib_chan.conf)... */
  module?: string;
  function?: string;
  /** ...or the handler itself (for programs that embed the server). */
  handler?: Handler<S>;
  /** With `handler`: the service's start function. */
  start?: (argsS: Term, ctx: StartContext) => S | Promise<S>;
  stop?: (state: S) => unknown;
  /** ArgsS. */
  args?: Term;
}

export interface StartContext {
  service: string;
  log: Logger;
}

export interface RunningService {
  name: string;
  /** Replaced on reload (SIGHUP), for connections from then on. */
  verifier: ScramVerifier | null;
  allowCn?: string[];
  /** What the verifier was made from, so a reload with the same secret keeps it (and clients' caches). */
  secret: string | null;
  module?: string;
  function?: string;
  handler: Handler;
  args: Term;
  state: unknown;
  stop?: () => unknown;
}

const BUILT_IN: Record<string, () => Promise<Record<string, unknown>>> = {
  mod_name_server: () => import('./services/mod_name_server.js'),
};

const MODULE_NAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/;

function camelCase(name: string): string {
  return name.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}

function findModuleFile(name: string, codePath: readonly string[]): string | null {
  for (const dir of codePath) {
    for (const ext of ['.js', '.mjs']) {
      const file = path.join(dir, name + ext);
      if (existsSync(file)) return file;
    }
  }
  return null;
}

async function loadModule(name: string, codePath: readonly string[]): Promise<{ exports: Record<string, unknown>; from: string }> {
  if (!MODULE_NAME.test(name)) throw new Error(`module name '${name}' may hold only letters, digits, '_', '.' and '-'`);
  const builtIn = BUILT_IN[name];
  if (builtIn) return { exports: await builtIn(), from: 'built in' };
  const file = findModuleFile(name, codePath);
  if (!file) {
    const where = codePath.length > 0 ? `code_path (${codePath.join(', ')})` : 'code_path (empty: add {code_path, ["folder"]}.)';
    throw new Error(`module '${name}' is not built in and there is no ${name}.js in ${where}`);
  }
  return { exports: (await import(pathToFileURL(file).href)) as Record<string, unknown>, from: file };
}

/**
 * Loads and starts every service. Throws a `badConfig` ChanError naming each service that cannot run; services
 * already started are stopped again first.
 */
export async function startServices(defs: readonly ServiceDefinition[], codePath: readonly string[], log: Logger): Promise<RunningService[]> {
  const problems: string[] = [];
  const running: RunningService[] = [];
  for (const def of defs) {
    try {
      running.push(await startService(def, codePath, log));
    } catch (err) {
      problems.push(`service ${def.name}: ${err instanceof Error ? err.message : String(err)}`);
      if (!(err instanceof Error) || !err.message.startsWith('module')) log.error({ err, service: def.name }, 'service failed to start');
    }
  }
  if (problems.length > 0) {
    await stopServices(running, log);
    throw new ChanError('badConfig', `cannot start:\n${problems.map((p) => `  ${p}`).join('\n')}`);
  }
  return running;
}

async function startService(def: ServiceDefinition, codePath: readonly string[], log: Logger): Promise<RunningService> {
  let handler: Handler;
  let start = def.start;
  let stop = def.stop;
  if (def.handler) {
    handler = def.handler;
  } else {
    const modName = def.module ?? '';
    const fnName = def.function ?? '';
    const { exports, from } = await loadModule(modName, codePath);
    const fn = exports[fnName] ?? exports[camelCase(fnName)];
    if (typeof fn !== 'function') {
      throw new Error(`module '${modName}' (${from}) exports no function '${fnName}'${camelCase(fnName) !== fnName ? ` or '${camelCase(fnName)}'` : ''}`);
    }
    handler = fn as Handler;
    if (typeof exports['start'] === 'function') start = exports['start'] as ServiceDefinition['start'];
    if (typeof exports['stop'] === 'function') stop = exports['stop'] as ServiceDefinition['stop'];
    log.debug({ service: def.name, module: modName, from }, 'service module loaded');
  }
  const args = def.args ?? null;
  const state = start ? await start(args, { service: def.name, log: log.child({ service: def.name }) }) : undefined;
  const verifier = await verifierFor(def);
  return {
    name: def.name,
    verifier,
    secret: def.secret,
    handler,
    args,
    state,
    ...(def.allowCn ? { allowCn: def.allowCn } : {}),
    ...(def.module ? { module: def.module } : {}),
    ...(def.function ? { function: def.function } : {}),
    ...(stop ? { stop: () => stop(state) } : {}),
  };
}

/** The verifier a service's handshake checks against: the stored one, one made from the plaintext secret, or none. */
export async function verifierFor(def: ServiceDefinition): Promise<ScramVerifier | null> {
  if (def.verifier) return def.verifier;
  return def.secret === null ? null : makeVerifier(def.secret);
}

export async function stopServices(services: readonly RunningService[], log: Logger): Promise<void> {
  for (const s of services) {
    try {
      await s.stop?.();
    } catch (err) {
      log.error({ err, service: s.name }, 'service stop failed');
    }
  }
}
