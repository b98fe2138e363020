import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import type { Command, Option } from 'commander';
import { z } from 'zod';
import { envName } from './config.js';

// Daemon settings from three places besides their defaults, in this order of
// precedence: a flag (`--port 7071`) > an environment variable (GFS_PORT) >
// the JSON config file (`--config FILE` or GFS_CONFIG: {"port": 7071}) >
// the default. Every value-taking flag has an environment variable named
// after it (--lease-ms -> GFS_LEASE_MS, see `gfs master --help`); keys of the
// config file are the flags without their dashes ("lease-ms"), plus the
// global "master", "secret-file", "tls-cert", "tls-key" and "tls-ca". Values are checked by the same parsers
// as the flags (so "64M" works in a file too), the file's shape with zod
// (unknown keys are refused). Relative paths in the file ("dir",
// "secret-file", the TLS files) are relative to the file's directory.

/** Flags whose values are paths. */
const pathFlags = new Set(['dir']);

/** Keys of the config file that set global flags, through the environment variable each is read from. */
const globalSettings: Record<string, { env: string; attribute: string; path: boolean; alsoEnv?: string[] }> = {
  master: { env: 'GFS_MASTER', attribute: 'master', path: false },
  'secret-file': { env: 'GFS_SECRET_FILE', attribute: 'secretFile', path: true, alsoEnv: ['GFS_SECRET'] },
  'tls-cert': { env: 'GFS_TLS_CERT', attribute: 'tlsCert', path: true },
  'tls-key': { env: 'GFS_TLS_KEY', attribute: 'tlsKey', path: true },
  'tls-ca': { env: 'GFS_TLS_CA', attribute: 'tlsCa', path: true },
};

const scalar = z.union([z.string(), z.number(), z.boolean()]);

function issues(err: z.ZodError): string {
  return err.issues
    .slice(0, 3)
    .map((i) => (i.code === 'unrecognized_keys' ? `unknown setting ${i.keys.map((k) => `"${k}"`).join(', ')}` : `${i.path.join('.') || 'file'}: ${i.message}`))
    .join('; ');
}


/**
 * Fills the options of a daemon command not given as flags: from their environment variables, then
 * from the config file named by --config (or GFS_CONFIG). Call at the start of the command's action.
 */
export function applySettings(cmd: Command, program: Command): void {
  for (const opt of cmd.options) {
    if (!opt.long || !(opt.required || opt.optional)) continue;
    const key = opt.attributeName();
    const value = process.env[envName(opt.long)];
    if (value === undefined || cmd.getOptionValueSource(key) === 'cli') continue;
    cmd.setOptionValueWithSource(key, parseValue(opt, value, (why) => new Error(`${envName(opt.long!)}=${JSON.stringify(value)}: ${why}`), opt.long === '--dir' || opt.long === '--config' ? process.cwd() : undefined), 'env');
  }
  const file = cmd.opts().config as string | undefined;
  if (!file) return;
  const where = `config file ${file}`;
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new Error(`${where}: ${(e as Error).message}`);
  }
  const settable = cmd.options.filter((o) => o.long && o.long !== '--config');
  const names = [...settable.map((o) => o.long!.slice(2)), ...Object.keys(globalSettings)];
  const schema = z.object(Object.fromEntries(names.map((n) => [n, scalar.optional()]))).strict();
  const parsed = schema.safeParse(raw);
  if (!parsed.success) throw new Error(`${where}: ${issues(parsed.error)} (known: ${names.join(', ')})`);
  const base = dirname(resolve(file));
  for (const [name, value] of Object.entries(parsed.data)) {
    if (value === undefined) continue;
    const bad = (why: string) => new Error(`${where}: "${name}": ${why}`);
    const g = globalSettings[name];
    if (g) {
      // Global flags, read from the environment by the code that needs them (client/cli.ts, shared/auth.ts, shared/tls.ts).
      if (typeof value !== 'string' || value === '') throw bad('must be a non-empty string');
      const given = program.getOptionValueSource(g.attribute) === 'cli' || [g.env, ...(g.alsoEnv ?? [])].some((e) => process.env[e]);
      if (!given) process.env[g.env] = g.path ? resolve(base, value) : value;
      continue;
    }
    const opt = settable.find((o) => o.long === `--${name}`)!;
    const key = opt.attributeName();
    const source = cmd.getOptionValueSource(key);
    if (source === 'cli' || source === 'env') continue;
    cmd.setOptionValueWithSource(key, parseValue(opt, value, bad, pathFlags.has(name) ? base : undefined), 'config');
  }
}

function parseValue(opt: Option, value: string | number | boolean, bad: (why: string) => Error, pathBase: string | undefined): unknown {
  const takesValue = opt.required || opt.optional;
  if (!takesValue) {
    if (typeof value !== 'boolean') throw bad('must be true or false');
    return value;
  }
  if (typeof value === 'boolean') throw bad('must be a number or a string');
  const text = String(value);
  let out: unknown = text;
  if (opt.parseArg) {
    try {
      out = opt.parseArg(text, undefined);
    } catch (e) {
      throw bad((e as Error).message);
    }
  }
  return pathBase && typeof out === 'string' ? resolve(pathBase, out) : out;
}
