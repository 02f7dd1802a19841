// End-to-end test of Kiln's built-in page (served at `/` without --front-end-root) in headless
// Chromium, through its element contract: fill #checkpoint #prompt #negative #width #height
// #steps #sampler #scheduler #cfg #seed #batch, click #generate, wait for
// <body data-state="done"> and a 64×64 `img` in #gallery. Also records whether #progress moved
// and #preview showed a live image, and fails on any error answer from the server.
//
// Usage: node builtin_page.mjs <server url> <screenshot dir>
// Exit status 0 = the image appeared in the gallery; anything else = failure.

import { openPage, run, screenshotter, waitFor, watchPage } from './lib.mjs';

const [url, screenshotDir] = process.argv.slice(2);
if (!url || !screenshotDir) {
  console.error('usage: node builtin_page.mjs <server url> <screenshot dir>');
  process.exit(2);
}
const origin = new URL(url).origin;
const SIZE = 64;
const STEPS = 2;
const CONTRACT_IDS = ['checkpoint', 'prompt', 'negative', 'width', 'height', 'steps', 'sampler',
  'scheduler', 'cfg', 'seed', 'batch', 'generate', 'progress', 'preview', 'gallery', 'queue'];

/** Sets a form field the way a person would: select an option, or replace the text. */
async function setField(page, id, value) {
  const field = page.locator(`#${id}`);
  const tag = await field.evaluate((element) => element.tagName);
  if (tag === 'SELECT') {
    await field.selectOption(String(value));
  } else {
    await field.fill(String(value));
  }
}

async function main() {
  const { browser, page } = await openPage({ width: 1400, height: 1000 });
  const log = watchPage(page, origin);
  const shot = screenshotter(page, screenshotDir);
  try {
    await page.goto(url, { waitUntil: 'domcontentloaded', timeout: 60000 });
    const missing = await page.evaluate((ids) => ids.filter((id) => !document.getElementById(id)), CONTRACT_IDS);
    if (missing.length) {
      await shot('not-the-builtin-page');
      throw new Error(`the page at / lacks the built-in page's elements: #${missing.join(' #')}`);
    }
    const state = await page.evaluate(() => document.body.dataset.state);
    if (!['idle', 'running', 'done', 'error'].includes(state)) {
      throw new Error(`<body data-state> is ${JSON.stringify(state)}, expected idle|running|done|error`);
    }
    // The node lists come from /object_info after load.
    const checkpoints = await waitFor('#checkpoint to list the checkpoints', () => page.evaluate(() => {
      const values = [...document.querySelectorAll('#checkpoint option')].map((option) => option.value).filter(Boolean);
      return values.length ? values : null;
    }), { timeoutMs: 30000 });
    const samplers = await page.evaluate(() => [...document.querySelectorAll('#sampler option')].map((o) => o.value));
    const schedulers = await page.evaluate(() => [...document.querySelectorAll('#scheduler option')].map((o) => o.value));
    console.log(`checkpoints: ${JSON.stringify(checkpoints)}; ${samplers.length} samplers; ${schedulers.length} schedulers`);
    if (!samplers.includes('euler') || !schedulers.includes('normal')) {
      throw new Error(`#sampler/#scheduler lack euler/normal: ${JSON.stringify({ samplers, schedulers })}`);
    }
    await shot('loaded');

    await setField(page, 'checkpoint', checkpoints[0]);
    await setField(page, 'prompt', 'a lighthouse on a cliff at dusk');
    await setField(page, 'negative', 'text, watermark');
    await setField(page, 'width', SIZE);
    await setField(page, 'height', SIZE);
    await setField(page, 'steps', STEPS);
    await setField(page, 'sampler', 'euler');
    await setField(page, 'scheduler', 'normal');
    await setField(page, 'cfg', 8);
    await setField(page, 'seed', 42);
    await setField(page, 'batch', 1);
    const galleryBefore = await page.locator('#gallery img').count();

    // Watch the progress bar and the live preview while it runs.
    await page.evaluate(() => {
      window.__kilnSeen = { progress: [], preview: 0, states: [document.body.dataset.state] };
      const progress = document.getElementById('progress');
      const preview = document.getElementById('preview');
      new MutationObserver(() => {
        window.__kilnSeen.progress.push(`${progress.value}/${progress.max}`);
      }).observe(progress, { attributes: true });
      new MutationObserver(() => {
        if (preview.getAttribute('src') && !preview.hidden) window.__kilnSeen.preview += 1;
      }).observe(preview, { attributes: true });
      new MutationObserver(() => {
        window.__kilnSeen.states.push(document.body.dataset.state);
      }).observe(document.body, { attributes: true, attributeFilter: ['data-state'] });
    });
    await page.click('#generate');
    await shot('generating');

    const finalState = await waitFor('<body data-state> to become done or error', () => page.evaluate(() => {
      const now = document.body.dataset.state;
      return now === 'done' || now === 'error' ? now : null;
    }), { timeoutMs: 240000, intervalMs: 250 });
    const seen = await page.evaluate(() => window.__kilnSeen);
    console.log(`states: ${seen.states.join(' → ')}; progress values: ${[...new Set(seen.progress)].join(' ')}; live preview updates: ${seen.preview}`);
    if (finalState !== 'done') {
      const errors = await page.evaluate(() => document.getElementById('errors')?.innerText ?? '');
      throw new Error(`the page ended in data-state=${finalState}: ${errors}`);
    }
    if (!seen.states.includes('running')) throw new Error('data-state never showed "running"');

    const images = await waitFor(`a ${SIZE}×${SIZE} image in #gallery`, () => page.evaluate(() => {
      const loaded = [...document.querySelectorAll('#gallery img')]
        .filter((img) => img.complete && img.naturalWidth > 0)
        .map((img) => ({ src: img.getAttribute('src'), width: img.naturalWidth, height: img.naturalHeight }));
      return loaded.length ? loaded : null;
    }), { timeoutMs: 30000 });
    console.log(`gallery: ${images.length} image(s) (was ${galleryBefore}): ${JSON.stringify(images[0])}`);
    if (images.length <= galleryBefore) throw new Error('the gallery did not grow');
    if (images[0].width !== SIZE || images[0].height !== SIZE) {
      throw new Error(`the newest gallery image is ${images[0].width}×${images[0].height}, expected ${SIZE}×${SIZE}`);
    }
    await shot('done');

    const bad = log.badResponses.map((r) => `${r.status} ${r.method} ${r.path}`);
    if (bad.length) throw new Error(`the server answered the built-in page with errors:\n  ${bad.join('\n  ')}`);
    if (log.pageErrors.length) throw new Error(`the page threw: ${log.pageErrors.join('\n')}`);
    console.log('built-in page: the image appeared in the gallery');
  } catch (error) {
    await shot('failure');
    throw error;
  } finally {
    log.report();
    await browser.close();
  }
}

run(main);
