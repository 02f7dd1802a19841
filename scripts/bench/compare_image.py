#!/usr/bin/env python3
"""Compare Kiln's image with ComfyUI's for one txt2img workflow on a real-size checkpoint.

Runs the same API-format graph (CheckpointLoaderSimple, two CLIPTextEncode, EmptyLatentImage,
KSampler, VAEDecode, SaveImage) twice: through `kiln run` (the binary given, default flags, so
f32 on the CPU) and through ComfyUI's own node functions in this Python (`--cpu`, f32), then
prints how many 8-bit values differ, by how much, and the PSNR. It is how the Winograd
variant of Kiln's f32 convolutions was checked against "the same image for the same seed" on
the random-weight checkpoint `kiln bench` writes (a real SD1.5 key layout and sizes).

Nothing here runs in CI (it needs PyTorch and a ComfyUI source tree). Example, after
`kiln bench --dir /tmp/kiln-bench` wrote the checkpoint:

    /work/venv-ref/bin/python scripts/bench/compare_image.py \
        --kiln target/release/kiln --comfyui /work/comfyui-src \
        --base-directory /tmp/kiln-bench \
        --checkpoint v1-5-pruned-emaonly-fp16-real.safetensors --steps 4
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kiln", required=True, help="the kiln binary")
    parser.add_argument("--comfyui", required=True, help="ComfyUI source tree")
    parser.add_argument("--base-directory", required=True,
                        help="Kiln/ComfyUI base directory holding models/checkpoints/")
    parser.add_argument("--checkpoint", required=True, help="file name under models/checkpoints")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--cfg", type=float, default=7.0)
    parser.add_argument("--prompt", default="a cat")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--kiln-flag", action="append", default=[],
                        help="extra flag for kiln (repeatable), e.g. --kiln-flag=--bf16-vae")
    return parser.parse_args()


def workflow(args):
    return {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": args.checkpoint}},
        "5": {"class_type": "EmptyLatentImage",
              "inputs": {"width": args.size, "height": args.size, "batch_size": 1}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": args.prompt, "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["4", 1]}},
        "3": {"class_type": "KSampler", "inputs": {
            "seed": args.seed, "steps": args.steps, "cfg": args.cfg, "sampler_name": "euler",
            "scheduler": "normal", "denoise": 1.0, "model": ["4", 0], "positive": ["6", 0],
            "negative": ["7", 0], "latent_image": ["5", 0]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": "cmp"}},
    }


def kiln_image(args, out_dir):
    import numpy as np
    from PIL import Image

    path = os.path.join(out_dir, "workflow.json")
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(workflow(args), handle)
    command = [args.kiln, "--base-directory", args.base_directory, "--output-directory", out_dir,
               *args.kiln_flag, "run", path]
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    pngs = [line.strip() for line in done.stdout.splitlines() if line.strip().endswith(".png")]
    if not pngs:
        sys.exit(f"kiln wrote no image:\n{done.stdout}\n{done.stderr}")
    return np.asarray(Image.open(pngs[-1]).convert("RGB")).astype(np.int64)


def comfyui_image(args):
    import numpy as np

    sys.path.insert(0, args.comfyui)
    sys.argv = [sys.argv[0], "--cpu", "--disable-all-custom-nodes"]
    import comfy.options

    comfy.options.enable_args_parsing()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    import comfy.sd
    import comfy.utils
    import nodes

    comfy.utils.PROGRESS_BAR_ENABLED = False
    path = os.path.join(args.base_directory, "models", "checkpoints", args.checkpoint)
    with torch.inference_mode():
        model, clip, vae, _ = comfy.sd.load_checkpoint_guess_config(
            path, output_vae=True, output_clip=True)
        (positive,) = nodes.CLIPTextEncode().encode(clip, args.prompt)
        (negative,) = nodes.CLIPTextEncode().encode(clip, "")
        (latent,) = nodes.EmptyLatentImage().generate(args.size, args.size, 1)
        (samples,) = nodes.KSampler().sample(model, args.seed, args.steps, args.cfg, "euler",
                                             "normal", positive, negative, latent, denoise=1.0)
        (image,) = nodes.VAEDecode().decode(vae, samples)
    # SaveImage's conversion: clip(255 * x, 0, 255) truncated to uint8.
    return np.clip(255.0 * image[0].float().cpu().numpy(), 0, 255).astype(np.uint8).astype(np.int64)


def main():
    import numpy as np

    args = parse_args()
    with tempfile.TemporaryDirectory() as out_dir:
        kiln = kiln_image(args, out_dir)
    reference = comfyui_image(args)
    if kiln.shape != reference.shape:
        sys.exit(f"shapes differ: kiln {kiln.shape}, ComfyUI {reference.shape}")
    diff = np.abs(kiln - reference)
    mse = float((diff.astype(np.float64) ** 2).mean())
    psnr = float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)
    saturated = float(((reference == 0) | (reference == 255)).mean())
    print(json.dumps({
        "values": int(diff.size),
        "differing_fraction": float((diff > 0).mean()),
        "max_difference": int(diff.max()),
        "psnr_db": psnr,
        "reference_saturated_fraction": saturated,
    }, indent=2))


if __name__ == "__main__":
    main()
