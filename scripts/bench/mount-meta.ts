import { execFile } from 'node:child_process';
import type { Result } from './report.js';

// The mount's metadata rates, measured the way the peer script measures
// MooseFS's mount (../shared/bench/peer-moosefs.sh, its small-file part):
// one Python process makes N empty files with open(O_CREAT|O_EXCL) + close,
// lists the directory (readdir), lstats every entry (what `ls -l` adds), and
// unlinks them, timing each phase. Python on both sides, so the process and
// syscall cost outside the file system is the same for both.

const phases = ['mount-create', 'mount-ls', 'mount-ls-l', 'mount-delete'] as const;
const units = { 'mount-create': 'ops/s', 'mount-ls': 'entries/s', 'mount-ls-l': 'ops/s', 'mount-delete': 'ops/s' } as const;

/** Prints "create readdir lstat unlink" rates per second, and checks the listing is exactly the files made. */
const script = `
import os, sys, time
d, n = sys.argv[1], int(sys.argv[2])
os.makedirs(d)
t = [time.perf_counter()]
for i in range(n):
    os.close(os.open(os.path.join(d, "f%d" % i), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
t.append(time.perf_counter())
names = os.listdir(d)
t.append(time.perf_counter())
for name in names:
    os.lstat(os.path.join(d, name))
t.append(time.perf_counter())
for i in range(n):
    os.unlink(os.path.join(d, "f%d" % i))
t.append(time.perf_counter())
if sorted(names) != sorted("f%d" % i for i in range(n)) or os.listdir(d):
    sys.exit("listing does not match the files made")
os.rmdir(d)
print(" ".join("%.1f" % (n / (t[k + 1] - t[k])) for k in range(4)))
`;

/** What a workload run inside the bench's live mount is given (mount-meta.ts, mount-append.ts). */
export interface MountWorkloadContext {
  wanted: (workload: string) => boolean;
  begin: () => Promise<void>;
  record: (r: Result) => void;
  progress: (line: string) => void;
  /** CPU ms so far of master, chunkservers and this process; and of the mount process. */
  cpuMs: () => Record<string, number>;
  mountCpuMs: () => number | null;
}

/** Runs the phases in `dir` (a directory to create inside a live mount) with `files` files. */
export async function mountMetaBench(ctx: MountWorkloadContext, dir: string, files: number): Promise<void> {
  if (!phases.some((p) => ctx.wanted(p))) {
    for (const p of phases) ctx.record({ workload: p, value: null, unit: units[p], limit: null, ratio: null, note: 'skipped (--only)' });
    return;
  }
  await ctx.begin();
  ctx.progress(`mount-meta: ${files} empty files through the mount: create, ls, ls -l (lstat each), delete`);
  const cpu0 = ctx.cpuMs();
  const m0 = ctx.mountCpuMs();
  const out = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) =>
    execFile('python3', ['-c', script, dir, String(files)], { timeout: 600_000 }, (e, stdout, stderr) => resolve({ code: e ? (typeof e.code === 'number' ? e.code : -1) : 0, stdout: String(stdout), stderr: String(stderr) })),
  );
  const cpu1 = ctx.cpuMs();
  const m1 = ctx.mountCpuMs();
  if (out.code !== 0) {
    const error = `python3 small-file script failed (${out.code}): ${out.stderr.trim().split('\n').pop() ?? ''}`.slice(0, 300);
    ctx.progress(`mount-meta: ${error}`);
    for (const p of phases) ctx.record({ workload: p, value: null, unit: units[p], limit: null, ratio: null, error });
    return;
  }
  const rates = out.stdout.trim().split(/\s+/).map(Number);
  // CPU of the whole run (all four phases), per file: where a file's metadata round trip spends it.
  const cpuMsPerFile: Record<string, number> = {};
  for (const k of Object.keys(cpu1)) if (cpu0[k] !== undefined) cpuMsPerFile[k] = Math.round(((cpu1[k]! - cpu0[k]!) / files) * 1000) / 1000;
  if (m0 !== null && m1 !== null) cpuMsPerFile.mount = Math.round(((m1 - m0) / files) * 1000) / 1000;
  phases.forEach((p, i) => {
    if (!ctx.wanted(p)) return ctx.record({ workload: p, value: null, unit: units[p], limit: null, ratio: null, note: 'skipped (--only)' });
    ctx.record({ workload: p, value: rates[i] ?? null, unit: units[p], limit: null, ratio: null, files, cpuMsPerFileAllPhases: cpuMsPerFile, method: 'one python3 process: os.open(O_CREAT|O_EXCL)+close, os.listdir, os.lstat each, os.unlink (as the peer script)' });
  });
}
