import { resolve as resolvePath } from 'node:path';
import { type Command, InvalidArgumentError, Option } from 'commander';
import { envName } from './config.js';

// Command-line pieces the three programs share (gfs, gfs-master,
// gfs-chunkserver): value parsers that fail with one line naming the flag,
// the connection flags every program takes (cluster secret, TLS), and the
// environment variable behind each daemon flag.

export function intArg(name: string, min = 0, max = Number.MAX_SAFE_INTEGER) {
  return (v: string): number => {
    if (!/^\d+$/.test(v)) throw new InvalidArgumentError(`${name} must be a whole number`);
    const n = Number(v);
    if (n < min || n > max) throw new InvalidArgumentError(`${name} must be between ${min} and ${max}`);
    return n;
  };
}

/** Sizes like 65536, 64k, 64KiB, 64M, 1G. */
export function sizeArg(name: string) {
  return (v: string): number => {
    const m = /^(\d+)\s*(k|kb|kib|m|mb|mib|g|gb|gib)?$/i.exec(v.trim());
    if (!m) throw new InvalidArgumentError(`${name} must be a size such as 65536, 64k or 64M`);
    const unit = (m[2] ?? '').toLowerCase()[0];
    const mult = unit === 'k' ? 1024 : unit === 'm' ? 1024 ** 2 : unit === 'g' ? 1024 ** 3 : 1;
    return Number(m[1]) * mult;
  };
}

/** A percentage such as 5 or 5% (of a disk), as a fraction between 0 and 0.9. */
export function percentArg(name: string) {
  return (v: string): number => {
    const m = /^(\d+(?:\.\d+)?)\s*%?$/.exec(v.trim());
    if (!m || Number(m[1]) > 90) throw new InvalidArgumentError(`${name} must be a percentage between 0 and 90, such as 5 or 5%`);
    return Number(m[1]) / 100;
  };
}

/**
 * Every value-taking flag of a daemon can also come from an environment variable named after it
 * (--lease-ms: GFS_LEASE_MS), and from the --config file. shared/settings.ts reads them (precedence:
 * flag, env, file, default); naming the variable here puts it in --help.
 */
export function withEnv(cmd: Command): Command {
  for (const o of cmd.options) if (o.long && (o.required || o.optional)) o.env(envName(o.long));
  return cmd;
}

/** The cluster secret and TLS flags, which every program takes. */
export function addConnectionOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option('--secret-file <file>', 'cluster secret that authenticates every request (default: $GFS_SECRET_FILE, else $GFS_SECRET; none: authentication off)'))
    .addOption(new Option('--tls-cert <file>', 'daemons: serve HTTPS with this PEM certificate (default: $GFS_TLS_CERT; needs --tls-key)'))
    .addOption(new Option('--tls-key <file>', 'daemons: the PEM private key of --tls-cert (default: $GFS_TLS_KEY)'))
    .addOption(new Option('--tls-ca <file>', 'trust this PEM CA bundle for https:// peers instead of the system roots (default: $GFS_TLS_CA)'));
}

/**
 * Puts the connection flags given on the command line into the environment, where shared/auth.ts and
 * shared/tls.ts read them lazily: daemons, clients and the processes they start all find them the same way.
 */
export function exportConnectionOptions(cmd: Command): void {
  const opts = cmd.opts() as { secretFile?: string; tlsCert?: string; tlsKey?: string; tlsCa?: string };
  const given = (key: string) => cmd.getOptionValueSource(key) === 'cli';
  if (opts.secretFile && given('secretFile')) process.env.GFS_SECRET_FILE = resolvePath(opts.secretFile);
  if (opts.tlsCert && given('tlsCert')) process.env.GFS_TLS_CERT = resolvePath(opts.tlsCert);
  if (opts.tlsKey && given('tlsKey')) process.env.GFS_TLS_KEY = resolvePath(opts.tlsKey);
  if (opts.tlsCa && given('tlsCa')) process.env.GFS_TLS_CA = resolvePath(opts.tlsCa);
}
