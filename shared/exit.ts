// The one way a program of gfs ends on purpose: after everything it wrote to
// stdout and stderr has been taken by the pipe or file behind them.
// process.exit() alone drops output still queued for a pipe whose reader is
// slower than the writer (past the pipe's 64 KiB, `gfs ls | wc -l` lost
// lines). process.exit() is still needed afterwards: idle keep-alive sockets
// and timers would otherwise hold a finished command open.

/**
 * Every status a gfs program exits with on purpose (the README's table lists them). Daemons run
 * through `gfs master`/`gfs chunkserver` pass their own program's status on (128+N for signal N).
 */
export const exitStatus = {
  ok: 0,
  /** An error: one line on stderr says what. Also usage errors (commander). */
  error: 1,
  /** `gfs fsck`: the file system checked is not healthy. */
  unhealthy: 2,
  /** `gfs put`: the file is written, but some chunk has fewer replicas than asked (a warning on stderr names them). */
  underReplicated: 3,
} as const;

let exiting = false;

/** Resolves once every earlier write to the stream has been handed to the OS (write callbacks run in order). */
function flushed(stream: NodeJS.WriteStream): Promise<void> {
  if (stream.destroyed || stream.writableEnded) return Promise.resolve();
  return new Promise((resolve) => {
    stream.once('error', () => resolve());
    stream.write('', () => resolve());
  });
}

/** Exits with `code` once stdout and stderr are flushed. Later calls (e.g. a second signal) are ignored. */
export async function exitWhenFlushed(code: number): Promise<never> {
  if (!exiting) {
    exiting = true;
    process.exitCode = code;
    await Promise.all([flushed(process.stdout), flushed(process.stderr)]);
    process.exit(code);
  }
  // Never resolves: the first call is exiting.
  return new Promise<never>(() => undefined);
}

/** One line on stderr (`program: reason`) and exit 1, after the output before it is written. */
export function failAndExit(program: string, e: unknown, code: number = exitStatus.error): Promise<never> {
  const msg = e instanceof Error ? e.message : String(e);
  process.stderr.write(`${program}: ${msg.split('\n')[0]}\n`);
  return exitWhenFlushed(code);
}

/**
 * A reader that went away (`gfs ls | head -1`) is not an error of the command: exit quietly instead of
 * dying of an unhandled EPIPE with a stack trace.
 */
export function quietOnClosedPipe(): void {
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code !== 'EPIPE') throw e;
      process.exit(process.exitCode ?? 0);
    });
  }
}
