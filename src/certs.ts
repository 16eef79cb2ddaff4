/**
 * Certificates for TLS, made here: a CA, a server certificate whose subject alternative names are the given hosts,
 * and client certificates (for mutual TLS), all signed by the CA. Keys come from Node's crypto (RSA 2048); node-forge
 * builds and signs the X.509 structures. Private keys are written with mode 0600.
 */
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { isIP } from 'node:net';
import path from 'node:path';
import type forgeModule from 'node-forge';
import { ChanError } from './errors.js';
import { lazyRequire } from './lazy.js';

/** node-forge takes about 50 ms to load: only making a certificate loads it, never importing lib-chan. */
const loadForge = lazyRequire<typeof forgeModule>('node-forge');

export interface KeyPair {
  certPem: string;
  keyPem: string;
}

export interface CertSpec {
  commonName: string;
  /** The signer; absent for the self-signed CA. */
  issuer?: KeyPair;
  kind: 'ca' | 'server' | 'client';
  /** DNS names and IP addresses (server certificates). */
  hosts?: string[];
  days?: number;
  /** For tests: a validity window in the past makes an expired certificate. */
  notBefore?: Date;
  notAfter?: Date;
}

function newKeys(): { privatePem: string; publicPem: string } {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return {
    privatePem: privateKey.export({ type: 'pkcs1', format: 'pem' }).toString(),
    publicPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
  };
}

/** Makes one certificate and its private key. */
export function makeCertificate(spec: CertSpec): KeyPair {
  const forge = loadForge();
  const keys = newKeys();
  const cert = forge.pki.createCertificate();
  cert.publicKey = forge.pki.publicKeyFromPem(keys.publicPem);
  const serial = randomBytes(16);
  serial[0] = (serial[0] as number) & 0x7f; // a positive serial number
  cert.serialNumber = serial.toString('hex');
  const days = spec.days ?? 365;
  cert.validity.notBefore = spec.notBefore ?? new Date(Date.now() - 60_000);
  cert.validity.notAfter = spec.notAfter ?? new Date(cert.validity.notBefore.getTime() + days * 86_400_000);
  const subject = [
    { name: 'commonName', value: spec.commonName },
    { name: 'organizationName', value: 'lib-chan' },
  ];
  cert.setSubject(subject);
  let signingKey = forge.pki.privateKeyFromPem(keys.privatePem);
  if (spec.issuer) {
    const issuerCert = forge.pki.certificateFromPem(spec.issuer.certPem);
    cert.setIssuer(issuerCert.subject.attributes);
    signingKey = forge.pki.privateKeyFromPem(spec.issuer.keyPem);
  } else {
    cert.setIssuer(subject);
  }
  const extensions: object[] = [{ name: 'subjectKeyIdentifier' }];
  if (spec.kind === 'ca') {
    extensions.push(
      { name: 'basicConstraints', cA: true, critical: true },
      { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true },
    );
  } else {
    extensions.push(
      { name: 'basicConstraints', cA: false },
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
      { name: 'extKeyUsage', serverAuth: spec.kind === 'server', clientAuth: spec.kind === 'client' },
    );
  }
  if (spec.kind === 'server') {
    const altNames = (spec.hosts ?? []).map((h) => (isIP(h) ? { type: 7, ip: h } : { type: 2, value: h }));
    extensions.push({ name: 'subjectAltName', altNames });
  }
  cert.setExtensions(extensions);
  cert.sign(signingKey, forge.md.sha256.create());
  return { certPem: forge.pki.certificateToPem(cert), keyPem: keys.privatePem };
}

export interface WriteCertsOptions {
  out: string;
  hosts: string[];
  days: number;
  clients: string[];
  force: boolean;
}

/**
 * Writes `ca.pem`, `server.pem` and `client-NAME.pem` with their `*-key.pem` keys into `out`. An existing CA is
 * reused (so `--client NAME` later adds a client signed by it); any other existing file is kept unless `force`.
 * Returns what was written and what was kept.
 */
export function writeCerts(o: WriteCertsOptions): { written: string[]; kept: string[] } {
  mkdirSync(o.out, { recursive: true });
  const file = (name: string): string => path.join(o.out, name);
  const written: string[] = [];
  const kept: string[] = [];
  const save = (name: string, pair: KeyPair): void => {
    writeFileSync(file(`${name}.pem`), pair.certPem);
    writeFileSync(file(`${name}-key.pem`), pair.keyPem, { mode: 0o600 });
    chmodSync(file(`${name}-key.pem`), 0o600);
    written.push(file(`${name}.pem`), file(`${name}-key.pem`));
  };
  const exists = (name: string): boolean => existsSync(file(`${name}.pem`)) || existsSync(file(`${name}-key.pem`));

  for (const c of o.clients) {
    if (!/^[A-Za-z0-9_.@-]+$/.test(c))
      throw new ChanError('usage', `client name '${c}' may hold only letters, digits and _ . @ -`);
  }
  const names = ['server', ...o.clients.map((c) => `client-${c}`)];
  if (!o.force && !exists('ca')) {
    const orphan = names.find(exists);
    if (orphan)
      throw new ChanError(
        'usage',
        `${file(`${orphan}.pem`)} exists but ${file('ca.pem')} does not; use --force to make a new CA and certificates`,
      );
  }
  let ca: KeyPair;
  if (exists('ca') && !o.force) {
    try {
      ca = { certPem: readFileSync(file('ca.pem'), 'utf8'), keyPem: readFileSync(file('ca-key.pem'), 'utf8') };
    } catch (err) {
      throw new ChanError(
        'usage',
        `${file('ca.pem')} or its key cannot be read (${(err as Error).message}); use --force to make a new CA`,
      );
    }
    kept.push(file('ca.pem'));
  } else {
    ca = makeCertificate({ commonName: 'lib-chan CA', kind: 'ca', days: o.days });
    save('ca', ca);
  }
  const wanted: [string, CertSpec][] = [
    ['server', { commonName: o.hosts[0] ?? 'localhost', kind: 'server', hosts: o.hosts, days: o.days, issuer: ca }],
  ];
  for (const c of o.clients) wanted.push([`client-${c}`, { commonName: c, kind: 'client', days: o.days, issuer: ca }]);
  for (const [name, spec] of wanted) {
    if (exists(name) && !o.force) {
      kept.push(file(`${name}.pem`));
      continue;
    }
    save(name, makeCertificate(spec));
  }
  return { written, kept };
}
