import { pbkdf2Sync } from 'node:crypto';
import test from 'ava';
import * as scram from '../src/auth/scram.js';
import { ChanError } from '../src/errors.js';

// RFC 7677, section 3: user "user", password "pencil".
const CLIENT_FIRST_BARE = 'n=user,r=rOprNGfwEbeRWgbNEkqO';
const SERVER_FIRST = 'r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096';
const CLIENT_FINAL =
  'c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=';
const SERVER_FINAL = 'v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=';

test('computes the RFC 7677 test vector', async (t) => {
  const sf = scram.parseServerFirst(SERVER_FIRST);
  t.truthy(sf);
  const salted = await scram.saltedPassword('pencil', sf!.salt, sf!.iterations);
  const withoutProof = scram.clientFinalWithoutProof(sf!.nonce);
  const auth = scram.authMessage(CLIENT_FIRST_BARE, SERVER_FIRST, withoutProof);
  t.is(`${withoutProof},p=${scram.clientProof(salted, auth).toString('base64')}`, CLIENT_FINAL);
  const v = scram.verifierFromSalted(salted, sf!.salt, sf!.iterations);
  t.is(`v=${scram.serverSignature(v.serverKey, auth).toString('base64')}`, SERVER_FINAL);
  t.true(scram.verifyServerFinal(salted, auth, SERVER_FINAL));
  const final = scram.parseClientFinal(CLIENT_FINAL);
  t.true(scram.verifyClientProof(v, auth, final!.proof));
});

test('rejects a proof made with another password', async (t) => {
  const sf = scram.parseServerFirst(SERVER_FIRST)!;
  const v = scram.verifierFromSalted(await scram.saltedPassword('pencil', sf.salt, 4096), sf.salt, 4096);
  const wrong = await scram.saltedPassword('pencils', sf.salt, 4096);
  const auth = scram.authMessage(CLIENT_FIRST_BARE, SERVER_FIRST, scram.clientFinalWithoutProof(sf.nonce));
  t.false(scram.verifyClientProof(v, auth, scram.clientProof(wrong, auth)));
  t.false(scram.verifyServerFinal(wrong, auth, SERVER_FINAL));
});

test('parses and escapes SCRAM messages', (t) => {
  t.deepEqual(scram.parseClientFirst('n,,n=a=2Cb=3Dc,r=abc'), {
    user: 'a,b=c',
    nonce: 'abc',
    bare: 'n=a=2Cb=3Dc,r=abc',
  });
  t.is(scram.clientFirstBare('a,b=c', 'n'), 'n=a=2Cb=3Dc,r=n');
  t.is(scram.parseClientFirst('y,,n=u,r=abc'), null); // channel binding is not offered
  t.is(scram.parseClientFirst('n,,n=u,r=a,b'), null);
  t.is(scram.parseClientFirst(`n,,n=u,r=${'x'.repeat(scram.MAX_NONCE_LENGTH + 1)}`), null);
  t.is(scram.parseServerFirst('r=abc,s=!!,i=4096'), null);
  t.is(scram.parseClientFinal('c=biws,r=abc,p=short'), null);
});

test('never puts the secret in any message', async (t) => {
  const v = await scram.makeVerifier('ABXy45');
  const nonce = scram.newNonce();
  const first = scram.clientFirstBare('nameServer', nonce);
  const sf = scram.serverFirst(nonce + scram.newNonce(), v.salt, v.iterations);
  const salted = await scram.saltedPassword('ABXy45', v.salt, v.iterations);
  const wp = scram.clientFinalWithoutProof(scram.parseServerFirst(sf)!.nonce);
  const proof = scram.clientProof(salted, scram.authMessage(first, sf, wp)).toString('base64');
  for (const m of [first, sf, `${wp},p=${proof}`]) t.false(m.includes('ABXy45'));
});

test('secrets are prepared with SASLprep: a soft hyphen is mapped to nothing, a non-ASCII space to a space', async (t) => {
  t.is(scram.prepareSecret('I\u00ADX'), 'IX');
  t.is(scram.prepareSecret('a\u1680b'), 'a b');
  const salt = Buffer.from('saltsaltsaltsalt');
  t.deepEqual(await scram.saltedPassword('I\u00ADX', salt, 4096), await scram.saltedPassword('IX', salt, 4096));
});

test('where NFKC and SASLprep agree, the salted password is what it was under NFKC, so old verifiers still work', async (t) => {
  const salt = Buffer.from('0123456789abcdef');
  for (const secret of [
    'ABXy45',
    'correct horse battery staple',
    'caf\u00e9',
    'cafe\u0301',
    '\u2168',
    '\ufb01x',
    'a\u00a0b',
  ]) {
    const before = pbkdf2Sync(secret.normalize('NFKC'), salt, 4096, 32, 'sha256');
    t.deepEqual(await scram.saltedPassword(secret, salt, 4096), before, JSON.stringify(secret));
  }
});

test('a secret SASLprep refuses is a usage error that does not quote it', async (t) => {
  const refused: [string, RegExp][] = [
    ['bell\u0007', /prohibits/],
    ['tab\there', /prohibits/],
    ['private\ue000', /prohibits/],
    ['key\u{1f511}', /did not assign/],
    ['\u0627b', /right-to-left/],
    ['\u00ad\u200d', /empty/],
  ];
  for (const [secret, why] of refused) {
    t.regex(scram.secretProblem(secret) ?? '', why, JSON.stringify(secret));
    const err = t.throws(() => scram.prepareSecret(secret), { instanceOf: ChanError });
    t.is(err?.code, 'usage');
    t.false(err?.message.includes(secret));
    await t.throwsAsync(scram.makeVerifier(secret), { instanceOf: ChanError });
  }
  t.is(scram.secretProblem('ABXy45'), null);
  t.is(scram.secretProblem('I\u00adX'), null);
});

test('the salted-password cache is keyed by the prepared secret: two spellings of one secret share an entry', async (t) => {
  const cache = new scram.SaltedPasswordCache();
  const salt = Buffer.from('saltsaltsaltsalt');
  const first = await cache.get('I\u00ADX', salt, 4096);
  t.is(await cache.get('IX', salt, 4096), first);
  t.is(cache.size, 1);
  await t.throwsAsync(cache.get('bell\u0007', salt, 4096), { instanceOf: ChanError });
  t.is(cache.size, 1);
});
