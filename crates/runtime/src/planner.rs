//! The planner: from a detection, the user's flags and a capability profile to a [`Plan`] that
//! says, per component, where it runs, how its weights are held, what it computes in, its
//! attention kernel and load mode, and why.

use candle_core::DType;
use kiln_detect::{Checkpoint, Component, ComponentKind, Detection};
use kiln_weights::{StorageDType, TensorInfo};

use crate::attention;
use crate::capability::{BackendKind, CapabilityProfile};
use crate::dtype_rules::{self, Precision, Target};
use crate::held::{hold_target, HoldTarget};
use crate::memory::{self, gib};
use crate::options::{GlobalPrecision, PlanOptions, VramMode};
use crate::peak::{self, MemoryEstimate, Pools, TextEncoderPolicy};
use crate::plan::{ComponentPlan, DevicePlacement, LoadMode, Plan, Widening};
use crate::RuntimeError;

const GIB: u64 = 1 << 30;

/// Turns detections into plans for one profile and one set of flags. Immutable once built.
///
/// Components the plan puts on the CPU while the profile is a GPU (text encoders on Metal,
/// `--cpu-vae`) are planned against the *host* profile: by default a generic CPU sharing the
/// GPU's memory when it is unified, 32 GiB otherwise; pass the probed host with
/// [`Planner::with_host`].
#[derive(Debug, Clone)]
pub struct Planner {
    options: PlanOptions,
    profile: CapabilityProfile,
    host: CapabilityProfile,
}

/// The generic host CPU paired with a GPU profile.
fn default_host(profile: &CapabilityProfile) -> CapabilityProfile {
    if profile.backend == BackendKind::Cpu {
        return profile.clone();
    }
    let (total, free) = if profile.unified_memory {
        (profile.total_memory, profile.free_memory)
    } else {
        (32 * GIB, 28 * GIB)
    };
    CapabilityProfile::cpu(
        &format!("{}-host", profile.name),
        "host CPU next to the planned GPU",
        total,
        free,
    )
}

impl Planner {
    /// A planner for `profile` honouring `options`.
    pub fn new(options: PlanOptions, profile: CapabilityProfile) -> Self {
        let host = default_host(&profile);
        Planner {
            options,
            profile,
            host,
        }
    }

    /// Uses `host` (e.g. [`crate::detect_host`]) for components placed on the CPU.
    pub fn with_host(mut self, host: CapabilityProfile) -> Self {
        self.host = host;
        self
    }

    /// The flags.
    pub fn options(&self) -> &PlanOptions {
        &self.options
    }

    /// The device profile.
    pub fn profile(&self) -> &CapabilityProfile {
        &self.profile
    }

    /// The host profile used for CPU placements.
    pub fn host(&self) -> &CapabilityProfile {
        &self.host
    }

    /// The profile governing a placement: the host for the CPU, the device profile otherwise.
    pub fn profile_for(&self, placement: DevicePlacement) -> &CapabilityProfile {
        if placement == DevicePlacement::Cpu {
            &self.host
        } else {
            &self.profile
        }
    }

    /// The GPU placement of this profile (`--cuda-device` picks the CUDA ordinal).
    fn gpu(&self) -> DevicePlacement {
        match self.profile.backend {
            BackendKind::Cpu => DevicePlacement::Cpu,
            BackendKind::Cuda => DevicePlacement::Cuda(self.options.cuda_device.unwrap_or(0)),
            BackendKind::Metal => DevicePlacement::Metal,
        }
    }

    /// Where `kind` runs (spec §2.2) and why.
    fn placement(&self, kind: ComponentKind) -> (DevicePlacement, String) {
        if self.options.cpu {
            return (DevicePlacement::Cpu, "on cpu (--cpu)".to_string());
        }
        if self.profile.backend == BackendKind::Cpu {
            return (
                DevicePlacement::Cpu,
                format!("on cpu (profile {})", self.profile.name),
            );
        }
        let gpu = self.gpu();
        let on_gpu = (gpu, format!("on {gpu}"));
        match kind {
            ComponentKind::DiffusionModel => on_gpu,
            ComponentKind::Vae if self.options.cpu_vae => {
                (DevicePlacement::Cpu, "on cpu (--cpu-vae)".to_string())
            }
            ComponentKind::Vae => on_gpu,
            _ if self.options.vram == VramMode::GpuOnly => (gpu, format!("on {gpu} (--gpu-only)")),
            _ if self.profile.unified_memory => (
                DevicePlacement::Cpu,
                "on cpu: ComfyUI runs text encoders on the CPU with unified memory (--gpu-only \
                 moves them)"
                    .to_string(),
            ),
            _ if matches!(self.options.vram, VramMode::Low | VramMode::NoVram) => (
                DevicePlacement::Cpu,
                "on cpu: --lowvram/--novram keep text encoders on the CPU".to_string(),
            ),
            _ if self.options.precision == GlobalPrecision::ForceFp32 => (
                DevicePlacement::Cpu,
                "on cpu: ComfyUI keeps text encoders on the CPU without fp16 (--force-fp32)"
                    .to_string(),
            ),
            _ => on_gpu,
        }
    }

    /// Plans every component of `detection`. Without tensor shapes the largest layer of each part
    /// is unknown and counts as zero in [`Plan::memory`]; [`Planner::plan_checkpoint`] and
    /// [`Planner::plan_with_tensors`] measure it.
    pub fn plan(&self, detection: &Detection) -> Result<Plan, RuntimeError> {
        self.plan_measured(detection, None)
    }

    /// Plans an opened checkpoint, measuring each part's largest layer from its files' headers.
    pub fn plan_checkpoint(&self, checkpoint: &Checkpoint) -> Result<Plan, RuntimeError> {
        let tables: Vec<&[TensorInfo]> = checkpoint.files().iter().map(|f| f.tensors()).collect();
        self.plan_measured(checkpoint.detection(), Some(&tables))
    }

    /// Plans `detection` with the tensor tables of its files (`files[i]` for key-map file index
    /// `i`), e.g. from headers alone ([`kiln_detect::detect`] over [`kiln_detect::FileTensors`]):
    /// no tensor data is needed.
    pub fn plan_with_tensors(
        &self,
        detection: &Detection,
        files: &[&[TensorInfo]],
    ) -> Result<Plan, RuntimeError> {
        self.plan_measured(detection, Some(files))
    }

    fn plan_measured(
        &self,
        detection: &Detection,
        files: Option<&[&[TensorInfo]]>,
    ) -> Result<Plan, RuntimeError> {
        let mut components = Vec::with_capacity(detection.components.len());
        for component in &detection.components {
            let plan = self.plan_component(component, detection)?;
            plan.check(self.profile_for(plan.device))?;
            components.push(plan);
        }
        let mut notes = Vec::new();
        let planned_on = if self.options.cpu && self.profile.backend != BackendKind::Cpu {
            notes.push(format!(
                "--cpu: planned on {} instead of {}",
                self.host.name, self.profile.name
            ));
            self.host.name.clone()
        } else {
            self.profile.name.clone()
        };
        self.add_notes(&components, &mut notes);
        let (peak_bytes, host_bytes) = self.peak(&components);
        let main = if self.options.cpu {
            &self.host
        } else {
            &self.profile
        };
        if peak_bytes > main.free_memory {
            notes.push(format!(
                "estimated {} of weights exceed the {} free on {}",
                gib(peak_bytes),
                gib(main.free_memory),
                main.name
            ));
        }
        let (memory, text_encoders, text_encoders_reason) =
            self.memory(detection, &components, files, main);
        if memory.device_peak_bytes > main.free_memory && peak_bytes <= main.free_memory {
            notes.push(format!(
                "estimated peak of {} (weights, widened layers, activations) exceeds the {} \
                 free on {}",
                gib(memory.device_peak_bytes),
                gib(main.free_memory),
                main.name
            ));
        }
        Ok(Plan {
            profile: planned_on,
            components,
            peak_bytes,
            host_bytes,
            text_encoders,
            text_encoders_reason,
            memory,
            notes,
        })
    }

    /// The memory estimate and text-encoder policy of planned `components` (in detection order).
    fn memory(
        &self,
        detection: &Detection,
        components: &[ComponentPlan],
        files: Option<&[&[TensorInfo]]>,
        main: &CapabilityProfile,
    ) -> (MemoryEstimate, TextEncoderPolicy, String) {
        let resolution = peak::default_resolution(detection);
        let mut measured = files.is_some();
        let mut parts = Vec::with_capacity(components.len());
        for (plan, component) in components.iter().zip(&detection.components) {
            let largest = files.and_then(|tables| peak::largest_tensor_elements(component, tables));
            measured &= largest.is_some();
            let activation = if plan.component == ComponentKind::DiffusionModel {
                peak::activation_bytes(detection.architecture, resolution, plan)
            } else {
                0
            };
            parts.push(peak::part_memory(
                plan,
                component.params,
                largest,
                activation,
            ));
        }
        let pools = Pools {
            device: main,
            host: &self.host,
            shared: Pools::is_shared(&self.profile, &self.options),
        };
        let (policy, why) = peak::text_encoder_policy(&parts, &pools, &self.options);
        let (device_peak_bytes, host_peak_bytes) = pools.demand(&parts, policy);
        let memory = MemoryEstimate {
            device_peak_bytes,
            host_peak_bytes,
            shared_pool: pools.shared,
            resolution: [resolution, resolution],
            parts,
            layers_measured: measured,
        };
        (memory, policy, why)
    }

    /// Plan-wide observations about fp8 compute and deviations from ComfyUI.
    fn add_notes(&self, components: &[ComponentPlan], notes: &mut Vec<String>) {
        let any_fp8 = components.iter().any(|p| p.storage_dtype.is_fp8());
        if any_fp8 && (self.profile.fp8_matmul || self.options.assume_fp8_compute) {
            notes.push(format!(
                "{} could multiply fp8 directly, but candle 0.11 has no fp8 matmul: fp8 weights \
                 are widened per layer",
                self.profile.label()
            ));
        }
        let kept_eight_bit = components.iter().any(|p| {
            p.component == ComponentKind::DiffusionModel
                && dtype_rules::is_eight_bit(p.storage_dtype)
        });
        if kept_eight_bit {
            notes.push(
                "8-bit diffusion weights stay 8-bit in memory on every backend (ComfyUI up-casts \
                 them when a 16-bit copy fits)"
                    .to_string(),
            );
        }
    }

    /// (peak bytes on the main device, bytes in host memory). With unified memory or a CPU
    /// profile both pools are one, so the peak counts everything.
    fn peak(&self, components: &[ComponentPlan]) -> (u64, u64) {
        let budget = memory::streaming_budget(&self.profile, &self.options);
        let mut device = 0u64;
        let mut host = 0u64;
        for plan in components {
            match (plan.device, plan.load_mode) {
                (DevicePlacement::Cpu, _) => host = host.saturating_add(plan.weight_bytes),
                (_, LoadMode::Resident) => device = device.saturating_add(plan.weight_bytes),
                (_, LoadMode::Streamed) => {
                    device = device.saturating_add(plan.weight_bytes.min(budget));
                    host = host.saturating_add(plan.weight_bytes);
                }
            }
        }
        if self.options.cpu
            || self.profile.unified_memory
            || self.profile.backend == BackendKind::Cpu
        {
            (device.saturating_add(host), host)
        } else {
            (device, host)
        }
    }

    /// Storage and compute dtype for one component on its device.
    fn precision(
        &self,
        target: &Target<'_>,
        component: &Component,
        detection: &Detection,
    ) -> Result<Precision, RuntimeError> {
        match component.kind {
            ComponentKind::DiffusionModel => dtype_rules::diffusion_precision(
                target,
                component,
                detection.architecture,
                &detection.variant,
            ),
            ComponentKind::Vae => dtype_rules::vae_precision(target, component),
            ComponentKind::ClipL
            | ComponentKind::ClipG
            | ComponentKind::OpenClipH
            | ComponentKind::T5xxl => dtype_rules::text_encoder_precision(target, component),
        }
    }

    fn plan_component(
        &self,
        component: &Component,
        detection: &Detection,
    ) -> Result<ComponentPlan, RuntimeError> {
        let kind = component.kind;
        let (device, device_why) = self.placement(kind);
        let profile = self.profile_for(device);
        let families = dtype_rules::op_families(kind, detection.architecture);
        let target = Target {
            profile,
            options: &self.options,
            families: &families,
        };
        let precision = self.precision(&target, component, detection)?;
        let compute = precision.compute;
        let source = component
            .scaled_fp8
            .unwrap_or_else(|| dtype_rules::dominant_storage(component));
        let hold = hold_target(source, true, precision.storage, compute, profile).ok_or(
            RuntimeError::UnsupportedStorage {
                component: kind,
                dtype: source,
            },
        )?;
        let scaled = component.scaled_fp8.is_some() && precision.storage.is_fp8();
        let (storage, widening, hold_why) = describe_hold(hold, &precision, scaled, profile);
        let weight_bytes = estimate_bytes(component, storage, compute, profile);
        let (load_mode, load_why) = memory::load_mode(weight_bytes, device, profile, &self.options);
        let resident_budget_bytes = match load_mode {
            LoadMode::Resident => weight_bytes,
            LoadMode::Streamed => {
                memory::streaming_budget(profile, &self.options).min(weight_bytes)
            }
        };
        let (attention, attention_why) = attention::choose(kind, self.options.attention, profile);
        let (upcast_attention, upcast_why) =
            attention::upcast(self.options.upcast, compute, profile, self.profile.macos);
        let mut reason = vec![device_why, precision.storage_why];
        reason.extend(hold_why);
        reason.push(precision.compute_why);
        reason.push(attention_why);
        reason.extend(upcast_why);
        reason.push(load_why);
        Ok(ComponentPlan {
            component: kind,
            device,
            storage_dtype: storage,
            held_as: hold.held_as(),
            compute_dtype: compute,
            attention,
            upcast_attention,
            load_mode,
            widening,
            bf16_products: precision.bf16_products,
            weight_bytes,
            resident_budget_bytes,
            op_families: families,
            reason: reason.join("; "),
        })
    }
}

/// The storage dtype actually kept, the widening, and why, for a component's dominant tensors.
fn describe_hold(
    hold: HoldTarget,
    precision: &Precision,
    scaled: bool,
    profile: &CapabilityProfile,
) -> (StorageDType, Widening, Option<String>) {
    let compute = precision.compute.as_str();
    let label = profile.label();
    let scale = if scaled { " × per-tensor scale" } else { "" };
    let fp8_widening = if scaled {
        Widening::ScaledFp8
    } else {
        Widening::LookupTable
    };
    match hold {
        HoldTarget::Fp8Bytes(format) => {
            let why = if format == StorageDType::F8E5M2 {
                "candle has no fp8_e5m2 dtype".to_string()
            } else {
                format!("{label} cannot hold {format}")
            };
            (
                format,
                fp8_widening,
                Some(format!(
                    "{why} → kept as 8-bit bytes (u8), widened per layer by lookup table to \
                     {compute}{scale}"
                )),
            )
        }
        HoldTarget::Fp8Native => (
            StorageDType::F8E4M3,
            if scaled {
                Widening::ScaledFp8
            } else {
                Widening::CastOnDevice
            },
            Some(format!(
                "held as f8e4m3 on {label}, cast per layer to {compute}{scale}"
            )),
        ),
        HoldTarget::Quantized(g) => (
            StorageDType::Gguf(g),
            Widening::GgufDequant,
            Some(format!(
                "held as GGUF {} blocks, quantised matmul",
                g.name()
            )),
        ),
        HoldTarget::Native(dtype) if dtype_rules::is_quantized(precision.storage) => (
            dtype_rules::storage_of(dtype),
            if dtype == precision.compute {
                Widening::None
            } else {
                Widening::CastOnDevice
            },
            Some(format!(
                "{label} has no {} kernels → dequantised to {} at load",
                precision.storage,
                dtype.as_str()
            )),
        ),
        HoldTarget::Native(dtype) if dtype == precision.compute => {
            (dtype_rules::storage_of(dtype), Widening::None, None)
        }
        HoldTarget::Native(dtype) => (
            dtype_rules::storage_of(dtype),
            Widening::CastOnDevice,
            Some(format!(
                "held {}, cast per layer to {compute}",
                dtype.as_str()
            )),
        ),
    }
}

/// Held bytes of a component: each stored dtype's elements in the form it will be held in.
fn estimate_bytes(
    component: &Component,
    storage: StorageDType,
    compute: DType,
    profile: &CapabilityProfile,
) -> u64 {
    let held_bytes = |source: StorageDType, elements: u64| {
        hold_target(source, true, storage, compute, profile)
            .map(|target| target.bytes(elements))
            .unwrap_or(elements)
    };
    if component.dtypes.is_empty() {
        return held_bytes(dtype_rules::dominant_storage(component), component.params);
    }
    component
        .dtypes
        .iter()
        .map(|(dtype, elements)| held_bytes(*dtype, *elements))
        .fold(0u64, u64::saturating_add)
}
