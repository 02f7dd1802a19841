//! [`Guider`]: ComfyUI's `GUIDER` — a model with its conditioning and guidance scale
//! (`CFGGuider`; `BasicGuider` is the same with no negative side and scale 1).

use std::sync::Arc;

use kiln_graph::Value;

use crate::types::{Conditioning, Model};

/// A model plus how to guide it (`GUIDER`).
#[derive(Clone, Debug)]
pub struct Guider {
    /// The model (`guider.model_patcher`).
    pub model: Arc<Model>,
    /// The `positive` conditioning.
    pub positive: Arc<Conditioning>,
    /// The `negative` conditioning (empty for `BasicGuider`).
    pub negative: Arc<Conditioning>,
    /// The classifier-free guidance scale; at 1 the negative side is never evaluated.
    pub cfg: f64,
}

impl Guider {
    /// ComfyUI's type name.
    pub const TYPE: &'static str = "GUIDER";

    /// `CFGGuider`: `positive`/`negative` at scale `cfg`.
    pub fn cfg(
        model: Arc<Model>,
        positive: Arc<Conditioning>,
        negative: Arc<Conditioning>,
        cfg: f64,
    ) -> Self {
        Guider {
            model,
            positive,
            negative,
            cfg,
        }
    }

    /// `BasicGuider` (`Guider_Basic`): only `conditioning`, scale 1.
    pub fn basic(model: Arc<Model>, conditioning: Arc<Conditioning>) -> Self {
        Guider {
            model,
            positive: conditioning,
            negative: Arc::new(Conditioning::default()),
            cfg: 1.0,
        }
    }

    /// Wraps the guider as a node value.
    pub fn into_value(self) -> Value {
        Value::object(Self::TYPE, self)
    }
}
