// shared/: code common to the three programs (master, chunkserver, client):
// wire types and validation (this file), the RPC helper, HTTP conventions and
// limits, authentication, TLS, errors, paths, checksums, logging, metrics,
// settings, the fault layer. It imports only npm packages and itself, never
// master/, chunkserver/ or client/.
import { z } from 'zod';
import { isHandle } from './handles.js';

// Wire types: every request and answer between client, master and
// chunkserver, defined once and used by both ends. Paths are further checked
// by normalizePath, handles by isHandle; sizes are bounded.

export const pathSchema = z.string().min(1).max(4096);
export const handleSchema = z.string().refine(isHandle, 'invalid chunk handle');
export const nodeIdSchema = z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, 'invalid node id');
export const urlSchema = z.string().url().max(400);
export const rackSchema = z.string().regex(/^[A-Za-z0-9_.:-]{1,64}$/, 'invalid rack label');
export const idSchema = z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, 'invalid id');
const version = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);
const bytes = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);
export const replicationSchema = z.number().int().min(1).max(16);

// ---- namespace (client -> master) ----
/** Permission bits of a mode (the type is the operation's). */
export const modeSchema = z.number().int().min(0).max(0o7777);
/** A uid or gid: 2^32 - 1 is chown's "leave unchanged", never stored. */
export const idNumberSchema = z.number().int().min(0).max(0xfffffffe);
/** The mode and owner a creation sets (absent: the type's default mode, 0:0). */
const ownerFields = { mode: modeSchema.optional(), uid: idNumberSchema.optional(), gid: idNumberSchema.optional() };
/** A time: ms since the epoch (any safe integer: before 1970, past 2038) and the ns within that ms; or "now" (the master's clock). */
export const timeSchema = z.union([z.object({ ms: z.number().int().min(Number.MIN_SAFE_INTEGER).max(Number.MAX_SAFE_INTEGER), ns: z.number().int().min(0).max(999_999) }).strict(), z.literal('now')]);
export type TimeArg = z.infer<typeof timeSchema>;
export const mkdirReq = z.object({ path: pathSchema, parents: z.boolean().optional(), ...ownerFields }).strict();
export const createReq = z.object({ path: pathSchema, replication: replicationSchema.optional(), exclusive: z.boolean().optional(), ...ownerFields }).strict();
/** chmod, chown, utimens in one: only the fields given change (an absent time is UTIME_OMIT); ctime becomes now. */
export const setattrReq = z.object({ path: pathSchema, mode: modeSchema.optional(), uid: idNumberSchema.optional(), gid: idNumberSchema.optional(), atime: timeSchema.optional(), mtime: timeSchema.optional() }).strict();
export type SetattrReq = z.infer<typeof setattrReq>;
/** A symbolic link at path to target, stored as written (up to PATH_MAX bytes, checked by the master). */
export const symlinkReq = z.object({ path: pathSchema, target: z.string().min(1).max(4096), uid: idNumberSchema.optional(), gid: idNumberSchema.optional() }).strict();
/** A FIFO, socket or device node at path; rdev for devices only (as the kernel encodes it). */
export const mknodReq = z
  .object({ path: pathSchema, type: z.enum(['fifo', 'socket', 'chardev', 'blockdev']), rdev: z.number().int().min(0).max(0xffffffff).optional(), ...ownerFields })
  .strict();
export type MknodReq = z.infer<typeof mknodReq>;
export const deleteReq = z.object({ path: pathSchema, recursive: z.boolean().optional(), now: z.boolean().optional() }).strict();
export const undeleteReq = z.object({ path: pathSchema }).strict();
export const renameReq = z.object({ src: pathSchema, dst: pathSchema }).strict();
/** A hard link: dst becomes another name of the file at src. */
export const linkReq = z.object({ src: pathSchema, dst: pathSchema }).strict();
/** Most operations one batch may carry: bounds the request body, the work one call holds the master to, and the answer. */
export const maxBatchOps = 1000;
/** One namespace operation of a batch (POST /api/batch); each is answered on its own. */
export const batchOpSchema = z.discriminatedUnion('op', [
  z.object({ op: z.literal('mkdir'), path: pathSchema, parents: z.boolean().optional(), ...ownerFields }).strict(),
  z.object({ op: z.literal('create'), path: pathSchema, replication: replicationSchema.optional(), exclusive: z.boolean().optional(), ...ownerFields }).strict(),
  z.object({ op: z.literal('delete'), path: pathSchema, recursive: z.boolean().optional(), now: z.boolean().optional() }).strict(),
  z.object({ op: z.literal('undelete'), path: pathSchema }).strict(),
  z.object({ op: z.literal('rename'), src: pathSchema, dst: pathSchema }).strict(),
  z.object({ op: z.literal('stat'), path: pathSchema }).strict(),
]);
export type BatchOp = z.infer<typeof batchOpSchema>;
export const batchReq = z.object({ ops: z.array(batchOpSchema).min(1).max(maxBatchOps) }).strict();
/** Per operation, in the order asked: done (with the file's info for create and stat) or why not. */
export type BatchResult = { ok: true; info?: FileInfo } | { ok: false; error: string; code: string };
export interface BatchAnswer {
  results: BatchResult[];
}
export const snapshotReq = z.object({ src: pathSchema, dst: pathSchema }).strict();
/** The longest file gfs keeps (1 PiB): offsets stay exact in a double, and a length past it is FILE_TOO_LARGE (EFBIG). */
export const maxFileSizeBytes = 2 ** 50;
/** Shrink a file to sizeBytes (the master drops the chunks past the new end; the client cuts the last one). */
export const truncateReq = z.object({ path: pathSchema, sizeBytes: z.number().int().min(0).max(maxFileSizeBytes) }).strict();
export const pathQuery = z.object({ path: pathSchema }).strict();

/**
 * POSIX attributes of a file, directory or symbolic link. Times are whole ms since the epoch plus
 * the nanoseconds within that ms (0..999999). Absent from masters before they were kept.
 */
export interface PosixAttrs {
  /** Permission bits (0o7777); the type is `type`. */
  mode?: number;
  uid?: number;
  gid?: number;
  atimeMs?: number;
  atimeNs?: number;
  mtimeNs?: number;
  ctimeNs?: number;
  /** A symbolic link's target, as written. */
  target?: string;
  /** A device node's number (chardev, blockdev) as the kernel encodes it. */
  rdev?: number;
  /** Names of the node (hard links), where more than one. */
  nlink?: number;
  /** The node's identity, on a node ever hard-linked: two paths with one ino are names of one file. */
  ino?: number;
}

/** Special files (mkfifo, mknod, a bound socket): metadata only; their I/O is the kernel's. */
export const specialEntryTypes = ['fifo', 'socket', 'chardev', 'blockdev'] as const;
export type SpecialEntryType = (typeof specialEntryTypes)[number];
export type EntryType = 'file' | 'dir' | 'symlink' | SpecialEntryType;

export interface FileInfo extends PosixAttrs {
  path: string;
  type: EntryType;
  sizeBytes: number;
  replication: number;
  chunkCount: number;
  chunkSizeBytes: number;
  mtimeMs: number;
  ctimeMs: number;
}

export interface ListEntry extends PosixAttrs {
  name: string;
  path: string;
  type: EntryType;
  sizeBytes: number;
  replication: number;
  chunkCount: number;
  mtimeMs: number;
  /** Absent from masters before it was added. */
  ctimeMs?: number;
}

// ---- chunk locations (client -> master) ----
export interface ReplicaRef {
  id: string;
  url: string;
  rack: string;
}
export interface ChunkLocation {
  index: number;
  handle: string;
  version: number;
  replicas: ReplicaRef[];
}
export interface ChunksAnswer {
  path: string;
  sizeBytes: number;
  /** The file's replication goal: how many replicas each chunk should have. */
  replication?: number;
  chunkSizeBytes: number;
  chunkCount: number;
  chunks: ChunkLocation[];
}
export const chunksReq = z.object({ path: pathSchema, startIndex: z.number().int().min(0).max(2 ** 40), count: z.number().int().min(1).max(10_000) }).strict();
/**
 * `exclude`: chunkservers a writer found unable to hold the chunk (a full disk: NO_SPACE naming the
 * server). The master takes them out of the chunk's replica set and places it afresh elsewhere.
 */
export const allocateReq = z.object({ path: pathSchema, index: z.number().int().min(0).max(2 ** 40), exclude: z.array(nodeIdSchema).max(16).optional() }).strict();
/** A chunk to write: where it is, and how many replicas the file asks for (the replica list may be shorter). */
export interface AllocateAnswer extends ChunkLocation {
  goal: number;
}
/**
 * A lease for a mutation. Writers name the file and chunk index as well: when
 * the chunk is shared with a snapshot, the master copies it (copy-on-write)
 * and answers with the lease on the file's new chunk (LeaseAnswer.handle).
 */
export const leaseReq = z
  .object({ handle: handleSchema, path: pathSchema.optional(), index: z.number().int().min(0).max(2 ** 40).optional() })
  .strict()
  .refine((b) => (b.path === undefined) === (b.index === undefined), 'path and index go together');
export interface LeaseAnswer {
  handle: string;
  version: number;
  primary: ReplicaRef;
  secondaries: ReplicaRef[];
  /** Remaining lease time by the master's clock when it answered. */
  leaseRemainingMs: number;
}

// ---- chunkserver -> master ----
export const chunkReportSchema = z.object({ handle: handleSchema, version, sizeBytes: bytes });
export type ChunkReport = z.infer<typeof chunkReportSchema>;
export const registerReq = z
  .object({
    id: nodeIdSchema,
    url: urlSchema,
    rack: rackSchema,
    capacityBytes: bytes,
    usedBytes: bytes,
    freeBytes: bytes,
    chunks: z.array(chunkReportSchema).max(10_000_000),
    /** The highest master epoch this server has seen, and from where: tells a failed-over master it is fenced. */
    maxEpoch: z.number().int().min(0).max(1e12).optional(),
    /** Replicas this server found corrupt (kept out of `chunks`), listed until the master orders their deletion. */
    corruptChunks: z.array(handleSchema).max(100_000).optional(),
  })
  .strict();
export type RegisterReq = z.infer<typeof registerReq>;
export const heartbeatReq = registerReq
  .extend({
    /** Chunks this server is primary for and still mutating: asks for lease extensions. */
    leaseExtensions: z.array(handleSchema).max(100_000),
    load: z.number().min(0).max(1e9),
  })
  .strict();
export type HeartbeatReq = z.infer<typeof heartbeatReq>;
export interface HeartbeatAnswer {
  /** Chunks to delete (stale, orphaned, over-replicated). */
  deleteChunks: string[];
  /** Lease extensions granted: handle -> remaining ms by the master's clock. */
  leases: Record<string, number>;
  /** Clone orders: copy `handle` at `version` from `sourceUrl`. */
  clones: { handle: string; version: number; sourceUrl: string }[];
  /** True when the master does not know this server (it restarted): register again. */
  reregister: boolean;
  /** The answering master's epoch and role: a shadow's answers carry no orders; lower epochs are ignored. */
  epoch?: number;
  role?: 'master' | 'shadow';
}
export const leaseConfirmReq = z.object({ id: nodeIdSchema, handle: handleSchema }).strict();
export interface LeaseConfirmAnswer {
  primary: boolean;
  version: number;
  secondaries: ReplicaRef[];
  remainingMs: number;
}
export const reportCorruptReq = z.object({ id: nodeIdSchema, handle: handleSchema }).strict();

// ---- master -> chunkserver ----
export const csCreateReq = z.object({ handle: handleSchema, version }).strict();
/** `primary`: the master means to make this server the chunk's primary at this version (it remembers when it heard so, for csLeaseReq). */
export const csVersionReq = z.object({ handle: handleSchema, version, primary: z.boolean().optional() }).strict();
const replicaRefSchema = z.object({ id: nodeIdSchema, url: urlSchema, rack: rackSchema }).strict();
/**
 * The lease itself, handed to the primary right after the grant (no lease-confirm round trip on
 * its first mutation). Its time runs from when the primary heard the csVersionReq that named it,
 * which was before the master started the lease.
 */
export const csLeaseReq = z.object({ handle: handleSchema, version, secondaries: z.array(replicaRefSchema).max(16), remainingMs: z.number().int().min(0).max(3_600_000) }).strict();
export const csCloneReq = z.object({ handle: handleSchema, version, sourceUrl: urlSchema, sourceId: nodeIdSchema, bytesPerSec: bytes.optional() }).strict();
export const csRevokeReq = z.object({ handle: handleSchema }).strict();
export const csCopyReq = z.object({ handle: handleSchema, newHandle: handleSchema, version }).strict();

// ---- client -> chunkserver (data path) ----
export const dataIdSchema = idSchema;
/** PUT /push/:dataId  body: raw bytes; header x-gfs-chain: JSON array of the next hops' URLs. */
export const pushChainSchema = z.array(urlSchema).max(16);
/**
 * Push header: the sender's crc32c of each checksum block of the body (blocks counted from the body's
 * start), base64 of u32 big-endian values (shared/checksum.ts encodeBlockCrcs). Optional; at most
 * maxPushBlockCrcs values (a 64 MiB push in 64 KiB blocks), so the header stays well under node's
 * 16 KiB header limit.
 */
export const blockCrcsHeader = 'x-gfs-block-crcs';
export const maxPushBlockCrcs = 1024;
/** The block size of x-gfs-block-crcs: the chunk's checksum block size (shared/config.ts checksumBlockBytes). */
export const pushCrcBlockBytes = 64 * 1024;
/** crc32c: of the whole body (what the sender compares with its own). */
export interface PushAnswer {
  dataId: string;
  sizeBytes: number;
  crc32c: number;
}
/**
 * Small mutations may carry their data inline (base64) instead of pushing it
 * first: for a 1 KiB record the push chain costs three extra HTTP hops, the
 * inline path none. Data flow stays decoupled for everything larger.
 */
/** A chunk's version at creation; a chunk still at it was never mutated (every mutation needs a lease, and a lease bumps the version), so it is empty. */
export const initialChunkVersion = 1;

export const inlineMaxBytes = 64 * 1024;
const inlineSchema = z.string().max(Math.ceil(inlineMaxBytes / 3) * 4);
const oneDataSource = (v: { dataId?: string; inline?: string }) => (v.dataId === undefined) !== (v.inline === undefined);
const oneDataSourceMsg = { message: 'exactly one of dataId and inline is required' };
export const mutationIds = {
  clientId: idSchema,
  requestId: idSchema,
};
/** What a write and an append both carry: the chunk at its version, the data (pushed or inline), and the ids. */
const mutationData = {
  handle: handleSchema,
  version,
  dataId: dataIdSchema.optional(),
  inline: inlineSchema.optional(),
  sizeBytes: bytes,
  crc32c: z.number().int().min(0).max(0xffffffff),
  ...mutationIds,
};
export const writeReq = z
  .object({ ...mutationData, offset: bytes })
  .strict()
  .refine(oneDataSource, oneDataSourceMsg);
export type WriteReq = z.infer<typeof writeReq>;
export interface WriteAnswer {
  ok: true;
  /** Chunk length after the mutation. */
  chunkSizeBytes: number;
}
export const appendReq = z
  .object(mutationData)
  .strict()
  .refine(oneDataSource, oneDataSourceMsg);
export type AppendReq = z.infer<typeof appendReq>;
export type AppendAnswer = { status: 'ok'; offset: number } | { status: 'chunk-full' };
/** Client -> primary: set the chunk's length exactly (a file truncated to within it), on every replica, in serial order with the chunk's other mutations. */
export const chunkTruncateReq = z.object({ handle: handleSchema, version, toSizeBytes: bytes, clientId: idSchema, requestId: idSchema }).strict();
export type ChunkTruncateReq = z.infer<typeof chunkTruncateReq>;

/** Primary -> secondary: apply these mutations, in serial order. */
export const applyOp = z.discriminatedUnion('kind', [
  z
    .object({ kind: z.literal('write'), serial: z.number().int().min(0), offset: bytes, dataId: dataIdSchema.optional(), inline: inlineSchema.optional(), sizeBytes: bytes })
    .refine(oneDataSource, oneDataSourceMsg),
  z.object({ kind: z.literal('pad'), serial: z.number().int().min(0), toSizeBytes: bytes }),
  z.object({ kind: z.literal('truncate'), serial: z.number().int().min(0), toSizeBytes: bytes }),
]);
export type ApplyOp = z.infer<typeof applyOp>;
export const applyReq = z
  .object({
    handle: handleSchema,
    version,
    ops: z.array(applyOp).min(1).max(10_000),
    /** The primary's serial space (one per primary process): serials count from 1 per (handle, version, stream). */
    stream: idSchema.optional(),
    /** Every serial up to this one the secondary has already answered (a restarted secondary resumes after it). */
    ackedThrough: z.number().int().min(0).optional(),
  })
  .strict();
export type ApplyReq = z.infer<typeof applyReq>;
export const syncReq = z.object({ handle: handleSchema, version, forward: z.boolean().optional() }).strict();
export const readQuery = z.object({ handle: handleSchema, offset: z.string(), length: z.string(), version: z.string().optional() }).strict();
export interface ChunkInfoAnswer {
  handle: string;
  version: number;
  sizeBytes: number;
}

// ---- master -> log replica (a shadow master, master/replicas.ts) ----
export const logAppendReq = z
  .object({
    epoch: z.number().int().min(1).max(1e12),
    /** Log index of records[0]; with no records, the master's next index (a keep-alive). */
    firstIndex: z.number().int().min(1).max(Number.MAX_SAFE_INTEGER),
    /** Records as the master logged them (JSON text), in order. */
    records: z.array(z.string().max(16 * 1024 * 1024)).max(100_000),
    masterUrl: urlSchema,
  })
  .strict();
export type LogAppendReq = z.infer<typeof logAppendReq>;
export const logInstallReq = z
  .object({
    epoch: z.number().int().min(1).max(1e12),
    /** The state (a namespace snapshot, JSON text) as of this log index. */
    index: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
    state: z.string(),
    masterUrl: urlSchema,
  })
  .strict();
export type LogInstallReq = z.infer<typeof logInstallReq>;
export interface LogAppendAnswer {
  lastIndex: number;
}
