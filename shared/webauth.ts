import { createHmac, timingSafeEqual } from 'node:crypto';
import type { NextFunction, Request, Response } from 'express';
import { clusterKey } from './auth.js';
import { GfsError } from './errors.js';

// Read-only web access: browsers and Prometheus cannot sign requests
// (shared/auth.ts), so the status page, its JSON and /metrics also accept a
// "web token" derived from the cluster secret:
//
//   token = base64url(HMAC-SHA256(cluster key, 'gfs web token v1'))
//
// Every node of a cluster derives the same token, and it reveals nothing
// about the secret (an HMAC output). It grants GET/HEAD on the daemon's web
// paths only (status page and its JSON on the master, /metrics on every
// daemon): never a mutation, never chunk data, never the /api endpoints
// clients use. It is accepted as
//   - `Authorization: Bearer TOKEN` (Prometheus: `authorization.credentials_file`),
//   - a cookie set by visiting a web path with `?token=TOKEN` once: the answer
//     sets an HttpOnly, SameSite=Strict cookie and redirects to the same URL
//     without the token, so it does not stay in the address bar.
// Without a cluster secret (authentication off) web paths are open like the rest.

export function webToken(): string | undefined {
  const key = clusterKey();
  return key ? createHmac('sha256', key).update('gfs web token v1').digest('base64url') : undefined;
}

/** One cookie per server port: two clusters on one host (different secrets) must not overwrite each other's. */
export function webCookieName(req: Request): string {
  return `gfs_web_${req.socket.localPort ?? 0}`;
}

function sameToken(given: string, want: string): boolean {
  const a = Buffer.from(given);
  const b = Buffer.from(want);
  return a.length === b.length && timingSafeEqual(a, b);
}

function cookieValue(req: Request, name: string): string | undefined {
  const header = req.headers.cookie;
  if (typeof header !== 'string' || header.length > 8192) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

/** Whether the request carries the web token (bearer header or cookie). */
export function hasWebToken(req: Request, token: string): boolean {
  const auth = req.headers.authorization;
  if (typeof auth === 'string' && auth.startsWith('Bearer ') && sameToken(auth.slice(7).trim(), token)) return true;
  const c = cookieValue(req, webCookieName(req));
  return c !== undefined && sameToken(c, token);
}

/**
 * Before authentication: `?token=` on a web path sets the cookie and redirects without it
 * (a wrong token is refused with 401). Only GET/HEAD and only on web paths.
 */
export function webTokenLogin(isWebPath: (path: string) => boolean) {
  return (req: Request, res: Response, next: NextFunction): void => {
    if ((req.method !== 'GET' && req.method !== 'HEAD') || !isWebPath(req.path)) return next();
    const q = req.originalUrl.indexOf('?');
    if (q < 0) return next();
    const params = new URLSearchParams(req.originalUrl.slice(q + 1));
    const given = params.get('token');
    if (given === null) return next();
    const token = webToken();
    if (token !== undefined && !sameToken(given, token)) return next(new GfsError('UNAUTHENTICATED', 'wrong web token (it is printed by `gfs cluster up` and `gfs web-token`)'));
    params.delete('token');
    const rest = params.toString();
    if (token !== undefined) res.setHeader('set-cookie', `${webCookieName(req)}=${token}; Path=/; HttpOnly; SameSite=Strict`);
    res.setHeader('cache-control', 'no-store');
    res.redirect(303, req.path + (rest ? `?${rest}` : ''));
  };
}
