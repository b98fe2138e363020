// A separate OS process that appends framed records to one gfs file and
// prints one JSON line per acknowledged record: {"i", "offset", "id", "sizeBytes", "sha"}.
// Used by the multi-process append tests and the append benchmarks.
//   node dist/scripts/append-worker.js --master URL --path /f --count N --min-bytes A --max-bytes B --seed S [--quiet]
//     [--ready]          print {"ready":true} once set up, and start on a line "go" on stdin (timing without node start-up)
//     [--acked FILE]     write every acknowledged record's {offset, sizeBytes, sha} to FILE, one JSON line each
//     [--batched N]      append through a batching appender with N batches in flight, all records at once
// The last line, {"done":true, "ok", "failed", "cpuMs"}, gives the CPU this process spent after "go".
import { createHash, randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { GfsClient, appendRecord } from '../client/client.js';
import { rng } from '../shared/rng.js';

const { values } = parseArgs({
  options: {
    master: { type: 'string' },
    path: { type: 'string' },
    count: { type: 'string', default: '100' },
    'min-bytes': { type: 'string', default: '1' },
    'max-bytes': { type: 'string', default: '1024' },
    seed: { type: 'string', default: '1' },
    quiet: { type: 'boolean', default: false },
    'duration-ms': { type: 'string' },
    /** Sizes are min + r^skew * (max - min): skew > 1 favours small records. */
    skew: { type: 'string', default: '1' },
    ready: { type: 'boolean', default: false },
    acked: { type: 'string' },
    batched: { type: 'string' },
  },
});

/** Waits for a line "go" on stdin. */
function waitForGo(): Promise<void> {
  return new Promise((resolve) => {
    const rl = createInterface({ input: process.stdin });
    rl.on('line', (l) => {
      if (l.trim() === 'go') {
        rl.close();
        resolve();
      }
    });
  });
}

/**
 * Waits (at most 5 s) until this process spends under 2 ms of CPU in each of two 100 ms windows. Start-up work goes on
 * in V8's background threads after the first requests (compiling, and tiering up undici's wasm HTTP
 * parser: 100-300 ms of CPU here), and counted after "go" it made a worker of 10 records look like
 * 15-30 ms of CPU per record.
 */
async function settled(): Promise<void> {
  const deadline = Date.now() + 5_000;
  // Two quiet windows in a row: on a loaded machine one may just have been a window without a turn.
  for (let quiet = 0; quiet < 2 && Date.now() < deadline; ) {
    const c0 = process.cpuUsage();
    await new Promise((r) => setTimeout(r, 100));
    quiet = cpuMsSince(c0) < 2 ? quiet + 1 : 0;
  }
}

const cpuMsSince = (c0: NodeJS.CpuUsage): number => {
  const c = process.cpuUsage(c0);
  return Math.round((c.user + c.system) / 1000);
};

async function main(): Promise<void> {
  if (!values.master || !values.path) throw new Error('--master and --path are required');
  const client = new GfsClient({ masterUrl: values.master });
  const count = Number(values.count);
  const minBytes = Number(values['min-bytes']);
  const maxBytes = Number(values['max-bytes']);
  const rand = rng(Number(values.seed));
  if (values.ready) {
    await client.locate(values.path, 0, 1);
    await settled();
    process.stdout.write(JSON.stringify({ ready: true }) + '\n');
    await waitForGo();
  }
  const cpu0 = process.cpuUsage();
  const deadline = values['duration-ms'] ? Date.now() + Number(values['duration-ms']) : Infinity;
  let ok = 0;
  let failed = 0;
  const out: string[] = [];
  const acked: string[] = [];
  if (values.batched) {
    const app = client.appender(values.path, { maxInFlight: Number(values.batched) });
    const jobs: Promise<void>[] = [];
    for (let i = 0; i < count; i++) {
      const size = minBytes + Math.floor(rand() ** Number(values.skew) * (maxBytes - minBytes + 1));
      const payload = randomBytes(size);
      jobs.push(
        app.append(payload).then(
          (offset) => {
            ok++;
            if (values.acked) acked.push(JSON.stringify({ offset, sizeBytes: size, sha: createHash('sha256').update(payload).digest('hex') }));
          },
          (e: unknown) => {
            failed++;
            if (!values.quiet && out.length < 100) out.push(JSON.stringify({ i, error: (e as Error).message }));
          },
        ),
      );
      // Bounded: at most 8192 records in flight here, while the older half is answered the newer half is sent.
      if (jobs.length >= 8192) await Promise.all(jobs.splice(0, 4096));
    }
    await Promise.all(jobs);
    await app.flush();
  }
  for (let i = 0; !values.batched && i < count && Date.now() < deadline; i++) {
    const size = minBytes + Math.floor(rand() ** Number(values.skew) * (maxBytes - minBytes + 1));
    const payload = randomBytes(size);
    try {
      const offset = await appendRecord(client, values.path, payload);
      ok++;
      if (!values.quiet || values.acked) {
        const line = JSON.stringify({ i, offset, sizeBytes: size, sha: createHash('sha256').update(payload).digest('hex') });
        if (!values.quiet) out.push(line);
        if (values.acked) acked.push(line);
      }
    } catch (e) {
      failed++;
      if (!values.quiet) out.push(JSON.stringify({ i, error: (e as Error).message }));
    }
    if (out.length >= 256) process.stdout.write(out.splice(0).join('\n') + '\n');
  }
  const cpuMs = cpuMsSince(cpu0);
  if (values.acked) writeFileSync(values.acked, acked.join('\n') + (acked.length ? '\n' : ''));
  if (out.length) process.stdout.write(out.join('\n') + '\n');
  process.stdout.write(JSON.stringify({ done: true, ok, failed, cpuMs }) + '\n');
}

main().then(
  () => process.exit(0),
  (e) => {
    process.stderr.write(`append-worker: ${(e as Error).message}\n`);
    process.exit(1);
  },
);
