// Deliberately broken build options, for proving that the partition suite
// (scripts/partition.ts) catches real bugs. Selected by the GFS_UNSAFE
// environment variable (a comma list) read once at start-up; off by default,
// and then each check is a constant false. The options and the files that
// read them:
//   master-no-lease-wait   master/leases.ts: the master grants a new lease
//                          while the old one may still be held, if its
//                          primary looks dead or stale.
//   primary-ignores-lease  chunkserver/leases.ts: a primary keeps acting on a
//                          lease after it has expired by its own clock.
// An unknown name is an error, so a typo never tests the safe build by mistake.

export const unsafeOptions = ['master-no-lease-wait', 'primary-ignores-lease'] as const;
export type UnsafeOption = (typeof unsafeOptions)[number];

function parse(raw: string | undefined): Set<UnsafeOption> {
  const out = new Set<UnsafeOption>();
  for (const name of (raw ?? '').split(',').map((s) => s.trim()).filter(Boolean)) {
    if (!(unsafeOptions as readonly string[]).includes(name)) throw new Error(`GFS_UNSAFE: unknown option ${name} (known: ${unsafeOptions.join(', ')})`);
    out.add(name as UnsafeOption);
  }
  return out;
}

const enabled = parse(process.env.GFS_UNSAFE);

export function unsafe(name: UnsafeOption): boolean {
  return enabled.has(name);
}
