/**
 * `chan connect` driven through a real pseudo-terminal (tmux), as a person would use it: line editing, Tab completion,
 * a term over two lines, a push arriving while a line is half typed, the history file, the server going away.
 */
import { execFile, execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import test from 'ava';
import type { Handler } from '../src/runtime.js';
import { isAtom } from '../src/term/index.js';
import { BOOK_SERVICE, service, testServer, tempDir } from './helpers.js';
import { CHAN } from './cli-helpers.js';

const hasTmux = (() => {
  try {
    execFileSync('tmux', ['-V'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

const tmux = (...args: string[]): Promise<string> =>
  new Promise((resolve, reject) => execFile('tmux', args, (err, stdout) => (err ? reject(err) : resolve(stdout))));

/** A session in its own tmux server (-L), so that tests running side by side do not meet. */
function terminal(name: string) {
  const sock = `chan-test-${process.pid}-${name}`;
  const t = (...args: string[]) => tmux('-L', sock, ...args);
  return {
    start: (command: string) => t('new-session', '-d', '-s', 's', '-x', '150', '-y', '40', command),
    keys: (...keys: string[]) => t('send-keys', '-t', 's', ...keys),
    screen: () => t('capture-pane', '-p', '-t', 's'),
    /** Polls the screen (a terminal gives no event) until `pattern` shows, for at most 10 s. */
    async waitFor(pattern: RegExp): Promise<string> {
      const until = Date.now() + 10_000;
      for (;;) {
        const s = await t('capture-pane', '-p', '-t', 's').catch(() => '');
        if (pattern.test(s)) return s;
        if (Date.now() > until) throw new Error(`the screen never showed ${pattern}:\n${s}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    kill: () => t('kill-server').catch(() => ''),
  };
}

const later: Handler = async (mm) => {
  for await (const m of mm) {
    if (m.type === 'chan_closed') return;
    mm.send('ok');
    if (isAtom(m.data, 'later')) setTimeout(() => mm.push('tick'), 300);
  }
};

if (!hasTmux) {
  console.log('repl tests skipped: tmux is not installed (apt-get install tmux)');
  test.skip('chan connect through a pseudo-terminal (tmux is not installed)', () => {});
} else {
  test('a session on a terminal: completion, a term over two lines, a push while typing, history', async (t) => {
    const server = await testServer([BOOK_SERVICE, service('later', later)]);
    t.teardown(() => server.close());
    const home = tempDir();
    const history = path.join(home, 'history');
    const term = terminal('a');
    t.teardown(() => term.kill());
    const cmd = `CHAN_HISTORY=${history} NO_COLOR=1 ${process.execPath} ${CHAN} connect 127.0.0.1 ${server.port} nameServer ABXy45; echo EXIT=$?; sleep 30`;
    await term.start(cmd);
    await term.waitFor(/nameServer> ?$/m);
    await term.keys('ca', 'Tab');
    await term.waitFor(/nameServer> cast ?$/m);
    await term.keys('{store, joe, "writing a book"}.', 'Enter');
    await term.keys('{lookup,', 'Enter');
    await term.waitFor(/\.\.> ?$/m);
    await term.keys(' joe}.', 'Enter');
    await term.waitFor(/^\{ok,"writing a book"\}$/m);
    await term.keys('quit', 'Enter');
    await term.waitFor(/EXIT=0/);
    const lines = readFileSync(history, 'utf8').split('\n');
    // A term typed over two lines is one entry of the history.
    t.deepEqual(lines.slice(0, 3), ['cast {store, joe, "writing a book"}.', '{lookup, joe}.', 'quit']);

    // The history is back in the next session (Up), and a push arrives while a line is half typed.
    const again = terminal('b');
    t.teardown(() => again.kill());
    await again.start(
      `CHAN_HISTORY=${history} NO_COLOR=1 ${process.execPath} ${CHAN} connect 127.0.0.1 ${server.port} later ''; echo EXIT=$?; sleep 30`,
    );
    await again.waitFor(/later> ?$/m);
    await again.keys('Up');
    await again.waitFor(/later> quit$/m);
    await again.keys('C-u', 'later.', 'Enter');
    await again.waitFor(/^"ok"$/m);
    await again.keys('"half typ');
    // Printed above the line being typed, which is kept (waiting for both: the screen may be caught between them).
    const screen = await again.waitFor(/^push "tick"\nlater> "half typ$/m);
    t.regex(screen, /push "tick"\nlater> "half typ$/m);
    await again.keys('ed".', 'Enter');
    await again.waitFor(/^"ok"\nlater> ?$/m);
    t.pass();
  });

  test('Ctrl-C clears the line or the term being continued, abandons a waiting rpc; Erlang habits; Ctrl-D leaves', async (t) => {
    // The rpc that is never answered has reached the server: the client has it waiting (Ctrl-C pressed before the
    // REPL has sent it would meet an empty line instead).
    let hanging: () => void = () => {};
    const arrived = new Promise<void>((resolve) => {
      hanging = resolve;
    });
    const hang: Handler = async (mm) => {
      for await (const m of mm) {
        if (m.type === 'chan_closed') return;
        // Each answered by its own reply: send would answer the oldest, the one left hanging.
        if (isAtom(m.data, 'hang')) hanging();
        else mm.reply(m, m.data);
      }
    };
    const server = await testServer([service('echo', hang)]);
    t.teardown(() => server.close());
    const term = terminal('d');
    t.teardown(() => term.kill());
    await term.start(
      `NO_COLOR=1 CHAN_HISTORY= ${process.execPath} ${CHAN} connect 127.0.0.1 ${server.port} echo ''; echo EXIT=$?; sleep 30`,
    );
    await term.waitFor(/echo> ?$/m);
    // Enter without a '.' continues the term, as in erl; a '.' alone on the next line ends it.
    await term.keys('{first, term}', 'Enter');
    await term.waitFor(/\.\.> ?$/m);
    await term.keys('.', 'Enter');
    await term.waitFor(/^\{first,term\}$/m);
    // Ctrl-C inside a term being continued: dropped, back to the prompt.
    await term.keys('{lookup,', 'Enter');
    await term.waitFor(/\.\.> ?$/m);
    await term.keys('C-c');
    await term.waitFor(/\^C\necho> ?$/m);
    // Ctrl-C on a half-typed line clears it.
    await term.keys('half typed');
    await term.waitFor(/echo> half typed$/m);
    await term.keys('C-c');
    await term.keys('cleared.', 'Enter');
    await term.waitFor(/^cleared$/m);
    // Two terms on one line: both sent, answered in order.
    await term.keys('one. {two, 2}.', 'Enter');
    await term.waitFor(/^one\n\{two,2\}\necho> ?$/m);
    // Ctrl-C while an rpc waits: abandoned, and the session carries on.
    await term.keys('hang.', 'Enter');
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        arrived,
        new Promise((_, reject) => {
          timer = setTimeout(() => {
            term.screen().then((screen) => reject(new Error(`the rpc never reached the server:\n${screen}`)), reject);
          }, 10_000);
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
    await term.keys('C-c');
    await term.waitFor(/the rpc was abandoned/);
    await term.keys('again.', 'Enter');
    await term.waitFor(/^again$/m);
    // Tab completes the atoms the session has seen.
    await term.keys('{fir', 'Tab');
    await term.waitFor(/echo> \{first$/m);
    await term.keys('}.', 'Enter');
    await term.waitFor(/^\{first\}$/m);
    // Ctrl-C on an empty line says how to leave; Ctrl-D leaves.
    await term.keys('C-c');
    await term.waitFor(/to leave: Ctrl-D on an empty line, or quit/);
    await term.keys('C-d');
    const screen = await term.waitFor(/EXIT=\d/);
    t.regex(screen, /EXIT=0/);
  });

  test('a session on a terminal says so and exits 1 when the server goes away', async (t) => {
    const server = await testServer([BOOK_SERVICE]);
    t.teardown(() => server.close());
    const term = terminal('c');
    t.teardown(() => term.kill());
    await term.start(
      `NO_COLOR=1 CHAN_HISTORY= ${process.execPath} ${CHAN} connect 127.0.0.1 ${server.port} nameServer ABXy45; echo EXIT=$?; sleep 30`,
    );
    await term.waitFor(/nameServer> ?$/m);
    await term.keys('{lookup, jim}.', 'Enter');
    await term.waitFor(/^undefined$/m);
    await server.close();
    const screen = await term.waitFor(/EXIT=\d/);
    t.regex(screen, /chan: shutdown: the server closed the connection: the server is shutting down/);
    t.regex(screen, /EXIT=1/);
  });
}
