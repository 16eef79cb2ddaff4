/** `chan certs` and `chan passwd`: making what a secured server needs. */
import {
  DEFAULT_ITERATIONS,
  MAX_ITERATIONS,
  MIN_ITERATIONS,
  formatVerifier,
  makeVerifier,
  secretProblem,
} from '../auth/scram.js';
import { EXIT_OK, readHidden, stdinLines, usageError } from './common.js';

export interface CertsArgs {
  out?: string;
  hosts?: string;
  days?: string;
  client?: string[];
  force?: boolean;
}

export async function certs(a: CertsArgs): Promise<number> {
  // node-forge is big: loaded only by the command that needs it, never by a server.
  const { writeCerts } = await import('../certs.js');
  const days = a.days === undefined ? 365 : Number(a.days);
  if (!Number.isInteger(days) || days < 1) throw usageError('--days must be a whole number of days, 1 or more');
  const hosts = (a.hosts ?? 'localhost,127.0.0.1')
    .split(',')
    .map((h) => h.trim())
    .filter((h) => h !== '');
  if (hosts.length === 0) throw usageError('--hosts needs at least one host name or address');
  const { written, kept } = writeCerts({
    out: a.out ?? 'certs',
    hosts,
    days,
    clients: a.client ?? [],
    force: a.force === true,
  });
  for (const f of written) process.stdout.write(`wrote ${f}\n`);
  for (const f of kept) process.stdout.write(`kept  ${f} (exists; --force replaces it)\n`);
  return EXIT_OK;
}

export async function passwd(iterationsArg: string | undefined): Promise<number> {
  const iterations = iterationsArg === undefined ? DEFAULT_ITERATIONS : Number(iterationsArg);
  if (!Number.isInteger(iterations) || iterations < MIN_ITERATIONS || iterations > MAX_ITERATIONS) {
    throw usageError(`--iterations must be a whole number from ${MIN_ITERATIONS} to ${MAX_ITERATIONS}`);
  }
  let secret: string;
  if (process.stdin.isTTY) {
    secret = await readHidden('secret: ');
    const again = await readHidden('again: ');
    if (again !== secret) throw usageError('the two secrets differ');
  } else {
    const next = await stdinLines().iterator.next();
    if (next.done) throw usageError('chan passwd reads the secret from standard input, and it was empty');
    secret = next.value;
  }
  if (secret === '') throw usageError('the secret is empty');
  const problem = secretProblem(secret);
  if (problem !== null) throw usageError(`the secret ${problem}`);
  process.stdout.write(`${formatVerifier(await makeVerifier(secret, iterations))}\n`);
  return EXIT_OK;
}
