#!/usr/bin/env node
// client/ holds the client library, the `gfs` command (this file) and the
// FUSE mount. Files in client/ import shared/ only, never master/ or
// chunkserver/: `gfs master` and `gfs chunkserver` start those programs
// (gfs-master, gfs-chunkserver) as child processes.
// Start-up stays fast (scripts call it in loops): only commander is loaded
// up front; each command imports what it needs.
import { Command, Option } from 'commander';
import { addConnectionOptions, exportConnectionOptions, intArg as int, sizeArg as size } from '../shared/cli-options.js';
import { formatBytes as fmtBytes } from '../shared/config.js';
import { exitStatus, exitWhenFlushed, failAndExit, quietOnClosedPipe } from '../shared/exit.js';
import type { BatchOp } from '../shared/wire.js';
import type { GfsClient } from './client.js';
import { longLines, registerAttrCommands } from './cli-attrs.js';
import { registerTools } from './cli-tools.js';

const defaultMaster = 'http://127.0.0.1:7070';

const program = new Command();
program
  .name('gfs')
  .description('A GFS-style distributed file system: master, chunkservers, client')
  .version('0.1.0')
  .addOption(new Option('--master <url>', 'master URL (default: $GFS_MASTER or ' + defaultMaster + ')'));
addConnectionOptions(program).showHelpAfterError('(run with --help for usage)');
program.addHelpText(
  'after',
  `
Exit statuses:
  ${exitStatus.ok}  done
  ${exitStatus.error}  an error (one line on stderr says what), or bad usage
  ${exitStatus.unhealthy}  gfs fsck: the file system checked is not healthy
  ${exitStatus.underReplicated}  gfs put: written, but some chunk has fewer replicas than asked (a warning names them)
  128+N  gfs master / gfs chunkserver: the daemon died of signal N`,
);

// Processes this one starts (daemons, cluster up) inherit the settings through the environment.
program.hook('preAction', () => exportConnectionOptions(program));
quietOnClosedPipe();

function masterUrl(): string {
  return ((program.opts().master as string | undefined) ?? process.env.GFS_MASTER ?? defaultMaster).replace(/\/+$/, '');
}

async function client() {
  const { GfsClient } = await import('./client.js');
  return new GfsClient({ masterUrl: masterUrl() });
}

function fail(e: unknown): Promise<never> {
  return failAndExit('gfs', e);
}

/** Wraps an action: all its output written, then exit 0; or one line on stderr and exit 1 on error. */
function run<A extends unknown[]>(fn: (...args: A) => Promise<void>) {
  return async (...args: A) => {
    try {
      await fn(...args);
    } catch (e) {
      await fail(e);
    }
    await exitWhenFlushed(0);
  };
}

/** A command that is one client call with its required arguments, in order (mv, snapshot, undelete). */
function oneCall(parent: Command, name: string, description: string, args: string[], call: (c: GfsClient, ...a: (string | undefined)[]) => Promise<unknown>): void {
  const cmd = parent.command(name).description(description);
  for (const a of args) cmd.argument(`<${a}>`);
  cmd.action(
    run(async (...a: unknown[]) => {
      await call(await client(), ...(a.slice(0, args.length) as string[]));
    }),
  );
}

/**
 * Many paths in one call to the master (POST /api/batch): every path is tried, as mkdir(1) and rm(1)
 * do; each one refused gets its line on stderr and the command exits 1.
 */
async function batchOrFail(c: Awaited<ReturnType<typeof client>>, ops: BatchOp[]): Promise<void> {
  const results = await c.batch(ops);
  const failed = results.flatMap((r) => (r.ok ? [] : [r.error]));
  if (failed.length === 0) return;
  for (const msg of failed.slice(0, -1)) process.stderr.write(`gfs: ${msg.split('\n')[0]}\n`);
  throw new Error(failed[failed.length - 1]);
}

// ---- daemons ----
// The daemons' flags are their own programs' (master/main.ts, chunkserver/main.ts): everything after
// `gfs master` or `gfs chunkserver` is passed to them, --help included.
function daemonCommand(name: 'master' | 'chunkserver', description: string): Command {
  return program
    .command(name)
    .description(description)
    .argument('[flags...]', `flags of gfs-${name} (gfs ${name} --help lists them)`)
    .allowUnknownOption()
    .action(async (flags: string[]) => {
      // --master, wherever it is given, is gfs's own flag (commander takes it): the chunkserver gets it through GFS_MASTER.
      const m = program.opts().master as string | undefined;
      if (m) process.env.GFS_MASTER = m;
      const { runDaemonChild } = await import('./daemon-child.js');
      runDaemonChild(name, flags);
    });
}

const masterCommand = daemonCommand('master', 'run the master (gfs-master; or a shadow of one: --shadow-of); `gfs master promote` makes a shadow the master');

masterCommand
  .command('promote')
  .description('make the shadow master at --master the master, with a higher epoch (the old master is then fenced off)')
  .option('--force', "promote even if the shadow's log may be incomplete")
  .action(run(async (o: { force?: boolean }) => {
    const { rpcJson } = await import('../shared/rpc.js');
    const url = masterUrl().split(',')[0]!;
    const r = await rpcJson<{ epoch: number; appliedIndex: number }>(url, '/api/promote', { force: o.force === true });
    process.stdout.write(`${url} is now the master, epoch ${r.epoch}, log index ${r.appliedIndex}\n`);
  }));
// Set after promote is made, which would inherit it: `gfs master --help` is gfs-master's help.
masterCommand.helpOption(false);

daemonCommand('chunkserver', 'run a chunkserver (gfs-chunkserver)').helpOption(false);

/** `gfs web-token [--url]`: the read-only token for the status page and /metrics, or the page's URL with it. */
async function printWebToken(o: { url?: boolean }): Promise<void> {
  const { webToken } = await import('../shared/webauth.js');
  const token = webToken();
  const page = `${masterUrl().split(',')[0]}/status`;
  if (token === undefined) {
    process.stdout.write(o.url ? `${page}\n` : '');
    process.stderr.write('gfs: no cluster secret configured: authentication is off and web pages are open\n');
    return;
  }
  process.stdout.write(o.url ? `${page}?token=${token}\n` : `${token}\n`);
}

program
  .command('web-token')
  .description('print the read-only web token of the cluster secret: for the status page (MASTER/status?token=...) and Prometheus scrapes of /metrics (Authorization: Bearer ...)')
  .option('--url', 'print the status page URL with the token instead')
  .action(run(printWebToken));

const cluster = program.command('cluster').description('local clusters');
cluster
  .command('up')
  .description('run a master and chunkservers on 127.0.0.1 until Ctrl-C')
  .option('--dir <dir>', 'data directory', './data')
  .option('--port <port>', 'master port (chunkservers take the next ports)', int('--port', 1, 65535), 7070)
  .option('--chunkservers <n>', 'number of chunkservers', int('--chunkservers', 1, 64), 3)
  .option('--chunk-size <bytes>', 'chunk size', size('--chunk-size'))
  .option('--lease-ms <ms>', 'primary lease duration', int('--lease-ms', 100))
  .option('--heartbeat-ms <ms>', 'heartbeat interval', int('--heartbeat-ms', 50))
  .option('--racks <n>', 'spread chunkservers over this many rack labels', int('--racks', 1, 64), 1)
  .option('--tls', 'serve HTTPS everywhere, with a private CA and certificate made once in DIR/tls (needs openssl)')
  .action(async (o) => {
    try {
      const { clusterUp } = await import('./cluster.js');
      await clusterUp({ dir: o.dir, port: o.port, chunkservers: o.chunkservers, chunkSizeBytes: o.chunkSize, leaseMs: o.leaseMs, heartbeatMs: o.heartbeatMs, racks: o.racks, tls: o.tls === true });
    } catch (e) {
      await fail(e);
    }
  });

// ---- namespace ----
program
  .command('mkdir')
  .description('make directories')
  .option('-p, --parents', 'make parents as needed, no error if existing')
  .argument('<paths...>')
  .action(run(async (paths: string[], o: { parents?: boolean }) => {
    const c = await client();
    await batchOrFail(c, paths.map((path) => ({ op: 'mkdir' as const, path, parents: !!o.parents })));
  }));

program
  .command('ls')
  .description('list a directory')
  .option('-l, --long', 'long format: mode, replication, owner, group, size, mtime, name (-> link target)')
  .option('-R, --recursive', 'list subdirectories recursively')
  .argument('[path]', 'directory or file', '/')
  .action(run(async (path: string, o: { long?: boolean; recursive?: boolean }) => {
    const c = await client();
    const entries = await c.list(path, { recursive: !!o.recursive });
    const nameOf = (e: { path: string; name: string; type: string }) => (o.recursive ? e.path : e.name + (e.type === 'dir' ? '/' : ''));
    const out = o.long ? longLines(entries, nameOf) : entries.map(nameOf);
    if (out.length) process.stdout.write(out.join('\n') + '\n');
  }));

program
  .command('stat')
  .description('print a file or directory\'s metadata as JSON')
  .argument('<path>')
  .action(run(async (path: string) => {
    const c = await client();
    process.stdout.write(JSON.stringify(await c.stat(path), null, 2) + '\n');
  }));

oneCall(program, 'mv', 'rename a file or directory', ['src', 'dst'], (c, src, dst) => c.rename(src!, dst!));

program
  .command('rm')
  .description('delete files or directories')
  .option('-r, --recursive', 'delete directories and their contents')
  .option('--now', 'skip the trash: reclaim the space at once (no undelete)')
  .argument('<paths...>')
  .action(run(async (paths: string[], o: { recursive?: boolean; now?: boolean }) => {
    const c = await client();
    await batchOrFail(c, paths.map((path) => ({ op: 'delete' as const, path, recursive: !!o.recursive, now: !!o.now })));
  }));

oneCall(program, 'undelete', 'bring back the most recently deleted file or directory at a path (before the trash grace period ends)', ['path'], (c, path) => c.undelete(path!));

const trash = program.command('trash').description('deleted files waiting to be reclaimed');
trash
  .command('ls')
  .description('list the trash: original path, deletion time, reclaim time')
  .action(run(async () => {
    const c = await client();
    const entries = await c.trash();
    if (entries.length) process.stdout.write(entries.map((e) => `${new Date(e.deletedAtMs).toISOString()}  reclaim ${new Date(e.reclaimAtMs).toISOString()}  ${e.path}`).join('\n') + '\n');
  }));
oneCall(trash, 'restore', 'same as undelete', ['path'], (c, path) => c.undelete(path!));

program
  .command('fsck')
  .description('check replication of files: healthy, under-/over-replicated, missing, corrupt chunks; non-zero exit if unhealthy')
  .argument('[path]', 'file or directory', '/')
  .option('--files', 'print each file checked')
  .option('--blocks', 'print each chunk of each file')
  .option('--locations', 'print the replica locations of each chunk')
  .action(run(async (path: string, o: { files?: boolean; blocks?: boolean; locations?: boolean }) => {
    const c = await client();
    const r = await c.fsck(path);
    const lines: string[] = [];
    for (const f of r.files) {
      const bad = f.chunks.filter((x) => x.state !== 'healthy' || x.corrupt.length > 0);
      if (o.files || o.blocks || o.locations || bad.length) lines.push(`${f.path} replication=${f.replication} chunks=${f.chunks.length}${bad.length ? ` ${bad.length} NOT HEALTHY` : ' OK'}`);
      if (o.blocks || o.locations)
        for (const x of f.chunks) lines.push(`  ${x.index}. ${x.handle} v${x.version} ${x.state} live=${x.live.length}${x.corrupt.length ? ` corrupt=${x.corrupt.length}` : ''}${o.locations ? ` [${x.live.join(', ')}]` : ''}`);
    }
    const s = r.summary;
    lines.push(`files: ${s.files}  dirs: ${s.dirs}  chunks: ${s.chunks}  healthy: ${s.healthy}  under-replicated: ${s.underReplicated}  over-replicated: ${s.overReplicated}  missing: ${s.missing}  corrupt: ${s.corrupt}`);
    const healthy = s.underReplicated === 0 && s.missing === 0 && s.corrupt === 0;
    lines.push(`The filesystem under '${path}' is ${healthy ? 'HEALTHY' : 'NOT HEALTHY'}`);
    process.stdout.write(lines.join('\n') + '\n');
    if (!healthy) await failAndExit('gfs', 'the filesystem is not healthy', exitStatus.unhealthy);
  }));

program
  .command('truncate')
  .description('set a file\'s length, as truncate -s: a shorter file loses its tail, a longer one reads as zeros up to the new end')
  .requiredOption('-s, --size <bytes>', 'the new length (65536, 64k, 64M, 1G)', size('--size'))
  .argument('<paths...>')
  .action(run(async (paths: string[], o: { size: number }) => {
    const c = await client();
    for (const path of paths) await c.truncate(path, o.size);
  }));

oneCall(program, 'snapshot', 'copy-on-write snapshot of a file or directory tree', ['src', 'dst'], (c, src, dst) => c.snapshot(src!, dst!));

// ---- data ----
program
  .command('put')
  .description(`copy a local file into gfs (durable on every replica when it returns); exit ${exitStatus.underReplicated} with a warning when some chunk got fewer replicas than asked (full disks)`)
  .argument('<local>', 'local file, or - for stdin')
  .argument('<remote>')
  .option('--replication <n>', 'replication factor', int('--replication', 1, 16))
  .option('-f, --force', 'overwrite an existing file')
  .action(run(async (local: string, remote: string, o: { replication?: number; force?: boolean }) => {
    const { putFile, underReplicatedLine } = await import('./transfer.js');
    const r = await putFile(await client(), local, remote, { replication: o.replication, force: !!o.force, progress: process.stderr.isTTY });
    if (r.underReplicated.length > 0) {
      process.stderr.write(`gfs: warning: ${underReplicatedLine(remote, r)}\n`);
      await exitWhenFlushed(exitStatus.underReplicated);
    }
  }));

program
  .command('get')
  .description('copy a gfs file to a local file')
  .argument('<remote>')
  .argument('<local>', 'local file, or - for stdout')
  .action(run(async (remote: string, local: string) => {
    const { getFile } = await import('./transfer.js');
    await getFile(await client(), remote, local, { progress: process.stderr.isTTY && local !== '-' });
  }));

program
  .command('cat')
  .description('print a file')
  .argument('<remote>')
  .option('--replica <id>', 'read only from this chunkserver (to compare replicas)')
  .option('--offset <bytes>', 'start at this offset', int('--offset'))
  .option('--length <bytes>', 'read at most this many bytes', int('--length'))
  .action(run(async (remote: string, o: { replica?: string; offset?: number; length?: number }) => {
    const { catFile } = await import('./transfer.js');
    await catFile(await client(), remote, process.stdout, { replica: o.replica, offset: o.offset, length: o.length });
  }));

program
  .command('append')
  .description('append one record (a file, or stdin) and print its offset')
  .argument('<remote>')
  .argument('[file]', 'local file holding the record, or - for stdin', '-')
  .option('--lines', 'append each line of the input as its own record')
  .option('--no-create', 'fail when the file does not exist (by default it is created, as >> does)')
  .option('--create', 'create the file if it does not exist (the default; kept for old scripts)')
  .action(run(async (remote: string, file: string, o: { lines?: boolean; create?: boolean }) => {
    const { appendCmd } = await import('./transfer.js');
    await appendCmd(await client(), remote, file, { lines: !!o.lines, create: o.create !== false });
  }));

program
  .command('records')
  .description('print every record of a record-appended file once, in file order')
  .argument('<remote>')
  .option('--json', 'one JSON object per record: offset, id, data')
  .option('-f, --follow', 'then keep printing records as they are appended (Ctrl-C stops)')
  .option('--interval-ms <ms>', 'with -f: how often to look for more', int('--interval-ms', 10), 500)
  .action(run(async (remote: string, o: { json?: boolean; follow?: boolean; intervalMs: number }) => {
    const { recordsCmd } = await import('./transfer.js');
    await recordsCmd(await client(), remote, !!o.json, o.follow ? { intervalMs: o.intervalMs } : undefined);
  }));

program
  .command('status')
  .description('cluster status: chunkservers and chunk replication')
  .option('--json', 'print the raw JSON')
  .action(run(async (o: { json?: boolean }) => {
    const c = await client();
    const s = (await c.status()) as {
      safeMode: boolean;
      files: number;
      chunks: { total: number; healthy: number; underReplicated: number; overReplicated: number; missing: number };
      chunkservers: { id: string; url: string; rack: string; alive: boolean; chunks: number; usedBytes: number; freeBytes: number; full?: boolean }[];
      oplog?: { noSpace?: boolean; noSpaceRefusals?: number };
    };
    if (o.json) {
      process.stdout.write(JSON.stringify(s, null, 2) + '\n');
      return;
    }
    const m = s as unknown as {
      role?: string;
      epoch?: number;
      fencedByEpoch?: number;
      appliedIndex?: number;
      logReplicas?: { allowFewer: boolean; inSync: number; configured: number; replicas: { url: string; synced: boolean; lastIndex: number; lastError?: string }[] };
      shadow?: { master: string; lagRecords: number; stalenessMs: number | null };
    };
    const lines = [
      `master: ${m.role ?? 'master'}, epoch ${m.epoch ?? 1}, log index ${m.appliedIndex ?? '?'}${m.fencedByEpoch !== undefined ? `, FENCED (a master of epoch ${m.fencedByEpoch} exists)` : ''}`,
      ...(m.shadow ? [`shadow of ${m.shadow.master}: ${m.shadow.lagRecords} records behind, last heard ${m.shadow.stalenessMs === null ? 'never' : `${m.shadow.stalenessMs} ms ago`}`] : []),
      ...(m.logReplicas
        ? [
            `log replicas: ${m.logReplicas.inSync} of ${m.logReplicas.configured} in sync${m.logReplicas.inSync < m.logReplicas.configured ? (m.logReplicas.allowFewer ? ' (DEGRADED: acknowledging with fewer copies)' : ' (mutations refused until caught up)') : ''}`,
            ...m.logReplicas.replicas.map((r) => `  ${r.url.padEnd(24)} ${r.synced ? 'in sync' : 'BEHIND '} index=${r.lastIndex}${r.lastError ? ` (${r.lastError})` : ''}`),
          ]
        : []),
      ...(s.oplog?.noSpace ? [`operation log: DISK FULL, mutations refused with NO_SPACE (${s.oplog.noSpaceRefusals ?? 0} so far); resumes by itself when space is freed`] : []),
      `safe mode: ${s.safeMode ? 'ON' : 'off'}`,
      `files: ${s.files}`,
      `chunks: ${s.chunks.total} total, ${s.chunks.healthy} healthy, ${s.chunks.underReplicated} under-replicated, ${s.chunks.overReplicated} over-replicated, ${s.chunks.missing} missing`,
      `chunkservers: ${s.chunkservers.filter((x) => x.alive).length} alive of ${s.chunkservers.length}`,
      ...s.chunkservers.map((x) => `  ${x.id.padEnd(12)} ${x.url.padEnd(24)} rack=${x.rack.padEnd(8)} ${x.alive ? 'alive' : 'DEAD '} chunks=${String(x.chunks).padStart(6)} used=${fmtBytes(x.usedBytes)} free=${fmtBytes(x.freeBytes)}${x.full ? ' FULL (below its reserve: no new chunks)' : ''}`),
    ];
    process.stdout.write(lines.join('\n') + '\n');
  }));

// ---- FUSE ----
program
  .command('mount')
  .description('serve a gfs directory at a local mount point over FUSE; runs in the foreground until unmounted (gfs umount) or Ctrl-C/SIGTERM, which flush and unmount')
  .argument('<remote>', 'gfs directory to serve, e.g. /')
  .argument('<mountpoint>', 'existing local directory')
  .option('--foreground', 'stay in the foreground (always the case: the mount lives as long as this process)')
  .option('--allow-other', 'let other users access the mount, their access checked against the modes (FUSE allow_other, default_permissions)')
  .option('--debug', 'print every FUSE request (libfuse debug) and every failed operation')
  .action(run(async (remote: string, mountpoint: string, o: { allowOther?: boolean; debug?: boolean }) => {
    const { runMount } = await import('./mount.js');
    await runMount({
      masterUrl: masterUrl(),
      remoteDir: remote,
      mountpoint,
      allowOther: !!o.allowOther,
      debug: !!o.debug,
      onMounted: () => process.stdout.write(`mounted ${remote} on ${mountpoint} (gfs umount ${mountpoint}, or Ctrl-C, to unmount)\n`),
    });
  }));

program
  .command('umount')
  .description('unmount a gfs mount (fusermount -u, else umount)')
  .argument('<mountpoint>')
  .option('-l, --lazy', 'detach now even if files are open')
  .action(run(async (mountpoint: string, o: { lazy?: boolean }) => {
    const { unmount } = await import('./mount.js');
    await unmount(mountpoint, { lazy: !!o.lazy });
  }));

registerTools(program, { client, run });
registerAttrCommands(program, { client, run });

program.parseAsync(process.argv).catch(fail);
