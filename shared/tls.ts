import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

// Optional TLS on every listener and every outbound call.
//
// Listeners. GFS_TLS_CERT and GFS_TLS_KEY (PEM files; the CLI's --tls-cert and
// --tls-key set them) make a daemon serve HTTPS only, TLS 1.2 or newer, and
// name itself https://HOST:PORT. Both or neither: one without the other is a
// start-up error, never a silent fall-back to plain HTTP.
//
// Outbound calls (shared/rpc.ts: clients, chunkserver to master, master to
// chunkserver, push chains). An https:// URL is always verified: the peer's
// certificate must chain to a trusted CA and name the host or IP dialled.
// GFS_TLS_CA (--tls-ca) names the PEM bundle to trust instead of the system
// roots, as a private cluster CA needs. There is no switch to skip
// verification: an unverified TLS connection would only look safe.
//
// TLS gives confidentiality and authenticates servers to clients; request
// authentication (shared/auth.ts) still authenticates every caller.
//
// `makeLocalCertificates` makes a private CA and one certificate for a local
// cluster (`gfs cluster up --tls`, tests) with the openssl command line.

export const tlsEnv = { cert: 'GFS_TLS_CERT', key: 'GFS_TLS_KEY', ca: 'GFS_TLS_CA' } as const;

function readPem(envName: string): Buffer | undefined {
  const file = process.env[envName];
  if (file === undefined || file === '') return undefined;
  try {
    return readFileSync(file);
  } catch (e) {
    throw new Error(`${envName}: cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}

/** The certificate and key a listener serves, when TLS is configured (read at start-up). */
export function serverTlsOptions(): { cert: Buffer; key: Buffer } | undefined {
  const cert = readPem(tlsEnv.cert);
  const key = readPem(tlsEnv.key);
  if (!cert !== !key) throw new Error(`TLS needs both a certificate and a key (${tlsEnv.cert} / --tls-cert and ${tlsEnv.key} / --tls-key)`);
  return cert && key ? { cert, key } : undefined;
}

/** The scheme this process's listeners use. */
export function listenScheme(): 'http' | 'https' {
  return process.env[tlsEnv.cert] ? 'https' : 'http';
}

/** The CA bundle outbound calls trust instead of the system roots, if one is configured. */
export function trustedCa(): Buffer | undefined {
  return readPem(tlsEnv.ca);
}

export interface LocalCertificates {
  caFile: string;
  certFile: string;
  keyFile: string;
}

/**
 * A private CA and one certificate for `hosts` (IPs or DNS names) under `dir`, made once and kept:
 * every daemon of a local cluster serves the same certificate. Needs the openssl command.
 */
export function makeLocalCertificates(dir: string, hosts: string[] = ['127.0.0.1', 'localhost']): LocalCertificates {
  const out = { caFile: join(dir, 'ca.pem'), certFile: join(dir, 'cert.pem'), keyFile: join(dir, 'key.pem') };
  if (existsSync(out.caFile) && existsSync(out.certFile) && existsSync(out.keyFile)) return out;
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const san = hosts.map((h) => (/^[\d.]+$|:/.test(h) ? `IP:${h}` : `DNS:${h}`)).join(',');
  const ext = join(dir, 'ext.cnf');
  writeFileSync(ext, `subjectAltName=${san}\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n`);
  const caKey = join(dir, 'ca.key');
  const csr = join(dir, 'node.csr');
  const run = (args: string[]) => {
    try {
      execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
    } catch (e) {
      const err = e as NodeJS.ErrnoException & { stderr?: Buffer };
      if (err.code === 'ENOENT') throw new Error('making TLS certificates needs the openssl command (apt-get install openssl)');
      throw new Error(`openssl ${args[0]} failed: ${err.stderr?.toString().trim().split('\n')[0] ?? err.message}`);
    }
  };
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  run(['req', '-x509', ...ec, '-keyout', caKey, '-out', out.caFile, '-days', '3650', '-subj', '/CN=gfs local cluster CA']);
  run(['req', ...ec, '-keyout', out.keyFile, '-out', csr, '-subj', '/CN=gfs node']);
  run(['x509', '-req', '-in', csr, '-CA', out.caFile, '-CAkey', caKey, '-CAcreateserial', '-out', out.certFile, '-days', '825', '-extfile', ext]);
  return out;
}
