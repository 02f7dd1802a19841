//! [`ComfyArgs`]: every flag of ComfyUI's `comfy/cli_args.py` (at a125cd84), with the same
//! names, value syntax and mutually exclusive groups, parsed exactly as typed (stage one of
//! the configuration). Value flags whose ComfyUI default matters are `Option`s, so that "given"
//! is visible; the accessors below answer with ComfyUI's defaults.

use std::collections::BTreeSet;
use std::path::PathBuf;

use clap::{ArgAction, Args, ValueEnum};

use super::groups::with_group_conflicts;
use super::values::{
    existing_directory, non_negative_number, FastFeature, HashingFunction, LogLevel, PreviewMethod,
};

/// ComfyUI's default `--listen`.
pub const DEFAULT_LISTEN: &str = "127.0.0.1";
/// What a bare `--listen` means: every IPv4 and IPv6 address.
pub const LISTEN_ALL: &str = "0.0.0.0,::";
/// ComfyUI's default `--port`.
pub const DEFAULT_PORT: u16 = 8188;
/// ComfyUI's default `--max-upload-size`, in MB.
pub const DEFAULT_MAX_UPLOAD_SIZE_MB: f64 = 100.0;
/// ComfyUI's default `--preview-size`.
pub const DEFAULT_PREVIEW_SIZE: u32 = 512;
/// ComfyUI's default `--front-end-version`.
pub const DEFAULT_FRONT_END_VERSION: &str = "comfyanonymous/ComfyUI@latest";
/// ComfyUI's default `--comfy-api-base`.
pub const DEFAULT_COMFY_API_BASE: &str = "https://api.comfy.org";

/// Every ComfyUI command-line flag. All are global: they may come before or after a
/// subcommand.
#[derive(Debug, Clone, Default, PartialEq, Args)]
#[command(mut_args = with_group_conflicts)]
pub struct ComfyArgs {
    // ---- Network / server ----
    /// Specify the IP address to listen on (default: 127.0.0.1). A comma-separated list is
    /// allowed; a bare --listen means 0.0.0.0,:: (all IPv4 and IPv6 addresses).
    #[arg(long, global = true, value_name = "IP", num_args = 0..=1, default_missing_value = LISTEN_ALL, help_heading = "Server")]
    pub listen: Option<String>,
    /// Set the listen port [default: 8188].
    #[arg(long, global = true, help_heading = "Server")]
    pub port: Option<u16>,
    /// Path to TLS (SSL) key file; requires --tls-certfile.
    #[arg(long, global = true, help_heading = "Server")]
    pub tls_keyfile: Option<PathBuf>,
    /// Path to TLS (SSL) certificate file; requires --tls-keyfile.
    #[arg(long, global = true, help_heading = "Server")]
    pub tls_certfile: Option<PathBuf>,
    /// Enable CORS with the given origin, or all origins ('*') when bare.
    #[arg(long, global = true, value_name = "ORIGIN", num_args = 0..=1, default_missing_value = "*", help_heading = "Server")]
    pub enable_cors_header: Option<String>,
    /// Set the maximum upload size in MB [default: 100].
    #[arg(long, global = true, value_parser = non_negative_number, help_heading = "Server")]
    pub max_upload_size: Option<f64>,

    // ---- Paths ----
    /// Set the base directory for models, custom_nodes, input, output, temp and user
    /// directories [default: the current directory].
    #[arg(long, global = true, help_heading = "Paths")]
    pub base_directory: Option<PathBuf>,
    /// Load one or more extra_model_paths.yaml files (repeatable).
    #[arg(long, global = true, value_name = "PATH", num_args = 1.., action = ArgAction::Append, help_heading = "Paths")]
    pub extra_model_paths_config: Vec<PathBuf>,
    /// Set the output directory. Overrides --base-directory.
    #[arg(long, global = true, help_heading = "Paths")]
    pub output_directory: Option<PathBuf>,
    /// Set the temp directory (its `temp` subfolder is used). Overrides --base-directory.
    #[arg(long, global = true, help_heading = "Paths")]
    pub temp_directory: Option<PathBuf>,
    /// Set the input directory. Overrides --base-directory.
    #[arg(long, global = true, help_heading = "Paths")]
    pub input_directory: Option<PathBuf>,

    // ---- Browser ----
    /// Automatically launch the web UI in the default browser.
    #[arg(long, global = true, help_heading = "Server")]
    pub auto_launch: bool,
    /// Disable auto launching the browser.
    #[arg(long, global = true, help_heading = "Server")]
    pub disable_auto_launch: bool,

    // ---- Devices ----
    /// Set the id of the CUDA device this instance will use; others are not used.
    #[arg(long, global = true, value_name = "DEVICE_ID", help_heading = "Device")]
    pub cuda_device: Option<usize>,
    /// Set the id of the default device; all other devices stay visible.
    #[arg(
        long,
        global = true,
        value_name = "DEFAULT_DEVICE_ID",
        help_heading = "Device"
    )]
    pub default_device: Option<usize>,
    /// Enable cudaMallocAsync.
    #[arg(long, global = true, help_heading = "Device")]
    pub cuda_malloc: bool,
    /// Disable cudaMallocAsync.
    #[arg(long, global = true, help_heading = "Device")]
    pub disable_cuda_malloc: bool,

    // ---- Precision ----
    /// Force fp32.
    #[arg(long, global = true, help_heading = "Precision")]
    pub force_fp32: bool,
    /// Force fp16.
    #[arg(long, global = true, help_heading = "Precision")]
    pub force_fp16: bool,
    /// Run the diffusion model in fp32.
    #[arg(long, global = true, help_heading = "Precision")]
    pub fp32_unet: bool,
    /// Run the diffusion model in fp64.
    #[arg(long, global = true, help_heading = "Precision")]
    pub fp64_unet: bool,
    /// Run the diffusion model in bf16.
    #[arg(long, global = true, help_heading = "Precision")]
    pub bf16_unet: bool,
    /// Run the diffusion model in fp16.
    #[arg(long, global = true, help_heading = "Precision")]
    pub fp16_unet: bool,
    /// Store diffusion model weights in fp8_e4m3fn.
    #[arg(long = "fp8_e4m3fn-unet", global = true, help_heading = "Precision")]
    pub fp8_e4m3fn_unet: bool,
    /// Store diffusion model weights in fp8_e5m2.
    #[arg(long = "fp8_e5m2-unet", global = true, help_heading = "Precision")]
    pub fp8_e5m2_unet: bool,
    /// Store diffusion model weights in fp8_e8m0fnu.
    #[arg(long = "fp8_e8m0fnu-unet", global = true, help_heading = "Precision")]
    pub fp8_e8m0fnu_unet: bool,
    /// Run the VAE in fp16 (might cause black images).
    #[arg(long, global = true, help_heading = "Precision")]
    pub fp16_vae: bool,
    /// Run the VAE in full precision fp32.
    #[arg(long, global = true, help_heading = "Precision")]
    pub fp32_vae: bool,
    /// Run the VAE in bf16.
    #[arg(long, global = true, help_heading = "Precision")]
    pub bf16_vae: bool,
    /// Run the VAE on the CPU.
    #[arg(long, global = true, help_heading = "Precision")]
    pub cpu_vae: bool,
    /// Store text encoder weights in fp8 (e4m3fn variant).
    #[arg(
        long = "fp8_e4m3fn-text-enc",
        global = true,
        help_heading = "Precision"
    )]
    pub fp8_e4m3fn_text_enc: bool,
    /// Store text encoder weights in fp8 (e5m2 variant).
    #[arg(long = "fp8_e5m2-text-enc", global = true, help_heading = "Precision")]
    pub fp8_e5m2_text_enc: bool,
    /// Store text encoder weights in fp16.
    #[arg(long, global = true, help_heading = "Precision")]
    pub fp16_text_enc: bool,
    /// Store text encoder weights in fp32.
    #[arg(long, global = true, help_heading = "Precision")]
    pub fp32_text_enc: bool,
    /// Store text encoder weights in bf16.
    #[arg(long, global = true, help_heading = "Precision")]
    pub bf16_text_enc: bool,
    /// Force channels-last memory format when running models.
    #[arg(long, global = true, help_heading = "Precision")]
    pub force_channels_last: bool,

    // ---- Other accelerators ----
    /// Use torch-directml (bare: the default DirectML device).
    #[arg(long, global = true, value_name = "DIRECTML_DEVICE", num_args = 0..=1, default_missing_value = "-1", allow_negative_numbers = true, help_heading = "Device")]
    pub directml: Option<i32>,
    /// Set the oneAPI device(s) this instance will use.
    #[arg(
        long,
        global = true,
        value_name = "SELECTOR_STRING",
        help_heading = "Device"
    )]
    pub oneapi_device_selector: Option<String>,
    /// Disable ipex.optimize when loading models with Intel's Extension for PyTorch.
    #[arg(long, global = true, help_heading = "Device")]
    pub disable_ipex_optimize: bool,
    /// Act as if the device supports fp8 compute.
    #[arg(long, global = true, help_heading = "Device")]
    pub supports_fp8_compute: bool,

    // ---- Previews ----
    /// Default preview method for sampler nodes [default: none].
    #[arg(
        long,
        global = true,
        value_enum,
        value_name = "[none,auto,latent2rgb,taesd]",
        help_heading = "Previews"
    )]
    pub preview_method: Option<PreviewMethod>,
    /// Set the maximum preview size for sampler nodes [default: 512].
    #[arg(long, global = true, help_heading = "Previews")]
    pub preview_size: Option<u32>,

    // ---- Caching ----
    /// Use the old style (aggressive) caching.
    #[arg(long, global = true, help_heading = "Caching")]
    pub cache_classic: bool,
    /// Use LRU caching with a maximum of N node results cached.
    #[arg(
        long,
        global = true,
        value_name = "CACHE_LRU",
        help_heading = "Caching"
    )]
    pub cache_lru: Option<u64>,
    /// Reduced RAM/VRAM usage at the expense of executing every node for each run.
    #[arg(long, global = true, help_heading = "Caching")]
    pub cache_none: bool,

    // ---- Attention ----
    /// Use the split cross attention optimization.
    #[arg(long, global = true, help_heading = "Attention")]
    pub use_split_cross_attention: bool,
    /// Use the sub-quadratic cross attention optimization.
    #[arg(long, global = true, help_heading = "Attention")]
    pub use_quad_cross_attention: bool,
    /// Use the fused scaled-dot-product attention (PyTorch 2.0's in ComfyUI).
    #[arg(long, global = true, help_heading = "Attention")]
    pub use_pytorch_cross_attention: bool,
    /// Use sage attention.
    #[arg(long, global = true, help_heading = "Attention")]
    pub use_sage_attention: bool,
    /// Use FlashAttention.
    #[arg(long, global = true, help_heading = "Attention")]
    pub use_flash_attention: bool,
    /// Disable xformers.
    #[arg(long, global = true, help_heading = "Attention")]
    pub disable_xformers: bool,
    /// Force enable attention upcasting.
    #[arg(long, global = true, help_heading = "Attention")]
    pub force_upcast_attention: bool,
    /// Disable all upcasting of attention.
    #[arg(long, global = true, help_heading = "Attention")]
    pub dont_upcast_attention: bool,

    // ---- Memory ----
    /// Store and run everything (text encoders included) on the GPU.
    #[arg(long, global = true, help_heading = "Memory")]
    pub gpu_only: bool,
    /// Keep models in GPU memory after use instead of unloading them to CPU memory.
    #[arg(long, global = true, help_heading = "Memory")]
    pub highvram: bool,
    /// Force normal VRAM use if lowvram gets enabled automatically.
    #[arg(long, global = true, help_heading = "Memory")]
    pub normalvram: bool,
    /// Split the diffusion model in parts to use less VRAM.
    #[arg(long, global = true, help_heading = "Memory")]
    pub lowvram: bool,
    /// When lowvram isn't enough.
    #[arg(long, global = true, help_heading = "Memory")]
    pub novram: bool,
    /// Use the CPU for everything (slow).
    #[arg(long, global = true, help_heading = "Memory")]
    pub cpu: bool,
    /// Amount of VRAM in GB to reserve for the OS and other software.
    #[arg(long, global = true, value_name = "RESERVE_VRAM", value_parser = non_negative_number, help_heading = "Memory")]
    pub reserve_vram: Option<f64>,
    /// Use async weight offloading.
    #[arg(long, global = true, help_heading = "Memory")]
    pub async_offload: bool,
    /// Force non-blocking operations for all applicable tensors.
    #[arg(long, global = true, help_heading = "Memory")]
    pub force_non_blocking: bool,
    /// Hash used to compare uploads with existing files [default: sha256].
    #[arg(long, global = true, value_enum, help_heading = "Server")]
    pub default_hashing_function: Option<HashingFunction>,
    /// Aggressively offload to regular RAM instead of keeping models in VRAM.
    #[arg(long, global = true, help_heading = "Memory")]
    pub disable_smart_memory: bool,
    /// Use slower deterministic algorithms where possible.
    #[arg(long, global = true, help_heading = "Device")]
    pub deterministic: bool,
    /// Enable untested, possibly quality-reducing optimizations (bare: all of them).
    #[arg(long, global = true, value_enum, num_args = 0.., action = ArgAction::Set, value_name = "FAST", help_heading = "Precision")]
    pub fast: Option<Vec<FastFeature>>,
    /// Use mmap when loading ckpt/pt files.
    #[arg(long, global = true, help_heading = "Memory")]
    pub mmap_torch_files: bool,
    /// Don't use mmap when loading safetensors.
    #[arg(long, global = true, help_heading = "Memory")]
    pub disable_mmap: bool,

    // ---- Misc ----
    /// Don't print server output.
    #[arg(long, global = true, help_heading = "Server")]
    pub dont_print_server: bool,
    /// Quick test for CI.
    #[arg(long, global = true, help_heading = "Misc")]
    pub quick_test_for_ci: bool,
    /// Windows standalone build (implies --auto-launch).
    #[arg(long, global = true, help_heading = "Misc")]
    pub windows_standalone_build: bool,
    /// Disable saving prompt metadata in files.
    #[arg(long, global = true, help_heading = "Misc")]
    pub disable_metadata: bool,
    /// Disable loading all custom nodes.
    #[arg(long, global = true, help_heading = "Misc")]
    pub disable_all_custom_nodes: bool,
    /// Custom node folders to load even when --disable-all-custom-nodes is given.
    #[arg(long, global = true, num_args = 1.., action = ArgAction::Set, help_heading = "Misc")]
    pub whitelist_custom_nodes: Vec<String>,
    /// Disable loading all API nodes.
    #[arg(long, global = true, help_heading = "Misc")]
    pub disable_api_nodes: bool,
    /// Enable per-user storage.
    #[arg(long, global = true, help_heading = "Server")]
    pub multi_user: bool,
    /// Set the logging level (bare: DEBUG) [default: INFO].
    #[arg(long, global = true, value_enum, num_args = 0..=1, default_missing_value = "DEBUG", help_heading = "Misc")]
    pub verbose: Option<LogLevel>,
    /// Send normal process output to stdout instead of stderr.
    #[arg(long, global = true, help_heading = "Misc")]
    pub log_stdout: bool,
    /// Frontend version as owner/repo@version [default: comfyanonymous/ComfyUI@latest].
    #[arg(long, global = true, help_heading = "Server")]
    pub front_end_version: Option<String>,
    /// Local directory to serve the frontend from. Overrides --front-end-version.
    #[arg(long, global = true, value_parser = existing_directory, help_heading = "Server")]
    pub front_end_root: Option<PathBuf>,
    /// Set the user directory. Overrides --base-directory.
    #[arg(long, global = true, value_parser = existing_directory, help_heading = "Paths")]
    pub user_directory: Option<PathBuf>,
    /// Enable compressing response bodies.
    #[arg(long, global = true, help_heading = "Server")]
    pub enable_compress_response_body: bool,
    /// Base URL of the ComfyUI API [default: https://api.comfy.org].
    #[arg(long, global = true, help_heading = "Server")]
    pub comfy_api_base: Option<String>,
    /// Database URL, e.g. sqlite:///:memory: [default: sqlite:///<user directory>/comfyui.db].
    #[arg(long, global = true, help_heading = "Server")]
    pub database_url: Option<String>,
}

impl ComfyArgs {
    /// The address(es) to listen on, comma separated: `--listen`, or 127.0.0.1.
    pub fn listen(&self) -> &str {
        self.listen.as_deref().unwrap_or(DEFAULT_LISTEN)
    }

    /// `--port`, or 8188.
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(DEFAULT_PORT)
    }

    /// The CORS origin to allow (`*` for a bare flag), or `None` when CORS is off.
    pub fn cors_origin(&self) -> Option<&str> {
        self.enable_cors_header.as_deref()
    }

    /// `--max-upload-size` in MB, or 100.
    pub fn max_upload_size_mb(&self) -> f64 {
        self.max_upload_size.unwrap_or(DEFAULT_MAX_UPLOAD_SIZE_MB)
    }

    /// Whether to open a browser: `--auto-launch` or `--windows-standalone-build`, unless
    /// `--disable-auto-launch` (ComfyUI's post-processing of the flags).
    pub fn auto_launch(&self) -> bool {
        (self.auto_launch || self.windows_standalone_build) && !self.disable_auto_launch
    }

    /// `--preview-method`, or none.
    pub fn preview_method(&self) -> PreviewMethod {
        self.preview_method.unwrap_or_default()
    }

    /// `--preview-size`, or 512.
    pub fn preview_size(&self) -> u32 {
        self.preview_size.unwrap_or(DEFAULT_PREVIEW_SIZE)
    }

    /// `--default-hashing-function`, or sha256.
    pub fn default_hashing_function(&self) -> HashingFunction {
        self.default_hashing_function.unwrap_or_default()
    }

    /// The `--fast` features: none without the flag, all of them for a bare `--fast`.
    pub fn fast_features(&self) -> BTreeSet<FastFeature> {
        match &self.fast {
            None => BTreeSet::new(),
            Some(features) if features.is_empty() => {
                FastFeature::value_variants().iter().copied().collect()
            }
            Some(features) => features.iter().copied().collect(),
        }
    }

    /// `--verbose`, or INFO.
    pub fn log_level(&self) -> LogLevel {
        self.verbose.unwrap_or_default()
    }

    /// `--front-end-version`, or comfyanonymous/ComfyUI@latest.
    pub fn front_end_version(&self) -> &str {
        self.front_end_version
            .as_deref()
            .unwrap_or(DEFAULT_FRONT_END_VERSION)
    }

    /// `--comfy-api-base`, or https://api.comfy.org.
    pub fn comfy_api_base(&self) -> &str {
        self.comfy_api_base
            .as_deref()
            .unwrap_or(DEFAULT_COMFY_API_BASE)
    }
}
