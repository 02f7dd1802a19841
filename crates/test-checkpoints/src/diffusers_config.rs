//! The JSON files of a diffusers folder (`model_index.json`, each component's `config.json`,
//! `scheduler/scheduler_config.json`), filled from the configs so tiny folders describe tiny
//! models. Field sets follow the released repositories (runwayml/stable-diffusion-v1-5,
//! stabilityai/stable-diffusion-xl-base-1.0, stabilityai/stable-diffusion-3*-*,
//! black-forest-labs/FLUX.1-*); tokenizer folders are not written.

use serde_json::{json, Value};

use crate::clip::ClipConfig;
use crate::flux::FluxConfig;
use crate::mmdit::{MmditConfig, MmditVariant, MMDIT_HEAD_DIM};
use crate::t5::T5Config;
use crate::unet::{AttentionHeads, UnetConfig};
use crate::vae::{VaeConfig, VaeVariant};
use crate::Family;

/// torch dtype name for `config.json`.
pub(crate) fn torch_dtype_name(storage: crate::Storage) -> &'static str {
    match storage {
        crate::Storage::F32 => "float32",
        crate::Storage::BF16 => "bfloat16",
        _ => "float16",
    }
}

/// `model_index.json` of a pipeline folder.
pub(crate) fn model_index(family: Family) -> Value {
    match family {
        Family::Sd1 => json!({
            "_class_name": "StableDiffusionPipeline",
            "_diffusers_version": "0.6.0",
            "feature_extractor": [null, null],
            "requires_safety_checker": false,
            "safety_checker": [null, null],
            "scheduler": ["diffusers", "PNDMScheduler"],
            "text_encoder": ["transformers", "CLIPTextModel"],
            "tokenizer": ["transformers", "CLIPTokenizer"],
            "unet": ["diffusers", "UNet2DConditionModel"],
            "vae": ["diffusers", "AutoencoderKL"]
        }),
        Family::Sdxl => json!({
            "_class_name": "StableDiffusionXLPipeline",
            "_diffusers_version": "0.19.0.dev0",
            "force_zeros_for_empty_prompt": true,
            "scheduler": ["diffusers", "EulerDiscreteScheduler"],
            "text_encoder": ["transformers", "CLIPTextModel"],
            "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
            "tokenizer": ["transformers", "CLIPTokenizer"],
            "tokenizer_2": ["transformers", "CLIPTokenizer"],
            "unet": ["diffusers", "UNet2DConditionModel"],
            "vae": ["diffusers", "AutoencoderKL"]
        }),
        Family::Sd3Medium | Family::Sd35Medium | Family::Sd35Large => json!({
            "_class_name": "StableDiffusion3Pipeline",
            "_diffusers_version": "0.31.0.dev0",
            "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
            "text_encoder": ["transformers", "CLIPTextModelWithProjection"],
            "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
            "text_encoder_3": ["transformers", "T5EncoderModel"],
            "tokenizer": ["transformers", "CLIPTokenizer"],
            "tokenizer_2": ["transformers", "CLIPTokenizer"],
            "tokenizer_3": ["transformers", "T5TokenizerFast"],
            "transformer": ["diffusers", "SD3Transformer2DModel"],
            "vae": ["diffusers", "AutoencoderKL"]
        }),
        _ => json!({
            "_class_name": if family == Family::FluxFill { "FluxFillPipeline" } else { "FluxPipeline" },
            "_diffusers_version": "0.32.0.dev0",
            "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
            "text_encoder": ["transformers", "CLIPTextModel"],
            "text_encoder_2": ["transformers", "T5EncoderModel"],
            "tokenizer": ["transformers", "CLIPTokenizer"],
            "tokenizer_2": ["transformers", "T5TokenizerFast"],
            "transformer": ["diffusers", "FluxTransformer2DModel"],
            "vae": ["diffusers", "AutoencoderKL"]
        }),
    }
}

/// `scheduler/scheduler_config.json`.
pub(crate) fn scheduler(family: Family) -> Value {
    match family {
        Family::Sd1 => json!({
            "_class_name": "PNDMScheduler",
            "_diffusers_version": "0.6.0",
            "beta_end": 0.012,
            "beta_schedule": "scaled_linear",
            "beta_start": 0.00085,
            "clip_sample": false,
            "num_train_timesteps": 1000,
            "set_alpha_to_one": false,
            "skip_prk_steps": true,
            "steps_offset": 1,
            "trained_betas": null
        }),
        Family::Sdxl => json!({
            "_class_name": "EulerDiscreteScheduler",
            "_diffusers_version": "0.19.0.dev0",
            "beta_end": 0.012,
            "beta_schedule": "scaled_linear",
            "beta_start": 0.00085,
            "clip_sample": false,
            "interpolation_type": "linear",
            "num_train_timesteps": 1000,
            "prediction_type": "epsilon",
            "sample_max_value": 1.0,
            "set_alpha_to_one": false,
            "skip_prk_steps": true,
            "steps_offset": 1,
            "timestep_spacing": "leading",
            "trained_betas": null,
            "use_karras_sigmas": false
        }),
        Family::Sd3Medium | Family::Sd35Medium | Family::Sd35Large => json!({
            "_class_name": "FlowMatchEulerDiscreteScheduler",
            "_diffusers_version": "0.31.0.dev0",
            "num_train_timesteps": 1000,
            "shift": 3.0
        }),
        Family::FluxSchnell => json!({
            "_class_name": "FlowMatchEulerDiscreteScheduler",
            "_diffusers_version": "0.30.0.dev0",
            "base_image_seq_len": 256,
            "base_shift": 0.5,
            "max_image_seq_len": 4096,
            "max_shift": 1.15,
            "num_train_timesteps": 1000,
            "shift": 1.0,
            "use_dynamic_shifting": false
        }),
        _ => json!({
            "_class_name": "FlowMatchEulerDiscreteScheduler",
            "_diffusers_version": "0.30.0.dev0",
            "base_image_seq_len": 256,
            "base_shift": 0.5,
            "max_image_seq_len": 4096,
            "max_shift": 1.15,
            "num_train_timesteps": 1000,
            "shift": 3.0,
            "use_dynamic_shifting": true
        }),
    }
}

/// `unet/config.json`.
pub(crate) fn unet(config: &UnetConfig, family: Family) -> Value {
    let block_out: Vec<usize> = config
        .channel_mult
        .iter()
        .map(|m| m * config.model_channels)
        .collect();
    let has_attention: Vec<bool> = config.transformer_depth.iter().map(|d| *d > 0).collect();
    let down: Vec<&str> = has_attention
        .iter()
        .map(|a| {
            if *a {
                "CrossAttnDownBlock2D"
            } else {
                "DownBlock2D"
            }
        })
        .collect();
    let up: Vec<&str> = has_attention
        .iter()
        .rev()
        .map(|a| {
            if *a {
                "CrossAttnUpBlock2D"
            } else {
                "UpBlock2D"
            }
        })
        .collect();
    let head_dim = match config.attention_heads {
        AttentionHeads::Count(count) => json!(count),
        AttentionHeads::Channels(width) => {
            json!(block_out.iter().map(|c| c / width).collect::<Vec<_>>())
        }
    };
    let mut value = json!({
        "_class_name": "UNet2DConditionModel",
        "_diffusers_version": if family == Family::Sdxl { "0.19.0.dev0" } else { "0.6.0" },
        "act_fn": "silu",
        "attention_head_dim": head_dim,
        "block_out_channels": block_out,
        "center_input_sample": false,
        "cross_attention_dim": config.context_dim,
        "down_block_types": down,
        "downsample_padding": 1,
        "flip_sin_to_cos": true,
        "freq_shift": 0,
        "in_channels": config.in_channels,
        "layers_per_block": config.num_res_blocks,
        "mid_block_scale_factor": 1,
        "norm_eps": 1e-05,
        "norm_num_groups": 32,
        "out_channels": config.out_channels,
        "sample_size": if family == Family::Sdxl { 128 } else { 64 },
        "up_block_types": up,
        "use_linear_projection": config.use_linear_in_transformer
    });
    if let (Some(adm), Some(object)) = (config.adm_in_channels, value.as_object_mut()) {
        let layers: Vec<usize> = config
            .transformer_depth
            .iter()
            .map(|d| (*d).max(1))
            .collect();
        object.insert("addition_embed_type".into(), json!("text_time"));
        object.insert(
            "addition_time_embed_dim".into(),
            json!(crate::unet::SDXL_SIZE_EMBEDDING_WIDTH),
        );
        object.insert("projection_class_embeddings_input_dim".into(), json!(adm));
        object.insert("transformer_layers_per_block".into(), json!(layers));
    }
    value
}

/// `vae/config.json` (or a standalone diffusers VAE's `config.json`).
pub(crate) fn vae(config: &VaeConfig, family: Family) -> Value {
    let block_out: Vec<usize> = config.ch_mult.iter().map(|m| m * config.ch).collect();
    let levels = block_out.len();
    let (scaling, shift, sample_size): (f64, Option<f64>, usize) = match (config.variant, family) {
        (VaeVariant::Latent4, Family::Sdxl) => (0.13025, None, 1024),
        (VaeVariant::Latent4, _) => (0.18215, None, 512),
        (VaeVariant::Latent16, Family::Sd3Medium | Family::Sd35Medium | Family::Sd35Large) => {
            (1.5305, Some(0.0609), 1024)
        }
        (VaeVariant::Latent16, _) => (0.3611, Some(0.1159), 1024),
    };
    json!({
        "_class_name": "AutoencoderKL",
        "_diffusers_version": "0.30.0.dev0",
        "act_fn": "silu",
        "block_out_channels": block_out,
        "down_block_types": vec!["DownEncoderBlock2D"; levels],
        "force_upcast": true,
        "in_channels": 3,
        "latent_channels": config.z_channels,
        "latents_mean": null,
        "latents_std": null,
        "layers_per_block": config.num_res_blocks,
        "mid_block_add_attention": true,
        "norm_num_groups": 32,
        "out_channels": 3,
        "sample_size": sample_size,
        "scaling_factor": scaling,
        "shift_factor": shift,
        "up_block_types": vec!["UpDecoderBlock2D"; levels],
        "use_post_quant_conv": config.use_quant_conv,
        "use_quant_conv": config.use_quant_conv
    })
}

/// A CLIP text encoder's `config.json`.
pub(crate) fn clip_text(config: &ClipConfig, with_projection: bool, dtype: &str) -> Value {
    json!({
        "architectures": [if with_projection { "CLIPTextModelWithProjection" } else { "CLIPTextModel" }],
        "attention_dropout": 0.0,
        "bos_token_id": 0,
        "dropout": 0.0,
        "eos_token_id": 2,
        "hidden_act": config.hidden_act(),
        "hidden_size": config.width,
        "initializer_factor": 1.0,
        "initializer_range": 0.02,
        "intermediate_size": config.intermediate,
        "layer_norm_eps": 1e-05,
        "max_position_embeddings": config.positions,
        "model_type": "clip_text_model",
        "num_attention_heads": config.heads,
        "num_hidden_layers": config.layers,
        "pad_token_id": 1,
        "projection_dim": config.projection_dim,
        "torch_dtype": dtype,
        "transformers_version": "4.41.2",
        "vocab_size": config.vocab
    })
}

/// The T5 encoder's `config.json`.
pub(crate) fn t5(config: &T5Config, dtype: &str) -> Value {
    json!({
        "architectures": ["T5EncoderModel"],
        "classifier_dropout": 0.0,
        "d_ff": config.d_ff,
        "d_kv": config.d_kv,
        "d_model": config.d_model,
        "decoder_start_token_id": 0,
        "dense_act_fn": "gelu_new",
        "dropout_rate": 0.1,
        "eos_token_id": 1,
        "feed_forward_proj": "gated-gelu",
        "initializer_factor": 1.0,
        "is_encoder_decoder": true,
        "is_gated_act": true,
        "layer_norm_epsilon": 1e-06,
        "model_type": "t5",
        "num_decoder_layers": config.layers,
        "num_heads": config.heads,
        "num_layers": config.layers,
        "output_past": true,
        "pad_token_id": 0,
        "relative_attention_max_distance": 128,
        "relative_attention_num_buckets": config.relative_attention_num_buckets,
        "tie_word_embeddings": false,
        "torch_dtype": dtype,
        "transformers_version": "4.41.2",
        "use_cache": true,
        "vocab_size": config.vocab
    })
}

/// `transformer/config.json` of a Flux folder.
pub(crate) fn flux_transformer(config: &FluxConfig) -> Value {
    json!({
        "_class_name": "FluxTransformer2DModel",
        "_diffusers_version": "0.32.0.dev0",
        "attention_head_dim": config.head_dim(),
        "axes_dims_rope": config.axes_dim,
        "guidance_embeds": config.guidance_embed,
        "in_channels": config.in_channels,
        "joint_attention_dim": config.context_in_dim,
        "num_attention_heads": config.num_heads,
        "num_layers": config.depth,
        "num_single_layers": config.depth_single_blocks,
        "out_channels": config.out_channels,
        "patch_size": 1,
        "pooled_projection_dim": config.vec_in_dim
    })
}

/// `transformer/config.json` of an SD3 folder.
pub(crate) fn sd3_transformer(config: &MmditConfig) -> Value {
    let mut value = json!({
        "_class_name": "SD3Transformer2DModel",
        "_diffusers_version": "0.31.0.dev0",
        "attention_head_dim": MMDIT_HEAD_DIM,
        "caption_projection_dim": config.hidden_size(),
        "in_channels": config.in_channels,
        "joint_attention_dim": config.context_in_dim,
        "num_attention_heads": config.depth,
        "num_layers": config.depth,
        "out_channels": config.out_channels,
        "patch_size": config.patch_size,
        "pooled_projection_dim": config.adm_in_channels,
        "pos_embed_max_size": config.pos_embed_max_size,
        "sample_size": 128
    });
    if let Some(object) = value.as_object_mut() {
        if config.qk_norm {
            object.insert("qk_norm".into(), json!("rms_norm"));
        }
        if config.variant == MmditVariant::Sd35Medium {
            object.insert(
                "dual_attention_layers".into(),
                json!(config.x_block_self_attn_layers),
            );
        }
    }
    value
}
