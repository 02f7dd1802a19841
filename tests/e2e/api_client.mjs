// A ComfyUI API client that no Kiln code wrote (@saintno/comfyui-sdk from npm) drives a running
// Kiln server: it connects (WebSocket + HTTP), lists the checkpoints, submits ComfyUI's classic
// txt2img prompt (64×64, 2 steps) with its PromptBuilder/CallWrapper, follows the run through
// its events and downloads the resulting image through the client's own `getImage` (/view).
//
// Usage: node api_client.mjs <server url> <output dir>
// Prints `downloaded: <path>` per image; exit status 0 = at least one image downloaded.

import { mkdirSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { CallWrapper, ComfyApi, PromptBuilder } from '@saintno/comfyui-sdk';

const [url, outputDir] = process.argv.slice(2);
if (!url || !outputDir) {
  console.error('usage: node api_client.mjs <server url> <output dir>');
  process.exit(2);
}
const SIZE = 64;
const STEPS = 2;
const TIMEOUT_MS = 240000;

/** ComfyUI's default graph in API format; the builder sets the inputs below. */
const TXT2IMG = {
  3: { class_type: 'KSampler', inputs: { seed: 0, steps: 20, cfg: 8, sampler_name: 'euler', scheduler: 'normal',
    denoise: 1, model: ['4', 0], positive: ['6', 0], negative: ['7', 0], latent_image: ['5', 0] } },
  4: { class_type: 'CheckpointLoaderSimple', inputs: { ckpt_name: '' } },
  5: { class_type: 'EmptyLatentImage', inputs: { width: 512, height: 512, batch_size: 1 } },
  6: { class_type: 'CLIPTextEncode', inputs: { text: '', clip: ['4', 1] } },
  7: { class_type: 'CLIPTextEncode', inputs: { text: '', clip: ['4', 1] } },
  8: { class_type: 'VAEDecode', inputs: { samples: ['3', 0], vae: ['4', 2] } },
  9: { class_type: 'SaveImage', inputs: { filename_prefix: 'sdk-client', images: ['8', 0] } },
};

function withTimeout(promise, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${TIMEOUT_MS} ms: ${what}`)), TIMEOUT_MS);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

async function main() {
  const api = new ComfyApi(url, undefined, { forceWs: true });
  api.on('log', (event) => {
    if (!/listener/i.test(event.detail?.message ?? '')) console.log(`[sdk log] ${JSON.stringify(event.detail)}`);
  });
  await withTimeout(api.init(5, 1000).waitForReady(), 'the client to connect');
  console.log(`connected, os type ${api.osType}`);

  const checkpoints = await api.getCheckpoints();
  console.log(`checkpoints: ${JSON.stringify(checkpoints)}`);
  if (!checkpoints.length) throw new Error('the server lists no checkpoints');

  const workflow = new PromptBuilder(TXT2IMG,
    ['checkpoint', 'positive', 'negative', 'seed', 'steps', 'cfg', 'sampler', 'scheduler', 'width', 'height', 'batch'],
    ['images'])
    .setInputNode('checkpoint', '4.inputs.ckpt_name')
    .setInputNode('positive', '6.inputs.text')
    .setInputNode('negative', '7.inputs.text')
    .setInputNode('seed', '3.inputs.seed')
    .setInputNode('steps', '3.inputs.steps')
    .setInputNode('cfg', '3.inputs.cfg')
    .setInputNode('sampler', '3.inputs.sampler_name')
    .setInputNode('scheduler', '3.inputs.scheduler')
    .setInputNode('width', '5.inputs.width')
    .setInputNode('height', '5.inputs.height')
    .setInputNode('batch', '5.inputs.batch_size')
    .setOutputNode('images', '9')
    .input('checkpoint', checkpoints[0])
    .input('positive', 'a red fox in the snow')
    .input('negative', 'text, watermark')
    .input('seed', 42)
    .input('steps', STEPS)
    .input('cfg', 8)
    .input('sampler', 'euler')
    .input('scheduler', 'normal')
    .input('width', SIZE)
    .input('height', SIZE)
    .input('batch', 1);

  const seen = [];
  const finished = new Promise((resolve, reject) => {
    new CallWrapper(api, workflow)
      .onPending((id) => seen.push(`pending ${id}`))
      .onStart((id) => seen.push(`start ${id}`))
      .onProgress((info) => seen.push(`progress ${info.value}/${info.max}`))
      .onPreview(() => seen.push('preview'))
      .onFinished((data, id) => resolve({ data, id }))
      .onFailed((error, id) => reject(new Error(`prompt ${id} failed: ${error?.message ?? error} ${JSON.stringify(error?.cause ?? '')}`)))
      .run()
      .then((result) => {
        if (result === false) reject(new Error('CallWrapper.run() gave up (false)'));
      }, reject);
  });
  const { data, id } = await withTimeout(finished, 'the prompt to finish');
  console.log(`client events: ${seen.join(', ')}`);
  console.log(`finished ${id}: ${JSON.stringify(data.images)}`);
  const images = data.images?.images ?? [];
  if (!images.length) throw new Error(`the client saw no images: ${JSON.stringify(data)}`);

  mkdirSync(outputDir, { recursive: true });
  for (const image of images) {
    console.log(`fetching ${api.getPathImage(image)}`);
    const blob = await api.getImage(image);
    const path = join(outputDir, basename(image.filename));
    writeFileSync(path, Buffer.from(await blob.arrayBuffer()));
    console.log(`downloaded: ${path} (${blob.size} bytes, ${blob.type})`);
  }
  api.destroy?.();
}

main().then(
  () => process.exit(0),
  (error) => {
    console.error(`FAILED: ${error && error.stack ? error.stack : error}`);
    process.exit(1);
  },
);
