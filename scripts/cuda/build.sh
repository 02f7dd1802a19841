#!/usr/bin/env bash
# Builds `kiln` with the CUDA backend (`--features cuda`), also on a machine without a GPU or a
# system CUDA toolkit. Run from the repository root:
#
#     scripts/cuda/build.sh [COMPUTE_CAP]       # e.g. 90 for H100/H200, 89 for Ada, 86, 80
#
# What the build needs and where it comes from:
# - nvcc, its NVVM and the CUDA headers: candle-kernels compiles its kernels to PTX (and its MoE
#   kernels to a static library) at build time. Taken from $CUDA_HOME when it has bin/nvcc,
#   else from NVIDIA's PyPI wheels (nvidia-cuda-nvcc, -nvvm, -crt, -runtime, -cccl, -cublas,
#   -curand, -nvrtc) installed into $KILN_CUDA_KIT (default ~/.cache/kiln-cuda-13.0) once.
#   Keep the toolkit no newer than the target machine's driver: PTX from a newer nvcc does
#   not load on an older driver. 13.0 matches driver 580.
# - libraries to link (cudarc links them dynamically): libcublas, libcublasLt, libcurand,
#   libnvrtc, libcudart from the toolkit, and libcuda from the driver — where no driver is
#   installed, a stub with the driver API's symbols (the real one is found at run time).
# No network is needed once the kit is there (the build uses no flash-attn crate, which would
# download at build time).
#
# The binary lands in target-cuda/release/kiln; at run time it needs the driver's libcuda.so.1
# and the five libraries above (`scripts/bench/cuda.sh` finds PyTorch's copies if the system
# has none).
set -euo pipefail
compute_cap=${1:-${CUDA_COMPUTE_CAP:-90}}
cuda_version=13.0

if [ -n "${CUDA_HOME:-}" ] && [ -x "$CUDA_HOME/bin/nvcc" ]; then
    kit=$CUDA_HOME
else
    prefix=${KILN_CUDA_KIT:-$HOME/.cache/kiln-cuda-$cuda_version}
    kit=$prefix/nvidia/cu13
    if [ ! -x "$kit/bin/nvcc" ]; then
        python3 -m pip install --quiet --target "$prefix" \
            "nvidia-cuda-nvcc==$cuda_version.*" "nvidia-nvvm==$cuda_version.*" \
            "nvidia-cuda-crt==$cuda_version.*" "nvidia-cuda-runtime==$cuda_version.*" \
            "nvidia-cuda-cccl==$cuda_version.*" "nvidia-cublas==$cuda_version.*" \
            "nvidia-cuda-nvrtc==$cuda_version.*" "nvidia-curand"
    fi
fi

# Unversioned names for the linker, and a libcuda stub when no driver is installed.
link=$(mktemp -d)
trap 'rm -rf "$link"' EXIT
for library in cublas cublasLt curand nvrtc cudart; do
    found=$(find "$kit/lib" "$kit/lib64" -maxdepth 1 -name "lib$library.so*" 2>/dev/null | sort | head -1)
    [ -n "$found" ] && ln -sf "$found" "$link/lib$library.so"
done
if ! ldconfig -p | grep -q 'libcuda.so.1'; then
    cudarc=$(find "${CARGO_HOME:-$HOME/.cargo}/registry/src" -maxdepth 1 -mindepth 1 -type d |
        while read -r registry; do ls -d "$registry"/cudarc-* 2>/dev/null; done | sort -V | tail -1)
    if [ -z "$cudarc" ]; then
        cargo fetch --locked
        cudarc=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-* | sort -V | tail -1)
    fi
    grep -oh 'pub unsafe fn cu[A-Za-z0-9_]*' "$cudarc/src/driver/sys/mod.rs" | awk '{print $4}' |
        sort -u | sed 's/.*/int &(void) { return 999; }/' >"$link/cuda_stub.c"
    cc -shared -fPIC -o "$link/libcuda.so" -Wl,-soname,libcuda.so.1 "$link/cuda_stub.c"
fi

export CUDA_HOME=$kit
export PATH=$kit/bin:$PATH
export CUDA_COMPUTE_CAP=$compute_cap
export CUDARC_CUDA_VERSION=${cuda_version/./0}0
export RUSTFLAGS="${RUSTFLAGS:-} -L native=$link"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target-cuda}
cargo build --release --locked -p kiln --features cuda
echo "built $CARGO_TARGET_DIR/release/kiln (CUDA $cuda_version, sm_$compute_cap)"
