import { GfsError } from '../../shared/errors.js';
import { Namespace, withDefaults, type Node } from './namespace.js';

// The namespace as checkpoint lines (master/checkpoint-stream.ts writes and
// reads the file): written entry by entry straight from the live tables, and
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

/** The lines of ns as they stand (the caller keeps it still while it iterates: a worker's own copy, say). */
export function* namespaceLines(ns: Namespace): Generator<string> {
  const scalars: Scalars = { nextHandle: ns.nextHandle.toString(), epoch: ns.epoch, appliedIndex: ns.appliedIndex, nextIno: ns.nextIno };
  yield JSON.stringify(['s', scalars]);
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
    yield JSON.stringify(['n', path, n]);
  }
  for (const [path, ino] of links) yield JSON.stringify(['l', path, ino]);
  for (const [h, c] of ns.chunks) yield JSON.stringify(['c', h, c.version, c.refCount]);
  for (const [p, e] of ns.trash) yield JSON.stringify(['t', p, e]);
  for (const [h, v] of ns.pendingBumps) yield JSON.stringify(['p', h, v]);
  for (const r of ns.requests) yield JSON.stringify(['r', r]);
  for (const [h, t] of ns.took) yield JSON.stringify(['k', h, t.version, [...t.servers]]);
}

function bad(what: string): never {
  throw new GfsError('CORRUPT', `checkpoint: ${what}`);
}

const isString = (v: unknown): v is string => typeof v === 'string';
const isInt = (v: unknown): v is number => Number.isSafeInteger(v);

/** Builds a namespace from checkpoint lines (parsed JSON), one at a time; refuses a line it does not know. */
export class NamespaceLoader {
  private readonly ns = new Namespace();
  private readonly byIno = new Map<number, Node>();
  private gotScalars = false;

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
