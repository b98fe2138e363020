// What `gfs mount` is given: where, what, and the caches and windows it keeps (client/mount.ts runs it).
export interface MountOptions {
  masterUrl: string;
  remoteDir: string;
  mountpoint: string;
  debug?: boolean;
  allowOther?: boolean;
  /** Kernel attribute/entry cache in seconds (default 1). */
  attrTimeoutS?: number;
  /** Our own attribute cache in ms (default 500). */
  attrCacheMs?: number;
  /** Read-ahead window for sequential reads (default 8 MiB). */
  readAheadBytes?: number;
  /** Called once the file system is mounted. */
  onMounted?: () => void;
  log?: (line: string) => void;
}
