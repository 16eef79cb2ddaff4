/**
 * The server's handshake machine, driven by calling its step function with built messages: every refusal, every
 * malformed SCRAM message, throttling, and what travels in the accept. No socket, no timer.
 */
import test from 'ava';
import * as scram from '../src/auth/scram.js';
import { ServerHandshake, type FailureCount, type HandshakeOutcome, type ServiceAuth } from '../src/handshake.js';
import { PROTOCOL_VERSION, type WireMessage } from '../src/protocol.js';

const SECRET = 'ABXy45';
const verifier = await scram.makeVerifier(SECRET);

const SERVICES: Record<string, ServiceAuth> = {
  open: { name: 'open', verifier: null },
  guarded: { name: 'guarded', verifier },
  ops: { name: 'ops', verifier: null, allowCn: ['ops'] },
  down: {
    name: 'down',
    verifier: null,
    refusal: () => ({ reason: 'serviceDown', text: 'service down is down after repeated failures' }),
  },
};

/** A throttle that counts: `locked` makes every address locked out. */
function countingThrottle(locked = 0): FailureCount & { failures: number } {
  return {
    failures: 0,
    lockedFor: () => locked,
    fail(this: { failures: number }) {
      this.failures++;
      return this.failures >= 3;
    },
  };
}

function machine(o: { certCn?: string; throttle?: FailureCount } = {}): ServerHandshake {
  return new ServerHandshake({
    lookup: (name) => SERVICES[name],
    maxFrameSize: 1024 * 1024,
    heartbeatInterval: 15_000,
    peer: o.certCn === undefined ? { address: '192.0.2.1' } : { address: '192.0.2.1', certCn: o.certCn },
    ...(o.throttle ? { throttle: o.throttle } : {}),
  });
}

const start = (service: string, extra: Partial<Extract<WireMessage, { kind: 'startService' }>> = {}): WireMessage => ({
  kind: 'startService',
  version: PROTOCOL_VERSION,
  service,
  args: null,
  ...extra,
});

function closeOf(out: HandshakeOutcome): { reason: string; text: string } {
  if (out.kind !== 'close') throw new Error(`expected a close, got ${out.kind}`);
  return { reason: out.reason, text: out.text };
}

/** Runs the SCRAM exchange as a client would, up to the server's answer to `response`. */
function scramExchange(
  h: ServerHandshake,
  secret: string,
  tamper: (final: string) => string = (f) => f,
): Promise<HandshakeOutcome> {
  const nonce = scram.newNonce();
  const bare = scram.clientFirstBare('guarded', nonce);
  const challenge = h.step(start('guarded', { scram: scram.GS2_HEADER + bare }));
  if (challenge.kind !== 'send' || challenge.message.kind !== 'challenge') throw new Error('no challenge');
  const sf = scram.parseServerFirst(challenge.message.scram);
  if (!sf) throw new Error('bad server-first');
  return scram.saltedPassword(secret, sf.salt, sf.iterations).then((salted) => {
    const withoutProof = scram.clientFinalWithoutProof(sf.nonce);
    const auth = scram.authMessage(
      bare,
      challenge.message.kind === 'challenge' ? challenge.message.scram : '',
      withoutProof,
    );
    const final = `${withoutProof},p=${scram.clientProof(salted, auth).toString('base64')}`;
    return h.step({ kind: 'response', scram: tamper(final) });
  });
}

test('hello as the first message is answered, then the connection ends normally', (t) => {
  const out = machine().step({ kind: 'hello', version: PROTOCOL_VERSION });
  t.is(out.kind, 'close');
  if (out.kind !== 'close') return;
  t.is(out.reason, 'normal');
  t.like(out.answer, { kind: 'hello', version: PROTOCOL_VERSION });
});

test('hello after startService, or anything but startService first, is a protocolError', (t) => {
  const h = machine();
  t.is(h.step(start('guarded', { scram: `n,,n=guarded,r=${scram.newNonce()}` })).kind, 'send');
  t.is(closeOf(h.step({ kind: 'hello', version: 1 })).reason, 'protocolError');
  t.is(closeOf(machine().step({ kind: 'response', scram: 'c=biws,r=x,p=AAAA' })).reason, 'protocolError');
  t.is(closeOf(machine().step({ kind: 'cast', data: 1 })).reason, 'protocolError');
});

test('refusals at startService, each with its word, checked in order: version, service, down, certificate', (t) => {
  t.is(closeOf(machine().step(start('nosuch', { version: 2 }))).reason, 'badVersion');
  t.is(closeOf(machine().step(start('nosuch'))).reason, 'badService');
  t.is(closeOf(machine().step(start('down'))).reason, 'serviceDown');
  t.is(closeOf(machine().step(start('ops'))).reason, 'badCert');
  t.is(closeOf(machine({ certCn: 'dev' }).step(start('ops'))).reason, 'badCert');
  t.is(machine({ certCn: 'ops' }).step(start('ops')).kind, 'accept');
});

test('a service without a secret is accepted at once; the ack and the client frame limit travel in the outcome', (t) => {
  const out = machine().step(start('open', { maxFrameSize: 4096, args: 'hi' }));
  t.is(out.kind, 'accept');
  if (out.kind !== 'accept') return;
  t.is(out.service.name, 'open');
  t.is(out.args, 'hi');
  t.is(out.peerMaxFrameSize, 4096);
  t.deepEqual(out.ack, {
    kind: 'ack',
    version: PROTOCOL_VERSION,
    maxFrameSize: 1024 * 1024,
    heartbeatInterval: 15_000,
  });
});

test('the client frame limit is carried through the SCRAM exchange, and holds for a refusal too', async (t) => {
  const h = machine();
  const nonce = scram.newNonce();
  const out = h.step(start('guarded', { scram: `n,,n=guarded,r=${nonce}`, maxFrameSize: 512 }));
  t.is(out.peerMaxFrameSize, 512);
  t.is(h.step({ kind: 'response', scram: `c=biws,r=${nonce}x,p=AAAA` }).peerMaxFrameSize, 512);
  t.is(machine().step(start('nosuch', { maxFrameSize: 300 })).peerMaxFrameSize, 300);
});

test('no secret for a service that has one is authFail, and counts as a failure', (t) => {
  const throttle = countingThrottle();
  t.is(closeOf(machine({ throttle }).step(start('guarded'))).reason, 'authFail');
  t.is(throttle.failures, 1);
});

const BAD_CLIENT_FIRST: [string, string][] = [
  ['a channel-binding flag', `y,,n=guarded,r=${'a'.repeat(24)}`],
  ['channel binding asked for', `p=tls-unique,,n=guarded,r=${'a'.repeat(24)}`],
  ['an authorization identity', `n,a=admin,n=guarded,r=${'a'.repeat(24)}`],
  ['no nonce', 'n,,n=guarded'],
  ['no user', `n,,r=${'a'.repeat(24)}`],
  ['an empty nonce', 'n,,n=guarded,r='],
  ['a nonce with a comma-free but non-printable character', `n,,n=guarded,r=ab\u0001cd`],
  ['not SCRAM at all', 'hello'],
  ['a user that is not the service', `n,,n=other,r=${'a'.repeat(24)}`],
];

for (const [what, clientFirst] of BAD_CLIENT_FIRST) {
  test(`a client-first message with ${what} is a protocolError, not counted as a failed guess`, (t) => {
    const throttle = countingThrottle();
    t.is(closeOf(machine({ throttle }).step(start('guarded', { scram: clientFirst }))).reason, 'protocolError');
    t.is(throttle.failures, 0);
  });
}

const BASE64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';

const BAD_CLIENT_FINAL: [string, (final: string) => string][] = [
  ['another nonce', (f) => f.replace(/,r=([^,]*)/, ',r=$1x')],
  ['channel binding other than biws', (f) => f.replace('c=biws', 'c=eSws')],
  ['no proof', (f) => f.replace(/,p=.*$/, '')],
  ['a proof that is not base64', (f) => f.replace(/,p=.*$/, ',p=!!!')],
  ['a proof without its padding', (f) => f.replace(/=$/, '')],
  // The last character before '=' carries 4 bits of the proof and 2 unused ones: setting one spells the same bytes.
  [
    'a proof spelled with an unused bit set',
    (f) => f.replace(/(.)=$/, (_, c: string) => `${BASE64[BASE64.indexOf(c) ^ 1]}=`),
  ],
];

for (const [what, tamper] of BAD_CLIENT_FINAL) {
  test(`a client-final message with ${what} is a protocolError`, async (t) => {
    t.is(closeOf(await scramExchange(machine(), SECRET, tamper)).reason, 'protocolError');
  });
}

test('a right proof is accepted with the server signature; a wrong one is authFail, counted, and locks out at the limit', async (t) => {
  const ok = await scramExchange(machine(), SECRET);
  t.is(ok.kind, 'accept');
  if (ok.kind === 'accept') t.regex(String(ok.ack.kind === 'ack' ? ok.ack.scram : ''), /^v=/);

  const throttle = countingThrottle();
  for (let i = 1; i <= 3; i++) {
    const out = await scramExchange(machine({ throttle }), 'wrong');
    t.is(out.kind, 'close');
    if (out.kind === 'close') {
      t.is(out.reason, 'authFail');
      t.is(out.lockedOut, i === 3);
    }
  }
  t.is(throttle.failures, 3);
});

test('a locked-out address is refused with authThrottled at startService and at response, and is not counted again', (t) => {
  const locked = countingThrottle(30_000);
  const refused = closeOf(machine({ throttle: locked }).step(start('guarded', { scram: 'n,,n=guarded,r=abc' })));
  t.is(refused.reason, 'authThrottled');
  t.regex(refused.text, /try again in 30 s/);

  // Locked between the two steps (by other connections' failures): the response is refused too.
  let lockedNow = 0;
  const h = machine({ throttle: { lockedFor: () => lockedNow, fail: () => false } });
  const nonce = scram.newNonce();
  t.is(h.step(start('guarded', { scram: `n,,n=guarded,r=${nonce}` })).kind, 'send');
  lockedNow = 5000;
  t.is(closeOf(h.step({ kind: 'response', scram: `c=biws,r=${nonce}x,p=AAAA` })).reason, 'authThrottled');
  t.is(locked.failures, 0);
});

test('after its end, the machine refuses anything more', (t) => {
  const h = machine();
  t.is(h.step(start('open')).kind, 'accept');
  t.is(closeOf(h.step(start('open'))).reason, 'protocolError');
});
