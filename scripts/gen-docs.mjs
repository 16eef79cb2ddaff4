// Rewrites the generated tables of docs/OPTIONS.md and docs/ERRORS.md from the code (run after `npm run build`):
// npm run docs. test/docs.test.ts fails when they are out of date.
import { OPTIONS } from '../dist/src/config/options.js';
import { CLOSE_REASONS, ERROR_CODES } from '../dist/src/errors.js';
import { replaceBetween } from '../dist/scripts/markers.js';

function defaultCell(o) {
  if (o.default === null) return '(none)';
  if (Array.isArray(o.default)) return '`[]`';
  return typeof o.default === 'string' ? `\`"${o.default}"\`` : `\`${String(o.default)}\``;
}

replaceBetween('docs/OPTIONS.md', 'options', [
  '| option | variable | default | unit | what it does, and what happens at the limit |',
  '| --- | --- | --- | --- | --- |',
  ...OPTIONS.map((o) => `| \`${o.key}\` | \`${o.env}\` | ${defaultCell(o)} | ${o.unit} | ${o.doc} |`),
]);
replaceBetween('docs/ERRORS.md', 'errors', [
  '| code | close reason | cause, and the fix |',
  '| --- | --- | --- |',
  ...Object.entries(ERROR_CODES).map(([k, v]) => `| \`${k}\` | ${k in CLOSE_REASONS ? 'yes' : ''} | ${v} |`),
]);
