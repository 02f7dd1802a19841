//! [`SamplerChoice`]: ComfyUI's `SAMPLER` — the sampling algorithm `KSamplerSelect` picked.

use kiln_graph::Value;
use kiln_sampling::samplers::{sampler_by_name, Sampler};

use crate::error::NodesError;

/// A sampling algorithm (`SAMPLER`).
#[derive(Clone, Copy)]
pub struct SamplerChoice {
    /// The algorithm, from [`kiln_sampling::samplers::SAMPLERS`].
    pub sampler: &'static dyn Sampler,
}

impl std::fmt::Debug for SamplerChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SamplerChoice")
            .field("sampler", &self.sampler.name())
            .finish()
    }
}

impl SamplerChoice {
    /// ComfyUI's type name.
    pub const TYPE: &'static str = "SAMPLER";

    /// `comfy.samplers.sampler_object(name)`, or an error naming `input` for a sampler Kiln
    /// does not implement or does not know.
    pub fn by_name(input: &str, name: &str) -> Result<Self, NodesError> {
        let sampler =
            sampler_by_name(name).map_err(|source| NodesError::input(input, source.to_string()))?;
        Ok(SamplerChoice { sampler })
    }

    /// Wraps the choice as a node value.
    pub fn into_value(self) -> Value {
        Value::object(Self::TYPE, self)
    }
}
