//! Capability profiles: what one device can hold, cast and compute in, as candle 0.11.1 really
//! implements it, plus its memory. The planner decides only from a profile, so a simulated profile
//! plans exactly like the real device would.
//!
//! # What was verified, and where (candle-core 0.11.1 as vendored in `~/.cargo/registry`, plus
//! `candle-kernels`/`candle-metal-kernels` from huggingface/candle at the 0.11 line)
//!
//! * **dtypes**: `candle-core/src/dtype.rs` has `U8 U32 I16 I32 I64 BF16 F16 F32 F64 F8E4M3` and
//!   the dummy `F6E2M3 F6E3M2 F4 F8E8M0`. There is **no `F8E5M2` anywhere**: e5m2 weights can only
//!   be held as raw `U8` bytes and decoded by a lookup table.
//! * **CPU matmul** (`cpu_backend/mod.rs`, `impl Map2 for MatMul`, gemm path): only F16, F32, F64
//!   reach gemm; `CpuStorage::matmul` special-cases BF16 by widening both operands to F32,
//!   multiplying and narrowing back (works, costs two full copies per call). F8E4M3 matmul is an
//!   `UnsupportedDTypeForOp` error.
//! * **CPU conv2d** (`cpu_backend/conv2d.rs`): every path (1×1, tiled im2col, full im2col) calls
//!   `MatMul::f` directly, bypassing the BF16 special case, so **BF16 conv2d fails on CPU**; F16,
//!   F32, F64 work. F8E4M3 conv fails the same way.
//! * **CPU casts** (`CpuStorage::to_dtype`): every pair among U8/U32/I16/I32/I64/BF16/F16/F32/F64/
//!   F8E4M3, so the CPU can hold F8E4M3 and widen it on the spot. `index_select` accepts U8, U32
//!   and I64 ids for every value dtype.
//! * **Metal casts** (`metal_backend/mod.rs`, `to_dtype`): kernels only among U8, U32, I64, F16,
//!   BF16, F32; anything else bails ("Metal contiguous to_dtype … not implemented"). An F8E4M3
//!   buffer can be uploaded (`storage_from_cpu_storage`) but no kernel reads it: **Metal cannot
//!   hold F8E4M3** in any useful sense (nor F64, I16, I32). Matmul (`call_mlx_gemm`): F32, F16,
//!   BF16. Conv2d im2col: F32, F16, BF16, U8, U32. `index_select`: U8/U32/I64 ids over U8, U32,
//!   I64, F16, BF16, F32 values. BF16 kernels are compiled only under `__HAVE_BFLOAT__`
//!   (`metal_src/cast.metal`), i.e. Metal 3.1 = **macOS 14+**; on macOS 13 there is no BF16.
//!   `candle-nn` has a fused Metal SDPA (`ops.rs`, head dims 32…512).
//! * **CUDA** (`cuda_backend/mod.rs`, `candle-kernels/src/cast.cu`): the F8E4M3 and all BF16
//!   cast kernels are compiled only for `__CUDA_ARCH__ >= 800`; below that only BF16↔F32/F16/U8
//!   casts exist (CUDA ≥ 11 path), so **F8E4M3 needs sm80+** and BF16 compute needs sm80+
//!   (cuBLAS BF16 gemm). Matmul: BF16, F16, F32, F64 (no F8E4M3: candle has **no fp8 gemm**,
//!   even on sm89/sm90 whose tensor cores could); conv2d rejects F8E4M3. `index_select` takes
//!   U8/U32/I64 ids. Flash attention (`candle-flash-attn`) needs sm80+.
//! * **Quantised (GGUF)** (`quantized/{cuda,metal}.rs`): CPU and Metal take every GGML type; the
//!   CUDA dequantisers cover F32/F16/BF16, Q4_0…Q8_0 and the K-quants but **not Q8_1**.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use candle_core::DType;
use kiln_weights::{GgufType, StorageDType};
use serde::{Serialize, Serializer};

/// Which candle backend a profile describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendKind {
    /// The host CPU (memory is system RAM).
    Cpu,
    /// An NVIDIA GPU through candle's CUDA backend.
    Cuda,
    /// An Apple GPU through candle's Metal backend (unified memory).
    Metal,
}

impl BackendKind {
    /// Lower-case name (`cpu`, `cuda`, `metal`).
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Cpu => "cpu",
            BackendKind::Cuda => "cuda",
            BackendKind::Metal => "metal",
        }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A family of operations whose supported dtypes differ between backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OpFamily {
    /// Matrix multiplication (linear layers, attention scores).
    Matmul,
    /// 2-D convolution (UNet/VAE resnets, SD3 patch embedding).
    Conv,
    /// Softmax (attention).
    Softmax,
    /// Group/layer/RMS normalisation.
    Norm,
    /// Element-wise arithmetic and activations.
    Elementwise,
}

impl OpFamily {
    /// Every family, in declaration order.
    pub const ALL: [OpFamily; 5] = [
        OpFamily::Matmul,
        OpFamily::Conv,
        OpFamily::Softmax,
        OpFamily::Norm,
        OpFamily::Elementwise,
    ];
}

/// An NVIDIA compute capability (`sm86` = 8.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CudaCapability {
    /// Major version (8 for Ampere/Ada, 9 for Hopper).
    pub major: u32,
    /// Minor version.
    pub minor: u32,
}

impl CudaCapability {
    /// `CudaCapability { major, minor }`.
    pub const fn new(major: u32, minor: u32) -> Self {
        CudaCapability { major, minor }
    }

    /// True when `self >= major.minor`.
    pub fn at_least(self, major: u32, minor: u32) -> bool {
        self >= CudaCapability::new(major, minor)
    }
}

impl fmt::Display for CudaCapability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sm{}{}", self.major, self.minor)
    }
}

impl Serialize for CudaCapability {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// A macOS version (`14.5`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MacOsVersion {
    /// Major version.
    pub major: u32,
    /// Minor version.
    pub minor: u32,
}

impl MacOsVersion {
    /// `MacOsVersion { major, minor }`.
    pub const fn new(major: u32, minor: u32) -> Self {
        MacOsVersion { major, minor }
    }

    /// Parses `"14.5"`, `"14.5.1"` or `"13"`; `None` for anything else.
    pub fn parse(text: &str) -> Option<Self> {
        let mut parts = text.trim().split('.');
        let major = parts.next()?.parse().ok()?;
        let minor = match parts.next() {
            Some(minor) => minor.parse().ok()?,
            None => 0,
        };
        Some(MacOsVersion { major, minor })
    }

    /// True when `self >= major.minor`.
    pub fn at_least(self, major: u32, minor: u32) -> bool {
        self >= MacOsVersion::new(major, minor)
    }
}

impl fmt::Display for MacOsVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

impl Serialize for MacOsVersion {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Everything the planner needs to know about one device.
///
/// Build one with [`CapabilityProfile::cpu`], [`CapabilityProfile::metal`] or
/// [`CapabilityProfile::cuda`] (which encode candle's limits, see the module docs), or take a
/// named one from [`crate::simulated`].
#[derive(Debug, Clone, Serialize)]
pub struct CapabilityProfile {
    /// Registry name (`cpu`, `metal-m1`, `cuda-sm86`) or `host`/`cuda:0`/`metal` when probed.
    pub name: String,
    /// The candle backend.
    pub backend: BackendKind,
    /// One line for humans.
    pub description: String,
    /// Storage dtypes a device tensor may have *and be widened from on the device*. A dtype that
    /// can be uploaded but that no kernel reads (F8E4M3 on Metal) is not held.
    pub holds: BTreeSet<StorageDType>,
    /// Compute dtypes per op family.
    #[serde(serialize_with = "serialize_computes")]
    pub computes: BTreeMap<OpFamily, Vec<DType>>,
    /// `(from, to)` conversions that run on the device.
    pub casts: BTreeSet<(StorageDType, StorageDType)>,
    /// GGML types candle's quantised matmul handles on this device.
    #[serde(serialize_with = "serialize_gguf")]
    pub quantized: BTreeSet<GgufType>,
    /// The hardware multiplies fp8 directly (sm89+). Candle has no fp8 gemm, so this is reported
    /// but never used as a compute dtype.
    pub fp8_matmul: bool,
    /// A fused SDPA-like attention kernel exists (Metal SDPA in candle-nn; flash-attn on sm80+;
    /// kiln-kernels' tiled attention on the CPU).
    pub fused_attention: bool,
    /// Flash attention (`candle-flash-attn`, CUDA sm80+).
    pub flash_attention: bool,
    /// CPU and GPU share one memory pool (Apple silicon); "VRAM" is system RAM.
    pub unified_memory: bool,
    /// Total device memory in bytes (system RAM for CPU and Metal).
    pub total_memory: u64,
    /// Free device memory in bytes (available RAM for CPU and Metal).
    pub free_memory: u64,
    /// macOS version, for Metal profiles.
    pub macos: Option<MacOsVersion>,
    /// CUDA compute capability, for CUDA profiles.
    pub cuda_capability: Option<CudaCapability>,
    /// CPU SIMD features found on the host (`avx2`, `avx512f`, `avx512_bf16`, …). Reported for
    /// `kiln doctor`; only `avx512_bf16` changes plans, through [`Self::fast_bf16`].
    pub cpu_features: Vec<String>,
    /// The CPU multiplies bf16 natively with f32 sums (AVX512-BF16), so kiln-kernels' bf16
    /// convolutions and linears are fast. Only then may `--bf16-unet`/`--bf16-vae` compute in bf16
    /// on the CPU; see [`CapabilityProfile::with_fast_bf16`].
    pub fast_bf16: bool,
}

fn serialize_computes<S: Serializer>(
    computes: &BTreeMap<OpFamily, Vec<DType>>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let named: BTreeMap<OpFamily, Vec<&'static str>> = computes
        .iter()
        .map(|(family, dtypes)| (*family, dtypes.iter().map(|d| d.as_str()).collect()))
        .collect();
    named.serialize(serializer)
}

fn serialize_gguf<S: Serializer>(
    types: &BTreeSet<GgufType>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_seq(types.iter().map(|g| g.name()))
}

/// The float storage dtypes candle can convert between on a device.
const WIDE_FLOATS: [StorageDType; 4] = [
    StorageDType::F64,
    StorageDType::F32,
    StorageDType::F16,
    StorageDType::BF16,
];

/// Every GGML type candle reads.
const ALL_GGUF: [GgufType; 15] = [
    GgufType::F32,
    GgufType::F16,
    GgufType::BF16,
    GgufType::Q4_0,
    GgufType::Q4_1,
    GgufType::Q5_0,
    GgufType::Q5_1,
    GgufType::Q8_0,
    GgufType::Q8_1,
    GgufType::Q2K,
    GgufType::Q3K,
    GgufType::Q4K,
    GgufType::Q5K,
    GgufType::Q6K,
    GgufType::Q8K,
];

/// All `(a, b)` pairs with `a != b` from `dtypes`, plus `U8 → each` (byte-to-float casts exist on
/// every backend).
fn all_casts(dtypes: &[StorageDType]) -> BTreeSet<(StorageDType, StorageDType)> {
    let mut casts = BTreeSet::new();
    for &from in dtypes {
        for &to in dtypes {
            if from != to {
                casts.insert((from, to));
            }
        }
    }
    casts
}

impl CapabilityProfile {
    /// candle's CPU backend with the given memory (see module docs for the dtype limits).
    pub fn cpu(name: &str, description: &str, total_memory: u64, free_memory: u64) -> Self {
        let floats = [
            StorageDType::F64,
            StorageDType::F32,
            StorageDType::F16,
            StorageDType::BF16,
            StorageDType::F8E4M3,
        ];
        let mut holds: BTreeSet<StorageDType> = floats.into_iter().collect();
        holds.extend([
            StorageDType::U8,
            StorageDType::I16,
            StorageDType::I32,
            StorageDType::I64,
        ]);
        let mut cast_set = floats.to_vec();
        cast_set.push(StorageDType::U8);
        let everything = vec![DType::F32, DType::F16, DType::BF16, DType::F64];
        let computes = BTreeMap::from([
            // BF16 matmul works only through the widen-to-F32 special case; listed so the plan can
            // say it runs, but the planner picks BF16 on the CPU only for `--bf16-unet`/
            // `--bf16-vae` on a fast-bf16 profile ([`CapabilityProfile::with_fast_bf16`]), where
            // kiln-kernels' bf16 linear and conv take over. ComfyUI never does.
            (OpFamily::Matmul, everything.clone()),
            (OpFamily::Conv, vec![DType::F32, DType::F16, DType::F64]),
            (OpFamily::Softmax, everything.clone()),
            (OpFamily::Norm, everything.clone()),
            (OpFamily::Elementwise, everything),
        ]);
        CapabilityProfile {
            name: name.to_string(),
            backend: BackendKind::Cpu,
            description: description.to_string(),
            holds,
            computes,
            casts: all_casts(&cast_set),
            quantized: ALL_GGUF.into_iter().collect(),
            fp8_matmul: false,
            // kiln-kernels' tiled online-softmax attention.
            fused_attention: true,
            flash_attention: false,
            unified_memory: false,
            total_memory,
            free_memory,
            macos: None,
            cuda_capability: None,
            cpu_features: Vec::new(),
            fast_bf16: false,
        }
    }

    /// candle's Metal backend on the given macOS (BF16 only from macOS 14) with unified memory.
    pub fn metal(
        name: &str,
        description: &str,
        macos: MacOsVersion,
        total_memory: u64,
        free_memory: u64,
    ) -> Self {
        let bf16 = macos.at_least(14, 0);
        let mut floats = vec![StorageDType::F32, StorageDType::F16];
        let mut compute = vec![DType::F32, DType::F16];
        if bf16 {
            floats.push(StorageDType::BF16);
            compute.push(DType::BF16);
        }
        let mut holds: BTreeSet<StorageDType> = floats.iter().copied().collect();
        holds.extend([StorageDType::U8, StorageDType::I64]);
        let mut cast_set = floats.clone();
        cast_set.extend([StorageDType::U8, StorageDType::I64]);
        let computes = OpFamily::ALL
            .into_iter()
            .map(|family| (family, compute.clone()))
            .collect();
        CapabilityProfile {
            name: name.to_string(),
            backend: BackendKind::Metal,
            description: description.to_string(),
            holds,
            computes,
            casts: all_casts(&cast_set),
            quantized: ALL_GGUF.into_iter().collect(),
            fp8_matmul: false,
            fused_attention: true,
            flash_attention: false,
            unified_memory: true,
            total_memory,
            free_memory,
            macos: Some(macos),
            cuda_capability: None,
            cpu_features: Vec::new(),
            fast_bf16: false,
        }
    }

    /// candle's CUDA backend on a GPU of the given compute capability.
    pub fn cuda(
        name: &str,
        description: &str,
        capability: CudaCapability,
        total_memory: u64,
        free_memory: u64,
    ) -> Self {
        let ampere = capability.at_least(8, 0);
        // BF16 is held below sm80 (the CUDA ≥ 11 cast kernels convert it to F32/F16), but not
        // computed in: cuBLAS BF16 gemm and candle's BF16 kernels are sm80+.
        let mut holds: BTreeSet<StorageDType> = WIDE_FLOATS.into_iter().collect();
        holds.extend([StorageDType::U8, StorageDType::I64]);
        let mut cast_set = WIDE_FLOATS.to_vec();
        cast_set.push(StorageDType::U8);
        let mut compute = vec![DType::F32, DType::F16, DType::F64];
        if ampere {
            compute.push(DType::BF16);
        }
        // No F8E4M3 tensors: candle 0.11.1's CUDA cast looks up `cast_f8e4m3_<to>` while its
        // kernels are named `cast_f8_e4m3_<to>` (CUDA_ERROR_NOT_FOUND, seen on an H100), so fp8
        // weights stay 8-bit as U8 codes widened through a lookup table on the GPU, as on Metal.
        let computes = OpFamily::ALL
            .into_iter()
            .map(|family| (family, compute.clone()))
            .collect();
        CapabilityProfile {
            name: name.to_string(),
            backend: BackendKind::Cuda,
            description: description.to_string(),
            holds,
            computes,
            casts: all_casts(&cast_set),
            quantized: ALL_GGUF
                .into_iter()
                .filter(|g| *g != GgufType::Q8_1)
                .collect(),
            fp8_matmul: capability.at_least(8, 9),
            fused_attention: ampere,
            flash_attention: ampere,
            unified_memory: false,
            total_memory,
            free_memory,
            macos: None,
            cuda_capability: Some(capability),
            cpu_features: Vec::new(),
            fast_bf16: false,
        }
    }

    /// This CPU profile with fast bf16 compute (AVX512-BF16): bf16 convolutions join the compute
    /// list, since kiln-kernels' conv2d multiplies bf16 with f32 sums there. Other backends are
    /// returned unchanged (their bf16 support comes from the GPU).
    pub fn with_fast_bf16(mut self) -> Self {
        if self.backend != BackendKind::Cpu {
            return self;
        }
        self.fast_bf16 = true;
        let conv = self.computes.entry(OpFamily::Conv).or_default();
        if !conv.contains(&DType::BF16) {
            conv.push(DType::BF16);
        }
        self
    }

    /// True when a device tensor may have this storage dtype and be widened on the device. GGUF
    /// types ask whether candle's quantised matmul runs them here.
    pub fn can_hold(&self, dtype: StorageDType) -> bool {
        match dtype {
            StorageDType::Gguf(g) => self.quantized.contains(&g),
            other => self.holds.contains(&other),
        }
    }

    /// [`can_hold`](Self::can_hold) for a candle dtype (`U32` is held everywhere: ids).
    pub fn can_hold_candle(&self, dtype: DType) -> bool {
        match storage_for_candle(dtype) {
            Some(storage) => self.can_hold(storage),
            None => dtype == DType::U32,
        }
    }

    /// True when `from → to` converts on the device (identity always does).
    pub fn can_cast(&self, from: StorageDType, to: StorageDType) -> bool {
        from == to || self.casts.contains(&(from, to))
    }

    /// True when ops of `family` run in `dtype` here.
    pub fn computes(&self, family: OpFamily, dtype: DType) -> bool {
        self.computes
            .get(&family)
            .is_some_and(|dtypes| dtypes.contains(&dtype))
    }

    /// True when every family in `families` runs in `dtype`.
    pub fn computes_for(&self, families: &[OpFamily], dtype: DType) -> bool {
        families.iter().all(|family| self.computes(*family, dtype))
    }

    /// True when every op family runs in `dtype`.
    pub fn computes_all(&self, dtype: DType) -> bool {
        self.computes_for(&OpFamily::ALL, dtype)
    }

    /// A short tag for reasons: the profile name plus its defining fact (`cuda-sm86`,
    /// `metal-m1 (macOS 13.6)`).
    pub fn label(&self) -> String {
        match (self.backend, self.macos, self.cuda_capability) {
            (BackendKind::Metal, Some(macos), _) => format!("{} (macOS {macos})", self.name),
            (BackendKind::Cuda, _, Some(cc)) if !self.name.contains(&cc.to_string()) => {
                format!("{} ({cc})", self.name)
            }
            _ => self.name.clone(),
        }
    }
}

/// The storage dtype with the same element layout as a candle dtype (`None` for `U32` and the
/// dummy sub-byte types).
pub(crate) fn storage_for_candle(dtype: DType) -> Option<StorageDType> {
    Some(match dtype {
        DType::U8 => StorageDType::U8,
        DType::I16 => StorageDType::I16,
        DType::I32 => StorageDType::I32,
        DType::I64 => StorageDType::I64,
        DType::BF16 => StorageDType::BF16,
        DType::F16 => StorageDType::F16,
        DType::F32 => StorageDType::F32,
        DType::F64 => StorageDType::F64,
        DType::F8E4M3 => StorageDType::F8E4M3,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    #[test]
    fn cpu_holds_e4m3_but_never_e5m2_and_has_no_bf16_conv() {
        let cpu = CapabilityProfile::cpu("cpu", "test", 8 * GIB, 4 * GIB);
        assert!(cpu.can_hold(StorageDType::F8E4M3));
        assert!(!cpu.can_hold(StorageDType::F8E5M2));
        assert!(cpu.can_cast(StorageDType::F8E4M3, StorageDType::F32));
        assert!(cpu.computes(OpFamily::Matmul, DType::F16));
        assert!(!cpu.computes(OpFamily::Conv, DType::BF16));
        assert!(!cpu.computes_all(DType::BF16));
        assert!(cpu.computes_all(DType::F32));
        assert!(!cpu.computes(OpFamily::Matmul, DType::F8E4M3));
    }

    #[test]
    fn fast_bf16_cpu_adds_bf16_conv_and_gpus_ignore_it() {
        let plain = CapabilityProfile::cpu("cpu", "test", 8 * GIB, 4 * GIB);
        assert!(!plain.fast_bf16);
        let fast = plain.clone().with_fast_bf16();
        assert!(fast.fast_bf16);
        assert!(fast.computes(OpFamily::Conv, DType::BF16));
        assert!(fast.computes_all(DType::BF16));
        assert!(fast.computes(OpFamily::Conv, DType::F32));
        let t4 = CapabilityProfile::cuda("t4", "t", CudaCapability::new(7, 5), GIB, GIB);
        let t4 = t4.with_fast_bf16();
        assert!(!t4.fast_bf16);
        assert!(!t4.computes(OpFamily::Conv, DType::BF16));
    }

    #[test]
    fn metal_bf16_needs_macos_14_and_fp8_is_never_held() {
        let m1 = CapabilityProfile::metal("m1", "t", MacOsVersion::new(13, 6), GIB, GIB);
        let m3 = CapabilityProfile::metal("m3", "t", MacOsVersion::new(14, 0), GIB, GIB);
        assert!(!m1.can_hold(StorageDType::BF16));
        assert!(!m1.computes(OpFamily::Matmul, DType::BF16));
        assert!(m3.can_hold(StorageDType::BF16));
        assert!(m3.computes_all(DType::BF16));
        for profile in [&m1, &m3] {
            assert!(!profile.can_hold(StorageDType::F8E4M3));
            assert!(!profile.can_hold(StorageDType::F64));
            assert!(profile.can_hold(StorageDType::U8));
            assert!(profile.can_hold_candle(DType::U8));
            assert!(!profile.can_hold_candle(DType::F8E4M3));
        }
    }

    #[test]
    fn cuda_bf16_compute_needs_sm80_and_fp8_stays_bytes() {
        let t4 = CapabilityProfile::cuda("t4", "t", CudaCapability::new(7, 5), GIB, GIB);
        let a = CapabilityProfile::cuda("a", "t", CudaCapability::new(8, 6), GIB, GIB);
        let ada = CapabilityProfile::cuda("ada", "t", CudaCapability::new(8, 9), GIB, GIB);
        assert!(!t4.can_hold(StorageDType::F8E4M3));
        assert!(t4.can_hold(StorageDType::BF16));
        assert!(!t4.computes(OpFamily::Matmul, DType::BF16));
        assert!(!t4.fused_attention);
        // candle's F8E4M3 casts do not load on CUDA (kernel names mismatch): fp8 is held as
        // bytes on every GPU.
        for gpu in [&t4, &a, &ada] {
            assert!(!gpu.can_hold(StorageDType::F8E4M3));
            assert!(!gpu.can_cast(StorageDType::F8E4M3, StorageDType::BF16));
            assert!(gpu.can_hold(StorageDType::U8));
        }
        assert!(a.computes_all(DType::BF16));
        assert!(!a.fp8_matmul);
        assert!(ada.fp8_matmul);
        assert!(!ada.computes(OpFamily::Matmul, DType::F8E4M3));
        assert!(!a.can_hold(StorageDType::Gguf(GgufType::Q8_1)));
        assert!(a.can_hold(StorageDType::Gguf(GgufType::Q8_0)));
    }

    #[test]
    fn versions_parse_and_compare() {
        let v = MacOsVersion::parse("14.5.1").unwrap();
        assert!(v.at_least(14, 5));
        assert!(!v.at_least(15, 0));
        assert_eq!(MacOsVersion::parse("13"), Some(MacOsVersion::new(13, 0)));
        assert_eq!(MacOsVersion::parse("x"), None);
        assert_eq!(CudaCapability::new(8, 9).to_string(), "sm89");
    }
}
