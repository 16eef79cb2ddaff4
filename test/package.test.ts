/**
 * The package as a user gets it: `npm pack` (what it holds, its source maps pointing at files it ships), installed
 * from the tarball into a scratch project, where the README's client example runs against a server and `chan` is on
 * the path.
 */
import { execFile } from 'node:child_process';
import { copyFileSync, existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import test from 'ava';
import { BOOK_SERVICE, tempDir, testServer } from './helpers.js';

const run = promisify(execFile);

test.serial(
  'the packed package installs into a new project, where the README example runs and chan answers',
  async (t) => {
    t.timeout(240_000);
    const manifest = JSON.parse(readFileSync('package.json', 'utf8')) as { scripts: Record<string, string> };
    t.regex(manifest.scripts['prepack'] ?? '', /npm run build/, 'npm pack from a fresh clone builds first');
    // The build is there already (npm test made it): packed as it is, without running the build again.
    const out = tempDir();
    const { stdout } = await run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', out]);
    const [pack] = JSON.parse(stdout) as { filename: string; files: { path: string }[] }[];
    if (!pack) throw new Error('npm pack printed nothing');
    const files = new Set(pack.files.map((f) => f.path));
    for (const f of [
      'LICENSE',
      'README.md',
      'package.json',
      'dist/src/index.js',
      'dist/src/index.d.ts',
      'dist/src/cli.js',
    ])
      t.true(files.has(f), `${f} is in the package`);
    t.false([...files].some((f) => f.startsWith('dist/test/') || f.startsWith('test/') || f.startsWith('bench/')));
    // Every source map names sources that the package holds.
    for (const f of files) {
      if (!f.endsWith('.js.map')) continue;
      const map = JSON.parse(readFileSync(f, 'utf8')) as { sources: string[] };
      for (const s of map.sources) {
        const shipped = path.posix.normalize(path.posix.join(path.posix.dirname(f), s));
        t.true(files.has(shipped), `${f} points at ${shipped}, which is not in the package`);
      }
    }

    const project = tempDir({ 'package.json': JSON.stringify({ name: 'scratch', private: true, type: 'module' }) });
    await run(
      'npm',
      ['install', path.join(out, pack.filename), '--no-audit', '--no-fund', '--prefer-offline', '--no-package-lock'],
      { cwd: project },
    );
    copyFileSync('examples/kvs-session.mjs', path.join(project, 'session.mjs'));
    const server = await testServer([BOOK_SERVICE]);
    t.teardown(() => server.close());
    const session = await run(process.execPath, ['session.mjs'], {
      cwd: project,
      env: { ...process.env, CHAN_PORT: String(server.port) },
    });
    t.is(session.stdout, 'writing a book\nundefined\n');
    const chan = path.join(project, 'node_modules', '.bin', 'chan');
    t.true(existsSync(chan));
    // The example stored the string "joe" (kvsClient's keys are strings).
    const lookup = await run(chan, [
      'rpc',
      '127.0.0.1',
      String(server.port),
      'nameServer',
      'ABXy45',
      '{lookup, "joe"}',
    ]);
    t.is(lookup.stdout, '{ok,"writing a book"}\n');
    // The types are there for a TypeScript user.
    t.true(existsSync(path.join(project, 'node_modules', 'lib-chan', 'dist', 'src', 'index.d.ts')));
  },
);
