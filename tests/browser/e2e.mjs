// End-to-end test of the dashboard in headless Chromium against a running bridge.
//
//   node tests/browser/e2e.mjs BASE_URL TOKEN SCREENSHOT_DIR [CLUSTER]
//
// BASE_URL is the bridge (for example http://127.0.0.1:18080), TOKEN an API key it accepts.
// Checks, in order:
//   0. a page opened without a session redirects to the sign-in form;
//   1. opening /?token=TOKEN signs in: the kb_session cookie is HttpOnly and SameSite=Strict,
//      scripts cannot read it, and the browser ends on the same URL without the token;
//   2. the overview's total for CLUSTER (default cluster-1) is the API's total_cost for the
//      same range (read with the token), to the cent as displayed and exactly in data-value;
//   3. the keyboard reaches the cluster's link with Tab and opens it with Enter;
//   4. the cluster page stacks cost by namespace when asked;
//   5. clicking a namespace in the table shows its workloads (the API's count for it);
// and saves login.png, overview.png, cluster.png, cluster-by-namespace.png and namespace.png in
// SCREENSHOT_DIR. Prints "RESULT ok" and exits 0 on success; prints the failed check and
// exits 1 otherwise. Chromium is Debian's package (/usr/bin/chromium, or $CHROMIUM).
import { chromium } from 'playwright-core';
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const [base, token, shots, cluster = 'cluster-1'] = process.argv.slice(2);
if (!base || !token || !shots) {
  console.error('usage: node e2e.mjs BASE_URL TOKEN SCREENSHOT_DIR [CLUSTER]');
  process.exit(2);
}
const WINDOW = '7d';
mkdirSync(shots, { recursive: true });

function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`);
  console.log(`ok - ${what}`);
}

async function api(path) {
  const r = await fetch(`${base}${path}`, {
    headers: { Authorization: `Bearer ${token}` },
    signal: AbortSignal.timeout(30_000),
  });
  if (!r.ok) throw new Error(`${path}: HTTP ${r.status}`);
  return r.json();
}

function usd(v) {
  const s = Math.abs(v).toLocaleString('en-US', { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  return `${v < 0 && Math.round(Math.abs(v) * 100) > 0 ? '-' : ''}$${s}`;
}

const profile = mkdtempSync(join(tmpdir(), 'kb-chromium-'));
let context;
try {
  context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    viewport: { width: 1360, height: 900 },
    timeout: 60_000,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
  });
  context.setDefaultTimeout(30_000);
  const page = context.pages()[0] ?? (await context.newPage());

  // 0. Without a session a page sends to the sign-in form, which keeps where to go next.
  await page.goto(`${base}/clusters/${cluster}?window=${WINDOW}`);
  check(new URL(page.url()).pathname === '/login', 'a page without a session redirects to /login');
  check((await page.locator('form[action="/login"] input[type=password]').count()) === 1, 'the sign-in form asks for the key');
  await page.screenshot({ path: join(shots, 'login.png'), fullPage: true });

  // 1. Sign in with the token link.
  await page.goto(`${base}/?token=${encodeURIComponent(token)}&window=${WINDOW}`);
  const url = new URL(page.url());
  check(url.pathname === '/' && url.search === `?window=${WINDOW}`, `redirected to a clean URL (${url.pathname}${url.search})`);
  check(!page.url().includes(token), 'the token is not in the address bar');
  const cookies = await context.cookies(base);
  const session = cookies.find((c) => c.name === 'kb_session');
  check(session !== undefined, 'the kb_session cookie is set');
  check(session.httpOnly === true, 'the session cookie is HttpOnly');
  check(session.sameSite === 'Strict', 'the session cookie is SameSite=Strict');
  check(!(await page.evaluate(() => document.cookie)).includes('kb_session'), 'scripts cannot read the session cookie');

  // 2. The overview's total for the cluster against the API's JSON for the same range.
  const row = page.locator(`tr[data-cluster="${cluster}"]`);
  await row.waitFor();
  const cell = row.locator('td.total');
  const shownValue = Number(await cell.getAttribute('data-value'));
  const shownText = (await cell.innerText()).trim();
  const json = await api(`/api/v1/costs/kubernetes?window=${WINDOW}`);
  const apiTotal = json.clusters.find((c) => c.cluster === cluster)?.total_cost;
  check(typeof apiTotal === 'number' && apiTotal > 0, `the API has a total for ${cluster} (${apiTotal})`);
  check(Math.abs(shownValue - apiTotal) < 1e-6, `overview total ${shownValue} equals the API's ${apiTotal}`);
  check(shownText === usd(apiTotal), `overview shows ${shownText} = ${usd(apiTotal)}`);
  await page.screenshot({ path: join(shots, 'overview.png'), fullPage: true });

  // 3. Keyboard: Tab to the cluster's link, Enter opens it.
  const href = `/clusters/${cluster}?window=${WINDOW}`;
  let reached = false;
  for (let i = 0; i < 60 && !reached; i++) {
    await page.keyboard.press('Tab');
    reached = await page.evaluate((h) => document.activeElement?.getAttribute('href') === h, href);
  }
  check(reached, `Tab reaches the link to ${cluster}`);
  await Promise.all([page.waitForURL(`**/clusters/${cluster}?window=${WINDOW}`), page.keyboard.press('Enter')]);
  check((await page.locator('main h1').innerText()).trim() === cluster, 'Enter opens the cluster page');
  const clusterJson = await api(`/api/v1/costs/kubernetes/${cluster}?window=${WINDOW}`);
  const clusterShown = Number(await page.locator('#cluster-total').getAttribute('data-value'));
  check(Math.abs(clusterShown - clusterJson.totals.total_cost) < 1e-6, 'the cluster page total equals the API total');
  check((await page.locator('svg.chart rect').count()) > 0, 'the cost chart has bars');
  await page.screenshot({ path: join(shots, 'cluster.png'), fullPage: true });

  // 4. The chart stacked by namespace.
  await Promise.all([page.waitForURL('**by=namespace**'), page.getByRole('link', { name: 'By namespace' }).click()]);
  check((await page.locator('.legend li').filter({ hasText: 'other' }).count()) === 1, 'the by-namespace legend has "other"');
  await page.screenshot({ path: join(shots, 'cluster-by-namespace.png'), fullPage: true });
  await page.goto(`${base}${href}`);

  // 5. Click the largest real namespace: its workloads appear.
  const link = page.locator('#namespaces tbody tr th a').first();
  const ns = (await link.innerText()).trim();
  await Promise.all([page.waitForURL(`**/clusters/${cluster}/namespaces/**`), link.click()]);
  check((await page.locator('main h1').innerText()).includes(ns), `clicking ${ns} opens its page`);
  const wl = await api(`/api/v1/costs/kubernetes/${cluster}/workloads?window=${WINDOW}&namespace=${encodeURIComponent(ns)}&pods=false`);
  const rows = await page.locator('#workloads tbody tr').count();
  check(wl.count > 0 && rows === Math.min(wl.count, 1000), `${rows} workloads shown, the API has ${wl.count}`);
  // Expand the first workload's pods with the keyboard.
  const summary = page.locator('#workloads details summary').first();
  await summary.focus();
  await page.keyboard.press('Enter');
  check(await page.locator('#workloads details').first().evaluate((d) => d.open), 'Enter expands a workload\'s pods');
  await page.screenshot({ path: join(shots, 'namespace.png'), fullPage: true });

  console.log('RESULT ok');
} catch (e) {
  console.log(`RESULT failed: ${e.message}`);
  process.exitCode = 1;
} finally {
  if (context) await context.close().catch(() => {});
  rmSync(profile, { recursive: true, force: true });
}
