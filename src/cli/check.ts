/** `chan check [CONF]`: validate a config and print the settings in effect, with where each came from. */
import { loadConfigFile, type ServerConfig } from '../config/load.js';
import { OPTIONS } from '../config/options.js';
import { describeStore } from '../store/store.js';
import { formatTerm } from '../term/print.js';
import { EXIT_OK } from './common.js';
import { DEFAULT_SERVE_STORE, confFile } from './serve.js';

export function check(confArg: string | undefined): number {
  const file = confFile(confArg);
  const sources = new Map<string, string>();
  const config = loadConfigFile(file, { sources }); // problems: "chan: badConfig: ..." and exit 2
  process.stdout.write(`${file}: valid\n\n${describe(config, sources)}`);
  return EXIT_OK;
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
