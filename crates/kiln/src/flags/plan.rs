//! Stage two of the configuration: ComfyUI's flags turned into what the runtime and the folder
//! layout take ([`kiln_runtime::PlanOptions`], [`kiln_folders::FolderPaths`]).

use kiln_folders::{FolderPaths, FoldersError};
use kiln_runtime::{
    AttentionRequest, ForcedDType, GlobalPrecision, PlanOptions, UpcastRequest, VramMode,
};

use super::ComfyArgs;

/// Bytes in one `--reserve-vram` unit: ComfyUI multiplies by 1024³.
const BYTES_PER_GB: f64 = 1024.0 * 1024.0 * 1024.0;

impl ComfyArgs {
    /// The device, precision, attention and memory flags as the planner takes them. The
    /// mutually exclusive groups guarantee at most one flag per group; `--fp8_e8m0fnu-unet` has
    /// no Kiln dtype and is left to the planner's choice (it is reported as not implemented).
    pub fn plan_options(&self) -> PlanOptions {
        PlanOptions {
            cpu: self.cpu,
            cuda_device: self.cuda_device,
            precision: self.global_precision(),
            unet_dtype: self.unet_dtype(),
            vae_dtype: self.vae_dtype(),
            cpu_vae: self.cpu_vae,
            text_encoder_dtype: self.text_encoder_dtype(),
            attention: self.attention_request(),
            upcast: self.upcast_request(),
            vram: self.vram_mode(),
            reserve_vram_bytes: self
                .reserve_vram
                .map(|gigabytes| (gigabytes * BYTES_PER_GB) as u64),
            disable_smart_memory: self.disable_smart_memory,
            assume_fp8_compute: self.supports_fp8_compute,
        }
    }

    /// The folder layout from the path flags: `--base-directory` (or the current directory)
    /// with its `extra_model_paths.yaml`, then every `--extra-model-paths-config` file, then
    /// the directory overrides.
    pub fn folder_paths(&self) -> Result<FolderPaths, FoldersError> {
        let mut builder = FolderPaths::builder();
        if let Some(base) = &self.base_directory {
            builder = builder.base_directory(base);
        }
        for config in &self.extra_model_paths_config {
            builder = builder.extra_model_paths_config(config);
        }
        if let Some(output) = &self.output_directory {
            builder = builder.output_directory(output);
        }
        if let Some(input) = &self.input_directory {
            builder = builder.input_directory(input);
        }
        if let Some(temp) = &self.temp_directory {
            builder = builder.temp_directory(temp);
        }
        if let Some(user) = &self.user_directory {
            builder = builder.user_directory(user);
        }
        builder.build()
    }

    fn global_precision(&self) -> GlobalPrecision {
        if self.force_fp16 {
            GlobalPrecision::ForceFp16
        } else if self.force_fp32 {
            GlobalPrecision::ForceFp32
        } else {
            GlobalPrecision::Auto
        }
    }

    /// Checked in ComfyUI's `unet_dtype()` order; the group allows only one anyway.
    fn unet_dtype(&self) -> Option<ForcedDType> {
        first_given(&[
            (self.fp64_unet, ForcedDType::F64),
            (self.bf16_unet, ForcedDType::BF16),
            (self.fp16_unet, ForcedDType::F16),
            (self.fp8_e4m3fn_unet, ForcedDType::F8E4M3),
            (self.fp8_e5m2_unet, ForcedDType::F8E5M2),
            (self.fp32_unet, ForcedDType::F32),
        ])
    }

    fn vae_dtype(&self) -> Option<ForcedDType> {
        first_given(&[
            (self.fp16_vae, ForcedDType::F16),
            (self.bf16_vae, ForcedDType::BF16),
            (self.fp32_vae, ForcedDType::F32),
        ])
    }

    fn text_encoder_dtype(&self) -> Option<ForcedDType> {
        first_given(&[
            (self.fp8_e4m3fn_text_enc, ForcedDType::F8E4M3),
            (self.fp8_e5m2_text_enc, ForcedDType::F8E5M2),
            (self.fp16_text_enc, ForcedDType::F16),
            (self.bf16_text_enc, ForcedDType::BF16),
            (self.fp32_text_enc, ForcedDType::F32),
        ])
    }

    fn attention_request(&self) -> AttentionRequest {
        first_given(&[
            (self.use_split_cross_attention, AttentionRequest::Split),
            (
                self.use_quad_cross_attention,
                AttentionRequest::SubQuadratic,
            ),
            (self.use_pytorch_cross_attention, AttentionRequest::Fused),
            (self.use_sage_attention, AttentionRequest::Sage),
            (self.use_flash_attention, AttentionRequest::Flash),
        ])
        .unwrap_or_default()
    }

    fn upcast_request(&self) -> UpcastRequest {
        first_given(&[
            (self.force_upcast_attention, UpcastRequest::Force),
            (self.dont_upcast_attention, UpcastRequest::Never),
        ])
        .unwrap_or_default()
    }

    /// `--cpu` is in ComfyUI's VRAM group but is carried by [`PlanOptions::cpu`].
    fn vram_mode(&self) -> VramMode {
        first_given(&[
            (self.gpu_only, VramMode::GpuOnly),
            (self.highvram, VramMode::High),
            (self.normalvram, VramMode::Normal),
            (self.lowvram, VramMode::Low),
            (self.novram, VramMode::NoVram),
        ])
        .unwrap_or_default()
    }
}

fn first_given<T: Copy>(choices: &[(bool, T)]) -> Option<T> {
    choices
        .iter()
        .find(|(given, _)| *given)
        .map(|(_, value)| *value)
}
