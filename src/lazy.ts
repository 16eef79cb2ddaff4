/**
 * CommonJS packages loaded on first use instead of at import: `import { connect } from 'lib-chan'` must not pay for
 * what only a server's config (convict), `chan certs` (node-forge) or a non-ASCII secret (SASLprep's tables) needs.
 * `require` rather than `import()` keeps the functions that use them synchronous, so the public API stays as it was.
 */
import { createRequire } from 'node:module';

const requireHere = createRequire(import.meta.url);

/** A function that loads `name` the first time it is called and returns the same module ever after. */
export function lazyRequire<T extends object>(name: string): () => T {
  let loaded: T | undefined;
  return () => {
    loaded ??= requireHere(name) as T;
    return loaded;
  };
}
