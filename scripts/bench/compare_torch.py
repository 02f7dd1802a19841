#!/usr/bin/env python3
"""PyTorch reference timings for `kiln bench --compare-torch`: ComfyUI's own UNet and VAE (SD1.5
or SDXL, loaded from the same generated real-size checkpoint `kiln bench` runs) timed at the same
latent size on the same device: the CPU in float32 and bfloat16, or a CUDA GPU (`--device cuda`,
ComfyUI's GPU defaults) in float16, bfloat16 and float32.

Nothing here runs in CI. `kiln bench --compare-torch` runs this script after its own run and
prints Kiln/PyTorch ratios. Run by hand (repository root):

    /work/venv-ref/bin/python scripts/bench/compare_torch.py \
        --comfyui /work/comfyui-src \
        --checkpoint /tmp/kiln-bench/models/checkpoints/<file written by kiln bench> \
        --size 512 --json-out /tmp/torch.json

Setup: a venv with torch (CPU wheel), safetensors, einops, psutil, pyyaml, scipy, tqdm, torchsde,
transformers, pillow and a ComfyUI source tree (the repository's reference scripts use
/work/venv-ref and /work/comfyui-src). No network is used.

What is timed, matching `kiln bench`'s stages:

* one sampler step = one UNet forward at batch 2 (euler with CFG 7 batches cond and uncond),
  on a random latent, timestep 500, a random 77-token context of the model's width (and for SDXL
  a random pooled/size vector `y`); median of `--runs` after a warm-up;
* VAE decode of one latent `[1, 4, size/8, size/8]` through `comfy.sd.VAE.decode` (on a GPU the
  median of three after a warm-up, which pays cuDNN's algorithm search; on the CPU one run).

On a GPU every timed call ends with `torch.cuda.synchronize()`, so the times are the work's, not
its queueing's. Attention is ComfyUI's CPU path from the issue's command line
(`--use-split-cross-attention`) unless `--attention pytorch` asks for SDPA (ComfyUI's default on
NVIDIA GPUs). Each dtype converts the modules with `.to(dtype)` (on the CPU PyTorch then uses its
AVX512-BF16/AMX kernels for bf16 where the CPU has them).
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--comfyui", required=True, help="ComfyUI source tree")
    parser.add_argument("--checkpoint", required=True, help="the SD1.5 or SDXL checkpoint kiln bench wrote")
    parser.add_argument("--size", type=int, default=512, help="image width and height in pixels")
    parser.add_argument("--runs", type=int, default=2, help="timed UNet runs per dtype")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: physical cores)")
    parser.add_argument("--dtypes", default="float32,bfloat16", help="comma-separated torch dtypes")
    parser.add_argument("--attention", choices=["split", "pytorch"], default="split")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--skip-vae", action="store_true", help="time the UNet only")
    parser.add_argument("--json-out", help="also write the results here")
    return parser.parse_args()


def physical_cores():
    try:
        import psutil

        return psutil.cpu_count(logical=False) or os.cpu_count() or 1
    except ImportError:
        return os.cpu_count() or 1


def peak_rss_bytes():
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def load_comfy(comfyui, attention, device):
    # ComfyUI reads its command line when `comfy.options.args_parsing` is on; give it the flags
    # of the path being compared against.
    sys.argv = (["main.py", "--cpu"] if device == "cpu" else ["main.py"]) + (
        ["--use-split-cross-attention"] if attention == "split" else ["--use-pytorch-cross-attention"]
    )
    sys.path.insert(0, comfyui)
    import comfy.options

    comfy.options.enable_args_parsing()
    import comfy.sd  # noqa: F401  (imports cli_args with the flags above)
    import comfy.model_management

    return comfy


def median_seconds(fn, runs, synchronize):
    fn()  # warm-up: first-touch allocation, oneDNN primitive creation, cuDNN algorithm search
    synchronize()
    samples = []
    for _ in range(max(1, runs)):
        start = time.perf_counter()
        fn()
        synchronize()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples), samples


def main():
    args = parse_args()
    import torch

    threads = args.threads or physical_cores()
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    comfy = load_comfy(args.comfyui, args.attention, args.device)
    device = torch.device(args.device)
    if device.type == "cuda":
        synchronize = torch.cuda.synchronize
    else:
        def synchronize():
            pass

    started = time.perf_counter()
    model, _clip, vae, *_ = comfy.sd.load_checkpoint_guess_config(
        args.checkpoint, output_vae=not args.skip_vae, output_clip=False
    )
    load_s = time.perf_counter() - started
    unet = model.model.diffusion_model.eval()
    unet_config = model.model.model_config.unet_config
    latent_hw = args.size // 8
    x = torch.randn(2, 4, latent_hw, latent_hw)
    timesteps = torch.full((2,), 500.0)
    context = torch.randn(2, 77, unet_config["context_dim"])
    adm_channels = unet_config.get("adm_in_channels")
    y = torch.randn(2, adm_channels) if adm_channels else None
    latent = torch.randn(1, 4, latent_hw, latent_hw)

    results = {
        "torch_version": torch.__version__,
        "threads": threads,
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        "attention": args.attention,
        "size": args.size,
        "checkpoint": os.path.basename(args.checkpoint),
        "load_s": load_s,
        "machine": platform.processor() or platform.machine(),
        "unet_step_s": {},
        "unet_step_samples_s": {},
        "vae_decode_s": {},
    }
    for name in [d.strip() for d in args.dtypes.split(",") if d.strip()]:
        dtype = getattr(torch, name)
        unet.to(device, dtype)
        inputs = {
            "x": x.to(device, dtype),
            "timesteps": timesteps.to(device, dtype),
            "context": context.to(device, dtype),
        }
        if y is not None:
            inputs["y"] = y.to(device, dtype)
        with torch.inference_mode():
            seconds, samples = median_seconds(lambda: unet(**inputs), args.runs, synchronize)
        results["unet_step_s"][name] = seconds
        results["unet_step_samples_s"][name] = samples
        print(f"torch {name}: UNet step {seconds:.3f} s", file=sys.stderr)
        if not args.skip_vae:
            vae.first_stage_model.to(dtype)
            vae.vae_dtype = dtype
            with torch.inference_mode():
                if device.type == "cuda":
                    decode, _ = median_seconds(lambda: vae.decode(latent), 3, synchronize)
                else:
                    start = time.perf_counter()
                    vae.decode(latent)
                    decode = time.perf_counter() - start
            results["vae_decode_s"][name] = decode
            print(f"torch {name}: VAE decode {decode:.3f} s", file=sys.stderr)
    unet.to("cpu", torch.float32)
    results["peak_rss_bytes"] = peak_rss_bytes()
    if device.type == "cuda":
        results["peak_gpu_allocated_bytes"] = torch.cuda.max_memory_allocated()
    text = json.dumps(results, indent=2)
    if args.json_out:
        with open(args.json_out, "w") as out:
            out.write(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
