import { GfsError } from '../../shared/errors.js';
import { defaultModeOf } from '../../shared/file-types.js';

// The namespace's vocabulary (master/core/namespace.ts holds the state): the
// nodes and their POSIX attributes, the shapes of the log records, and the
// checks of the values a record carries (modes, ids, times). Pure data and
// pure functions; records are JSON as logged.

/**
 * POSIX attributes every node has. A time is whole milliseconds since the epoch (any safe integer:
 * before 1970 and past 2038 alike) plus the nanoseconds within that millisecond (0..999_999), so a
 * nanosecond time survives JSON without a bigint.
 */
export interface Attrs {
  /** Permission bits only (0o7777: set-uid, set-gid, sticky, rwx); the node's type is `type`. */
  mode: number;
  uid: number;
  gid: number;
  atimeMs: number;
  atimeNs: number;
  mtimeMs: number;
  mtimeNs: number;
  ctimeMs: number;
  ctimeNs: number;
  /**
   * Hard links: a node with several names is one object under each of them in the lookup table. `ino`
   * identifies it (given by its first 'link' record, kept for good; absent on a node never linked)
   * and `nlink` counts its names (absent means 1). Never on a directory.
   */
  ino?: number;
  nlink?: number;
}
export interface FileNode extends Attrs {
  type: 'file';
  replication: number;
  chunks: string[];
}
export interface DirNode extends Attrs {
  type: 'dir';
}
/** A symbolic link: its target is stored as written (never resolved by the master). */
export interface SymlinkNode extends Attrs {
  type: 'symlink';
  target: string;
}
/** The kinds of special file: metadata only, their I/O is the kernel's (a pipe, a socket, a device driver). */
export const specialTypes = ['fifo', 'socket', 'chardev', 'blockdev'] as const;
export type SpecialType = (typeof specialTypes)[number];
/** A FIFO, socket or device node (mknod); rdev is a device's number as the kernel encodes it (0 for the others). */
export interface SpecialNode extends Attrs {
  type: SpecialType;
  rdev: number;
}
export type Node = FileNode | DirNode | SymlinkNode | SpecialNode;
export type NodeType = Node['type'];

/** A time as logged in a setattr record: milliseconds since the epoch and the nanoseconds within it. */
export interface TimeSpec {
  ms: number;
  ns: number;
}

export const S_ISUID = 0o4000;
export const S_ISGID = 0o2000;
export const S_IXGRP = 0o010;
/** Longest symlink target kept (PATH_MAX). */
export const maxSymlinkTargetBytes = 4096;
/** Most names one node may have (EMLINK past it), as ext4 allows. */
export const maxLinks = 65_000;
/** Highest uid/gid: 2^32 - 2 (2^32 - 1 is chown's "leave unchanged"). */
export const maxId = 0xfffffffe;

/** Modes of nodes from before modes were kept (old checkpoints and logs), and of records without one. */
export const defaultMode: (type: NodeType) => number = defaultModeOf;

/** Attributes of a node made at `t` (ms) by uid:gid with mode. */
export function freshAttrs(mode: number, uid: number, gid: number, t: number): Attrs {
  return { mode, uid, gid, atimeMs: t, atimeNs: 0, mtimeMs: t, mtimeNs: 0, ctimeMs: t, ctimeNs: 0 };
}

/** A node as stored by code before modes, owners and nanoseconds were kept: the missing fields get their defaults. */
export function withDefaults(n: Node): Node {
  const o = n as Partial<Attrs> & Node;
  o.mode ??= defaultMode(n.type);
  o.uid ??= 0;
  o.gid ??= 0;
  o.mtimeNs ??= 0;
  o.ctimeNs ??= 0;
  o.atimeMs ??= o.mtimeMs;
  o.atimeNs ??= o.mtimeNs;
  return o;
}

export interface ChunkMeta {
  version: number;
  refCount: number;
}

export type Op =
  /** mode/uid/gid absent in older logs (defaults then: 0755, 0:0). Every directory made gets them. */
  | { op: 'mkdir'; paths: string[]; t: number; mode?: number; uid?: number; gid?: number }
  /** mode/uid/gid absent in older logs (defaults then: 0644, 0:0). */
  | { op: 'create'; path: string; replication: number; t: number; mode?: number; uid?: number; gid?: number }
  | { op: 'symlink'; path: string; target: string; uid: number; gid: number; t: number }
  /** A special file (mkfifo, mknod, a socket bound to a path). */
  | { op: 'mknod'; path: string; type: SpecialType; rdev: number; mode: number; uid: number; gid: number; t: number }
  /**
   * chmod, chown, utimens: only the fields present change; ctime becomes t (+ tNs). Times are explicit
   * (UTIME_NOW is resolved to a time before logging; UTIME_OMIT is an absent field), so replay is exact.
   * A chown of a non-directory carries the mode too, without set-uid (and set-gid where group exec is set), as Linux drops them.
   */
  | { op: 'setattr'; path: string; mode?: number; uid?: number; gid?: number; atime?: TimeSpec; mtime?: TimeSpec; t: number; tNs?: number }
  | { op: 'delete'; path: string; t: number }
  /** A file shrunk: it keeps its first `chunks` chunks (the last of them is cut to the new end by its primary); mtime and ctime become t. */
  | { op: 'truncate'; path: string; chunks: number; t: number }
  | { op: 'rename'; src: string; dst: string; t: number }
  /** A hard link: dst becomes another name of the node at src (not a directory); its ctime becomes t. */
  | { op: 'link'; src: string; dst: string; t: number }
  | { op: 'allocate'; path: string; fromIndex: number; handles: string[]; version: number; t: number }
  /**
   * A new chunk version. With `pendingFrom`, a lease grant's bump whose
   * replicas have not been told yet: until the matching 'bumped' record, no
   * client holds a lease at this version, so no mutation happened at it and
   * replicas still at `pendingFrom` hold the same data (see Master recovery).
   */
  | { op: 'version'; handle: string; version: number; pendingFrom?: number }
  /**
   * The replicas took the bump logged by 'version' with pendingFrom. `servers` (absent in older logs)
   * names every replica that took it: after a restart, a replica reporting this version without
   * being named (it applied the bump late and missed the mutations since) is judged stale.
   */
  | { op: 'bumped'; handle: string; version: number; servers?: string[] }
  /** A clone finished: `server` holds `version` of the chunk (it joins the replicas that took it). */
  | { op: 'took'; handle: string; version: number; server: string }
  /** Copy-on-write: chunk `index` of `path` now refers to `newHandle`, a local copy of `oldHandle` at `version`. */
  | { op: 'cow'; path: string; index: number; oldHandle: string; newHandle: string; version: number; t: number }
  /** A handle taken before its chunk exists (a copy-on-write copy is made before its 'cow' record): never handed out again. */
  | { op: 'reserve'; handle: string }
  | { op: 'snapshot'; src: string; dst: string; t: number }
  /** Lazy deletion: move `path` to `to` (under the trash), making the missing trash directories. */
  | { op: 'trash'; path: string; to: string; t: number }
  /** A shadow promoted to master (master/replicas.ts): orders from lower epochs are fenced off. */
  | { op: 'epoch'; epoch: number; t: number };

export interface TrashEntry {
  /** Where the file or directory was before it was deleted. */
  path: string;
  deletedAtMs: number;
}

export interface NamespaceSnapshot {
  nodes: [string, Node][];
  chunks: [string, ChunkMeta][];
  nextHandle: string;
  trash?: [string, TrashEntry][];
  pendingBumps?: [string, number][];
  epoch?: number;
  /** Records applied to reach this state (the log index of the last one). */
  appliedIndex?: number;
  /** Request ids of recent mutations, oldest first (the retry cache). */
  requests?: string[];
  /** Per chunk, the version last bumped or cloned and the replicas known to have taken it. */
  took?: [string, number, string[]][];
  /**
   * The further names of hard-linked nodes: [path, ino]. A linked node is in `nodes` once, under one
   * of its names, with its `ino`; each other name refers to it here, so a restart keeps one node.
   */
  links?: [string, number][];
  /** The next inode number a 'link' record gives. */
  nextIno?: number;
}

/** Mutations remembered by request id, so a client's retry of one whose answer was lost is not done twice. */
export const maxRememberedRequests = 100_000;

export { initialChunkVersion } from '../../shared/wire.js';

/** What a creation may set: absent fields get defaults (the type's mode, uid/gid 0). */
export interface Owner {
  mode?: number;
  uid?: number;
  gid?: number;
}

/** What a setattr changes: only the fields present. */
export interface AttrChange {
  mode?: number;
  uid?: number;
  gid?: number;
  atime?: TimeSpec;
  mtime?: TimeSpec;
}

/** A record's mode, uid and gid, each left out where it is the default (records stay as short as before for most creates). */
export function ownerFields(type: NodeType, mode: number, uid: number, gid: number): Owner {
  return { ...(mode !== defaultMode(type) ? { mode } : {}), ...(uid !== 0 ? { uid } : {}), ...(gid !== 0 ? { gid } : {}) };
}

export function checkMode(mode: number): number {
  if (!Number.isInteger(mode) || mode < 0 || mode > 0o7777) throw new GfsError('BAD_REQUEST', `mode ${mode} is not within 0..07777`);
  return mode;
}

export function checkId(id: number): number {
  if (!Number.isInteger(id) || id < 0 || id > maxId) throw new GfsError('BAD_REQUEST', `uid/gid ${id} is not within 0..${maxId}`);
  return id;
}

export function checkNs(ns: number): number {
  if (!Number.isInteger(ns) || ns < 0 || ns > 999_999) throw new GfsError('BAD_REQUEST', `nanoseconds within a millisecond ${ns} is not within 0..999999`);
  return ns;
}

export function checkTime(t: TimeSpec): TimeSpec {
  if (!Number.isSafeInteger(t.ms)) throw new GfsError('BAD_REQUEST', `time ${t.ms} ms is not a safe integer`);
  return { ms: t.ms, ns: checkNs(t.ns) };
}

