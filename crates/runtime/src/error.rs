//! `RuntimeError`: every way choosing a profile, planning or loading weights can fail, each naming
//! the profile, component or tensor involved.

use kiln_detect::ComponentKind;
use kiln_weights::StorageDType;

/// An error from the runtime: profile lookup, planning, plan validation or weight loading.
///
/// Callers decide by matching variants, never by message text. Messages are one line.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    /// `--profile NAME` (or a test) named a simulated profile that does not exist.
    #[error("unknown capability profile `{name}`; valid profiles: {}", valid.join(", "))]
    UnknownProfile {
        /// The name asked for.
        name: String,
        /// Every registered name, in registry order.
        valid: Vec<&'static str>,
    },

    /// The plan needs a backend this binary was built without (`cuda`/`metal` features), or the
    /// device could not be opened.
    #[error("backend `{backend}` is not available: {reason}")]
    BackendUnavailable {
        /// `cpu`, `cuda` or `metal`.
        backend: &'static str,
        /// Why (feature not compiled, driver error, …).
        reason: String,
    },

    /// A component's storage dtype is not a float format Kiln can compute with.
    #[error("{component}: storage dtype {dtype} cannot hold model weights")]
    UnsupportedStorage {
        /// The component.
        component: ComponentKind,
        /// Its dominant storage dtype.
        dtype: StorageDType,
    },

    /// A plan (or a held tensor) would break a capability limit of its device. The planner never
    /// produces such a plan; this is what [`crate::ComponentPlan::check`] reports when one does.
    #[error("{component}: plan violates profile `{profile}`: {problem}")]
    PlanViolation {
        /// The component.
        component: ComponentKind,
        /// The profile checked against.
        profile: String,
        /// What is wrong.
        problem: String,
    },

    /// A tensor was about to be put on a device whose profile cannot hold its dtype.
    #[error("tensor `{tensor}`: profile `{profile}` cannot hold dtype {dtype}")]
    CannotHold {
        /// Internal tensor name.
        tensor: String,
        /// The candle dtype it would have had on the device.
        dtype: String,
        /// The profile.
        profile: String,
    },

    /// The checkpoint does not contain the component a plan is loaded for.
    #[error("component {component} is not in this checkpoint")]
    ComponentMissing {
        /// The component asked for.
        component: ComponentKind,
    },

    /// An internal tensor name is not in the component's key map (or not loaded).
    #[error("{component}: no tensor named `{name}`")]
    TensorMissing {
        /// The component.
        component: ComponentKind,
        /// Internal tensor name.
        name: String,
    },

    /// The key map points at a file index the checkpoint does not have.
    #[error(
        "tensor `{tensor}`: key map names file #{file} but the checkpoint has {files} file(s)"
    )]
    FileIndexOutOfRange {
        /// Internal tensor name.
        tensor: String,
        /// The file index in the key map.
        file: usize,
        /// How many files the checkpoint has.
        files: usize,
    },

    /// A key transform does not fit the stored tensor's shape.
    #[error("tensor `{tensor}`: cannot apply {transform} to shape {shape:?}")]
    TransformShape {
        /// Internal tensor name.
        tensor: String,
        /// The transform, as its debug name.
        transform: String,
        /// The stored shape.
        shape: Vec<usize>,
    },

    /// A weight of a scaled-fp8 checkpoint is stored as fp8 but its per-tensor scale is absent.
    /// Checked for every tensor before any is loaded.
    #[error("{}: scaled-fp8 weight `{tensor}` has no scale tensor `{scale}`", file.display())]
    ScaleMissing {
        /// The file holding the weight.
        file: std::path::PathBuf,
        /// The weight's name in the file.
        tensor: String,
        /// The scale tensor's expected name in the file.
        scale: String,
    },

    /// A GGUF tensor's recorded logical shape (`comfy.gguf.orig_shape.<name>`) is unreadable or
    /// does not hold the stored number of elements.
    #[error("{}: tensor `{tensor}`: bad logical shape `{recorded}` for stored shape {stored:?}", file.display())]
    LogicalShape {
        /// The file.
        file: std::path::PathBuf,
        /// The tensor's name in the file.
        tensor: String,
        /// The metadata value as read.
        recorded: String,
        /// The shape stored in the tensor table.
        stored: Vec<usize>,
    },

    /// A stored tensor's dtype has no way onto a device (e.g. booleans as weights).
    #[error("tensor `{tensor}`: stored dtype {dtype} is not supported by the loader")]
    UnsupportedTensorDType {
        /// Internal tensor name.
        tensor: String,
        /// The stored dtype.
        dtype: StorageDType,
    },

    /// Reading a tensor from its file failed.
    #[error("tensor `{tensor}`: {source}")]
    Weights {
        /// Internal tensor name.
        tensor: String,
        /// The underlying error.
        #[source]
        source: kiln_weights::WeightsError,
    },

    /// A candle operation failed (allocation, cast, gather, transfer).
    #[error("{context}: {source}")]
    Candle {
        /// What was being done, naming the tensor where there is one.
        context: String,
        /// The underlying error.
        #[source]
        source: candle_core::Error,
    },
}

impl RuntimeError {
    /// Wraps a candle error with what was being done.
    pub(crate) fn candle(context: impl Into<String>) -> impl FnOnce(candle_core::Error) -> Self {
        let context = context.into();
        move |source| RuntimeError::Candle { context, source }
    }
}
