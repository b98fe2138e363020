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
 * Starts a daemon with an IPC channel besides its stdio: the daemon (shared/daemon.ts) stops when the
 * channel closes, which happens however its parent ends, SIGKILL included, so it never outlives its
 * parent as an orphan. The channel does not keep the parent's event loop alive.
 */
export function spawnDaemon(p: Exclude<Program, 'gfs'>, args: string[], o: { stdio: [Stdio, Stdio, Stdio]; env?: NodeJS.ProcessEnv }): ChildProcess {
  const proc = spawn(process.execPath, [programPath(p), ...args], { stdio: [...o.stdio, 'ipc'] as StdioOptions, env: o.env ?? process.env });
  proc.channel?.unref();
  return proc;
}
