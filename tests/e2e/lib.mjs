// Shared helpers for Kiln's browser end-to-end scripts: launching Debian's Chromium through
// playwright-core, recording what the page asked of the server, and failing loudly.

import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

/** Chromium flags that work on this project's machines (no sandbox as root, no background
 * networking: the machines have no network but the package registries). */
const CHROMIUM_ARGS = [
  '--headless=new',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-dev-shm-usage',
];

/** Where the browser lives: `KILN_E2E_CHROMIUM` or Debian's `/usr/bin/chromium`. */
export function chromiumPath() {
  return process.env.KILN_E2E_CHROMIUM || '/usr/bin/chromium';
}

/** Launches Chromium and opens one page of the given size. */
export async function openPage({ width = 1600, height = 1000 } = {}) {
  const browser = await chromium.launch({
    executablePath: chromiumPath(),
    args: CHROMIUM_ARGS,
    headless: true,
  });
  const context = await browser.newContext({ viewport: { width, height } });
  const page = await context.newPage();
  return { browser, context, page };
}

/**
 * Records everything that went wrong between the page and the server: console errors, page
 * exceptions, failed requests and error statuses from `origin`. `report()` prints it.
 */
export function watchPage(page, origin) {
  const log = { consoleErrors: [], pageErrors: [], failedRequests: [], badResponses: [], requests: [] };
  page.on('console', (message) => {
    if (message.type() === 'error' || message.type() === 'warning') {
      log.consoleErrors.push(`[${message.type()}] ${message.text()}`);
    }
  });
  page.on('pageerror', (error) => log.pageErrors.push(String(error && error.stack ? error.stack : error)));
  page.on('requestfailed', async (request) => {
    if (!request.url().startsWith(origin)) return;
    // Chromium reports ERR_ABORTED for a request whose response arrived but whose body the
    // page never read (a 404 stylesheet, a POST whose answer is ignored): not a server fault.
    const answered = await request.response().catch(() => null);
    const line = `${request.method()} ${request.url().slice(origin.length)}: ${request.failure()?.errorText}`;
    log.failedRequests.push(answered ? `${line} (after a ${answered.status()} response; the page dropped it)` : line);
  });
  page.on('response', (response) => {
    const url = response.url();
    if (!url.startsWith(origin)) return;
    const path = url.slice(origin.length);
    const method = response.request().method();
    const status = response.status();
    if (!path.startsWith('/assets/')) log.requests.push(`${status} ${method} ${path}`);
    if (status >= 400) log.badResponses.push({ status, method, path });
  });
  log.report = () => {
    const section = (title, lines) => {
      console.log(`-- ${title}: ${lines.length}`);
      for (const line of lines) console.log(`   ${line}`);
    };
    section('API/page requests to the server (status method path)', log.requests);
    section('responses >= 400 from the server', log.badResponses.map((r) => `${r.status} ${r.method} ${r.path}`));
    section('failed requests to the server', log.failedRequests);
    section('page exceptions', log.pageErrors);
    section('console errors and warnings', log.consoleErrors);
  };
  return log;
}

/** A screenshot helper writing `NN-name.png` into `dir`. */
export function screenshotter(page, dir) {
  mkdirSync(dir, { recursive: true });
  let counter = 0;
  return async (name) => {
    counter += 1;
    const file = join(dir, `${String(counter).padStart(2, '0')}-${name}.png`);
    try {
      await page.screenshot({ path: file });
      console.log(`screenshot: ${file}`);
    } catch (error) {
      console.log(`screenshot ${file} failed: ${error}`);
    }
  };
}

/** Fetches JSON from the server (from Node, not the page). */
export async function getJson(origin, path) {
  const response = await fetch(origin + path);
  if (!response.ok) throw new Error(`GET ${path}: ${response.status} ${await response.text()}`);
  return response.json();
}

/** Polls `check` (async, truthy = done) every `intervalMs` until `timeoutMs`; throws `what`. */
export async function waitFor(what, check, { timeoutMs = 60000, intervalMs = 250 } = {}) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    last = await check();
    if (last) return last;
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}

/** Runs `main`, printing the failure and exiting non-zero on any error. */
export function run(main) {
  main().then(
    () => process.exit(0),
    (error) => {
      console.error(`FAILED: ${error && error.stack ? error.stack : error}`);
      process.exit(1);
    },
  );
}
