import { hostname } from 'node:os';
import type { Logger } from './log.js';

// Bind address versus advertised address. A daemon binds HOST:PORT
// (`--host`, default 127.0.0.1) and tells others to reach it at its
// advertised URL (`--advertise`): the one other machines can use, which
// differs from the bind address behind NAT, in containers, or when binding
// a wildcard (0.0.0.0, ::), which is no address anyone can connect to.

const wildcards = new Set(['0.0.0.0', '::', '[::]', '']);

function hostPart(host: string): string {
  return host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
}

/** The URL to advertise: the flag's (validated), else SCHEME://HOST:PORT, with this machine's name for a wildcard HOST. */
export function advertisedUrl(host: string, port: number, advertise: string | undefined, log?: Logger, scheme: 'http' | 'https' = 'http'): string {
  if (advertise) return checkAdvertiseUrl(advertise);
  if (wildcards.has(host)) {
    const name = hostname();
    log?.warn({ bind: host, advertised: name }, `bound to the wildcard address ${host}: advertising ${scheme}://${name}:${port}; set --advertise if other machines reach this one by another name`);
    return `${scheme}://${hostPart(name)}:${port}`;
  }
  return `${scheme}://${hostPart(host)}:${port}`;
}

/** An http(s) URL with a host and nothing after the port; trailing slashes dropped. */
export function checkAdvertiseUrl(raw: string): string {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw new Error(`--advertise must be a URL such as http://host:7071, got ${raw}`);
  }
  if ((u.protocol !== 'http:' && u.protocol !== 'https:') || !u.hostname || (u.pathname !== '/' && u.pathname !== '') || u.search || u.hash)
    throw new Error(`--advertise must be a URL such as http://host:7071 (no path), got ${raw}`);
  return raw.replace(/\/+$/, '');
}
