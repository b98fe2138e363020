import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { GfsError } from '../shared/errors.js';
import { defaultModeOf, devMajor, devMinor, typeLetter } from '../shared/file-types.js';
import type { ListEntry } from '../shared/wire.js';
import type { GfsClient } from './client.js';
import type { ToolDeps } from './cli-tools.js';

// POSIX metadata from the command line, for use without the mount: gfs chmod,
// gfs chown, gfs ln -s, and the long listing `gfs ls -l` prints (like
// `hdfs dfs -ls`: the link-count column holds a file's replication).

const S_ISUID = 0o4000;
const S_ISGID = 0o2000;
const S_ISVTX = 0o1000;

/** ls -l's mode string: type letter and rwx with s/S, t/T for set-id and sticky bits. */
export function modeString(type: ListEntry['type'], mode: number): string {
  const t = typeLetter[type];
  const triple = (shift: number, special: number, on: string, off: string) => {
    const r = mode & (4 << shift) ? 'r' : '-';
    const w = mode & (2 << shift) ? 'w' : '-';
    const xBit = (mode & (1 << shift)) !== 0;
    const x = mode & special ? (xBit ? on : off) : xBit ? 'x' : '-';
    return r + w + x;
  };
  return t + triple(6, S_ISUID, 's', 'S') + triple(3, S_ISGID, 's', 'S') + triple(0, S_ISVTX, 't', 'T');
}

/** chmod's octal MODE: up to four digits, with a leading 0 allowed (0755, 04755). */
const octalMode = /^0?[0-7]{1,4}$/;

/** Names of ids from this machine's /etc/passwd or /etc/group (numbers where unknown, as ls prints them). */
function idNames(file: string): Map<number, string> {
  const m = new Map<number, string>();
  try {
    for (const line of readFileSync(file, 'utf8').split('\n')) {
      const f = line.split(':');
      if (f.length >= 3 && /^\d+$/.test(f[2]!) && !m.has(Number(f[2]))) m.set(Number(f[2]), f[0]!);
    }
  } catch {
    // no such file: numbers it is
  }
  return m;
}

/** `gfs ls -l` lines: mode, replication (files), owner, group, size, mtime (UTC, ISO), name, and `-> target` for a link. */
export function longLines(entries: ListEntry[], nameOf: (e: ListEntry) => string): string[] {
  const users = idNames('/etc/passwd');
  const groups = idNames('/etc/group');
  const rows = entries.map((e) => [
    modeString(e.type, e.mode ?? defaultModeOf(e.type)),
    e.type === 'file' ? String(e.replication) : '-',
    users.get(e.uid ?? 0) ?? String(e.uid ?? 0),
    groups.get(e.gid ?? 0) ?? String(e.gid ?? 0),
    e.rdev !== undefined && (e.type === 'chardev' || e.type === 'blockdev') ? `${devMajor(e.rdev)}, ${devMinor(e.rdev)}` : String(e.sizeBytes),
    new Date(e.mtimeMs).toISOString(),
    nameOf(e) + (e.type === 'symlink' && e.target !== undefined ? ` -> ${e.target}` : ''),
  ]);
  const widths = [0, 1, 2, 3, 4].map((i) => Math.max(0, ...rows.map((r) => r[i]!.length)));
  return rows.map((r) => [r[0], r[1]!.padStart(widths[1]!), r[2]!.padEnd(widths[2]!), r[3]!.padEnd(widths[3]!), r[4]!.padStart(widths[4]!), r[5], r[6]].join(' '));
}

/**
 * A new mode from chmod's MODE argument: octal (755, 0755, 4755) or symbolic as coreutils takes it,
 * comma-separated clauses of [ugoa]*[+-=][rwxXst]* (X: execute for directories or where anyone may execute).
 */
export function parseMode(spec: string, current: number, isDir: boolean): number {
  if (octalMode.test(spec)) return parseInt(spec, 8);
  let mode = current & 0o7777;
  for (const clause of spec.split(',')) {
    const m = /^([ugoa]*)([-+=])([rwxXst]*)$/.exec(clause);
    if (!m) throw new GfsError('BAD_REQUEST', `invalid mode: ${JSON.stringify(spec)} (octal such as 0755, or symbolic such as u+x,go-w)`);
    const who = m[1] === '' || m[1]!.includes('a') ? 'ugo' : m[1]!;
    let bits = 0;
    for (const p of m[3]!) {
      for (const w of who) {
        const shift = w === 'u' ? 6 : w === 'g' ? 3 : 0;
        if (p === 'r') bits |= 4 << shift;
        if (p === 'w') bits |= 2 << shift;
        if (p === 'x' || (p === 'X' && (isDir || (mode & 0o111) !== 0))) bits |= 1 << shift;
        if (p === 's' && w === 'u') bits |= S_ISUID;
        if (p === 's' && w === 'g') bits |= S_ISGID;
      }
      if (p === 't') bits |= S_ISVTX;
    }
    const mask = [...who].reduce((acc, w) => acc | (w === 'u' ? 0o4700 : w === 'g' ? 0o2070 : 0o1007), 0);
    if (m[2] === '+') mode |= bits;
    else if (m[2] === '-') mode &= ~bits;
    else mode = (mode & ~mask) | bits;
  }
  return mode;
}

/** A uid or gid from a number or a name known to this machine's /etc/passwd or /etc/group. */
function parseId(s: string, file: string, what: string): number {
  if (/^\d+$/.test(s)) return Number(s);
  for (const [id, name] of idNames(file)) if (name === s) return id;
  throw new GfsError('BAD_REQUEST', `unknown ${what}: ${s}`);
}

/** chown's OWNER[:GROUP] (or :GROUP alone). */
export function parseOwner(spec: string): { uid?: number; gid?: number } {
  const [u, g] = spec.split(':', 2) as [string, string | undefined];
  if (u === '' && (g === undefined || g === '')) throw new GfsError('BAD_REQUEST', `invalid owner: ${JSON.stringify(spec)} (UID[:GID])`);
  return { ...(u !== '' ? { uid: parseId(u, '/etc/passwd', 'user') } : {}), ...(g !== undefined && g !== '' ? { gid: parseId(g, '/etc/group', 'group') } : {}) };
}

/** `gfs NAME <SPEC> <paths...>`: one client; `apply` reads the spec once and changes each path in turn. */
function specOverPaths(program: Command, d: ToolDeps, name: string, description: string, spec: string, apply: (c: GfsClient, spec: string) => (path: string) => Promise<void>): void {
  program
    .command(name)
    .description(description)
    .argument(`<${spec}>`)
    .argument('<paths...>')
    .action(d.run(async (s: string, paths: string[]) => {
      const each = apply(await d.client(), s);
      for (const path of paths) await each(path);
    }));
}

export function registerAttrCommands(program: Command, d: ToolDeps): void {
  specOverPaths(program, d, 'chmod', 'change permission bits: octal (0755) or symbolic (u+x,go-w)', 'mode', (c, spec) => async (path) => {
    const st = octalMode.test(spec) ? undefined : await c.stat(path);
    await c.chmod(path, parseMode(spec, st?.mode ?? 0, st?.type === 'dir'));
  });
  specOverPaths(program, d, 'chown', 'change owner and/or group: UID[:GID] or :GID (numbers, or names from this machine)', 'owner', (c, spec) => {
    const o = parseOwner(spec);
    return (path) => c.chown(path, o.uid, o.gid);
  });
  program
    .command('ln')
    .description('make DST another name of the file SRC (a hard link), or with -s a symbolic link at DST pointing to SRC (stored as written)')
    .option('-s, --symbolic', 'a symbolic link instead of a hard link')
    .argument('<src>')
    .argument('<dst>')
    .action(d.run(async (src: string, dst: string, o: { symbolic?: boolean }) => {
      const c = await d.client();
      if (o.symbolic) await c.symlink(src, dst);
      else await c.link(src, dst);
    }));
}
