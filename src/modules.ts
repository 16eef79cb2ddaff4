/**
 * Service modules: finding the module a service's mfa names, and its functions.
 *
 * `{service, S, ..., mfa, Mod, Func, ArgsS}` names a module `Mod` and a handler `Func` in it. `Mod` is one of the
 * built-in modules (`mod_name_server`), or `Mod.js` / `Mod.mjs` in a folder of `code_path`, searched in order.
 * `Func` is looked up as written and then in camelCase (`start_me_up` finds `startMeUp`). A module may also export
 * `start(argsS, ctx)`, run when the service starts (the book's `kvs:start()`: what it returns is every handler's
 * `ctx.state`), and `stop(state)`, run when it stops. The same code runs on the main thread or in a worker thread
 * (`{isolation, worker}`), which is why it is found by URL.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { makeVerifier, secretProblem, type ScramVerifier } from './auth/scram.js';
import { camelCase } from './config/options.js';
import type { Logger } from './log.js';
import type { Handler, ServiceLimits } from './runtime.js';

export type { ServiceLimits } from './runtime.js';
import type { Namespace } from './store/store.js';
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
  /** ...or the handler itself (for programs that embed the server; inline isolation only). */
  handler?: Handler<S>;
  /** With `handler`: the service's start function. */
  start?: StartFunction<S>;
  stop?: (state: S) => unknown;
  /** ArgsS. */
  args?: Term;
  /** `inline` (default): handlers run on the server's event loop; `worker`: in worker threads (see PROCESSES.md). */
  isolation?: 'inline' | 'worker';
  /** With worker isolation: how many worker threads (default 1). Each has its own state. */
  workers?: number;
}

export type StartFunction<S = unknown> = (argsS: Term, ctx: StartContext) => S | Promise<S>;

/** The limits a service's code is told of, from the server's settings (one frozen object per service). */
export function serviceLimits(s: ServiceLimits): ServiceLimits {
  return Object.freeze({ maxDepth: s.maxDepth, maxFrameSize: s.maxFrameSize, storeMaxBytes: s.storeMaxBytes });
}

export interface StartContext {
  service: string;
  log: Logger;
  limits: ServiceLimits;
  /** The service's own part of the server's store (the `store` option): durable keys and values, both terms. */
  store: Namespace;
  /**
   * Reports that the service's own work (outside any connection) has failed: the supervisor stops the service and
   * starts it again, within restart_intensity; past it, the service is marked down.
   */
  fail(err: unknown): void;
}

/** The functions of a service, and where they came from. */
export interface ServiceCode {
  handler: Handler;
  start?: StartFunction;
  stop?: (state: unknown) => unknown;
  /** The module's URL and names (absent for a handler given as a function): what a worker thread imports. */
  url?: string;
  module?: string;
  function?: string;
  /** For logs: "built in", or the file. */
  from: string;
}

const BUILT_IN: Record<string, URL> = {
  mod_name_server: new URL('./services/mod_name_server.js', import.meta.url),
};

/**
 * A service's module cannot be found, lacks its function, or its secret is one SASLprep refuses: a configuration
 * problem (logged without a stack; the supervisor puts the service's name before the message).
 */
export class ModuleError extends Error {}

const MODULE_NAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/;

function findModuleFile(name: string, codePath: readonly string[]): string | null {
  for (const dir of codePath) {
    for (const ext of ['.js', '.mjs']) {
      const file = path.join(dir, name + ext);
      if (existsSync(file)) return file;
    }
  }
  return null;
}

/** Where module `name` is: a built-in, or a file on `codePath`. Throws with a sentence that says where it looked. */
export function locateModule(name: string, codePath: readonly string[]): { url: string; from: string } {
  if (!MODULE_NAME.test(name))
    throw new ModuleError(`module name '${name}' may hold only letters, digits, '_', '.' and '-'`);
  const builtIn = BUILT_IN[name];
  if (builtIn) return { url: builtIn.href, from: 'built in' };
  const file = findModuleFile(name, codePath);
  if (!file) {
    const where =
      codePath.length > 0 ? `code_path (${codePath.join(', ')})` : 'code_path (empty: add {code_path, ["folder"]}.)';
    throw new ModuleError(`module '${name}' is not built in and there is no ${name}.js in ${where}`);
  }
  return { url: pathToFileURL(file).href, from: file };
}

/** Imports a module by URL and finds its handler `fnName` (as written or camelCase), `start` and `stop`. */
export async function importServiceCode(
  url: string,
  moduleName: string,
  fnName: string,
  from: string,
): Promise<ServiceCode> {
  let exports: Record<string, unknown>;
  try {
    exports = (await import(url)) as Record<string, unknown>;
  } catch (err) {
    if (err instanceof SyntaxError) throw new ModuleError(syntaxProblem(url, moduleName, err));
    throw err;
  }
  const fn = exports[fnName] ?? exports[camelCase(fnName)];
  if (typeof fn !== 'function') {
    throw new ModuleError(
      `module '${moduleName}' (${from}) exports no function '${fnName}'${camelCase(fnName) !== fnName ? ` or '${camelCase(fnName)}'` : ''}`,
    );
  }
  const code: ServiceCode = { handler: fn as Handler, url, module: moduleName, function: fnName, from };
  if (typeof exports['start'] === 'function') code.start = exports['start'] as StartFunction;
  if (typeof exports['stop'] === 'function') code.stop = exports['stop'] as ServiceCode['stop'];
  return code;
}

/**
 * A module that does not parse, said with its file and line: Node's SyntaxError from an import names neither, so the
 * file is checked once more (`node --check`), which does.
 */
function syntaxProblem(url: string, moduleName: string, err: SyntaxError): string {
  if (!url.startsWith('file:')) return `module '${moduleName}' does not parse: ${err.message}`;
  const file = fileURLToPath(url);
  let line = '';
  try {
    // Checked as a module from standard input: `node --check FILE` takes an ambiguous .js for CommonJS.
    const check = spawnSync(process.execPath, ['--input-type=module', '--check'], {
      input: readFileSync(file),
      encoding: 'utf8',
      timeout: 10_000,
    });
    const at = /^\[stdin\]:(\d+)/m.exec(check.stderr ?? '');
    if (at) line = `:${at[1]}`;
  } catch {
    // the line is a help, not a need
  }
  return `module '${moduleName}' does not parse (${file}${line}): ${err.message}`;
}

/** A module for worker threads to import: found here, imported (its code run) only in the workers. */
export interface WorkerModule {
  url: string;
  module: string;
  function: string;
  from: string;
}

/** Where a worker-isolated service's module is. The main thread does not import it: its code runs in the workers only. */
export function workerModule(def: ServiceDefinition, codePath: readonly string[]): WorkerModule {
  if (def.handler) throw new ModuleError('worker isolation needs a module (mfa), not a handler function');
  const { url, from } = locateModule(def.module ?? '', codePath);
  return { url, module: def.module ?? '', function: def.function ?? '', from };
}

/** The code of an inline service: its handler function, or its module's. */
export async function serviceCode(def: ServiceDefinition, codePath: readonly string[]): Promise<ServiceCode> {
  if (def.handler) {
    return {
      handler: def.handler as Handler,
      from: 'a function',
      ...(def.start ? { start: def.start as StartFunction } : {}),
      ...(def.stop ? { stop: def.stop as (state: unknown) => unknown } : {}),
    };
  }
  const { url, from } = locateModule(def.module ?? '', codePath);
  return importServiceCode(url, def.module ?? '', def.function ?? '', from);
}

/** The verifier a service's handshake checks against: the stored one, one made from the plaintext secret, or none. */
export async function verifierFor(def: ServiceDefinition): Promise<ScramVerifier | null> {
  if (def.verifier) return def.verifier;
  if (def.secret === null) return null;
  // A config file's secrets were checked as it was read; this catches those given in code, before any client tries.
  const problem = secretProblem(def.secret);
  if (problem !== null) throw new ModuleError(`its secret ${problem}`);
  return makeVerifier(def.secret);
}
