// End-to-end test of the official ComfyUI frontend (comfyui-frontend-package) against a running
// Kiln server: boot the page in headless Chromium, load ComfyUI's classic SD1 txt2img graph on
// the server's first checkpoint (64×64, 2 steps), press Run, and wait until the SaveImage node
// shows the 64×64 result. Prints every request the page made to the server and every error.
//
// Usage: node official_frontend.mjs <server url> <screenshot dir>
// Exit status 0 = the image appeared; anything else = failure (the reason is printed).

import { getJson, openPage, run, screenshotter, waitFor, watchPage } from './lib.mjs';

const [url, screenshotDir] = process.argv.slice(2);
if (!url || !screenshotDir) {
  console.error('usage: node official_frontend.mjs <server url> <screenshot dir>');
  process.exit(2);
}
const origin = new URL(url).origin;
const SIZE = 64;
const STEPS = 2;
const SAVE_NODE = 9;
const SAMPLER_NODE = '3';

/** Error statuses that ComfyUI itself gives in the same situation (spec §3, §4.2): fine. */
const SPEC_ANSWERS = [
  [404, /^\/user\.css$/],
  [404, /^\/api\/userdata\/user\.css$/],
  [404, /^\/api\/userdata\?dir=(workflows|subgraphs|keybindings)&/],
  [404, /^\/api\/userdata\/(comfy\.templates\.json|workflows%2F\.index\.json)$/],
  // checkUserdata saves the same file twice with overwrite=false on purpose.
  [409, /^\/api\/userdata\/workflows%2Fkiln%20e2e\.json\?overwrite=false&/],
];
/**
 * Answers that differ from ComfyUI but that this frontend survives; each was reported to the
 * server's owner. They are printed on every run; remove a line once the server is fixed, so the
 * test then guards the fix.
 */
const KNOWN_GAPS = [];

/** Splits the server's error answers into expected ones, known gaps and failures. */
function judgeResponses(badResponses) {
  const failures = [];
  for (const { status, method, path } of badResponses) {
    const line = `${status} ${method} ${path}`;
    if (SPEC_ANSWERS.some(([code, pattern]) => code === status && pattern.test(path))) continue;
    const gap = KNOWN_GAPS.find(([code, pattern]) => code === status && pattern.test(path));
    if (gap && status < 500) {
      console.log(`KNOWN SERVER GAP: ${line}: ${gap[2]}`);
      continue;
    }
    failures.push(line);
  }
  return failures;
}

/** ComfyUI's classic default graph (UI format), as the SD1.5 legacy build ships it. */
function defaultGraph(ckpt) {
  const link = (name, type, id) => ({ name, type, link: id });
  const out = (name, type, links, slot) => ({ name, type, links, slot_index: slot });
  return {
    last_node_id: 9,
    last_link_id: 9,
    nodes: [
      { id: 4, type: 'CheckpointLoaderSimple', pos: [26, 474], size: [315, 98], mode: 0, order: 0, inputs: [],
        outputs: [out('MODEL', 'MODEL', [1], 0), out('CLIP', 'CLIP', [3, 5], 1), out('VAE', 'VAE', [8], 2)],
        properties: { 'Node name for S&R': 'CheckpointLoaderSimple' }, widgets_values: [ckpt] },
      { id: 5, type: 'EmptyLatentImage', pos: [473, 609], size: [315, 106], mode: 0, order: 1, inputs: [],
        outputs: [out('LATENT', 'LATENT', [2], 0)], properties: { 'Node name for S&R': 'EmptyLatentImage' },
        widgets_values: [SIZE, SIZE, 1] },
      { id: 6, type: 'CLIPTextEncode', pos: [415, 186], size: [422, 164], mode: 0, order: 2,
        inputs: [link('clip', 'CLIP', 3)], outputs: [out('CONDITIONING', 'CONDITIONING', [4], 0)],
        properties: { 'Node name for S&R': 'CLIPTextEncode' },
        widgets_values: ['beautiful scenery nature glass bottle landscape, , purple galaxy bottle,'] },
      { id: 7, type: 'CLIPTextEncode', pos: [413, 389], size: [425, 180], mode: 0, order: 3,
        inputs: [link('clip', 'CLIP', 5)], outputs: [out('CONDITIONING', 'CONDITIONING', [6], 0)],
        properties: { 'Node name for S&R': 'CLIPTextEncode' }, widgets_values: ['text, watermark'] },
      { id: 3, type: 'KSampler', pos: [863, 186], size: [315, 262], mode: 0, order: 4,
        inputs: [link('model', 'MODEL', 1), link('positive', 'CONDITIONING', 4),
          link('negative', 'CONDITIONING', 6), link('latent_image', 'LATENT', 2)],
        outputs: [out('LATENT', 'LATENT', [7], 0)], properties: { 'Node name for S&R': 'KSampler' },
        widgets_values: [156680208700286, 'fixed', STEPS, 8, 'euler', 'normal', 1] },
      { id: 8, type: 'VAEDecode', pos: [1209, 188], size: [210, 46], mode: 0, order: 5,
        inputs: [link('samples', 'LATENT', 7), link('vae', 'VAE', 8)], outputs: [out('IMAGE', 'IMAGE', [9], 0)],
        properties: { 'Node name for S&R': 'VAEDecode' } },
      { id: SAVE_NODE, type: 'SaveImage', pos: [1451, 189], size: [210, 270], mode: 0, order: 6,
        inputs: [link('images', 'IMAGE', 9)], outputs: [], properties: {}, widgets_values: ['ComfyUI'] },
    ],
    links: [
      [1, 4, 0, 3, 0, 'MODEL'], [2, 5, 0, 3, 3, 'LATENT'], [3, 4, 1, 6, 0, 'CLIP'],
      [4, 6, 0, 3, 1, 'CONDITIONING'], [5, 4, 1, 7, 0, 'CLIP'], [6, 7, 0, 3, 2, 'CONDITIONING'],
      [7, 3, 0, 8, 0, 'LATENT'], [8, 4, 2, 8, 1, 'VAE'], [9, 8, 0, SAVE_NODE, 0, 'IMAGE'],
    ],
    groups: [],
    config: {},
    extra: { ds: { scale: 0.8, offset: [0, 0] } },
    version: 0.4,
  };
}

/** Texts of the dialogs and toasts the page shows now. */
async function visibleMessages(page) {
  return page.evaluate(() => {
    const selectors = ['[role="dialog"]', '.p-dialog', '.p-toast-message', '[data-sonner-toast]', '.comfy-modal'];
    const seen = new Set();
    const texts = [];
    for (const selector of selectors) {
      for (const element of document.querySelectorAll(selector)) {
        const style = getComputedStyle(element);
        const box = element.getBoundingClientRect();
        if (seen.has(element) || style.display === 'none' || style.visibility === 'hidden' || box.width === 0 || box.height === 0) continue;
        seen.add(element);
        const text = (element.innerText || '').trim().replace(/\s+/g, ' ');
        if (text) texts.push(`${selector}: ${text.slice(0, 400)}`);
      }
    }
    return texts;
  });
}

/**
 * Saves, lists, reads, renames and deletes a workflow through the frontend's own client (the
 * calls its workflow sidebar makes: `%2F` in the file segment, no Content-Type on the body).
 */
async function checkUserdata(page) {
  const result = await page.evaluate(async () => {
    const api = window.app.api;
    const graph = window.app.graph.serialize();
    const name = 'workflows/kiln e2e.json';
    const saved = await api.storeUserData(name, graph, { overwrite: false, stringify: true, throwOnError: false, full_info: true });
    const savedBody = await saved.json().catch(() => null);
    const again = await api.storeUserData(name, graph, { overwrite: false, stringify: true, throwOnError: false, full_info: true });
    const listed = await api.listUserDataFullInfo('workflows');
    const read = await api.getUserData(name);
    const readBack = read.ok ? await read.json() : null;
    const moved = await api.moveUserData(name, 'workflows/kiln e2e renamed.json');
    const movedBody = await moved.json().catch(() => null);
    const deleted = await api.deleteUserData('workflows/kiln e2e renamed.json');
    const afterDelete = await api.listUserDataFullInfo('workflows');
    return {
      saved: [saved.status, savedBody], conflict: again.status, listed,
      read: [read.status, readBack?.nodes?.length ?? null], moved: [moved.status, movedBody],
      deleted: deleted.status, afterDelete,
    };
  });
  console.log(`userdata through the frontend's client: ${JSON.stringify(result)}`);
  const problems = [];
  const [savedStatus, savedBody] = result.saved;
  // ComfyUI answers the path relative to the user folder here, relative to `dir` in the list.
  if (savedStatus !== 200 || savedBody?.path !== 'workflows/kiln e2e.json' || typeof savedBody?.modified !== 'number') {
    problems.push(`POST /api/userdata/workflows%2Fkiln%20e2e.json?overwrite=false&full_info=true: expected 200 {path:"workflows/kiln e2e.json",size,modified:number}, got ${savedStatus} ${JSON.stringify(savedBody)}`);
  }
  if (result.conflict !== 409) problems.push(`second POST with overwrite=false: expected 409, got ${result.conflict}`);
  const entry = result.listed.find?.((item) => item.path === 'kiln e2e.json');
  if (!entry || typeof entry.modified !== 'number' || typeof entry.size !== 'number') {
    problems.push(`GET /api/userdata?dir=workflows&full_info=true: expected an entry {path:"kiln e2e.json",size,modified:number}, got ${JSON.stringify(result.listed)}`);
  }
  if (result.read[0] !== 200 || result.read[1] !== 7) problems.push(`GET /api/userdata/workflows%2Fkiln%20e2e.json: got ${JSON.stringify(result.read)}`);
  if (result.moved[0] !== 200) problems.push(`POST /api/userdata/…/move/…: expected 200, got ${JSON.stringify(result.moved)}`);
  if (result.deleted !== 204) problems.push(`DELETE /api/userdata/…: expected 204, got ${result.deleted}`);
  if (result.afterDelete.length !== 0) problems.push(`after delete the list is ${JSON.stringify(result.afterDelete)}`);
  if (problems.length) throw new Error(`userdata answers the frontend cannot use:\n  ${problems.join('\n  ')}`);
}

async function main() {
  const objectInfo = await getJson(origin, '/api/object_info/CheckpointLoaderSimple');
  const checkpoints = objectInfo.CheckpointLoaderSimple?.input?.required?.ckpt_name?.[0];
  if (!Array.isArray(checkpoints) || checkpoints.length === 0) {
    throw new Error(`object_info lists no checkpoints: ${JSON.stringify(objectInfo).slice(0, 300)}`);
  }
  const ckpt = checkpoints[0];
  console.log(`checkpoint: ${ckpt}`);

  const { browser, page } = await openPage();
  const log = watchPage(page, origin);
  const shot = screenshotter(page, screenshotDir);
  const events = [];
  try {
    // Events are recorded from the page's own ComfyApi as soon as the app exists.
    await page.goto(url, { waitUntil: 'domcontentloaded', timeout: 60000 });
    await waitFor('window.app (the frontend finished app.setup)', () =>
      page.evaluate(() => Boolean(window.app && window.app.graph && window.app.canvas)), { timeoutMs: 120000 });
    await waitFor('the WebSocket status message with a sid', () =>
      page.evaluate(() => Boolean(window.app.api.clientId)), { timeoutMs: 30000 });
    await page.evaluate(() => {
      window.__kilnEvents = [];
      for (const type of ['status', 'execution_start', 'execution_cached', 'executing', 'progress',
        'progress_state', 'executed', 'execution_success', 'execution_error', 'execution_interrupted']) {
        window.app.api.addEventListener(type, (event) => {
          window.__kilnEvents.push({ type, detail: event.detail });
        });
      }
      window.app.api.addEventListener('b_preview_with_metadata', (event) => {
        const { blob, nodeId, displayNodeId, jobId } = event.detail;
        window.__kilnEvents.push({ type: 'b_preview_with_metadata',
          detail: { nodeId, displayNodeId, jobId, mime: blob.type, bytes: blob.size } });
      });
    });
    // Startup ends (workflow restore, first-visit handling) when the workspace spinner stops.
    await waitFor('the frontend startup to finish (workspace spinner off)', () =>
      page.evaluate(() => window.app.extensionManager?.spinner === false), { timeoutMs: 60000 });
    await page.waitForTimeout(1500);
    // Every node the server offers must pass the frontend's object_info schema and register.
    const offered = Object.keys(await getJson(origin, '/api/object_info'));
    const registered = await page.evaluate(() => Object.keys(window.LiteGraph?.registered_node_types ?? {}));
    const dropped = offered.filter((name) => !registered.includes(name));
    console.log(`frontend booted: ${offered.length} server node types, ${registered.length} registered, clientId ${await page.evaluate(() => window.app.api.clientId)}`);
    if (dropped.length) throw new Error(`the frontend dropped these node definitions: ${dropped.join(', ')}`);
    const bootMessages = await visibleMessages(page);
    for (const message of bootMessages) console.log(`after boot, visible: ${message}`);
    await shot('booted');

    // Close any first-visit dialog (missing models/nodes for the Z-Image default graph, templates).
    for (let attempt = 0; attempt < 3; attempt += 1) {
      const open = await page.locator('[role="dialog"]:visible').count();
      if (open === 0) break;
      await page.keyboard.press('Escape');
      await page.waitForTimeout(300);
    }

    await page.evaluate(async (graph) => {
      await window.app.loadGraphData(graph, true, true, 'kiln-e2e-sd1');
    }, defaultGraph(ckpt));
    await page.waitForTimeout(500);
    const loaded = await page.evaluate((saveNode) => {
      const node = window.app.graph.getNodeById(saveNode);
      return { nodes: window.app.graph.nodes.length, save: Boolean(node),
        missing: window.app.graph.nodes.filter((n) => n.has_errors || n.type === undefined).map((n) => n.type) };
    }, SAVE_NODE);
    console.log(`loaded SD1 graph: ${JSON.stringify(loaded)}`);
    if (loaded.nodes !== 7 || !loaded.save) throw new Error(`graph did not load: ${JSON.stringify(loaded)}`);
    const prompt = await page.evaluate(async () => (await window.app.graphToPrompt()).output);
    console.log(`graphToPrompt: ${JSON.stringify(prompt)}`);
    await shot('sd1-graph-loaded');

    const active = await page.evaluate(() => window.app.extensionManager.workflow.activeWorkflow?.path ?? null);
    console.log(`active workflow: ${active}`);
    if (!String(active).includes('kiln-e2e-sd1')) throw new Error(`the active workflow is ${active}, not the loaded SD1 graph`);
    const queueButton = page.locator('[data-testid="queue-button"]').first();
    if (await queueButton.count()) {
      console.log('queueing with the Run button');
      await queueButton.click();
    } else {
      console.log('no Run button found; queueing with app.queuePrompt(0)');
      await page.evaluate(() => window.app.queuePrompt(0));
    }

    const outcome = await waitFor('execution_success / execution_error', () =>
      page.evaluate(() => window.__kilnEvents.find((e) =>
        ['execution_success', 'execution_error', 'execution_interrupted'].includes(e.type)) ?? null),
    { timeoutMs: 240000, intervalMs: 500 });
    events.push(...await page.evaluate(() => window.__kilnEvents.map((e) => e.type)));
    console.log(`WS events: ${events.join(' ')}`);
    if (outcome.type !== 'execution_success') {
      await shot('execution-failed');
      throw new Error(`prompt failed: ${JSON.stringify(outcome.detail).slice(0, 2000)}`);
    }
    const promptId = outcome.detail.prompt_id;
    const executed = await page.evaluate((saveNode) => window.__kilnEvents.find((e) =>
      e.type === 'executed' && String(e.detail.node) === String(saveNode)) ?? null, SAVE_NODE);
    if (!executed) throw new Error(`no executed event for SaveImage node ${SAVE_NODE}`);
    console.log(`executed: ${JSON.stringify(executed.detail.output)}`);

    // What the canvas shows while it runs: progress bars, the running node, live previews.
    const seen = await page.evaluate(() => window.__kilnEvents);
    const progress = seen.filter((e) => e.type === 'progress').map((e) => e.detail);
    const running = seen.filter((e) => e.type === 'progress_state')
      .flatMap((e) => Object.values(e.detail.nodes ?? {})).filter((n) => n.state === 'running').map((n) => String(n.display_node_id ?? n.node_id));
    const previews = seen.filter((e) => e.type === 'b_preview_with_metadata').map((e) => e.detail);
    console.log(`progress: ${JSON.stringify(progress)}`);
    console.log(`nodes shown running: ${[...new Set(running)].join(' ')}`);
    console.log(`live previews (binary type 4): ${previews.length} ${JSON.stringify(previews.slice(0, 2))}`);
    if (!progress.some((p) => String(p.node) === SAMPLER_NODE && p.max === STEPS && p.prompt_id === promptId)) {
      throw new Error(`no progress event for KSampler ${SAMPLER_NODE} with max ${STEPS}`);
    }
    if (!running.includes(SAMPLER_NODE)) throw new Error(`progress_state never showed KSampler ${SAMPLER_NODE} running`);
    if (!previews.some((p) => String(p.displayNodeId) === SAMPLER_NODE && p.jobId === promptId && p.bytes > 0)) {
      throw new Error(`no live preview (binary type 4) for KSampler ${SAMPLER_NODE}`);
    }

    // The queue panel's view of it, through the frontend's own (zod-validated) jobs client.
    const job = await page.evaluate(async (id) => {
      const list = await window.app.api.getHistory(50);
      const item = list.find((entry) => entry.id === id) ?? null;
      const detail = await window.app.api.getJobDetail(id);
      return { listed: list.length, item, detailOutputs: detail?.outputs ?? null };
    }, promptId);
    console.log(`jobs as the frontend parsed them: ${JSON.stringify(job)}`);
    if (!job.item || job.item.status !== 'completed') throw new Error(`the frontend's job list lacks ${promptId} as completed`);
    if (!job.detailOutputs?.[String(SAVE_NODE)]?.images?.length) throw new Error(`the frontend's job detail for ${promptId} has no SaveImage output`);

    const history = await getJson(origin, `/api/history/${promptId}`);
    const status = history[promptId]?.status;
    console.log(`history status: ${JSON.stringify(status && { status_str: status.status_str, completed: status.completed })}`);
    if (status?.status_str !== 'success') throw new Error(`history for ${promptId} is not a success: ${JSON.stringify(history).slice(0, 1000)}`);

    // The frontend shows the output on the SaveImage node: its images load from /api/view.
    const shown = await waitFor('the SaveImage node to show the 64×64 output', () => page.evaluate((saveNode) => {
      const node = window.app.graph.getNodeById(saveNode);
      const fromNode = (node?.imgs ?? []).filter((img) => img.complete && img.naturalWidth > 0)
        .map((img) => ({ src: img.src, width: img.naturalWidth, height: img.naturalHeight }));
      const fromDom = [...document.querySelectorAll('img')]
        .filter((img) => img.src.includes('/view?') && img.complete && img.naturalWidth > 0)
        .map((img) => ({ src: img.src, width: img.naturalWidth, height: img.naturalHeight }));
      const all = [...fromNode, ...fromDom];
      return all.length ? { fromNode, fromDom } : null;
    }, SAVE_NODE), { timeoutMs: 30000 });
    console.log(`output shown: ${JSON.stringify(shown)}`);
    const image = [...shown.fromNode, ...shown.fromDom][0];
    if (image.width !== SIZE || image.height !== SIZE) {
      throw new Error(`the shown image is ${image.width}×${image.height}, expected ${SIZE}×${SIZE}`);
    }
    await checkUserdata(page);

    // Zoom on the result so the screenshot shows it.
    await page.evaluate((saveNode) => {
      const node = window.app.graph.getNodeById(saveNode);
      window.app.canvas.selectNode?.(node);
      window.app.canvas.fitViewToSelectionAnimated?.({ duration: 0 });
      window.app.canvas.setDirty(true, true);
    }, SAVE_NODE).catch(() => {});
    await page.waitForTimeout(500);
    await shot('result');
    const endMessages = await visibleMessages(page);
    for (const message of endMessages) console.log(`at the end, visible: ${message}`);
    const failures = judgeResponses(log.badResponses);
    if (failures.length) throw new Error(`the server answered the frontend wrongly:\n  ${failures.join('\n  ')}`);
    if (log.pageErrors.length) throw new Error(`the page threw: ${log.pageErrors.join('\n')}`);
    console.log('official frontend: the workflow ran and the image appeared');
  } catch (error) {
    await shot('failure');
    const messages = await visibleMessages(page).catch(() => []);
    for (const message of messages) console.log(`at failure, visible: ${message}`);
    throw error;
  } finally {
    log.report();
    await browser.close();
  }
}

run(main);
