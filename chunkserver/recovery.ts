import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { RwLock } from '../shared/rwlock.js';
import { checkVersion, type Replica } from './replica.js';
import { readCrcTable, tmpSuffix, unlinkIfPresent, type ReplicaFiles } from './replica-files.js';

// The replica store's start-up scan: which files in the chunks directory make
// a replica (data + meta; crc table loaded, never recomputed from data it
// cannot trust; a corrupt marker keeps it marked), and removal of what
// crashes left behind (temp files, data without meta, meta without data,
// unreadable meta, a marker without its replica).

/** Replicas loaded in parallel at open: enough to hide latency, few enough to bound fds. */
const loadConcurrency = 32;
const fileNameRe = /^([0-9a-f]{16})\.(chunk|crc|meta|corrupt)$/;

/** Scans files.chunksDir; returns the replicas found (live), having removed every leftover. */
export async function recoverReplicas(files: ReplicaFiles, blockBytes: number): Promise<Replica[]> {
  const { groups, leftovers } = groupFiles(await fsp.readdir(files.chunksDir));

  const toLoad: string[] = [];
  for (const [handle, kinds] of groups) {
    // A .chunk without .meta is a create or delete interrupted by a crash; a
    // .meta without .chunk has lost its data. Neither is a replica.
    if (kinds.has('chunk') && kinds.has('meta')) toLoad.push(handle);
    else for (const k of kinds) leftovers.push(`${handle}.${k}`);
  }

  const found: Replica[] = [];
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < toLoad.length) {
      const handle = toLoad[next++]!;
      const kinds = groups.get(handle)!;
      const rep = await loadReplica(files, blockBytes, handle, kinds.has('crc'), kinds.has('corrupt'));
      if (rep) found.push(rep);
      else leftovers.push(`${handle}.meta`, `${handle}.chunk`, `${handle}.crc`, `${handle}.corrupt`);
    }
  };
  await Promise.all(Array.from({ length: Math.min(loadConcurrency, toLoad.length) }, worker));

  if (leftovers.length > 0) {
    await Promise.all(leftovers.map((name) => unlinkIfPresent(path.join(files.chunksDir, name))));
    await files.syncDir();
  }
  return found;
}

function groupFiles(names: string[]): { groups: Map<string, Set<string>>; leftovers: string[] } {
  const groups = new Map<string, Set<string>>();
  const leftovers: string[] = [];
  for (const name of names) {
    if (name.endsWith(tmpSuffix)) {
      leftovers.push(name);
      continue;
    }
    const m = fileNameRe.exec(name);
    if (!m) continue; // not ours: leave it alone
    const kinds = groups.get(m[1]!) ?? new Set<string>();
    kinds.add(m[2]!);
    groups.set(m[1]!, kinds);
  }
  return { groups, leftovers };
}

/** Loads one replica's version, length and crc table; undefined if its meta is unusable. */
async function loadReplica(files: ReplicaFiles, blockBytes: number, handle: string, hasCrcFile: boolean, corrupt: boolean): Promise<Replica | undefined> {
  let version: number;
  try {
    const meta: unknown = JSON.parse(await fsp.readFile(files.file(handle, 'meta'), 'utf8'));
    version = checkVersion((meta as { version?: unknown } | null)?.version);
  } catch {
    // Meta is replaced atomically, so this is damage, not a torn write; a
    // replica of unknown version can never be served, so drop it and let the
    // master re-replicate.
    return undefined;
  }
  const sizeBytes = (await fsp.stat(files.file(handle, 'chunk'))).size;
  const blocks = Math.ceil(sizeBytes / blockBytes);
  const crcs = new Uint32Array(Math.max(blocks, 1));
  if (hasCrcFile) {
    // Blocks past the crc file's end (a crash between the data and crc
    // writes of an unsynced mutation) keep crc 0: they fail verification
    // (barring a 2^-32 coincidence) rather than being trusted.
    readCrcTable(await fsp.readFile(files.file(handle, 'crc')), crcs, blocks);
  } else {
    await files.createEmpty(handle, 'crc');
  }
  return { handle, state: 'live', version, sizeBytes, crcs, dirty: false, syncing: undefined, corrupt, lock: new RwLock() };
}
