/**
 * `import { connect } from 'lib-chan'` loads neither convict (server configs) nor node-forge (`chan certs`), nor
 * SASLprep's tables (non-ASCII secrets): each is loaded by the first call that needs it.
 */
import { execFile } from 'node:child_process';
import test from 'ava';

// convict, node-forge and @mongodb-js/saslprep are CommonJS: however they are reached (import or require), they land
// in require.cache, so its keys say what has been loaded so far.
const SCRIPT = `
import { createRequire } from 'node:module';
const cache = createRequire(import.meta.url).cache;
const loaded = () => {
  const files = Object.keys(cache);
  return ['convict', 'node-forge', '@mongodb-js/saslprep'].filter((p) => files.some((f) => f.includes('/node_modules/' + p + '/')));
};
const steps = {};
const { connect } = await import('lib-chan');
steps.importConnect = loaded();
const lib = await import('lib-chan');
await lib.makeVerifier('ABXy45');
steps.asciiSecret = loaded();
await lib.makeVerifier('I\\u00ADX');
steps.softHyphenSecret = loaded();
lib.parseConfig('{port, 1}.\\n{service, s, password, none, mfa, m, f, a}.', { env: {} });
steps.parseConfig = loaded();
lib.makeCertificate({ commonName: 'ca', kind: 'ca' });
steps.makeCertificate = loaded();
console.log(JSON.stringify({ connect: typeof connect, steps }));
`;

test("importing connect from 'lib-chan' loads neither convict nor node-forge; the calls that need them do", async (t) => {
  // Run from the package's folder, so that 'lib-chan' resolves through package.json's exports, as a user's would.
  const stdout = await new Promise<string>((resolve, reject) =>
    execFile(process.execPath, ['--input-type=module', '-e', SCRIPT], (err, out, stderr) =>
      err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(out),
    ),
  );
  const { connect, steps } = JSON.parse(stdout) as { connect: string; steps: Record<string, string[]> };
  t.is(connect, 'function');
  t.deepEqual(steps, {
    importConnect: [],
    asciiSecret: [],
    softHyphenSecret: ['@mongodb-js/saslprep'],
    parseConfig: ['convict', '@mongodb-js/saslprep'],
    makeCertificate: ['convict', 'node-forge', '@mongodb-js/saslprep'],
  });
});
