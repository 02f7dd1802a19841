#!/usr/bin/env python3
"""Write Kiln's Flux Fill inpainting fixtures: ComfyUI's own node functions (LoadImage,
InpaintModelConditioning, DifferentialDiffusion, FluxGuidance, FluxDisableGuidance, KSampler,
SamplerCustomAdvanced, VAEDecode) run small inpainting graphs on Kiln's tiny generated
FLUX.1-Fill-dev checkpoint, CPU, float32.

Nothing here runs in CI. The fixture it writes is committed as
`crates/nodes/tests/fixtures/flux_fill/{flux_fill.json,flux_fill.safetensors,
flux_fill_input.png}` and checked by `crates/nodes/tests/flux_fill.rs`, which runs the same
graphs through Kiln's executor (the PNG is the LoadImage input of both).

Rerun (from the repository root; see scripts/reference/README.md for the venv, the ComfyUI
source and how the tiny f32 checkpoints in /work/ref-ckpts are written):

    /work/venv-ref/bin/python scripts/reference/flux_fill_fixtures.py \
        --comfyui /work/comfyui-src \
        --comfyui-commit a125cd84b054a57729b5eecab930ca9408719832 \
        --checkpoints /work/ref-ckpts \
        --out crates/nodes/tests/fixtures/flux_fill

The model is built as in flow_workflow_fixtures.py (ComfyUI's FluxInpaint supported-model
class with a unet_config read from the tiny weights; CLIP-L, T5 and the 16-channel VAE from the
same all-in-one file).
"""

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import flow_workflow_fixtures as flow  # noqa: E402
import sd_fixtures  # noqa: E402

SEED = 42
POSITIVE = "a red apple on a wooden table"
NEGATIVE = "blurry"
SIZE = 64  # pixels; latents are [1, 16, 8, 8]
INPUT_PNG = "flux_fill_input.png"
CHECKPOINT = ("flux1-fill-dev-checkpoint-fp32.safetensors",
              "CheckpointSpec::new(Family::FluxFill, Storage::F32, Packaging::SingleFile)")


def input_png(path):
    """A 64×64 RGBA picture: smooth colours plus seeded noise; alpha is opaque except for a
    soft-edged disc (mask = 1 − alpha, so the disc is what gets inpainted, with fractional
    values on its rim for DifferentialDiffusion's thresholds)."""
    import numpy as np
    import torch
    from PIL import Image

    generator = torch.Generator().manual_seed(7)
    ys, xs = torch.meshgrid(torch.arange(SIZE, dtype=torch.float32),
                            torch.arange(SIZE, dtype=torch.float32), indexing="ij")
    rgb = torch.stack([xs / SIZE, ys / SIZE, 0.5 + 0.4 * torch.sin(xs / 6.0)], dim=-1)
    rgb = (rgb + 0.1 * torch.rand((SIZE, SIZE, 3), generator=generator)).clamp(0, 1)
    distance = ((xs - 36.0) ** 2 + (ys - 28.0) ** 2).sqrt()
    mask = (1.0 - (distance - 12.0) / 8.0).clamp(0, 1)
    alpha = 1.0 - mask
    rgba = torch.cat([rgb, alpha[..., None]], dim=-1)
    array = (rgba.numpy() * 255.0).round().astype(np.uint8)
    Image.fromarray(array, "RGBA").save(path)


def node_output(result):
    return flow.node_output(result)


def load_image(input_dir):
    import folder_paths
    import nodes

    folder_paths.set_input_directory(input_dir)
    image, mask = nodes.LoadImage().load_image(INPUT_PNG)
    return image, mask


def inpaint(positive, negative, vae, image, mask, noise_mask):
    import nodes

    return nodes.InpaintModelConditioning().encode(positive, negative, image, vae, mask,
                                                   noise_mask)


def differential_diffusion(model, strength):
    import comfy_extras.nodes_differential_diffusion as dd

    return node_output(dd.DifferentialDiffusion.execute(model, strength))[0]


def flux_guidance(conditioning, guidance):
    import comfy_extras.nodes_flux as nodes_flux

    return node_output(nodes_flux.FluxGuidance.execute(conditioning, guidance))[0]


def flux_disable_guidance(conditioning):
    import comfy_extras.nodes_flux as nodes_flux

    return node_output(nodes_flux.FluxDisableGuidance.execute(conditioning))[0]


def ksampler_case(patcher, clip, vae, image, mask, noise_mask, use_dd, sampler, steps):
    """CLIPTextEncode pos/neg → InpaintModelConditioning → [DifferentialDiffusion] →
    FluxGuidance 30 → KSampler(cfg 1, simple) → VAEDecode."""
    import nodes

    (positive,) = nodes.CLIPTextEncode().encode(clip, POSITIVE)
    (negative,) = nodes.CLIPTextEncode().encode(clip, NEGATIVE)
    positive, negative, latent = inpaint(positive, negative, vae, image, mask, noise_mask)
    model = differential_diffusion(patcher, 1.0) if use_dd else patcher
    positive = flux_guidance(positive, 30.0)
    (out,) = nodes.KSampler().sample(model, SEED, steps, 1.0, sampler, "simple", positive,
                                      negative, latent, denoise=1.0)
    (decoded,) = nodes.VAEDecode().decode(vae, out)
    return out["samples"], decoded


def custom_case(patcher, clip, vae, image, mask):
    """InpaintModelConditioning → FluxDisableGuidance (positive) → DifferentialDiffusion 0.5
    → CFGGuider(cfg 2) + RandomNoise + KSamplerSelect(euler) + BasicScheduler(simple, 4, 1.0)
    → SamplerCustomAdvanced → VAEDecode."""
    import comfy_extras.nodes_custom_sampler as custom
    import nodes

    (positive,) = nodes.CLIPTextEncode().encode(clip, POSITIVE)
    (negative,) = nodes.CLIPTextEncode().encode(clip, NEGATIVE)
    positive, negative, latent = inpaint(positive, negative, vae, image, mask, True)
    positive = flux_disable_guidance(positive)
    model = differential_diffusion(patcher, 0.5)
    (noise,) = node_output(custom.RandomNoise().get_noise(SEED))
    (sampler,) = node_output(custom.KSamplerSelect().get_sampler("euler"))
    (sigmas,) = node_output(custom.BasicScheduler().get_sigmas(model, "simple", 4, 1.0))
    (guider,) = node_output(custom.CFGGuider().get_guider(model, positive, negative, 2.0))
    result = node_output(custom.SamplerCustomAdvanced().sample(noise, guider, sampler, sigmas,
                                                               latent))
    (decoded,) = nodes.VAEDecode().decode(vae, result[0])
    return result[0]["samples"], decoded


def odd_sizes_case(vae):
    """InpaintModelConditioning alone on a 60×68 image (not a multiple of 8: cropped) with a
    30×34 soft mask (resized to the image first)."""
    import nodes
    import torch

    generator = torch.Generator().manual_seed(11)
    pixels = torch.rand((1, 60, 68, 3), generator=generator)
    mask = torch.rand((1, 30, 34), generator=generator)
    cond = [[torch.zeros((1, 4, 8)), {}]]
    positive, _, latent = nodes.InpaintModelConditioning().encode(cond, cond, pixels, vae, mask,
                                                                  True)
    return {
        "pixels": pixels, "mask": mask, "samples": latent["samples"],
        "noise_mask": latent["noise_mask"],
        "concat_latent_image": positive[0][1]["concat_latent_image"],
        "concat_mask": positive[0][1]["concat_mask"],
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--comfyui", required=True)
    parser.add_argument("--comfyui-commit", default="unknown")
    parser.add_argument("--checkpoints", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    sd_fixtures.setup_comfyui(os.path.abspath(args.comfyui))

    import comfyui_version
    import torch

    out_dir = os.path.abspath(args.out)
    os.makedirs(out_dir, exist_ok=True)
    input_png(os.path.join(out_dir, INPUT_PNG))
    repo = os.path.dirname(os.path.dirname(HERE))
    tokenizer_dir = os.path.join(repo, "crates/models/tests/fixtures/t5/tiny_tokenizer")
    ckpt = os.path.join(os.path.abspath(args.checkpoints), CHECKPOINT[0])
    writer = sd_fixtures.Writer(out_dir, "flux_fill")
    cases = []

    with torch.inference_mode():
        sd = flow.load(ckpt)
        patcher, config, _ = flow.flux_model(sd, "model.diffusion_model.", "FluxInpaint")
        clip, vae = flow.checkpoint_parts(sd, config, tokenizer_dir)
        image, mask = load_image(out_dir)

        for name, noise_mask, use_dd, sampler, description in (
            ("ksampler_dd", True, True, "euler",
             "LoadImage → InpaintModelConditioning(noise_mask) → DifferentialDiffusion(1.0) → "
             "FluxGuidance 30 → KSampler euler/simple 4 steps cfg 1 → VAEDecode"),
            ("ksampler_concat_only", False, False, "dpmpp_2m",
             "LoadImage → InpaintModelConditioning(noise_mask=false) → FluxGuidance 30 → "
             "KSampler dpmpp_2m/simple 4 steps cfg 1 → VAEDecode"),
        ):
            samples, decoded = ksampler_case(patcher, clip, vae, image, mask, noise_mask,
                                             use_dd, sampler, 4)
            writer.put("latent." + name, samples)
            writer.put("image." + name, sd_fixtures.to_uint8_image(decoded))
            cases.append({"name": name, "description": description})

        samples, decoded = custom_case(patcher, clip, vae, image, mask)
        writer.put("latent.custom_disable_guidance", samples)
        writer.put("image.custom_disable_guidance", sd_fixtures.to_uint8_image(decoded))
        cases.append({"name": "custom_disable_guidance", "description": custom_case.__doc__})

        for key, tensor in odd_sizes_case(vae).items():
            writer.put("odd." + key, tensor)

    writer.meta["cases"] = cases
    writer.meta["settings"] = {"seed": SEED, "positive": POSITIVE, "negative": NEGATIVE,
                               "size": SIZE, "input": INPUT_PNG}
    writer.meta["checkpoint"] = {"file": CHECKPOINT[0], "spec": CHECKPOINT[1] +
                                 " (Size::Tiny, seed 0)",
                                 "sha256": sd_fixtures.sha256_file(ckpt)}
    writer.meta["description"] = (
        "latent.<case> = final LATENT samples [1,16,8,8]; image.<case> = VAEDecode through "
        "SaveImage's uint8 conversion [1,64,64,3]; odd.* = InpaintModelConditioning's inputs "
        "and outputs for a 60×68 image and a 30×34 mask.")
    provenance = {
        "generator": "scripts/reference/flux_fill_fixtures.py",
        "comfyui_commit": args.comfyui_commit,
        "comfyui_version": comfyui_version.__version__,
        "torch": torch.__version__, "device": "cpu", "dtype": "float32",
        "comfyui_flags": sys.argv[1:],
    }
    for path in writer.write(provenance):
        os.chmod(path, 0o644)
        print(os.path.getsize(path), path)


if __name__ == "__main__":
    main()
