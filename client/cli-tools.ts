import type { Command } from 'commander';
import { GfsError } from '../shared/errors.js';
import type { GfsClient } from './client.js';

// The everyday commands users bring from coreutils and `hdfs dfs`: du, df, cp,
// tail (-f follows a growing file) and shell completion. Each is a thin use of
// the library; cli.ts registers them (registerTools) with its own client and
// error handling, so they exit and report errors like every other command.

export interface ToolDeps {
  client: () => Promise<GfsClient>;
  run: <A extends unknown[]>(fn: (...args: A) => Promise<void>) => (...args: A) => Promise<void>;
}

/** Sizes as coreutils' -h prints them: powers of 1024, one decimal below 10 (1.5K, 23M, 1.2G). */
export function humanSize(n: number): string {
  const units = ['', 'K', 'M', 'G', 'T', 'P', 'E'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  if (i === 0) return String(n);
  // coreutils rounds up, so a size never reads smaller than it is.
  const shown = v < 10 ? Math.ceil(v * 10) / 10 : Math.ceil(v);
  return shown >= 1024 && i < units.length - 1 ? `1.0${units[i + 1]}` : `${v < 10 ? shown.toFixed(1) : shown}${units[i]}`;
}

/** Up to the last `lines` lines (or `bytes` bytes) of a file, read backwards a piece at a time. */
async function tailStart(c: GfsClient, path: string, size: number, o: { lines: number; bytes?: number }): Promise<number> {
  if (o.bytes !== undefined) return Math.max(0, size - o.bytes);
  const stepBytes = 64 * 1024;
  let start = size;
  let newlines = 0;
  // A last line without its newline counts as a line too, as in tail(1).
  const lastByte = size > 0 ? (await c.read(path, size - 1, 1))[0] : undefined;
  const want = o.lines + (lastByte === 10 ? 1 : 0);
  while (start > 0) {
    const from = Math.max(0, start - stepBytes);
    const buf = await c.read(path, from, start - from);
    for (let i = buf.length - 1; i >= 0; i--) {
      if (buf[i] === 10 && ++newlines === want) return from + i + 1;
    }
    start = from;
  }
  return 0;
}

export function registerTools(program: Command, d: ToolDeps): void {
  duCommand(program, d);
  dfCommand(program, d);
  cpCommand(program, d);
  tailCommand(program, d);
  completionCommand(program, d);
}

function duCommand(program: Command, d: ToolDeps): void {
  program
    .command('du')
    .description('space used: each entry of a directory (or the file), in bytes; -s one total per argument')
    .argument('[paths...]', 'files or directories', ['/'])
    .option('-s, --summarize', 'one total per argument')
    .option('-h, --human-readable', 'sizes like 1.5K 23M 1.2G')
    .option('--replicated', 'count every replica (bytes on disk across the cluster) instead of the file sizes')
    .action(
      d.run(async (paths: string[], o: { summarize?: boolean; humanReadable?: boolean; replicated?: boolean }) => {
        const c = await d.client();
        const fmt = (n: number) => (o.humanReadable ? humanSize(n) : String(n));
        const out: string[] = [];
        for (const p of paths) {
          const st = await c.stat(p);
          const entries = st.type === 'dir' && !o.summarize ? await c.list(p) : [{ path: p, type: st.type, sizeBytes: st.sizeBytes, replication: st.replication }];
          for (const e of entries) {
            let bytes = e.type === 'file' ? e.sizeBytes * (o.replicated ? e.replication : 1) : 0;
            if (e.type === 'dir') {
              const all = await c.list(e.path, { recursive: true });
              bytes = all.reduce((s, x) => s + (x.type === 'file' ? x.sizeBytes * (o.replicated ? x.replication : 1) : 0), 0);
            }
            out.push(`${fmt(bytes)}\t${e.path}`);
          }
        }
        process.stdout.write(out.join('\n') + '\n');
      }),
    );

}

function dfCommand(program: Command, d: ToolDeps): void {
  program
    .command('df')
    .description('cluster capacity: size, used and available bytes of the live chunkservers')
    .option('-h, --human-readable', 'sizes like 1.5K 23M 1.2G')
    .action(
      d.run(async (o: { humanReadable?: boolean }) => {
        const c = await d.client();
        const s = (await c.status()) as { chunkservers: { alive: boolean; usedBytes: number; freeBytes: number; capacityBytes?: number }[] };
        const live = s.chunkservers.filter((x) => x.alive);
        const used = live.reduce((n, x) => n + x.usedBytes, 0);
        const avail = live.reduce((n, x) => n + x.freeBytes, 0);
        const size = live.reduce((n, x) => n + (x.capacityBytes ?? x.usedBytes + x.freeBytes), 0);
        const fmt = (n: number) => (o.humanReadable ? humanSize(n) : String(n));
        const pct = size > 0 ? `${Math.ceil((100 * (size - avail)) / size)}%` : '-';
        const rows = [
          ['Filesystem', o.humanReadable ? 'Size' : 'Bytes', 'Used', 'Avail', 'Use%', 'Servers'],
          [c.masterUrl, fmt(size), fmt(used), fmt(avail), pct, `${live.length}/${s.chunkservers.length}`],
        ];
        const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
        process.stdout.write(rows.map((r) => r.map((v, i) => (i === 0 ? v.padEnd(widths[i]!) : v.padStart(widths[i]!))).join('  ')).join('\n') + '\n');
      }),
    );

}

function cpCommand(program: Command, d: ToolDeps): void {
  program
    .command('cp')
    .description('copy a file inside gfs (a real copy; `gfs snapshot` shares chunks instead)')
    .argument('<src>')
    .argument('<dst>')
    .option('-f, --force', 'replace dst if it exists')
    .option('--replication <n>', 'replication of the copy (default: that of src)')
    .action(
      d.run(async (src: string, dst: string, o: { force?: boolean; replication?: string }) => {
        const c = await d.client();
        const { Gfs } = await import('./index.js');
        const gfs = new Gfs(c);
        const st = await c.stat(src);
        if (st.type !== 'file') throw new GfsError('IS_A_DIRECTORY', `${src} is a directory (cp copies files; gfs snapshot copies trees)`);
        const exists = await c.stat(dst).then(
          () => true,
          (e: unknown) => (e instanceof GfsError && e.code === 'NOT_FOUND' ? false : Promise.reject(e)),
        );
        if (exists && !o.force) throw new GfsError('EXISTS', `${dst} exists (-f replaces it)`);
        const replication = o.replication !== undefined ? Number(o.replication) : st.replication;
        if (!Number.isInteger(replication) || replication < 1 || replication > 16) throw new GfsError('BAD_REQUEST', '--replication must be an integer from 1 to 16');
        const { pipeline } = await import('node:stream/promises');
        const tmp = `${dst}.gfs-cp-${process.pid}`;
        await pipeline(gfs.createReadStream(src), gfs.createWriteStream(tmp, { flags: 'wx', replication }));
        if (exists) await c.delete(dst, { now: true });
        await c.rename(tmp, dst);
      }),
    );

}

function tailCommand(program: Command, d: ToolDeps): void {
  program
    .command('tail')
    .description('the end of a file: the last 10 lines (-n), or bytes (-c); -f keeps printing what is appended')
    .argument('<remote>')
    .option('-n, --lines <n>', 'last n lines', '10')
    .option('-c, --bytes <n>', 'last n bytes')
    .option('-f, --follow', 'keep printing data as the file grows (Ctrl-C stops)')
    .option('--interval-ms <ms>', 'with -f: how often to look for more', '500')
    .action(
      d.run(async (remote: string, o: { lines: string; bytes?: string; follow?: boolean; intervalMs: string }) => {
        const lines = Number(o.lines);
        const bytes = o.bytes === undefined ? undefined : Number(o.bytes);
        const intervalMs = Number(o.intervalMs);
        if (!Number.isInteger(lines) || lines < 0) throw new GfsError('BAD_REQUEST', '-n must be a whole number');
        if (bytes !== undefined && (!Number.isInteger(bytes) || bytes < 0)) throw new GfsError('BAD_REQUEST', '-c must be a whole number');
        if (!Number.isInteger(intervalMs) || intervalMs < 10) throw new GfsError('BAD_REQUEST', '--interval-ms must be at least 10');
        const c = await d.client();
        const st = await c.stat(remote);
        if (st.type !== 'file') throw new GfsError('IS_A_DIRECTORY', `is a directory: ${remote}`);
        let pos = await tailStart(c, remote, st.sizeBytes, { lines, bytes });
        const pieceBytes = 4 * 1024 * 1024;
        const printTo = async (end: number) => {
          while (pos < end) {
            const buf = await c.read(remote, pos, Math.min(pieceBytes, end - pos));
            if (buf.length === 0) break;
            pos += buf.length;
            if (!process.stdout.write(buf)) await new Promise((r) => process.stdout.once('drain', r));
          }
        };
        await printTo(st.sizeBytes);
        if (!o.follow) return;
        let stop = false;
        for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => (stop = true));
        while (!stop) {
          await new Promise((r) => setTimeout(r, intervalMs));
          // Past what it knew, the client asks the master once and a replica of the last chunk for the length.
          const f = await c.extent(remote, Number.MAX_SAFE_INTEGER);
          await printTo(f.sizeBytes);
        }
      }),
    );

}

function completionCommand(program: Command, d: ToolDeps): void {
  program
    .command('completion')
    .description('print a shell completion script: gfs completion bash > /etc/bash_completion.d/gfs')
    .argument('<shell>', 'bash')
    .action(
      d.run(async (shell: string) => {
        if (shell !== 'bash') throw new GfsError('BAD_REQUEST', `no completion for ${shell} (only bash)`);
        process.stdout.write(bashCompletion(program));
      }),
    );
}

/** Commands, their subcommands and options, from the program itself, so the script never goes stale. */
export function bashCompletion(program: Command): string {
  const words = (cmd: Command) => [...cmd.commands.map((c) => c.name()), ...cmd.options.flatMap((o) => [o.short, o.long].filter((x): x is string => !!x))];
  const cases = program.commands
    .map((cmd) => `    ${cmd.name()}) opts="${words(cmd).join(' ')}" ;;`)
    .join('\n');
  return `# bash completion for gfs (gfs completion bash)
_gfs() {
  local cur="\${COMP_WORDS[COMP_CWORD]}" cmd="" i opts
  for ((i = 1; i < COMP_CWORD; i++)); do
    case "\${COMP_WORDS[i]}" in -*) ;; *) cmd="\${COMP_WORDS[i]}"; break ;; esac
  done
  case "$cmd" in
    "") opts="${words(program).join(' ')}" ;;
${cases}
    *) opts="" ;;
  esac
  COMPREPLY=($(compgen -W "$opts" -- "$cur"))
}
complete -o default -F _gfs gfs
`;
}
