/** `chan check [CONF]`: validate a config and print the settings in effect, with where each came from. */
import { loadConfigFile, type ServerConfig } from '../config/load.js';
import { OPTIONS } from '../config/options.js';
import { describeStore } from '../store/store.js';
import { formatTerm } from '../term/print.js';
import { accessSync, constants, existsSync, statSync } from 'node:fs';
import path from 'node:path';
import { serviceCode } from '../modules.js';
import { openStore, parseStoreUrl } from '../store/index.js';
import { certificateProblem } from '../tls.js';
import { EXIT_OK, EXIT_USAGE } from './common.js';
import { DEFAULT_SERVE_STORE, confFile } from './serve.js';

export async function check(confArg: string | undefined): Promise<number> {
  const file = confFile(confArg);
  const sources = new Map<string, string>();
  const config = loadConfigFile(file, { sources }); // problems: "chan: badConfig: ..." and exit 2
  const problems = await startProblems(config);
  if (problems.length > 0) {
    process.stderr.write(
      `chan: badConfig: ${file} reads well, but chan serve would refuse to start it: ${problems.length} problem(s)\n${problems.map((p) => `  ${p}\n`).join('')}`,
    );
    return EXIT_USAGE;
  }
  process.stdout.write(`${file}: valid\n\n${describe(config, sources)}`);
  return EXIT_OK;
}

/**
 * What chan serve checks before it listens, beyond the file itself, all at once: code_path folders, each service's
 * module and function (imported, not started), the certificate's dates, and the store (Redis answering, an LMDB
 * folder that can be written). Nothing is started, listened on or created.
 */
export async function startProblems(config: ServerConfig): Promise<string[]> {
  const problems: string[] = [];
  for (const dir of config.codePath) if (!isFolder(dir)) problems.push(`code_path: ${dir} is not a folder`);
  for (const def of config.services) {
    try {
      await serviceCode(def, config.codePath);
    } catch (err) {
      problems.push(`service ${def.name}: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
  const tlsProblem = config.tls ? certificateProblem(config.tls.cert) : null;
  if (tlsProblem) problems.push(`tls.cert: ${tlsProblem}`);
  const url = config.store ?? DEFAULT_SERVE_STORE;
  const where = parseStoreUrl(url);
  if (typeof where !== 'string' && where.kind === 'lmdb' && !writableFolder(where.dir))
    problems.push(`store ${url}: ${where.dir} cannot be created or written`);
  if (typeof where !== 'string' && where.kind === 'redis') {
    try {
      await (await openStore(url)).close();
    } catch (err) {
      problems.push(err instanceof Error ? err.message : String(err));
    }
  }
  return problems;
}

function isFolder(dir: string): boolean {
  try {
    return statSync(dir).isDirectory();
  } catch {
    return false;
  }
}

/** A folder that exists and can be written, or whose nearest existing parent can. */
function writableFolder(dir: string): boolean {
  let at = dir;
  for (;;) {
    if (existsSync(at)) {
      try {
        accessSync(at, constants.W_OK);
        return statSync(at).isDirectory();
      } catch {
        return false;
      }
    }
    const up = path.dirname(at);
    if (up === at) return false;
    at = up;
  }
}

function optionValue(config: ServerConfig, prop: string): unknown {
  if (prop.startsWith('tls.')) {
    const key = prop.slice(4);
    if (!config.tls) return null;
    return new Map(Object.entries(config.tls.files ?? {})).get(key) ?? new Map(Object.entries(config.tls)).get(key);
  }
  // Unset, the store is what chan serve would use.
  if (prop === 'store')
    return config.store === null ? `${DEFAULT_SERVE_STORE} (chan serve's)` : describeStore(config.store);
  return new Map(Object.entries(config)).get(prop);
}

export function describe(config: ServerConfig, sources: Map<string, string>): string {
  const rows = OPTIONS.map((o) => {
    const given = optionValue(config, o.prop);
    const v = o.sensitive && given !== null && given !== undefined ? '********' : given;
    return [
      o.key,
      v === null || v === undefined ? '-' : typeof v === 'string' ? v : JSON.stringify(v),
      sources.get(o.key) ?? 'default',
    ];
  });
  const w0 = Math.max(6, ...rows.map((r) => (r[0] as string).length)) + 2;
  const w1 = Math.max(5, ...rows.map((r) => (r[1] as string).length)) + 2;
  const lines = [
    `${'option'.padEnd(w0)}${'value'.padEnd(w1)}from`,
    ...rows.map(([k, v, s]) => `${(k as string).padEnd(w0)}${(v as string).padEnd(w1)}${s}`),
  ];
  lines.push('', `services (${config.services.length}):`);
  for (const s of config.services) {
    const auth = s.verifier ? 'verifier ********' : s.secret === null ? 'no secret' : 'password ********';
    const extras = [
      s.isolation ? `isolation ${s.isolation}` : '',
      s.workers ? `workers ${s.workers}` : '',
      s.allowCn ? `allow_cn ${JSON.stringify(s.allowCn)}` : '',
    ]
      .filter((x) => x !== '')
      .join(', ');
    lines.push(
      `  ${s.name}: ${auth}; mfa ${s.module}:${s.function}(${formatTerm(s.args)})${extras ? `; ${extras}` : ''}`,
    );
  }
  return `${lines.join('\n')}\n`;
}
