//! Peak memory of a plan: per part, the weights it keeps on its device and in host memory, the
//! largest layer it widens at once and (for the diffusion model) an activation estimate at the
//! default resolution; the text-encoder policy; the peaks of the device and host pools over the
//! phases of one generation (encode, sample, decode).

use std::collections::BTreeMap;

use kiln_detect::{Architecture, Component, ComponentKind, Detection};
use kiln_weights::TensorInfo;
use serde::{Serialize, Serializer};

use crate::capability::{BackendKind, CapabilityProfile};
use crate::memory::gib;
use crate::options::{PlanOptions, VramMode};
use crate::plan::{AttentionKernel, ComponentPlan, DevicePlacement, LoadMode, Widening};

const MIB: u64 = 1 << 20;

/// Whether text encoders stay loaded while the diffusion model samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TextEncoderPolicy {
    /// Keep them loaded: everything fits, or `--gpu-only`/`--highvram` asked for it.
    Keep,
    /// Free them once the prompt is encoded, before the diffusion model is loaded.
    FreeBeforeDiffusion,
}

fn serialize_kind<S: Serializer>(kind: &ComponentKind, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(kind.name())
}

/// The expected memory of one part while it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartMemory {
    /// Which part.
    #[serde(serialize_with = "serialize_kind")]
    pub component: ComponentKind,
    /// Where it runs (its transients, widened layers and activations, live there).
    pub device: DevicePlacement,
    /// Weight bytes on its device (all of them when resident, the resident share when streamed;
    /// zero for parts placed on the CPU).
    pub device_bytes: u64,
    /// Weight bytes in host memory (parts on the CPU, the streamed share of the others).
    pub host_bytes: u64,
    /// One layer at a time in the compute dtype, plus its held form when it is copied over
    /// (streaming): the transient cost of per-layer widening. Zero when nothing widens.
    pub largest_layer_bytes: u64,
    /// Activation estimate (diffusion model only, at [`MemoryEstimate::resolution`]).
    pub activation_bytes: u64,
}

/// What a plan expects to use at its peak.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemoryEstimate {
    /// Peak bytes on the compute device (for the CPU and unified memory: the one shared pool).
    pub device_peak_bytes: u64,
    /// Peak bytes in host memory (equal to the device peak when the pools are one).
    pub host_peak_bytes: u64,
    /// True when device and host memory are one pool (CPU profile, unified memory, `--cpu`).
    pub shared_pool: bool,
    /// The image size the activation estimate is for (`[width, height]`).
    pub resolution: [u32; 2],
    /// Per part, in plan order.
    pub parts: Vec<PartMemory>,
    /// Whether the largest layer of every part was measured from tensor shapes (false when the
    /// plan was made from a detection alone: largest layers then count as zero).
    pub layers_measured: bool,
}

/// The image size a family is usually sampled at: 512² for SD1/SD2 (768² for SD2 768-v), 1024²
/// for SDXL, SD3 and Flux.
pub(crate) fn default_resolution(detection: &Detection) -> u32 {
    match detection.architecture {
        Architecture::Sd1 => 512,
        Architecture::Sd2 if detection.variant.contains("768") => 768,
        Architecture::Sd2 => 512,
        _ => 1024,
    }
}

/// ComfyUI's `memory_usage_factor` of each family (`comfy/supported_models.py`).
fn memory_usage_factor(architecture: Architecture) -> f64 {
    match architecture {
        Architecture::Sdxl => 0.8,
        Architecture::Sd3 => 1.2,
        Architecture::Flux => 3.1,
        _ => 1.0,
    }
}

/// ComfyUI's `BaseModel.memory_required` for a batch of 2 (cond + uncond, as ComfyUI reserves
/// it) of latents at `resolution` (8× downscaled): `area × dtype size × 0.01 × factor` MiB, or
/// `area × 0.15 × factor` MiB for plain attention. ComfyUI applies the larger formula to every
/// kernel but xformers/flash; Kiln's split and sub-quadratic kernels size their slices to free
/// memory, so only plain attention, which holds the whole score matrix, gets it here.
pub(crate) fn activation_bytes(
    architecture: Architecture,
    resolution: u32,
    plan: &ComponentPlan,
) -> u64 {
    let side = u64::from(resolution / 8);
    let area = (2 * side * side) as f64;
    let factor = memory_usage_factor(architecture);
    let mib = match plan.attention {
        AttentionKernel::Fused
        | AttentionKernel::Flash
        | AttentionKernel::Split
        | AttentionKernel::SubQuadratic => {
            area * plan.compute_dtype.size_in_bytes() as f64 * 0.01 * factor
        }
        AttentionKernel::Plain => area * 0.15 * factor,
    };
    (mib * MIB as f64) as u64
}

/// Elements of the largest tensor of `component` (a concatenated key counts its parts together),
/// from the tensor tables of the checkpoint's files (indexed like the key map's file indices).
/// `None` when a key's tensor is not in the tables.
pub(crate) fn largest_tensor_elements(
    component: &Component,
    files: &[&[TensorInfo]],
) -> Option<u64> {
    let tables: Vec<BTreeMap<&str, u64>> = files
        .iter()
        .map(|tensors| {
            tensors
                .iter()
                .map(|info| (info.name.as_str(), info.elements()))
                .collect()
        })
        .collect();
    let mut largest = 0u64;
    for source in component.keys.values() {
        let mut elements = 0u64;
        for (file, name) in source.tensors() {
            elements = elements.saturating_add(*tables.get(file)?.get(name)?);
        }
        largest = largest.max(elements);
    }
    Some(largest)
}

/// The memory of one part of `params` elements. `largest_elements` is its largest tensor, when
/// known.
pub(crate) fn part_memory(
    plan: &ComponentPlan,
    params: u64,
    largest_elements: Option<u64>,
    activation: u64,
) -> PartMemory {
    let (device_bytes, host_bytes) = match (plan.device, plan.load_mode) {
        (DevicePlacement::Cpu, _) => (0, plan.weight_bytes),
        (_, LoadMode::Resident) => (plan.weight_bytes, 0),
        (_, LoadMode::Streamed) => {
            let resident = plan.resident_budget_bytes.min(plan.weight_bytes);
            (resident, plan.weight_bytes - resident)
        }
    };
    let elements = largest_elements.unwrap_or(0);
    let widened = elements.saturating_mul(plan.compute_dtype.size_in_bytes() as u64);
    let held = if plan.weight_bytes == 0 || params == 0 {
        0
    } else {
        // The held form of that layer, at the part's average bytes per element.
        ((elements as u128 * plan.weight_bytes as u128) / params as u128) as u64
    };
    let largest_layer_bytes = match (plan.load_mode, plan.widening) {
        (LoadMode::Streamed, Widening::None) => held,
        (LoadMode::Streamed, _) => held.saturating_add(widened),
        (LoadMode::Resident, Widening::None) => 0,
        (LoadMode::Resident, _) => widened,
    };
    PartMemory {
        component: plan.component,
        device: plan.device,
        device_bytes,
        host_bytes,
        largest_layer_bytes,
        activation_bytes: activation,
    }
}

/// Text encoders are freed before the diffusion model runs when all parts together do not fit
/// the memory they share, or when `--disable-smart-memory` unloads every model after use; kept
/// with `--gpu-only`/`--highvram`, or when everything fits. Returns the policy and why.
pub(crate) fn text_encoder_policy(
    parts: &[PartMemory],
    pools: &Pools<'_>,
    options: &PlanOptions,
) -> (TextEncoderPolicy, String) {
    match options.vram {
        VramMode::GpuOnly => {
            return (
                TextEncoderPolicy::Keep,
                "text encoders kept loaded (--gpu-only)".to_string(),
            )
        }
        VramMode::High => {
            return (
                TextEncoderPolicy::Keep,
                "text encoders kept loaded (--highvram)".to_string(),
            )
        }
        _ => {}
    }
    if options.disable_smart_memory {
        return (
            TextEncoderPolicy::FreeBeforeDiffusion,
            "text encoders freed after encoding (--disable-smart-memory)".to_string(),
        );
    }
    // A diffusion model loaded on its own (UNETLoader): its text encoders come from other
    // files, whose sizes this plan does not know.
    if !parts.iter().any(|p| p.component.is_text_encoder()) {
        return (
            TextEncoderPolicy::Keep,
            "no text encoders in this file; separately loaded ones are kept".to_string(),
        );
    }
    let (device, host) = pools.demand(parts, TextEncoderPolicy::Keep);
    let device_free = pools.device.free_memory;
    let host_free = pools.host.free_memory;
    let over_device = !pools.shared && device > device_free;
    let over_host = host > host_free;
    if over_device || over_host {
        let (need, free, pool) = if over_device {
            (device, device_free, pools.device.name.as_str())
        } else {
            (host, host_free, pools.host.name.as_str())
        };
        (
            TextEncoderPolicy::FreeBeforeDiffusion,
            format!(
                "text encoders freed before sampling: all parts need {} but {pool} has {} free",
                gib(need),
                gib(free)
            ),
        )
    } else {
        (
            TextEncoderPolicy::Keep,
            format!(
                "text encoders kept loaded: all parts fit ({} device, {} host)",
                gib(device),
                gib(host)
            ),
        )
    }
}

/// The memory pools a plan draws on.
pub(crate) struct Pools<'a> {
    /// The compute device's profile.
    pub(crate) device: &'a CapabilityProfile,
    /// The host profile.
    pub(crate) host: &'a CapabilityProfile,
    /// One pool (CPU, unified memory, `--cpu`).
    pub(crate) shared: bool,
}

impl Pools<'_> {
    /// Whether a plan on `device` with `options` has one memory pool.
    pub(crate) fn is_shared(device: &CapabilityProfile, options: &PlanOptions) -> bool {
        options.cpu || device.unified_memory || device.backend == BackendKind::Cpu
    }

    /// Peak (device, host) bytes over the phases of a generation: encoding (text encoders, and
    /// the other parts when they stay loaded), sampling (diffusion model weights, its largest
    /// widened layer and activations, plus the text encoders if kept) and decoding (the VAE and
    /// the diffusion model, which stays loaded). Shared pools report the same sum twice.
    pub(crate) fn demand(&self, parts: &[PartMemory], policy: TextEncoderPolicy) -> (u64, u64) {
        let sum = |filter: &dyn Fn(&PartMemory) -> bool, layer: bool| {
            parts
                .iter()
                .filter(|p| filter(p))
                .fold((0u64, 0u64), |(d, h), p| {
                    let transient = if layer {
                        p.largest_layer_bytes.saturating_add(p.activation_bytes)
                    } else {
                        0
                    };
                    if p.device == DevicePlacement::Cpu {
                        // Its transients live in host memory too.
                        (d, h.saturating_add(p.host_bytes).saturating_add(transient))
                    } else {
                        (
                            d.saturating_add(p.device_bytes).saturating_add(transient),
                            h.saturating_add(p.host_bytes),
                        )
                    }
                })
        };
        let is_encoder = |p: &PartMemory| p.component.is_text_encoder();
        let is_diffusion = |p: &PartMemory| p.component == ComponentKind::DiffusionModel;
        let is_vae = |p: &PartMemory| p.component == ComponentKind::Vae;
        let keep = policy == TextEncoderPolicy::Keep;
        // Each phase: the running part with its transients, plus whatever else stays loaded.
        let phases = [
            (
                sum(&is_encoder, true),
                sum(&|p: &PartMemory| keep && !is_encoder(p), false),
            ),
            (
                sum(&is_diffusion, true),
                sum(
                    &|p: &PartMemory| is_vae(p) || (keep && is_encoder(p)),
                    false,
                ),
            ),
            (
                sum(&is_vae, true),
                sum(
                    &|p: &PartMemory| is_diffusion(p) || (keep && is_encoder(p)),
                    false,
                ),
            ),
        ];
        let (mut device, mut host) = (0u64, 0u64);
        for ((run_d, run_h), (rest_d, rest_h)) in phases {
            if self.shared {
                let total = run_d
                    .saturating_add(run_h)
                    .saturating_add(rest_d)
                    .saturating_add(rest_h);
                device = device.max(total);
                host = device;
            } else {
                device = device.max(run_d.saturating_add(rest_d));
                host = host.max(run_h.saturating_add(rest_h));
            }
        }
        (device, host)
    }
}
