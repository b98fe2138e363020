#!/usr/bin/env node
// Streams a large file into gfs and back out with pipeline(): constant memory,
// backpressure both ways.
//
//   node examples/streamcopy.mjs put LOCAL_FILE GFS_FILE
//   node examples/streamcopy.mjs get GFS_FILE LOCAL_FILE
//
// `put` resolves once the file is durable on every replica ('finish').
import { createReadStream, createWriteStream } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import { connect } from 'gfs';

const [cmd, from, to] = process.argv.slice(2);
const gfs = connect();
try {
  if (cmd === 'put' && to) await pipeline(createReadStream(from), gfs.createWriteStream(to));
  else if (cmd === 'get' && to) await pipeline(gfs.createReadStream(from), createWriteStream(to));
  else {
    console.error('usage: streamcopy.mjs put LOCAL GFS | get GFS LOCAL');
    process.exit(2);
  }
  const st = await gfs.stat(cmd === 'put' ? to : from);
  console.log(`${cmd}: ${st.size} bytes`);
} catch (e) {
  console.error(`streamcopy: ${e.message}`);
  process.exitCode = 1;
}
process.exit();
