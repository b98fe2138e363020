import { constants } from 'node:os';
import { exitWhenFlushed, failAndExit } from '../shared/exit.js';
import { spawnDaemon } from '../shared/programs.js';

// `gfs master ...` and `gfs chunkserver ...` run the daemon's own program
// (gfs-master, gfs-chunkserver) as a child: the client never loads daemon
// code. The child takes this process's stdio and arguments and ends with it:
// SIGTERM, SIGINT and SIGHUP are passed on, this process exits with the
// child's code, and if this process is killed outright the child stops on
// its own (its IPC channel closes, shared/daemon.ts).

/** Runs the daemon until it exits, then exits with its code (128 + signal number when a signal ended it). */
export function runDaemonChild(p: 'master' | 'chunkserver', args: string[]): void {
  const child = spawnDaemon(p, args, { stdio: ['inherit', 'inherit', 'inherit'] });
  for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) process.on(sig, () => child.kill(sig));
  child.once('error', (e) => void failAndExit('gfs', `cannot start the ${p}: ${e.message}`));
  child.once('exit', (code, signal) => void exitWhenFlushed(code ?? 128 + (signal ? (constants.signals[signal] ?? 0) : 0)));
}
