import { X509Certificate } from 'node:crypto';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { run } from './cli-helpers.js';
import { tempDir } from './helpers.js';

test('chan certs writes a CA, a server certificate for the hosts and client certificates, keys 0600', async (t) => {
  const out = tempDir();
  const r = await run([
    'certs',
    '--out',
    out,
    '--hosts',
    'localhost,127.0.0.1,chan.example',
    '--days',
    '30',
    '--client',
    'ops',
    '--client',
    'dev',
  ]);
  t.is(r.status, 0, r.stderr);
  const ca = new X509Certificate(readFileSync(path.join(out, 'ca.pem')));
  const server = new X509Certificate(readFileSync(path.join(out, 'server.pem')));
  const ops = new X509Certificate(readFileSync(path.join(out, 'client-ops.pem')));
  t.true(ca.ca);
  t.true(server.verify(ca.publicKey));
  t.true(ops.verify(ca.publicKey));
  t.is(server.subjectAltName, 'DNS:localhost, IP Address:127.0.0.1, DNS:chan.example');
  t.regex(ops.subject, /CN=ops/);
  const days = (Date.parse(server.validTo) - Date.parse(server.validFrom)) / 86_400_000;
  t.true(Math.abs(days - 30) < 0.01);
  for (const key of ['ca-key.pem', 'server-key.pem', 'client-ops-key.pem', 'client-dev-key.pem']) {
    t.is(statSync(path.join(out, key)).mode & 0o777, 0o600, key);
  }
});

test('chan certs never overwrites without --force, and reuses the CA to add a client', async (t) => {
  const out = tempDir();
  t.is((await run(['certs', '--out', out])).status, 0);
  const caBefore = readFileSync(path.join(out, 'ca.pem'), 'utf8');
  const serverBefore = readFileSync(path.join(out, 'server.pem'), 'utf8');
  const again = await run(['certs', '--out', out, '--client', 'ops']);
  t.is(again.status, 0, again.stderr);
  t.regex(again.stdout, /kept {2}.*ca\.pem/);
  t.is(readFileSync(path.join(out, 'ca.pem'), 'utf8'), caBefore);
  t.is(readFileSync(path.join(out, 'server.pem'), 'utf8'), serverBefore);
  const ops = new X509Certificate(readFileSync(path.join(out, 'client-ops.pem')));
  t.true(ops.verify(new X509Certificate(caBefore).publicKey));
  const forced = await run(['certs', '--out', out, '--force']);
  t.is(forced.status, 0);
  t.not(readFileSync(path.join(out, 'ca.pem'), 'utf8'), caBefore);
});

test('chan certs refuses certificates left without their CA, and bad arguments', async (t) => {
  const out = tempDir({ 'server.pem': 'old' });
  const r = await run(['certs', '--out', out]);
  t.is(r.status, 2);
  t.regex(r.stderr, /server\.pem exists but .*ca\.pem does not; use --force/);
  t.is(readFileSync(path.join(out, 'server.pem'), 'utf8'), 'old');
  t.is((await run(['certs', '--out', out, '--days', '0'])).status, 2);
  t.is((await run(['certs', '--out', out, '--client', '../x'])).status, 2);
});

test("the TLS quick start: chan certs, chan serve conf/lib_chan.tls.conf's shape, chan rpc --tls --ca", async (t) => {
  const dir = tempDir();
  t.is((await run(['certs', '--out', path.join(dir, 'certs')])).status, 0);
  const conf = readFileSync('conf/lib_chan.tls.conf', 'utf8');
  writeFileSync(
    path.join(dir, 'conf.conf'),
    conf.replace('{port, 1234}', '{port, 0}').replaceAll('../certs/', 'certs/'),
  );
  const { serve } = await import('./cli-helpers.js');
  const { child, port } = await serve([path.join(dir, 'conf.conf')]);
  t.teardown(() => child.kill('SIGKILL'));
  const ca = path.join(dir, 'certs', 'ca.pem');
  t.is(
    (
      await run([
        'cast',
        '--tls',
        '--ca',
        ca,
        'localhost',
        String(port),
        'nameServer',
        'ABXy45',
        '{store, joe, "writing a book"}.',
      ])
    ).status,
    0,
  );
  const r = await run([
    'rpc',
    '--tls',
    '--ca',
    ca,
    'localhost',
    String(port),
    'nameServer',
    'ABXy45',
    '{lookup, joe}.',
  ]);
  t.is(r.stdout, '{ok,"writing a book"}\n', r.stderr);
  const plain = await run(['rpc', 'localhost', String(port), 'nameServer', 'ABXy45', '{lookup, joe}.']);
  t.is(plain.status, 1);
  t.regex(plain.stderr, /connect with TLS/);
});
