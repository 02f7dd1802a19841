//! `kiln-models`: the network architectures Kiln runs — CLIP text encoders, the SD1/SD2/SDXL
//! UNet, AutoencoderKL — and the attention kernels the planner chooses between.
//!
//! Models are built over [`Weights`], a prefix into a planner-loaded
//! [`kiln_runtime::WeightStore`]. Layers ([`Linear`], [`Conv2d`], …) hold weight *names* and
//! fetch (widen, stream) tensors when they run, so one model definition serves every storage
//! dtype. Field names follow the internal naming of `docs/architecture.md` (LDM for UNet and
//! VAE, transformers for CLIP), so `new()` documents the key layout.
#![deny(missing_docs)]

mod error;
mod layers;
mod weights;

pub use error::{ModelError, Result};
pub use layers::{Conv2d, Embedding, GroupNorm, LayerNorm, Linear};
pub use weights::Weights;
