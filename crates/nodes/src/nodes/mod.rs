//! One file per node class; [`crate::builtin_registry`] lists them.

pub mod conditioning_combine;
pub mod conditioning_set_area;
pub mod conditioning_zero_out;
pub mod empty_latent_image;
pub mod image_scale;
pub mod image_scale_by;
pub mod latent_from_batch;
pub mod latent_upscale;
pub mod latent_upscale_by;
pub mod load_image;
pub mod load_image_mask;
pub mod preview_image;
pub mod repeat_latent_batch;
pub mod save_image;
pub mod set_latent_noise_mask;
