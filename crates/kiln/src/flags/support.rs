//! What Kiln does with each ComfyUI flag: one table, [`COMFY_FLAGS`], from flag name to
//! [`FlagSupport`]. The binary prints one warning per given flag that Kiln does not act on.

use super::ComfyArgs;
use FlagSupport::{Implemented, KilnDefault, NotImplemented, Server};

/// How far Kiln honours a ComfyUI flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagSupport {
    /// Kiln acts on the flag (the planner, the folder layout, logging).
    Implemented,
    /// Kiln already behaves the way the flag asks, so there is nothing to do; the text says why.
    KilnDefault(&'static str),
    /// The server acts on the flag. Until `kiln serve` exists nothing reads it; whoever writes
    /// the server must honour every flag marked so.
    Server,
    /// Accepted so that ComfyUI command lines keep working, but ignored: the binary warns.
    NotImplemented,
}

/// One ComfyUI flag and what Kiln does with it.
pub struct FlagEntry {
    /// The long name without `--`, exactly as ComfyUI spells it.
    pub name: &'static str,
    /// What Kiln does with it.
    pub support: FlagSupport,
    /// Whether the flag was given.
    pub given: fn(&ComfyArgs) -> bool,
}

impl FlagEntry {
    /// `--name`.
    pub fn flag(&self) -> String {
        format!("--{}", self.name)
    }
}

macro_rules! entry {
    ($name:literal, $support:expr, |$args:ident| $given:expr) => {
        FlagEntry {
            name: $name,
            support: $support,
            given: |$args: &ComfyArgs| $given,
        }
    };
}

/// Every flag of ComfyUI's `cli_args.py` (at a125cd84), in its order.
pub const COMFY_FLAGS: &[FlagEntry] = &[
    entry!("listen", Server, |a| a.listen.is_some()),
    entry!("port", Server, |a| a.port.is_some()),
    entry!("tls-keyfile", NotImplemented, |a| a.tls_keyfile.is_some()),
    entry!("tls-certfile", NotImplemented, |a| a.tls_certfile.is_some()),
    entry!("enable-cors-header", Server, |a| a
        .enable_cors_header
        .is_some()),
    entry!("max-upload-size", Server, |a| a.max_upload_size.is_some()),
    entry!("base-directory", Implemented, |a| a
        .base_directory
        .is_some()),
    entry!("extra-model-paths-config", Implemented, |a| !a
        .extra_model_paths_config
        .is_empty()),
    entry!("output-directory", Implemented, |a| a
        .output_directory
        .is_some()),
    entry!("temp-directory", Implemented, |a| a
        .temp_directory
        .is_some()),
    entry!("input-directory", Implemented, |a| a
        .input_directory
        .is_some()),
    entry!("auto-launch", NotImplemented, |a| a.auto_launch),
    entry!(
        "disable-auto-launch",
        KilnDefault("Kiln never opens a browser"),
        |a| a.disable_auto_launch
    ),
    entry!("cuda-device", Implemented, |a| a.cuda_device.is_some()),
    entry!("default-device", NotImplemented, |a| a
        .default_device
        .is_some()),
    entry!("cuda-malloc", NotImplemented, |a| a.cuda_malloc),
    entry!("disable-cuda-malloc", NotImplemented, |a| a
        .disable_cuda_malloc),
    entry!("force-fp32", Implemented, |a| a.force_fp32),
    entry!("force-fp16", Implemented, |a| a.force_fp16),
    entry!("fp32-unet", Implemented, |a| a.fp32_unet),
    entry!("fp64-unet", Implemented, |a| a.fp64_unet),
    entry!("bf16-unet", Implemented, |a| a.bf16_unet),
    entry!("fp16-unet", Implemented, |a| a.fp16_unet),
    entry!("fp8_e4m3fn-unet", Implemented, |a| a.fp8_e4m3fn_unet),
    entry!("fp8_e5m2-unet", Implemented, |a| a.fp8_e5m2_unet),
    entry!("fp8_e8m0fnu-unet", NotImplemented, |a| a.fp8_e8m0fnu_unet),
    entry!("fp16-vae", Implemented, |a| a.fp16_vae),
    entry!("fp32-vae", Implemented, |a| a.fp32_vae),
    entry!("bf16-vae", Implemented, |a| a.bf16_vae),
    entry!("cpu-vae", Implemented, |a| a.cpu_vae),
    entry!("fp8_e4m3fn-text-enc", Implemented, |a| a
        .fp8_e4m3fn_text_enc),
    entry!("fp8_e5m2-text-enc", Implemented, |a| a.fp8_e5m2_text_enc),
    entry!("fp16-text-enc", Implemented, |a| a.fp16_text_enc),
    entry!("fp32-text-enc", Implemented, |a| a.fp32_text_enc),
    entry!("bf16-text-enc", Implemented, |a| a.bf16_text_enc),
    entry!("force-channels-last", NotImplemented, |a| a
        .force_channels_last),
    entry!("directml", NotImplemented, |a| a.directml.is_some()),
    entry!("oneapi-device-selector", NotImplemented, |a| a
        .oneapi_device_selector
        .is_some()),
    entry!(
        "disable-ipex-optimize",
        KilnDefault("Kiln has no Intel Extension for PyTorch to optimise"),
        |a| a.disable_ipex_optimize
    ),
    entry!("supports-fp8-compute", Implemented, |a| a
        .supports_fp8_compute),
    entry!("preview-method", Server, |a| a.preview_method.is_some()),
    entry!("preview-size", Server, |a| a.preview_size.is_some()),
    entry!("cache-classic", NotImplemented, |a| a.cache_classic),
    entry!("cache-lru", NotImplemented, |a| a.cache_lru.is_some()),
    entry!("cache-none", NotImplemented, |a| a.cache_none),
    entry!("use-split-cross-attention", Implemented, |a| a
        .use_split_cross_attention),
    entry!("use-quad-cross-attention", Implemented, |a| a
        .use_quad_cross_attention),
    entry!("use-pytorch-cross-attention", Implemented, |a| a
        .use_pytorch_cross_attention),
    // Passed on to the planner, which records that Kiln has no sage kernel and falls back.
    entry!("use-sage-attention", NotImplemented, |a| a
        .use_sage_attention),
    entry!("use-flash-attention", Implemented, |a| a
        .use_flash_attention),
    entry!(
        "disable-xformers",
        KilnDefault("Kiln never uses xformers"),
        |a| a.disable_xformers
    ),
    entry!("force-upcast-attention", Implemented, |a| a
        .force_upcast_attention),
    entry!("dont-upcast-attention", Implemented, |a| a
        .dont_upcast_attention),
    entry!("gpu-only", Implemented, |a| a.gpu_only),
    entry!("highvram", Implemented, |a| a.highvram),
    entry!("normalvram", Implemented, |a| a.normalvram),
    entry!("lowvram", Implemented, |a| a.lowvram),
    entry!("novram", Implemented, |a| a.novram),
    entry!("cpu", Implemented, |a| a.cpu),
    entry!("reserve-vram", Implemented, |a| a.reserve_vram.is_some()),
    entry!("async-offload", NotImplemented, |a| a.async_offload),
    entry!("force-non-blocking", NotImplemented, |a| a
        .force_non_blocking),
    entry!("default-hashing-function", Server, |a| a
        .default_hashing_function
        .is_some()),
    entry!("disable-smart-memory", Implemented, |a| a
        .disable_smart_memory),
    entry!("deterministic", NotImplemented, |a| a.deterministic),
    entry!("fast", NotImplemented, |a| a.fast.is_some()),
    entry!(
        "mmap-torch-files",
        KilnDefault("Kiln always memory-maps .ckpt/.pt files"),
        |a| a.mmap_torch_files
    ),
    entry!("disable-mmap", NotImplemented, |a| a.disable_mmap),
    entry!("dont-print-server", Server, |a| a.dont_print_server),
    entry!("quick-test-for-ci", NotImplemented, |a| a.quick_test_for_ci),
    entry!("windows-standalone-build", NotImplemented, |a| a
        .windows_standalone_build),
    entry!("disable-metadata", Server, |a| a.disable_metadata),
    entry!(
        "disable-all-custom-nodes",
        KilnDefault("Kiln loads no Python custom nodes"),
        |a| a.disable_all_custom_nodes
    ),
    entry!("whitelist-custom-nodes", NotImplemented, |a| !a
        .whitelist_custom_nodes
        .is_empty()),
    entry!(
        "disable-api-nodes",
        KilnDefault("Kiln has no API nodes"),
        |a| a.disable_api_nodes
    ),
    entry!("multi-user", NotImplemented, |a| a.multi_user),
    entry!("verbose", Implemented, |a| a.verbose.is_some()),
    entry!("log-stdout", Implemented, |a| a.log_stdout),
    entry!("front-end-version", NotImplemented, |a| a
        .front_end_version
        .is_some()),
    entry!("front-end-root", Server, |a| a.front_end_root.is_some()),
    entry!("user-directory", Implemented, |a| a
        .user_directory
        .is_some()),
    entry!("enable-compress-response-body", Server, |a| a
        .enable_compress_response_body),
    entry!("comfy-api-base", NotImplemented, |a| a
        .comfy_api_base
        .is_some()),
    entry!("database-url", NotImplemented, |a| a.database_url.is_some()),
];

/// The table entry of a flag (long name without `--`).
pub fn flag_entry(name: &str) -> Option<&'static FlagEntry> {
    COMFY_FLAGS.iter().find(|entry| entry.name == name)
}
