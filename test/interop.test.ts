import { execFile } from 'node:child_process';
import test from 'ava';
import { BOOK_SERVICE, testServer } from './helpers.js';

const python = await new Promise<boolean>((resolve) => execFile('python3', ['--version'], (err) => resolve(!err)));

if (python) {
  async function book(port: number, secret: string): Promise<{ err: Error | null; stdout: string; stderr: string }> {
    return new Promise((resolve) =>
      execFile(
        'python3',
        ['test/interop/kvs_client.py', '127.0.0.1', String(port), 'nameServer', secret],
        { env: { ...process.env, PYTHONUTF8: '1' } },
        (err, stdout, stderr) => resolve({ err, stdout, stderr }),
      ),
    );
  }

  test('a Python client written from docs/PROTOCOL.md alone completes the handshake and the book session, a whole float kept a float', async (t) => {
    const server = await testServer([BOOK_SERVICE]);
    t.teardown(() => server.close());
    const out = await book(server.port, 'ABXy45');
    t.is(out.err, null, out.stderr);
    t.is(out.stdout, "('ok', 'writing a book')\n'undefined'\n('ok', 1.0)\n'undefined'\n");
  });

  test("the Python client's SASLprep (its standard library's tables) and lib-chan's prepare a secret alike", async (t) => {
    // Server: a soft hyphen (mapped to nothing) and an ogham space mark (to a space); client: a no-break space.
    const server = await testServer([{ ...BOOK_SERVICE, secret: 'I\u00ADX\u1680y' }]);
    t.teardown(() => server.close());
    const out = await book(server.port, 'IX\u00A0y');
    t.is(out.err, null, out.stderr);
    t.is(out.stdout, "('ok', 'writing a book')\n'undefined'\n('ok', 1.0)\n'undefined'\n");
  });
} else {
  // Printed so that a run without Python says why the interop test did not run.
  console.log('interop test skipped: python3 is not installed');
  test.skip('a Python client written from docs/PROTOCOL.md alone completes the handshake and the book session (python3 not installed)', () => {});
}
