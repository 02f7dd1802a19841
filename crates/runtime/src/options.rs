//! What the user asked for, already validated: ComfyUI's device, precision, attention and memory
//! flags in typed form. The planner turns these plus a capability profile into a plan.

use kiln_weights::StorageDType;
use serde::Serialize;

/// A storage/compute precision a user can force with a flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ForcedDType {
    /// `--fp64-unet`.
    F64,
    /// `--fp32-unet`, `--fp32-vae`, `--fp32-text-enc`.
    F32,
    /// `--fp16-unet`, `--fp16-vae`, `--fp16-text-enc`.
    F16,
    /// `--bf16-unet`, `--bf16-vae`, `--bf16-text-enc`.
    BF16,
    /// `--fp8_e4m3fn-unet`, `--fp8_e4m3fn-text-enc` (storage; compute is widened).
    F8E4M3,
    /// `--fp8_e5m2-unet`, `--fp8_e5m2-text-enc` (storage; compute is widened).
    F8E5M2,
}

impl ForcedDType {
    /// The storage dtype the flag asks for.
    pub fn storage_dtype(self) -> StorageDType {
        match self {
            ForcedDType::F64 => StorageDType::F64,
            ForcedDType::F32 => StorageDType::F32,
            ForcedDType::F16 => StorageDType::F16,
            ForcedDType::BF16 => StorageDType::BF16,
            ForcedDType::F8E4M3 => StorageDType::F8E4M3,
            ForcedDType::F8E5M2 => StorageDType::F8E5M2,
        }
    }

    /// The dtype part of the flag's name (`fp16`, `fp8_e4m3fn`), as in `--fp16-unet`.
    pub fn flag_stem(self) -> &'static str {
        match self {
            ForcedDType::F64 => "fp64",
            ForcedDType::F32 => "fp32",
            ForcedDType::F16 => "fp16",
            ForcedDType::BF16 => "bf16",
            ForcedDType::F8E4M3 => "fp8_e4m3fn",
            ForcedDType::F8E5M2 => "fp8_e5m2",
        }
    }
}

/// `--force-fp16` / `--force-fp32` (mutually exclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GlobalPrecision {
    /// Neither flag.
    #[default]
    Auto,
    /// `--force-fp16`: fp16 wherever the device computes in it (and for the UNet).
    ForceFp16,
    /// `--force-fp32`: never pick fp16/bf16.
    ForceFp32,
}

/// Which attention implementation the user asked for (ComfyUI's ⊕ attention group).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AttentionRequest {
    /// No flag: the planner picks per backend.
    #[default]
    Auto,
    /// `--use-split-cross-attention`.
    Split,
    /// `--use-quad-cross-attention`.
    SubQuadratic,
    /// `--use-pytorch-cross-attention`: the backend's fused SDPA where it has one.
    Fused,
    /// `--use-flash-attention`.
    Flash,
    /// `--use-sage-attention` (accepted; Kiln has no sage kernel and says so in the plan).
    Sage,
}

/// `--force-upcast-attention` / `--dont-upcast-attention`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UpcastRequest {
    /// Neither flag: ComfyUI's default (upcast on macOS ≥ 14.5).
    #[default]
    Auto,
    /// Always compute attention softmax in fp32.
    Force,
    /// Never upcast.
    Never,
}

/// ComfyUI's VRAM group (`--gpu-only`, `--highvram`, `--normalvram`, `--lowvram`, `--novram`, `--cpu`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VramMode {
    /// No flag.
    #[default]
    Auto,
    /// `--gpu-only`: everything, text encoders and intermediates included, on the GPU.
    GpuOnly,
    /// `--highvram`: keep models on the GPU after use.
    High,
    /// `--normalvram`.
    Normal,
    /// `--lowvram`: stream what does not fit.
    Low,
    /// `--novram`: stream everything.
    NoVram,
}

/// Every user choice the planner honours. Built by the CLI from ComfyUI's flags.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PlanOptions {
    /// `--cpu`: run everything on the CPU.
    pub cpu: bool,
    /// `--cuda-device N`.
    pub cuda_device: Option<usize>,
    /// `--force-fp16` / `--force-fp32`.
    pub precision: GlobalPrecision,
    /// The diffusion model's storage dtype flag (`--bf16-unet`, `--fp8_e4m3fn-unet`, …).
    pub unet_dtype: Option<ForcedDType>,
    /// The VAE dtype flag (`--fp16-vae`, `--fp32-vae`, `--bf16-vae`).
    pub vae_dtype: Option<ForcedDType>,
    /// `--cpu-vae`.
    pub cpu_vae: bool,
    /// The text-encoder storage dtype flag.
    pub text_encoder_dtype: Option<ForcedDType>,
    /// The attention group.
    pub attention: AttentionRequest,
    /// The upcast group.
    pub upcast: UpcastRequest,
    /// The VRAM group.
    pub vram: VramMode,
    /// `--reserve-vram GB`, in bytes.
    pub reserve_vram_bytes: Option<u64>,
    /// `--disable-smart-memory`.
    pub disable_smart_memory: bool,
    /// `--supports-fp8-compute`: trust the device to multiply fp8 directly.
    pub assume_fp8_compute: bool,
}
