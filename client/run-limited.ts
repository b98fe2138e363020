// Bounded concurrency for the client's piece-wise reads, writes and syncs.

/** Runs fn over items with at most `limit` in flight; the first error fails the whole run. */
export async function runLimited<T>(items: T[], fn: (item: T) => Promise<unknown>, limit: number): Promise<void> {
  let next = 0;
  let failed: unknown;
  const worker = async () => {
    while (failed === undefined && next < items.length) {
      const item = items[next++]!;
      try {
        await fn(item);
      } catch (e) {
        failed ??= e;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  if (failed !== undefined) throw failed;
}
