//! The values that flow between built-in nodes, under ComfyUI's type names: [`Latent`],
//! [`Image`], [`Mask`], [`Conditioning`], the loaded models [`Model`], [`Clip`], [`Vae`], and
//! the custom-sampling values [`Noise`], [`SamplerChoice`], [`Sigmas`], [`Guider`].

mod conditioning;
mod guider;
mod image;
mod latent;
mod models;
mod noise;
mod sampler_choice;
mod sigmas;

pub use conditioning::{CondEntry, CondMeta, Conditioning, SizeConditioning};
pub use guider::Guider;
pub use image::{Image, Mask};
pub use latent::Latent;
pub use models::{Clip, Model, TextEncoderWeights, Vae};
pub use noise::{Noise, NoiseKind};
pub use sampler_choice::SamplerChoice;
pub use sigmas::Sigmas;
