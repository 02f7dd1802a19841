#!/usr/bin/env python3
"""Write checkpoint files with the real third-party writers (PyTorch's `torch.save`, the Python
`safetensors` package) so Kiln's tests read files it did not write itself.

Nothing here runs in CI. The files it writes are committed; each output folder has a README.md
(written by hand) describing them. Total size is kept under 1 MB.

Rerun (from the repository root; the venv is the one described in scripts/reference/README.md,
only `torch` and `safetensors` are needed):

    cargo build -p kiln && target/debug/kiln testgen /tmp/tg
    /work/venv-ref/bin/python scripts/reference/foreign_files.py \
        --testgen /tmp/tg \
        --weights-out crates/weights/tests/fixtures/foreign \
        --kiln-out crates/kiln/tests/fixtures/foreign

`--testgen` is a folder written by `kiln testgen`: the key *names* of the SD1.5 checkpoint and of
the Flux transformer are read from Kiln's own generated files (so they are not guessed here), but
every tensor is rebuilt with torch at even smaller widths and written by torch / safetensors.

What is written:

`--weights-out` (read by `crates/weights/tests/foreign_files.rs`):

* `fp8_codes.safetensors` (`safetensors.torch.save_file`): `e4m3fn` and `e5m2`, each the 256
  byte codes `0..=255` viewed as `torch.float8_e4m3fn` / `torch.float8_e5m2`.
* `fp8_codes.json`: torch's float32 value of every code of both formats (NaN as `"nan"`, ±inf as
  `"inf"`/`"-inf"`), and for `e4m3fn_from_f32` / `e5m2_from_f32` a list of f32 inputs (as bit
  patterns and as readable values) with the byte torch's `.to(float8_*)` gives for each.
* `torch_zip.pt` (`torch.save`, zip format) and `torch_legacy.pt` (the same object with
  `_use_new_zipfile_serialization=False`): `{"state_dict": OrderedDict(...), "global_step": 10}`
  with one tensor per dtype, a transposed view, a strided column view, two tensors sharing one
  storage at different offsets, and a 0-d tensor. The legacy file leaves out the fp8 tensors:
  torch writes them, but as `UntypedStorage`, which its own legacy loader cannot read back.
  `torch_zip_no_fp8.pt` is the zip file without the fp8 tensors (torch stores those through
  `_rebuild_tensor_v3` and `torch.storage.UntypedStorage`, unlike every other dtype), so the
  rest of the zip reading is checked on its own. `torch_expected.json` lists, per file, every
  tensor's name, dtype, shape and values as f32 (row-major), the tensors left out and why, and
  the metadata Kiln should report.
* `malicious.pt`: a genuine `torch.save` zip whose `data.pkl` reduces to
  `os.system("touch <MALICIOUS_MARKER>")` (an object with a custom `__reduce__`). Loading it with
  pickle would create the marker file; a safe reader must refuse it.

`--kiln-out` (read by `crates/kiln/tests/foreign_files.rs`):

* `sd15_tiny.ckpt` (`torch.save` zip of `{"state_dict": ..., "global_step": ...}`) and
  `sd15_tiny.safetensors` (`safetensors.torch.save_file` with `modelspec.*` metadata): every key
  of a real SD1.5 single-file checkpoint (UNet under `model.diffusion_model.`, CLIP-L under
  `cond_stage_model.transformer.text_model.` with 12 layers, VAE under `first_stage_model.`, the
  DDPM schedule buffers and the junk real files carry: `model_ema.decay`,
  `model_ema.num_updates`, `...embeddings.position_ids`), real ranks, float16, but widths shrunk
  so both files fit: UNet model_channels `SD_UNET_CHANNELS` (channel_mult 1,2,4,4), CLIP hidden
  `SD_CLIP_HIDDEN` (= the UNet's cross-attention context), vocabulary `SD_CLIP_VOCAB`, 77
  positions, VAE ch `SD_VAE_CHANNELS`.
* `flux1_dev_tiny_fp8_e4m3fn.safetensors`: every key of a BFL Flux.1-dev transformer (19 double,
  38 single blocks, guidance_in), hidden `FLUX_HIDDEN`, `FLUX_HEADS` head(s), mlp ratio 4, 16
  latent channels (img_in 64), T5 context 96 and CLIP pooled 32 as Kiln's generator has them;
  2-D weights cast with `.to(torch.float8_e4m3fn)`, biases and norm scales bfloat16.
* `layouts.json`: the tensor counts and widths used, for the record.

Why the widths are so narrow: Kiln's generator (UNet 32, CLIP 32, VAE 32) gives a 31 MB SD1.5
file, and a `torch.save` of the 1145 SD1.5 tensors costs about 370 KB of pickle and zip records
before any tensor data. Width 1 is still structurally consistent: Kiln's detection reads only
names, ranks and the ratios between shapes.

The encoder fixtures depend on the torch version: torch with PR #178817 (in 2.15, which wrote
the committed files) saturates e4m3fn overflow and ±inf to ±448; earlier releases gave NaN.

Names, dtypes, shapes and values are deterministic (seeded `torch.Generator`); some bytes are
not: the legacy format keys storages by their memory address, and `safetensors` writes the
`__metadata__` entries in hash-map order, so `torch_legacy.pt` and `sd15_tiny.safetensors` can
differ byte-wise between runs while reading back the same.
"""

import argparse
import io
import json
import math
import os
import re
import struct
import sys
import zipfile
from collections import OrderedDict

import torch
from safetensors import safe_open
from safetensors.torch import save_file

# The file the malicious pickle would create; the Rust test checks it never appears.
MALICIOUS_MARKER = "/tmp/kiln-foreign-files-malicious-marker"

# Widths of the shrunken real-layout checkpoints (Kiln's generator uses 32/32/32 and 64/2, which
# would make each file tens of MB; see the module docstring).
SD_UNET_CHANNELS = 1
SD_CLIP_HIDDEN = 8
SD_CLIP_VOCAB = 64
SD_VAE_CHANNELS = 1
FLUX_HIDDEN = 8
FLUX_HEADS = 1

# Widths of the files in `kiln testgen`'s output that the key lists come from.
GEN_SD_WIDTH = 32
GEN_FLUX_HIDDEN = 64
GEN_FLUX_HEADS = 2

SD15_SOURCE = "models/checkpoints/v1-5-pruned-emaonly-fp16.safetensors"
FLUX_SOURCE = "models/diffusion_models/flux1-dev-fp8_e4m3fn.safetensors"

TOTAL_SIZE_LIMIT = 1_000_000


# --------------------------------------------------------------------------------------------
# JSON helpers
# --------------------------------------------------------------------------------------------

def json_float(value):
    """An f32 value as JSON: a number, or "nan" / "inf" / "-inf"."""
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return value


def f32_bits(value):
    return struct.unpack("<I", struct.pack("<f", value))[0]


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=1, sort_keys=False)
        f.write("\n")


# --------------------------------------------------------------------------------------------
# a. fp8 codes
# --------------------------------------------------------------------------------------------

def fp8_inputs():
    """f32 inputs for the encoders: exact codes, ties (both parities), subnormals, the overflow
    boundaries of both formats, infinities, NaN, signed zero, and seeded random values."""
    specials = [
        0.0, -0.0, 1.0, -1.0, 0.5, 2.0, 3.0,
        # e4m3fn ties at 1: 1.0625 halfway 1/1.125 (to even 1), 1.1875 halfway 1.125/1.25 (to 1.25)
        1.0625, 1.1875, -1.0625, -1.1875,
        # e5m2 ties at 1: 1.125 halfway 1/1.25, 1.375 halfway 1.25/1.5
        1.125, 1.375, -1.375,
        # just off the ties
        float(torch.tensor(1.0625).nextafter(torch.tensor(2.0))),
        float(torch.tensor(1.0625).nextafter(torch.tensor(0.0))),
        # e4m3fn subnormals: 2^-9 is the smallest, 7 * 2^-9 the largest, 2^-6 the smallest normal
        2.0 ** -9, 2.0 ** -10, 1.5 * 2.0 ** -9, 2.5 * 2.0 ** -9, 3.0 * 2.0 ** -9, 7.0 * 2.0 ** -9,
        7.5 * 2.0 ** -9, 2.0 ** -6, 0.75 * 2.0 ** -9, 0.25 * 2.0 ** -9, -3.5 * 2.0 ** -9,
        # e5m2 subnormals: 2^-16 smallest, 3 * 2^-16 largest, 2^-14 smallest normal
        2.0 ** -16, 2.0 ** -17, 1.5 * 2.0 ** -16, 2.5 * 2.0 ** -16, 3.0 * 2.0 ** -16,
        3.5 * 2.0 ** -16, 2.0 ** -14, -2.0 ** -17,
        # e4m3fn top: 448 max, 464 halfway to the (NaN) 480 slot, 480 beyond
        416.0, 432.0, 440.0, 448.0, 449.0, 463.0, 464.0, 465.0, 480.0, 500.0, 1000.0,
        -448.0, -464.0, -465.0, -480.0,
        # e5m2 top: 57344 max, 61440 halfway to 65536 (inf)
        49152.0, 53248.0, 57344.0, 60000.0, 61439.0, 61440.0, 61441.0, 65504.0, 65536.0,
        1e6, -57344.0, -61440.0,
        # far outside / tiny
        3.4028234663852886e38, -3.4028234663852886e38, 1e-10, -1e-10, 1e-45, 1e-30,
        float("inf"), float("-inf"), float("nan"), -float("nan"),
        0.1, 0.2, 0.3, -0.7, 1.0 / 3.0, 100.0, 240.0, 256.0,
    ]
    gen = torch.Generator().manual_seed(8)
    random = (torch.randn(96, generator=gen) * torch.logspace(-4, 3, 96)).tolist()
    values = torch.tensor(specials + random, dtype=torch.float32)
    return values


def write_fp8(out):
    # Separate storages: safetensors refuses tensors that share memory.
    e4m3fn = torch.arange(256, dtype=torch.uint8).view(torch.float8_e4m3fn)
    e5m2 = torch.arange(256, dtype=torch.uint8).view(torch.float8_e5m2)
    save_file({"e4m3fn": e4m3fn, "e5m2": e5m2}, os.path.join(out, "fp8_codes.safetensors"))

    inputs = fp8_inputs()
    fixture = {
        "generator": "scripts/reference/foreign_files.py",
        "torch_version": torch.__version__,
        "e4m3fn": [json_float(v) for v in e4m3fn.to(torch.float32).tolist()],
        "e5m2": [json_float(v) for v in e5m2.to(torch.float32).tolist()],
    }
    for name, dtype in [("e4m3fn", torch.float8_e4m3fn), ("e5m2", torch.float8_e5m2)]:
        fixture[f"{name}_from_f32"] = {
            "input_bits": [f32_bits(v) for v in inputs.tolist()],
            "input": [json_float(v) for v in inputs.tolist()],
            "bytes": inputs.to(dtype).view(torch.uint8).tolist(),
        }
    write_json(os.path.join(out, "fp8_codes.json"), fixture)


# --------------------------------------------------------------------------------------------
# b. torch.save zip and legacy
# --------------------------------------------------------------------------------------------

def torch_state_dict():
    """One tensor per dtype plus the view cases. Values are exactly representable in their dtype
    and in f32 so the expected f32 lists are exact."""
    sd = OrderedDict()
    sd["float32"] = torch.tensor([[0.5, -1.25, 3.0], [1e-3, -7.5, 65536.0]], dtype=torch.float32)
    sd["float16"] = torch.tensor([[1.0, -2.0], [0.25, 8.0], [6.1035156e-05, 65504.0]],
                                 dtype=torch.float16)
    sd["bfloat16"] = torch.tensor([1.0, -3.5, 1.0e20, -0.0078125], dtype=torch.bfloat16)
    sd["float8_e4m3fn"] = torch.tensor([[0.0, 1.0, -1.5, 448.0], [0.001953125, -0.0, 2.25, -96.0]],
                                       dtype=torch.float32).to(torch.float8_e4m3fn)
    sd["float8_e5m2"] = torch.tensor([[0.0, 1.0, -1.5, 57344.0], [2.0 ** -16, -0.0, 2.5, -96.0]],
                                     dtype=torch.float32).to(torch.float8_e5m2)
    sd["int64"] = torch.tensor([0, -1, 16777216, 42], dtype=torch.int64)
    sd["int32"] = torch.tensor([[7, -8], [2147483520, -2147483648]], dtype=torch.int32)
    sd["uint8"] = torch.tensor([0, 1, 127, 128, 255], dtype=torch.uint8)
    sd["bool"] = torch.tensor([[True, False, True], [False, False, True]], dtype=torch.bool)
    # A transposed view: its storage is the contiguous (3, 4) matrix, strides (1, 4).
    sd["transposed"] = torch.arange(12, dtype=torch.float16).reshape(3, 4).t()
    # Two tensors of one storage; `shared.b` starts 4 elements in and is itself 2-D.
    base = torch.arange(10, dtype=torch.float32) * 0.5
    sd["shared.a"] = base[:4]
    sd["shared.b"] = base[4:].view(2, 3)
    # A column of a matrix: offset 1, stride 4, not contiguous.
    sd["column"] = (torch.arange(12, dtype=torch.bfloat16).reshape(3, 4) - 5.0)[:, 1]
    sd["scalar"] = torch.tensor(3.5, dtype=torch.float32)
    return sd


def tensor_record(name, tensor):
    return {
        "name": name,
        "dtype": str(tensor.dtype).removeprefix("torch."),
        "shape": list(tensor.shape),
        "values": [json_float(v) for v in tensor.to(torch.float32).reshape(-1).tolist()],
    }


def write_torch(out):
    sd = torch_state_dict()
    assert not sd["transposed"].is_contiguous() and not sd["column"].is_contiguous()
    assert sd["shared.a"].untyped_storage().data_ptr() == sd["shared.b"].untyped_storage().data_ptr()
    checkpoint = {"state_dict": sd, "global_step": 10}
    expected = {"generator": "scripts/reference/foreign_files.py", "torch_version": torch.__version__}
    files = [("torch_zip.pt", True, True), ("torch_zip_no_fp8.pt", True, False),
             ("torch_legacy.pt", False, True)]
    for file_name, new_zip, with_fp8 in files:
        saved, skipped = OrderedDict(), []
        for name, tensor in sd.items():
            if not with_fp8 and tensor.dtype in (torch.float8_e4m3fn, torch.float8_e5m2):
                continue
            # The legacy format writes fp8 storages as `UntypedStorage`, which torch's own
            # legacy loader then cannot read back: a dtype counts as savable only if it
            # round-trips through torch itself.
            buffer = io.BytesIO()
            try:
                torch.save(tensor, buffer, _use_new_zipfile_serialization=new_zip)
                buffer.seek(0)
                if not torch.equal(torch.load(buffer, weights_only=True), tensor):
                    raise ValueError("torch.load gives different values back")
                saved[name] = tensor
            except Exception as error:
                skipped.append({"name": name, "dtype": str(tensor.dtype).removeprefix("torch."),
                                "error": f"{type(error).__name__}: {error}"})
        path = os.path.join(out, file_name)
        torch.save({"state_dict": saved, "global_step": checkpoint["global_step"]}, path,
                   _use_new_zipfile_serialization=new_zip)
        # The reference reader must give back exactly what was saved.
        loaded = torch.load(path, weights_only=True)
        assert loaded["global_step"] == 10
        for name, tensor in saved.items():
            assert torch.equal(loaded["state_dict"][name], tensor), name
        expected[file_name] = {
            "format": "pytorch-zip" if new_zip else "pytorch-legacy",
            "metadata": {"global_step": "10"},
            "skipped": skipped,
            "tensors": [tensor_record(n, t) for n, t in sorted(saved.items())],
        }
    write_json(os.path.join(out, "torch_expected.json"), expected)


# --------------------------------------------------------------------------------------------
# c. malicious pickle
# --------------------------------------------------------------------------------------------

class TouchMarker:
    """Unpickling this calls `os.system("touch MALICIOUS_MARKER")`."""

    def __reduce__(self):
        return (os.system, (f"touch {MALICIOUS_MARKER}",))


def write_malicious(out):
    path = os.path.join(out, "malicious.pt")
    # Real tensors first, so a reader cannot refuse the file merely for being odd.
    state = OrderedDict([("weight", torch.ones(2, 2)), ("payload", TouchMarker())])
    torch.save({"state_dict": state}, path)
    with zipfile.ZipFile(path) as archive:
        pickle_name = next(n for n in archive.namelist() if n.endswith("/data.pkl"))
        data = archive.read(pickle_name)
    assert b"system" in data, "the payload global is not in data.pkl"
    assert not os.path.exists(MALICIOUS_MARKER)
    # torch's own safe loader must refuse it too (and never run it).
    try:
        torch.load(path, weights_only=True)
    except Exception:
        pass
    else:
        raise AssertionError("torch.load(weights_only=True) accepted malicious.pt")
    assert not os.path.exists(MALICIOUS_MARKER)


# --------------------------------------------------------------------------------------------
# d. real-layout checkpoints
# --------------------------------------------------------------------------------------------

def read_layout(path):
    """(name, shape, dtype-string) of every tensor of a safetensors file, in file order."""
    with safe_open(path, "pt") as f:
        return [(k, list(f.get_slice(k).get_shape()), f.get_slice(k).get_dtype()) for k in f.keys()]


ST_DTYPES = {"F16": torch.float16, "F32": torch.float32, "BF16": torch.bfloat16,
             "I64": torch.int64, "I32": torch.int32, "F8_E4M3": torch.float8_e4m3fn}


def sd15_shape(name, shape):
    """The generator's shape at width 32 rescaled to this script's widths. Every width-derived
    dimension is a multiple of 32 there (32·{1,2,3,4,6,8,16,32}); the others are fixed by the
    architecture (3 RGB, 4/8 latent, 1/3 kernels, 77 positions, 1000 timesteps)."""
    if name.startswith("model.diffusion_model."):
        width = SD_UNET_CHANNELS
        # The cross-attention context is the text encoder's width, not the UNet's.
        if re.search(r"attn2\.to_[kv]\.weight$", name):
            rows, context = shape
            assert context == GEN_SD_WIDTH
            return [rows * width // GEN_SD_WIDTH, SD_CLIP_HIDDEN]
    elif name.startswith("cond_stage_model."):
        width = SD_CLIP_HIDDEN
        if name.endswith("token_embedding.weight"):
            return [SD_CLIP_VOCAB, SD_CLIP_HIDDEN]
    elif name.startswith("first_stage_model."):
        width = SD_VAE_CHANNELS
    else:
        return shape
    fixed = {1, 3, 4, 8, 77}
    new = []
    for dim in shape:
        if dim in fixed:
            new.append(dim)
        elif dim % GEN_SD_WIDTH == 0:
            new.append(dim * width // GEN_SD_WIDTH)
        else:
            raise ValueError(f"{name}: unexpected dimension {dim} in {shape}")
    return new


def ddpm_schedule():
    """The scaled-linear schedule SD1.5 checkpoints store as buffers (LDM `register_schedule`)."""
    steps = 1000
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, steps, dtype=torch.float64) ** 2
    alphas = 1.0 - betas
    cumprod = torch.cumprod(alphas, 0)
    prev = torch.cat([torch.ones(1, dtype=torch.float64), cumprod[:-1]])
    variance = betas * (1.0 - prev) / (1.0 - cumprod)
    return {
        "betas": betas,
        "alphas_cumprod": cumprod,
        "alphas_cumprod_prev": prev,
        "sqrt_alphas_cumprod": cumprod.sqrt(),
        "sqrt_one_minus_alphas_cumprod": (1.0 - cumprod).sqrt(),
        "log_one_minus_alphas_cumprod": (1.0 - cumprod).log(),
        "sqrt_recip_alphas_cumprod": (1.0 / cumprod).sqrt(),
        "sqrt_recipm1_alphas_cumprod": (1.0 / cumprod - 1.0).sqrt(),
        "posterior_variance": variance,
        "posterior_log_variance_clipped": variance.clamp(min=1e-20).log(),
        "posterior_mean_coef1": betas * prev.sqrt() / (1.0 - cumprod),
        "posterior_mean_coef2": (1.0 - prev) * alphas.sqrt() / (1.0 - cumprod),
    }


def build_sd15(testgen):
    layout = read_layout(os.path.join(testgen, SD15_SOURCE))
    schedule = ddpm_schedule()
    gen = torch.Generator().manual_seed(15)
    sd = OrderedDict()
    for name, shape, dtype in layout:
        dtype = ST_DTYPES[dtype]
        new_shape = sd15_shape(name, shape)
        if name in schedule:
            tensor = schedule[name].to(dtype)
        elif name.endswith("position_ids"):
            tensor = torch.arange(new_shape[-1], dtype=dtype).reshape(new_shape)
        elif name == "model_ema.decay":
            tensor = torch.tensor(0.9999, dtype=dtype)
        elif name == "model_ema.num_updates":
            tensor = torch.tensor(0, dtype=dtype)
        elif name.endswith(".bias") or len(new_shape) == 1:
            tensor = (torch.randn(new_shape, generator=gen) * 0.01).to(dtype)
        else:
            tensor = (torch.randn(new_shape, generator=gen) * 0.05).to(dtype)
        sd[name] = tensor
    # Consistency checks on the rescaled structure.
    unet = "model.diffusion_model."
    assert sd[unet + "input_blocks.0.0.weight"].shape == (SD_UNET_CHANNELS, 4, 3, 3)
    assert sd[unet + "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"].shape[1] == \
        sd["cond_stage_model.transformer.text_model.final_layer_norm.weight"].shape[0]
    assert sd[unet + "middle_block.0.out_layers.3.weight"].shape[0] == 4 * SD_UNET_CHANNELS
    clip_layers = {int(m.group(1)) for n in sd
                   if (m := re.search(r"text_model\.encoder\.layers\.(\d+)\.", n))}
    assert clip_layers == set(range(12)), clip_layers
    assert "cond_stage_model.transformer.text_model.embeddings.position_ids" in sd
    assert "model_ema.decay" in sd and "model_ema.num_updates" in sd
    return sd


def flux_shape(name, hidden, heads):
    """The shape of a BFL Flux.1-dev tensor at `hidden` width with `heads` heads (mlp ratio 4,
    16 latent channels patchified 2×2, 256-wide timestep embedding, T5 context 96 and CLIP
    pooled 32 as in Kiln's generator)."""
    head_dim, mlp = hidden // heads, 4 * hidden
    patch_in, patch_out, t_embed, context, pooled = 64, 64, 256, 96, 32
    rules = [
        (r"double_blocks\.\d+\.(img|txt)_attn\.norm\.(query|key)_norm\.scale", [head_dim]),
        (r"double_blocks\.\d+\.(img|txt)_attn\.qkv\.weight", [3 * hidden, hidden]),
        (r"double_blocks\.\d+\.(img|txt)_attn\.qkv\.bias", [3 * hidden]),
        (r"double_blocks\.\d+\.(img|txt)_attn\.proj\.weight", [hidden, hidden]),
        (r"double_blocks\.\d+\.(img|txt)_attn\.proj\.bias", [hidden]),
        (r"double_blocks\.\d+\.(img|txt)_mlp\.0\.weight", [mlp, hidden]),
        (r"double_blocks\.\d+\.(img|txt)_mlp\.0\.bias", [mlp]),
        (r"double_blocks\.\d+\.(img|txt)_mlp\.2\.weight", [hidden, mlp]),
        (r"double_blocks\.\d+\.(img|txt)_mlp\.2\.bias", [hidden]),
        (r"double_blocks\.\d+\.(img|txt)_mod\.lin\.weight", [6 * hidden, hidden]),
        (r"double_blocks\.\d+\.(img|txt)_mod\.lin\.bias", [6 * hidden]),
        (r"single_blocks\.\d+\.linear1\.weight", [3 * hidden + mlp, hidden]),
        (r"single_blocks\.\d+\.linear1\.bias", [3 * hidden + mlp]),
        (r"single_blocks\.\d+\.linear2\.weight", [hidden, hidden + mlp]),
        (r"single_blocks\.\d+\.linear2\.bias", [hidden]),
        (r"single_blocks\.\d+\.modulation\.lin\.weight", [3 * hidden, hidden]),
        (r"single_blocks\.\d+\.modulation\.lin\.bias", [3 * hidden]),
        (r"single_blocks\.\d+\.norm\.(query|key)_norm\.scale", [head_dim]),
        (r"final_layer\.adaLN_modulation\.1\.weight", [2 * hidden, hidden]),
        (r"final_layer\.adaLN_modulation\.1\.bias", [2 * hidden]),
        (r"final_layer\.linear\.weight", [patch_out, hidden]),
        (r"final_layer\.linear\.bias", [patch_out]),
        (r"(time|guidance)_in\.in_layer\.weight", [hidden, t_embed]),
        (r"vector_in\.in_layer\.weight", [hidden, pooled]),
        (r"(time|guidance|vector)_in\.(in|out)_layer\.bias", [hidden]),
        (r"(time|guidance|vector)_in\.out_layer\.weight", [hidden, hidden]),
        (r"img_in\.weight", [hidden, patch_in]),
        (r"txt_in\.weight", [hidden, context]),
        (r"(img|txt)_in\.bias", [hidden]),
    ]
    for pattern, shape in rules:
        if re.fullmatch(pattern, name):
            return shape
    raise ValueError(f"no Flux shape rule for {name}")


def build_flux(testgen):
    layout = read_layout(os.path.join(testgen, FLUX_SOURCE))
    gen = torch.Generator().manual_seed(1)
    sd = OrderedDict()
    for name, shape, _ in layout:
        # The rules must reproduce the generator's own shapes before they are trusted to shrink.
        assert flux_shape(name, GEN_FLUX_HIDDEN, GEN_FLUX_HEADS) == shape, (name, shape)
        new_shape = flux_shape(name, FLUX_HIDDEN, FLUX_HEADS)
        if len(new_shape) == 2:
            sd[name] = (torch.randn(new_shape, generator=gen) * 0.05).to(torch.float8_e4m3fn)
        elif name.endswith(".scale"):
            sd[name] = (1.0 + torch.randn(new_shape, generator=gen) * 0.1).to(torch.bfloat16)
        else:
            sd[name] = (torch.randn(new_shape, generator=gen) * 0.01).to(torch.bfloat16)
    blocks = {m.group(0) for n in sd if (m := re.match(r"(double|single)_blocks\.\d+", n))}
    assert sum(b.startswith("double") for b in blocks) == 19
    assert sum(b.startswith("single") for b in blocks) == 38
    assert "guidance_in.in_layer.weight" in sd
    return sd


def write_real_layouts(out, testgen):
    sd15 = build_sd15(testgen)
    torch.save({"state_dict": sd15, "global_step": 840000}, os.path.join(out, "sd15_tiny.ckpt"))
    save_file(
        dict(sd15),
        os.path.join(out, "sd15_tiny.safetensors"),
        metadata={
            "modelspec.sai_model_spec": "1.0.0",
            "modelspec.architecture": "stable-diffusion-v1",
            "modelspec.implementation": "https://github.com/Stability-AI/generative-models",
            "modelspec.title": "Kiln foreign-file fixture (tiny SD1.5 layout)",
            "format": "pt",
        },
    )
    flux = build_flux(testgen)
    save_file(dict(flux), os.path.join(out, "flux1_dev_tiny_fp8_e4m3fn.safetensors"),
              metadata={"format": "pt"})
    summary = {
        "generator": "scripts/reference/foreign_files.py",
        "torch_version": torch.__version__,
        "sd15_tiny": {"tensors": len(sd15), "unet_channels": SD_UNET_CHANNELS,
                      "clip_hidden": SD_CLIP_HIDDEN, "clip_vocab": SD_CLIP_VOCAB,
                      "vae_channels": SD_VAE_CHANNELS},
        "flux1_dev_tiny_fp8_e4m3fn": {"tensors": len(flux), "hidden": FLUX_HIDDEN,
                                      "heads": FLUX_HEADS},
    }
    write_json(os.path.join(out, "layouts.json"), summary)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--testgen", required=True, help="folder written by `kiln testgen`")
    parser.add_argument("--weights-out", required=True)
    parser.add_argument("--kiln-out", required=True)
    args = parser.parse_args()
    for out in (args.weights_out, args.kiln_out):
        os.makedirs(out, exist_ok=True)
    if os.path.exists(MALICIOUS_MARKER):
        os.remove(MALICIOUS_MARKER)

    write_fp8(args.weights_out)
    write_torch(args.weights_out)
    write_malicious(args.weights_out)
    write_real_layouts(args.kiln_out, args.testgen)

    total = 0
    for out in (args.weights_out, args.kiln_out):
        for name in sorted(os.listdir(out)):
            size = os.path.getsize(os.path.join(out, name))
            total += size
            print(f"{size:>9}  {os.path.join(out, name)}")
    print(f"{total:>9}  total")
    if total > TOTAL_SIZE_LIMIT:
        sys.exit(f"fixtures total {total} bytes, over the {TOTAL_SIZE_LIMIT}-byte budget")


if __name__ == "__main__":
    main()
