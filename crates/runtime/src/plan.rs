//! The plan: for every component of a checkpoint, where it runs, how its weights are held, which
//! dtype it computes in, which attention kernel it uses, whether it is resident or streamed, and
//! why. `kiln doctor --json` prints [`Plan::to_json`] under `plan`.

use std::fmt;

use candle_core::DType;
use kiln_detect::ComponentKind;
use kiln_weights::{GgufType, StorageDType};
use serde::{Serialize, Serializer};

use crate::capability::{BackendKind, CapabilityProfile, OpFamily};
use crate::peak::{MemoryEstimate, TextEncoderPolicy};
use crate::RuntimeError;

/// Which device a component runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DevicePlacement {
    /// The host CPU.
    Cpu,
    /// CUDA device by ordinal.
    Cuda(usize),
    /// The (only) Metal device.
    Metal,
}

impl DevicePlacement {
    /// The backend this placement needs.
    pub fn backend(self) -> BackendKind {
        match self {
            DevicePlacement::Cpu => BackendKind::Cpu,
            DevicePlacement::Cuda(_) => BackendKind::Cuda,
            DevicePlacement::Metal => BackendKind::Metal,
        }
    }

    /// Opens the candle device (CUDA/Metal fail with a typed error when not compiled in).
    pub fn open(self) -> Result<candle_core::Device, RuntimeError> {
        let opened = match self {
            DevicePlacement::Cpu => return Ok(candle_core::Device::Cpu),
            DevicePlacement::Cuda(ordinal) => candle_core::Device::new_cuda(ordinal),
            DevicePlacement::Metal => candle_core::Device::new_metal(0),
        };
        opened.map_err(|e| RuntimeError::BackendUnavailable {
            backend: self.backend().name(),
            reason: e.to_string(),
        })
    }
}

impl fmt::Display for DevicePlacement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DevicePlacement::Cpu => f.write_str("cpu"),
            DevicePlacement::Cuda(ordinal) => write!(f, "cuda:{ordinal}"),
            DevicePlacement::Metal => f.write_str("metal"),
        }
    }
}

impl Serialize for DevicePlacement {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// The attention implementation a component uses (ComfyUI §3 names in brackets).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AttentionKernel {
    /// One softmax over the full score matrix (`attention_basic`).
    Plain,
    /// Query-sliced attention sized by free memory (`attention_split`, VAE `slice_attention`).
    Split,
    /// Chunked memory-efficient attention (`attention_sub_quad`).
    SubQuadratic,
    /// The backend's fused SDPA kernel (`attention_pytorch`).
    Fused,
    /// Flash attention (`attention_flash`), CUDA sm80+.
    Flash,
}

/// Whether a component's weights all live on its device, or are moved there layer by layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LoadMode {
    /// Every weight is on the device for the whole run.
    Resident,
    /// Weights stay in host memory and each layer's are copied to the device when it runs
    /// (ComfyUI's partial "lowvram" load).
    Streamed,
}

/// How a held weight becomes a compute-dtype tensor when a layer runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Widening {
    /// Held in the compute dtype already.
    None,
    /// Held in a dtype the device holds; one on-device cast (`to_dtype`).
    CastOnDevice,
    /// fp8 held as `U8` bytes; a 256-entry table in the compute dtype is gathered on the device.
    LookupTable,
    /// GGUF blocks held as a candle `QTensor`; quantised matmul / dequantisation.
    GgufDequant,
    /// Scaled fp8: fp8 widened (table or cast), then multiplied by the per-tensor scale.
    ScaledFp8,
}

/// The element form a component's weights have on the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HeldAs {
    /// A candle dtype (`U8` for fp8 bytes, `F8E4M3`, `F16`, …).
    Dtype(DType),
    /// GGUF blocks of this type.
    Quantized(GgufType),
}

impl fmt::Display for HeldAs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeldAs::Dtype(dtype) => f.write_str(dtype.as_str()),
            HeldAs::Quantized(g) => f.write_str(g.name()),
        }
    }
}

impl Serialize for HeldAs {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

fn serialize_dtype<S: Serializer>(dtype: &DType, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(dtype.as_str())
}

/// The decisions for one component.
#[derive(Debug, Clone, Serialize)]
pub struct ComponentPlan {
    /// Which component.
    #[serde(skip)]
    pub component: ComponentKind,
    /// Where it runs.
    pub device: DevicePlacement,
    /// The dtype its weights are kept in (8-bit formats stay 8-bit).
    pub storage_dtype: StorageDType,
    /// What those weights are on the device (`u8` for fp8 bytes the device cannot hold).
    pub held_as: HeldAs,
    /// The dtype activations and widened weights are computed in.
    #[serde(serialize_with = "serialize_dtype")]
    pub compute_dtype: DType,
    /// The attention implementation.
    pub attention: AttentionKernel,
    /// Attention softmax in f32 even though the compute dtype is f16.
    pub upcast_attention: bool,
    /// Resident or streamed.
    pub load_mode: LoadMode,
    /// How held weights are widened per layer.
    pub widening: Widening,
    /// Matrix products (convolutions, linear layers) multiply in bf16 with f32 sums around f32
    /// activations: `--bf16-unet`/`--bf16-vae` on a CPU with AVX512-BF16.
    pub bf16_products: bool,
    /// Estimated bytes of its held weights.
    pub weight_bytes: u64,
    /// How many of those bytes stay on the device: all of them when resident; when streamed,
    /// ComfyUI's partial-load budget (zero with `--novram`), filled in load order, the rest
    /// copied over per layer.
    pub resident_budget_bytes: u64,
    /// The op families it needs in `compute_dtype` (matmul; conv for UNets, VAEs, SD3).
    #[serde(skip)]
    pub op_families: Vec<OpFamily>,
    /// One line: the inputs that drove each decision.
    pub reason: String,
}

impl ComponentPlan {
    /// Checks this plan against the profile of the device it is placed on: the held form must be
    /// holdable, the compute dtype computable for every needed op family, and the widening path
    /// must exist there. The planner never produces a plan that fails this.
    pub fn check(&self, profile: &CapabilityProfile) -> Result<(), RuntimeError> {
        let violation = |problem: String| RuntimeError::PlanViolation {
            component: self.component,
            profile: profile.name.clone(),
            problem,
        };
        if self.device.backend() != profile.backend {
            return Err(violation(format!(
                "placed on {} but the profile is {}",
                self.device, profile.backend
            )));
        }
        match self.held_as {
            HeldAs::Dtype(dtype) if !profile.can_hold_candle(dtype) => {
                return Err(violation(format!("cannot hold {}", dtype.as_str())));
            }
            HeldAs::Quantized(g) if !profile.can_hold(StorageDType::Gguf(g)) => {
                return Err(violation(format!("no quantised kernels for {}", g.name())));
            }
            _ => {}
        }
        if !profile.computes(OpFamily::Matmul, self.compute_dtype)
            || !profile.computes_for(&self.op_families, self.compute_dtype)
        {
            return Err(violation(format!(
                "cannot compute {:?} in {}",
                self.op_families,
                self.compute_dtype.as_str()
            )));
        }
        let compute_storage = crate::capability::storage_for_candle(self.compute_dtype);
        match (self.widening, self.held_as) {
            (Widening::None, HeldAs::Dtype(dtype)) if dtype != self.compute_dtype => {
                Err(violation(format!(
                    "held {} but no widening to compute dtype",
                    dtype.as_str()
                )))
            }
            (Widening::CastOnDevice | Widening::ScaledFp8, HeldAs::Dtype(dtype)) => {
                let from = crate::capability::storage_for_candle(dtype);
                match (from, compute_storage) {
                    (Some(from), Some(to)) if profile.can_cast(from, to) => Ok(()),
                    _ => Err(violation(format!(
                        "no on-device cast {} → {}",
                        dtype.as_str(),
                        self.compute_dtype.as_str()
                    ))),
                }
            }
            (Widening::LookupTable, HeldAs::Dtype(dtype)) if dtype != DType::U8 => {
                Err(violation(format!(
                    "lookup-table widening needs u8 bytes, held {}",
                    dtype.as_str()
                )))
            }
            (Widening::GgufDequant, HeldAs::Dtype(_)) => Err(violation(
                "GGUF widening without quantised weights".to_string(),
            )),
            (Widening::GgufDequant, HeldAs::Quantized(_)) => Ok(()),
            (_, HeldAs::Quantized(_)) => Err(violation(
                "quantised weights need GGUF widening".to_string(),
            )),
            _ => Ok(()),
        }
    }
}

/// The decisions for a whole checkpoint on one profile.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// The profile planned for.
    pub profile: String,
    /// One plan per component, in detection order (diffusion model first).
    #[serde(serialize_with = "serialize_components")]
    pub components: Vec<ComponentPlan>,
    /// Estimated peak weight bytes on the main device (for CPU and unified memory: everything),
    /// weights only; [`Plan::memory`] adds widening and activations.
    pub peak_bytes: u64,
    /// Estimated weight bytes held in host memory (CPU components, streamed weights).
    pub host_bytes: u64,
    /// Whether text encoders are freed before the diffusion model runs (the nodes act on it).
    pub text_encoders: TextEncoderPolicy,
    /// Why [`Plan::text_encoders`] was chosen.
    pub text_encoders_reason: String,
    /// The expected peak device and host memory of one generation, per part and in total.
    pub memory: MemoryEstimate,
    /// Plan-wide observations (ignored flags, ComfyUI deviations, memory warnings).
    pub notes: Vec<String>,
}

fn serialize_components<S: Serializer>(
    components: &[ComponentPlan],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut map = serializer.serialize_map(Some(components.len()))?;
    for plan in components {
        map.serialize_entry(plan.component.name(), plan)?;
    }
    map.end()
}

impl Plan {
    /// The plan for `kind`, if the checkpoint has that component.
    pub fn component(&self, kind: ComponentKind) -> Option<&ComponentPlan> {
        self.components.iter().find(|plan| plan.component == kind)
    }

    /// The object `kiln doctor --json` prints under `plan`: keyed by component name, each with
    /// `device`, `storage_dtype`, `held_as`, `compute_dtype`, `attention`, `upcast_attention`,
    /// `load_mode`, `widening`, `weight_bytes`, `resident_budget_bytes`, `reason`.
    pub fn to_json(&self) -> serde_json::Value {
        let mut map = serde_json::Map::new();
        for plan in &self.components {
            // Serialising plain data with string keys cannot fail.
            let value = serde_json::to_value(plan).unwrap_or(serde_json::Value::Null);
            map.insert(plan.component.name().to_string(), value);
        }
        serde_json::Value::Object(map)
    }
}
