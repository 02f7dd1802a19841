#!/usr/bin/env python3
"""Write Kiln's SD1.x / SD2.x / SDXL reference fixtures by running ComfyUI's own Python code on
Kiln's tiny generated checkpoints (CPU, float32, deterministic algorithms).

Nothing here runs in CI. The fixtures it writes are committed under
`crates/models/tests/fixtures/`; `crates/models/tests/fixtures/README.md` describes every file.

Rerun (from the repository root; see scripts/reference/README.md for the one-time setup of the
venv, the ComfyUI source tree and the f32 tiny checkpoints):

    /work/venv-ref/bin/python scripts/reference/sd_fixtures.py \
        --comfyui /work/comfyui-src \
        --comfyui-commit a125cd84b054a57729b5eecab930ca9408719832 \
        --checkpoints /work/ref-ckpts/models/checkpoints \
        --out crates/models/tests/fixtures

Why the models are built by hand: the tiny checkpoints keep every block/layer count of the real
models but shrink widths (UNet model_channels 32, CLIP widths 32/48/64, VAE ch 32), so ComfyUI's
`load_checkpoint_guess_config` finds no matching `supported_models` entry. This script mirrors
`comfy.sd.load_state_dict_guess_config` step by step instead:

* UNet: `model_detection.detect_unet_config` on the weights, the family's `supported_models`
  class (SD15 / SD20 / SDXL / SDXLRefiner) built with that config, the attention-head layout of
  the tiny presets (not stored in weights: SD1 2 heads per level, the others 16-wide heads), then
  `get_model` + `load_model_weights` and a CPU `ModelPatcher`.
* CLIP: the family's own `clip_target` (SD1ClipModel, SD2ClipModel, SDXLClipModel,
  SDXLRefinerClipModel) wrapped in `comfy.sd.CLIP`; the tiny widths reach ComfyUI's CLIP through
  its own per-model config override (`model_options["clip_l_model_config"]` etc.), so every
  other default (layer choice, pad tokens, pooled output) is ComfyUI's.
* VAE: `comfy.sd.VAE(sd, config={"params": {"ddconfig": ..., "embed_dim": 4}})` with ComfyUI's
  SD ddconfig except `ch` = 32.

Everything else goes through ComfyUI's node functions (`CLIPTextEncode`, `CLIPSetLastLayer`,
`KSampler`, `KSamplerAdvanced`, `VAEDecode`, `VAEEncode`) and `comfy.sd.load_lora_for_models`.
"""

import argparse
import hashlib
import json
import os
import sys

SAMPLERS = [
    "euler", "euler_ancestral", "heun", "dpm_2", "dpm_2_ancestral", "lms", "dpmpp_2s_ancestral",
    "dpmpp_sde", "dpmpp_2m", "dpmpp_2m_sde", "dpmpp_3m_sde", "ddim", "uni_pc", "lcm",
]
SCHEDULERS = ["normal", "karras", "exponential", "sgm_uniform", "simple", "ddim_uniform", "beta"]
STEPS = 4
CFG = 7.5
SEED = 42
LATENT_SHAPE = [1, 4, 8, 8]  # 64x64 images

CHECKPOINTS = {
    # family key -> (file written by kiln-test-checkpoints, comfy.supported_models class name)
    "sd1": ("v1-5-pruned-emaonly-fp32.safetensors", "SD15"),
    "sd2v": ("v2-1_768-ema-pruned-fp32.safetensors", "SD20"),
    "sdxl": ("sd_xl_base_1.0-fp32.safetensors", "SDXL"),
    "sdxl_refiner": ("sd_xl_refiner_1.0-fp32.safetensors", "SDXLRefiner"),
}

# The attention-head layout of the tiny presets (kiln-test-checkpoints `UnetConfig::tiny`):
# SD1 keeps a fixed head count (real: 8, tiny: 2); SD2/SDXL keep a fixed head width (real: 64,
# tiny: 16). Heads are not visible in the weights.
TINY_UNET_HEADS = {
    "sd1": {"num_heads": 2, "num_head_channels": -1},
    "sd2v": {"num_heads": -1, "num_head_channels": 16},
    "sdxl": {"num_heads": -1, "num_head_channels": 16},
    "sdxl_refiner": {"num_heads": -1, "num_head_channels": 16},
}
# Tiny CLIP towers use 16-wide heads; activation follows the real model.
CLIP_HEAD_WIDTH = 16
CLIP_ACTIVATION = {"clip_l": "quick_gelu", "clip_h": "gelu", "clip_g": "gelu"}

TOKENIZER_PROMPTS = {
    "plain": "a photo of a cat",
    "empty": "",
    "weights": "a (red:1.2) cat, ((blue)) sky, [green] grass",
    "nested": "(masterpiece:1.3), (best quality), [[low res]], (a (nested:1.5) word:0.8)",
    "low_weight": "(faded:0.5) colors and (inverted:-1) stuff",
    "escapes": "escaped \\(not weighted\\) and \\[not either\\] and a \\\\ backslash",
    "unbalanced": "an (open paren and a close) paren) and (another",
    "unicode": "A CAT   with  \u00c9mile's caf\u00e9\nnew line, 100% 'quoted' \"text\"!",
    "tokens_75": " ".join(["cat"] * 75),
    "tokens_76": " ".join(["cat"] * 76),
    "long_word_at_boundary": " ".join(["cat"] * 70) + " supercalifragilisticexpialidociously",
    "long": ", ".join([
        "a beautiful landscape with snowy mountains", "a winding river", "tall pine trees",
        "a small wooden village at sunset", "warm orange light", "dramatic clouds",
        "reflections in the water", "a flock of birds", "highly detailed", "sharp focus",
        "wide angle lens", "golden hour", "volumetric fog", "(masterpiece:1.2)",
        "best quality", "trending on artstation", "a red boat on the shore",
        "an old stone bridge", "children playing near the houses", "smoke from chimneys",
        "autumn leaves", "a lighthouse in the distance", "soft shadows",
        "cinematic composition", "ultra realistic", "8k resolution",
    ]),
    "embedding": "embedding:tiny_emb a cat",
    "embedding_weighted": "a cat, (embedding:tiny_emb:1.2), embedding:tiny_emb_params.safetensors dog",
    "embedding_missing": "embedding:does_not_exist dog",
}
# Text-encoder outputs are recorded for these (one plain, one weighted, one > 77 tokens, the
# empty negative prompt, one with an embedding).
ENCODE_PROMPTS = ["plain", "weights", "long", "empty", "embedding"]
POSITIVE = TOKENIZER_PROMPTS["plain"]
NEGATIVE = TOKENIZER_PROMPTS["empty"]


def sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class Writer:
    """Collects tensors (safetensors) and metadata (JSON) for one fixture file pair."""

    def __init__(self, out_dir, stem, compact=False):
        self.out_dir = out_dir
        self.stem = stem
        self.compact = compact
        self.tensors = {}
        self.meta = {}

    def put(self, name, tensor):
        import torch

        if name in self.tensors:
            raise KeyError("duplicate tensor name {}".format(name))
        tensor = tensor.detach().cpu().clone().contiguous()
        if tensor.dtype not in (torch.float32, torch.uint8):
            tensor = tensor.float()
        self.tensors[name] = tensor
        return tensor

    def write(self, provenance):
        from safetensors.torch import save_file

        paths = []
        if self.tensors:
            path = os.path.join(self.out_dir, self.stem + ".safetensors")
            save_file(dict(sorted(self.tensors.items())), path)
            paths.append(path)
            self.meta["tensors"] = {
                name: {"shape": list(t.shape), "dtype": str(t.dtype).replace("torch.", "")}
                for name, t in sorted(self.tensors.items())
            }
        self.meta["provenance"] = provenance
        path = os.path.join(self.out_dir, self.stem + ".json")
        with open(path, "w") as handle:
            if self.compact:
                json.dump(self.meta, handle, sort_keys=True, separators=(",", ":"))
            else:
                json.dump(self.meta, handle, indent=1, sort_keys=True)
            handle.write("\n")
        paths.append(path)
        return paths


def to_uint8_image(images):
    """SaveImage's conversion: clip(255 * x, 0, 255) truncated to uint8."""
    import numpy as np
    import torch

    array = np.clip(255.0 * images.cpu().numpy(), 0, 255).astype(np.uint8)
    return torch.from_numpy(array)


def clip_text_config(width, layers, intermediate, tower):
    return {
        "hidden_size": width,
        "intermediate_size": intermediate,
        "num_attention_heads": width // CLIP_HEAD_WIDTH,
        "num_hidden_layers": layers,
        "hidden_act": CLIP_ACTIVATION[tower],
        "projection_dim": width,
        "vocab_size": 49408,
        "max_position_embeddings": 77,
    }


def tiny_clip_configs(clip_sd):
    """`<tower>_model_config` overrides read from the converted CLIP state dict's shapes."""
    configs = {}
    for tower in ("clip_l", "clip_h", "clip_g"):
        prefix = "{}.transformer.text_model.".format(tower)
        embed = clip_sd.get(prefix + "embeddings.token_embedding.weight")
        if embed is None:
            continue
        layers = 0
        while "{}encoder.layers.{}.mlp.fc1.weight".format(prefix, layers) in clip_sd:
            layers += 1
        intermediate = clip_sd["{}encoder.layers.0.mlp.fc1.weight".format(prefix)].shape[0]
        configs["{}_model_config".format(tower)] = clip_text_config(
            embed.shape[1], layers, intermediate, tower)
    return configs


class Family:
    """One tiny checkpoint loaded into ComfyUI objects, mirroring load_state_dict_guess_config."""

    def __init__(self, key, checkpoint_dir, embedding_dir):
        import comfy.model_detection
        import comfy.model_patcher
        import comfy.sd
        import comfy.supported_models
        import comfy.utils
        import torch

        file_name, class_name = CHECKPOINTS[key]
        self.key = key
        self.path = os.path.join(checkpoint_dir, file_name)
        self.file_name = file_name
        self.sha256 = sha256_file(self.path)
        cpu = torch.device("cpu")
        sd = comfy.utils.load_torch_file(self.path, safe_load=True)

        prefix = "model.diffusion_model."
        unet_config = comfy.model_detection.detect_unet_config(sd, prefix)
        model_config = getattr(comfy.supported_models, class_name)(unet_config)
        model_config.unet_config.update(TINY_UNET_HEADS[key])
        model_config.set_inference_dtype(torch.float32, None)
        model = model_config.get_model(sd, prefix, device=cpu)
        model.load_model_weights(sd, prefix)
        self.model_config = model_config
        self.patcher = comfy.model_patcher.ModelPatcher(model, load_device=cpu, offload_device=cpu)

        vae_sd = comfy.utils.state_dict_prefix_replace(
            sd, {k: "" for k in model_config.vae_key_prefix}, filter_keys=True)
        vae_sd = model_config.process_vae_state_dict(vae_sd)
        self.vae_ddconfig = {
            "double_z": True, "z_channels": 4, "resolution": 256, "in_channels": 3, "out_ch": 3,
            "ch": vae_sd["encoder.conv_in.weight"].shape[0], "ch_mult": [1, 2, 4, 4],
            "num_res_blocks": 2, "attn_resolutions": [], "dropout": 0.0,
        }
        self.vae = comfy.sd.VAE(
            sd=vae_sd, device=cpu, dtype=torch.float32,
            config={"params": {"ddconfig": dict(self.vae_ddconfig), "embed_dim": 4}})
        self.vae_sd = vae_sd

        clip_target = model_config.clip_target(state_dict=sd)
        clip_sd = model_config.process_clip_state_dict(sd)
        self.clip_configs = tiny_clip_configs(clip_sd)
        te_options = {"dtype": torch.float32, "load_device": cpu, "offload_device": cpu,
                      "initial_device": cpu, **self.clip_configs}
        self.clip = comfy.sd.CLIP(clip_target, embedding_directory=embedding_dir,
                                  tokenizer_data=clip_sd, model_options=te_options)
        missing, unexpected = self.clip.load_sd(clip_sd, full_model=True)
        self.clip_missing = sorted(missing)
        self.clip_unexpected = sorted(unexpected)

    @property
    def model(self):
        return self.patcher.model

    def describe(self):
        unet = {k: v for k, v in self.model_config.unet_config.items() if k != "dtype"}
        return {
            "checkpoint": {
                "file": self.file_name,
                "sha256": self.sha256,
                "kiln_test_checkpoints_spec": CHECKPOINT_SPECS[self.key],
            },
            "supported_models_class": CHECKPOINTS[self.key][1],
            "model_type": self.model.model_type.name,
            "latent_format": type(self.model_config.latent_format).__name__,
            "latent_scale_factor": self.model_config.latent_format.scale_factor,
            "unet_config": json.loads(json.dumps(unet, default=str)),
            "clip_model_configs": self.clip_configs,
            "clip_missing_keys": self.clip_missing,
            "vae_ddconfig": self.vae_ddconfig,
        }


CHECKPOINT_SPECS = {
    "sd1": "CheckpointSpec::new(Family::Sd1, Storage::F32, Packaging::SingleFile) (Size::Tiny, seed 0)",
    "sd2v": "CheckpointSpec::new(Family::Sd2V, Storage::F32, Packaging::SingleFile) (Size::Tiny, seed 0)",
    "sdxl": "CheckpointSpec::new(Family::Sdxl, Storage::F32, Packaging::SingleFile) (Size::Tiny, seed 0)",
    "sdxl_refiner": "CheckpointSpec::new(Family::SdxlRefiner, Storage::F32, Packaging::SingleFile) (Size::Tiny, seed 0)",
}


def seeded_randn(shape, seed):
    import torch

    generator = torch.Generator(device="cpu").manual_seed(seed)
    return torch.randn(shape, generator=generator, dtype=torch.float32)


def smooth_test_image(height=64, width=64):
    """A deterministic [1, H, W, 3] image in 0..1 with gradients and a disc (not noise)."""
    import torch

    ys = torch.linspace(0.0, 1.0, height).view(height, 1).expand(height, width)
    xs = torch.linspace(0.0, 1.0, width).view(1, width).expand(height, width)
    disc = (((xs - 0.6) ** 2 + (ys - 0.4) ** 2) < 0.06).float()
    red = 0.2 + 0.6 * xs
    green = 0.5 + 0.4 * torch.sin(6.283185307179586 * ys)
    blue = 0.3 * (1.0 - disc) + 0.9 * disc
    return torch.stack([red, green, blue], dim=-1).unsqueeze(0).clamp(0.0, 1.0)


# ----------------------------------------------------------------------------------------------
# 1. tokenizer


def embedding_markers(embedding_dir):
    """Rows of every embedding file, to name the tensors the tokenizer puts in place of ids."""
    from safetensors.torch import load_file

    rows = []
    for name in sorted(os.listdir(embedding_dir)):
        for key, tensor in load_file(os.path.join(embedding_dir, name)).items():
            for row in range(tensor.shape[0]):
                rows.append(({"embedding_file": name, "key": key, "row": row}, tensor[row]))
    return rows


def token_to_json(token, markers):
    import torch

    if isinstance(token, int):
        return token
    for marker, row in markers:
        if row.shape == token.shape and torch.equal(row, token):
            return marker
    raise ValueError("unknown embedding row")


def tokenize_all(tokenizers, markers):
    out = {}
    for tok_name, tokenizer in tokenizers.items():
        per_prompt = {}
        for prompt_key, text in TOKENIZER_PROMPTS.items():
            tokens = tokenizer.tokenize_with_weights(text, return_word_ids=True)
            per_prompt[prompt_key] = {
                tower: [[[token_to_json(t, markers), float(w), int(word)] for t, w, word in chunk]
                        for chunk in chunks]
                for tower, chunks in tokens.items()
            }
        out[tok_name] = per_prompt
    return out


def write_tokenizer_fixture(out_dir, embedding_dir, provenance):
    import comfy.sd1_clip
    import comfy.sdxl_clip
    import comfy.text_encoders.sd2_clip

    tokenizers = {
        "sd1": comfy.sd1_clip.SD1Tokenizer(embedding_directory=embedding_dir),
        "sd2": comfy.text_encoders.sd2_clip.SD2Tokenizer(embedding_directory=embedding_dir),
        "sdxl": comfy.sdxl_clip.SDXLTokenizer(embedding_directory=embedding_dir),
    }
    writer = Writer(out_dir, "tokenizer", compact=True)
    writer.meta["description"] = (
        "ComfyUI tokenize_with_weights(text, return_word_ids=True) for each tokenizer. "
        "tokens[tokenizer][prompt][tower] = list of 77-long chunks of [token, weight, word_id]; "
        "a token is an int id, or an object naming the embedding file/key/row that ComfyUI "
        "inserted in its place (embedding directory: embeddings/). sd1 tower 'l' pads with EOS "
        "49407; sd2 'h' and sdxl 'g' pad with 0.")
    writer.meta["prompts"] = TOKENIZER_PROMPTS
    writer.meta["embedding_directory"] = "embeddings"
    writer.meta["tokens"] = tokenize_all(tokenizers, embedding_markers(embedding_dir))
    try:
        import ftfy  # noqa: F401
        writer.meta["ftfy_installed"] = True
    except ImportError:
        writer.meta["ftfy_installed"] = False
    return writer.write(provenance)


def write_embeddings(embedding_dir):
    """Tiny textual-inversion files matching the tiny CLIP widths (L 32, H 48, G 64)."""
    from safetensors.torch import save_file

    os.makedirs(embedding_dir, exist_ok=True)
    # SDXL-style file with one tensor per tower; ComfyUI picks the tokenizer's embedding_key.
    save_file({
        "clip_l": seeded_randn([2, 32], 101) * 0.05,
        "clip_h": seeded_randn([2, 48], 102) * 0.05,
        "clip_g": seeded_randn([2, 64], 103) * 0.05,
    }, os.path.join(embedding_dir, "tiny_emb.safetensors"))
    # SD1 A1111-style single tensor under `emb_params` (ComfyUI falls back to the first value).
    save_file({"emb_params": seeded_randn([3, 32], 104) * 0.05},
              os.path.join(embedding_dir, "tiny_emb_params.safetensors"))


# ----------------------------------------------------------------------------------------------
# 2. text encoders


def encode(clip, text):
    import nodes

    (conditioning,) = nodes.CLIPTextEncode().encode(clip, text)
    cond, extra = conditioning[0]
    return conditioning, cond, extra.get("pooled_output")


def write_text_encoder_fixture(family, out_dir, provenance):
    import nodes

    writer = Writer(out_dir, "text_encoder_{}".format(family.key))
    writer.meta["model"] = family.describe()
    writer.meta["prompts"] = {k: TOKENIZER_PROMPTS[k] for k in ENCODE_PROMPTS}
    variants = {"default": family.clip}
    if family.key == "sd1":
        (variants["clip_skip_2"],) = nodes.CLIPSetLastLayer().set_last_layer(family.clip, -2)
    writer.meta["variants"] = {
        "default": "CLIPTextEncode on the checkpoint's CLIP (ComfyUI defaults: SD1 last layer "
                   "+ final LN, pooled = unprojected EOS state; SD2 'penultimate' (hidden -2, "
                   "final LN applied); SDXL clip_l hidden -2 without final LN ++ clip_g hidden "
                   "-2 without final LN, pooled = clip_g projected; refiner clip_g only)",
        "clip_skip_2": "CLIPSetLastLayer(stop_at_clip_layer=-2) then CLIPTextEncode (SD1 only)",
    }
    for variant, clip in variants.items():
        for prompt_key in ENCODE_PROMPTS:
            _, cond, pooled = encode(clip, TOKENIZER_PROMPTS[prompt_key])
            writer.put("{}.{}.cond".format(variant, prompt_key), cond)
            writer.put("{}.{}.pooled".format(variant, prompt_key), pooled)
    return writer.write(provenance)


# ----------------------------------------------------------------------------------------------
# 3. UNet forward


def unet_forward(model, x, sigma, context, y=None):
    """apply_model (denoised) and the raw diffusion_model output with its inputs."""
    import torch

    sigma_t = torch.tensor([sigma], dtype=torch.float32)
    kwargs = {} if y is None else {"y": y}
    denoised = model.apply_model(x, sigma_t, c_crossattn=context, **kwargs)
    x_in = model.model_sampling.calculate_input(sigma_t, x)
    timestep = model.model_sampling.timestep(sigma_t).float()
    raw = model.diffusion_model(x_in, timestep, context=context, **kwargs).float()
    return denoised, raw, x_in, timestep


UNET_SIGMAS = [14.614641189575195, 1.0]


def write_unet_fixture(family, out_dir, provenance):
    import comfy.model_management
    import torch

    comfy.model_management.load_models_gpu([family.patcher], force_full_load=True)
    model = family.model
    writer = Writer(out_dir, "unet_{}".format(family.key))
    writer.meta["model"] = family.describe()
    writer.meta["description"] = (
        "x = randn([1,4,8,8], seed 7) is the noisy latent in model space (after "
        "process_in); context = CLIPTextEncode('{}') cond; for each sigma i: "
        "sigma.i, timestep.i = model_sampling.timestep(sigma), x_in.i = "
        "calculate_input(sigma, x) (x / sqrt(sigma^2+1)), model_output.i = raw "
        "diffusion_model(x_in, timestep, context, y) (eps or v), denoised.i = "
        "BaseModel.apply_model(x, sigma, c_crossattn=context, y=y).".format(POSITIVE))
    x = seeded_randn(LATENT_SHAPE, 7)
    _, context, pooled = encode(family.clip, POSITIVE)
    y = None
    if family.key == "sdxl":
        y = model.encode_adm(pooled_output=pooled, width=64, height=64, crop_w=0, crop_h=0,
                             target_width=64, target_height=64)
        writer.put("adm.sampler_default", y)
        writer.put("adm.explicit", model.encode_adm(
            pooled_output=pooled, width=1024, height=768, crop_w=16, crop_h=8,
            target_width=512, target_height=640))
        writer.meta["adm"] = {
            "sampler_default": "SDXL.encode_adm(width=64, height=64, crop_w=0, crop_h=0, "
                               "target 64x64) = what KSampler builds for a 64x64 latent "
                               "from CLIPTextEncode conditioning",
            "explicit": "SDXL.encode_adm(width=1024, height=768, crop_w=16, crop_h=8, "
                        "target_width=512, target_height=640) (CLIPTextEncodeSDXL fields)",
            "layout": "[pooled clip_g (64)] ++ Timestep(256) embeddings of height, width, "
                      "crop_h, crop_w, target_height, target_width",
        }
    elif family.key == "sdxl_refiner":
        y = model.encode_adm(pooled_output=pooled, width=64, height=64, crop_w=0, crop_h=0,
                             prompt_type="positive")
        writer.put("adm.positive", y)
        writer.put("adm.negative", model.encode_adm(
            pooled_output=pooled, width=64, height=64, crop_w=0, crop_h=0,
            prompt_type="negative"))
        writer.meta["adm"] = {
            "positive": "SDXLRefiner.encode_adm(width=64, height=64, crop 0, aesthetic "
                        "score 6 (positive default))",
            "negative": "same with prompt_type='negative' (aesthetic score 2.5)",
            "layout": "[pooled clip_g (64)] ++ Timestep(256) embeddings of height, width, "
                      "crop_h, crop_w, aesthetic_score",
        }
    writer.put("x", x)
    writer.put("context", context)
    if y is not None:
        writer.put("y", y)
    with torch.no_grad():
        for index, sigma in enumerate(UNET_SIGMAS):
            denoised, raw, x_in, timestep = unet_forward(model, x, sigma, context, y)
            writer.put("sigma.{}".format(index), torch.tensor([sigma]))
            writer.put("timestep.{}".format(index), timestep)
            writer.put("x_in.{}".format(index), x_in)
            writer.put("model_output.{}".format(index), raw)
            writer.put("denoised.{}".format(index), denoised)
    return writer.write(provenance)


# ----------------------------------------------------------------------------------------------
# 4. VAE


def write_vae_fixture(family, out_dir, provenance):
    import nodes

    writer = Writer(out_dir, "vae")
    writer.meta["model"] = family.describe()
    writer.meta["description"] = (
        "The tiny 4-channel VAE (identical weights in the SD1/SD2/SDXL tiny checkpoints: "
        "first_stage_model.* values are a function of (seed 0, 'vae', name) only; this "
        "script checks it). decode.latent = randn([1,4,8,8], seed 11) * 3 (raw latent, no "
        "scale factor, as VAEDecode receives it); decode.image = VAEDecode output [1,64,64,3] "
        "float 0..1 (clamp((x+1)/2)); decode.image_u8 = SaveImage's clip(255*x) truncation. "
        "encode.image = smooth test image [1,64,64,3] in 0..1; encode.latent = VAEEncode "
        "output [1,4,8,8] = posterior MODE (DiagonalGaussianRegularizer(sample=False)), no "
        "scale factor; encode.roundtrip_image_u8 = VAEDecode(encode.latent) as uint8.")
    latent = seeded_randn(LATENT_SHAPE, 11) * 3.0
    (image,) = nodes.VAEDecode().decode(family.vae, {"samples": latent})
    writer.put("decode.latent", latent)
    writer.put("decode.image", image)
    writer.put("decode.image_u8", to_uint8_image(image))
    pixels = smooth_test_image()
    (encoded,) = nodes.VAEEncode().encode(family.vae, pixels)
    writer.put("encode.image", pixels)
    writer.put("encode.latent", encoded["samples"])
    (roundtrip,) = nodes.VAEDecode().decode(family.vae, encoded)
    writer.put("encode.roundtrip_image_u8", to_uint8_image(roundtrip))
    writer.meta["posterior"] = "mode"
    return writer.write(provenance)


# ----------------------------------------------------------------------------------------------
# 5. noise


def write_noise_fixture(out_dir, provenance):
    import comfy.sample
    import torch

    writer = Writer(out_dir, "noise")
    cases = []
    seeds = [0, 42, 2**32 + 7]
    shapes = [[1, 4, 8, 8], [2, 4, 8, 8], [1, 4, 7, 9], [1, 16, 8, 8]]
    for seed in seeds:
        for shape in shapes:
            name = "seed{}.{}".format(seed, "x".join(map(str, shape)))
            writer.put(name, comfy.sample.prepare_noise(torch.zeros(shape), seed))
            cases.append({"tensor": name, "seed": seed, "shape": shape, "batch_index": None})
        for batch_index in ([2, 0], [1, 1, 3]):
            shape = [len(batch_index), 4, 8, 8]
            name = "seed{}.{}.batch_index_{}".format(
                seed, "x".join(map(str, shape)), "_".join(map(str, batch_index)))
            latent = torch.zeros(shape)
            writer.put(name, comfy.sample.prepare_noise(latent, seed, batch_index))
            cases.append({"tensor": name, "seed": seed, "shape": shape,
                          "batch_index": batch_index})
    writer.meta["description"] = (
        "comfy.sample.prepare_noise(zeros(shape), seed, batch_index): torch.manual_seed(seed) "
        "then CPU torch.randn float32; with batch_index, one [1,C,H,W] draw per index "
        "0..max(batch_index) from the same generator, picked by index. [1,4,7,9] has 252 "
        "elements (not a multiple of 16).")
    writer.meta["cases"] = cases
    writer.meta["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    return writer.write(provenance)


# ----------------------------------------------------------------------------------------------
# 6. KSampler


class SigmaRecorder:
    """Observes the sigmas comfy.samplers.KSampler hands to comfy.samplers.sample."""

    def __init__(self):
        import comfy.samplers

        self.module = comfy.samplers
        self.original = comfy.samplers.sample
        self.last = None

    def __enter__(self):
        def recording_sample(model, noise, positive, negative, cfg, device, sampler, sigmas,
                             *args, **kwargs):
            self.last = sigmas.detach().clone().cpu()
            return self.original(model, noise, positive, negative, cfg, device, sampler,
                                 sigmas, *args, **kwargs)

        self.module.sample = recording_sample
        return self

    def __exit__(self, *exc):
        self.module.sample = self.original
        return False


def empty_latent():
    import nodes

    (latent,) = nodes.EmptyLatentImage().generate(64, 64, 1)
    return latent


def run_ksampler(loaded, positive, negative, latent, recorder, **case):
    """One KSampler / KSamplerAdvanced node call on `loaded` (a Family), then VAEDecode."""
    import nodes

    recorder.last = None
    if case.get("advanced"):
        (out,) = nodes.KSamplerAdvanced().sample(
            loaded.patcher, case["add_noise"], case["seed"], case["steps"], case["cfg"],
            case["sampler"], case["scheduler"], positive, negative, latent,
            case["start_at_step"], case["end_at_step"], case["return_with_leftover_noise"])
    else:
        (out,) = nodes.KSampler().sample(
            loaded.patcher, case["seed"], case["steps"], case["cfg"], case["sampler"],
            case["scheduler"], positive, negative, latent, denoise=case.get("denoise", 1.0))
    (image,) = nodes.VAEDecode().decode(loaded.vae, out)
    return out["samples"], image, recorder.last


def write_ksampler_grid(family, out_dir, provenance):
    import torch

    writer = Writer(out_dir, "ksampler_{}".format(family.key))
    writer.meta["model"] = family.describe()
    positive, _, _ = encode(family.clip, POSITIVE)
    negative, _, _ = encode(family.clip, NEGATIVE)
    writer.meta["settings"] = {
        "positive": POSITIVE, "negative": NEGATIVE, "seed": SEED, "steps": STEPS, "cfg": CFG,
        "denoise": 1.0, "latent": "EmptyLatentImage(64, 64, 1) -> zeros [1,4,8,8]",
        "samplers": SAMPLERS, "schedulers": SCHEDULERS,
    }
    writer.meta["description"] = (
        "nodes.KSampler for every sampler x scheduler; latent.<sampler>.<scheduler> = output "
        "LATENT samples (after process_out, i.e. what VAEDecode receives) [1,4,8,8]; "
        "image.<sampler>.<scheduler> = VAEDecode of it through SaveImage's uint8 conversion "
        "[1,64,64,3]; sigmas.<sampler>.<scheduler> = the sigmas KSampler passed to the sampler "
        "(after the dpm_2/uni_pc discarded penultimate sigma).")
    failures = {}
    with SigmaRecorder() as recorder, torch.no_grad():
        for sampler in SAMPLERS:
            for scheduler in SCHEDULERS:
                name = "{}.{}".format(sampler, scheduler)
                try:
                    samples, image, sigmas = run_ksampler(
                        family, positive, negative, empty_latent(), recorder, seed=SEED,
                        steps=STEPS, cfg=CFG, sampler=sampler, scheduler=scheduler)
                except Exception as error:  # recorded, never hidden
                    failures[name] = "{}: {}".format(type(error).__name__, error)
                    continue
                if not torch.isfinite(samples).all():
                    failures[name] = "non-finite output"
                writer.put("latent." + name, samples)
                writer.put("image." + name, to_uint8_image(image))
                writer.put("sigmas." + name, sigmas)
    writer.meta["failures"] = failures
    return writer.write(provenance)


def write_ksampler_cases(families, out_dir, provenance):
    """SD2-v / SDXL / refiner runs, img2img, KSamplerAdvanced and cfg 1 cases."""
    import nodes
    import torch

    writer = Writer(out_dir, "ksampler_cases")
    cases = []
    base = {"seed": SEED, "steps": STEPS, "cfg": CFG}
    for key in ("sd2v", "sdxl", "sdxl_refiner"):
        for sampler, scheduler in (("euler", "normal"), ("dpmpp_2m", "karras")):
            cases.append(dict(base, name="{}.{}.{}".format(key, sampler, scheduler), family=key,
                              sampler=sampler, scheduler=scheduler))
    for key in ("sd1", "sdxl"):
        for sampler, scheduler in (("euler", "normal"), ("dpmpp_2m", "karras"),
                                   ("euler_ancestral", "normal")):
            cases.append(dict(base, name="{}.img2img_0.6.{}.{}".format(key, sampler, scheduler),
                              family=key, sampler=sampler, scheduler=scheduler, denoise=0.6,
                              latent_source="encoded"))
    for add_noise in ("enable", "disable"):
        for leftover in ("enable", "disable"):
            for sampler, scheduler in (("euler", "normal"), ("dpmpp_2m", "karras")):
                cases.append(dict(
                    base, name="sd1.advanced.noise_{}.leftover_{}.{}.{}".format(
                        add_noise, leftover, sampler, scheduler),
                    family="sd1", sampler=sampler, scheduler=scheduler, advanced=True,
                    add_noise=add_noise, start_at_step=1, end_at_step=3,
                    return_with_leftover_noise=leftover,
                    latent_source="encoded" if add_noise == "disable" else "empty"))
    for key in ("sd1", "sdxl"):
        for sampler, scheduler in (("euler", "normal"), ("dpmpp_2m", "karras")):
            cases.append(dict(base, name="{}.cfg1.{}.{}".format(key, sampler, scheduler),
                              family=key, sampler=sampler, scheduler=scheduler, cfg=1.0))

    encoded_latents = {}
    pixels = smooth_test_image()
    writer.put("input.image", pixels)
    conds = {}
    failures = {}
    with SigmaRecorder() as recorder, torch.no_grad():
        for case in cases:
            family = families[case["family"]]
            if family.key not in conds:
                conds[family.key] = (encode(family.clip, POSITIVE)[0],
                                     encode(family.clip, NEGATIVE)[0])
            if case.get("latent_source") == "encoded":
                if family.key not in encoded_latents:
                    (encoded,) = nodes.VAEEncode().encode(family.vae, pixels)
                    encoded_latents[family.key] = encoded
                    writer.put("input.encoded_latent.{}".format(family.key), encoded["samples"])
                latent = encoded_latents[family.key]
                case["latent_description"] = ("VAEEncode(input.image) = "
                                              "input.encoded_latent.{}".format(family.key))
            else:
                latent = empty_latent()
                case["latent_description"] = "EmptyLatentImage(64, 64, 1) (zeros)"
            positive, negative = conds[family.key]
            try:
                samples, image, sigmas = run_ksampler(family, positive, negative, latent,
                                                      recorder, **case)
            except Exception as error:
                failures[case["name"]] = "{}: {}".format(type(error).__name__, error)
                continue
            writer.put("latent." + case["name"], samples)
            writer.put("image." + case["name"], to_uint8_image(image))
            if sigmas is not None:
                writer.put("sigmas." + case["name"], sigmas)
            else:
                case["note"] = "start_at_step >= len(sigmas)-1: KSampler returned the input"
    writer.meta["description"] = (
        "KSampler / KSamplerAdvanced cases. latent.<case> = output LATENT samples, "
        "image.<case> = VAEDecode -> uint8 (SaveImage truncation), sigmas.<case> = sigmas "
        "handed to the sampler after denoise / start/end slicing / leftover-noise handling. "
        "positive/negative = CLIPTextEncode('{}') / CLIPTextEncode('{}') of the case's model. "
        "SDXL conditioning carries only pooled_output, so the ADM uses width=height=64 "
        "(target = size, crop 0); the refiner uses aesthetic score 6 / 2.5."
        .format(POSITIVE, NEGATIVE))
    writer.meta["cases"] = cases
    writer.meta["failures"] = failures
    writer.meta["models"] = {key: families[key].describe() for key in sorted(families)}
    return writer.write(provenance)


# ----------------------------------------------------------------------------------------------
# 7. LoRA


def kohya_lora(generator_seed):
    """kohya-ss naming (diffusers block names flattened with '_'), with and without alpha."""
    import torch

    rank = 2
    tensors = {}

    def add(name, out_features, in_features, alpha=None, kernel=None, seed=0):
        down_shape = [rank, in_features] + ([kernel, kernel] if kernel else [])
        up_shape = [out_features, rank] + ([1, 1] if kernel else [])
        tensors["{}.lora_down.weight".format(name)] = seeded_randn(down_shape, seed) * 0.1
        tensors["{}.lora_up.weight".format(name)] = seeded_randn(up_shape, seed + 1) * 0.1
        if alpha is not None:
            tensors["{}.alpha".format(name)] = torch.tensor(float(alpha))

    seed = generator_seed
    blocks = [
        ("lora_unet_down_blocks_0_attentions_0_transformer_blocks_0", 32),
        ("lora_unet_mid_block_attentions_0_transformer_blocks_0", 128),
        ("lora_unet_up_blocks_3_attentions_2_transformer_blocks_0", 32),
    ]
    for block, width in blocks:
        for proj in ("attn1_to_q", "attn1_to_k", "attn1_to_v", "attn1_to_out_0", "attn2_to_q",
                     "attn2_to_out_0"):
            add("{}_{}".format(block, proj), width, width, alpha=2.0, seed=seed)
            seed += 2
        for proj in ("attn2_to_k", "attn2_to_v"):
            add("{}_{}".format(block, proj), width, 32, alpha=2.0, seed=seed)
            seed += 2
        add("{}_ff_net_0_proj".format(block), 8 * width, width, alpha=1.0, seed=seed)
        seed += 2
        add("{}_ff_net_2".format(block), width, 4 * width, seed=seed)  # no alpha: scale 1
        seed += 2
    # SD1's proj_in / proj_out are 1x1 convs.
    add("lora_unet_down_blocks_0_attentions_0_proj_in", 32, 32, alpha=4.0, kernel=1, seed=seed)
    seed += 2
    add("lora_unet_up_blocks_3_attentions_2_proj_out", 32, 32, alpha=4.0, kernel=1, seed=seed)
    seed += 2
    # LoCon-style 3x3 conv on a resnet (down is 3x3, up is 1x1) and its time embedding Linear.
    add("lora_unet_down_blocks_1_resnets_0_conv1", 64, 32, alpha=2.0, kernel=3, seed=seed)
    seed += 2
    add("lora_unet_down_blocks_1_resnets_0_time_emb_proj", 64, 128, alpha=2.0, seed=seed)
    seed += 2
    # One key in LDM naming (ComfyUI maps lora_unet_<ldm name with _> too).
    add("lora_unet_output_blocks_5_1_transformer_blocks_0_attn2_to_q", 128, 128, alpha=3.0,
        seed=seed)
    seed += 2
    for layer in (0, 5, 11):
        for proj, out_f, in_f in (("self_attn_q_proj", 32, 32), ("self_attn_k_proj", 32, 32),
                                  ("self_attn_v_proj", 32, 32), ("self_attn_out_proj", 32, 32),
                                  ("mlp_fc1", 128, 32), ("mlp_fc2", 32, 128)):
            add("lora_te_text_model_encoder_layers_{}_{}".format(layer, proj), out_f, in_f,
                alpha=2.0 if layer != 5 else None, seed=seed)
            seed += 2
    return tensors


def diffusers_lora(generator_seed):
    """Old diffusers attn-procs UNet names + PEFT text-encoder names, no alpha (scale 1)."""
    rank = 2
    tensors = {}
    seed = generator_seed

    def add(down_name, up_name, out_features, in_features):
        nonlocal seed
        tensors[down_name] = seeded_randn([rank, in_features], seed) * 0.1
        tensors[up_name] = seeded_randn([out_features, rank], seed + 1) * 0.1
        seed += 2

    for block, width in (("down_blocks.1.attentions.0.transformer_blocks.0", 64),
                         ("up_blocks.1.attentions.1.transformer_blocks.0", 128)):
        for attn, proj, in_f in (("attn1", "to_q", width), ("attn1", "to_k", width),
                                 ("attn1", "to_v", width), ("attn1", "to_out", width),
                                 ("attn2", "to_k", 32), ("attn2", "to_v", 32)):
            base = "unet.{}.{}.processor.{}_lora".format(block, attn, proj)
            add(base + ".down.weight", base + ".up.weight", width, in_f)
    for layer in (1, 10):
        for proj, out_f, in_f in (("self_attn.q_proj", 32, 32), ("self_attn.v_proj", 32, 32),
                                  ("mlp.fc1", 128, 32)):
            base = "text_encoder.text_model.encoder.layers.{}.{}".format(layer, proj)
            add(base + ".lora_A.weight", base + ".lora_B.weight", out_f, in_f)
    # PEFT-style UNet key (current diffusers naming without `.processor`): ComfyUI's key map has
    # no entry for it, so ComfyUI ignores it ("lora key not loaded"); recorded as such.
    base = "unet.mid_block.attentions.0.transformer_blocks.0.attn1.to_q"
    add(base + ".lora_A.weight", base + ".lora_B.weight", 128, 128)
    return tensors


class CapturedWarnings:
    """Collects the suffixes of log records that start with `prefix` while active."""

    def __init__(self, prefix):
        import logging

        self.prefix = prefix
        self.messages = []
        outer = self

        class Handler(logging.Handler):
            def emit(self, record):
                message = record.getMessage()
                if message.startswith(outer.prefix):
                    outer.messages.append(message[len(outer.prefix):])

        self.handler = Handler()

    def __enter__(self):
        import logging

        logging.getLogger().addHandler(self.handler)
        return self

    def __exit__(self, *exc):
        import logging

        logging.getLogger().removeHandler(self.handler)
        return False


def write_lora_fixtures(family, out_dir, provenance):
    import comfy.lora
    import comfy.lora_convert
    import comfy.model_management
    import comfy.sd
    import comfy.utils
    import torch
    from safetensors.torch import save_file

    strength_model, strength_clip = 0.8, 0.6
    loras = {"lora_kohya_sd1": kohya_lora(1000), "lora_diffusers_sd1": diffusers_lora(2000)}
    writer = Writer(out_dir, "lora_results_sd1")
    writer.meta["model"] = family.describe()
    writer.meta["strength_model"] = strength_model
    writer.meta["strength_clip"] = strength_clip
    writer.meta["description"] = (
        "comfy.sd.load_lora_for_models(model, clip, lora, 0.8, 0.6) on the tiny SD1. For each "
        "LoRA file <lora>: <lora>.model_output.i / <lora>.denoised.i = the UNet fixture "
        "(unet_sd1: same x, sigma.i and UNPATCHED context) through the patched UNet; "
        "<lora>.<prompt>.cond/.pooled = CLIPTextEncode through the patched CLIP; "
        "<lora>.weight.<model key> = a few patched weights (ComfyUI: w + strength * "
        "(alpha/rank or 1) * up@down). Base (unpatched) outputs: unet_sd1 and "
        "text_encoder_sd1 'default'. loaded_keys/not_loaded_keys list how ComfyUI mapped "
        "each LoRA key.")
    _, base_context, _ = encode(family.clip, POSITIVE)
    comfy.model_management.load_models_gpu([family.patcher], force_full_load=True)
    base_weights = {k: v.clone() for k, v in family.model.state_dict().items()}
    files = []
    mapping = {}
    for lora_name, tensors in loras.items():
        path = os.path.join(out_dir, lora_name + ".safetensors")
        save_file(dict(sorted(tensors.items())), path)
        files.append(path)
        lora = comfy.utils.load_torch_file(path, safe_load=True)
        key_map = comfy.lora.model_lora_keys_unet(family.model, {})
        key_map = comfy.lora.model_lora_keys_clip(family.clip.cond_stage_model, key_map)
        with CapturedWarnings("lora key not loaded: ") as not_loaded:
            patches = comfy.lora.load_lora(comfy.lora_convert.convert_lora(lora), key_map)
        for source, target in key_map.items():
            if target in patches and any(k.startswith(source + ".") or k.startswith(source + "_lora.")
                                         for k in lora):
                mapping.setdefault(lora_name, {})[source] = target
        not_loaded = sorted(not_loaded.messages)

        model_lora, clip_lora = comfy.sd.load_lora_for_models(
            family.patcher, family.clip, lora, strength_model, strength_clip)
        comfy.model_management.load_models_gpu([model_lora], force_full_load=True)
        model = model_lora.model
        state = model.state_dict()
        for key in ("diffusion_model.input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight",
                    "diffusion_model.input_blocks.1.1.proj_in.weight",
                    "diffusion_model.input_blocks.4.1.transformer_blocks.0.attn1.to_q.weight"):
            if key in model_lora.patches:
                writer.put("{}.weight.{}".format(lora_name, key), state[key])
        for key in ("clip_l.transformer.text_model.encoder.layers.0.self_attn.q_proj.weight",
                    "clip_l.transformer.text_model.encoder.layers.1.self_attn.q_proj.weight"):
            if key in clip_lora.patcher.patches:
                clip_lora.load_model()
                writer.put("{}.weight.{}".format(lora_name, key),
                           clip_lora.cond_stage_model.state_dict()[key])
        if lora_name == "lora_kohya_sd1":
            # Independent check of ComfyUI's LoRA rule on one Linear: w + s * alpha/rank * up@down.
            key = "diffusion_model.input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight"
            source = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q"
            up, down = lora[source + ".lora_up.weight"], lora[source + ".lora_down.weight"]
            scale = lora[source + ".alpha"].item() / down.shape[0]
            expected = base_weights[key] + strength_model * scale * (up @ down)
            difference = (state[key] - expected).abs().max().item()
            writer.meta.setdefault("checks", {})["kohya_to_q_formula_max_abs_diff"] = difference
            if difference > 1e-6:
                raise RuntimeError("LoRA rule mismatch: {}".format(difference))
        x = seeded_randn(LATENT_SHAPE, 7)
        with torch.no_grad():
            for index, sigma in enumerate(UNET_SIGMAS):
                denoised, raw, _, _ = unet_forward(model, x, sigma, base_context)
                writer.put("{}.model_output.{}".format(lora_name, index), raw)
                writer.put("{}.denoised.{}".format(lora_name, index), denoised)
            for prompt_key in ("plain", "weights"):
                _, cond, pooled = encode(clip_lora, TOKENIZER_PROMPTS[prompt_key])
                writer.put("{}.{}.cond".format(lora_name, prompt_key), cond)
                writer.put("{}.{}.pooled".format(lora_name, prompt_key), pooled)
        writer.meta.setdefault("loras", {})[lora_name] = {
            "file": lora_name + ".safetensors",
            "model_patches": sorted(model_lora.patches.keys()),
            "clip_patches": sorted(clip_lora.patcher.patches.keys()),
            "key_map": mapping.get(lora_name, {}),
            "not_loaded_keys": not_loaded,
        }
        # Leave the base weights unpatched for whatever runs next.
        model_lora.unpatch_model(family.patcher.offload_device)
        clip_lora.patcher.unpatch_model(clip_lora.patcher.offload_device)
    return files + writer.write(provenance)


# ----------------------------------------------------------------------------------------------


def setup_comfyui(comfyui):
    sys.path.insert(0, comfyui)
    # ComfyUI reads its flags at import time: CPU, float32 everywhere, PyTorch SDPA attention
    # (plain softmax(QK^T/sqrt(d))V; the CPU default would be sub-quadratic chunked attention,
    # equal up to float rounding).
    sys.argv = [sys.argv[0], "--cpu", "--force-fp32", "--use-pytorch-cross-attention",
                "--disable-all-custom-nodes"]
    import comfy.options

    comfy.options.enable_args_parsing()
    import torch

    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    import comfy.utils

    comfy.utils.PROGRESS_BAR_ENABLED = False


def check_vae_weights_shared(families):
    import torch

    reference = families["sd1"].vae_sd
    for key, family in families.items():
        for name, tensor in family.vae_sd.items():
            if not torch.equal(tensor, reference[name]):
                raise RuntimeError("VAE weight {} differs between sd1 and {}".format(name, key))


def check_base_restored(family, out_dir):
    """After the LoRA runs the unpatched UNet must still reproduce unet_<family> exactly."""
    import comfy.model_management
    from safetensors.torch import load_file

    stored = load_file(os.path.join(out_dir, "unet_{}.safetensors".format(family.key)))
    comfy.model_management.load_models_gpu([family.patcher], force_full_load=True)
    for index, sigma in enumerate(UNET_SIGMAS):
        denoised, _, _, _ = unet_forward(family.model, stored["x"], sigma, stored["context"])
        difference = (denoised - stored["denoised.{}".format(index)]).abs().max().item()
        if difference != 0.0:
            raise RuntimeError("base UNet changed after LoRA runs (max diff {})".format(difference))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--comfyui", required=True, help="ComfyUI source tree")
    parser.add_argument("--comfyui-commit", default="unknown", help="recorded in the fixtures")
    parser.add_argument("--checkpoints", required=True,
                        help="folder with the f32 tiny single-file checkpoints")
    parser.add_argument("--out", required=True, help="fixture folder to (over)write")
    args = parser.parse_args()
    comfyui = os.path.abspath(args.comfyui)
    out_dir = os.path.abspath(args.out)
    checkpoints = os.path.abspath(args.checkpoints)
    setup_comfyui(comfyui)

    import comfyui_version
    import numpy
    import torch
    import transformers

    os.makedirs(out_dir, exist_ok=True)
    embedding_dir = os.path.join(out_dir, "embeddings")
    write_embeddings(embedding_dir)
    provenance = {
        "generator": "scripts/reference/sd_fixtures.py",
        "comfyui_commit": args.comfyui_commit,
        "comfyui_version": comfyui_version.__version__,
        "torch": torch.__version__,
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "numpy": numpy.__version__,
        "transformers": transformers.__version__,
        "device": "cpu",
        "dtype": "float32",
        "comfyui_flags": sys.argv[1:],
        "deterministic_algorithms": True,
    }
    written = []
    with torch.inference_mode():
        written += write_tokenizer_fixture(out_dir, embedding_dir, provenance)
        written += write_noise_fixture(out_dir, provenance)
        families = {key: Family(key, checkpoints, embedding_dir) for key in CHECKPOINTS}
        check_vae_weights_shared(families)
        for key in CHECKPOINTS:
            written += write_text_encoder_fixture(families[key], out_dir, provenance)
            written += write_unet_fixture(families[key], out_dir, provenance)
        written += write_vae_fixture(families["sd1"], out_dir, provenance)
        written += write_ksampler_grid(families["sd1"], out_dir, provenance)
        written += write_ksampler_cases(families, out_dir, provenance)
        written += write_lora_fixtures(families["sd1"], out_dir, provenance)
        check_base_restored(families["sd1"], out_dir)
    for name in sorted(os.listdir(embedding_dir)):
        written.append(os.path.join(embedding_dir, name))
    total = 0
    for path in written:
        os.chmod(path, 0o644)  # safetensors writes 0600
        size = os.path.getsize(path)
        total += size
        print("{:>9}  {}".format(size, os.path.relpath(path, out_dir)))
    print("{:>9}  total".format(total))


if __name__ == "__main__":
    main()
