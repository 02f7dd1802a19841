//! `SamplingError`: every way computing a schedule or running a sampler can fail.

/// An error from scheduling or sampling.
///
/// Callers decide by matching variants, never by message text.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SamplingError {
    /// A tensor operation failed (shape mismatch, device error…).
    #[error("tensor operation failed in {context}: {source}")]
    Tensor {
        /// Where it happened (`"euler step"`, `"noise_scaling"`…).
        context: &'static str,
        /// The candle error.
        #[source]
        source: candle_core::Error,
    },

    /// The denoiser (the model plus CFG, implemented outside this crate) failed.
    #[error("denoiser failed at sigma {sigma}: {source}")]
    Denoiser {
        /// The noise level that was being denoised.
        sigma: f64,
        /// The denoiser's own error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// The progress callback asked to stop; sampling stopped after `step` of `total` steps.
    #[error("sampling interrupted after step {step} of {total}")]
    Interrupted {
        /// Index of the step after which sampling stopped.
        step: usize,
        /// Number of steps that were planned.
        total: usize,
    },

    /// No scheduler has this name.
    #[error("unknown scheduler {name:?}")]
    UnknownScheduler {
        /// The requested name.
        name: String,
    },

    /// No sampler has this name in ComfyUI.
    #[error("unknown sampler {name:?}")]
    UnknownSampler {
        /// The requested name.
        name: String,
    },

    /// ComfyUI has this sampler but Kiln does not implement it yet.
    #[error("sampler {name:?} is not implemented")]
    UnsupportedSampler {
        /// The requested name.
        name: String,
    },

    /// A sampler or scheduler parameter is out of its valid range.
    #[error("invalid {field} for {what}: {reason}")]
    InvalidParameter {
        /// The sampler, scheduler or model sampling concerned.
        what: &'static str,
        /// The parameter.
        field: &'static str,
        /// Why it is invalid.
        reason: String,
    },

    /// A tensor does not have the shape or dtype the operation needs.
    #[error("{what}: expected {expected}, got {got}")]
    BadTensor {
        /// The tensor (`"noise"`, `"latent_image"`…).
        what: &'static str,
        /// What was expected.
        expected: String,
        /// What was given.
        got: String,
    },
}

/// This crate's result type.
pub type Result<T, E = SamplingError> = std::result::Result<T, E>;

/// Adds a context to a candle error.
pub(crate) trait TensorContext<T> {
    /// Wraps a candle error as [`SamplingError::Tensor`].
    fn context(self, context: &'static str) -> Result<T>;
}

impl<T> TensorContext<T> for candle_core::Result<T> {
    fn context(self, context: &'static str) -> Result<T> {
        self.map_err(|source| SamplingError::Tensor { context, source })
    }
}
