/**
 * A throwaway PKI for the mTLS tests, made by the real `openssl` CLI in a
 * temporary directory: the fleet CA, a server certificate for 127.0.0.1 and
 * localhost, client certificates for any CN, and an unrelated "foreign" CA
 * whose client certificates the broker must refuse. Keys are EC P-256 and
 * mode 0600 (the agent refuses a key readable by group or others).
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface KeyPair {
  /** PEM certificate file. */
  cert: string;
  /** PEM private key file, mode 0600. */
  key: string;
}

export interface ClientCertificate extends KeyPair {
  cn: string;
}

export interface TestPki {
  dir: string;
  /** The fleet CA certificate: the broker's cafile, the clients' CA. */
  ca: string;
  /** Signed by the fleet CA, for IP:127.0.0.1 and DNS:localhost. */
  server: KeyPair;
  /** A CA the broker does not know. */
  foreignCa: string;
  /** A client certificate with this CN from the fleet CA (made once per CN). */
  client(cn: string): ClientCertificate;
  /** A client certificate with this CN from the foreign CA (made once per CN). */
  foreignClient(cn: string): ClientCertificate;
  /** Removes the directory. Safe twice. */
  cleanup(): void;
}

/** Short on purpose: nothing here outlives a test run. */
const VALIDITY_DAYS = '2';

// Our own configuration, so the result does not depend on this machine's openssl.cnf.
const OPENSSL_CONFIG = `
[req]
distinguished_name = subject
prompt = no

[subject]

[ca_ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash

[server_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
authorityKeyIdentifier = keyid

[client_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
authorityKeyIdentifier = keyid
`;

function openssl(args: string[]): void {
  try {
    execFileSync('openssl', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    const failure = err as { stderr?: Buffer; message: string };
    throw new Error(`openssl ${args.join(' ')} failed: ${failure.stderr?.toString() ?? failure.message}`);
  }
}

/** A CN becomes a file name and an argument of -subj: keep it to characters that are safe in both. */
function checkCommonName(cn: string): void {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(cn)) {
    throw new Error(`test certificates take CNs of letters, digits, '.', '_' and '-': ${JSON.stringify(cn)}`);
  }
}

export function createTestPki(): TestPki {
  const dir = mkdtempSync(join(tmpdir(), 'dmx-pki-'));
  const config = join(dir, 'openssl.cnf');
  writeFileSync(config, OPENSSL_CONFIG);

  const newKey = (path: string): void => {
    openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', path]);
    chmodSync(path, 0o600);
  };

  const newCa = (name: string, cn: string): KeyPair => {
    const pair = { cert: join(dir, `${name}.crt`), key: join(dir, `${name}.key`) };
    newKey(pair.key);
    // -x509 -new: self-signed, with the CA extensions of our config and none of the system's defaults.
    openssl([
      'req',
      '-config',
      config,
      '-x509',
      '-new',
      '-key',
      pair.key,
      '-subj',
      `/CN=${cn}`,
      '-days',
      VALIDITY_DAYS,
      '-extensions',
      'ca_ext',
      '-out',
      pair.cert,
    ]);
    return pair;
  };

  const issue = (issuer: KeyPair, name: string, cn: string, extensions: 'server_ext' | 'client_ext'): KeyPair => {
    const pair = { cert: join(dir, `${name}.crt`), key: join(dir, `${name}.key`) };
    const request = join(dir, `${name}.csr`);
    newKey(pair.key);
    openssl(['req', '-config', config, '-new', '-key', pair.key, '-subj', `/CN=${cn}`, '-out', request]);
    openssl([
      'x509',
      '-req',
      '-in',
      request,
      '-CA',
      issuer.cert,
      '-CAkey',
      issuer.key,
      // A random serial: no serial file to keep, and no two certificates of one CA share one.
      '-set_serial',
      `0x${randomBytes(16).toString('hex')}`,
      '-days',
      VALIDITY_DAYS,
      '-extfile',
      config,
      '-extensions',
      extensions,
      '-out',
      pair.cert,
    ]);
    rmSync(request);
    return pair;
  };

  let removed = false;
  try {
    const ca = newCa('ca', 'dmx-test-fleet-ca');
    const foreignCa = newCa('foreign-ca', 'dmx-test-foreign-ca');
    const server = issue(ca, 'server', 'localhost', 'server_ext');
    const clients = new Map<string, ClientCertificate>();

    const clientFrom = (issuer: KeyPair, prefix: string, cn: string): ClientCertificate => {
      checkCommonName(cn);
      const name = `${prefix}${cn}`;
      let certificate = clients.get(name);
      if (certificate === undefined) {
        certificate = { cn, ...issue(issuer, name, cn, 'client_ext') };
        clients.set(name, certificate);
      }
      return certificate;
    };

    return {
      dir,
      ca: ca.cert,
      server,
      foreignCa: foreignCa.cert,
      client: (cn) => clientFrom(ca, 'client-', cn),
      foreignClient: (cn) => clientFrom(foreignCa, 'foreign-client-', cn),
      cleanup() {
        if (removed) return;
        removed = true;
        rmSync(dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}
