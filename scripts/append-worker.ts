// A separate OS process that appends framed records to one gfs file and
// prints one JSON line per acknowledged record: {"i", "offset", "id", "sizeBytes", "sha"}.
// Used by the multi-process append tests and the append benchmarks.
//   node dist/scripts/append-worker.js --master URL --path /f --count N --min-bytes A --max-bytes B --seed S [--quiet]
import { createHash, randomBytes } from 'node:crypto';
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
  },
});

async function main(): Promise<void> {
  if (!values.master || !values.path) throw new Error('--master and --path are required');
  const client = new GfsClient({ masterUrl: values.master });
  const count = Number(values.count);
  const minBytes = Number(values['min-bytes']);
  const maxBytes = Number(values['max-bytes']);
  const rand = rng(Number(values.seed));
  const deadline = values['duration-ms'] ? Date.now() + Number(values['duration-ms']) : Infinity;
  let ok = 0;
  let failed = 0;
  const out: string[] = [];
  for (let i = 0; i < count && Date.now() < deadline; i++) {
    const size = minBytes + Math.floor(rand() ** Number(values.skew) * (maxBytes - minBytes + 1));
    const payload = randomBytes(size);
    try {
      const offset = await appendRecord(client, values.path, payload);
      ok++;
      if (!values.quiet) out.push(JSON.stringify({ i, offset, sizeBytes: size, sha: createHash('sha256').update(payload).digest('hex') }));
    } catch (e) {
      failed++;
      if (!values.quiet) out.push(JSON.stringify({ i, error: (e as Error).message }));
    }
    if (out.length >= 256) process.stdout.write(out.splice(0).join('\n') + '\n');
  }
  if (out.length) process.stdout.write(out.join('\n') + '\n');
  process.stdout.write(JSON.stringify({ done: true, ok, failed }) + '\n');
}

main().then(
  () => process.exit(0),
  (e) => {
    process.stderr.write(`append-worker: ${(e as Error).message}\n`);
    process.exit(1);
  },
);
