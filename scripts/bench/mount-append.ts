import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import type { MountWorkloadContext } from './mount-meta.js';

// Record append through the mount (issue 16's append-mount workload), as the
// peer script measures MooseFS's mount: 8 processes open one file O_APPEND,
// unbuffered, and write 1 KiB records one write() each, all at once; then
// every record is read back through the mount and checked whole. gfs turns
// each such write into one record append (at least once: a retried append
// may repeat a record, counted apart; MooseFS's check wants exactly once).

const recordBytes = 1024;

/** Writers and checker in one python3 script: `write FILE PROCS RECS` prints records/s; `check FILE PROCS RECS` prints counts. */
const script = `
import os, sys, time, multiprocessing as mp
mode, path, P, N = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
SZ = ${recordBytes}
def record(p, s):
    head = b"[w%02d r%06d:" % (p, s)
    tail = b":%02d/%06d]\\n" % (p, s)
    return head + bytes([65 + (p * 7 + s) % 26]) * (SZ - len(head) - len(tail)) + tail
if mode == "write":
    def writer(p, start, out):
        fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        start.wait(timeout=120)
        short = sum(1 for s in range(N) if os.write(fd, record(p, s)) != SZ)
        os.close(fd)
        out.put(short)
    start, out = mp.Barrier(P + 1), mp.Queue()
    procs = [mp.Process(target=writer, args=(p, start, out)) for p in range(P)]
    for x in procs: x.start()
    start.wait(timeout=120)
    t0 = time.perf_counter()
    for x in procs: x.join()
    t1 = time.perf_counter()
    if any(x.exitcode != 0 for x in procs): sys.exit("a writer failed")
    print("%.1f %d" % (P * N / (t1 - t0), sum(out.get() for _ in procs)))
else:
    data = open(path, "rb").read()
    seen, torn = {}, 0
    for off in range(0, len(data) - len(data) % SZ, SZ):
        r = data[off:off + SZ]
        try:
            p, s = int(r[2:4]), int(r[6:12])
            whole = 0 <= p < P and 0 <= s < N and r == record(p, s)
        except ValueError:
            whole = False
        if whole: seen[(p, s)] = seen.get((p, s), 0) + 1
        else: torn += 1
    missing = P * N - len(seen)
    print("%d %d %d %d" % (len(seen), torn + len(data) % SZ, missing, sum(c - 1 for c in seen.values())))
`;

function python(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) =>
    execFile('python3', ['-c', script, ...args], { timeout: 600_000 }, (e, stdout, stderr) => resolve({ code: e ? (typeof e.code === 'number' ? e.code : -1) : 0, stdout: String(stdout), stderr: String(stderr) })),
  );
}

/** `file`: a path inside a live mount (created here); procs x records 1 KiB appends. */
export async function mountAppendBench(ctx: MountWorkloadContext, file: string, procs: number, records: number): Promise<void> {
  const name = 'append-mount-8proc';
  if (!ctx.wanted(name)) return ctx.record({ workload: name, value: null, unit: 'records/s', limit: null, ratio: null, note: 'skipped (--only)' });
  await ctx.begin();
  ctx.progress(`${name}: ${procs} processes x ${records} records of ${recordBytes} B, O_APPEND writes through the mount`);
  writeFileSync(file, '');
  const cpu0 = ctx.cpuMs();
  const m0 = ctx.mountCpuMs();
  const w = await python(['write', file, String(procs), String(records)]);
  const cpu1 = ctx.cpuMs();
  const m1 = ctx.mountCpuMs();
  if (w.code !== 0) {
    const error = `writers failed (${w.code}): ${w.stderr.trim().split('\n').pop() ?? ''}`.slice(0, 300);
    return ctx.record({ workload: name, value: null, unit: 'records/s', limit: null, ratio: null, error });
  }
  const [rate, shortWrites] = w.stdout.trim().split(/\s+/).map(Number);
  const c = await python(['check', file, String(procs), String(records)]);
  const [intact, torn, missing, duplicated] = c.stdout.trim().split(/\s+/).map(Number);
  const total = procs * records;
  const cpuMsPerRecord: Record<string, number> = {};
  for (const k of Object.keys(cpu1)) if (cpu0[k] !== undefined) cpuMsPerRecord[k] = Math.round(((cpu1[k]! - cpu0[k]!) / total) * 1000) / 1000;
  if (m0 !== null && m1 !== null) cpuMsPerRecord.mount = Math.round(((m1 - m0) / total) * 1000) / 1000;
  ctx.record({
    workload: name,
    value: rate ?? null,
    unit: 'records/s',
    limit: null,
    ratio: null,
    processes: procs,
    recordsPerProcess: records,
    shortWrites,
    intact,
    torn,
    missing,
    duplicated,
    allWhole: c.code === 0 && torn === 0 && missing === 0 && shortWrites === 0,
    cpuMsPerRecord,
    method: 'python3 writers: os.open(O_WRONLY|O_APPEND), one os.write per 1 KiB record (as the peer script); checked by reading the file back through the mount',
    durability: 'each write() is one record append, acknowledged when every replica applied it (at least once: duplicates counted)',
  });
}
