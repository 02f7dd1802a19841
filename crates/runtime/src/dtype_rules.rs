//! Storage and compute dtype rules per component: ComfyUI's `unet_dtype`, `unet_manual_cast`,
//! `text_encoder_dtype` and `vae_dtype` (spec §2.4), evaluated against a capability profile, with
//! Kiln's one deliberate change: 8-bit storage (fp8, scaled fp8, GGUF) always stays 8-bit.

use candle_core::DType;
use kiln_detect::{Architecture, Component, ComponentKind};
use kiln_weights::{GgufType, StorageDType};

use crate::capability::{BackendKind, CapabilityProfile, OpFamily};
use crate::memory::minimum_inference_bytes;
use crate::options::{ForcedDType, GlobalPrecision, PlanOptions};
use crate::RuntimeError;

/// A component's storage and compute dtype with the facts that decided them.
#[derive(Debug, Clone)]
pub(crate) struct Precision {
    /// What the weights are kept in.
    pub(crate) storage: StorageDType,
    /// What the component computes in.
    pub(crate) compute: DType,
    /// Why the storage dtype.
    pub(crate) storage_why: String,
    /// Why the compute dtype.
    pub(crate) compute_why: String,
    /// Matrix products in bf16 (f32 sums) around `compute` = f32 activations.
    pub(crate) bf16_products: bool,
}

/// The op families a component needs in its compute dtype.
pub(crate) fn op_families(kind: ComponentKind, architecture: Architecture) -> Vec<OpFamily> {
    let mut families = vec![
        OpFamily::Matmul,
        OpFamily::Softmax,
        OpFamily::Norm,
        OpFamily::Elementwise,
    ];
    let convolves = match kind {
        ComponentKind::Vae => true,
        ComponentKind::DiffusionModel => architecture != Architecture::Flux,
        _ => false,
    };
    if convolves {
        families.insert(1, OpFamily::Conv);
    }
    families
}

/// The model's `supported_inference_dtypes` (ComfyUI `comfy/supported_models.py`): Flux
/// `[bf16, f16, f32]`, Flux Fill `[bf16, f32]`, everything else (SD1/SD2/SDXL/SD3) the default
/// `[f16, bf16, f32]`.
pub(crate) fn inference_dtypes(architecture: Architecture, variant: &str) -> &'static [DType] {
    match architecture {
        Architecture::Flux if variant.contains("fill") => &[DType::BF16, DType::F32],
        Architecture::Flux => &[DType::BF16, DType::F16, DType::F32],
        _ => &[DType::F16, DType::BF16, DType::F32],
    }
}

/// GGUF's unquantised types behave like their plain float twins.
pub(crate) fn plain_float(dtype: StorageDType) -> StorageDType {
    match dtype {
        StorageDType::Gguf(GgufType::F32) => StorageDType::F32,
        StorageDType::Gguf(GgufType::F16) => StorageDType::F16,
        StorageDType::Gguf(GgufType::BF16) => StorageDType::BF16,
        other => other,
    }
}

/// True for GGUF block quantisations (not GGUF's plain f32/f16/bf16).
pub(crate) fn is_quantized(dtype: StorageDType) -> bool {
    matches!(plain_float(dtype), StorageDType::Gguf(_))
}

/// True for storage that is kept 8-bit (or less) whatever the device: fp8 and GGUF blocks.
pub(crate) fn is_eight_bit(dtype: StorageDType) -> bool {
    dtype.is_fp8() || is_quantized(dtype)
}

/// The storage dtype a component is planned by: ComfyUI's `weight_dtype` (the dtype holding the
/// most elements, GGUF's plain types read as floats), except that a component with any GGUF block
/// quantisation is planned as GGUF, by its most common quantisation. Small GGUF models keep most
/// elements in f16 (rows too short for K-quant blocks), yet their quantised layers must stay
/// quantised.
pub(crate) fn dominant_storage(component: &Component) -> StorageDType {
    component
        .dtypes
        .iter()
        .filter(|(dtype, _)| is_quantized(**dtype))
        .max_by_key(|(_, elements)| **elements)
        .map(|(dtype, _)| *dtype)
        .unwrap_or_else(|| plain_float(component.dominant_dtype))
}

/// The candle dtype of a plain float storage dtype.
fn float_dtype(storage: StorageDType) -> Option<DType> {
    match plain_float(storage) {
        StorageDType::F64 => Some(DType::F64),
        StorageDType::F32 => Some(DType::F32),
        StorageDType::F16 => Some(DType::F16),
        StorageDType::BF16 => Some(DType::BF16),
        _ => None,
    }
}

/// The storage twin of a compute dtype.
pub(crate) fn storage_of(dtype: DType) -> StorageDType {
    match dtype {
        DType::F64 => StorageDType::F64,
        DType::F16 => StorageDType::F16,
        DType::BF16 => StorageDType::BF16,
        _ => StorageDType::F32,
    }
}

/// The device a rule is evaluated for, with the user's flags.
pub(crate) struct Target<'a> {
    pub(crate) profile: &'a CapabilityProfile,
    pub(crate) options: &'a PlanOptions,
    pub(crate) families: &'a [OpFamily],
}

impl Target<'_> {
    /// ComfyUI `should_use_fp16`: never on the CPU, always with `--force-fp16`, never with
    /// `--force-fp32`, else when the device computes f16 for every needed op family.
    fn fp16_ok(&self) -> bool {
        if self.profile.backend == BackendKind::Cpu {
            return false;
        }
        match self.options.precision {
            GlobalPrecision::ForceFp16 => true,
            GlobalPrecision::ForceFp32 => false,
            GlobalPrecision::Auto => self.profile.computes_for(self.families, DType::F16),
        }
    }

    /// ComfyUI `should_use_bf16`: never on the CPU or with `--force-fp32`, else when the device
    /// computes bf16 for every needed op family (Metal: macOS 14+, CUDA: sm80+).
    fn bf16_ok(&self) -> bool {
        self.profile.backend != BackendKind::Cpu
            && self.options.precision != GlobalPrecision::ForceFp32
            && self.profile.computes_for(self.families, DType::BF16)
    }

    /// Kiln's opt-in CPU bf16 compute: the CPU multiplies bf16 natively (AVX512-BF16), the user
    /// asked for bf16 with `flag` (`--bf16-unet`/`--bf16-vae`), `--force-fp32` is off and every
    /// needed op family runs in bf16. ComfyUI computes f32 here; the kernels' f32 sums keep the
    /// image within 35 dB of it.
    fn cpu_fast_bf16(&self, flag: Option<ForcedDType>) -> bool {
        self.profile.backend == BackendKind::Cpu
            && self.profile.fast_bf16
            && flag == Some(ForcedDType::BF16)
            && self.options.precision != GlobalPrecision::ForceFp32
            && self.profile.computes_for(self.families, DType::BF16)
    }

    /// Why 16-bit compute is off here, for reasons.
    fn why_not_16bit(&self, dtype: DType) -> String {
        let label = self.profile.label();
        if self.profile.backend == BackendKind::Cpu {
            format!("{label}: ComfyUI never computes 16-bit on the CPU")
        } else if self.options.precision == GlobalPrecision::ForceFp32 {
            "--force-fp32".to_string()
        } else {
            format!("{label} cannot compute {}", dtype.as_str())
        }
    }

    fn usable(&self, dtype: DType) -> bool {
        match dtype {
            DType::F16 => self.fp16_ok(),
            DType::BF16 => self.bf16_ok(),
            _ => true,
        }
    }

    /// A 16-bit storage dtype the device cannot hold is replaced (bf16 → f16 → f32; f64 → f32):
    /// ComfyUI would put it on the device anyway and fail.
    fn holdable(&self, storage: StorageDType, why: &mut String) -> StorageDType {
        if is_eight_bit(storage) || self.profile.can_hold(storage) {
            return storage;
        }
        let replacement = [StorageDType::F16, StorageDType::F32]
            .into_iter()
            .find(|candidate| {
                *candidate != storage
                    && self.profile.can_hold(*candidate)
                    && (storage != StorageDType::F64 || *candidate == StorageDType::F32)
            })
            .unwrap_or(StorageDType::F32);
        why.push_str(&format!(
            "; {} cannot hold {storage} (ComfyUI would fail) → {replacement}",
            self.profile.label()
        ));
        replacement
    }
}

/// `stored f16 → f32`, or just `stored f16` when nothing changes.
fn stored(from: StorageDType, to: StorageDType) -> String {
    if from == to {
        format!("stored {from}")
    } else {
        format!("stored {from} → {to}")
    }
}

fn names(dtypes: &[DType]) -> String {
    let names: Vec<&str> = dtypes.iter().map(|d| d.as_str()).collect();
    format!("[{}]", names.join(", "))
}

/// The diffusion model's explicit `--*-unet` flag.
fn forced_unet(options: &PlanOptions) -> Option<(StorageDType, String)> {
    options.unet_dtype.map(|forced| {
        (
            forced.storage_dtype(),
            format!("--{}-unet", forced.flag_stem()),
        )
    })
}

/// ComfyUI `unet_dtype` for a float checkpoint without a flag.
fn comfy_unet_storage(
    target: &Target<'_>,
    dominant: StorageDType,
    supported: &[DType],
    params: u64,
) -> (StorageDType, String) {
    if dominant == StorageDType::F16 && supported.contains(&DType::F16) && target.fp16_ok() {
        return (
            StorageDType::F16,
            "stored f16 and the device computes f16".to_string(),
        );
    }
    for dtype in supported {
        if matches!(dtype, DType::F16 | DType::BF16) && target.usable(*dtype) {
            return (
                storage_of(*dtype),
                format!(
                    "{}: first of the model's {} the device computes",
                    stored(dominant, storage_of(*dtype)),
                    names(supported)
                ),
            );
        }
    }
    // ComfyUI's manual-cast pass: on a GPU where an f32 copy would not fit, keep 16-bit storage
    // and compute wider.
    let profile = target.profile;
    if profile.backend != BackendKind::Cpu && target.options.precision != GlobalPrecision::ForceFp32
    {
        let reserve = minimum_inference_bytes(profile, target.options);
        let max_weights = (profile.total_memory as f64 * 0.88) as u64;
        let max_weights = max_weights.saturating_sub(reserve);
        if params.saturating_mul(4) > max_weights {
            for dtype in supported {
                let storage = storage_of(*dtype);
                if matches!(dtype, DType::F16 | DType::BF16) && profile.can_hold(storage) {
                    return (
                        storage,
                        format!(
                            "{}: an f32 copy would not fit {}",
                            stored(dominant, storage),
                            profile.label()
                        ),
                    );
                }
            }
        }
    }
    if let Some(why) = held_sixteen_bit_on_cpu(target, dominant, DType::F32) {
        return (dominant, why);
    }
    let why = if profile.backend == BackendKind::Cpu {
        format!(
            "{}: ComfyUI stores the diffusion model in f32 on the CPU (--fp16-unet/--bf16-unet \
             keep 16-bit)",
            stored(dominant, StorageDType::F32)
        )
    } else {
        format!(
            "{}: no 16-bit dtype of {} usable ({})",
            stored(dominant, StorageDType::F32),
            names(supported),
            target.why_not_16bit(DType::F16)
        )
    };
    (StorageDType::F32, why)
}

/// ComfyUI `unet_manual_cast`: the compute dtype for a storage dtype.
fn comfy_compute(
    target: &Target<'_>,
    storage: StorageDType,
    supported: &[DType],
) -> (DType, String) {
    let storage = plain_float(storage);
    match storage {
        StorageDType::F32 => return (DType::F32, "computes f32 (stored f32)".to_string()),
        StorageDType::F64 if target.profile.computes_for(target.families, DType::F64) => {
            return (DType::F64, "computes f64 (stored f64)".to_string());
        }
        StorageDType::F16 if target.fp16_ok() => {
            return (DType::F16, "computes f16 as stored".to_string());
        }
        StorageDType::BF16 if target.bf16_ok() => {
            return (DType::BF16, "computes bf16 as stored".to_string());
        }
        StorageDType::BF16 if target.cpu_fast_bf16(target.options.unet_dtype) => {
            return (
                DType::BF16,
                "bf16 matrix products with f32 sums, f32 activations: CPU has AVX512-BF16 \
                 (--bf16-unet)"
                    .to_string(),
            );
        }
        _ => {}
    }
    if target.options.precision == GlobalPrecision::ForceFp16
        && target.fp16_ok()
        && supported.contains(&DType::F16)
    {
        return (DType::F16, "computes f16 (--force-fp16)".to_string());
    }
    for dtype in supported {
        if matches!(dtype, DType::F16 | DType::BF16) && target.usable(*dtype) {
            let skipped: Vec<String> = supported
                .iter()
                .take_while(|d| *d != dtype)
                .map(|d| target.why_not_16bit(*d))
                .collect();
            let why = if skipped.is_empty() {
                format!(
                    "computes {}: first of the model's {} the device runs",
                    dtype.as_str(),
                    names(supported)
                )
            } else {
                format!(
                    "computes {} ({}; model list {})",
                    dtype.as_str(),
                    skipped.join(", "),
                    names(supported)
                )
            };
            return (*dtype, why);
        }
    }
    (
        DType::F32,
        format!("computes f32 ({})", target.why_not_16bit(DType::F16)),
    )
}

/// Storage and compute dtype of the diffusion model.
pub(crate) fn diffusion_precision(
    target: &Target<'_>,
    component: &Component,
    architecture: Architecture,
    variant: &str,
) -> Result<Precision, RuntimeError> {
    let dominant = dominant_storage(component);
    if !dominant.is_float() {
        return Err(RuntimeError::UnsupportedStorage {
            component: component.kind,
            dtype: component.dominant_dtype,
        });
    }
    let supported = inference_dtypes(architecture, variant);
    let forced = forced_unet(target.options);
    let (storage, mut storage_why) = if let Some(fp8) = component.scaled_fp8 {
        let mut why = format!("stored scaled {fp8}: stays 8-bit");
        if let Some((_, flag)) = forced {
            why.push_str(&format!(
                " ({flag} ignored, as ComfyUI's scaled_fp8 ops do)"
            ));
        }
        (fp8, why)
    } else if is_quantized(dominant) {
        let mut why = format!("stored GGUF {dominant}: stays quantised");
        if let Some((_, flag)) = forced {
            why.push_str(&format!(" ({flag} ignored for GGUF)"));
        }
        (dominant, why)
    } else if let Some((storage, flag)) = forced {
        (storage, format!("{}: {flag}", stored(dominant, storage)))
    } else if dominant.is_fp8() {
        // `--force-fp16` implies `--fp16-unet` in ComfyUI; for 8-bit files Kiln reads it as a
        // compute preference only, so the weights stay 8-bit.
        (dominant, format!("stored {dominant}: kept 8-bit"))
    } else if target.options.precision == GlobalPrecision::ForceFp16 {
        (
            StorageDType::F16,
            format!(
                "{}: --force-fp16 (implies --fp16-unet)",
                stored(dominant, StorageDType::F16)
            ),
        )
    } else {
        comfy_unet_storage(target, dominant, supported, component.params)
    };
    let storage = target.holdable(storage, &mut storage_why);
    let (compute, compute_why) = comfy_compute(target, storage, supported);
    let (compute, bf16_products) = cpu_products(target, compute);
    let (storage, storage_why) = match kept_for_bf16_products(dominant, storage, bf16_products) {
        Some(why) => (dominant, why),
        None => (storage, storage_why),
    };
    Ok(Precision {
        storage,
        compute,
        storage_why,
        compute_why,
        bf16_products,
    })
}

/// Storage and compute dtype of a text encoder: storage from the flag, else 8-bit stays 8-bit,
/// else f16 on a GPU (ComfyUI `text_encoder_dtype`) or the file's dtype on the CPU; compute f32
/// (ComfyUI runs text encoders in f32 through manual-cast ops).
pub(crate) fn text_encoder_precision(
    target: &Target<'_>,
    component: &Component,
) -> Result<Precision, RuntimeError> {
    let dominant = dominant_storage(component);
    if !dominant.is_float() {
        return Err(RuntimeError::UnsupportedStorage {
            component: component.kind,
            dtype: component.dominant_dtype,
        });
    }
    let (storage, mut storage_why) = if let Some(fp8) = component.scaled_fp8 {
        (fp8, format!("stored scaled {fp8}: stays 8-bit"))
    } else if let Some(forced) = target.options.text_encoder_dtype {
        let storage = forced.storage_dtype();
        (
            storage,
            format!(
                "{}: --{}-text-enc",
                stored(dominant, storage),
                forced.flag_stem()
            ),
        )
    } else if is_eight_bit(dominant) {
        (dominant, format!("stored {dominant}: stays 8-bit"))
    } else if target.profile.backend == BackendKind::Cpu {
        (
            dominant,
            format!("stored {dominant}: kept as stored on the CPU"),
        )
    } else {
        (
            StorageDType::F16,
            format!(
                "{}: ComfyUI text_encoder_dtype",
                stored(dominant, StorageDType::F16)
            ),
        )
    };
    let storage = target.holdable(storage, &mut storage_why);
    Ok(Precision {
        storage,
        compute: DType::F32,
        storage_why,
        compute_why: "computes f32 (ComfyUI runs text encoders in f32)".to_string(),
        bf16_products: false,
    })
}

/// Storage and compute dtype of the VAE: the `--*-vae` flag if the device computes it, else the
/// first of its working dtypes `[bf16, f32]` usable natively; weights are stored in the compute
/// dtype unless they are 8-bit.
pub(crate) fn vae_precision(
    target: &Target<'_>,
    component: &Component,
) -> Result<Precision, RuntimeError> {
    let dominant = dominant_storage(component);
    if !dominant.is_float() {
        return Err(RuntimeError::UnsupportedStorage {
            component: component.kind,
            dtype: component.dominant_dtype,
        });
    }
    let label = target.profile.label();
    let (compute, compute_why) = match target.options.vae_dtype {
        Some(ForcedDType::BF16) if target.profile.backend == BackendKind::Cpu => {
            if target.cpu_fast_bf16(target.options.vae_dtype) {
                (
                    DType::BF16,
                    "bf16 matrix products with f32 sums, f32 activations: CPU has AVX512-BF16 \
                     (--bf16-vae)"
                        .to_string(),
                )
            } else if target.profile.fast_bf16 {
                (
                    DType::F32,
                    "computes f32: --bf16-vae but --force-fp32".to_string(),
                )
            } else {
                (
                    DType::F32,
                    format!("computes f32: --bf16-vae but {label} has no AVX512-BF16"),
                )
            }
        }
        Some(forced) => {
            let flag = format!("--{}-vae", forced.flag_stem());
            match float_dtype(forced.storage_dtype()) {
                Some(dtype) if target.profile.computes_for(target.families, dtype) => {
                    (dtype, format!("computes {}: {flag}", dtype.as_str()))
                }
                _ => (
                    DType::F32,
                    format!("computes f32: {flag} but {label} cannot run the VAE in it"),
                ),
            }
        }
        None if target.bf16_ok() => (
            DType::BF16,
            "computes bf16: first of the VAE's [bf16, f32] the device runs".to_string(),
        ),
        None => (
            DType::F32,
            format!(
                "computes f32: VAE works in [bf16, f32] and {}",
                target.why_not_16bit(DType::BF16)
            ),
        ),
    };
    let (storage, storage_why) = if let Some(fp8) = component.scaled_fp8 {
        (fp8, format!("stored scaled {fp8}: stays 8-bit"))
    } else if is_eight_bit(dominant) {
        (dominant, format!("stored {dominant}: stays 8-bit"))
    } else if let Some(why) = held_sixteen_bit_on_cpu(target, dominant, compute)
        .filter(|_| target.options.vae_dtype.is_none())
    {
        (dominant, why)
    } else {
        let storage = storage_of(compute);
        (
            storage,
            format!(
                "{}: the VAE is stored in its compute dtype",
                stored(dominant, storage)
            ),
        )
    };
    let (compute, bf16_products) = cpu_products(target, compute);
    let (storage, storage_why) = match kept_for_bf16_products(dominant, storage, bf16_products) {
        Some(why) => (dominant, why),
        None => (storage, storage_why),
    };
    Ok(Precision {
        storage,
        compute,
        storage_why,
        compute_why,
        bf16_products,
    })
}

/// On the CPU, a 16-bit file computed in f32 keeps its 16-bit weights: the CPU kernels widen
/// each layer's weight as they use it, to exactly the values of ComfyUI's f32 copy, so the model
/// takes half the memory and loads without a conversion pass. `None` elsewhere, or under
/// `--force-fp32`.
fn held_sixteen_bit_on_cpu(
    target: &Target<'_>,
    dominant: StorageDType,
    compute: DType,
) -> Option<String> {
    let sixteen_bit = matches!(dominant, StorageDType::F16 | StorageDType::BF16);
    (sixteen_bit
        && compute == DType::F32
        && target.profile.backend == BackendKind::Cpu
        && target.options.precision != GlobalPrecision::ForceFp32
        && target.profile.can_hold(dominant))
    .then(|| {
        format!(
            "stored {dominant}: held as stored and widened per layer to f32 (the values of \
             ComfyUI's f32 copy at half its memory)"
        )
    })
}

/// Under bf16 products a 16-bit file keeps its own dtype (used in place from the file): every
/// matrix product rounds its weight to bf16 as it packs it, which gives the values of the bf16
/// copy `--bf16-unet`/`--bf16-vae` would make, without making it. `None` when nothing changes.
fn kept_for_bf16_products(
    dominant: StorageDType,
    storage: StorageDType,
    bf16_products: bool,
) -> Option<String> {
    (bf16_products && storage == StorageDType::BF16 && dominant == StorageDType::F16).then(|| {
        "stored f16: held as stored, rounded to bf16 as each matrix product packs it (the \
             values of a bf16 copy, without the copy)"
            .to_string()
    })
}

/// bf16 compute planned on the CPU (`--bf16-unet`/`--bf16-vae` on AVX512-BF16) runs as f32
/// activations with bf16 matrix products, as PyTorch's CPU autocast does: the products take the
/// speed, norms and softmax keep f32. Returns the activations' dtype and whether products are
/// bf16.
fn cpu_products(target: &Target<'_>, compute: DType) -> (DType, bool) {
    if compute == DType::BF16 && target.profile.backend == BackendKind::Cpu {
        (DType::F32, true)
    } else {
        (compute, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flux_fill_has_no_fp16_in_its_list() {
        assert_eq!(
            inference_dtypes(Architecture::Flux, "fill"),
            &[DType::BF16, DType::F32]
        );
        assert_eq!(
            inference_dtypes(Architecture::Sd3, "3.5-large")[0],
            DType::F16
        );
    }

    #[test]
    fn families_include_conv_only_where_convolutions_run() {
        let flux = op_families(ComponentKind::DiffusionModel, Architecture::Flux);
        assert!(!flux.contains(&OpFamily::Conv));
        let sd1 = op_families(ComponentKind::DiffusionModel, Architecture::Sd1);
        assert!(sd1.contains(&OpFamily::Conv));
        assert!(op_families(ComponentKind::Vae, Architecture::Flux).contains(&OpFamily::Conv));
        assert!(!op_families(ComponentKind::T5xxl, Architecture::Flux).contains(&OpFamily::Conv));
    }

    #[test]
    fn gguf_plain_types_count_as_floats_and_quantised_as_eight_bit() {
        assert_eq!(
            plain_float(StorageDType::Gguf(GgufType::F16)),
            StorageDType::F16
        );
        assert!(is_eight_bit(StorageDType::Gguf(GgufType::Q8_0)));
        assert!(!is_eight_bit(StorageDType::Gguf(GgufType::F32)));
        assert!(is_eight_bit(StorageDType::F8E5M2));
    }
}
