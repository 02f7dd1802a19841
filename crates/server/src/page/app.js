// Kiln's built-in page: a txt2img form over the ComfyUI API (POST /prompt, the /ws events and
// binary previews, /queue, /history, /view). Plain browser JavaScript, no build step, no
// dependencies; every piece of server or user text reaches the DOM through textContent.
//
// <body data-state> is the contract for scripted browsers: "idle" (nothing of ours ran yet, or
// the last one was cancelled), "running" (a prompt of ours is queued or running), "done" (the
// last one succeeded and its images are in #gallery), "error" (the last submission was refused
// or the last prompt failed; #errors says why). <body data-ready="true"> once the node lists
// are loaded; <body data-ws> is "open" or "closed".
'use strict';

(() => {
  const SETTINGS_KEY = 'kiln.page.settings.v1';
  const SEED_MAX = 18446744073709551615n;
  const GALLERY_LIMIT = 100;
  const HISTORY_ON_LOAD = 24;
  const FILENAME_PREFIX = 'Kiln';
  const SAVED_FIELDS = [
    'checkpoint', 'prompt', 'negative', 'width', 'height', 'steps',
    'sampler', 'scheduler', 'cfg', 'seed', 'batch',
  ];
  // "<node id>/<input>" of the submitted prompt → the form field a validation error points at.
  const FIELD_OF_INPUT = {
    '4/ckpt_name': 'checkpoint',
    '6/text': 'prompt',
    '7/text': 'negative',
    '5/width': 'width',
    '5/height': 'height',
    '5/batch_size': 'batch',
    '3/seed': 'seed',
    '3/steps': 'steps',
    '3/cfg': 'cfg',
    '3/sampler_name': 'sampler',
    '3/scheduler': 'scheduler',
  };
  const FIELD_LABELS = {
    checkpoint: 'Checkpoint', prompt: 'Prompt', negative: 'Negative prompt', width: 'Width',
    height: 'Height', batch: 'Batch', seed: 'Seed', steps: 'Steps', cfg: 'CFG',
    sampler: 'Sampler', scheduler: 'Scheduler',
  };

  const $ = (id) => document.getElementById(id);
  const body = document.body;

  // A fresh id per page load: two tabs sharing one id would keep closing each other's socket.
  const clientId = randomHex(16);
  // Prompts this page submitted that have not finished: prompt_id → graph.
  const outstanding = new Map();
  // Graphs of prompts seen (ours and the queue's), to name running nodes.
  const graphs = new Map();
  // Prompts whose POST /prompt has not answered yet (not in the queue yet, but not gone).
  const submitting = new Set();
  // Images announced by `executed` before the prompt finished: prompt_id → [image].
  const partialImages = new Map();
  // Prompts whose absence from the queue is being checked against the history.
  const checking = new Set();
  let lastOutcome = 'idle';
  let socket = null;
  let reconnectDelay = 500;
  let rate = null;
  let previewBlobUrl = null;
  let queueTimer = null;
  let queueRequest = 0;

  function randomHex(bytes) {
    const values = crypto.getRandomValues(new Uint8Array(bytes));
    return Array.from(values, (b) => b.toString(16).padStart(2, '0')).join('');
  }

  // The page names its prompts itself, so events that overtake the POST /prompt answer
  // already find the prompt known.
  function uuid4() {
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
    return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
  }

  // Up to 2^53 - 1, so the seed survives a round trip through JSON.parse unchanged.
  function randomSeed() {
    const [high, low] = crypto.getRandomValues(new Uint32Array(2));
    return String((high & 0x1fffff) * 0x100000000 + low);
  }

  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  // Seeds run to 2^64 - 1, past what a JS number holds exactly, so long seed values in
  // prompts read back from the server are kept as their digits. The pattern cannot match
  // inside a JSON string, where every quote is escaped.
  async function getJson(url) {
    const response = await fetch(url, { headers: { Accept: 'application/json' } });
    if (!response.ok) throw new Error(`${url} answered ${response.status}`);
    const text = await response.text();
    return JSON.parse(text.replace(/"(seed|noise_seed)":(\s*)(\d{16,})(?![\d.eE])/g, '"$1":$2"$3"'));
  }

  function postJson(url, payload) {
    return fetch(url, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: typeof payload === 'string' ? payload : JSON.stringify(payload),
    });
  }

  // ---- state ----------------------------------------------------------------------------

  function updateState() {
    body.dataset.state = outstanding.size > 0 ? 'running' : lastOutcome;
  }

  function setOutcome(outcome) {
    lastOutcome = outcome;
    updateState();
  }

  // ---- node lists and settings ----------------------------------------------------------

  function inputSpec(info, name) {
    const inputs = (info && info.input) || {};
    return (inputs.required && inputs.required[name]) || (inputs.optional && inputs.optional[name]);
  }

  // A combo is `[[values...], {opts}]` (V1 nodes) or `["COMBO", {"options": [...]}]` (V3).
  function comboValues(info, name) {
    const spec = inputSpec(info, name);
    if (!Array.isArray(spec)) return [];
    if (Array.isArray(spec[0])) return spec[0].map(String);
    if (spec[0] === 'COMBO' && spec[1] && Array.isArray(spec[1].options)) {
      return spec[1].options.map(String);
    }
    return [];
  }

  function comboDefault(info, name) {
    const spec = inputSpec(info, name);
    return Array.isArray(spec) && spec[1] && spec[1].default !== undefined ? String(spec[1].default) : null;
  }

  function fillSelect(select, values, preferred) {
    select.replaceChildren(...values.map((value) => {
      const option = element('option', null, value);
      option.value = value;
      return option;
    }));
    if (preferred !== null && values.includes(preferred)) select.value = preferred;
  }

  // min/max/step/default of a number input, from its `[TYPE, {opts}]` spec.
  function applyNumberSpec(input, info, name) {
    const spec = inputSpec(info, name);
    const opts = Array.isArray(spec) && spec[1] && typeof spec[1] === 'object' ? spec[1] : {};
    for (const key of ['min', 'max', 'step']) {
      if (typeof opts[key] === 'number' && Number.isFinite(opts[key])) input[key] = String(opts[key]);
    }
    if (typeof opts.default === 'number' && Number.isFinite(opts.default)) input.value = String(opts.default);
  }

  async function loadNodeInfo() {
    const [checkpoints, sampler, latent] = await Promise.all([
      getJson('/object_info/CheckpointLoaderSimple'),
      getJson('/object_info/KSampler'),
      getJson('/object_info/EmptyLatentImage').catch(() => ({})),
    ]);
    const checkpointInfo = checkpoints.CheckpointLoaderSimple;
    const samplerInfo = sampler.KSampler;
    const latentInfo = latent.EmptyLatentImage;
    const names = comboValues(checkpointInfo, 'ckpt_name');
    fillSelect($('checkpoint'), names, null);
    $('checkpoint-hint').hidden = names.length > 0;
    // Without a declared default, ComfyUI's default graph's choices.
    fillSelect($('sampler'), comboValues(samplerInfo, 'sampler_name'), comboDefault(samplerInfo, 'sampler_name') || 'euler');
    fillSelect($('scheduler'), comboValues(samplerInfo, 'scheduler'), comboDefault(samplerInfo, 'scheduler') || 'normal');
    applyNumberSpec($('steps'), samplerInfo, 'steps');
    applyNumberSpec($('cfg'), samplerInfo, 'cfg');
    applyNumberSpec($('width'), latentInfo, 'width');
    applyNumberSpec($('height'), latentInfo, 'height');
    applyNumberSpec($('batch'), latentInfo, 'batch_size');
  }

  function loadSettings() {
    let saved;
    try {
      saved = JSON.parse(localStorage.getItem(SETTINGS_KEY) || '{}');
    } catch {
      return;
    }
    if (!saved || typeof saved !== 'object') return;
    for (const field of SAVED_FIELDS) {
      const value = saved[field];
      if (typeof value !== 'string') continue;
      const input = $(field);
      if (input instanceof HTMLSelectElement) {
        if (Array.from(input.options).some((option) => option.value === value)) input.value = value;
      } else {
        input.value = value;
      }
    }
    $('seed-auto').checked = saved.seedAuto === true;
  }

  function saveSettings() {
    const saved = { seedAuto: $('seed-auto').checked };
    for (const field of SAVED_FIELDS) saved[field] = $(field).value;
    try {
      localStorage.setItem(SETTINGS_KEY, JSON.stringify(saved));
    } catch {
      // Storage full or disabled (private mode): the page works without remembering.
    }
  }

  // ---- errors ---------------------------------------------------------------------------

  function clearErrors() {
    const box = $('errors');
    box.hidden = true;
    box.replaceChildren();
    for (const field of SAVED_FIELDS) $(field).removeAttribute('aria-invalid');
  }

  function showErrors(title, lines) {
    const box = $('errors');
    box.replaceChildren(element('strong', null, title));
    if (lines.length > 0) {
      const list = element('ul');
      for (const line of lines) list.append(element('li', null, line));
      box.append(list);
    }
    box.hidden = false;
  }

  // A refused POST /prompt: `{"error": {...}, "node_errors": {id: {errors, class_type}}}`.
  function showRefusal(status, answer) {
    const error = (answer && answer.error) || {};
    const nodeErrors = (answer && answer.node_errors) || {};
    const lines = [];
    for (const [nodeId, entry] of Object.entries(nodeErrors)) {
      const classType = (entry && entry.class_type) || 'node';
      for (const failure of (entry && entry.errors) || []) {
        const input = failure.extra_info && failure.extra_info.input_name;
        const field = input ? FIELD_OF_INPUT[`${nodeId}/${input}`] : undefined;
        if (field) $(field).setAttribute('aria-invalid', 'true');
        const where = field
          ? `${FIELD_LABELS[field]} (#${nodeId} ${classType}.${input})`
          : `#${nodeId} ${classType}${input ? `.${input}` : ''}`;
        const details = failure.details && failure.details !== input ? ` — ${failure.details}` : '';
        lines.push(`${where}: ${failure.message || failure.type || 'invalid'}${details}`);
      }
    }
    let title = error.message || `The server refused the prompt (HTTP ${status}).`;
    if (lines.length === 0 && error.details) title += `: ${error.details}`;
    showErrors(title, lines);
  }

  function showExecutionError(data) {
    const where = `#${data.node_id} ${data.node_type || ''}`.trim();
    const message = [data.exception_type, data.exception_message].filter(Boolean).join(': ');
    showErrors(`Generation failed in ${where}.`, message ? [message] : []);
  }

  // ---- generate -------------------------------------------------------------------------

  function numberOrText(id) {
    const raw = $(id).value.trim();
    const value = Number(raw);
    // Anything unparsable goes to the server as typed, so its validation names the field.
    return raw !== '' && Number.isFinite(value) ? value : raw;
  }

  // ComfyUI's default txt2img graph, with its node ids.
  function buildGraph(seed) {
    return {
      3: {
        class_type: 'KSampler',
        inputs: {
          seed,
          steps: numberOrText('steps'),
          cfg: numberOrText('cfg'),
          sampler_name: $('sampler').value,
          scheduler: $('scheduler').value,
          denoise: 1,
          model: ['4', 0],
          positive: ['6', 0],
          negative: ['7', 0],
          latent_image: ['5', 0],
        },
      },
      4: { class_type: 'CheckpointLoaderSimple', inputs: { ckpt_name: $('checkpoint').value } },
      5: {
        class_type: 'EmptyLatentImage',
        inputs: {
          width: numberOrText('width'),
          height: numberOrText('height'),
          batch_size: numberOrText('batch'),
        },
      },
      6: { class_type: 'CLIPTextEncode', inputs: { text: $('prompt').value, clip: ['4', 1] } },
      7: { class_type: 'CLIPTextEncode', inputs: { text: $('negative').value, clip: ['4', 1] } },
      8: { class_type: 'VAEDecode', inputs: { samples: ['3', 0], vae: ['4', 2] } },
      9: { class_type: 'SaveImage', inputs: { filename_prefix: FILENAME_PREFIX, images: ['8', 0] } },
    };
  }

  // A decimal seed is spliced into the JSON text as written (a JS number would round seeds past
  // 2^53); anything else goes as a string, for the server to refuse by name.
  function promptBody(promptId, graph, seedText) {
    const token = `kiln-seed-${randomHex(8)}`;
    graph[3].inputs.seed = token;
    const digits = /^\d{1,20}$/.test(seedText) ? BigInt(seedText) : null;
    const seedJson = digits !== null ? digits.toString() : JSON.stringify(seedText);
    const text = JSON.stringify({ prompt: graph, prompt_id: promptId, client_id: clientId });
    graph[3].inputs.seed = digits !== null && digits <= SEED_MAX ? Number(digits) : seedText;
    return text.replace(JSON.stringify(token), seedJson);
  }

  async function generate(event) {
    event.preventDefault();
    clearErrors();
    if ($('seed-auto').checked) $('seed').value = randomSeed();
    saveSettings();
    const promptId = uuid4();
    const graph = buildGraph(null);
    const payload = promptBody(promptId, graph, $('seed').value.trim());
    const button = $('generate');
    button.disabled = true;
    graphs.set(promptId, graph);
    outstanding.set(promptId, graph);
    submitting.add(promptId);
    updateState();
    let response;
    let answer = null;
    try {
      response = await postJson('/prompt', payload);
      answer = await response.json().catch(() => null);
    } catch (error) {
      outstanding.delete(promptId);
      showErrors('Could not reach the server.', [String(error && error.message ? error.message : error)]);
      setOutcome('error');
      return;
    } finally {
      button.disabled = false;
      submitting.delete(promptId);
    }
    if (!response.ok || !answer || typeof answer.prompt_id !== 'string') {
      outstanding.delete(promptId);
      showRefusal(response.status, answer);
      setOutcome('error');
      return;
    }
    scheduleQueueRefresh();
  }

  // One of our prompts ended: its images into the gallery, then the state.
  async function finish(promptId, outcome) {
    if (!outstanding.has(promptId)) return;
    outstanding.delete(promptId);
    // "done" promises the images are in the gallery, so the history comes first.
    const images = await loadResult(promptId);
    if (outcome === 'done' && images.length > 0) showPreview(viewUrl(images[0]), 'result');
    partialImages.delete(promptId);
    resetProgress();
    setOutcome(outcome);
    scheduleQueueRefresh();
  }

  // ---- progress and previews ------------------------------------------------------------

  function resetProgress() {
    rate = null;
    $('progress').value = 0;
    $('progress').max = 1;
    $('progress-text').textContent = '';
    $('running-node').textContent = '';
  }

  function onProgress(data) {
    const value = Number(data.value);
    const max = Number(data.max);
    if (!Number.isFinite(value) || !Number.isFinite(max) || max <= 0) return;
    const key = `${data.prompt_id}/${data.node}`;
    const now = performance.now();
    if (!rate || rate.key !== key || value < rate.last) rate = { key, first: value, start: now, last: value };
    rate.last = value;
    $('progress').max = max;
    $('progress').value = Math.min(value, max);
    let text = `${value}/${max}`;
    const seconds = (now - rate.start) / 1000;
    const steps = value - rate.first;
    if (steps > 0 && seconds > 0) {
      const perSecond = steps / seconds;
      text += perSecond >= 1 ? ` · ${perSecond.toFixed(2)} it/s` : ` · ${(1 / perSecond).toFixed(2)} s/it`;
    }
    $('progress-text').textContent = text;
  }

  function onExecuting(data) {
    if (data.node === null || data.node === undefined) {
      $('running-node').textContent = '';
      return;
    }
    const node = String(data.display_node || data.node);
    const graph = graphs.get(data.prompt_id);
    const classType = graph && graph[node] && graph[node].class_type;
    $('running-node').textContent = classType ? `Running ${classType} (#${node})` : `Running node #${node}`;
  }

  function showPreview(url, source) {
    const image = $('preview');
    image.src = url;
    image.dataset.source = source;
    image.hidden = false;
    if (previewBlobUrl) URL.revokeObjectURL(previewBlobUrl);
    previewBlobUrl = source === 'live' ? url : null;
  }

  // Binary frames: u32 BE event type; 1 = u32 format (1 JPEG, 2 PNG) + image; 4 = u32 length +
  // JSON metadata (with image_type) + image.
  function onBinary(buffer) {
    if (!(buffer instanceof ArrayBuffer) || buffer.byteLength < 8) return;
    const view = new DataView(buffer);
    const type = view.getUint32(0);
    let mime;
    let start;
    if (type === 1) {
      mime = view.getUint32(4) === 2 ? 'image/png' : 'image/jpeg';
      start = 8;
    } else if (type === 4) {
      const length = view.getUint32(4);
      if (length > buffer.byteLength - 8) return;
      let metadata = {};
      try {
        metadata = JSON.parse(new TextDecoder().decode(new Uint8Array(buffer, 8, length)));
      } catch {
        metadata = {};
      }
      const imageType = metadata && metadata.image_type;
      mime = typeof imageType === 'string' && imageType.startsWith('image/') ? imageType : 'image/jpeg';
      start = 8 + length;
    } else {
      return;
    }
    const blob = new Blob([new Uint8Array(buffer, start)], { type: mime });
    showPreview(URL.createObjectURL(blob), 'live');
  }

  // ---- gallery --------------------------------------------------------------------------

  function viewUrl(image) {
    const query = new URLSearchParams({
      filename: image.filename,
      subfolder: image.subfolder || '',
      type: image.type || 'output',
    });
    return `/view?${query}`;
  }

  function imagesOf(outputs) {
    const images = [];
    for (const output of Object.values(outputs || {})) {
      for (const image of (output && output.images) || []) {
        if (image && typeof image.filename === 'string') images.push(image);
      }
    }
    return images;
  }

  // The parameters of a txt2img graph, found by following its links (so graphs from other
  // clients with other node ids read too).
  function describe(graph) {
    const params = {};
    if (!graph || typeof graph !== 'object') return params;
    const nodes = Object.values(graph).filter((node) => node && typeof node === 'object');
    const linked = (input) => (Array.isArray(input) && input.length === 2 ? graph[String(input[0])] : null);
    const text = (input) => {
      const node = linked(input);
      return node && node.inputs && typeof node.inputs.text === 'string' ? node.inputs.text : undefined;
    };
    const sampler = nodes.find((node) => node.class_type === 'KSampler' || node.class_type === 'KSamplerAdvanced');
    const loader = nodes.find((node) => node.inputs && typeof node.inputs.ckpt_name === 'string');
    if (loader) params.checkpoint = loader.inputs.ckpt_name;
    if (sampler && sampler.inputs) {
      const inputs = sampler.inputs;
      params.prompt = text(inputs.positive);
      params.negative = text(inputs.negative);
      params.seed = inputs.seed !== undefined ? inputs.seed : inputs.noise_seed;
      params.steps = inputs.steps;
      params.cfg = inputs.cfg;
      params.sampler = inputs.sampler_name;
      params.scheduler = inputs.scheduler;
      const latent = linked(inputs.latent_image);
      if (latent && latent.inputs) {
        params.width = latent.inputs.width;
        params.height = latent.inputs.height;
        params.batch = latent.inputs.batch_size;
      }
    }
    return params;
  }

  const plain = (value) => typeof value === 'string' || typeof value === 'number';

  function caption(params) {
    const figcaption = element('figcaption');
    if (plain(params.prompt) && params.prompt !== '') figcaption.append(element('div', 'text', params.prompt));
    if (plain(params.negative) && params.negative !== '') {
      figcaption.append(element('div', null, `Negative: ${params.negative}`));
    }
    const facts = [];
    if (plain(params.checkpoint)) facts.push(params.checkpoint);
    if (plain(params.width) && plain(params.height)) facts.push(`${params.width}×${params.height}`);
    if (plain(params.steps)) facts.push(`${params.steps} steps`);
    if (plain(params.sampler)) facts.push(plain(params.scheduler) ? `${params.sampler}/${params.scheduler}` : params.sampler);
    if (plain(params.cfg)) facts.push(`CFG ${params.cfg}`);
    if (plain(params.seed)) facts.push(`seed ${params.seed}`);
    if (plain(params.batch) && Number(params.batch) > 1) facts.push(`batch ${params.batch}`);
    if (facts.length > 0) figcaption.append(element('div', 'facts', facts.join(' · ')));
    return figcaption;
  }

  function reuse(params) {
    for (const field of SAVED_FIELDS) {
      const value = params[field];
      if (!plain(value)) continue;
      const input = $(field);
      if (input instanceof HTMLSelectElement && !Array.from(input.options).some((o) => o.value === String(value))) continue;
      input.value = String(value);
    }
    $('seed-auto').checked = false;
    saveSettings();
  }

  // Adds or replaces the card of one prompt; new cards go first (`front`) or last.
  function upsertCard(promptId, graph, images, place) {
    const gallery = $('gallery');
    const params = describe(graph);
    const card = element('figure', 'result');
    card.dataset.promptId = promptId;
    const strip = element('div', 'images');
    for (const image of images) {
      const url = viewUrl(image);
      const link = element('a');
      link.href = url;
      link.target = '_blank';
      link.rel = 'noopener';
      const img = element('img');
      img.src = url;
      img.alt = typeof params.prompt === 'string' && params.prompt ? params.prompt : image.filename;
      img.loading = 'lazy';
      link.append(img);
      strip.append(link);
    }
    card.append(strip, caption(params));
    if (Object.values(params).some(plain)) {
      const button = element('button', 'reuse', 'Use these settings');
      button.type = 'button';
      button.addEventListener('click', () => reuse(params));
      card.append(button);
    }
    const existing = Array.from(gallery.children).find((child) => child.dataset.promptId === promptId);
    if (existing) existing.replaceWith(card);
    else if (place === 'front') gallery.prepend(card);
    else gallery.append(card);
    gallery.querySelector(':scope > .empty')?.remove();
    while (gallery.children.length > GALLERY_LIMIT) gallery.lastElementChild.remove();
  }

  // One prompt's history entry into the gallery; answers its images.
  async function loadResult(promptId) {
    try {
      const history = await getJson(`/history/${encodeURIComponent(promptId)}`);
      const entry = history[promptId];
      if (!entry) return partialImages.get(promptId) || [];
      const images = imagesOf(entry.outputs);
      const graph = Array.isArray(entry.prompt) ? entry.prompt[2] : graphs.get(promptId);
      if (images.length > 0) upsertCard(promptId, graph, images, 'front');
      return images;
    } catch {
      const images = partialImages.get(promptId) || [];
      if (images.length > 0) upsertCard(promptId, graphs.get(promptId), images, 'front');
      return images;
    }
  }

  async function loadRecentHistory() {
    let history;
    try {
      history = await getJson(`/history?max_items=${HISTORY_ON_LOAD}`);
    } catch {
      return;
    }
    // Oldest first in the answer; the gallery shows the newest first.
    for (const [promptId, entry] of Object.entries(history).reverse()) {
      const images = imagesOf(entry && entry.outputs);
      if (images.length === 0) continue;
      if (Array.from($('gallery').children).some((child) => child.dataset.promptId === promptId)) continue;
      upsertCard(promptId, Array.isArray(entry.prompt) ? entry.prompt[2] : null, images, 'back');
    }
    if ($('gallery').children.length === 0) $('gallery').append(element('p', 'empty', 'No images yet.'));
  }

  function onExecuted(data) {
    const images = imagesOf({ node: data.output });
    if (images.length === 0) return;
    const collected = (partialImages.get(data.prompt_id) || []).concat(images);
    partialImages.set(data.prompt_id, collected);
    upsertCard(data.prompt_id, graphs.get(data.prompt_id), collected, 'front');
  }

  // ---- queue ----------------------------------------------------------------------------

  function scheduleQueueRefresh() {
    clearTimeout(queueTimer);
    queueTimer = setTimeout(refreshQueue, 100);
  }

  async function refreshQueue() {
    const request = ++queueRequest;
    let queue;
    try {
      queue = await getJson('/queue');
    } catch {
      return;
    }
    if (request !== queueRequest) return;
    const running = Array.isArray(queue.queue_running) ? queue.queue_running : [];
    const pending = (Array.isArray(queue.queue_pending) ? queue.queue_pending : [])
      .slice()
      .sort((a, b) => Number(a[0]) - Number(b[0]));
    const list = $('queue');
    const items = [];
    for (const [status, entries] of [['running', running], ['pending', pending]]) {
      for (const item of entries) {
        if (!Array.isArray(item) || typeof item[1] !== 'string') continue;
        items.push(queueItem(status, item));
      }
    }
    if (items.length === 0) items.push(element('li', 'empty', 'Nothing queued.'));
    list.replaceChildren(...items);
    $('queue-count').textContent = String(running.length + pending.length);
    const present = new Set([...running, ...pending].map((item) => Array.isArray(item) && item[1]));
    for (const promptId of outstanding.keys()) {
      if (!present.has(promptId) && !submitting.has(promptId)) confirmFinished(promptId, 0);
    }
  }

  function queueItem(status, item) {
    const [, promptId, graph, extra] = item;
    if (graph && typeof graph === 'object') graphs.set(promptId, graph);
    const li = element('li');
    li.dataset.promptId = promptId;
    li.dataset.status = status;
    const params = describe(graph);
    const mine = extra && extra.client_id === clientId;
    li.append(element('span', 'tag', status === 'running' ? 'running' : 'pending'));
    const what = element('span', 'what', typeof params.prompt === 'string' && params.prompt ? params.prompt : promptId);
    what.title = promptId;
    li.append(what);
    if (mine) li.append(element('span', 'tag', 'yours'));
    const cancel = element('button', 'cancel', status === 'running' ? 'Stop' : 'Cancel');
    cancel.type = 'button';
    cancel.addEventListener('click', () => cancelPrompt(promptId, status, cancel));
    li.append(cancel);
    return li;
  }

  async function cancelPrompt(promptId, status, button) {
    button.disabled = true;
    try {
      if (status === 'running') await postJson('/interrupt', { prompt_id: promptId });
      else await postJson('/queue', { delete: [promptId] });
    } catch {
      button.disabled = false;
    }
    scheduleQueueRefresh();
  }

  // An outstanding prompt missing from the queue: finished (it is in the history) or deleted
  // (it is not, after a second look that covers the instant between the two tables).
  async function confirmFinished(promptId, attempt) {
    if (attempt === 0 && checking.has(promptId)) return;
    checking.add(promptId);
    let retry = false;
    try {
      const history = await getJson(`/history/${encodeURIComponent(promptId)}`);
      const entry = history[promptId];
      if (!outstanding.has(promptId)) return;
      if (entry) {
        const ok = entry.status && entry.status.status_str === 'success';
        const interrupted = ((entry.status && entry.status.messages) || [])
          .some((message) => Array.isArray(message) && message[0] === 'execution_interrupted');
        await finish(promptId, ok ? 'done' : interrupted ? 'idle' : 'error');
      } else if (attempt < 2) {
        retry = true;
        setTimeout(() => confirmFinished(promptId, attempt + 1), 500);
      } else {
        await finish(promptId, 'idle');
      }
    } catch {
      // The next status event looks again.
    } finally {
      if (!retry) checking.delete(promptId);
    }
  }

  // ---- websocket ------------------------------------------------------------------------

  function connect() {
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    socket = new WebSocket(`${scheme}://${location.host}/ws?clientId=${clientId}`);
    socket.binaryType = 'arraybuffer';
    socket.addEventListener('open', () => {
      reconnectDelay = 500;
      socket.send(JSON.stringify({ type: 'feature_flags', data: { supports_preview_metadata: true } }));
      body.dataset.ws = 'open';
      $('connection').textContent = 'connected';
      scheduleQueueRefresh();
    });
    socket.addEventListener('message', (event) => {
      if (typeof event.data === 'string') onMessage(event.data);
      else onBinary(event.data);
    });
    socket.addEventListener('close', () => {
      body.dataset.ws = 'closed';
      $('connection').textContent = 'reconnecting…';
      setTimeout(connect, reconnectDelay);
      reconnectDelay = Math.min(reconnectDelay * 2, 10000);
    });
  }

  function onMessage(text) {
    let message;
    try {
      message = JSON.parse(text);
    } catch {
      return;
    }
    const data = (message && message.data) || {};
    switch (message.type) {
      case 'status': {
        const remaining = data.status && data.status.exec_info && data.status.exec_info.queue_remaining;
        if (typeof remaining === 'number') $('queue-count').textContent = String(remaining);
        scheduleQueueRefresh();
        break;
      }
      case 'execution_start':
        if (outstanding.has(data.prompt_id)) resetProgress();
        break;
      case 'executing':
        onExecuting(data);
        break;
      case 'progress':
        onProgress(data);
        break;
      case 'executed':
        onExecuted(data);
        break;
      case 'execution_success':
        finish(data.prompt_id, 'done');
        break;
      case 'execution_error':
        showExecutionError(data);
        finish(data.prompt_id, 'error');
        break;
      case 'execution_interrupted':
        if (outstanding.has(data.prompt_id)) showErrors('Interrupted.', []);
        finish(data.prompt_id, 'idle');
        break;
      default:
        break;
    }
  }

  // ---- start ----------------------------------------------------------------------------

  function wireForm() {
    const form = $('form');
    form.addEventListener('submit', generate);
    form.addEventListener('input', (event) => {
      event.target.removeAttribute('aria-invalid');
      saveSettings();
    });
    form.addEventListener('change', saveSettings);
    form.addEventListener('keydown', (event) => {
      if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) {
        event.preventDefault();
        form.requestSubmit();
      }
    });
    $('seed-random').addEventListener('click', () => {
      $('seed').value = randomSeed();
      $('seed').removeAttribute('aria-invalid');
      saveSettings();
    });
  }

  async function start() {
    wireForm();
    connect();
    loadRecentHistory();
    try {
      await loadNodeInfo();
    } catch (error) {
      showErrors('Could not load the node lists from the server.', [String(error && error.message ? error.message : error)]);
      setOutcome('error');
    }
    loadSettings();
    body.dataset.ready = 'true';
  }

  start();
})();
