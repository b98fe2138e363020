import { GfsError, invariant } from '../../shared/errors.js';
import { ancestorsOf, baseName, isUnder, joinPath, parentOf } from '../../shared/paths.js';
import { initialChunkVersion } from '../../shared/wire.js';
import { handleFromBigInt } from '../../shared/handles.js';
import { applyChunkRecord, unrefChunk } from './chunk-records.js';
import { restoreSnapshot, snapshotOf } from './namespace-lines.js';
import {
  checkId,
  checkMode,
  checkNs,
  checkTime,
  defaultMode,
  freshAttrs,
  maxLinks,
  maxRememberedRequests,
  maxSymlinkTargetBytes,
  ownerFields,
  S_ISGID,
  S_ISUID,
  S_IXGRP,
  specialTypes,
  type AttrChange,
  type ChunkMeta,
  type DirNode,
  type FileNode,
  type NamespaceSnapshot,
  type Node,
  type Op,
  type Owner,
  type SpecialType,
  type TrashEntry,
} from './records.js';

// The master's metadata: a lookup table from full path to node, each file an
// ordered list of chunk handles, each chunk its version and reference count.
// Chunk locations are not here: they are learned from chunkservers. The
// nodes, the records and the checks of their values are master/core/records.ts.
//
// Mutations are log records. `check*` functions validate a mutation against
// the current state (throwing GfsError for bad requests) and build its
// record; `apply` changes the state and is deterministic, so replaying the
// log after a checkpoint rebuilds exactly the state the master had.

export * from './records.js';

export class Namespace {
  readonly nodes = new Map<string, Node>();
  readonly chunks = new Map<string, ChunkMeta>();
  /**
   * Children by directory: an index derived from `nodes` for listing only. It
   * is never locked, logged or checkpointed; the lookup table is the truth.
   */
  private readonly children = new Map<string, Set<string>>();
  nextHandle = 1n;
  /** Trash path -> what it was, for undelete and reclaim. Logged through the 'trash' op. */
  readonly trash = new Map<string, TrashEntry>();
  /** Chunks whose last version bump was logged but not yet confirmed as taken: handle -> version before it. */
  readonly pendingBumps = new Map<string, number>();
  /** The inode number the next 'link' of a node never linked gives it (hard links only need one). */
  nextIno = 1;
  /** The master epoch: raised by each promotion of a shadow, logged, never lowered. */
  epoch = 1;
  /** Log index of the last record applied: log replicas and shadows count in it (master/replicas.ts). */
  appliedIndex = 0;
  /**
   * The retry cache: request ids (client id + call) of the latest mutations, logged with them
   * (`rid`), so it survives restarts and failover to a shadow. Bounded, oldest evicted first.
   */
  readonly requests = new Set<string>();
  /**
   * Per chunk, the replicas logged as having taken its version (a bump's 'bumped', a clone's 'took').
   * One that reports that version without being named applied the bump late (it was paused, or the
   * answer was lost): it is no lease's secondary and missed the mutations since, so it is stale
   * (master/core/report.ts). The only copy: logged, so a restarted master or a promoted shadow
   * has it as the log says, and read by the live view where it judges replicas.
   */
  readonly took = new Map<string, { version: number; servers: Set<string> }>();

  constructor() {
    this.putNode('/', { type: 'dir', ...freshAttrs(defaultMode('dir'), 0, 0, 0) });
  }

  // ---- reads ----
  get(path: string): Node | undefined {
    return this.nodes.get(path);
  }

  getFile(path: string): FileNode {
    const n = this.nodes.get(path);
    if (!n) throw new GfsError('NOT_FOUND', `no such file: ${path}`);
    if (n.type === 'symlink') throw new GfsError('BAD_REQUEST', `is a symbolic link: ${path}`);
    if (n.type === 'dir') throw new GfsError('IS_A_DIRECTORY', `is a directory: ${path}`);
    if (n.type !== 'file') throw new GfsError('BAD_REQUEST', `not a regular file (a ${n.type}): ${path}`);
    return n;
  }

  childNames(dir: string): string[] {
    return [...(this.children.get(dir) ?? [])].sort();
  }

  /** Every path at or below root (root first, then depth-first in name order). */
  subtree(root: string): string[] {
    const out: string[] = [];
    const walk = (p: string) => {
      out.push(p);
      for (const name of this.childNames(p)) walk(joinPath(p, name));
    };
    if (this.nodes.has(root)) walk(root);
    return out;
  }

  get fileCount(): number {
    let n = 0;
    for (const node of this.nodes.values()) if (node.type === 'file') n++;
    return n;
  }

  // ---- validation: build a record or throw ----
  checkMkdir(path: string, parents: boolean, t: number, owner: Owner = {}): Op | undefined {
    const existing = this.nodes.get(path);
    if (existing) {
      if (existing.type === 'dir' && parents) return undefined;
      throw new GfsError('EXISTS', `already exists: ${path}`);
    }
    const missing: string[] = [];
    for (const a of ancestorsOf(path)) {
      const n = this.nodes.get(a);
      if (!n) {
        if (!parents) throw new GfsError('NOT_FOUND', `no such directory: ${a}`);
        missing.push(a);
      } else if (n.type !== 'dir') throw new GfsError('NOT_A_DIRECTORY', `not a directory: ${a}`);
    }
    // A directory made in a set-gid directory takes its group and keeps the bit (as Linux and BSD do).
    const inherit = this.setGidParent(missing[0] ?? path);
    const mode = checkMode(owner.mode ?? defaultMode('dir')) | (inherit ? S_ISGID : 0);
    return { op: 'mkdir', paths: [...missing, path], t, ...ownerFields('dir', mode, checkId(owner.uid ?? 0), checkId(inherit ? inherit.gid : (owner.gid ?? 0))) };
  }

  /** The parent of path when it is a directory with set-gid (its entries take its group). */
  private setGidParent(path: string): DirNode | undefined {
    const p = this.nodes.get(parentOf(path));
    return p?.type === 'dir' && (p.mode & S_ISGID) !== 0 ? p : undefined;
  }

  private checkParentDir(path: string): void {
    const parent = parentOf(path);
    const p = this.nodes.get(parent);
    if (!p) throw new GfsError('NOT_FOUND', `no such directory: ${parent}`);
    if (p.type !== 'dir') throw new GfsError('NOT_A_DIRECTORY', `not a directory: ${parent}`);
  }

  checkCreate(path: string, replication: number, t: number, owner: Owner = {}): Op {
    if (path === '/') throw new GfsError('EXISTS', 'the root directory exists');
    if (this.nodes.has(path)) throw new GfsError('EXISTS', `already exists: ${path}`);
    this.checkParentDir(path);
    const inherit = this.setGidParent(path);
    return { op: 'create', path, replication, t, ...ownerFields('file', checkMode(owner.mode ?? defaultMode('file')), checkId(owner.uid ?? 0), checkId(inherit ? inherit.gid : (owner.gid ?? 0))) };
  }

  checkSymlink(path: string, target: string, t: number, owner: Owner = {}): Op {
    if (path === '/' || this.nodes.has(path)) throw new GfsError('EXISTS', `already exists: ${path}`);
    if (target.length === 0) throw new GfsError('NOT_FOUND', 'a symbolic link needs a target');
    if (Buffer.byteLength(target) > maxSymlinkTargetBytes) throw new GfsError('NAME_TOO_LONG', `symbolic link target longer than ${maxSymlinkTargetBytes} bytes`);
    if (target.includes('\0')) throw new GfsError('INVALID_PATH', 'symbolic link target contains NUL');
    this.checkParentDir(path);
    const inherit = this.setGidParent(path);
    return { op: 'symlink', path, target, uid: checkId(owner.uid ?? 0), gid: checkId(inherit ? inherit.gid : (owner.gid ?? 0)), t };
  }

  checkMknod(path: string, type: SpecialType, rdev: number, t: number, owner: Owner = {}): Op {
    if (path === '/' || this.nodes.has(path)) throw new GfsError('EXISTS', `already exists: ${path}`);
    if (!specialTypes.includes(type)) throw new GfsError('BAD_REQUEST', `not a kind of special file: ${String(type)}`);
    const isDevice = type === 'chardev' || type === 'blockdev';
    if (!Number.isInteger(rdev) || rdev < 0 || rdev > 0xffffffff || (!isDevice && rdev !== 0)) throw new GfsError('BAD_REQUEST', `device number ${rdev} is not within 0..2^32-1 (and 0 for a ${type})`);
    this.checkParentDir(path);
    const inherit = this.setGidParent(path);
    return { op: 'mknod', path, type, rdev, t, mode: checkMode(owner.mode ?? defaultMode(type)), uid: checkId(owner.uid ?? 0), gid: checkId(inherit ? inherit.gid : (owner.gid ?? 0)) };
  }

  /**
   * chmod/chown/utimens of one node; `t` (+ tNs) is the new ctime, and the time UTIME_NOW meant
   * (resolved by the caller). A chown (uid or gid given) of a non-directory also drops set-uid, and
   * set-gid where group exec is set, from the mode it leaves, as Linux does.
   */
  checkSetattr(path: string, change: AttrChange, t: number, tNs = 0): Op {
    const n = this.nodes.get(path);
    if (!n) throw new GfsError('NOT_FOUND', `no such file or directory: ${path}`);
    const op: Extract<Op, { op: 'setattr' }> = { op: 'setattr', path, t, ...(tNs ? { tNs: checkNs(tNs) } : {}) };
    if (change.mode !== undefined) op.mode = checkMode(change.mode);
    if (change.uid !== undefined) op.uid = checkId(change.uid);
    if (change.gid !== undefined) op.gid = checkId(change.gid);
    if (change.atime !== undefined) op.atime = checkTime(change.atime);
    if (change.mtime !== undefined) op.mtime = checkTime(change.mtime);
    if ((op.uid !== undefined || op.gid !== undefined) && n.type === 'file') {
      const mode = op.mode ?? n.mode;
      const kill = S_ISUID | ((mode & (S_ISGID | S_IXGRP)) === (S_ISGID | S_IXGRP) ? S_ISGID : 0);
      if ((mode & kill) !== 0) op.mode = mode & ~kill;
    }
    return op;
  }

  /**
   * Shrinking `path` to sizeBytes: the chunks wholly past the new end leave the file (a file is never
   * grown here: a write past its end does that). The chunk that holds the new end is cut by its
   * primary on every replica (POST /chunk/truncate); this record does not know chunk lengths.
   */
  checkTruncate(path: string, sizeBytes: number, chunkSizeBytes: number, t: number): Extract<Op, { op: 'truncate' }> {
    const f = this.getFile(path);
    if (!Number.isSafeInteger(sizeBytes) || sizeBytes < 0) throw new GfsError('BAD_REQUEST', `size ${sizeBytes} is not a non-negative integer`);
    return { op: 'truncate', path, chunks: Math.min(f.chunks.length, Math.ceil(sizeBytes / chunkSizeBytes)), t };
  }

  checkDelete(path: string, recursive: boolean, t: number): Op {
    if (path === '/') throw new GfsError('BAD_REQUEST', 'cannot delete the root directory');
    const n = this.nodes.get(path);
    if (!n) throw new GfsError('NOT_FOUND', `no such file or directory: ${path}`);
    if (n.type === 'dir' && !recursive && (this.children.get(path)?.size ?? 0) > 0) throw new GfsError('NOT_EMPTY', `directory not empty: ${path}`);
    return { op: 'delete', path, t };
  }

  checkRename(src: string, dst: string, t: number): Op {
    if (src === '/' || dst === '/') throw new GfsError('BAD_REQUEST', 'cannot rename the root directory');
    const n = this.nodes.get(src);
    if (!n) throw new GfsError('NOT_FOUND', `no such file or directory: ${src}`);
    if (src === dst) throw new GfsError('EXISTS', `source and destination are the same: ${src}`);
    if (isUnder(dst, src)) throw new GfsError('BAD_REQUEST', `cannot move ${src} into itself`);
    if (this.nodes.has(dst)) throw new GfsError('EXISTS', `already exists: ${dst}`);
    this.checkParentDir(dst);
    return { op: 'rename', src, dst, t };
  }

  /** A hard link: dst becomes another name of src's node. Directories have one name each (EPERM, as Linux). */
  checkLink(src: string, dst: string, t: number): Op {
    const n = this.nodes.get(src);
    if (!n) throw new GfsError('NOT_FOUND', `no such file: ${src}`);
    if (n.type === 'dir') throw new GfsError('NOT_PERMITTED', `a directory cannot have a hard link: ${src}`);
    if (dst === '/' || this.nodes.has(dst)) throw new GfsError('EXISTS', `already exists: ${dst}`);
    if ((n.nlink ?? 1) >= maxLinks) throw new GfsError('TOO_MANY_LINKS', `${src} has ${maxLinks} names, the most one file may have`);
    this.checkParentDir(dst);
    return { op: 'link', src, dst, t };
  }

  /**
   * The inos of the hard-linked nodes at path (and under it, with `tree`): what a change of their
   * chunk lists locks besides paths, since their other names are other paths (master/locks.ts).
   */
  inosAt(path: string, tree = false): number[] {
    const out: number[] = [];
    for (const p of tree ? this.subtree(path) : [path]) {
      const ino = this.nodes.get(p)?.ino;
      if (ino !== undefined) out.push(ino);
    }
    return out;
  }

  checkTrash(path: string, to: string, recursive: boolean, t: number): Op {
    const del = this.checkDelete(path, recursive, t);
    invariant(del.op === 'delete', 'checkDelete built another op');
    if (this.nodes.has(to)) throw new GfsError('EXISTS', `trash entry exists: ${to}`);
    return { op: 'trash', path, to, t };
  }

  checkSnapshot(src: string, dst: string, t: number): Op {
    if (!this.nodes.has(src)) throw new GfsError('NOT_FOUND', `no such file or directory: ${src}`);
    if (isUnder(dst, src)) throw new GfsError('BAD_REQUEST', `cannot snapshot ${src} into itself`);
    if (this.nodes.has(dst)) throw new GfsError('EXISTS', `already exists: ${dst}`);
    this.checkParentDir(dst);
    return { op: 'snapshot', src, dst, t };
  }

  /**
   * Copy-on-write of chunk `index` of a file whose chunk is shared (refCount > 1):
   * takes a fresh handle for the copy; the copy keeps the chunk's version.
   */
  checkCow(path: string, index: number, t: number): Extract<Op, { op: 'cow' }> {
    const f = this.getFile(path);
    const oldHandle = f.chunks[index];
    if (oldHandle === undefined) throw new GfsError('NOT_FOUND', `${path} has no chunk ${index}`);
    const meta = this.chunks.get(oldHandle);
    invariant(meta, `file refers to unknown chunk ${oldHandle}`);
    if (meta.refCount <= 1) throw new GfsError('BAD_REQUEST', `chunk ${index} of ${path} is not shared`);
    return { op: 'cow', path, index, oldHandle, newHandle: handleFromBigInt(this.nextHandle++), version: meta.version, t };
  }

  /** Allocation of every missing chunk up to `index`; undefined when it already exists. Takes fresh handles. */
  checkAllocate(path: string, index: number, t: number): Op | undefined {
    const f = this.getFile(path);
    if (index < f.chunks.length) return undefined;
    const handles: string[] = [];
    for (let i = f.chunks.length; i <= index; i++) handles.push(handleFromBigInt(this.nextHandle++));
    return { op: 'allocate', path, fromIndex: f.chunks.length, handles, version: initialChunkVersion, t };
  }

  // ---- apply ----
  /** Applies one logged record: the log index moves by exactly one, whatever the record does inside. */
  apply(op: Op): void {
    this.appliedIndex++;
    const rid = (op as { rid?: unknown }).rid;
    if (typeof rid === 'string') {
      this.requests.add(rid);
      if (this.requests.size > maxRememberedRequests) this.requests.delete(this.requests.values().next().value!);
    }
    this.applyChange(op);
  }

  /**
   * The state change of a record, without counting it: a record built of others (trash = mkdirs + rename)
   * calls this for its parts, so log replicas, which count one index per record, never see a gap.
   */
  private applyChange(op: Op): void {
    if (op.op === 'allocate' || op.op === 'reserve' || op.op === 'cow' || op.op === 'version' || op.op === 'bumped' || op.op === 'took') applyChunkRecord(this, op);
    else if (op.op === 'delete' || op.op === 'rename' || op.op === 'trash' || op.op === 'snapshot' || op.op === 'link') this.applyTreeChange(op);
    else this.applyPathChange(op);
  }

  /** Records that change one node: directories, files, links, special files, attributes, truncation; and the epoch. */
  private applyPathChange(op: Exclude<Op, { op: 'allocate' | 'reserve' | 'cow' | 'version' | 'bumped' | 'took' | 'delete' | 'rename' | 'trash' | 'snapshot' | 'link' }>): void {
    switch (op.op) {
      case 'epoch':
        invariant(op.epoch > this.epoch, `epoch ${op.epoch} does not raise ${this.epoch}`);
        this.epoch = op.epoch;
        return;
      case 'mkdir':
        for (const p of op.paths) if (!this.nodes.has(p)) this.putNode(p, { type: 'dir', ...freshAttrs(op.mode ?? defaultMode('dir'), op.uid ?? 0, op.gid ?? 0, op.t) });
        this.touch(parentOf(op.paths[0]!), op.t);
        return;
      case 'create':
        invariant(!this.nodes.has(op.path), `create of existing ${op.path}`);
        this.putNode(op.path, { type: 'file', replication: op.replication, chunks: [], ...freshAttrs(op.mode ?? defaultMode('file'), op.uid ?? 0, op.gid ?? 0, op.t) });
        this.touch(parentOf(op.path), op.t);
        return;
      case 'symlink':
        invariant(!this.nodes.has(op.path), `symlink over existing ${op.path}`);
        this.putNode(op.path, { type: 'symlink', target: op.target, ...freshAttrs(defaultMode('symlink'), op.uid, op.gid, op.t) });
        this.touch(parentOf(op.path), op.t);
        return;
      case 'mknod':
        invariant(!this.nodes.has(op.path), `mknod over existing ${op.path}`);
        this.putNode(op.path, { type: op.type, rdev: op.rdev, ...freshAttrs(op.mode, op.uid, op.gid, op.t) });
        this.touch(parentOf(op.path), op.t);
        return;
      case 'setattr': {
        const n = this.nodes.get(op.path);
        invariant(n, `setattr of missing ${op.path}`);
        if (op.mode !== undefined) n.mode = op.mode;
        if (op.uid !== undefined) n.uid = op.uid;
        if (op.gid !== undefined) n.gid = op.gid;
        if (op.atime !== undefined) [n.atimeMs, n.atimeNs] = [op.atime.ms, op.atime.ns];
        if (op.mtime !== undefined) [n.mtimeMs, n.mtimeNs] = [op.mtime.ms, op.mtime.ns];
        [n.ctimeMs, n.ctimeNs] = [op.t, op.tNs ?? 0];
        return;
      }
      case 'truncate': {
        const f = this.getFile(op.path);
        invariant(op.chunks <= f.chunks.length, `truncate of ${op.path} to ${op.chunks} chunks, it has ${f.chunks.length}`);
        for (const h of f.chunks.splice(op.chunks)) unrefChunk(this, h);
        [f.mtimeMs, f.mtimeNs, f.ctimeMs, f.ctimeNs] = [op.t, 0, op.t, 0];
        return;
      }
    }
  }

  /** Records that change a whole subtree or the names of a node: deletion, renames, hard links, the trash, snapshots. */
  private applyTreeChange(op: Extract<Op, { op: 'delete' | 'rename' | 'trash' | 'snapshot' | 'link' }>): void {
    switch (op.op) {
      case 'link': {
        const n = this.nodes.get(op.src);
        invariant(n && n.type !== 'dir', `link of missing or directory ${op.src}`);
        invariant(!this.nodes.has(op.dst), `link over existing ${op.dst}`);
        n.ino ??= this.nextIno++;
        n.nlink = (n.nlink ?? 1) + 1;
        [n.ctimeMs, n.ctimeNs] = [op.t, 0];
        this.putNode(op.dst, n);
        this.touch(parentOf(op.dst), op.t);
        return;
      }
      case 'delete': {
        // Trash entries are paths of nodes (the trash record moves a node there), so the ones going are in
        // the subtree: looked up there, not by scanning a trash that may hold a million entries.
        for (const p of this.subtree(op.path).reverse()) {
          this.trash.delete(p);
          const n = this.nodes.get(p)!;
          if ((n.nlink ?? 1) > 1) {
            // Another name keeps the node and its data; unlink moves its ctime, as Linux does.
            n.nlink! -= 1;
            [n.ctimeMs, n.ctimeNs] = [op.t, 0];
          } else if (n.type === 'file') for (const h of n.chunks) unrefChunk(this, h);
          this.dropNode(p);
        }
        this.touch(parentOf(op.path), op.t);
        return;
      }
      case 'rename': {
        const moved = this.subtree(op.src).map((p) => [p, this.nodes.get(p)!] as const);
        for (const [p] of [...moved].reverse()) {
          this.trash.delete(p);
          this.dropNode(p);
        }
        for (const [p, n] of moved) this.putNode(op.dst + p.slice(op.src.length), n);
        // Linux moves the renamed node's ctime too.
        if (moved.length > 0) [moved[0]![1].ctimeMs, moved[0]![1].ctimeNs] = [op.t, 0];
        this.touch(parentOf(op.src), op.t);
        this.touch(parentOf(op.dst), op.t);
        return;
      }
      case 'trash': {
        for (const a of ancestorsOf(op.to)) if (!this.nodes.has(a)) this.putNode(a, { type: 'dir', ...freshAttrs(0o700, 0, 0, op.t) });
        this.applyChange({ op: 'rename', src: op.path, dst: op.to, t: op.t });
        this.trash.set(op.to, { path: op.path, deletedAtMs: op.t });
        return;
      }
      case 'snapshot': {
        // Names of one node inside the tree stay names of one node in the copy (a new ino, nlink
        // counting the names copied); names outside the tree are not the copy's.
        const linked = new Map<Node, Node>();
        for (const p of this.subtree(op.src)) {
          const n = this.nodes.get(p)!;
          const shared = n.ino !== undefined ? linked.get(n) : undefined;
          if (shared) {
            shared.nlink! += 1;
            this.putNode(op.dst + p.slice(op.src.length), shared);
            continue;
          }
          // Modes, owners, link targets and atime/mtime are copied; the copy's ctime is the snapshot's.
          const copy: Node = n.type === 'file' ? { ...n, chunks: n.chunks.slice(), ctimeMs: op.t, ctimeNs: 0 } : { ...n, ctimeMs: op.t, ctimeNs: 0 };
          if (copy.type === 'file') for (const h of copy.chunks) this.chunks.get(h)!.refCount++;
          if (n.ino !== undefined) {
            copy.ino = this.nextIno++;
            copy.nlink = 1;
            linked.set(n, copy);
          }
          this.putNode(op.dst + p.slice(op.src.length), copy);
        }
        this.touch(parentOf(op.dst), op.t);
        return;
      }
    }
  }

  /** A directory's entries changed at t: its mtime and ctime move (never back: records may carry times slightly out of order). */
  private touch(dir: string, t: number): void {
    const n = this.nodes.get(dir);
    if (!n) return;
    if (t > n.mtimeMs) [n.mtimeMs, n.mtimeNs] = [t, 0];
    if (t > n.ctimeMs) [n.ctimeMs, n.ctimeNs] = [t, 0];
  }

  /** A node read back from a checkpoint (master/core/namespace-lines.ts): put as it was, no record applied. */
  restoreNode(path: string, node: Node): void {
    this.putNode(path, node);
  }

  private putNode(path: string, node: Node): void {
    this.nodes.set(path, node);
    if (path !== '/') {
      const parent = parentOf(path);
      let set = this.children.get(parent);
      if (!set) this.children.set(parent, (set = new Set()));
      set.add(baseName(path));
    }
  }

  private dropNode(path: string): void {
    this.nodes.delete(path);
    this.children.delete(path);
    const set = this.children.get(parentOf(path));
    set?.delete(baseName(path));
    if (set && set.size === 0) this.children.delete(parentOf(path));
  }

  // ---- checkpoints (master/core/namespace-lines.ts) ----
  /** A copy that later mutations cannot change (taken synchronously at a log boundary). */
  snapshot(): NamespaceSnapshot {
    return snapshotOf(this);
  }

  static fromSnapshot(s: NamespaceSnapshot): Namespace {
    return restoreSnapshot(new Namespace(), s);
  }
}
