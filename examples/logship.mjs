#!/usr/bin/env node
// A log shipper: follows a local file and record-appends each new line to a gfs file.
//
//   node examples/logship.mjs LOCAL_FILE GFS_FILE STATE_FILE
//
// After each line is acknowledged (on every replica), the byte offset after it
// is saved in STATE_FILE (written to a temporary file, fsynced, renamed), and a
// restart resumes from there: nothing is lost. A crash between an append and
// the state save sends that line again on restart; its record id is derived
// from the local file's offset of the line, so readers (records(), `gfs
// records`) still see it once. Runs until SIGTERM or SIGINT.
import { createHash } from 'node:crypto';
import { open, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { connect } from 'gfs';

const [local, remote, stateFile] = process.argv.slice(2);
if (!stateFile) {
  console.error('usage: logship.mjs LOCAL_FILE GFS_FILE STATE_FILE');
  process.exit(2);
}
const gfs = connect();
let stopping = false;
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => (stopping = true));

async function loadOffset() {
  try {
    return JSON.parse(await readFile(stateFile, 'utf8')).offset;
  } catch {
    return 0;
  }
}

async function saveOffset(offset) {
  const tmp = `${stateFile}.tmp`;
  const fh = await open(tmp, 'w');
  await fh.writeFile(JSON.stringify({ offset }));
  await fh.sync();
  await fh.close();
  await rename(tmp, stateFile);
}

const idOf = (offset) => createHash('sha256').update(`${local}\0${offset}`).digest().subarray(0, 16);

await gfs.open(remote, 'a').then((h) => h.close()); // created when missing
let offset = await loadOffset();
const pollMs = 100;
while (!stopping) {
  const size = (await stat(local).catch(() => ({ size: 0 }))).size;
  if (size > offset) {
    const fh = await open(local, 'r');
    const { buffer, bytesRead } = await fh.read(Buffer.alloc(Math.min(size - offset, 1 << 20)), 0, Math.min(size - offset, 1 << 20), offset);
    await fh.close();
    const text = buffer.subarray(0, bytesRead);
    let at = 0;
    for (let nl = text.indexOf(10); nl >= 0 && !stopping; nl = text.indexOf(10, at)) {
      await gfs.appendRecord(remote, text.subarray(at, nl), { id: idOf(offset + at) });
      at = nl + 1;
      await saveOffset(offset + at);
    }
    offset += at;
    if (at > 0) continue;
  }
  await new Promise((r) => setTimeout(r, pollMs));
}
process.exit(0);
