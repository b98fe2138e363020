#!/usr/bin/env node
// Word count in the MapReduce shape, over gfs.
//
//   node examples/wordcount.mjs INPUT_DIR OUTPUT_DIR [--mappers 3] [--reducers 2]
//
// The driver starts one mapper process per slice of the input files. Each mapper
// counts the words of its files and record-appends its (word, count) pairs to
// the shared intermediate file of the reducer that owns each word
// (OUTPUT_DIR/_tmp/part-R): many processes append to one file at once, which is
// what record append is for. Then one reducer process per part reads every
// record of its file, sums the counts, writes its result to a temporary file and
// renames it into place (OUTPUT_DIR/part-R), so a reader never sees half an
// output. The master and secret come from GFS_MASTER and GFS_SECRET(_FILE).
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { connect } from 'gfs';

const gfs = connect();
const [role, ...args] = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : dflt;
};
const partOf = (word, reducers) => createHash('md5').update(word).digest().readUInt32LE(0) % reducers;
const words = (text) => text.toLowerCase().match(/[\p{L}\p{N}']+/gu) ?? [];

function run(...argv) {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [fileURLToPath(import.meta.url), ...argv], { stdio: 'inherit' });
    p.on('error', reject);
    p.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`${argv[0]} ${argv[1] ?? ''} exited ${code}`))));
  });
}

async function map(output, reducers, files) {
  const counts = new Map();
  for (const f of files) for (const w of words(await gfs.readFile(f, 'utf8'))) counts.set(w, (counts.get(w) ?? 0) + 1);
  // One record per reducer part: the pairs as JSON lines, small enough for a record (a quarter chunk).
  const byPart = Array.from({ length: reducers }, () => []);
  for (const [w, n] of counts) byPart[partOf(w, reducers)].push(JSON.stringify([w, n]));
  const maxRecordBytes = 256 * 1024;
  await Promise.all(
    byPart.map(async (lines, r) => {
      let batch = [];
      let bytes = 0;
      const flush = async () => {
        if (batch.length) await gfs.appendRecord(`${output}/_tmp/part-${r}`, batch.join('\n'));
        batch = [];
        bytes = 0;
      };
      for (const l of lines) {
        if (bytes + l.length + 1 > maxRecordBytes) await flush();
        batch.push(l);
        bytes += l.length + 1;
      }
      await flush();
    }),
  );
}

async function reduce(output, r) {
  const totals = new Map();
  for await (const rec of gfs.records(`${output}/_tmp/part-${r}`)) {
    for (const line of rec.payload.toString().split('\n')) {
      const [w, n] = JSON.parse(line);
      totals.set(w, (totals.get(w) ?? 0) + n);
    }
  }
  const text = [...totals].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([w, n]) => `${w}\t${n}\n`).join('');
  // Written whole under a temporary name, then renamed into place.
  await gfs.writeFile(`${output}/_tmp/out-${r}`, text);
  await gfs.rename(`${output}/_tmp/out-${r}`, `${output}/part-${r}`);
}

async function driver(input, output) {
  const mappers = opt('mappers', 3);
  const reducers = opt('reducers', 2);
  const files = (await gfs.readdir(input, { withFileTypes: true })).filter((e) => e.isFile()).map((e) => e.path);
  await gfs.mkdir(`${output}/_tmp`, { recursive: true });
  for (let r = 0; r < reducers; r++) await gfs.writeFile(`${output}/_tmp/part-${r}`, '');
  const slices = Array.from({ length: mappers }, (_, m) => files.filter((_, i) => i % mappers === m)).filter((s) => s.length > 0);
  await Promise.all(slices.map((s) => run('map', output, String(reducers), ...s)));
  await Promise.all(Array.from({ length: reducers }, (_, r) => run('reduce', output, String(r))));
  await gfs.rm(`${output}/_tmp`, { recursive: true, now: true });
  console.log(`wordcount: ${files.length} files, ${slices.length} mappers, ${reducers} reducers -> ${output}/part-*`);
}

try {
  if (role === 'map') await map(args[0], Number(args[1]), args.slice(2));
  else if (role === 'reduce') await reduce(args[0], Number(args[1]));
  else if (role && args[0]) await driver(role, args[0]);
  else {
    console.error('usage: wordcount.mjs INPUT_DIR OUTPUT_DIR [--mappers N] [--reducers N]');
    process.exitCode = 2;
  }
} catch (e) {
  console.error(`wordcount: ${e.message}`);
  process.exitCode = 1;
}
process.exit();
