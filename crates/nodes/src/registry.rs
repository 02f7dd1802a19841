//! [`builtin_registry`]: every built-in node class, listed once. `/object_info`, validation and
//! execution all come from this list.

use std::sync::Arc;

use kiln_graph::{Node, NodeRegistry};

use crate::nodes::{
    checkpoint_loader_simple::CheckpointLoaderSimple, clip_set_last_layer::ClipSetLastLayer,
    clip_text_encode::ClipTextEncode, clip_text_encode_sdxl::ClipTextEncodeSdxl,
    clip_text_encode_sdxl_refiner::ClipTextEncodeSdxlRefiner,
    conditioning_combine::ConditioningCombine, conditioning_set_area::ConditioningSetArea,
    conditioning_zero_out::ConditioningZeroOut, empty_latent_image::EmptyLatentImage,
    image_scale::ImageScale, image_scale_by::ImageScaleBy, ksampler::KSampler,
    ksampler_advanced::KSamplerAdvanced, latent_from_batch::LatentFromBatch,
    latent_upscale::LatentUpscale, latent_upscale_by::LatentUpscaleBy, load_image::LoadImage,
    load_image_mask::LoadImageMask, lora_loader::LoraLoader,
    lora_loader_model_only::LoraLoaderModelOnly, preview_image::PreviewImage,
    repeat_latent_batch::RepeatLatentBatch, save_image::SaveImage,
    set_latent_noise_mask::SetLatentNoiseMask, vae_decode::VaeDecode,
    vae_decode_tiled::VaeDecodeTiled, vae_encode::VaeEncode,
    vae_encode_for_inpaint::VaeEncodeForInpaint, vae_encode_tiled::VaeEncodeTiled,
    vae_loader::VaeLoader,
};

// Inpainting-model conditioning (nodes.py) and Differential Diffusion (comfy_extras).
use crate::nodes::{
    differential_diffusion::DifferentialDiffusion, flux_disable_guidance::FluxDisableGuidance,
    inpaint_model_conditioning::InpaintModelConditioning,
};

// Flux / SD3 loaders and text encoders.
use crate::nodes::{
    clip_loader::ClipLoader, clip_text_encode_flux::ClipTextEncodeFlux,
    clip_text_encode_sd3::ClipTextEncodeSd3, dual_clip_loader::DualClipLoader,
    triple_clip_loader::TripleClipLoader, unet_loader::UnetLoader,
};

// Custom sampling and flow-model nodes (comfy_extras).
use crate::nodes::{
    basic_guider::BasicGuider, basic_scheduler::BasicScheduler, cfg_guider::CfgGuider,
    disable_noise::DisableNoise, empty_sd3_latent_image::EmptySd3LatentImage,
    flip_sigmas::FlipSigmas, flux_guidance::FluxGuidance, ksampler_select::KSamplerSelect,
    model_sampling_aura_flow::ModelSamplingAuraFlow, model_sampling_flux::ModelSamplingFlux,
    model_sampling_sd3::ModelSamplingSd3, random_noise::RandomNoise, sampler_custom::SamplerCustom,
    sampler_custom_advanced::SamplerCustomAdvanced, split_sigmas::SplitSigmas,
};

/// The built-in node classes, in registration order (the order `/object_info` lists them).
fn builtin_nodes() -> Vec<Arc<dyn Node>> {
    vec![
        Arc::new(KSampler),
        Arc::new(CheckpointLoaderSimple),
        Arc::new(ClipTextEncode),
        Arc::new(ClipSetLastLayer),
        Arc::new(VaeDecode),
        Arc::new(VaeEncode),
        Arc::new(VaeEncodeForInpaint),
        Arc::new(VaeLoader),
        Arc::new(LoraLoader),
        Arc::new(EmptyLatentImage),
        Arc::new(LatentUpscale),
        Arc::new(LatentUpscaleBy),
        Arc::new(LatentFromBatch),
        Arc::new(RepeatLatentBatch),
        Arc::new(SetLatentNoiseMask),
        Arc::new(ConditioningCombine),
        Arc::new(ConditioningSetArea),
        Arc::new(ConditioningZeroOut),
        Arc::new(LoadImage),
        Arc::new(LoadImageMask),
        Arc::new(ImageScale),
        Arc::new(ImageScaleBy),
        Arc::new(SaveImage),
        Arc::new(PreviewImage),
        Arc::new(KSamplerAdvanced),
        Arc::new(VaeDecodeTiled),
        Arc::new(VaeEncodeTiled),
        Arc::new(ClipTextEncodeSdxl),
        Arc::new(ClipTextEncodeSdxlRefiner),
        Arc::new(LoraLoaderModelOnly),
        Arc::new(InpaintModelConditioning),
        // Flux / SD3 loaders (nodes.py) and text encoders (comfy_extras).
        Arc::new(ClipLoader),
        Arc::new(UnetLoader),
        Arc::new(DualClipLoader),
        Arc::new(TripleClipLoader),
        Arc::new(ClipTextEncodeFlux),
        Arc::new(ClipTextEncodeSd3),
        // comfy_extras: custom sampling, model sampling, SD3/Flux latents and guidance.
        Arc::new(SamplerCustom),
        Arc::new(BasicScheduler),
        Arc::new(KSamplerSelect),
        Arc::new(SplitSigmas),
        Arc::new(FlipSigmas),
        Arc::new(CfgGuider),
        Arc::new(BasicGuider),
        Arc::new(RandomNoise),
        Arc::new(DisableNoise),
        Arc::new(SamplerCustomAdvanced),
        Arc::new(ModelSamplingSd3),
        Arc::new(ModelSamplingAuraFlow),
        Arc::new(ModelSamplingFlux),
        Arc::new(EmptySd3LatentImage),
        Arc::new(FluxGuidance),
        Arc::new(FluxDisableGuidance),
        Arc::new(DifferentialDiffusion),
    ]
}

/// A registry holding every built-in node class.
pub fn builtin_registry() -> NodeRegistry {
    let mut registry = NodeRegistry::new();
    for node in builtin_nodes() {
        // Built-in schemas are fixed and tested for consistency below; a failure here would
        // be a programming error caught by `every_builtin_registers`.
        if let Err(error) = registry.register_arc(node) {
            tracing::error!("built-in node not registered: {error}");
        }
    }
    registry
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_registers() {
        let mut registry = NodeRegistry::new();
        for node in builtin_nodes() {
            registry.register_arc(node).unwrap();
        }
        assert_eq!(registry.len(), builtin_registry().len());
    }

    #[test]
    fn object_info_matches_comfyui_for_core_nodes() {
        let info = builtin_registry().object_info(&|_| vec!["x.png".to_owned()]);
        assert_eq!(
            info["EmptyLatentImage"]["input"]["required"]["width"],
            serde_json::json!(["INT", {"default": 512, "min": 16, "max": 16384, "step": 8,
                "tooltip": "The width of the latent images in pixels."}])
        );
        assert_eq!(
            info["LoadImage"]["input"]["required"]["image"],
            serde_json::json!([["x.png"], {"image_upload": true}])
        );
        assert_eq!(info["SaveImage"]["output_node"], true);
        assert_eq!(
            info["SaveImage"]["input"]["hidden"],
            serde_json::json!({"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"})
        );
        assert_eq!(
            info["LatentUpscale"]["input"]["required"]["upscale_method"][0],
            serde_json::json!(["nearest-exact", "bilinear", "area", "bicubic", "bislerp"])
        );
        assert_eq!(
            info["LatentUpscale"]["input_order"]["required"],
            serde_json::json!(["samples", "upscale_method", "width", "height", "crop"])
        );
    }
}
