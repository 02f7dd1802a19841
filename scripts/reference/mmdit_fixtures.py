#!/usr/bin/env python3
"""Write Kiln's SD3 / SD3.5 MMDiT and 16-channel VAE reference fixtures by running ComfyUI's own
Python code on Kiln's tiny generated checkpoints (CPU, float32, deterministic algorithms).

Nothing here runs in CI. The fixtures it writes are committed under
`crates/models/tests/fixtures/mmdit/` and `crates/models/tests/fixtures/vae16/`.

Rerun (from the repository root; see scripts/reference/README.md for the one-time setup of the
venv, the ComfyUI source tree and the f32 tiny checkpoints, which here are the `Family::Sd3Medium`,
`Family::Sd35Medium`, `Family::Sd35Large` single files and the `Family::Vae16` standalone file, all `Storage::F32`):

    /work/venv-ref/bin/python scripts/reference/mmdit_fixtures.py \
        --comfyui /work/comfyui-src \
        --comfyui-commit a125cd84b054a57729b5eecab930ca9408719832 \
        --checkpoints /work/ref-ckpts \
        --out crates/models/tests/fixtures

How the models are built:

* MMDiT: `model_detection.detect_unet_config` on the `model.diffusion_model.` weights, then
  `supported_models.SD3(unet_config)` → `model_base.SD3` (`OpenAISignatureMMDITWrapper`), float32,
  `load_model_weights`. The tiny checkpoints keep ComfyUI's head rule (hidden = 64 · depth,
  heads = depth), so the detected config is used unchanged.
* VAE: ComfyUI's 16-channel branch of `comfy.sd.VAE` (no quant convs: `AutoencodingEngine` with a
  `DiagonalGaussianRegularizer`, `Encoder`/`Decoder` from `diffusionmodules/model.py`), with the
  ddconfig ComfyUI uses except `ch`, read from the weights (the tiny VAE's base width is 32; the
  real one's is 128, which ComfyUI hard-codes). Decode/encode go through `VAEDecode`/`VAEEncode`.
"""

import argparse
import json
import os
import sys

from sd_fixtures import seeded_randn, setup_comfyui, sha256_file, smooth_test_image

LATENT_SHAPE = [1, 16, 6, 10]
ODD_LATENT_SHAPE = [1, 16, 5, 7]
CONTEXT_TOKENS = 7
SIGMAS = [1.0, 0.3]
CFG_SIGMA = 0.75
CFG_SCALE = 4.5

MODELS = {
    # key -> checkpoint file
    "sd3_medium": "sd3_medium_incl_clips_t5xxl-fp32.safetensors",
    "sd35_medium": "sd3.5_medium_incl_clips_t5xxl-fp32.safetensors",
    "sd35_large": "sd3.5_large_incl_clips_t5xxl-fp32.safetensors",
}
SPECS = {
    "sd3_medium": "CheckpointSpec::new(Family::Sd3Medium, Storage::F32, Packaging::SingleFile)",
    "sd35_medium": "CheckpointSpec::new(Family::Sd35Medium, Storage::F32, Packaging::SingleFile)",
    "sd35_large": "CheckpointSpec::new(Family::Sd35Large, Storage::F32, Packaging::SingleFile)",
    "vae16_sd3": "first_stage_model.* of CheckpointSpec::new(Family::Sd3Medium, Storage::F32, "
                 "Packaging::SingleFile)",
    "vae16_flux": "CheckpointSpec::new(Family::Vae16, Storage::F32, Packaging::Standalone)",
}


def write_pair(out_dir, stem, tensors, meta, provenance):
    from safetensors.torch import save_file

    os.makedirs(out_dir, exist_ok=True)
    tensors = {k: v.detach().cpu().float().contiguous() for k, v in sorted(tensors.items())}
    st_path = os.path.join(out_dir, stem + ".safetensors")
    save_file(tensors, st_path)
    meta = dict(meta)
    meta["tensors"] = {k: {"shape": list(v.shape), "dtype": "float32"} for k, v in tensors.items()}
    meta["provenance"] = provenance
    json_path = os.path.join(out_dir, stem + ".json")
    with open(json_path, "w") as handle:
        json.dump(meta, handle, indent=1, sort_keys=True)
        handle.write("\n")
    return [st_path, json_path]


def load_sd3(path):
    import comfy.model_detection
    import comfy.model_patcher
    import comfy.supported_models
    import comfy.utils
    import torch

    cpu = torch.device("cpu")
    sd = comfy.utils.load_torch_file(path, safe_load=True)
    prefix = "model.diffusion_model."
    unet_config = comfy.model_detection.detect_unet_config(sd, prefix)
    model_config = comfy.supported_models.SD3(unet_config)
    model_config.set_inference_dtype(torch.float32, None)
    model = model_config.get_model(sd, prefix, device=cpu)
    model.load_model_weights(sd, prefix)
    model.eval()
    return sd, model_config, model


def write_mmdit_fixture(key, checkpoints, out_dir, provenance):
    import torch

    path = os.path.join(checkpoints, MODELS[key])
    sd, model_config, model = load_sd3(path)
    diffusion = model.diffusion_model
    unet_config = {k: v for k, v in model_config.unet_config.items() if k != "dtype"}
    ctx_dim = unet_config["context_embedder_config"]["params"]["in_features"]
    adm = unet_config["adm_in_channels"]
    x = seeded_randn(LATENT_SHAPE, 1)
    context = seeded_randn([1, CONTEXT_TOKENS, ctx_dim], 2)
    y = seeded_randn([1, adm], 3)
    tensors = {"x": x, "context": context, "y": y}
    for index, sigma in enumerate(SIGMAS):
        sigma_t = torch.tensor([sigma], dtype=torch.float32)
        timestep = model.model_sampling.timestep(sigma_t).float()
        x_in = model.model_sampling.calculate_input(sigma_t, x)
        raw = diffusion(x_in, timestep, context=context, y=y).float()
        denoised = model.apply_model(x, sigma_t, c_crossattn=context, y=y)
        tensors["sigma.{}".format(index)] = sigma_t
        tensors["timestep.{}".format(index)] = timestep
        tensors["model_output.{}".format(index)] = raw
        tensors["denoised.{}".format(index)] = denoised

    # Odd latent size: circular padding to the patch, crop after unpatchify.
    x_odd = seeded_randn(ODD_LATENT_SHAPE, 4)
    timestep = torch.tensor([SIGMAS[0] * 1000.0])
    tensors["odd.x"] = x_odd
    tensors["odd.model_output"] = diffusion(x_odd, timestep, context=context, y=y).float()

    # Batch 2 with different timesteps and contexts per row.
    x_batch = seeded_randn([2] + LATENT_SHAPE[1:], 5)
    context_batch = seeded_randn([2, CONTEXT_TOKENS, ctx_dim], 6)
    y_batch = seeded_randn([2, adm], 7)
    t_batch = torch.tensor([1000.0, 250.0])
    tensors["batch.x"] = x_batch
    tensors["batch.context"] = context_batch
    tensors["batch.y"] = y_batch
    tensors["batch.timestep"] = t_batch
    tensors["batch.model_output"] = diffusion(
        x_batch, t_batch, context=context_batch, y=y_batch).float()

    # Classifier-free guidance as sampling_function computes it with one entry per side and no
    # areas: uncond + (cond - uncond) * cfg, each side BaseModel.apply_model.
    sigma_t = torch.tensor([CFG_SIGMA], dtype=torch.float32)
    negative_context = seeded_randn([1, CONTEXT_TOKENS, ctx_dim], 8)
    negative_y = seeded_randn([1, adm], 9)
    cond = model.apply_model(x, sigma_t, c_crossattn=context, y=y)
    uncond = model.apply_model(x, sigma_t, c_crossattn=negative_context, y=negative_y)
    tensors["cfg.negative_context"] = negative_context
    tensors["cfg.negative_y"] = negative_y
    tensors["cfg.sigma"] = sigma_t
    tensors["cfg.denoised"] = uncond + (cond - uncond) * CFG_SCALE

    meta = {
        "checkpoint": {"file": MODELS[key], "sha256": sha256_file(path),
                       "kiln_test_checkpoints_spec": SPECS[key] + " (Size::Tiny, seed 0)"},
        "unet_config": json.loads(json.dumps(unet_config, default=str)),
        "num_heads": diffusion.num_heads,
        "hidden_size": diffusion.hidden_size,
        "model_sampling": {"shift": float(model.model_sampling.shift),
                           "multiplier": float(model.model_sampling.multiplier)},
        "cfg_scale": CFG_SCALE,
        "description": (
            "x = randn({} seed 1), context = randn([1,{},ctx] seed 2), y = randn([1,adm] seed 3). "
            "For each sigma i: timestep.i = model_sampling.timestep(sigma) (sigma*1000), "
            "model_output.i = diffusion_model(calculate_input(sigma, x) (= x), timestep, "
            "context, y), denoised.i = SD3.apply_model(x, sigma, c_crossattn=context, y=y). "
            "odd.*: x randn({} seed 4), timestep 1000. batch.*: seeds 5/6/7, timesteps "
            "[1000, 250]. cfg.*: sigma {}, negative context/y seeds 8/9, denoised = uncond + "
            "(cond - uncond) * {} with both sides apply_model."
        ).format(LATENT_SHAPE, CONTEXT_TOKENS, ODD_LATENT_SHAPE, CFG_SIGMA, CFG_SCALE),
    }
    return write_pair(os.path.join(out_dir, "mmdit"), "mmdit_" + key, tensors, meta, provenance)


def build_vae16(vae_sd):
    """ComfyUI's 16-channel `comfy.sd.VAE` branch with the weights' base width."""
    import comfy.sd
    import torch
    from comfy.ldm.models.autoencoder import AutoencodingEngine

    ddconfig = {"double_z": True, "z_channels": 16, "resolution": 256, "in_channels": 3,
                "out_ch": 3, "ch": vae_sd["encoder.conv_in.weight"].shape[0],
                "ch_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_resolutions": [],
                "dropout": 0.0}
    # Any config makes comfy.sd.VAE skip its detection (which hard-codes ch 128) and build
    # `comfy.sd.AutoencoderKL(**params)`; for the duration of the constructor that name builds
    # the module tree of ComfyUI's 16-channel branch instead, so the rest of `VAE.__init__`
    # (weight loading, patcher, memory estimates) runs unchanged.
    def sixteen_channel_engine(**_params):
        return AutoencodingEngine(
            regularizer_config={
                "target": "comfy.ldm.models.autoencoder.DiagonalGaussianRegularizer"},
            encoder_config={"target": "comfy.ldm.modules.diffusionmodules.model.Encoder",
                            "params": ddconfig},
            decoder_config={"target": "comfy.ldm.modules.diffusionmodules.model.Decoder",
                            "params": ddconfig})

    original = comfy.sd.AutoencoderKL
    comfy.sd.AutoencoderKL = sixteen_channel_engine
    try:
        vae = comfy.sd.VAE(sd=vae_sd, device=torch.device("cpu"), dtype=torch.float32,
                           config={"params": {}})
    finally:
        comfy.sd.AutoencoderKL = original
    # ComfyUI loads non-strictly and only logs; every key must match here.
    vae.first_stage_model.load_state_dict(vae_sd, strict=True)
    vae.latent_channels = 16
    return vae, ddconfig


def write_vae16_fixture(key, vae_sd, source_path, out_dir, provenance):
    import nodes

    vae, ddconfig = build_vae16(vae_sd)
    latent = seeded_randn([1, 16, 8, 8], 11) * 2.0
    (image,) = nodes.VAEDecode().decode(vae, {"samples": latent})
    pixels = smooth_test_image()
    (encoded,) = nodes.VAEEncode().encode(vae, pixels)
    tensors = {
        "decode.latent": latent,
        "decode.image": image,
        "encode.image": pixels,
        "encode.latent": encoded["samples"],
    }
    meta = {
        "checkpoint": {"file": os.path.basename(source_path), "sha256": sha256_file(source_path),
                       "kiln_test_checkpoints_spec": SPECS[key] + " (Size::Tiny, seed 0)"},
        "ddconfig": ddconfig,
        "description": (
            "decode.latent = randn([1,16,8,8], seed 11) * 2 (raw VAE latent, no latent format); "
            "decode.image = VAEDecode [1,64,64,3] in 0..1. encode.image = smooth test image "
            "[1,64,64,3]; encode.latent = VAEEncode (posterior mode) [1,16,8,8], no latent "
            "format."),
    }
    return write_pair(os.path.join(out_dir, "vae16"), key, tensors, meta, provenance)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--comfyui", required=True, help="ComfyUI source tree")
    parser.add_argument("--comfyui-commit", default="unknown", help="recorded in the fixtures")
    parser.add_argument("--checkpoints", required=True,
                        help="folder with the f32 tiny single-file checkpoints")
    parser.add_argument("--out", required=True, help="fixture folder (mmdit/ and vae16/ below)")
    args = parser.parse_args()
    out_dir = os.path.abspath(args.out)
    checkpoints = os.path.abspath(args.checkpoints)
    setup_comfyui(os.path.abspath(args.comfyui))

    import comfy.utils
    import comfyui_version
    import numpy
    import torch

    provenance = {
        "generator": "scripts/reference/mmdit_fixtures.py",
        "comfyui_commit": args.comfyui_commit,
        "comfyui_version": comfyui_version.__version__,
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "device": "cpu",
        "dtype": "float32",
        "comfyui_flags": sys.argv[1:],
        "deterministic_algorithms": True,
    }
    written = []
    with torch.inference_mode():
        for key in MODELS:
            written += write_mmdit_fixture(key, checkpoints, out_dir, provenance)
        sd3_path = os.path.join(checkpoints, MODELS["sd3_medium"])
        sd = comfy.utils.load_torch_file(sd3_path, safe_load=True)
        vae_sd = comfy.utils.state_dict_prefix_replace(
            sd, {"first_stage_model.": ""}, filter_keys=True)
        written += write_vae16_fixture("vae16_sd3", vae_sd, sd3_path, out_dir, provenance)
        ae_path = os.path.join(checkpoints, "ae-fp32.safetensors")
        ae_sd = comfy.utils.load_torch_file(ae_path, safe_load=True)
        written += write_vae16_fixture("vae16_flux", ae_sd, ae_path, out_dir, provenance)
    for path in written:
        os.chmod(path, 0o644)  # safetensors writes 0600
        print("{:>9}  {}".format(os.path.getsize(path), os.path.relpath(path, out_dir)))


if __name__ == "__main__":
    main()
