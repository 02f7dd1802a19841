//! The values that flow between built-in nodes, under ComfyUI's type names: [`Latent`],
//! [`Image`], [`Mask`], [`Conditioning`], and the loaded models [`Model`], [`Clip`], [`Vae`].

mod conditioning;
mod image;
mod latent;
mod models;

pub use conditioning::{CondEntry, CondMeta, Conditioning, SizeConditioning};
pub use image::{Image, Mask};
pub use latent::Latent;
pub use models::{Clip, Model, TextEncoderWeights, Vae};
