import test from 'ava';
import { connect } from '../src/client.js';
import { ChanError } from '../src/errors.js';
import { startServer } from '../src/server.js';
import { capturedLog, tempDir } from './helpers.js';

test('finds the handler as written or in camelCase, in .js or .mjs', async (t) => {
  const dir = tempDir({
    'mod_a.js': 'export async function startMeUp(mm) { mm.send("a"); await mm.receive(); }',
    'mod_b.mjs': 'export async function start_me_up(mm) { mm.send("b"); await mm.receive(); }',
  });
  const server = await startServer({
    port: 0,
    codePath: [dir],
    services: [
      { name: 'a', secret: null, module: 'mod_a', function: 'start_me_up' },
      { name: 'b', secret: null, module: 'mod_b', function: 'start_me_up' },
    ],
  });
  t.teardown(() => server.close());
  for (const name of ['a', 'b']) {
    const ch = await connect('127.0.0.1', server.port, name, null);
    t.is(await ch.receive(), name);
    await ch.close();
  }
});

test('refuses to start, naming every service that cannot run', async (t) => {
  const dir = tempDir({
    'mod_nofn.js': 'export const x = 1;',
    'mod_badstart.js': 'export function start() { throw new Error("no database"); }\nexport function go() {}',
  });
  const err = await t.throwsAsync(
    startServer({
      port: 0,
      codePath: [dir],
      services: [
        { name: 'missing', secret: null, module: 'mod_missing', function: 'f' },
        { name: 'nofn', secret: null, module: 'mod_nofn', function: 'start_me_up' },
        { name: 'badstart', secret: null, module: 'mod_badstart', function: 'go' },
        { name: 'traversal', secret: null, module: '../etc/passwd', function: 'f' },
      ],
    }),
    { instanceOf: ChanError },
  );
  t.is(err?.code, 'badConfig');
  const lines = err?.message
    .split('\n')
    .slice(1)
    .map((l) => l.trim());
  t.deepEqual(
    lines?.map((l) => l.replace(/\(.*\)/, '(...)')),
    [
      "service missing: module 'mod_missing' is not built in and there is no mod_missing.js in code_path (...)",
      "service nofn: module 'mod_nofn' (...) exports no function 'start_me_up' or 'startMeUp'",
      'service badstart: no database',
      "service traversal: module name '../etc/passwd' may hold only letters, digits, '_', '.' and '-'",
    ],
  );
});

test('a module that is missing or lacks its function is a config problem (no stack in the log); a start that throws is logged', async (t) => {
  const { logger, lines } = capturedLog();
  const dir = tempDir({
    'mod_broken.js': 'export function start() { throw new Error("no database"); }\nexport async function go() {}\n',
  });
  for (const isolation of ['inline', 'worker'] as const) {
    lines.length = 0;
    const err = await t.throwsAsync(
      startServer(
        {
          port: 0,
          host: '127.0.0.1',
          codePath: [dir],
          services: [
            { name: 'gone', secret: null, module: 'mod_gone', function: 'go', isolation },
            { name: 'nofn', secret: null, module: 'mod_broken', function: 'absent', isolation },
            { name: 'broken', secret: null, module: 'mod_broken', function: 'go', isolation },
          ],
        },
        { logger },
      ),
      { instanceOf: ChanError },
    );
    t.regex(err?.message ?? '', /service gone: module 'mod_gone' is not built in/, isolation);
    t.regex(err?.message ?? '', /service nofn: module 'mod_broken' \(.*\) exports no function 'absent'/, isolation);
    t.regex(err?.message ?? '', /service broken: no database/, isolation);
    const logged = lines
      .map((l) => JSON.parse(l) as { msg: string; service?: string })
      .filter((l) => l.msg === 'service failed to start');
    t.deepEqual(
      logged.map((l) => l.service),
      ['broken'],
      isolation,
    );
  }
});
