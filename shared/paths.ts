import { GfsError } from './errors.js';

// Paths in the namespace are absolute, '/'-separated, with no empty, '.' or
// '..' segments, no NUL or control characters, and bounded lengths. Every
// path from the wire goes through normalizePath before it is used.

export const maxNameBytes = 255;
export const maxPathBytes = 4096;
/** Names starting with this prefix are reserved for the trash (lazy deletion). */
export const trashDir = '/.trash';

export function normalizePath(raw: unknown): string {
  if (typeof raw !== 'string') throw new GfsError('INVALID_PATH', 'path must be a string');
  if (raw.length === 0) throw new GfsError('INVALID_PATH', 'path is empty');
  if (!raw.startsWith('/')) throw new GfsError('INVALID_PATH', `path must be absolute: ${JSON.stringify(raw)}`);
  if (Buffer.byteLength(raw) > maxPathBytes) throw new GfsError('NAME_TOO_LONG', `path longer than ${maxPathBytes} bytes`);
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(raw)) throw new GfsError('INVALID_PATH', 'path contains a NUL or control character');
  if (raw === '/') return '/';
  const trimmed = raw.endsWith('/') ? raw.slice(0, -1) : raw;
  const segments = trimmed.slice(1).split('/');
  for (const s of segments) {
    if (s === '') throw new GfsError('INVALID_PATH', `path has an empty segment: ${JSON.stringify(raw)}`);
    if (s === '.' || s === '..') throw new GfsError('INVALID_PATH', `path may not contain '.' or '..': ${JSON.stringify(raw)}`);
    if (Buffer.byteLength(s) > maxNameBytes) throw new GfsError('NAME_TOO_LONG', `name longer than ${maxNameBytes} bytes`);
  }
  return trimmed;
}

export function parentOf(path: string): string {
  if (path === '/') return '/';
  const i = path.lastIndexOf('/');
  return i <= 0 ? '/' : path.slice(0, i);
}

export function baseName(path: string): string {
  return path === '/' ? '/' : path.slice(path.lastIndexOf('/') + 1);
}

/** Every proper ancestor of path, root first ('/a/b/c' -> ['/', '/a', '/a/b']). */
export function ancestorsOf(path: string): string[] {
  const out: string[] = [];
  if (path === '/') return out;
  let p = parentOf(path);
  for (;;) {
    out.push(p);
    if (p === '/') break;
    p = parentOf(p);
  }
  return out.reverse();
}

export function joinPath(dir: string, name: string): string {
  return dir === '/' ? `/${name}` : `${dir}/${name}`;
}

/** True when p is `root` itself or lies below it. */
export function isUnder(p: string, root: string): boolean {
  if (root === '/') return true;
  return p === root || p.startsWith(root + '/');
}
