#!/usr/bin/env node
// chunkserver/ holds the chunkserver: replica store, checksums, data push
// buffer, mutation apply, heartbeats. This is its program, `gfs-chunkserver`
// (which `gfs chunkserver` runs as a child process). Files in chunkserver/
// import shared/ only, never client/ or master/.
import { intArg, sizeArg } from '../shared/cli-options.js';
import { masterUrlFromEnv } from '../shared/config.js';
import { daemonProgram, runDaemon } from '../shared/daemon.js';
import { startChunkserver } from './server.js';

const program = daemonProgram('gfs-chunkserver', 'run a chunkserver')
  .option('--master <urls>', 'master URL (comma-separated: the master and its shadows)')
  .option('--config <file>', 'JSON file of settings: keys are these flags without dashes, e.g. {"port": 7071, "rack": "r1", "master": "http://m:7070"}; flags and env variables win over it')
  .option('--dir <dir>', 'directory for chunk replicas (required)')
  .option('--port <port>', 'port to listen on (0 picks a free one)', intArg('--port', 0, 65535), 0)
  .option('--host <host>', 'address to bind (0.0.0.0: every interface)', '127.0.0.1')
  .option('--advertise <url>', 'URL other machines use to reach this one (default http://HOST:PORT, https:// with TLS; the machine name when HOST is 0.0.0.0)')
  .option('--rack <rack>', 'rack label for placement', 'default')
  .option('--id <id>', 'chunkserver id (default: kept in DIR/id, made up the first time)')
  .option('--heartbeat-ms <ms>', "heartbeat interval (default: the master's)", intArg('--heartbeat-ms', 50))
  .option('--scrub-ms <ms>', 'verify one idle chunk in the background every this many ms (0: off)', intArg('--scrub-ms'), 10_000)
  .option('--scrub-idle-ms <ms>', 'a chunk mutated within this many ms is not idle yet: the scrubber leaves it for later', intArg('--scrub-idle-ms'), 30_000)
  .option('--push-buffer <bytes>', 'pushed data held at once, under way or waiting for its mutation; more gets 429 (default 512M)', sizeArg('--push-buffer'))
  .option('--max-pushes <n>', 'data pushes received at once; more get 429 (default 64)', intArg('--max-pushes', 1))
  .option('--push-idle-ms <ms>', 'drop a push that sends no data for this long (default 30000)', intArg('--push-idle-ms', 100))
  .option('--max-requests <n>', 'requests handled at once; more get 503 (default 2048)', intArg('--max-requests', 1));

runDaemon(program, async (o) => {
  const cs = await startChunkserver({
    dir: o.dir,
    port: o.port,
    host: o.host,
    advertiseUrl: o.advertise,
    rack: o.rack,
    id: o.id,
    // "master" in a config file reaches here through GFS_MASTER (shared/settings.ts).
    masterUrl: masterUrlFromEnv(o.master),
    heartbeatMs: o.heartbeatMs,
    scrubIntervalMs: o.scrubMs,
    scrubIdleMs: o.scrubIdleMs,
    pushBufferBytes: o.pushBuffer,
    maxPushes: o.maxPushes,
    pushIdleMs: o.pushIdleMs,
    maxInFlight: o.maxRequests,
  });
  return { readyLine: `chunkserver ${cs.id} ${cs.url}`, close: () => cs.close() };
});
