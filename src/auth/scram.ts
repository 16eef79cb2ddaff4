/**
 * SCRAM-SHA-256 (RFC 5802 with RFC 7677's hash), the proof behind lib-chan's challenge/response.
 *
 * lib_chan sent MD5(Challenge ++ Secret): one recorded session lets anyone test passwords offline at MD5 speed, and
 * the server must keep the plaintext. SCRAM keeps the same two round trips but the proof is salted and iterated
 * (PBKDF2), the server needs only a verifier (StoredKey, ServerKey), neither side ever sends the secret, and the server
 * proves in its `ack` that it holds the verifier too (mutual authentication).
 *
 * The service name is SCRAM's user name, so the messages are exactly RFC 5802's and any SCRAM library can produce
 * them. No channel binding (`n,,` / `c=biws`). Secrets are prepared with SASLprep (RFC 4013), as RFC 5802 says, so a
 * secret typed with an invisible soft hyphen proves the same as one without; printable ASCII is used as it is.
 */
import { createHash, createHmac, pbkdf2, randomBytes, timingSafeEqual } from 'node:crypto';
import type saslprepFunction from '@mongodb-js/saslprep';
import { ChanError } from '../errors.js';
import { lazyRequire } from '../lazy.js';

/** RFC 7677's default and minimum iteration count. */
export const DEFAULT_ITERATIONS = 4096;
export const MIN_ITERATIONS = 4096;
/** Clients refuse servers asking for more (it would be a way to make them burn CPU): so do verifiers. */
export const MAX_ITERATIONS = 1_000_000;
export const SALT_BYTES = 16;
export const NONCE_BYTES = 18;
/** Nonces longer than this are refused (they are echoed back and hashed). */
export const MAX_NONCE_LENGTH = 256;
/**
 * The longest salt accepted, bytes: from a server's challenge (a client keeps it in its salted-password cache's key)
 * and in a verifier. lib-chan makes 16-byte salts; PostgreSQL's are 16 too.
 */
export const MAX_SALT_BYTES = 1024;
const KEY_BYTES = 32;

/** What a server must hold to check a client's proof and to prove itself; never the secret. */
export interface ScramVerifier {
  salt: Buffer;
  iterations: number;
  storedKey: Buffer;
  serverKey: Buffer;
}

export function hmac(key: Buffer, text: string): Buffer {
  return createHmac('sha256', key).update(text, 'utf8').digest();
}

export function sha256(data: Buffer): Buffer {
  return createHash('sha256').update(data).digest();
}

/** SASLprep leaves printable ASCII as it is: nothing in it is mapped, decomposed, prohibited, bidirectional or new. */
const PRINTABLE_ASCII = /^[\x20-\x7e]*$/;

/** Loaded by the first secret that needs it (its Unicode tables take tens of ms to build): ASCII secrets never do. */
const saslprep = lazyRequire<typeof saslprepFunction>('@mongodb-js/saslprep');

/** The library's refusals, by the RFC section its message cites, in words that do not quote the secret. */
const REFUSALS: [RegExp, string][] = [
  [
    /#section-2\.3/,
    'holds a character that SASLprep (RFC 4013) prohibits: a control character (tab and newline included), a private-use or non-character code point, a lone surrogate, or another of its section 2.3',
  ],
  [
    /#section-2\.5/,
    'holds a character that Unicode 3.2 did not assign, which SASLprep (RFC 4013) refuses in a password (emoji are among them)',
  ],
  [
    /rfc3454#section-6/,
    'mixes right-to-left and left-to-right letters, or does not begin and end with its right-to-left ones, which SASLprep (RFC 4013) refuses',
  ],
];

const EMPTIED = 'is empty once SASLprep (RFC 4013) has removed its invisible characters';

type Prepared = { prepared: string } | { problem: string };

function prepare(secret: string): Prepared {
  if (PRINTABLE_ASCII.test(secret)) return { prepared: secret };
  let prepared: string;
  try {
    prepared = saslprep()(secret);
  } catch (err) {
    // Matched, never passed on: a message a later version of the library adds might quote the secret.
    const text = err instanceof Error ? err.message : '';
    const known = REFUSALS.find(([pattern]) => pattern.test(text))?.[1];
    // A secret of invisible characters only maps to nothing, and the library then fails reading its first character.
    return { problem: known ?? (err instanceof TypeError ? EMPTIED : 'is one that SASLprep (RFC 4013) refuses') };
  }
  return prepared === '' && secret !== '' ? { problem: EMPTIED } : { prepared };
}

/**
 * Why SCRAM cannot use `secret` (RFC 5802 prepares every password with SASLprep, RFC 4013, as a stored string), as a
 * phrase to follow "the secret", or null when it can. The phrase never quotes the secret.
 */
export function secretProblem(secret: string): string | null {
  const p = prepare(secret);
  return 'problem' in p ? p.problem : null;
}

/**
 * The secret as SCRAM hashes it: SASLprep (RFC 4013) of it. A secret SASLprep refuses is a ChanError `usage`: no
 * server could ever accept it, so it is the caller's mistake, found before anything is sent.
 */
export function prepareSecret(secret: string): string {
  const p = prepare(secret);
  if ('problem' in p) throw new ChanError('usage', `the secret ${p.problem}`);
  return p.prepared;
}

function pbkdf2Prepared(prepared: string, salt: Buffer, iterations: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    pbkdf2(prepared, salt, iterations, KEY_BYTES, 'sha256', (err, key) => (err ? reject(err) : resolve(key)));
  });
}

/** PBKDF2-HMAC-SHA-256 of the prepared secret: the slow step, run off the event loop. */
export async function saltedPassword(secret: string, salt: Buffer, iterations: number): Promise<Buffer> {
  return pbkdf2Prepared(prepareSecret(secret), salt, iterations);
}

export function clientKey(salted: Buffer): Buffer {
  return hmac(salted, 'Client Key');
}

export function serverKey(salted: Buffer): Buffer {
  return hmac(salted, 'Server Key');
}

export function verifierFromSalted(salted: Buffer, salt: Buffer, iterations: number): ScramVerifier {
  return { salt, iterations, storedKey: sha256(clientKey(salted)), serverKey: serverKey(salted) };
}

/** Builds a verifier from a plaintext secret with a fresh random salt. */
export async function makeVerifier(secret: string, iterations = DEFAULT_ITERATIONS): Promise<ScramVerifier> {
  const salt = randomBytes(SALT_BYTES);
  return verifierFromSalted(await saltedPassword(secret, salt, iterations), salt, iterations);
}

export function newNonce(): string {
  return randomBytes(NONCE_BYTES).toString('base64');
}

/** RFC 5802 saslname: `=` and `,` are escaped. */
export function saslName(name: string): string {
  return name.replaceAll('=', '=3D').replaceAll(',', '=2C');
}

function unSaslName(s: string): string | null {
  if (/=(?!2C|3D)/.test(s)) return null;
  return s.replaceAll('=2C', ',').replaceAll('=3D', '=');
}

const NONCE = /^[\x21-\x2b\x2d-\x7e]+$/; // printable ASCII except ','

export function isValidNonce(nonce: string): boolean {
  return nonce.length > 0 && nonce.length <= MAX_NONCE_LENGTH && NONCE.test(nonce);
}

/** `n=<user>,r=<nonce>`: the client-first message without its GS2 header. */
export function clientFirstBare(user: string, nonce: string): string {
  return `n=${saslName(user)},r=${nonce}`;
}

export const GS2_HEADER = 'n,,';
/** base64 of the GS2 header, as `c=` carries it. */
export const CHANNEL_BINDING = Buffer.from(GS2_HEADER).toString('base64');

/** Parses the full client-first message. */
export function parseClientFirst(msg: string): { user: string; nonce: string; bare: string } | null {
  if (!msg.startsWith(GS2_HEADER)) return null;
  const bare = msg.slice(GS2_HEADER.length);
  const m = /^n=([^,]*),r=([^,]*)(,[a-zA-Z]=[^,]*)*$/.exec(bare);
  if (!m) return null;
  const user = unSaslName(m[1] as string);
  const nonce = m[2] as string;
  if (user === null || !isValidNonce(nonce)) return null;
  return { user, nonce, bare };
}

export function serverFirst(nonce: string, salt: Buffer, iterations: number): string {
  return `r=${nonce},s=${salt.toString('base64')},i=${iterations}`;
}

export function parseServerFirst(msg: string): { nonce: string; salt: Buffer; iterations: number } | null {
  const m = /^r=([^,]+),s=([A-Za-z0-9+/]+={0,2}),i=([1-9][0-9]{0,9})(,[a-zA-Z]=[^,]*)*$/.exec(msg);
  if (!m) return null;
  const nonce = m[1] as string;
  // The combined nonce: the client's (at most MAX_NONCE_LENGTH) and the server's part (as long again, at most).
  if (nonce.length > 2 * MAX_NONCE_LENGTH || !NONCE.test(nonce)) return null;
  const salt = Buffer.from(m[2] as string, 'base64');
  if (salt.length > MAX_SALT_BYTES) return null;
  return { nonce, salt, iterations: Number(m[3]) };
}

export function clientFinalWithoutProof(nonce: string): string {
  return `c=${CHANNEL_BINDING},r=${nonce}`;
}

export function parseClientFinal(msg: string): { withoutProof: string; nonce: string; proof: Buffer } | null {
  const m = /^(c=([^,]*),r=([^,]+)(?:,[a-oq-zA-Z]=[^,]*)*),p=([A-Za-z0-9+/]+={0,2})$/.exec(msg);
  if (!m || m[2] !== CHANNEL_BINDING) return null;
  const proof = Buffer.from(m[4] as string, 'base64');
  // Standard base64 with its padding, in its one canonical spelling: 44 characters for the 32 bytes.
  if (proof.length !== KEY_BYTES || proof.toString('base64') !== m[4]) return null;
  return { withoutProof: m[1] as string, nonce: m[3] as string, proof };
}

export function authMessage(clientFirstBareMsg: string, serverFirstMsg: string, clientFinalNoProof: string): string {
  return `${clientFirstBareMsg},${serverFirstMsg},${clientFinalNoProof}`;
}

function xor(a: Buffer, b: Buffer): Buffer {
  const out = Buffer.allocUnsafe(a.length);
  for (let i = 0; i < a.length; i++) out[i] = (a[i] as number) ^ (b[i] as number);
  return out;
}

/** ClientProof = ClientKey XOR HMAC(StoredKey, AuthMessage). */
export function clientProof(salted: Buffer, auth: string): Buffer {
  const key = clientKey(salted);
  return xor(key, hmac(sha256(key), auth));
}

/** Checks a client's proof against the verifier in constant time. */
export function verifyClientProof(v: ScramVerifier, auth: string, proof: Buffer): boolean {
  if (proof.length !== KEY_BYTES) return false;
  const recoveredClientKey = xor(proof, hmac(v.storedKey, auth));
  return timingSafeEqual(sha256(recoveredClientKey), v.storedKey);
}

/** ServerSignature = HMAC(ServerKey, AuthMessage), sent as `v=...` in the ack. */
export function serverSignature(serverKey: Buffer, auth: string): Buffer {
  return hmac(serverKey, auth);
}

/** Checks the server's `v=...` in constant time. */
export function verifyServerFinal(salted: Buffer, auth: string, serverFinal: string): boolean {
  const m = /^v=([A-Za-z0-9+/]+={0,2})$/.exec(serverFinal);
  if (!m) return false;
  const got = Buffer.from(m[1] as string, 'base64');
  const want = serverSignature(serverKey(salted), auth);
  return got.length === want.length && timingSafeEqual(got, want);
}

/** PostgreSQL's verifier text: `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`, all base64. */
export function formatVerifier(v: ScramVerifier): string {
  return `SCRAM-SHA-256$${v.iterations}:${v.salt.toString('base64')}$${v.storedKey.toString('base64')}:${v.serverKey.toString('base64')}`;
}

/** Reads a verifier written by {@link formatVerifier} (or PostgreSQL); a message says what is wrong. */
export function parseVerifier(text: string): ScramVerifier | string {
  const m = /^SCRAM-SHA-256\$(\d+):([A-Za-z0-9+/]+={0,2})\$([A-Za-z0-9+/]+={0,2}):([A-Za-z0-9+/]+={0,2})$/.exec(text);
  if (!m) return 'a verifier is "SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>" (chan passwd prints one)';
  const iterations = Number(m[1]);
  if (iterations < MIN_ITERATIONS)
    return `the verifier's iteration count ${iterations} is below the minimum of ${MIN_ITERATIONS}`;
  if (iterations > MAX_ITERATIONS)
    return `the verifier's iteration count ${iterations} is over ${MAX_ITERATIONS}, which clients refuse`;
  const salt = Buffer.from(m[2] as string, 'base64');
  const storedKey = Buffer.from(m[3] as string, 'base64');
  const serverKey = Buffer.from(m[4] as string, 'base64');
  if (salt.length < 8) return "the verifier's salt is shorter than 8 bytes";
  if (salt.length > MAX_SALT_BYTES)
    return `the verifier's salt is longer than ${MAX_SALT_BYTES} bytes, which clients refuse`;
  if (storedKey.length !== KEY_BYTES || serverKey.length !== KEY_BYTES)
    return `the verifier's keys must be ${KEY_BYTES} bytes each`;
  return { salt, iterations, storedKey, serverKey };
}

/**
 * Remembers salted passwords per (secret, salt, iterations), so that reconnecting to the same server costs HMACs
 * instead of a PBKDF2 run. Bounded: the least recently used entry goes first. Keys hold a hash of the prepared secret
 * (two spellings SASLprep makes equal share one entry), never the secret; the values are secret-equivalent for that
 * salt and live in this process only.
 */
export class SaltedPasswordCache {
  private readonly entries = new Map<string, Buffer>();
  constructor(readonly maxEntries = 64) {}

  get = async (secret: string, salt: Buffer, iterations: number): Promise<Buffer> => {
    const prepared = prepareSecret(secret);
    const key = `${iterations}:${salt.toString('base64')}:${sha256(Buffer.from(prepared)).toString('base64')}`;
    const hit = this.entries.get(key);
    if (hit) {
      this.entries.delete(key);
      this.entries.set(key, hit);
      return hit;
    }
    const salted = await pbkdf2Prepared(prepared, salt, iterations);
    this.entries.set(key, salted);
    if (this.entries.size > this.maxEntries) this.entries.delete(this.entries.keys().next().value as string);
    return salted;
  };

  get size(): number {
    return this.entries.size;
  }
}
