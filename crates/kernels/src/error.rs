//! The crate's one error type.

/// What can go wrong when a kernel is asked to run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KernelError {
    /// An input tensor has a shape the kernel does not accept.
    #[error("{op}: input `{input}` has shape {actual:?}, expected {expected}")]
    Shape {
        /// The kernel.
        op: &'static str,
        /// Which input.
        input: &'static str,
        /// Its dimensions.
        actual: Vec<usize>,
        /// What the kernel needs.
        expected: String,
    },
    /// An input is in a dtype the kernel does not compute in.
    #[error("{op}: dtype {dtype} is not supported (f32, bf16 and f16 are)")]
    UnsupportedDType {
        /// The kernel.
        op: &'static str,
        /// The dtype it got.
        dtype: &'static str,
    },
    /// An input does not live in CPU memory.
    #[error("{op}: input `{input}` is not on the CPU")]
    NotOnCpu {
        /// The kernel.
        op: &'static str,
        /// Which input.
        input: &'static str,
    },
    /// candle refused an operation around the kernel.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// Results of this crate.
pub type Result<T> = std::result::Result<T, KernelError>;
