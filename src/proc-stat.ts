/**
 * Linux's view of a process, read from /proc/PID/stat (chan bench's CPU figures, the LMDB directory's claim).
 */
import { readFileSync } from 'node:fs';

/**
 * The fields of /proc/`pid`/stat from the third (the state) on: index 0 is the state, 11 and 12 the user and system
 * time, 19 the start time. The process's name before them may hold spaces and parentheses; what follows its last ')'
 * does not. Throws as readFileSync does (ENOENT: no such process; any error where there is no /proc).
 */
export function procStatFields(pid: number): string[] {
  const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return text.slice(text.lastIndexOf(')') + 2).split(' ');
}
