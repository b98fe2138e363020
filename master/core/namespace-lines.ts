import { GfsError } from '../../shared/errors.js';
import type { Namespace } from './namespace.js';
import { withDefaults, type ChunkMeta, type NamespaceSnapshot, type Node } from './records.js';

// The namespace's state entry by entry: as checkpoint lines (master/oplog-lines.ts
// writes the file, master/checkpoint-stream.ts reads it), and as the one
// snapshot object a shadow's install carries. Written straight from the live
// tables, and
// read back entry by entry into a new namespace, so neither side ever holds
// the state a second time (one JSON text of it, or a parsed snapshot object
// beside the namespace it becomes). At a million files the JSON text alone
// was 325 MiB. Each line is one JSON array whose first element is its kind:
//
//   ["s", {nextHandle, epoch, appliedIndex, nextIno}]    always first
//   ["n", path, node]              a node (a hard-linked one once, under one of its names)
//   ["l", path, ino]               another name of a hard-linked node (after every "n")
//   ["c", handle, version, refCount]
//   ["t", trashPath, {path, deletedAtMs}]
//   ["p", handle, versionBefore]   a bump nobody has confirmed yet
//   ["r", requestId]               the retry cache, oldest first
//   ["k", handle, version, servers]   the replicas that took a chunk's version

interface Scalars {
  nextHandle: string;
  epoch: number;
  appliedIndex: number;
  nextIno: number;
}

type Entry =
  | ['s', Scalars]
  | ['n', string, Node]
  | ['l', string, number]
  | ['c', string, number, number]
  | ['t', string, { path: string; deletedAtMs: number }]
  | ['p', string, number]
  | ['r', string]
  | ['k', string, number, string[]];

/** The entries of ns as they stand, sharing its objects (the caller keeps ns still while it iterates). */
function* namespaceEntries(ns: Namespace): Generator<Entry> {
  yield ['s', { nextHandle: ns.nextHandle.toString(), epoch: ns.epoch, appliedIndex: ns.appliedIndex, nextIno: ns.nextIno }];
  // A hard-linked node goes in once, under the first of its names met; its other names refer to it.
  const seen = new Set<number>();
  const links: [string, number][] = [];
  for (const [path, n] of ns.nodes) {
    if (n.ino !== undefined && (n.nlink ?? 1) > 1) {
      if (seen.has(n.ino)) {
        links.push([path, n.ino]);
        continue;
      }
      seen.add(n.ino);
    }
    yield ['n', path, n];
  }
  for (const [path, ino] of links) yield ['l', path, ino];
  for (const [h, c] of ns.chunks) yield ['c', h, c.version, c.refCount];
  for (const [p, e] of ns.trash) yield ['t', p, e];
  for (const [h, v] of ns.pendingBumps) yield ['p', h, v];
  for (const r of ns.requests) yield ['r', r];
  for (const [h, t] of ns.took) yield ['k', h, t.version, [...t.servers]];
}

/** The lines of ns as they stand (the caller keeps it still while it iterates: a worker's own copy, say). */
export function* namespaceLines(ns: Namespace): Generator<string> {
  for (const e of namespaceEntries(ns)) yield JSON.stringify(e);
}

/** A copy of ns that later mutations cannot change (taken synchronously at a log boundary): Namespace.snapshot(). */
export function snapshotOf(ns: Namespace): NamespaceSnapshot {
  const nodes: [string, Node][] = [];
  const links: [string, number][] = [];
  const chunks: [string, ChunkMeta][] = [];
  const out: NamespaceSnapshot = { nodes, chunks, nextHandle: '1', trash: [], pendingBumps: [], epoch: 1, appliedIndex: 0, requests: [], took: [] };
  for (const e of namespaceEntries(ns)) {
    switch (e[0]) {
      case 's':
        [out.nextHandle, out.epoch, out.appliedIndex] = [e[1].nextHandle, e[1].epoch, e[1].appliedIndex];
        break;
      case 'n':
        nodes.push([e[1], e[2].type === 'file' ? { ...e[2], chunks: e[2].chunks.slice() } : { ...e[2] }]);
        break;
      case 'l':
        links.push([e[1], e[2]]);
        break;
      case 'c':
        chunks.push([e[1], { version: e[2], refCount: e[3] }]);
        break;
      case 't':
        out.trash!.push([e[1], { ...e[2] }]);
        break;
      case 'p':
        out.pendingBumps!.push([e[1], e[2]]);
        break;
      case 'r':
        out.requests!.push(e[1]);
        break;
      case 'k':
        out.took!.push([e[1], e[2], e[3]]);
        break;
    }
  }
  if (links.length > 0) out.links = links;
  out.nextIno = ns.nextIno;
  return out;
}

/** Fills ns (new, empty) from a snapshot object, old ones (fields missing) included: Namespace.fromSnapshot(). */
export function restoreSnapshot(ns: Namespace, s: NamespaceSnapshot): Namespace {
  const loader = new NamespaceLoader(ns);
  loader.add(['s', { nextHandle: s.nextHandle, epoch: s.epoch ?? 1, appliedIndex: s.appliedIndex ?? 0, nextIno: s.nextIno ?? 1 }]);
  for (const [p, n] of s.nodes) loader.add(['n', p, n]);
  for (const [p, ino] of s.links ?? []) loader.add(['l', p, ino]);
  for (const [h, c] of s.chunks) loader.add(['c', h, c.version, c.refCount]);
  for (const [p, e] of s.trash ?? []) loader.add(['t', p, e]);
  for (const [h, v] of s.pendingBumps ?? []) loader.add(['p', h, v]);
  for (const r of s.requests ?? []) loader.add(['r', r]);
  for (const [h, v, servers] of s.took ?? []) loader.add(['k', h, v, servers]);
  return loader.finish();
}

function bad(what: string): never {
  throw new GfsError('CORRUPT', `checkpoint: ${what}`);
}

const isString = (v: unknown): v is string => typeof v === 'string';
const isInt = (v: unknown): v is number => Number.isSafeInteger(v);

/** Builds a namespace from checkpoint lines (parsed JSON), one at a time; refuses a line it does not know. */
export class NamespaceLoader {
  private readonly byIno = new Map<number, Node>();
  private gotScalars = false;

  /** ns: a new, empty namespace to fill. */
  constructor(private readonly ns: Namespace) {}

  add(line: unknown): void {
    if (!Array.isArray(line) || !isString(line[0])) bad(`a line is not a [kind, ...] array: ${JSON.stringify(line)?.slice(0, 80)}`);
    const ns = this.ns;
    const [kind, a, b, c] = line as [string, unknown, unknown, unknown];
    if (!this.gotScalars && kind !== 's') bad('the first line is not the "s" line');
    switch (kind) {
      case 's': {
        const s = a as Partial<Scalars> | null;
        if (this.gotScalars || !s || !isString(s.nextHandle) || !isInt(s.epoch) || !isInt(s.appliedIndex) || !isInt(s.nextIno)) bad('a bad "s" line');
        ns.nextHandle = BigInt(s.nextHandle);
        [ns.epoch, ns.appliedIndex, ns.nextIno] = [s.epoch, s.appliedIndex, s.nextIno];
        this.gotScalars = true;
        return;
      }
      case 'n': {
        if (!isString(a) || typeof b !== 'object' || b === null || !isString((b as Node).type)) bad(`a bad node line for ${String(a)}`);
        const n = withDefaults(b as Node);
        ns.restoreNode(a, n);
        if (n.ino !== undefined && (n.nlink ?? 1) > 1) this.byIno.set(n.ino, n);
        return;
      }
      case 'l': {
        const n = isInt(b) ? this.byIno.get(b) : undefined;
        if (!isString(a) || !n) bad(`${String(a)} is named a link of inode ${String(b)}, which the checkpoint does not hold`);
        ns.restoreNode(a, n);
        return;
      }
      case 'c':
        if (!isString(a) || !isInt(b) || !isInt(c)) bad(`a bad chunk line for ${String(a)}`);
        ns.chunks.set(a, { version: b, refCount: c });
        return;
      case 't':
        if (!isString(a) || typeof b !== 'object' || b === null) bad(`a bad trash line for ${String(a)}`);
        ns.trash.set(a, b as { path: string; deletedAtMs: number });
        return;
      case 'p':
        if (!isString(a) || !isInt(b)) bad(`a bad pending bump line for ${String(a)}`);
        ns.pendingBumps.set(a, b);
        return;
      case 'r':
        if (!isString(a)) bad('a bad request id line');
        ns.requests.add(a);
        return;
      case 'k':
        if (!isString(a) || !isInt(b) || !Array.isArray(c) || !c.every(isString)) bad(`a bad took line for ${String(a)}`);
        ns.took.set(a, { version: b, servers: new Set(c) });
        return;
      default:
        bad(`unknown line kind ${JSON.stringify(kind)}`);
    }
  }

  finish(): Namespace {
    if (!this.gotScalars) bad('no "s" line');
    return this.ns;
  }
}
