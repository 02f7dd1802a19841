//! Tests of the whole flag set, one per flag or group (ripgrep's `defs.rs` style), plus the
//! registry and the stage-two conversions.

use std::path::PathBuf;

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser};
use kiln_runtime::{
    AttentionRequest, ForcedDType, GlobalPrecision, PlanOptions, UpcastRequest, VramMode,
};

use super::*;

fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
    Cli::try_parse_checked_from(std::iter::once("kiln").chain(args.iter().copied()))
}

fn comfy(args: &[&str]) -> ComfyArgs {
    match parse(args) {
        Ok(cli) => cli.global,
        Err(error) => panic!("{args:?} did not parse: {error}"),
    }
}

fn error_of(args: &[&str]) -> clap::Error {
    match parse(args) {
        Ok(cli) => panic!("{args:?} parsed: {cli:?}"),
        Err(error) => error,
    }
}

fn assert_conflict(args: &[&str], first: &str, second: &str) {
    let error = error_of(args);
    assert_eq!(
        error.kind(),
        ErrorKind::ArgumentConflict,
        "{args:?}: {error}"
    );
    let message = error.to_string();
    // clap shows a value flag with its value name: '--cache-lru <CACHE_LRU>'.
    let names = |flag: &str| {
        message.contains(&format!("'{flag}'")) || message.contains(&format!("'{flag} <"))
    };
    assert!(names(first) && names(second), "{args:?}: {message}");
}

fn plan(args: &[&str]) -> PlanOptions {
    comfy(args).plan_options()
}

/// The long name of every flag in ComfyUI's `comfy/cli_args.py` at a125cd84, in its order.
const COMFYUI_FLAG_NAMES: &[&str] = &[
    "listen",
    "port",
    "tls-keyfile",
    "tls-certfile",
    "enable-cors-header",
    "max-upload-size",
    "base-directory",
    "extra-model-paths-config",
    "output-directory",
    "temp-directory",
    "input-directory",
    "auto-launch",
    "disable-auto-launch",
    "cuda-device",
    "default-device",
    "cuda-malloc",
    "disable-cuda-malloc",
    "force-fp32",
    "force-fp16",
    "fp32-unet",
    "fp64-unet",
    "bf16-unet",
    "fp16-unet",
    "fp8_e4m3fn-unet",
    "fp8_e5m2-unet",
    "fp8_e8m0fnu-unet",
    "fp16-vae",
    "fp32-vae",
    "bf16-vae",
    "cpu-vae",
    "fp8_e4m3fn-text-enc",
    "fp8_e5m2-text-enc",
    "fp16-text-enc",
    "fp32-text-enc",
    "bf16-text-enc",
    "force-channels-last",
    "directml",
    "oneapi-device-selector",
    "disable-ipex-optimize",
    "supports-fp8-compute",
    "preview-method",
    "preview-size",
    "cache-classic",
    "cache-lru",
    "cache-none",
    "use-split-cross-attention",
    "use-quad-cross-attention",
    "use-pytorch-cross-attention",
    "use-sage-attention",
    "use-flash-attention",
    "disable-xformers",
    "force-upcast-attention",
    "dont-upcast-attention",
    "gpu-only",
    "highvram",
    "normalvram",
    "lowvram",
    "novram",
    "cpu",
    "reserve-vram",
    "async-offload",
    "force-non-blocking",
    "default-hashing-function",
    "disable-smart-memory",
    "deterministic",
    "fast",
    "mmap-torch-files",
    "disable-mmap",
    "dont-print-server",
    "quick-test-for-ci",
    "windows-standalone-build",
    "disable-metadata",
    "disable-all-custom-nodes",
    "whitelist-custom-nodes",
    "disable-api-nodes",
    "multi-user",
    "verbose",
    "log-stdout",
    "front-end-version",
    "front-end-root",
    "user-directory",
    "enable-compress-response-body",
    "comfy-api-base",
    "database-url",
];

/// A command line that gives `name`: the bare flag, or the flag with a typical value.
fn sample(name: &str) -> Vec<String> {
    let existing_dir = std::env::temp_dir().to_string_lossy().into_owned();
    let value = match name {
        "port" => Some("9000".to_owned()),
        "tls-keyfile" => Some("key.pem".to_owned()),
        "tls-certfile" => Some("cert.pem".to_owned()),
        "max-upload-size" => Some("5".to_owned()),
        "base-directory" | "output-directory" | "temp-directory" | "input-directory" => {
            Some("some/dir".to_owned())
        }
        "extra-model-paths-config" => Some("extra.yaml".to_owned()),
        "cuda-device" | "default-device" => Some("1".to_owned()),
        "oneapi-device-selector" => Some("level_zero:0".to_owned()),
        "preview-method" => Some("auto".to_owned()),
        "preview-size" => Some("256".to_owned()),
        "cache-lru" => Some("10".to_owned()),
        "reserve-vram" => Some("1".to_owned()),
        "default-hashing-function" => Some("md5".to_owned()),
        "whitelist-custom-nodes" => Some("pack".to_owned()),
        "front-end-version" => Some("Comfy-Org/ComfyUI_frontend@1.2.3".to_owned()),
        "front-end-root" | "user-directory" => Some(existing_dir),
        "comfy-api-base" => Some("http://localhost:1".to_owned()),
        "database-url" => Some("sqlite:///:memory:".to_owned()),
        _ => None,
    };
    let mut args = vec![format!("--{name}")];
    args.extend(value);
    args
}

fn comfy_owned(args: &[String]) -> ComfyArgs {
    let borrowed: Vec<&str> = args.iter().map(String::as_str).collect();
    comfy(&borrowed)
}

// ---- The command as a whole ----

#[test]
fn clap_definition_is_consistent() {
    Cli::command().debug_assert();
}

#[test]
fn brief_example_parses_with_plain_clap_and_checked() {
    let args = [
        "kiln",
        "--force-fp16",
        "--use-split-cross-attention",
        "--cpu",
    ];
    let plain = Cli::try_parse_from(args).unwrap();
    let checked = Cli::try_parse_checked_from(args).unwrap();
    assert_eq!(plain, checked);
    assert!(plain.global.force_fp16 && plain.global.use_split_cross_attention && plain.global.cpu);
    assert_eq!(plain.command, None);
    let options = plain.global.plan_options();
    assert_eq!(options.precision, GlobalPrecision::ForceFp16);
    assert_eq!(options.attention, AttentionRequest::Split);
    assert!(options.cpu);
}

#[test]
fn no_flags_means_comfyui_defaults() {
    let cli = parse(&[]).unwrap();
    assert_eq!(cli.global, ComfyArgs::default());
    assert_eq!(cli.command, None);
    assert_eq!(cli.simulate_device, None);
    let args = cli.global;
    assert_eq!(args.listen(), "127.0.0.1");
    assert_eq!(args.port(), 8188);
    assert_eq!(args.cors_origin(), None);
    assert_eq!(args.max_upload_size_mb(), 100.0);
    assert!(!args.auto_launch());
    assert_eq!(args.preview_method(), PreviewMethod::NoPreviews);
    assert_eq!(args.preview_size(), 512);
    assert_eq!(args.default_hashing_function(), HashingFunction::Sha256);
    assert!(args.fast_features().is_empty());
    assert_eq!(args.log_level(), LogLevel::Info);
    assert_eq!(args.front_end_version(), "comfyanonymous/ComfyUI@latest");
    assert_eq!(args.comfy_api_base(), "https://api.comfy.org");
    assert!(args.unimplemented_flags().is_empty());
    assert_eq!(
        serde_json::to_value(args.plan_options()).unwrap(),
        serde_json::to_value(PlanOptions::default()).unwrap()
    );
}

#[test]
fn every_comfyui_flag_exists_with_its_exact_name() {
    let command = Cli::command();
    let longs: Vec<&str> = command
        .get_arguments()
        .filter_map(|arg| arg.get_long())
        .filter(|long| !matches!(*long, "help" | "version" | "simulate-device"))
        .collect();
    assert_eq!(longs, COMFYUI_FLAG_NAMES);
}

#[test]
fn registry_covers_every_flag_in_order() {
    let names: Vec<&str> = COMFY_FLAGS.iter().map(|entry| entry.name).collect();
    assert_eq!(names, COMFYUI_FLAG_NAMES);
}

#[test]
fn registry_sees_each_flag_given_and_only_that_flag() {
    let defaults = ComfyArgs::default();
    for entry in COMFY_FLAGS {
        assert!(!(entry.given)(&defaults), "{} given by default", entry.name);
        let args = comfy_owned(&sample(entry.name));
        let given: Vec<&str> = COMFY_FLAGS
            .iter()
            .filter(|other| (other.given)(&args))
            .map(|other| other.name)
            .collect();
        assert_eq!(given, [entry.name], "sample of {}", entry.name);
    }
}

#[test]
fn every_flag_parses_after_a_subcommand_too() {
    for name in COMFYUI_FLAG_NAMES {
        let mut args = vec!["doctor".to_owned()];
        args.extend(sample(name));
        let borrowed: Vec<&str> = args.iter().map(String::as_str).collect();
        let cli = parse(&borrowed).unwrap_or_else(|error| panic!("{name}: {error}"));
        assert_eq!(cli.global, comfy_owned(&sample(name)), "{name}");
    }
}

#[test]
fn repeated_flags_override_like_argparse() {
    let args = comfy(&["--cpu", "--cpu", "--port", "1", "--port", "2"]);
    assert!(args.cpu);
    assert_eq!(args.port(), 2);
}

#[test]
fn unambiguous_prefixes_are_accepted_like_argparse() {
    assert!(comfy(&["--lowv"]).lowvram);
    assert!(comfy(&["--cpu"]).cpu);
    assert!(!comfy(&["--cpu"]).cpu_vae);
    assert!(parse(&["--fp16"]).is_err());
}

#[test]
fn unknown_flag_is_an_error() {
    assert_eq!(
        error_of(&["--no-such-flag"]).kind(),
        ErrorKind::UnknownArgument
    );
}

// ---- Network / server ----

#[test]
fn listen_bare_means_all_addresses() {
    assert_eq!(comfy(&["--listen"]).listen(), "0.0.0.0,::");
    assert_eq!(comfy(&["--listen", "--port", "1"]).listen(), LISTEN_ALL);
}

#[test]
fn listen_takes_an_address_list() {
    assert_eq!(
        comfy(&["--listen", "127.2.2.2,127.3.3.3"]).listen(),
        "127.2.2.2,127.3.3.3"
    );
    assert_eq!(comfy(&["--listen=::1"]).listen(), "::1");
}

#[test]
fn port_is_a_port_number() {
    assert_eq!(comfy(&["--port", "9000"]).port(), 9000);
    assert_eq!(
        error_of(&["--port", "70000"]).kind(),
        ErrorKind::ValueValidation
    );
    assert_eq!(
        error_of(&["--port", "http"]).kind(),
        ErrorKind::ValueValidation
    );
    assert_eq!(error_of(&["--port"]).kind(), ErrorKind::InvalidValue);
}

#[test]
fn tls_files() {
    let args = comfy(&["--tls-keyfile", "k.pem", "--tls-certfile", "c.pem"]);
    assert_eq!(args.tls_keyfile, Some(PathBuf::from("k.pem")));
    assert_eq!(args.tls_certfile, Some(PathBuf::from("c.pem")));
}

#[test]
fn enable_cors_header_bare_allows_all_origins() {
    assert_eq!(comfy(&["--enable-cors-header"]).cors_origin(), Some("*"));
    assert_eq!(
        comfy(&["--enable-cors-header", "https://example.org"]).cors_origin(),
        Some("https://example.org")
    );
}

#[test]
fn max_upload_size_is_a_float() {
    assert_eq!(
        comfy(&["--max-upload-size", "12.5"]).max_upload_size_mb(),
        12.5
    );
    assert!(parse(&["--max-upload-size", "-1"]).is_err());
}

#[test]
fn auto_launch_flags_are_not_exclusive_and_disable_wins() {
    assert!(comfy(&["--auto-launch"]).auto_launch());
    assert!(!comfy(&["--auto-launch", "--disable-auto-launch"]).auto_launch());
    assert!(comfy(&["--windows-standalone-build"]).auto_launch());
    assert!(!comfy(&["--windows-standalone-build", "--disable-auto-launch"]).auto_launch());
}

#[test]
fn preview_method_choices() {
    for (text, method) in [
        ("none", PreviewMethod::NoPreviews),
        ("auto", PreviewMethod::Auto),
        ("latent2rgb", PreviewMethod::Latent2rgb),
        ("taesd", PreviewMethod::Taesd),
    ] {
        assert_eq!(comfy(&["--preview-method", text]).preview_method(), method);
    }
    assert_eq!(
        error_of(&["--preview-method", "TAESD"]).kind(),
        ErrorKind::InvalidValue
    );
}

#[test]
fn preview_size() {
    assert_eq!(comfy(&["--preview-size", "256"]).preview_size(), 256);
}

#[test]
fn default_hashing_function_choices() {
    for (text, function) in [
        ("md5", HashingFunction::Md5),
        ("sha1", HashingFunction::Sha1),
        ("sha256", HashingFunction::Sha256),
        ("sha512", HashingFunction::Sha512),
    ] {
        assert_eq!(
            comfy(&["--default-hashing-function", text]).default_hashing_function(),
            function
        );
    }
    assert!(parse(&["--default-hashing-function", "crc32"]).is_err());
}

#[test]
fn front_end_version_and_root() {
    let dir = tempfile::tempdir().unwrap();
    let dir_text = dir.path().to_str().unwrap();
    let args = comfy(&[
        "--front-end-version",
        "Comfy-Org/ComfyUI_frontend@1.2.3",
        "--front-end-root",
        dir_text,
    ]);
    assert_eq!(args.front_end_version(), "Comfy-Org/ComfyUI_frontend@1.2.3");
    assert_eq!(args.front_end_root.as_deref(), Some(dir.path()));
    let missing = dir.path().join("missing");
    let error = error_of(&["--front-end-root", missing.to_str().unwrap()]);
    assert!(error.to_string().contains("does not exist"), "{error}");
}

#[test]
fn api_base_and_database_url() {
    let args = comfy(&[
        "--comfy-api-base",
        "http://x",
        "--database-url",
        "sqlite:///:memory:",
    ]);
    assert_eq!(args.comfy_api_base(), "http://x");
    assert_eq!(args.database_url.as_deref(), Some("sqlite:///:memory:"));
}

// ---- Paths ----

#[test]
fn directory_flags() {
    let args = comfy(&[
        "--base-directory",
        "b",
        "--output-directory",
        "o",
        "--temp-directory",
        "t",
        "--input-directory",
        "i",
    ]);
    assert_eq!(args.base_directory, Some(PathBuf::from("b")));
    assert_eq!(args.output_directory, Some(PathBuf::from("o")));
    assert_eq!(args.temp_directory, Some(PathBuf::from("t")));
    assert_eq!(args.input_directory, Some(PathBuf::from("i")));
}

#[test]
fn extra_model_paths_config_is_multi_valued_and_repeatable() {
    let args = comfy(&[
        "--extra-model-paths-config",
        "a.yaml",
        "b.yaml",
        "--cpu",
        "--extra-model-paths-config",
        "c.yaml",
    ]);
    assert_eq!(
        args.extra_model_paths_config,
        ["a.yaml", "b.yaml", "c.yaml"].map(PathBuf::from)
    );
    assert!(parse(&["--extra-model-paths-config"]).is_err());
}

#[test]
fn user_directory_must_exist_and_be_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    assert_eq!(
        comfy(&["--user-directory", dir.path().to_str().unwrap()])
            .user_directory
            .as_deref(),
        Some(dir.path())
    );
    let error = error_of(&["--user-directory", file.to_str().unwrap()]);
    assert!(error.to_string().contains("is not a directory"), "{error}");
}

#[test]
fn folder_paths_follow_the_path_flags() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir(root.join("users")).unwrap();
    std::fs::write(root.join("extra.yaml"), "more:\n  loras: more_loras\n").unwrap();
    let text = |name: &str| root.join(name).to_str().unwrap().to_owned();
    let args = [
        "--base-directory".to_owned(),
        text("base"),
        "--output-directory".to_owned(),
        text("out"),
        "--input-directory".to_owned(),
        text("in"),
        "--temp-directory".to_owned(),
        text("tmp"),
        "--user-directory".to_owned(),
        text("users"),
        "--extra-model-paths-config".to_owned(),
        text("extra.yaml"),
    ];
    let paths = comfy_owned(&args).folder_paths().unwrap();
    assert_eq!(paths.base_directory(), root.join("base"));
    assert_eq!(paths.output_directory(), root.join("out"));
    assert_eq!(paths.input_directory(), root.join("in"));
    assert_eq!(paths.temp_directory(), root.join("tmp/temp"));
    assert_eq!(paths.user_directory(), root.join("users"));
    assert_eq!(
        paths.folder_paths("loras").unwrap(),
        [
            root.join("base/models/loras"),
            root.join("more_loras"),
            root.join("out/loras")
        ]
    );
}

#[test]
fn folder_paths_report_a_broken_config() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.yaml");
    std::fs::write(&config, "a:\n  loras: [x\n").unwrap();
    let args = comfy(&[
        "--base-directory",
        dir.path().to_str().unwrap(),
        "--extra-model-paths-config",
        config.to_str().unwrap(),
    ]);
    assert!(matches!(
        args.folder_paths(),
        Err(kiln_folders::FoldersError::InvalidConfig { .. })
    ));
}

// ---- Devices ----

#[test]
fn cuda_device_is_planned() {
    assert_eq!(plan(&["--cuda-device", "1"]).cuda_device, Some(1));
    assert!(parse(&["--cuda-device", "-1"]).is_err());
}

#[test]
fn default_device() {
    assert_eq!(comfy(&["--default-device", "2"]).default_device, Some(2));
}

#[test]
fn directml_bare_means_default_device() {
    assert_eq!(comfy(&["--directml"]).directml, Some(-1));
    assert_eq!(comfy(&["--directml", "1"]).directml, Some(1));
    assert_eq!(comfy(&["--directml", "-1"]).directml, Some(-1));
}

#[test]
fn intel_flags() {
    let args = comfy(&[
        "--oneapi-device-selector",
        "level_zero:0",
        "--disable-ipex-optimize",
    ]);
    assert_eq!(args.oneapi_device_selector.as_deref(), Some("level_zero:0"));
    assert!(args.disable_ipex_optimize);
}

#[test]
fn supports_fp8_compute_is_planned() {
    assert!(plan(&["--supports-fp8-compute"]).assume_fp8_compute);
}

#[test]
fn cpu_is_planned_without_a_vram_mode() {
    let options = plan(&["--cpu"]);
    assert!(options.cpu);
    assert_eq!(options.vram, VramMode::Auto);
}

// ---- Precision ----

#[test]
fn force_precision_is_planned() {
    assert_eq!(
        plan(&["--force-fp16"]).precision,
        GlobalPrecision::ForceFp16
    );
    assert_eq!(
        plan(&["--force-fp32"]).precision,
        GlobalPrecision::ForceFp32
    );
    assert_eq!(plan(&[]).precision, GlobalPrecision::Auto);
}

#[test]
fn force_fp16_keeps_an_explicit_unet_dtype() {
    let options = plan(&["--force-fp16", "--bf16-unet"]);
    assert_eq!(options.precision, GlobalPrecision::ForceFp16);
    assert_eq!(options.unet_dtype, Some(ForcedDType::BF16));
}

#[test]
fn unet_dtype_flags_are_planned() {
    for (flag, dtype) in [
        ("--fp32-unet", Some(ForcedDType::F32)),
        ("--fp64-unet", Some(ForcedDType::F64)),
        ("--bf16-unet", Some(ForcedDType::BF16)),
        ("--fp16-unet", Some(ForcedDType::F16)),
        ("--fp8_e4m3fn-unet", Some(ForcedDType::F8E4M3)),
        ("--fp8_e5m2-unet", Some(ForcedDType::F8E5M2)),
        ("--fp8_e8m0fnu-unet", None),
    ] {
        assert_eq!(plan(&[flag]).unet_dtype, dtype, "{flag}");
    }
}

#[test]
fn fp8_flags_need_their_underscores() {
    for wrong in [
        "--fp8-e4m3fn-unet",
        "--fp8-e5m2-unet",
        "--fp8-e4m3fn-text-enc",
    ] {
        assert!(parse(&[wrong]).is_err(), "{wrong}");
    }
}

#[test]
fn vae_flags_are_planned() {
    for (flag, dtype) in [
        ("--fp16-vae", ForcedDType::F16),
        ("--fp32-vae", ForcedDType::F32),
        ("--bf16-vae", ForcedDType::BF16),
    ] {
        assert_eq!(plan(&[flag]).vae_dtype, Some(dtype), "{flag}");
    }
    assert!(plan(&["--cpu-vae"]).cpu_vae);
    // --cpu-vae is not in the VAE dtype group.
    assert!(plan(&["--cpu-vae", "--fp16-vae"]).cpu_vae);
}

#[test]
fn text_encoder_flags_are_planned() {
    for (flag, dtype) in [
        ("--fp8_e4m3fn-text-enc", ForcedDType::F8E4M3),
        ("--fp8_e5m2-text-enc", ForcedDType::F8E5M2),
        ("--fp16-text-enc", ForcedDType::F16),
        ("--fp32-text-enc", ForcedDType::F32),
        ("--bf16-text-enc", ForcedDType::BF16),
    ] {
        assert_eq!(plan(&[flag]).text_encoder_dtype, Some(dtype), "{flag}");
    }
}

#[test]
fn force_channels_last() {
    assert!(comfy(&["--force-channels-last"]).force_channels_last);
}

#[test]
fn fast_bare_enables_everything() {
    let all = comfy(&["--fast"]).fast_features();
    assert_eq!(all.len(), 4);
}

#[test]
fn fast_takes_a_feature_list() {
    let features = comfy(&["--fast", "fp16_accumulation", "autotune"]).fast_features();
    assert_eq!(
        features.into_iter().collect::<Vec<_>>(),
        [FastFeature::Fp16Accumulation, FastFeature::Autotune]
    );
    assert!(parse(&["--fast", "turbo"]).is_err());
    let last = comfy(&["--fast", "cublas_ops", "--fast", "fp8_matrix_mult"]).fast_features();
    assert_eq!(
        last.into_iter().collect::<Vec<_>>(),
        [FastFeature::Fp8MatrixMult]
    );
}

// ---- Attention ----

#[test]
fn attention_flags_are_planned() {
    for (flag, request) in [
        ("--use-split-cross-attention", AttentionRequest::Split),
        ("--use-quad-cross-attention", AttentionRequest::SubQuadratic),
        ("--use-pytorch-cross-attention", AttentionRequest::Fused),
        ("--use-sage-attention", AttentionRequest::Sage),
        ("--use-flash-attention", AttentionRequest::Flash),
    ] {
        assert_eq!(plan(&[flag]).attention, request, "{flag}");
    }
    assert_eq!(plan(&[]).attention, AttentionRequest::Auto);
}

#[test]
fn upcast_flags_are_planned() {
    assert_eq!(
        plan(&["--force-upcast-attention"]).upcast,
        UpcastRequest::Force
    );
    assert_eq!(
        plan(&["--dont-upcast-attention"]).upcast,
        UpcastRequest::Never
    );
    assert_eq!(plan(&[]).upcast, UpcastRequest::Auto);
}

#[test]
fn disable_xformers() {
    assert!(comfy(&["--disable-xformers", "--use-flash-attention"]).disable_xformers);
}

// ---- Memory ----

#[test]
fn vram_flags_are_planned() {
    for (flag, mode) in [
        ("--gpu-only", VramMode::GpuOnly),
        ("--highvram", VramMode::High),
        ("--normalvram", VramMode::Normal),
        ("--lowvram", VramMode::Low),
        ("--novram", VramMode::NoVram),
    ] {
        let options = plan(&[flag]);
        assert_eq!(options.vram, mode, "{flag}");
        assert!(!options.cpu, "{flag}");
    }
}

#[test]
fn reserve_vram_is_gigabytes_of_1024_cubed() {
    assert_eq!(
        plan(&["--reserve-vram", "1.5"]).reserve_vram_bytes,
        Some(1_610_612_736)
    );
    assert_eq!(plan(&["--reserve-vram", "0"]).reserve_vram_bytes, Some(0));
    assert_eq!(plan(&[]).reserve_vram_bytes, None);
    assert!(parse(&["--reserve-vram", "-2"]).is_err());
}

#[test]
fn disable_smart_memory_is_planned() {
    assert!(plan(&["--disable-smart-memory"]).disable_smart_memory);
}

#[test]
fn offload_and_mmap_flags() {
    let args = comfy(&[
        "--async-offload",
        "--force-non-blocking",
        "--mmap-torch-files",
        "--disable-mmap",
    ]);
    assert!(
        args.async_offload && args.force_non_blocking && args.mmap_torch_files && args.disable_mmap
    );
}

// ---- Caching ----

#[test]
fn cache_flags() {
    assert!(comfy(&["--cache-classic"]).cache_classic);
    assert_eq!(comfy(&["--cache-lru", "10"]).cache_lru, Some(10));
    assert!(comfy(&["--cache-none"]).cache_none);
    assert!(parse(&["--cache-lru"]).is_err());
}

// ---- Misc ----

#[test]
fn verbose_bare_means_debug() {
    assert_eq!(comfy(&["--verbose"]).log_level(), LogLevel::Debug);
    assert_eq!(
        comfy(&["--verbose", "WARNING"]).log_level(),
        LogLevel::Warning
    );
    assert_eq!(
        comfy(&["--verbose", "CRITICAL"]).log_level(),
        LogLevel::Critical
    );
    assert!(parse(&["--verbose", "warning"]).is_err());
}

#[test]
fn whitelist_custom_nodes_takes_several_and_the_last_use_wins() {
    assert_eq!(
        comfy(&["--whitelist-custom-nodes", "a", "b"]).whitelist_custom_nodes,
        ["a", "b"]
    );
    assert_eq!(
        comfy(&[
            "--whitelist-custom-nodes",
            "a",
            "--whitelist-custom-nodes",
            "c"
        ])
        .whitelist_custom_nodes,
        ["c"]
    );
}

#[test]
fn plain_switches() {
    let args = comfy(&[
        "--dont-print-server",
        "--quick-test-for-ci",
        "--disable-metadata",
        "--disable-all-custom-nodes",
        "--disable-api-nodes",
        "--multi-user",
        "--log-stdout",
        "--enable-compress-response-body",
        "--deterministic",
    ]);
    assert!(args.dont_print_server && args.quick_test_for_ci && args.disable_metadata);
    assert!(args.disable_all_custom_nodes && args.disable_api_nodes && args.multi_user);
    assert!(args.log_stdout && args.enable_compress_response_body && args.deterministic);
}

// ---- Exclusive groups ----

#[test]
fn every_pair_in_every_group_conflicts_naming_both_flags() {
    let command = Cli::command();
    let long_of = |id: &str| {
        let arg = command
            .get_arguments()
            .find(|arg| arg.get_id() == id)
            .unwrap();
        arg.get_long().unwrap().to_owned()
    };
    for group in EXCLUSIVE_GROUPS {
        for (index, first) in group.members.iter().enumerate() {
            for second in &group.members[index + 1..] {
                let first_args = sample(&long_of(first));
                let second_args = sample(&long_of(second));
                let first_flag = &first_args[0];
                let second_flag = &second_args[0];
                let mut args: Vec<String> = first_args.clone();
                args.extend(second_args.iter().cloned());
                let borrowed: Vec<&str> = args.iter().map(String::as_str).collect();
                assert_conflict(&borrowed, first_flag, second_flag);
            }
        }
    }
}

#[test]
fn brief_groups_are_all_there() {
    let names: Vec<&str> = EXCLUSIVE_GROUPS.iter().map(|group| group.name).collect();
    assert_eq!(
        names,
        [
            "cuda_malloc_group",
            "force_precision_group",
            "unet_dtype_group",
            "vae_dtype_group",
            "text_encoder_dtype_group",
            "cache_group",
            "attention_group",
            "upcast_group",
            "vram_group",
        ]
    );
}

#[test]
fn conflicts_are_found_after_a_subcommand() {
    assert_conflict(&["doctor", "--cpu", "--lowvram"], "--cpu", "--lowvram");
    assert_conflict(
        &["inspect", "x", "--force-fp16", "--force-fp32"],
        "--force-fp32",
        "--force-fp16",
    );
}

#[test]
fn conflicts_are_found_across_the_subcommand() {
    assert_conflict(&["--gpu-only", "doctor", "--cpu"], "--gpu-only", "--cpu");
    assert_conflict(
        &["--fp16-vae", "serve", "--bf16-vae"],
        "--fp16-vae",
        "--bf16-vae",
    );
}

#[test]
fn flags_of_different_groups_combine() {
    let options = plan(&[
        "--force-fp32",
        "--fp8_e4m3fn-unet",
        "--bf16-vae",
        "--fp16-text-enc",
        "--use-quad-cross-attention",
        "--dont-upcast-attention",
        "--lowvram",
    ]);
    assert_eq!(options.precision, GlobalPrecision::ForceFp32);
    assert_eq!(options.unet_dtype, Some(ForcedDType::F8E4M3));
    assert_eq!(options.vae_dtype, Some(ForcedDType::BF16));
    assert_eq!(options.text_encoder_dtype, Some(ForcedDType::F16));
    assert_eq!(options.attention, AttentionRequest::SubQuadratic);
    assert_eq!(options.upcast, UpcastRequest::Never);
    assert_eq!(options.vram, VramMode::Low);
}

// ---- Unimplemented flags ----

#[test]
fn unimplemented_flags_list_exactly_the_given_ones() {
    let args = comfy(&[
        "--deterministic",
        "--cpu",
        "--tls-keyfile",
        "k.pem",
        "--fast",
        "--port",
        "1",
    ]);
    assert_eq!(
        args.unimplemented_flags(),
        ["tls-keyfile", "deterministic", "fast"]
    );
    assert!(comfy(&["--cpu", "--fp16-vae", "--listen"])
        .unimplemented_flags()
        .is_empty());
}

#[test]
fn each_not_implemented_flag_is_reported_alone() {
    for entry in COMFY_FLAGS {
        let reported = comfy_owned(&sample(entry.name)).unimplemented_flags();
        if entry.support == FlagSupport::NotImplemented {
            assert_eq!(reported, [entry.name]);
        } else {
            assert!(reported.is_empty(), "{}", entry.name);
        }
    }
}

#[test]
fn warning_line_is_exact() {
    assert_eq!(
        comfy(&["--deterministic"]).compatibility_warnings(),
        ["warning: --deterministic is accepted for ComfyUI compatibility but not implemented by Kiln yet"]
    );
}

#[test]
fn brief_examples_of_unimplemented_flags_are_marked_so() {
    for name in [
        "tls-keyfile",
        "directml",
        "oneapi-device-selector",
        "cuda-malloc",
        "deterministic",
        "fast",
        "force-channels-last",
        "cache-classic",
        "cache-lru",
        "cache-none",
        "async-offload",
        "disable-mmap",
        "multi-user",
        "front-end-version",
        "comfy-api-base",
        "database-url",
        "whitelist-custom-nodes",
        "windows-standalone-build",
        "fp8_e8m0fnu-unet",
        "use-sage-attention",
    ] {
        assert_eq!(
            flag_entry(name).unwrap().support,
            FlagSupport::NotImplemented,
            "{name}"
        );
    }
    assert!(flag_entry("nope").is_none());
    assert_eq!(flag_entry("cpu").unwrap().flag(), "--cpu");
}

// ---- Kiln's own flag and subcommands ----

#[test]
fn simulate_device_takes_a_profile_name_anywhere() {
    let name = kiln_runtime::profile_names()[0];
    assert_eq!(
        parse(&["--simulate-device", name])
            .unwrap()
            .simulate_device
            .as_deref(),
        Some(name)
    );
    assert_eq!(
        parse(&["doctor", "--simulate-device", name])
            .unwrap()
            .simulate_device
            .as_deref(),
        Some(name)
    );
    let error = error_of(&["--simulate-device", "abacus"]);
    assert_eq!(error.kind(), ErrorKind::InvalidValue);
    assert!(error.to_string().contains(name), "{error}");
    assert!(comfy(&["--simulate-device", name])
        .unimplemented_flags()
        .is_empty());
}

#[test]
fn serve_subcommand() {
    assert_eq!(
        parse(&["serve", "--port", "1"]).unwrap().command,
        Some(Command::Serve)
    );
}

#[test]
fn inspect_subcommand() {
    let cli = parse(&["inspect", "a.safetensors", "b.gguf", "--json"]).unwrap();
    assert_eq!(
        cli.command,
        Some(Command::Inspect(InspectArgs {
            files: ["a.safetensors", "b.gguf"].map(PathBuf::from).to_vec(),
            json: true,
        }))
    );
    assert_eq!(
        error_of(&["inspect"]).kind(),
        ErrorKind::MissingRequiredArgument
    );
}

#[test]
fn doctor_subcommand() {
    assert_eq!(
        parse(&["doctor"]).unwrap().command,
        Some(Command::Doctor(DoctorArgs {
            file: None,
            json: false
        }))
    );
    let cli = parse(&["--cpu", "doctor", "--json", "m.safetensors"]).unwrap();
    assert!(cli.global.cpu);
    assert_eq!(
        cli.command,
        Some(Command::Doctor(DoctorArgs {
            file: Some(PathBuf::from("m.safetensors")),
            json: true
        }))
    );
}

#[test]
fn run_subcommand() {
    let cli = parse(&[
        "run",
        "wf.json",
        "--set",
        "3.seed=42",
        "--set",
        "6.text=a cat",
    ])
    .unwrap();
    let Some(Command::Run(run)) = cli.command else {
        panic!("not run: {cli:?}");
    };
    assert_eq!(run.workflow, PathBuf::from("wf.json"));
    assert_eq!(
        run.overrides,
        [
            InputOverride {
                node: "3".into(),
                input: "seed".into(),
                value: "42".into()
            },
            InputOverride {
                node: "6".into(),
                input: "text".into(),
                value: "a cat".into()
            },
        ]
    );
    assert!(parse(&["run", "wf.json", "--set", "seed"]).is_err());
}

#[test]
fn testgen_subcommand() {
    assert_eq!(
        parse(&["testgen", "out"]).unwrap().command,
        Some(Command::Testgen(TestgenArgs {
            dir: PathBuf::from("out")
        }))
    );
    assert!(parse(&["testgen"]).is_err());
}
