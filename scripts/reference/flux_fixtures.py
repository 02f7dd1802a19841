#!/usr/bin/env python3
"""Write Kiln's Flux.1 (dev, schnell, fill) transformer fixtures by running ComfyUI's own
`comfy/ldm/flux` module and `model_base.Flux.apply_model` on Kiln's tiny generated checkpoints
(CPU, float32, deterministic algorithms).

Nothing here runs in CI. The fixtures it writes are committed under
`crates/models/tests/fixtures/flux/`; the Rust tests in `crates/models/tests/flux_*.rs` load
the same tiny checkpoints through `kiln-test-checkpoints` and compare.

Rerun (from the repository root; the venv and ComfyUI source tree are set up as described in
scripts/reference/README.md; the tiny f32 Flux single files are written by
`kiln-test-checkpoints` with `Family::Flux{Dev,Schnell,Fill}`, `Storage::F32`,
`Packaging::SingleFile`):

    /work/venv-ref/bin/python scripts/reference/flux_fixtures.py \
        --comfyui /work/comfyui-src \
        --comfyui-commit a125cd84b054a57729b5eecab930ca9408719832 \
        --checkpoints /work/ref-ckpts \
        --out crates/models/tests/fixtures/flux

Why the model is built by hand: `model_detection.detect_unet_config` hard-codes the real widths
(hidden 3072, 24 heads, axes 16/56/56, context 4096), which the tiny checkpoints do not have.
This script takes the family's `supported_models` class (Flux / FluxSchnell / FluxInpaint), fills
its `unet_config` the way `detect_unet_config` does but with the widths read from the weights
(hidden = `img_in` rows, heads = hidden / qk-norm scale width, context = `txt_in` columns) and
the tiny RoPE axes (head 32 -> 4/14/14, the real 16/56/56 scaled by head/128), then
`get_model` + `load_model_weights`, exactly as `load_state_dict_guess_config` continues.
"""

import argparse
import json
import os
import sys

from sd_fixtures import seeded_randn, sha256_file

PREFIX = "model.diffusion_model."
CHECKPOINTS = {
    # key -> (file written by kiln-test-checkpoints, comfy.supported_models class name)
    "dev": ("flux1-dev-checkpoint-fp32.safetensors", "Flux"),
    "schnell": ("flux1-schnell-checkpoint-fp32.safetensors", "FluxSchnell"),
    "fill": ("flux1-fill-dev-checkpoint-fp32.safetensors", "FluxInpaint"),
}
TEXT_TOKENS = 7
TIMESTEP = 0.7
GUIDANCE = 2.5
# Odd sizes exercise the circular padding to whole 2x2 patches and the final crop.
FORWARD_SHAPE = (5, 7)
# apply_model (model sampling + default guidance) on an even latent, batch 2.
DENOISE_SHAPE = (6, 10)
DENOISE_SIGMA = 0.7


def tiny_axes(head):
    """The RoPE axes of a head width: ComfyUI's 16/56/56 for head 128, scaled by head/128."""
    if head % 32 != 0:
        raise ValueError("head width {} is not a multiple of 32".format(head))
    return [head // 8, head * 7 // 16, head * 7 // 16]


def load_family(key, checkpoint_dir):
    import comfy.supported_models
    import comfy.utils
    import torch

    file_name, class_name = CHECKPOINTS[key]
    path = os.path.join(checkpoint_dir, file_name)
    sd = comfy.utils.load_torch_file(path, safe_load=True)
    hidden, in_features = sd[PREFIX + "img_in.weight"].shape
    head = sd[PREFIX + "double_blocks.0.img_attn.norm.query_norm.scale"].shape[0]
    patch = 2

    def count(part):
        names = {k[len(PREFIX + part):].split(".")[0] for k in sd if k.startswith(PREFIX + part)}
        return len(names)

    unet_config = {
        "image_model": "flux",
        "in_channels": in_features // (patch * patch),
        "patch_size": patch,
        "out_channels": 16,
        "vec_in_dim": sd[PREFIX + "vector_in.in_layer.weight"].shape[1],
        "context_in_dim": sd[PREFIX + "txt_in.weight"].shape[1],
        "hidden_size": hidden,
        "mlp_ratio": 4.0,
        "num_heads": hidden // head,
        "depth": count("double_blocks."),
        "depth_single_blocks": count("single_blocks."),
        "axes_dim": tiny_axes(head),
        "theta": 10000,
        "qkv_bias": True,
        "guidance_embed": (PREFIX + "guidance_in.in_layer.weight") in sd,
    }
    model_config = getattr(comfy.supported_models, class_name)(dict(unet_config))
    model_config.set_inference_dtype(torch.float32, None)
    model = model_config.get_model(sd, PREFIX, device=torch.device("cpu"))
    model.load_model_weights(sd, PREFIX)
    model.eval()
    return model, unet_config, file_name, sha256_file(path)


class Writer:
    def __init__(self, out_dir, stem):
        self.out_dir = out_dir
        self.stem = stem
        self.tensors = {}
        self.meta = {}

    def put(self, name, tensor):
        self.tensors[name] = tensor.detach().float().cpu().contiguous().clone()

    def write(self, provenance):
        from safetensors.torch import save_file

        path = os.path.join(self.out_dir, self.stem + ".safetensors")
        save_file(dict(sorted(self.tensors.items())), path)
        self.meta["tensors"] = {n: list(t.shape) for n, t in sorted(self.tensors.items())}
        self.meta["provenance"] = provenance
        json_path = os.path.join(self.out_dir, self.stem + ".json")
        with open(json_path, "w") as handle:
            json.dump(self.meta, handle, indent=1, sort_keys=True)
            handle.write("\n")
        return [path, json_path]


def write_family(key, checkpoint_dir, out_dir, provenance):
    import torch

    model, unet_config, file_name, digest = load_family(key, checkpoint_dir)
    net = model.diffusion_model
    writer = Writer(out_dir, "flux_" + key)
    writer.meta["model"] = {"unet_config": unet_config, "checkpoint": file_name,
                            "checkpoint_sha256": digest,
                            "model_sampling_shift": float(model.model_sampling.shift),
                            "model_sampling_multiplier": float(
                                getattr(model.model_sampling, "multiplier", 1.0))}
    channels = unet_config["in_channels"]
    out_channels = unet_config["out_channels"]
    context_width = unet_config["context_in_dim"]
    pooled_width = unet_config["vec_in_dim"]
    guided = unet_config["guidance_embed"]

    # 1. The raw transformer, Flux.forward(x, timestep, context, y, guidance).
    height, width = FORWARD_SHAPE
    x = seeded_randn([1, channels, height, width], 1)
    context = seeded_randn([1, TEXT_TOKENS, context_width], 2)
    y = seeded_randn([1, pooled_width], 3)
    timestep = torch.tensor([TIMESTEP], dtype=torch.float32)
    guidance = torch.tensor([GUIDANCE], dtype=torch.float32) if guided else None
    output = net(x, timestep, context, y=y, guidance=guidance)
    writer.put("forward.x", x)
    writer.put("forward.context", context)
    writer.put("forward.y", y)
    writer.put("forward.timestep", timestep)
    if guidance is not None:
        writer.put("forward.guidance", guidance)
    writer.put("forward.output", output)
    description = {
        "forward": "diffusion_model(x, timestep, context, y=y, guidance=guidance) on x "
                   "[1,C,{},{}] (padded circularly to whole 2x2 patches, cropped back); "
                   "guidance {} where the model embeds it".format(height, width, GUIDANCE),
    }

    # 2. BaseModel.apply_model with the family's model sampling and extra_conds (guidance
    # defaults to 3.5 there), batch 2. Fill gets its 80 extra channels as c_concat.
    if key != "fill":
        height, width = DENOISE_SHAPE
        x = seeded_randn([2, out_channels, height, width], 4)
        context = seeded_randn([2, TEXT_TOKENS, context_width], 5)
        y = seeded_randn([2, pooled_width], 6)
        conds = model.extra_conds(cross_attn=context, pooled_output=y, noise=x,
                                  device=torch.device("cpu"))
        kwargs = {name: cond.cond for name, cond in conds.items()}
        if "guidance" in kwargs:
            kwargs["guidance"] = kwargs["guidance"].repeat(2)
        sigma = torch.tensor([DENOISE_SIGMA] * 2, dtype=torch.float32)
        denoised = model.apply_model(x, sigma, **kwargs)
        writer.put("denoise.x", x)
        writer.put("denoise.context", context)
        writer.put("denoise.y", y)
        writer.put("denoise.sigma", sigma)
        writer.put("denoise.denoised", denoised)
        writer.meta["denoise_extra_conds"] = sorted(kwargs)
        if "guidance" in kwargs:
            writer.put("denoise.guidance", kwargs["guidance"])
        description["denoise"] = (
            "BaseModel.apply_model(x, sigma, **extra_conds(cross_attn=context, "
            "pooled_output=y)) (model sampling: see model.model_sampling_shift; denoised = "
            "x - sigma * model_output); Flux's extra_conds adds its default guidance 3.5, "
            "which schnell (no guidance_in) ignores")
    writer.meta["description"] = description
    return writer.write(provenance)


def setup_comfyui(comfyui):
    sys.path.insert(0, comfyui)
    # CPU, float32 everywhere, PyTorch SDPA attention (plain softmax(QK^T/sqrt(d))V).
    sys.argv = [sys.argv[0], "--cpu", "--force-fp32", "--use-pytorch-cross-attention",
                "--disable-all-custom-nodes"]
    import comfy.options

    comfy.options.enable_args_parsing()
    import torch

    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--comfyui", required=True, help="ComfyUI source tree")
    parser.add_argument("--comfyui-commit", default="unknown", help="recorded in the fixtures")
    parser.add_argument("--checkpoints", required=True,
                        help="folder with the f32 tiny Flux single-file checkpoints")
    parser.add_argument("--out", required=True, help="fixture folder to (over)write")
    args = parser.parse_args()
    out_dir = os.path.abspath(args.out)
    checkpoints = os.path.abspath(args.checkpoints)
    setup_comfyui(os.path.abspath(args.comfyui))

    import comfyui_version
    import torch

    os.makedirs(out_dir, exist_ok=True)
    provenance = {
        "generator": "scripts/reference/flux_fixtures.py",
        "comfyui_commit": args.comfyui_commit,
        "comfyui_version": comfyui_version.__version__,
        "torch": torch.__version__,
        "device": "cpu",
        "dtype": "float32",
        "comfyui_flags": sys.argv[1:],
    }
    written = []
    with torch.inference_mode():
        for key in CHECKPOINTS:
            written += write_family(key, checkpoints, out_dir, provenance)
    for path in written:
        os.chmod(path, 0o644)
        print("{:>9}  {}".format(os.path.getsize(path), os.path.relpath(path, out_dir)))


if __name__ == "__main__":
    main()
