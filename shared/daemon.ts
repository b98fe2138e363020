import { resolve as resolvePath } from 'node:path';
import { Command } from 'commander';
import { addConnectionOptions, exportConnectionOptions, withEnv } from './cli-options.js';
import { exitWhenFlushed, failAndExit } from './exit.js';
import { applySettings } from './settings.js';

// The life of a daemon program (master/main.ts, chunkserver/main.ts): its
// settings from flags, env variables and the config file, one line on stdout
// once it listens ("master URL", read by scripts and tests), one line on
// stderr and exit 1 if it cannot start, and a clean stop on SIGTERM, SIGINT
// or when the process that started it goes away (its IPC channel closes).

export interface RunningDaemon {
  /** Printed on stdout once the daemon serves. */
  readyLine: string;
  close(): Promise<void>;
}

/** A daemon's command line, with the connection flags; the caller adds its own flags. */
export function daemonProgram(name: string, description: string): Command {
  return addConnectionOptions(new Command().name(name).description(description).version('0.1.0')).showHelpAfterError('(run with --help for usage)');
}

/** Fills the options from env variables and the config file, then returns them all. */
function daemonOptions(program: Command): Record<string, unknown> {
  exportConnectionOptions(program);
  applySettings(program, program);
  const o = program.opts();
  if (typeof o.dir !== 'string') throw new Error("required option '--dir <dir>' not specified (nor GFS_DIR, nor \"dir\" in a config file)");
  // A secret file named by the config file is in the environment now, maybe relative.
  if (process.env.GFS_SECRET_FILE) process.env.GFS_SECRET_FILE = resolvePath(process.env.GFS_SECRET_FILE);
  return o;
}

/** Parses the command line and runs the daemon `start` makes until it is told to stop. */
export function runDaemon(program: Command, start: (o: Record<string, any>) => Promise<RunningDaemon>): void {
  const name = program.name();
  let daemon: RunningDaemon | undefined;
  let stopping = false;
  const stop = async () => {
    // A Ctrl-C reaches both a `gfs master` wrapper and this process, and the wrapper forwards it too.
    if (stopping) return;
    stopping = true;
    await daemon?.close().catch(() => undefined);
    await exitWhenFlushed(0);
  };
  process.on('SIGTERM', () => void stop());
  process.on('SIGINT', () => void stop());
  if (process.channel) {
    // Started by another program (shared/programs.ts): stop when it is gone, even if it was SIGKILLed.
    process.channel.unref();
    process.once('disconnect', () => void stop());
  }
  withEnv(program).action(async () => {
    try {
      // A stop while starting exits at once: both daemons are built to survive a crash at any point.
      daemon = await start(daemonOptions(program));
      process.stdout.write(`${daemon.readyLine}\n`);
    } catch (e) {
      await failAndExit(name, e);
    }
  });
  program.parseAsync(process.argv).catch((e) => failAndExit(name, e));
}
