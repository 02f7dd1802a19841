//! `kiln-runtime` decides where and in which precision each part of a model runs, and loads its
//! weights so that no device ever receives a dtype it cannot hold.
//!
//! * [`CapabilityProfile`]: what one device holds, casts and computes in, as candle 0.11 really
//!   implements it (CPU, CUDA by compute capability, Metal by macOS version), plus its memory.
//!   Real ones come from [`detect_host`], [`probe_cuda`], [`probe_metal`] or [`detect_device`];
//!   simulated ones by name from [`simulated`] / [`simulated_profile`] ([`profile_names`] lists
//!   them: `cpu`, `metal-m1`, `metal-m3`, `cuda-sm75`, `cuda-sm86`, `cuda-sm89`, `cuda-sm90`).
//! * [`Planner`]: ComfyUI's device, dtype, attention and memory rules (`--cpu`, `--force-fp16`,
//!   `--fp8_e4m3fn-unet`, `--lowvram`, …, given as [`PlanOptions`]) evaluated against a profile.
//!   It follows ComfyUI except where ComfyUI would crash or bloat memory: fp8, scaled fp8 and
//!   GGUF weights stay 8-bit everywhere, and a dtype the device cannot hold is held as bytes or
//!   replaced, never uploaded. The result is a [`Plan`] of [`ComponentPlan`]s, each with a
//!   one-line reason; [`Plan::to_json`] is what `kiln doctor --json` prints under `plan`.
//! * [`MemoryEstimate`] ([`Plan::memory`]): the expected peak device and host memory of one
//!   generation, per part (resident weights, largest widened layer, activations at the default
//!   resolution), and the [`TextEncoderPolicy`] ([`Plan::text_encoders`]).
//!   [`Planner::plan_checkpoint`] and [`Planner::plan_with_tensors`] measure layers from headers.
//! * [`WeightStore`]: loads one component of a checkpoint as planned, as [`HeldTensor`]s
//!   (native, fp8 bytes widened by a lookup table, native fp8, or GGUF blocks) that widen to the
//!   compute dtype per layer.
//!
//! ```
//! use std::collections::BTreeMap;
//! use kiln_detect::{Architecture, Component, ComponentKind, Detection, Layout};
//! use kiln_runtime::{simulated_profile, LoadMode, PlanOptions, Planner, Widening};
//! use kiln_weights::StorageDType;
//!
//! # fn main() -> Result<(), kiln_runtime::RuntimeError> {
//! let unet = Component {
//!     kind: ComponentKind::DiffusionModel,
//!     layout: Layout::Ldm,
//!     prefix: "model.diffusion_model.".into(),
//!     params: 859_520_964,
//!     dtypes: BTreeMap::from([(StorageDType::F8E4M3, 859_520_964)]),
//!     dominant_dtype: StorageDType::F8E4M3,
//!     scaled_fp8: None,
//!     facts: BTreeMap::new(),
//!     keys: BTreeMap::new(),
//! };
//! let detection = Detection {
//!     architecture: Architecture::Sd1,
//!     variant: "v1.5".into(),
//!     prediction: None,
//!     components: vec![unet],
//!     unclaimed_keys: 0,
//!     notes: vec![],
//! };
//! let planner = Planner::new(PlanOptions::default(), simulated_profile("metal-m1")?);
//! let plan = planner.plan(&detection)?;
//! let unet = plan.component(ComponentKind::DiffusionModel).unwrap();
//! assert_eq!(unet.storage_dtype, StorageDType::F8E4M3); // still 8-bit…
//! assert_eq!(unet.widening, Widening::LookupTable); // …held as u8, widened per layer
//! assert_eq!(unet.compute_dtype, candle_core::DType::F16);
//! assert_eq!(unet.load_mode, LoadMode::Resident);
//! println!("{}", plan.to_json());
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]

mod attention;
mod capability;
mod dtype_rules;
mod error;
mod heap;
mod held;
mod host;
mod kept;
mod load;
mod memory;
mod options;
mod peak;
mod plan;
mod planner;
mod profiles;

pub use capability::{BackendKind, CapabilityProfile, CudaCapability, MacOsVersion, OpFamily};
pub use error::RuntimeError;
pub use heap::return_free_heap;
pub use held::{canonical_fp8_codes, HeldTensor, MappedValues};
pub use host::{detect_device, detect_host, probe_cuda, probe_metal};
pub use load::{InUse, WeightStore};
pub use memory::streaming_budget;
pub use options::{
    AttentionRequest, ForcedDType, GlobalPrecision, PlanOptions, UpcastRequest, VramMode,
};
pub use peak::{MemoryEstimate, PartMemory, TextEncoderPolicy};
pub use plan::{AttentionKernel, ComponentPlan, DevicePlacement, HeldAs, LoadMode, Plan, Widening};
pub use planner::Planner;
pub use profiles::{profile_names, simulated, simulated_profile};
