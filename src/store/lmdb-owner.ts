/**
 * One server per LMDB directory. Its processes open the directory in turn (lmdb-gate.ts), but a process of another
 * server cannot be made to wait, and its open while this one commits would lose the commit. So the first process to
 * open a directory claims it, in the file `lib-chan.owner` there (`NAME-lib-chan.owner` beside a store that is one
 * file, `lmdb:names.mdb`, as lmdb-js makes a path with an extension), and an open by a process of any other server is
 * refused while the owner lives, with the reason. Let in: the owner's own threads and opens, and a server process
 * whose primary owns it and which takes turns with its siblings.
 *
 * A claim names its process by pid, start time (Linux: /proc/PID/stat), boot and host, so that a pid used again after
 * a reboot or a crash, or a zombie, is not taken for the owner. A claim whose process is gone is taken over (under a
 * lock, so that two servers starting at once do not both take it); one that cannot be read (a power loss between its
 * creation and its write) too, as a claim is made whole at once (written aside, then linked into place; on a file
 * system without hard links, created exclusively and then written, where two opens at once could both see it empty
 * and both take it: a narrow window left there). A claim made on another host (another container on a shared volume)
 * cannot be checked, and refuses. The owner removes the file when it exits; it holds the directory until then, even
 * after it closes the store.
 */
import { linkSync, mkdirSync, readFileSync, rmdirSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import path from 'node:path';
import { isMainThread } from 'node:worker_threads';
import { procStatFields } from '../proc-stat.js';
import { takesTurns } from './lmdb-gate.js';

/** The name of the claim's file in an LMDB directory. */
export const OWNER_FILE = 'lib-chan.owner';

/** How long a takeover's lock may stand before it is taken for one left by a crash, ms. */
const TAKEOVER_LOCK_STALE = 10_000;
/** How long an open waits for another process's takeover to end, ms. */
const TAKEOVER_WAIT = 2_000;

/** Who holds a claim. */
interface Claim {
  pid: number;
  /** The process's start, in clock ticks since boot (Linux), or null where it cannot be read. */
  start: string | null;
  /** The kernel's boot id (Linux), or null. */
  boot: string | null;
  host: string;
}

/** The claims this thread made, to let go of at exit. */
const claimed = new Set<string>();

/** The file that holds the claim of the store at `dir`, and the directory to make for it. */
export function ownerFile(dir: string): { file: string; folder: string } {
  // lmdb-js keeps a path with an extension as one file (noSubdir), and its lock file beside it.
  if (path.extname(dir) !== '') return { file: `${dir}-${OWNER_FILE}`, folder: path.dirname(dir) };
  return { file: path.join(dir, OWNER_FILE), folder: dir };
}

/**
 * Claims the store at `dir` for this process before it opens it, or throws an Error saying which process holds it.
 * Makes the directory it needs.
 */
export function claimDirectory(dir: string): void {
  const { file, folder } = ownerFile(dir);
  mkdirSync(folder, { recursive: true });
  const deadline = Date.now() + TAKEOVER_WAIT;
  for (;;) {
    const text = readClaim(file);
    const owner = text === null ? null : parseClaim(text);
    if (owner && (isProcess(owner, process.pid) || isParentTakingTurns(owner))) return;
    if (owner && alive(owner)) throw new Error(inUse(owner, file));
    if (text === null ? place(file) : takeOver(file, text)) {
      if (claimed.size === 0) process.once('exit', letGo);
      claimed.add(file);
      return;
    }
    // Another process placed its claim, or is taking a stale one over, in between: look again.
    if (Date.now() > deadline) throw new Error(`its claim (${file}) is being taken over by another process`);
    pause(20);
  }
}

function inUse(owner: Claim, file: string): string {
  const where = owner.host === hostname() ? '' : ` on host ${owner.host}`;
  return `it is in use by process ${owner.pid}${where} (${file}): the processes of one chan serve share a directory (--processes N); another server needs a directory of its own, or a Redis store (if no process uses it, delete the file)`;
}

/** A worker thread of a server process, or a server process of several whose primary owns the directory. */
function isParentTakingTurns(owner: Claim): boolean {
  return (takesTurns() || !isMainThread) && isProcess(owner, process.ppid);
}

/** Places this process's claim where there is none: false when another's is there first. */
function place(file: string): boolean {
  const text = `${JSON.stringify(claimOf(process.pid))}\n`;
  const aside = `${file}.${process.pid}.${Date.now()}`;
  writeFileSync(aside, text);
  try {
    linkSync(aside, file); // whole or not at all; fails when a claim is there
    return true;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') return false;
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'ENOSYS') throw err;
  } finally {
    unlinkSync(aside);
  }
  // A file system without hard links: created exclusively, and written (a crash in between leaves an empty claim,
  // which the next open takes over).
  try {
    writeFileSync(file, text, { flag: 'wx' });
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  }
}

/**
 * Takes over the claim `stale` (a process gone, or unreadable) under a lock: false when another process holds the
 * lock, or changed the claim meanwhile.
 */
function takeOver(file: string, stale: string): boolean {
  const lock = `${file}.lock`;
  try {
    mkdirSync(lock);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    if (Date.now() - mtime(lock) > TAKEOVER_LOCK_STALE) rmdirSync(lock); // left by a crash
    return false;
  }
  try {
    if (readClaim(file) !== stale) return false;
    unlinkSync(file);
    return place(file);
  } finally {
    rmdirSync(lock);
  }
}

function mtime(file: string): number {
  try {
    return statSync(file).mtimeMs;
  } catch {
    return Date.now();
  }
}

/** The claim's text, or null when there is no claim. */
function readClaim(file: string): string | null {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}

/** The claim in `text`, or null when it is not one (an empty or damaged file: taken over). */
function parseClaim(text: string): Claim | null {
  try {
    const c = JSON.parse(text) as Partial<Claim>;
    if (typeof c.pid !== 'number' || !Number.isSafeInteger(c.pid) || c.pid <= 0 || typeof c.host !== 'string')
      return null;
    return {
      pid: c.pid,
      start: typeof c.start === 'string' ? c.start : null,
      boot: typeof c.boot === 'string' ? c.boot : null,
      host: c.host,
    };
  } catch {
    return null;
  }
}

/** The claim process `pid` of this host would make. */
function claimOf(pid: number): Claim {
  return { pid, start: processStat(pid)?.start ?? null, boot: bootId(), host: hostname() };
}

/** Whether `owner` is process `pid` of this host (the same start, where it can be read). */
function isProcess(owner: Claim, pid: number): boolean {
  if (owner.pid !== pid || owner.host !== hostname()) return false;
  const now = claimOf(pid);
  return owner.start === now.start && owner.boot === now.boot;
}

/** Whether the owner's process lives: on another host, it cannot be told, and is taken to. */
function alive(owner: Claim): boolean {
  if (owner.host !== hostname()) return true;
  const boot = bootId();
  if (owner.boot !== null && boot !== null && owner.boot !== boot) return false; // the machine started again since
  const stat = processStat(owner.pid);
  if (stat === undefined) return signalable(owner.pid);
  if (stat === null || stat.zombie) return false;
  return owner.start === null || stat.start === owner.start; // else its pid went to another process
}

/**
 * Linux's view of process `pid`: its start and whether it is a zombie; null when there is no such process; undefined
 * where /proc cannot tell (another system).
 */
function processStat(pid: number): { start: string; zombie: boolean } | null | undefined {
  if (process.platform !== 'linux') return undefined;
  let fields: string[];
  try {
    fields = procStatFields(pid);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ENOENT' ? null : undefined;
  }
  const state = fields[0] ?? '';
  return { start: fields[19] ?? '', zombie: state === 'Z' || state === 'X' };
}

function bootId(): string | null {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  } catch {
    return null;
  }
}

/** Whether process `pid` exists, where /proc cannot say (one of another user's lives: it cannot be signalled). */
function signalable(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

const sleeper = new Int32Array(new SharedArrayBuffer(4));
function pause(ms: number): void {
  Atomics.wait(sleeper, 0, 0, ms);
}

/** At exit: removes the claims this thread made that are still its own. */
function letGo(): void {
  for (const file of claimed) {
    try {
      const text = readClaim(file);
      const owner = text === null ? null : parseClaim(text);
      if (owner && isProcess(owner, process.pid)) unlinkSync(file);
    } catch {
      // the directory is gone or unreadable: nothing to let go of
    }
  }
  claimed.clear();
}
