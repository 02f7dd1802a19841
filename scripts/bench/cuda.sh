#!/usr/bin/env bash
# Kiln on a CUDA machine: first parity, then `kiln bench` against PyTorch on the same GPU.
# Run from the repository root:
#
#     scripts/bench/cuda.sh KILN_BINARY COMFYUI_DIR OUT_DIR [PYTHON]
#
# KILN_BINARY is a `--features cuda` build (README, "CUDA"); PYTHON has torch with CUDA, numpy
# and pillow (default python3). The CUDA libraries the binary links (libcublas.so.13,
# libcurand.so.10, libcudart.so.13) are taken from PyTorch's `nvidia` wheels when the system
# has none.
#
# 1. Parity: a small txt2img workflow on the tiny generated checkpoints (fp16 SD1.5 and SDXL, fp8
#    Flux, scaled-fp8 SD3.5 — the dtypes that crash elsewhere) on the GPU and with --cpu, the two
#    images compared by PSNR (scripts/bench/psnr.py).
# 2. Speed: SD1.5 at 512² and SDXL at 1024², fp16 checkpoints, euler, CFG 7, each with
#    `--compare-torch` (ComfyUI's UNet and VAE in f16, bf16 and f32 on the same checkpoint).
#
# Writes OUT_DIR/{sd15,sdxl}-cuda.json and logs; a failed step (or a bench case running past
# KILN_CASE_TIMEOUT seconds) does not stop the next; the exit status says whether all passed.
set -u
kiln=$1
comfyui=$2
out=$3
python=${4:-python3}
here=$(dirname "$0")
mkdir -p "$out"

if ldd "$kiln" | grep -q 'not found'; then
    wheels=$("$python" -c 'import nvidia; print(list(nvidia.__path__)[0])' 2>/dev/null)
    libs=$(find ${wheels:+"$wheels"} /usr/local/cuda/lib64 -name 'lib*.so*' -printf '%h\n' 2>/dev/null |
        sort -u | paste -sd:)
    export LD_LIBRARY_PATH="$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv || true
ldd "$kiln" | grep -E 'cuda|cublas|curand|nvrtc' || true

work=${KILN_BENCH_DIR:-/tmp/kiln-bench}
status=0

tiny="$work/tiny"
if [ ! -d "$tiny/models" ]; then
    "$kiln" testgen "$tiny" >"$out/testgen.log" 2>&1 || { status=1; tail -5 "$out/testgen.log"; }
fi
# The tiny T5's tokenizer (its vocabulary is the tiny one), where the T5 loaders look.
mkdir -p "$tiny/models/text_encoders/t5_tokenizer"
cp "$here/../../crates/models/tests/fixtures/t5/tiny_tokenizer/tokenizer.json" \
    "$tiny/models/text_encoders/t5_tokenizer/"
for ckpt in v1-5-pruned-emaonly-fp16.safetensors sd_xl_base_1.0-fp16.safetensors \
    flux1-dev-checkpoint-fp8_e4m3fn.safetensors \
    sd3.5_large_incl_clips_t5xxl-fp8_e4m3fn_scaled.safetensors; do
    cfg=7.0
    case "$ckpt" in flux*) cfg=1.0 ;; esac
    cat >"$work/parity.json" <<JSON
{"4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "$ckpt"}},
 "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a glass bottle on a beach", "clip": ["4", 1]}},
 "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "text, watermark", "clip": ["4", 1]}},
 "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 128, "height": 128, "batch_size": 1}},
 "3": {"class_type": "KSampler", "inputs": {"seed": 7, "steps": 6, "cfg": $cfg, "sampler_name": "euler",
       "scheduler": "normal", "denoise": 1.0, "model": ["4", 0], "positive": ["6", 0],
       "negative": ["7", 0], "latent_image": ["5", 0]}},
 "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
 "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "parity", "images": ["8", 0]}}}
JSON
    for device in gpu cpu; do
        flag=""
        [ "$device" = cpu ] && flag="--cpu"
        rm -rf "$work/parity-$device"
        if ! timeout 300 "$kiln" run $flag --base-directory "$tiny" \
            --output-directory "$work/parity-$device" "$work/parity.json" \
            >"$out/parity-$device.log" 2>&1; then
            status=1
            echo "parity $ckpt on $device failed:"
            grep -v '^ \+[0-9]\+: \|^ \+at ' "$out/parity-$device.log" | tail -8
        fi
    done
    "$python" "$here/psnr.py" "$ckpt" "$work/parity-gpu" "$work/parity-cpu" || status=1
done

for case in sd15 sdxl; do
    steps=20
    [ "$case" = sdxl ] && steps=10
    echo "== kiln bench $case --steps $steps"
    if ! timeout "${KILN_CASE_TIMEOUT:-1800}" "$kiln" bench "$case" --steps "$steps" \
        --dir "$work" --compare-torch --torch-python "$python" --comfyui "$comfyui" \
        --out "$out/$case-cuda.json" >"$out/$case-cuda.log" 2>&1; then
        status=1
        echo "kiln bench $case failed:"
    fi
    grep -v WARNING "$out/$case-cuda.log"
done
exit $status
