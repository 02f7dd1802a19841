//! [`Sigmas`]: ComfyUI's `SIGMAS` — a 1-D float32 list of noise levels a sampler walks,
//! normally descending and ending in 0.

use kiln_graph::Value;

/// A noise schedule (`SIGMAS`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sigmas {
    /// The noise levels, in the order the sampler visits them.
    pub values: Vec<f32>,
}

impl Sigmas {
    /// ComfyUI's type name.
    pub const TYPE: &'static str = "SIGMAS";

    /// Wraps a list of noise levels.
    pub fn new(values: Vec<f32>) -> Self {
        Sigmas { values }
    }

    /// Number of sampling steps (`len - 1`, 0 for an empty list).
    pub fn steps(&self) -> usize {
        self.values.len().saturating_sub(1)
    }

    /// Wraps the schedule as a node value.
    pub fn into_value(self) -> Value {
        Value::object(Self::TYPE, self)
    }
}
