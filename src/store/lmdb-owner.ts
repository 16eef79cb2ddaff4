/**
 * One server per LMDB directory. Its processes open the directory in turn (lmdb-gate.ts), but a process of another
 * server cannot be made to wait, and its open while this one commits would lose the commit. So the first process to
 * open a directory claims it, in the file `lib-chan.owner` there (its pid), and an open by a process of any other
 * server is refused while the owner lives, with the reason. Allowed: the owner itself (its threads, and its stores
 * opened again), and a server process whose primary owns it and which takes turns with its siblings. A claim whose
 * process is gone (a `kill -9`, a crash) is taken over; the file is removed when its owner exits.
 */
import { mkdirSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { isMainThread } from 'node:worker_threads';
import { takesTurns } from './lmdb-gate.js';

/** The file in an LMDB directory that names the process owning it. */
export const OWNER_FILE = 'lib-chan.owner';

/** The directories this process claimed, to let go of at exit. */
const claimed = new Set<string>();

/**
 * Claims `dir` for this process before it opens it, or throws an Error saying which process holds it. Creates `dir`
 * when it does not exist. In a worker thread it does nothing: the thread shares its process's environment.
 */
export function claimDirectory(dir: string): void {
  if (!isMainThread) return;
  mkdirSync(dir, { recursive: true });
  const file = path.join(dir, OWNER_FILE);
  for (let attempt = 0; ; attempt++) {
    const owner = ownerOf(file);
    if (owner === process.pid || (owner === process.ppid && takesTurns())) return;
    if (owner !== undefined && alive(owner))
      throw new Error(
        `it is in use by process ${owner} (${file}): the processes of one chan serve share a directory (--processes N); another server needs a directory of its own, or a Redis store (if no process uses it, delete the file)`,
      );
    if (owner !== undefined) unlinkSync(file); // its process is gone: taken over
    try {
      writeFileSync(file, `${process.pid}\n`, { flag: 'wx' });
    } catch (err) {
      // Another process claimed it in between: read its claim again (once; a second race is not a start).
      if ((err as NodeJS.ErrnoException).code === 'EEXIST' && attempt === 0) continue;
      throw err;
    }
    if (claimed.size === 0) process.once('exit', letGo);
    claimed.add(file);
    return;
  }
}

/** The pid in the owner file, or undefined when there is none (no file, or not a pid). */
function ownerOf(file: string): number | undefined {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  const pid = Number(text.trim());
  return Number.isSafeInteger(pid) && pid > 0 ? pid : undefined;
}

/** Whether process `pid` exists (one of another user's counts: it cannot be signalled, and lives). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** At exit: removes the claims this process still holds. */
function letGo(): void {
  for (const file of claimed) {
    try {
      if (ownerOf(file) === process.pid) unlinkSync(file);
    } catch {
      // the directory is gone or unreadable: nothing to let go of
    }
  }
  claimed.clear();
}
