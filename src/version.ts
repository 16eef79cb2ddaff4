/** The package's version, read once from package.json (for `chan --version` and the server's hello). */
import { readFileSync } from 'node:fs';

export const VERSION: string = (
  JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }
).version;

/** How the server names itself in `hello`. */
export const SERVER_NAME = `lib-chan ${VERSION}`;
