/** Certificates for the TLS tests, made once per test file (RSA keys take a moment). */
import { makeCertificate, type KeyPair } from '../src/certs.js';
import type { TlsConfig } from '../src/config/load.js';

export interface Pki {
  ca: KeyPair;
  server: KeyPair;
  ops: KeyPair;
  dev: KeyPair;
  otherCa: KeyPair;
  otherCaClient: KeyPair;
  expiredServer: KeyPair;
}

let pki: Pki | undefined;

export function fixtures(): Pki {
  if (pki) return pki;
  const ca = makeCertificate({ commonName: 'test CA', kind: 'ca' });
  const otherCa = makeCertificate({ commonName: 'other CA', kind: 'ca' });
  pki = {
    ca,
    otherCa,
    server: makeCertificate({ commonName: 'localhost', kind: 'server', hosts: ['localhost', '127.0.0.1'], issuer: ca }),
    ops: makeCertificate({ commonName: 'ops', kind: 'client', issuer: ca }),
    dev: makeCertificate({ commonName: 'dev', kind: 'client', issuer: ca }),
    otherCaClient: makeCertificate({ commonName: 'ops', kind: 'client', issuer: otherCa }),
    expiredServer: makeCertificate({
      commonName: 'localhost',
      kind: 'server',
      hosts: ['localhost', '127.0.0.1'],
      issuer: ca,
      notBefore: new Date(Date.now() - 10 * 86_400_000),
      notAfter: new Date(Date.now() - 86_400_000),
    }),
  };
  return pki;
}

export function serverTls(verifyClient: TlsConfig['verifyClient'] = 'none', server = fixtures().server): TlsConfig {
  const p = fixtures();
  return {
    cert: server.certPem,
    key: server.keyPem,
    ca: p.ca.certPem,
    verifyClient,
    minVersion: 'TLSv1.3',
    files: { cert: 'server.pem', key: 'server-key.pem' },
  };
}
