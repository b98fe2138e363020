import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BrowserContext, Page } from 'playwright-core';
import { closeRpc } from '../../shared/rpc.js';
import { webToken } from '../../shared/webauth.js';
import { startCluster, type TestCluster } from '../helpers/cluster.js';

// The master's status page in a real browser (headless Chromium, driven by
// playwright-core) on a live cluster: it shows three live chunkservers; one
// is SIGKILLed and the page, refreshing itself, marks it dead and its chunks
// under-replicated; a fourth chunkserver joins, re-replication heals the
// chunks, and the page says so. Screenshots go to test-artifacts/.

/** GFS_CHROMIUM names another browser binary (or a missing one, to see the skip). */
const chromiumPath = process.env.GFS_CHROMIUM ?? '/usr/bin/chromium';
const unavailable = existsSync(chromiumPath) ? undefined : `${chromiumPath} not found (Debian package chromium; .ci/run installs it)`;
const artifacts = fileURLToPath(new URL('../../../test-artifacts/', import.meta.url));
const KiB = 1024;

/** Text of the summary item `key` (a <dd data-key=...>). */
function summaryValue(page: Page, key: string): Promise<string> {
  return page.locator(`#summary dd[data-key="${key}"]`).innerText();
}

describe('status page in a browser', { skip: unavailable ? `skipped: ${unavailable}` : false, timeout: 180_000 }, () => {
  let cluster: TestCluster | undefined;
  let context: BrowserContext | undefined;
  let userDataDir: string | undefined;
  let page: Page;
  const pageErrors: string[] = [];

  before(async () => {
    // Short leases and dead time, so that healing starts soon after the 4th server joins.
    cluster = await startCluster({ chunkservers: 3, chunkSizeBytes: 256 * KiB, leaseMs: 2_000, heartbeatMs: 200, deadMs: 1_500 });
    assert.equal((await cluster.cli(['mkdir', '/web'])).code, 0);
    const put = await cluster.cli(['put', '-', '/web/file'], randomBytes(300 * KiB));
    assert.equal(put.code, 0, put.stderr);
    const { chromium } = await import('playwright-core');
    userDataDir = mkdtempSync(join(tmpdir(), 'gfs-chromium-'));
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: chromiumPath,
      headless: true,
      // Without the background-networking flags Chromium keeps trying to reach Google's services.
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
      viewport: { width: 1280, height: 1000 },
      timeout: 60_000,
    });
    page = context.pages()[0] ?? (await context.newPage());
    page.on('pageerror', (e) => pageErrors.push(e.message));
    mkdirSync(artifacts, { recursive: true });
  });

  after(async () => {
    await context?.close().catch(() => undefined);
    if (userDataDir) rmSync(userDataDir, { recursive: true, force: true });
    await cluster?.stop();
    await closeRpc();
  });

  it('logs in with the token link, then shows three live chunkservers', async () => {
    const token = webToken();
    assert.ok(token, 'test clusters are authenticated');
    const res = await page.goto(`${cluster!.masterUrl}/status?token=${token}`);
    assert.equal(res?.status(), 200);
    // The token is gone from the address bar (it lives in an HttpOnly cookie now).
    assert.equal(new URL(page.url()).search, '');
    assert.equal(await page.evaluate(() => document.cookie), '', 'the cookie is HttpOnly');
    await page.waitForFunction(() => document.querySelectorAll('#chunkservers-table tbody tr[data-state="alive"]').length === 3, undefined, { timeout: 10_000 });
    assert.deepEqual(await page.locator('#chunkservers-table tbody tr').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-id'))), ['cs0', 'cs1', 'cs2']);
    assert.equal(await summaryValue(page, 'files'), '1');
    assert.equal(await summaryValue(page, 'underReplicated'), '0');
    assert.equal(await page.locator('html').getAttribute('lang'), 'en');
    assert.ok((await page.locator('table caption').count()) >= 1, 'tables have captions');
    // The namespace browser shows the file's chunks with their replicas.
    const row = page.locator('#entries-table tr[data-path="/web/file"]');
    assert.equal(await row.count(), 0, 'the root lists /web, not the file');
    await page.locator('#entries-table a', { hasText: 'web/' }).click();
    await page.waitForSelector('#entries-table tr[data-path="/web/file"]');
    assert.match(await page.locator('#entries-table tr[data-path="/web/file"] td.chunks').innerText(), /cs0, cs1, cs2/);
  });

  it('marks a SIGKILLed chunkserver dead and its chunks under-replicated, without a reload', async () => {
    const navigations: string[] = [];
    page.on('framenavigated', (f) => navigations.push(f.url()));
    await cluster!.kill(cluster!.chunkservers[0], 'SIGKILL');
    await page.waitForFunction(() => document.querySelector('#chunkservers-table tr[data-id="cs0"]')?.getAttribute('data-state') === 'dead', undefined, { timeout: 20_000, polling: 100 });
    await page.waitForFunction(() => Number(document.querySelector('#summary dd[data-key="underReplicated"]')?.textContent) === 2, undefined, { timeout: 20_000, polling: 100 });
    assert.match(await page.locator('#chunkservers-table tr[data-id="cs0"]').innerText(), /DEAD/);
    assert.equal(await summaryValue(page, 'chunkserversDead'), '1');
    assert.equal(await page.locator('#under-table tbody tr').count(), 2, 'both chunks listed as needing attention');
    assert.match(await page.locator('#under-table tbody').innerText(), /2 of 3/);
    assert.match(await page.locator('#entries-table tr[data-path="/web/file"] td.chunks').innerText(), /cs0 \(dead\)/);
    assert.deepEqual(navigations, [], 'the page updated itself in place');
    await page.screenshot({ path: join(artifacts, 'status-page-dead.png'), fullPage: true });
  });

  it('shows the chunks healed once a fourth chunkserver joins', async () => {
    await cluster!.startChunkserver(3);
    await page.waitForFunction(() => document.querySelector('#chunkservers-table tr[data-id="cs3"]')?.getAttribute('data-state') === 'alive', undefined, { timeout: 20_000, polling: 100 });
    await page.waitForFunction(
      () => Number(document.querySelector('#summary dd[data-key="underReplicated"]')?.textContent) === 0 && Number(document.querySelector('#summary dd[data-key="healthy"]')?.textContent) === 2,
      undefined,
      { timeout: 60_000, polling: 200 },
    );
    assert.equal(await page.locator('#under-table tbody tr').count(), 0);
    assert.match(await page.locator('#entries-table tr[data-path="/web/file"] td.chunks').innerText(), /cs3/);
    await page.screenshot({ path: join(artifacts, 'status-page-healed.png'), fullPage: true });
    assert.ok(existsSync(join(artifacts, 'status-page-healed.png')));
    assert.deepEqual(pageErrors, [], 'no script errors on the page');
  });
});
