/**
 * Generated sections of the docs: the lines between `<!-- NAME:begin -->` and `<!-- NAME:end -->` in a file are
 * replaced (npm run docs for the option and error tables, npm run bench -- --write for the benchmark table).
 */
import { readFileSync, writeFileSync } from 'node:fs';

export function replaceBetween(file: string, name: string, lines: readonly string[]): void {
  const text = readFileSync(file, 'utf8');
  const begin = `<!-- ${name}:begin -->`;
  const end = `<!-- ${name}:end -->`;
  const a = text.indexOf(begin);
  const b = text.indexOf(end);
  if (a < 0 || b < 0) throw new Error(`${file} has no ${begin} ... ${end}`);
  writeFileSync(file, `${text.slice(0, a + begin.length)}\n${lines.join('\n')}\n${text.slice(b)}`);
}
