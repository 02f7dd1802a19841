//! `ModelError`: everything that can go wrong building or running a model, naming the weight or
//! the input that was wrong.

use kiln_runtime::RuntimeError;

/// A model could not be built or run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// A weight could not be fetched or widened.
    #[error(transparent)]
    Weights(#[from] RuntimeError),
    /// A tensor operation failed.
    #[error("{context}: {source}")]
    Candle {
        /// What the model was doing.
        context: String,
        /// The tensor error.
        source: candle_core::Error,
    },
    /// A weight has a shape the architecture cannot use.
    #[error("weight `{name}` has shape {actual:?}, expected {expected}")]
    WeightShape {
        /// Internal tensor name.
        name: String,
        /// Its shape.
        actual: Vec<usize>,
        /// What was expected, in words.
        expected: String,
    },
    /// An input to `forward` has the wrong shape or dtype.
    #[error("{model}: input `{input}` {problem}")]
    Input {
        /// Which model.
        model: &'static str,
        /// Which input.
        input: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// The configuration cannot be derived from the weights.
    #[error("{model}: cannot read the configuration from the weights: {reason}")]
    Config {
        /// Which model.
        model: &'static str,
        /// Why.
        reason: String,
    },
    /// Not enough memory for the requested operation.
    #[error("not enough memory: {0}")]
    OutOfMemory(String),
}

impl From<candle_core::Error> for ModelError {
    fn from(source: candle_core::Error) -> Self {
        ModelError::Candle {
            context: "tensor operation".to_string(),
            source,
        }
    }
}

/// Result alias for this crate.
pub type Result<T, E = ModelError> = std::result::Result<T, E>;
