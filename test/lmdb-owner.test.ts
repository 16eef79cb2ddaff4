/**
 * One server per LMDB directory (store/lmdb-owner.ts): the first process to open it claims it; another server's open
 * is refused while the owner lives; a claim whose process is gone, whose pid went to another process, or that cannot
 * be read, is taken over. (chan serve's refusal, in one line, is tested in test/durability.test.ts.)
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdirSync, readFileSync, utimesSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import path from 'node:path';
import test from 'ava';
import { openStore } from '../src/store/index.js';
import { claimDirectory, ownerFile } from '../src/store/lmdb-owner.js';
import { tempDir } from './helpers.js';

/** Another live process of this host (as another server would be), and its claim on `dir`. */
async function otherOwner(dir: string): Promise<{ pid: number; stop: () => Promise<void> }> {
  const child = spawn(
    process.execPath,
    [
      '-e',
      `import(${JSON.stringify(new URL('../src/store/lmdb-owner.js', import.meta.url).href)}).then((m) => { m.claimDirectory(process.argv[1]); console.log('claimed'); setInterval(() => {}, 1000); })`,
      dir,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  await once(child.stdout, 'data');
  return {
    pid: child.pid as number,
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = once(child, 'exit');
      child.kill('SIGKILL');
      await exited;
    },
  };
}

test('a directory claimed by a live process of another server is refused, naming it; once it is gone, taken over', async (t) => {
  const dir = tempDir();
  const other = await otherOwner(dir);
  t.teardown(() => other.stop());
  const err = t.throws(() => claimDirectory(dir));
  t.regex(String(err?.message), new RegExp(`^it is in use by process ${other.pid} \\(${dir}/lib-chan.owner\\)`));
  await other.stop(); // kill -9: its claim stays behind
  t.true(existsSync(path.join(dir, 'lib-chan.owner')));
  claimDirectory(dir);
  t.is(JSON.parse(readFileSync(path.join(dir, 'lib-chan.owner'), 'utf8')).pid, process.pid);
  claimDirectory(dir); // this process's own claim: let in again
});

test('a claim whose pid went to another process (its start differs), or that cannot be read, is taken over', async (t) => {
  const dir = tempDir();
  const other = await otherOwner(tempDir()); // a live process, the pid's new holder
  t.teardown(() => other.stop());
  const file = path.join(dir, 'lib-chan.owner');
  const stale = { pid: other.pid, start: '1', boot: null, host: hostname() };
  for (const text of [`${JSON.stringify(stale)}\n`, '', 'garbage\n']) {
    writeFileSync(file, text);
    claimDirectory(dir);
    t.is(JSON.parse(readFileSync(file, 'utf8')).pid, process.pid, JSON.stringify(text));
  }
});

test('a claim made on another host (a shared volume) cannot be checked, and refuses, naming the host', (t) => {
  const dir = tempDir();
  writeFileSync(
    path.join(dir, 'lib-chan.owner'),
    JSON.stringify({ pid: 4242, start: '1', boot: null, host: 'elsewhere' }),
  );
  t.throws(() => claimDirectory(dir), { message: /^it is in use by process 4242 on host elsewhere / });
});

test('a store that is one file (a path with an extension, as lmdb-js makes it) is claimed beside it', async (t) => {
  const file = path.join(tempDir(), 'names.mdb');
  t.is(ownerFile(file).file, `${file}-lib-chan.owner`);
  const store = await openStore(`lmdb:${file}`);
  const ns = await store.namespace('s');
  await ns.put('joe', 'writing a book', 10, Number.POSITIVE_INFINITY);
  await store.close();
  t.true(existsSync(`${file}-lib-chan.owner`));
  const again = await openStore(`lmdb:${file}`);
  t.is(await (await again.namespace('s')).get('joe'), 'writing a book');
  await again.close();
});

test('a takeover lock left by a crash (older than 10 s) is cleared; a live one makes an open wait 2 s, then refuse', (t) => {
  const dir = tempDir();
  const file = path.join(dir, 'lib-chan.owner');
  const lock = `${file}.lock`;
  const stale = JSON.stringify({ pid: 1, start: 'gone', boot: null, host: hostname() }); // pid 1 is another process now
  writeFileSync(file, stale);
  mkdirSync(lock);
  const eleven = (Date.now() - 11_000) / 1000;
  utimesSync(lock, eleven, eleven);
  claimDirectory(dir);
  t.is(JSON.parse(readFileSync(file, 'utf8')).pid, process.pid);
  t.false(existsSync(lock));

  const other = tempDir();
  writeFileSync(path.join(other, 'lib-chan.owner'), stale);
  mkdirSync(path.join(other, 'lib-chan.owner.lock')); // another process taking the stale claim over, now
  const started = Date.now();
  t.throws(() => claimDirectory(other), {
    message: /^its claim \(.*lib-chan\.owner\) is being taken over by another process$/,
  });
  t.true(Date.now() - started >= 2000, 'it waited for the takeover to end');
});
