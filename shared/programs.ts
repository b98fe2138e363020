import { spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import { fileURLToPath } from 'node:url';

// Where each program's entry point is, and how one program starts a daemon
// as its child. Each role has its own entry point in its own folder (the
// folders never import one another, so a program starts another one as a
// process): master/main.js (gfs-master), chunkserver/main.js
// (gfs-chunkserver), client/cli.js (gfs).

export type Program = 'master' | 'chunkserver' | 'gfs';

type Stdio = 'ignore' | 'inherit' | 'pipe' | number;

const entryPoints: Record<Program, string> = { master: '../master/main.js', chunkserver: '../chunkserver/main.js', gfs: '../client/cli.js' };

/** The compiled entry point of a program, in the same build as this file. */
export function programPath(p: Program): string {
  return fileURLToPath(new URL(entryPoints[p], import.meta.url));
}

/**
 * V8 flags each daemon is started with (on the node command line: NODE_OPTIONS does not take
 * --initial-old-space-size, nor does v8.setFlagsFromString once the heap exists). V8 otherwise starts
 * the old generation tiny and grows it by full mark-compacts: a chunkserver receiving a 512 MiB put
 * ran about 45 of them, 13-30% of its CPU. A larger first old space is only a GC threshold, not
 * memory taken up front; a larger semi-space makes the scavenges of per-request garbage rarer.
 * Bulk data lives outside the V8 heap (Buffers), so none of this grows with the data.
 */
export const daemonV8Flags: Record<Exclude<Program, 'gfs'>, readonly string[]> = {
  master: ['--initial-old-space-size=128', '--max-semi-space-size=16'],
  chunkserver: ['--initial-old-space-size=256', '--max-semi-space-size=32'],
};

/**
 * Starts a daemon with an IPC channel besides its stdio: the daemon (shared/daemon.ts) stops when the
 * channel closes, which happens however its parent ends, SIGKILL included, so it never outlives its
 * parent as an orphan. The channel does not keep the parent's event loop alive.
 */
export function spawnDaemon(p: Exclude<Program, 'gfs'>, args: string[], o: { stdio: [Stdio, Stdio, Stdio]; env?: NodeJS.ProcessEnv }): ChildProcess {
  const proc = spawn(process.execPath, [...daemonV8Flags[p], programPath(p), ...args], { stdio: [...o.stdio, 'ipc'] as StdioOptions, env: o.env ?? process.env });
  proc.channel?.unref();
  return proc;
}
