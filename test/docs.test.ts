import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { MAX_THROTTLED_ADDRESSES } from '../src/auth/throttle.js';
import { MAX_ITERATIONS } from '../src/handshake.js';
import { DEFAULTS, OPTIONS } from '../src/config/options.js';
import { parseConfig } from '../src/config/load.js';
import { CLOSE_REASONS, ERROR_CODES } from '../src/errors.js';
import { CLOSE_LINGER_MS, SOCKET_SHARE, EARLY_FLUSH_BYTES, EARLY_FLUSH_FRAMES } from '../src/mm.js';
import { DECODED_SIZE_RATIO } from '../src/codec/index.js';
import { WORD_SLOTS } from '../src/codec/msgpack.js';
import { ENTRY_OVERHEAD } from '../src/services/kvs-store.js';
import { CERT_EXPIRY_WARNING_DAYS } from '../src/tls.js';
import { MAX_CLOSE_TEXT, MAX_REQUEST_ID } from '../src/protocol.js';
import { MAX_ATOM_LENGTH, MAX_PARSE_DEPTH } from '../src/term/index.js';
import { CLIENT_DEFAULTS, RECONNECT_DEFAULTS } from '../src/client.js';
import { MAX_UNANSWERED_RPCS } from '../src/session.js';
import { ADMIN_LIMITS } from '../src/admin.js';
import { RECENT_EVENTS } from '../src/metrics.js';
import { READY_STORE_TIMEOUT } from '../src/server.js';
import { fixtures } from './tls-fixtures.js';
import { tempDir } from './helpers.js';

/** The rows of the first table in `file` whose first cell is a `code` span: name -> cells. */
function rows(file: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    const cells = line.split(' | ').map((c) => c.replace(/^\| ?| ?\|$/g, '').trim());
    const m = /^`([^`]+)`$/.exec(cells[0] ?? '');
    if (m && !out.has(m[1] as string)) out.set(m[1] as string, cells);
  }
  return out;
}

test('docs/ERRORS.md lists every error code and close reason, with the text the code has', (t) => {
  const doc = rows('docs/ERRORS.md');
  for (const [code, text] of Object.entries(ERROR_CODES)) {
    const row = doc.get(code);
    t.truthy(row, `${code} is missing from docs/ERRORS.md`);
    t.is(row?.[1], code in CLOSE_REASONS ? 'yes' : '', code);
    t.is(row?.[2], text, code);
  }
  t.deepEqual(
    [...doc.keys()].filter((k) => !(k in ERROR_CODES)),
    [],
    'docs/ERRORS.md lists codes the code does not have',
  );
});

test('docs/OPTIONS.md lists every option with its variable, default, unit and text', (t) => {
  const doc = rows('docs/OPTIONS.md');
  for (const o of OPTIONS) {
    const row = doc.get(o.key);
    t.truthy(row, `${o.key} is missing from docs/OPTIONS.md`);
    t.is(row?.[1], `\`${o.env}\``);
    const def =
      o.default === null
        ? '(none)'
        : Array.isArray(o.default)
          ? '`[]`'
          : typeof o.default === 'string'
            ? `\`"${o.default}"\``
            : `\`${String(o.default)}\``;
    t.is(row?.[2], def, o.key);
    t.is(row?.[3], o.unit, o.key);
    t.is(row?.[4], o.doc, o.key);
  }
});

test('docs/OPTIONS.md states the client defaults and the fixed limits the code uses', (t) => {
  const doc = readFileSync('docs/OPTIONS.md', 'utf8');
  t.true(doc.includes(`| \`connectTimeout\` | \`${CLIENT_DEFAULTS.connectTimeout}\` ms |`));
  t.true(doc.includes(`| \`rpcTimeout\` | \`${CLIENT_DEFAULTS.rpcTimeout}\` ms |`));
  t.true(doc.includes(`| \`maxFrameSize\` | \`${CLIENT_DEFAULTS.maxFrameSize}\` bytes |`));
  t.true(doc.includes(`| \`maxDepth\` | \`${CLIENT_DEFAULTS.maxDepth}\` |`));
  t.true(doc.includes(`| \`heartbeatMaxMissed\` | \`${CLIENT_DEFAULTS.heartbeatMaxMissed}\` |`));
  t.true(doc.includes(`| \`mailboxHighWater\` | \`${CLIENT_DEFAULTS.mailboxHighWater}\` |`));
  t.true(doc.includes(`| \`mailboxHighWaterBytes\` | \`${CLIENT_DEFAULTS.mailboxHighWaterBytes}\` bytes |`));
  t.true(doc.includes(`| \`sendBufferLimit\` | \`${CLIENT_DEFAULTS.sendBufferLimit}\` bytes |`));
  t.true(doc.includes(`| atom length | ${MAX_ATOM_LENGTH} characters |`));
  t.true(doc.includes(`| request ids | 1 to ${MAX_REQUEST_ID} |`));
  t.true(doc.includes(`| close text | ${MAX_CLOSE_TEXT} characters |`));
  t.true(doc.includes(`| 4096 to ${MAX_ITERATIONS} |`));
  t.true(doc.includes(`| close linger | ${CLOSE_LINGER_MS} ms |`));
  t.true(doc.includes(`| rpcs waiting for an answer, per connection (server) | ${MAX_UNANSWERED_RPCS} |`));
  t.true(doc.includes(`| term text nesting | ${MAX_PARSE_DEPTH} levels |`));
  t.true(doc.includes(`| decoded size of a frame | ${DECODED_SIZE_RATIO} x the frame limit |`));
  t.true(doc.includes(`| the send queue's share given to the socket | ${SOCKET_SHARE} bytes |`));
  t.true(doc.includes(`| early flush | ${EARLY_FLUSH_FRAMES} frames or ${EARLY_FLUSH_BYTES} bytes |`));
  t.true(doc.includes(`| short atom names the decoder remembers | ${WORD_SLOTS} |`));
  t.true(doc.includes(`| short strings the decoder shares | ${WORD_SLOTS} |`));
  t.true(doc.includes(`| name-server entry overhead | ${ENTRY_OVERHEAD} bytes |`));
  t.true(doc.includes(`| certificate expiry warning | ${CERT_EXPIRY_WARNING_DAYS} days |`));
  t.true(doc.includes(`| failure throttling table | ${MAX_THROTTLED_ADDRESSES} addresses |`));
  t.true(doc.includes(`| admin port connections | ${ADMIN_LIMITS.maxConnections} |`));
  t.true(doc.includes(`| admin connection silence | ${ADMIN_LIMITS.silence} ms |`));
  t.true(doc.includes(`| /readyz's wait for the store | ${READY_STORE_TIMEOUT} ms |`));
  t.true(doc.includes(`| recent events on the status page | ${RECENT_EVENTS} |`));
});

test('the tls options can be set by their CHAN_TLS_ variables', (t) => {
  const p = fixtures();
  const dir = tempDir({ 'c.pem': p.server.certPem, 'k.pem': p.server.keyPem, 'ca.pem': p.ca.certPem });
  const c = parseConfig('{port, 1}.\n{service, s, password, none, mfa, m, f, a}.', {
    env: {
      CHAN_TLS_CERT: path.join(dir, 'c.pem'),
      CHAN_TLS_KEY: path.join(dir, 'k.pem'),
      CHAN_TLS_CA: path.join(dir, 'ca.pem'),
      CHAN_TLS_VERIFY_CLIENT: 'required',
      CHAN_TLS_MIN_VERSION: 'TLSv1.2',
    },
  });
  t.is(c.tls?.cert, p.server.certPem);
  t.is(c.tls?.key, p.server.keyPem);
  t.is(c.tls?.ca, p.ca.certPem);
  t.is(c.tls?.verifyClient, 'required');
  t.is(c.tls?.minVersion, 'TLSv1.2');
  t.is(OPTIONS.filter((o) => o.key.startsWith('tls.')).length, 5);
});

test('every option can be set by its CHAN_ variable', (t) => {
  const samples: Record<string, [string, unknown]> = {
    port: ['4321', 4321],
    host: ['0.0.0.0', '0.0.0.0'],
    code_path: ['/x:/y', ['/x', '/y']],
    handshake_timeout: ['1500', 1500],
    max_frame_size_unauth: ['2048', 2048],
    max_frame_size: ['65536', 65536],
    max_depth: ['8', 8],
    heartbeat_interval: ['0', 0],
    heartbeat_max_missed: ['2', 2],
    mailbox_high_water: ['16', 16],
    mailbox_high_water_bytes: ['100000', 100000],
    send_buffer_limit: ['65536', 65536],
    max_queued_bytes: ['5000000', 5000000],
    store_max_bytes: ['1000000', 1000000],
    max_connections: ['10', 10],
    max_unauthenticated: ['5', 5],
    max_unauthenticated_per_address: ['2', 2],
    auth_max_failures: ['3', 3],
    auth_failure_window: ['1000', 1000],
    auth_lockout: ['2000', 2000],
    tls_handshake_timeout: ['700', 700],
    restart_intensity: ['0', 0],
    restart_period: ['1500', 1500],
    service_retry_delay: ['250', 250],
    service_retry_max_delay: ['9000', 9000],
    start_timeout: ['4000', 4000],
    handler_block_timeout: ['250', 250],
    shutdown_timeout: ['3000', 3000],
    log_level: ['warn', 'warn'],
    store: ['lmdb:/tmp/x', 'lmdb:/tmp/x'],
    processes: ['2', 2],
    erlang_port: ['4322', 4322],
    erlang_host: ['10.0.0.5', '10.0.0.5'],
    admin_port: ['9100', 9100],
    admin_host: ['::1', '::1'],
    admin_token: ['0123456789abcdef0123', '0123456789abcdef0123'],
  };
  for (const o of OPTIONS.filter((x) => !x.key.startsWith('tls.'))) {
    const sample = samples[o.key];
    t.truthy(sample, `no sample value for ${o.key}: add one`);
    const c = parseConfig('{port, 1}.\n{service, s, password, none, mfa, m, f, a}.', {
      env: { [o.env]: sample?.[0] },
    });
    t.deepEqual(new Map(Object.entries(c)).get(o.prop), sample?.[1], o.env);
  }
});

test('docs/API.md names every export of the library, values and types', async (t) => {
  const api = readFileSync('docs/API.md', 'utf8');
  const lib = (await import('../src/index.js')) as Record<string, unknown>;
  const types = [...readFileSync('src/index.ts', 'utf8').matchAll(/\btype (\w+)/g)].map((m) => m[1] as string);
  for (const name of [...Object.keys(lib), ...types])
    t.true(new RegExp(`\\b${name}\\b`).test(api), `docs/API.md does not name ${name}`);
});

test("docs/API.md's example runs as written (against a server on a free port)", async (t) => {
  const { startServer } = await import('../src/server.js');
  const { loadConfigFile } = await import('../src/config/load.js');
  const { spawn } = await import('node:child_process');
  const server = await startServer(loadConfigFile('conf/lib_chan.conf', { env: { CHAN_PORT: '0' } }));
  t.teardown(() => server.close());
  const example = /```js\n([\s\S]*?)```/.exec(readFileSync('docs/API.md', 'utf8'))?.[1] ?? '';
  const file = path.resolve('dist/api-example.mjs'); // inside the package, so that 'lib-chan' resolves to it
  writeFileSync(file, example.replace("'localhost', 1234", `'localhost', ${server.port}`));
  const out = await new Promise<{ code: number | null; stdout: string }>((resolve) => {
    const child = spawn(process.execPath, [file]);
    let stdout = '';
    child.stdout.on('data', (c: Buffer) => (stdout += String(c)));
    child.on('close', (code) => resolve({ code, stdout }));
  });
  t.is(out.code, 0);
  t.is(out.stdout, 'writing a book\nchannel closed normal\n');
});

/** The `@default` of each field of an interface in a source file: what an editor shows on hover. */
function tsdocDefaults(file: string, iface: string): Map<string, string> {
  const text = readFileSync(file, 'utf8');
  const start = text.indexOf(`export interface ${iface} `);
  const body = text.slice(start, text.indexOf('\n}\n', start));
  const found = new Map<string, string>();
  for (const m of body.matchAll(/\* @default (.+)\n\s+\*\/\n\s+(\w+)\??:/g)) found.set(m[2] as string, m[1] as string);
  return found;
}

/** A `@default` that states a value (numbers with `_` separators, quoted strings, []), as that value. */
function stated(text: string): unknown {
  if (/^-?[\d_.]+$/.test(text)) return Number(text.replaceAll('_', ''));
  if (/^'.*'$/.test(text)) return text.slice(1, -1);
  if (text === '[]') return [];
  if (text === 'false') return false;
  if (text === 'null') return null;
  return text;
}

test('every option of ServerConfig shows its @default, and it is the default the server uses', (t) => {
  const found = tsdocDefaults('src/config/load.ts', 'ServerConfig');
  for (const [prop, value] of Object.entries(DEFAULTS)) {
    t.true(found.has(prop), `ServerConfig.${prop} has no @default`);
    t.deepEqual(stated(found.get(prop) ?? ''), value, `ServerConfig.${prop}`);
  }
});

test('every option of ConnectOptions and ReconnectOptions shows its @default, and it is the one the client uses', (t) => {
  const found = tsdocDefaults('src/client-options.ts', 'ConnectOptions');
  for (const field of [
    'tls',
    'saltedPasswordCache',
    'reconnect',
    'localAddress',
    'logger',
    'transport',
    'heartbeatInterval',
  ])
    t.true(found.has(field), `ConnectOptions.${field} has no @default`);
  for (const [prop, value] of Object.entries(CLIENT_DEFAULTS)) {
    t.true(found.has(prop), `ConnectOptions.${prop} has no @default`);
    t.deepEqual(stated(found.get(prop) ?? ''), value, `ConnectOptions.${prop}`);
  }
  const reconnect = tsdocDefaults('src/client-options.ts', 'ReconnectOptions');
  for (const [prop, value] of Object.entries(RECONNECT_DEFAULTS))
    t.deepEqual(stated(reconnect.get(prop) ?? ''), value, prop);
});
