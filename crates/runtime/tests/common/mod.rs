//! Synthetic detections of real checkpoints (parameter counts and dtype mixes of the actual
//! files), built directly from `kiln-detect`'s types.
#![allow(dead_code)]

use std::collections::BTreeMap;

use kiln_detect::{Architecture, Component, ComponentKind, Detection, Layout, Prediction};
use kiln_weights::{GgufType, StorageDType};

pub(crate) const SD1_UNET: u64 = 859_520_964;
pub(crate) const CLIP_L: u64 = 123_060_480;
pub(crate) const CLIP_G: u64 = 694_659_840;
pub(crate) const T5XXL: u64 = 4_762_310_656;
pub(crate) const VAE: u64 = 83_653_863;
pub(crate) const SDXL_UNET: u64 = 2_567_463_684;
pub(crate) const FLUX: u64 = 11_901_408_320;
pub(crate) const SD3_MEDIUM: u64 = 2_028_328_000;

/// A component with `params` elements, `share` per mille of them in `dtype` and the rest (norms,
/// biases) in `rest`.
pub(crate) fn component(
    kind: ComponentKind,
    params: u64,
    dtype: StorageDType,
    rest: Option<StorageDType>,
) -> Component {
    let mut dtypes = BTreeMap::new();
    match rest {
        Some(rest) if rest != dtype => {
            let small = params / 100;
            dtypes.insert(dtype, params - small);
            dtypes.insert(rest, small);
        }
        _ => {
            dtypes.insert(dtype, params);
        }
    }
    Component {
        kind,
        layout: Layout::Ldm,
        prefix: String::new(),
        params,
        dtypes,
        dominant_dtype: dtype,
        scaled_fp8: None,
        facts: BTreeMap::new(),
        keys: BTreeMap::new(),
    }
}

fn detection(architecture: Architecture, variant: &str, components: Vec<Component>) -> Detection {
    Detection {
        architecture,
        variant: variant.to_string(),
        prediction: Some(Prediction::Eps),
        components,
        unclaimed_keys: 0,
        notes: Vec::new(),
    }
}

/// SD1.5 with every component stored as `dtype` (8-bit files keep f32 norms).
pub(crate) fn sd1(dtype: StorageDType) -> Detection {
    let rest = dtype.is_fp8().then_some(StorageDType::F32);
    detection(
        Architecture::Sd1,
        "v1.5",
        vec![
            component(ComponentKind::DiffusionModel, SD1_UNET, dtype, rest),
            component(ComponentKind::ClipL, CLIP_L, dtype, rest),
            component(ComponentKind::Vae, VAE, dtype, rest),
        ],
    )
}

/// SDXL base stored in bf16.
pub(crate) fn sdxl_bf16() -> Detection {
    let bf16 = StorageDType::BF16;
    detection(
        Architecture::Sdxl,
        "base",
        vec![
            component(ComponentKind::DiffusionModel, SDXL_UNET, bf16, None),
            component(ComponentKind::ClipL, CLIP_L, bf16, None),
            component(ComponentKind::ClipG, CLIP_G, bf16, None),
            component(ComponentKind::Vae, VAE, bf16, None),
        ],
    )
}

/// Flux dev all-in-one: diffusion model and T5 in `dtype` (bf16 norms), CLIP-L f16, VAE bf16.
pub(crate) fn flux(dtype: StorageDType) -> Detection {
    let rest = Some(StorageDType::BF16);
    detection(
        Architecture::Flux,
        "dev",
        vec![
            component(ComponentKind::DiffusionModel, FLUX, dtype, rest),
            component(ComponentKind::ClipL, CLIP_L, StorageDType::F16, None),
            component(ComponentKind::T5xxl, T5XXL, dtype, rest),
            component(ComponentKind::Vae, VAE, StorageDType::BF16, None),
        ],
    )
}

/// Flux dev as a scaled-fp8 e4m3fn checkpoint (per-tensor `scale_weight`, f32 scales).
pub(crate) fn flux_scaled_fp8() -> Detection {
    let mut d = flux(StorageDType::F8E4M3);
    d.components[0].scaled_fp8 = Some(StorageDType::F8E4M3);
    d
}

/// A Flux dev GGUF Q8_0 diffusion model (f32 norms), alone as GGUF files are.
pub(crate) fn flux_gguf_q8() -> Detection {
    let q8 = StorageDType::Gguf(GgufType::Q8_0);
    detection(
        Architecture::Flux,
        "dev",
        vec![component(
            ComponentKind::DiffusionModel,
            FLUX,
            q8,
            Some(StorageDType::Gguf(GgufType::F32)),
        )],
    )
}

/// SD3 medium stored in f16 with all three text encoders.
pub(crate) fn sd3_f16() -> Detection {
    let f16 = StorageDType::F16;
    detection(
        Architecture::Sd3,
        "3-medium",
        vec![
            component(ComponentKind::DiffusionModel, SD3_MEDIUM, f16, None),
            component(ComponentKind::ClipL, CLIP_L, f16, None),
            component(ComponentKind::ClipG, CLIP_G, f16, None),
            component(ComponentKind::T5xxl, T5XXL, f16, None),
            component(ComponentKind::Vae, VAE, f16, None),
        ],
    )
}

/// Every scenario of the test matrix, named.
pub(crate) fn scenarios() -> Vec<(&'static str, Detection)> {
    vec![
        ("sd1-f32", sd1(StorageDType::F32)),
        ("sd1-f16", sd1(StorageDType::F16)),
        ("sd1-fp8-e4m3fn", sd1(StorageDType::F8E4M3)),
        ("sd1-fp8-e5m2", sd1(StorageDType::F8E5M2)),
        ("sdxl-bf16", sdxl_bf16()),
        ("flux-fp8-e4m3fn", flux(StorageDType::F8E4M3)),
        ("flux-fp8-e5m2", flux(StorageDType::F8E5M2)),
        ("flux-scaled-fp8", flux_scaled_fp8()),
        ("flux-gguf-q8_0", flux_gguf_q8()),
        ("sd3-f16", sd3_f16()),
    ]
}
