// The worker thread's entry for master/checkpoint-replay.ts: one job in workerData, one answer posted back.
import { parentPort, workerData } from 'node:worker_threads';
import { buildCheckpoint, type ReplayJob } from './checkpoint-replay.js';

buildCheckpoint(workerData as ReplayJob).then(
  (result) => parentPort!.postMessage({ ok: true, result }),
  (e: unknown) => parentPort!.postMessage({ ok: false, error: e instanceof Error ? e.message : String(e) }),
);
