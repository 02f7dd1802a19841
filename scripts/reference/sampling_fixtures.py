#!/usr/bin/env python3
"""Write the reference fixtures for `kiln-sampling` by running PyTorch and ComfyUI's own code.

Usage (from anywhere; nothing here runs in CI):

    python3 -m venv /work/venv-ref
    /work/venv-ref/bin/pip install torch torchvision numpy scipy torchsde einops safetensors \
        tqdm psutil pyyaml pillow
    /work/venv-ref/bin/python scripts/reference/sampling_fixtures.py /path/to/ComfyUI \
        crates/sampling/tests/fixtures

The ComfyUI checkout is given on the command line (this script never downloads anything).
The fixtures record the versions of torch, numpy, torchsde and the ComfyUI commit they came from.

Files written (all small, all committed):

* `randn.json`: `torch.randn` float32 bit patterns for several seeds and shapes, for both CPU
  kernels (`ATEN_CPU_CAPABILITY=avx2` and `=default`, each produced in a child process).
* `model_sampling.json`: sigma tables, timestep <-> sigma and percent_to_sigma samples.
* `schedules.json`: every scheduler x steps {1, 4, 20} x model sampling, plus KSampler-level
  sigma rules (denoise < 1, discarded penultimate sigma, start/end slicing).
* `seed_sequence.json`, `brownian.json`: numpy SeedSequence words and torchsde BrownianTree noise.
* `samplers.json` + `samplers.bin`: final latents (float32 little endian) of ComfyUI's samplers on
  the toy denoiser below, for every scheduler and prediction type.

The toy denoiser is defined identically in `crates/sampling/tests/common/mod.rs`:
the raw model output is `out = x_in * 0.6 / (1 + 0.05 * sigma) + 0.3 * pattern`, where
`x_in = model_sampling.calculate_input(sigma, x)`, `pattern[i] = ((i * 37) % 17 - 8) / 8` over
the flattened latent, and the denoised value is `model_sampling.calculate_denoised(sigma, out, x)`.
"""

import hashlib
import json
import math
import os
import struct
import subprocess
import sys

SEEDS = [0, 1, 42, 2**32 + 5, 0xFFFFFFFF, 123456789012345]
SMALL_SHAPES = [[1, 4, 8, 8], [1, 16, 4, 4], [2, 4, 3, 5], [7]]
LARGE_SHAPE = [1, 4, 64, 64]
SCHEDULE_STEPS = [1, 4, 20]
SAMPLER_SHAPE = [1, 4, 3, 5]
SAMPLER_SEED = 1234567
SAMPLER_STEPS = 6


def f32_bits(values):
    import numpy as np

    return [int(v) for v in np.asarray(values, dtype=np.float32).reshape(-1).view(np.uint32)]


def fnv1a64(bits):
    h = 0xCBF29CE484222325
    for word in bits:
        for shift in (0, 8, 16, 24):
            h ^= (word >> shift) & 0xFF
            h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def write_json(out_dir, name, value):
    with open(os.path.join(out_dir, name), "w") as f:
        json.dump(value, f, separators=(",", ":"))
        f.write("\n")


# ------------------------------------------------------------------------------------------------
# randn (run in a child process per CPU capability)
# ------------------------------------------------------------------------------------------------


def randn_cases():
    import torch

    cases = []
    for seed in SEEDS:
        for shape in SMALL_SHAPES:
            g = torch.Generator().manual_seed(seed)
            cases.append({"seed": seed, "shape": shape, "bits": f32_bits(torch.randn(shape, generator=g))})
        g = torch.Generator().manual_seed(seed)
        bits = f32_bits(torch.randn(LARGE_SHAPE, generator=g))
        cases.append({"seed": seed, "shape": LARGE_SHAPE, "fnv1a64": fnv1a64(bits), "first": bits[:64], "last": bits[-64:]})
    # One generator drawing several tensors in a row, like ComfyUI's default_noise_sampler.
    g = torch.Generator().manual_seed(42)
    sequence = []
    for shape in [[2, 4, 3, 5], [2, 4, 3, 5], [7], [3], [1, 4, 8, 8], [1]]:
        sequence.append({"shape": shape, "bits": f32_bits(torch.randn(shape, generator=g))})
    return {"capability": torch.backends.cpu.get_cpu_capability(), "cases": cases, "sequence_seed": 42, "sequence": sequence}


def write_randn(out_dir):
    import torch

    result = {"torch_version": torch.__version__, "kernels": {}}
    for kernel, capability in [("avx2", "avx2"), ("scalar", "default")]:
        env = dict(os.environ, ATEN_CPU_CAPABILITY=capability)
        child = subprocess.run([sys.executable, __file__, "--randn-child"], env=env, check=True, capture_output=True, text=True)
        result["kernels"][kernel] = json.loads(child.stdout)
    write_json(out_dir, "randn.json", result)


# ------------------------------------------------------------------------------------------------
# ComfyUI model sampling objects
# ------------------------------------------------------------------------------------------------


def make_model_samplings():
    import comfy.model_sampling as ms

    class SD1Eps(ms.ModelSamplingDiscrete, ms.EPS):
        pass

    class SD1V(ms.ModelSamplingDiscrete, ms.V_PREDICTION):
        pass

    class Flow(ms.ModelSamplingDiscreteFlow, ms.CONST):
        pass

    class Flux(ms.ModelSamplingFlux, ms.CONST):
        pass

    flow3 = Flow()
    flow3.set_parameters(shift=3.0, multiplier=1000)
    flux = Flux()
    flux.set_parameters(shift=1.15)
    # ModelSamplingFlux node: shift from resolution (768 x 1024, max_shift 1.15, base_shift 0.5).
    x1, x2 = 256, 4096
    mm = (1.15 - 0.5) / (x2 - x1)
    b = 0.5 - mm * x1
    flux_res_shift = (768 * 1024 / (8 * 8 * 2 * 2)) * mm + b
    flux_res = Flux()
    flux_res.set_parameters(shift=flux_res_shift)
    return {
        "sd1_eps": ({"kind": "discrete", "prediction": "eps"}, SD1Eps()),
        "sd1_v": ({"kind": "discrete", "prediction": "v"}, SD1V()),
        "flow_shift3": ({"kind": "discrete_flow", "prediction": "const", "shift": 3.0, "multiplier": 1000.0}, flow3),
        "flux": ({"kind": "flux", "prediction": "const", "shift": 1.15}, flux),
        "flux_768x1024": ({"kind": "flux", "prediction": "const", "shift": flux_res_shift, "width": 768, "height": 1024}, flux_res),
    }


class StubModel:
    """What comfy.samplers.KSampler needs from a ModelPatcher to compute sigmas."""

    def __init__(self, model_sampling):
        self.model_sampling = model_sampling

    def get_model_object(self, name):
        assert name == "model_sampling"
        return self.model_sampling


def write_model_sampling(out_dir, samplings):
    import torch

    result = {}
    for name, (desc, m) in samplings.items():
        sigmas = f32_bits(m.sigmas)
        entry = dict(desc)
        entry["len"] = len(sigmas)
        entry["sigmas_fnv1a64"] = fnv1a64(sigmas)
        stride = 1 if len(sigmas) <= 1000 else 10
        entry["sigmas_stride"] = stride
        entry["sigmas_bits"] = sigmas[::stride]
        if hasattr(m, "log_sigmas"):
            entry["log_sigmas_bits"] = f32_bits(m.log_sigmas)[::stride]
        probe = torch.tensor([0.0292, 0.1, 0.5, 0.9, 0.99, 1.0, 3.0, 14.6, 14.6146], dtype=torch.float32)
        probe = probe[probe <= float(m.sigma_max) * 1.0001]
        probe = probe[probe > 0]
        entry["timestep_probe_bits"] = f32_bits(probe)
        entry["timestep_bits"] = f32_bits(m.timestep(probe).float())
        ts = torch.tensor([0.0, 0.5, 1.0, 17.25, 499.5, 998.9, 999.0], dtype=torch.float32)
        if desc["kind"] == "flux":
            ts = torch.tensor([0.001, 0.25, 0.5, 0.75, 1.0], dtype=torch.float32)
        entry["sigma_probe_bits"] = f32_bits(ts)
        entry["sigma_bits"] = f32_bits(m.sigma(ts))
        percents = [0.0, 0.2, 0.5, 0.8, 0.999, 1.0]
        entry["percent_probe"] = percents
        entry["percent_to_sigma"] = [float(m.percent_to_sigma(p)) for p in percents]
        result[name] = entry
    write_json(out_dir, "model_sampling.json", result)


def write_schedules(out_dir, samplings):
    import comfy.samplers

    schedules = []
    for name in ["sd1_eps", "flow_shift3", "flux", "flux_768x1024"]:
        m = samplings[name][1]
        for scheduler in comfy.samplers.SCHEDULER_NAMES:
            for steps in SCHEDULE_STEPS:
                sigmas = comfy.samplers.calculate_sigmas(m, scheduler, steps)
                schedules.append({"model": name, "scheduler": scheduler, "steps": steps, "bits": f32_bits(sigmas)})

    ksampler = []
    for name in ["sd1_eps", "flow_shift3"]:
        m = samplings[name][1]
        for scheduler in comfy.samplers.SCHEDULER_NAMES:
            for sampler in ["euler", "dpm_2", "uni_pc"]:
                for steps, denoise in [(1, 1.0), (6, 1.0), (6, 0.6), (20, 0.35), (3, 0.0), (4, 0.99995)]:
                    k = comfy.samplers.KSampler(StubModel(m), steps=steps, device="cpu", sampler=sampler, scheduler=scheduler, denoise=denoise)
                    ksampler.append({"model": name, "scheduler": scheduler, "sampler": sampler, "steps": steps, "denoise": denoise, "bits": f32_bits(k.sigmas)})
    write_json(out_dir, "schedules.json", {"schedules": schedules, "ksampler": ksampler})


# ------------------------------------------------------------------------------------------------
# numpy SeedSequence and torchsde BrownianTree
# ------------------------------------------------------------------------------------------------


def write_brownian(out_dir, samplings):
    import numpy as np
    import torch
    import comfy.k_diffusion.sampling as kds

    seq = []
    for entropy, spawn_key, pool_size, n in [
        (0, (), 4, 4),
        (1234567, (), 24, 3),
        (1234567, (0, 0), 24, 4),
        (1234567, (1, 1), 24, 4),
        (1234567, (5, 3), 24, 4),
        (2**40 + 3, (12345678901, 33), 24, 4),
        (2**64 - 1, (2**33, 40), 24, 4),
        (42, (3,), 8, 6),
    ]:
        words = np.random.SeedSequence(entropy=entropy, spawn_key=spawn_key, pool_size=pool_size).generate_state(n)
        seq.append({"entropy": str(entropy), "spawn_key": [str(k) for k in spawn_key], "pool_size": pool_size, "words": [int(w) for w in words]})
    write_json(out_dir, "seed_sequence.json", {"numpy_version": np.__version__, "cases": seq})

    cases = []
    for seed, shape, sigmas in [
        (SAMPLER_SEED, SAMPLER_SHAPE, [14.6146, 6.0, 2.5, 1.0, 0.3, 0.0292]),
        (7, [1, 2, 2, 2], [1.0, 0.75, 0.5, 0.3, 0.1, 0.02]),
        (2**32 + 11, [1, 4, 3, 5], [0.9997, 0.8, 0.6661, 0.123, 0.05]),
    ]:
        x = torch.zeros(shape)
        sig = torch.tensor(sigmas, dtype=torch.float32)
        sampler = kds.BrownianTreeNoiseSampler(x, sig[sig > 0].min(), sig.max(), seed=seed, cpu=True)
        queries = []
        for i in range(len(sigmas) - 1):
            queries.append((sig[i], sig[i + 1]))
            mid = (sig[i] * sig[i + 1]).sqrt()
            queries.append((sig[i], mid))
            queries.append((mid, sig[i + 1]))
        out = []
        for a, b in queries:
            out.append({"sigma_bits": f32_bits(a)[0], "sigma_next_bits": f32_bits(b)[0], "bits": f32_bits(sampler(a, b))})
        cases.append({"seed": seed, "shape": shape, "sigma_min_bits": f32_bits(sig[sig > 0].min())[0], "sigma_max_bits": f32_bits(sig.max())[0], "queries": out})
    import torchsde

    write_json(out_dir, "brownian.json", {"torchsde_version": torchsde.__version__, "cases": cases})


# ------------------------------------------------------------------------------------------------
# Samplers on the toy denoiser
# ------------------------------------------------------------------------------------------------


def toy_pattern(n):
    import torch

    return torch.tensor([((i * 37) % 17 - 8) / 8.0 for i in range(n)], dtype=torch.float32)


class ToyModel:
    """Stands in for the CFGGuider ComfyUI hands to KSAMPLER.sample (cfg == 1: no uncond pass)."""

    def __init__(self, model_sampling, shape):
        self.inner_model = self  # model.inner_model.inner_model.model_sampling
        self.model_sampling = model_sampling
        self.model_patcher = StubModel(model_sampling)
        self.pattern = toy_pattern(math.prod(shape)).view(shape)
        self.calls = 0

    def __call__(self, x, sigma, model_options={}, seed=None):
        self.calls += 1
        ms = self.model_sampling
        x_in = ms.calculate_input(sigma, x)
        s = sigma.view(sigma.shape[:1] + (1,) * (x.ndim - 1))
        out = x_in * (0.6 / (1.0 + 0.05 * s)) + 0.3 * self.pattern
        return ms.calculate_denoised(sigma, out, x)


def latent_format_for(model_name):
    import comfy.latent_formats as lf

    return lf.SD3() if model_name.startswith("flow") or model_name.startswith("flux") else lf.SD15()


def run_sampler(samplings, model_name, sampler, scheduler, steps, denoise, latent, start_step=None, last_step=None, force_full_denoise=False):
    """comfy.sample.sample -> KSampler.sample -> CFGGuider.inner_sample -> KSAMPLER.sample, with a toy model."""
    import torch
    import comfy.sample
    import comfy.samplers

    m = samplings[model_name][1]
    noise = comfy.sample.prepare_noise(latent, SAMPLER_SEED)
    k = comfy.samplers.KSampler(StubModel(m), steps=steps, device="cpu", sampler=sampler, scheduler=scheduler, denoise=denoise)
    sigmas = k.sigmas
    if last_step is not None and last_step < (len(sigmas) - 1):
        sigmas = sigmas[: last_step + 1]
        if force_full_denoise:
            sigmas[-1] = 0
    if start_step is not None:
        if start_step < (len(sigmas) - 1):
            sigmas = sigmas[start_step:]
        else:
            return sigmas, latent
    if sigmas.shape[-1] == 0:
        return sigmas, latent
    used_sigmas = sigmas.clone()
    fmt = latent_format_for(model_name)
    latent_image = latent
    if torch.count_nonzero(latent_image) > 0:
        latent_image = fmt.process_in(latent_image)
    model = ToyModel(m, list(latent.shape))
    extra_args = {"model_options": {}, "seed": SAMPLER_SEED}
    samples = comfy.samplers.sampler_object(sampler).sample(model, sigmas, extra_args, None, noise, latent_image, None, True)
    return used_sigmas, fmt.process_out(samples.to(torch.float32))


def write_samplers(out_dir, samplings):
    import torch
    import comfy.samplers

    names = [n for n in comfy.samplers.SAMPLER_NAMES if "cfg_pp" not in n]
    zero = torch.zeros(SAMPLER_SHAPE)
    image = 0.5 * toy_pattern(math.prod(SAMPLER_SHAPE)).view(SAMPLER_SHAPE).flip(-1) + 0.25
    jobs = []
    for model_name in ["sd1_eps", "sd1_v", "flow_shift3"]:
        for sampler in names:
            for scheduler in comfy.samplers.SCHEDULER_NAMES:
                jobs.append(dict(model=model_name, sampler=sampler, scheduler=scheduler, steps=SAMPLER_STEPS, denoise=1.0, latent="zero"))
    for model_name in ["sd1_eps", "flow_shift3"]:
        for sampler in names:
            for scheduler in ["karras", "simple"]:
                jobs.append(dict(model=model_name, sampler=sampler, scheduler=scheduler, steps=SAMPLER_STEPS, denoise=0.6, latent="image"))
    for model_name in ["sd1_eps", "sd1_v", "flow_shift3"]:
        for sampler in ["euler", "euler_ancestral", "dpmpp_2m", "dpmpp_2m_sde", "uni_pc", "lms", "deis"]:
            for start, last, full in [(3, 7, False), (3, 7, True), (0, 4, True), (5, 10000, False), (10, 12, False)]:
                jobs.append(dict(model=model_name, sampler=sampler, scheduler="normal", steps=10, denoise=1.0, latent="image", start_step=start, last_step=last, force_full_denoise=full))

    cases = []
    blob = bytearray()
    for job in jobs:
        latent = zero if job["latent"] == "zero" else image
        case = dict(job)
        try:
            sigmas, out = run_sampler(samplings, job["model"], job["sampler"], job["scheduler"], job["steps"], job["denoise"], latent,
                                      job.get("start_step"), job.get("last_step"), job.get("force_full_denoise", False))
        except Exception as e:  # recorded, so the Rust side can check it fails too
            case["error"] = f"{type(e).__name__}: {e}"
            cases.append(case)
            continue
        case["sigmas_bits"] = f32_bits(sigmas)
        case["offset"] = len(blob) // 4
        blob += struct.pack(f"<{out.numel()}f", *out.reshape(-1).tolist())
        cases.append(case)
    with open(os.path.join(out_dir, "samplers.bin"), "wb") as f:
        f.write(bytes(blob))
    write_json(out_dir, "samplers.json", {
        "shape": SAMPLER_SHAPE, "seed": SAMPLER_SEED, "image_latent_bits": f32_bits(image),
        "data_file": "samplers.bin", "data_sha256": hashlib.sha256(bytes(blob)).hexdigest(), "cases": cases,
    })


def comfy_commit(comfy_dir):
    try:
        return subprocess.run(["git", "-C", comfy_dir, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    except Exception:
        return os.environ.get("COMFYUI_COMMIT", "unknown")


def main():
    if sys.argv[1:] == ["--randn-child"]:
        json.dump(randn_cases(), sys.stdout)
        return
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    comfy_dir, out_dir = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    os.makedirs(out_dir, exist_ok=True)
    sys.path.insert(0, comfy_dir)
    import comfy.options

    comfy.options.enable_args_parsing()
    sys.argv = [sys.argv[0], "--cpu"]  # ComfyUI parses its CLI flags at import time
    import numpy
    import torch

    torch.set_num_threads(1)
    write_randn(out_dir)
    samplings = make_model_samplings()
    write_model_sampling(out_dir, samplings)
    write_schedules(out_dir, samplings)
    write_brownian(out_dir, samplings)
    write_samplers(out_dir, samplings)
    write_json(out_dir, "versions.json", {"torch": torch.__version__, "numpy": numpy.__version__, "comfyui_commit": comfy_commit(comfy_dir)})


if __name__ == "__main__":
    main()
