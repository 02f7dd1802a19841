//! Sampler previews: latent2rgb against hand-computed pixels for each family, a generated TAESD
//! decoder file with the real key layout, the `--preview-method` choice with its latent2rgb
//! fallback, and KSampler reporting one JPEG preview per step.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod node_support;

use std::path::Path;
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use kiln_detect::Architecture;
use kiln_folders::FolderPaths;
use kiln_graph::{ExecutionEvent, ExecutionRequest, Executor, PreviewFormat, Validator};
use kiln_nodes::{
    builtin_registry, encode_preview, Latent2Rgb, NodeServices, NodesError, PreviewDecoder,
    PreviewMethod, Previewer, TaesdDecoder, DEFAULT_PREVIEW_SIZE,
};
use kiln_test_checkpoints::{write, CheckpointSpec, Family, Packaging, Storage};
use node_support::cpu_planner;
use serde_json::json;

fn services(base: &Path, method: PreviewMethod) -> NodeServices {
    NodeServices::builder(FolderPaths::new(base).unwrap(), cpu_planner())
        .preview_method(method)
        .build()
}

/// A `[B, C, 1, N]` latent from per-cell channel vectors (`cells[n][c]`), batch padded with
/// a latent that must be ignored.
fn latent_row(cells: &[Vec<f32>], batch: usize) -> Tensor {
    let channels = cells[0].len();
    let mut data = Vec::new();
    for b in 0..batch {
        for c in 0..channels {
            for cell in cells {
                data.push(if b == 0 { cell[c] } else { 100.0 });
            }
        }
    }
    Tensor::from_vec(data, (batch, channels, 1, cells.len()), &Device::Cpu).unwrap()
}

fn pixels(image: &image::RgbImage) -> Vec<[u8; 3]> {
    image.pixels().map(|p| p.0).collect()
}

#[test]
fn latent2rgb_sdxl_applies_factors_bias_and_byte_mapping() {
    // R = Σ latent·factor + bias, byte = trunc(clamp((R + 1) / 2, 0, 1) · 255):
    // [1,0,0,0] → (0.4735, 0.4057, 0.4330) → (187, 179, 182);
    // [0,2,-1,0.5] → (-0.66405, -0.2616, 0.1393) → (42, 94, 145); [-5,0,0,0] clamps to 0.
    let x0 = latent_row(
        &[
            vec![1.0, 0.0, 0.0, 0.0],
            vec![0.0, 2.0, -1.0, 0.5],
            vec![-5.0, 0.0, 0.0, 0.0],
        ],
        2,
    );
    let image = Latent2Rgb::SDXL.decode(&x0).unwrap();
    assert_eq!(image.dimensions(), (3, 1));
    assert_eq!(pixels(&image), [[187, 179, 182], [42, 94, 145], [0, 0, 0]]);
}

#[test]
fn latent2rgb_sd15_has_no_bias_and_flux_uses_sixteen_channels() {
    // Σ of SD15's rows: (0.1813, 0.6417, 0.1121) → (150, 209, 141).
    let sd15 = Latent2Rgb::SD15
        .decode(&latent_row(&[vec![1.0; 4]], 1))
        .unwrap();
    assert_eq!(pixels(&sd15), [[150, 209, 141]]);

    // Flux's first row plus its bias: (-0.0675, -0.0474, -0.0170) → (118, 121, 125).
    let mut first = vec![0.0; 16];
    first[0] = 1.0;
    let flux = Latent2Rgb::FLUX.decode(&latent_row(&[first], 1)).unwrap();
    assert_eq!(pixels(&flux), [[118, 121, 125]]);

    // An all-zero SD3 latent shows the bias alone: (0.2394, 0.2135, 0.1925) → (158, 154, 152).
    let sd3 = Latent2Rgb::SD3
        .decode(&latent_row(&[vec![0.0; 16]], 1))
        .unwrap();
    assert_eq!(pixels(&sd3), [[158, 154, 152]]);
}

#[test]
fn previews_are_jpegs_resized_to_fit_the_preview_size() {
    let previewer = Previewer::new(PreviewDecoder::Latent2Rgb(Latent2Rgb::SD15), 512);
    let x0 = Tensor::zeros((1, 4, 8, 16), DType::F32, &Device::Cpu).unwrap();
    let preview = previewer.render(&x0).unwrap();
    assert_eq!(preview.format, PreviewFormat::Jpeg);
    assert_eq!(&preview.bytes[..3], &[0xFF, 0xD8, 0xFF]);
    let decoded = image::load_from_memory(&preview.bytes).unwrap();
    assert_eq!((decoded.width(), decoded.height()), (512, 256));
    // A uniform latent stays uniform: the SD15 map of zeros is mid-grey (127).
    let rgb = decoded.to_rgb8();
    assert!(rgb
        .pixels()
        .all(|p| p.0.iter().all(|&v| v.abs_diff(127) <= 2)));

    let small = encode_preview(&image::RgbImage::new(40, 24), 100).unwrap();
    let decoded = image::load_from_memory(&small.bytes).unwrap();
    assert_eq!((decoded.width(), decoded.height()), (100, 60));
}

/// Every tensor of `comfy/taesd/taesd.py: Decoder` of `width`, as `(name, shape)`.
fn taesd_layout(width: usize, latent_channels: usize) -> Vec<(String, Vec<usize>)> {
    let mut layout = vec![
        ("1.weight".to_owned(), vec![width, latent_channels, 3, 3]),
        ("1.bias".to_owned(), vec![width]),
    ];
    for block in [3, 4, 5, 8, 9, 10, 13, 14, 15, 18] {
        for conv in [0, 2, 4] {
            layout.push((
                format!("{block}.conv.{conv}.weight"),
                vec![width, width, 3, 3],
            ));
            layout.push((format!("{block}.conv.{conv}.bias"), vec![width]));
        }
    }
    for conv in [7, 12, 17] {
        layout.push((format!("{conv}.weight"), vec![width, width, 3, 3]));
    }
    layout.push(("19.weight".to_owned(), vec![3, width, 3, 3]));
    layout.push(("19.bias".to_owned(), vec![3]));
    layout
}

fn write_safetensors(path: &Path, tensors: &[(String, Vec<usize>, Vec<f32>)]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(name, shape, values)| {
            (
                name.clone(),
                shape.clone(),
                values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            )
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = bytes
        .iter()
        .map(|(name, shape, raw)| {
            let view =
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), raw)
                    .unwrap();
            (name.clone(), view)
        })
        .collect();
    std::fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
}

/// A TAESD decoder file with deterministic small weights.
fn write_ramp_taesd(path: &Path, width: usize, latent_channels: usize) {
    let tensors: Vec<_> = taesd_layout(width, latent_channels)
        .into_iter()
        .enumerate()
        .map(|(index, (name, shape))| {
            let count = shape.iter().product();
            let values = (0..count)
                .map(|i| (((i * 7 + index * 3) % 11) as f32 - 5.0) * 0.02)
                .collect();
            (name, shape, values)
        })
        .collect();
    write_safetensors(path, &tensors);
}

/// A width-1 TAESD decoder whose convolutions are centre taps: it passes latent channel 0
/// through the clamp and the ReLUs, doubles it in block 18 (the only block whose `conv.4` is
/// not zero), repeats it 8× by the upsamplings, and maps it to RGB as `0.5·v + 0.25`,
/// `−0.25·v + 0.5`, `0.3·v + 0.1`.
fn write_centre_tap_taesd(path: &Path) {
    let centre = |shape: &[usize], taps: &[(usize, f32)]| {
        let mut values = vec![0.0f32; shape.iter().product()];
        for &(kernel, value) in taps {
            values[kernel * 9 + 4] = value;
        }
        values
    };
    let tensors: Vec<_> = taesd_layout(1, 4)
        .into_iter()
        .map(|(name, shape)| {
            let values = match name.as_str() {
                "1.weight" => centre(&shape, &[(0, 1.0)]),
                "19.weight" => centre(&shape, &[(0, 0.5), (1, -0.25), (2, 0.3)]),
                "19.bias" => vec![0.25, 0.5, 0.1],
                "18.conv.4.weight" => centre(&shape, &[(0, 1.0)]),
                other if other.ends_with("conv.4.weight") => vec![0.0; 9],
                other if other.ends_with(".weight") => centre(&shape, &[(0, 1.0)]),
                _ => vec![0.0; shape.iter().product()],
            };
            (name, shape, values)
        })
        .collect();
    write_safetensors(path, &tensors);
}

#[test]
fn taesd_decoder_follows_the_sequential_layout() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("taesd_decoder.safetensors");
    write_centre_tap_taesd(&path);
    let decoder = TaesdDecoder::load(&path, &Device::Cpu).unwrap();
    assert_eq!(decoder.latent_channels(), 4);

    // Channel 0 is [0.5, -0.6]; the other channels have zero weights.
    let x0 = latent_row(&[vec![0.5, 9.0, 9.0, 9.0], vec![-0.6, 9.0, 9.0, 9.0]], 1);
    let decoded = decoder.decode(&x0).unwrap();
    assert_eq!(decoded.dims(), &[1, 3, 8, 16]);

    let previewer = Previewer::new(PreviewDecoder::Taesd(Box::new(decoder)), 512);
    let image = previewer.decode(&x0).unwrap();
    assert_eq!(image.dimensions(), (16, 8));
    // v = 2·3·tanh(0.5 / 3) = 0.99084; TAESD.decode's (y − 0.5)·2 then preview_to_image's
    // (x + 1) / 2 give back y: (0.7454, 0.2523, 0.3973) · 255 → (190, 64, 101). The negative
    // cell is cut by the first ReLU, leaving the bias: (63, 127, 25).
    for y in 0..8 {
        for x in 0..16 {
            let expected = if x < 8 { [190, 64, 101] } else { [63, 127, 25] };
            assert_eq!(image.get_pixel(x, y).0, expected, "pixel ({x}, {y})");
        }
    }
}

#[test]
fn generated_taesd_decoder_decodes_to_eight_times_the_latent() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("taesd3_decoder.safetensors");
    write_ramp_taesd(&path, 8, 16);
    let decoder = TaesdDecoder::load(&path, &Device::Cpu).unwrap();
    assert_eq!(decoder.latent_channels(), 16);
    let values: Vec<f32> = (0..2 * 16 * 3 * 5)
        .map(|i| ((i % 9) as f32 - 4.0) * 0.3)
        .collect();
    let x0 = Tensor::from_vec(values, (2, 16, 3, 5), &Device::Cpu).unwrap();
    assert_eq!(decoder.decode(&x0).unwrap().dims(), &[2, 3, 24, 40]);

    let preview = Previewer::new(PreviewDecoder::Taesd(Box::new(decoder.clone())), 512)
        .render(&x0)
        .unwrap();
    let decoded = image::load_from_memory(&preview.bytes).unwrap();
    // 24 / 40 · 512 = 307.2 → 307.
    assert_eq!((decoded.width(), decoded.height()), (512, 307));

    let four_channels = Tensor::zeros((1, 4, 3, 5), DType::F32, &Device::Cpu).unwrap();
    assert!(matches!(
        decoder.decode(&four_channels),
        Err(NodesError::InvalidInput { .. })
    ));
}

#[test]
fn taesd_decoder_rejects_wrong_shapes_and_missing_layers() {
    let dir = tempfile::tempdir().unwrap();
    let mut layout: Vec<_> = taesd_layout(4, 4)
        .into_iter()
        .map(|(name, shape)| {
            let count = shape.iter().product();
            (name, shape, vec![0.0f32; count])
        })
        .collect();
    let wrong = dir.path().join("wrong.safetensors");
    let mut reshaped = layout.clone();
    for (name, shape, values) in &mut reshaped {
        if name == "12.weight" {
            *shape = vec![4, 4, 1, 1];
            *values = vec![0.0; 16];
        }
    }
    write_safetensors(&wrong, &reshaped);
    let error = TaesdDecoder::load(&wrong, &Device::Cpu).unwrap_err();
    assert!(matches!(error, NodesError::Model { .. }), "{error}");
    assert!(error.to_string().contains("12.weight"), "{error}");

    layout.retain(|(name, _, _)| !name.starts_with("19."));
    let missing = dir.path().join("missing.safetensors");
    write_safetensors(&missing, &layout);
    let error = TaesdDecoder::load(&missing, &Device::Cpu).unwrap_err();
    assert!(error.to_string().contains("19.weight"), "{error}");

    let not_weights = dir.path().join("garbage.safetensors");
    std::fs::write(&not_weights, b"not a weight file").unwrap();
    assert!(TaesdDecoder::load(&not_weights, &Device::Cpu).is_err());
}

fn decoder_kind(previewer: &Option<Previewer>) -> Option<&'static str> {
    previewer.as_ref().map(|p| match p.decoder() {
        PreviewDecoder::Latent2Rgb(_) => "latent2rgb",
        PreviewDecoder::Taesd(_) => "taesd",
    })
}

#[test]
fn preview_method_picks_the_decoder_and_falls_back_to_latent2rgb() {
    let base = tempfile::tempdir().unwrap();
    let cpu = Device::Cpu;
    let pick = |method, architecture| {
        Previewer::for_model(
            &services(base.path(), method),
            architecture,
            &cpu,
            DEFAULT_PREVIEW_SIZE,
        )
    };
    assert!(pick(PreviewMethod::None, Architecture::Sd1).is_none());
    assert_eq!(
        decoder_kind(&pick(PreviewMethod::Auto, Architecture::Sd1)),
        Some("latent2rgb")
    );
    // No decoder file yet: TAESD falls back to latent2rgb.
    let fallback = pick(PreviewMethod::Taesd, Architecture::Sd1);
    assert!(matches!(
        fallback.as_ref().unwrap().decoder(),
        PreviewDecoder::Latent2Rgb(map) if *map == Latent2Rgb::SD15
    ));

    let vae_approx = base.path().join("models").join("vae_approx");
    write_ramp_taesd(&vae_approx.join("taesd_decoder.safetensors"), 4, 4);
    let taesd = pick(PreviewMethod::Taesd, Architecture::Sd1);
    assert_eq!(decoder_kind(&taesd), Some("taesd"));
    assert_eq!(taesd.unwrap().max_size(), DEFAULT_PREVIEW_SIZE);
    // SDXL looks for `taesdxl_decoder*`, which is not there.
    assert!(matches!(
        pick(PreviewMethod::Taesd, Architecture::Sdxl).unwrap().decoder(),
        PreviewDecoder::Latent2Rgb(map) if *map == Latent2Rgb::SDXL
    ));
    // latent2rgb stays latent2rgb even with a decoder present.
    assert_eq!(
        decoder_kind(&pick(PreviewMethod::Latent2Rgb, Architecture::Sd1)),
        Some("latent2rgb")
    );
    // An unusable file falls back too.
    std::fs::write(vae_approx.join("taef1_decoder.safetensors"), b"broken").unwrap();
    assert_eq!(
        decoder_kind(&pick(PreviewMethod::Taesd, Architecture::Flux)),
        Some("latent2rgb")
    );
    assert!(pick(PreviewMethod::Latent2Rgb, Architecture::ClipL).is_none());
}

fn sampling_prompt(ckpt: &str) -> serde_json::Value {
    json!({
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 2}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["4", 1]}},
        "3": {"class_type": "KSampler", "inputs": {"seed": 5, "steps": 3, "cfg": 4.0,
              "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0,
              "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "PreviewImage", "inputs": {"images": ["8", 0]}}
    })
}

fn run_sampler(method: PreviewMethod) -> Vec<ExecutionEvent> {
    let base = tempfile::tempdir().unwrap();
    let spec = CheckpointSpec::new(Family::Sd1, Storage::F32, Packaging::SingleFile);
    let written = write(&spec, &base.path().join("models").join("checkpoints")).unwrap();
    let ckpt = written.file_name().unwrap().to_str().unwrap().to_owned();
    let services = Arc::new(services(base.path(), method));
    let registry = Arc::new(builtin_registry());
    let resolve = |key: &str| services.combo_options(key);
    let validated = Validator::new(&registry, &resolve)
        .validate(&sampling_prompt(&ckpt))
        .unwrap();
    let mut executor = Executor::new(registry.clone(), services.clone());
    let mut events: Vec<ExecutionEvent> = Vec::new();
    executor
        .execute(&ExecutionRequest::new("p", validated), &mut events)
        .unwrap();
    events
}

#[test]
fn ksampler_reports_one_jpeg_preview_per_step() {
    let events = run_sampler(PreviewMethod::Latent2Rgb);
    // Per step: progress_state, the preview, then progress — as ComfyUI's hook sends them.
    let sampler_events: Vec<&ExecutionEvent> = events
        .iter()
        .filter(|event| match event {
            ExecutionEvent::Preview { node, .. } | ExecutionEvent::Progress { node, .. } => {
                node == "3"
            }
            _ => false,
        })
        .collect();
    assert_eq!(sampler_events.len(), 6, "{sampler_events:?}");
    for (step, pair) in sampler_events.chunks(2).enumerate() {
        let ExecutionEvent::Preview { image, .. } = pair[0] else {
            panic!("step {step}: expected a preview first, got {:?}", pair[0]);
        };
        assert_eq!(image.format, PreviewFormat::Jpeg);
        let decoded = image::load_from_memory(&image.bytes).unwrap();
        // A 64×64 image is an 8×8 latent, shown at the default 512 preview size.
        assert_eq!((decoded.width(), decoded.height()), (512, 512));
        assert!(matches!(
            pair[1],
            ExecutionEvent::Progress { value, max: 3, .. } if *value == step as u64 + 1
        ));
    }

    let quiet = run_sampler(PreviewMethod::None);
    assert!(!quiet
        .iter()
        .any(|event| matches!(event, ExecutionEvent::Preview { .. })));
    assert_eq!(
        quiet
            .iter()
            .filter(|event| matches!(event, ExecutionEvent::Progress { .. }))
            .count(),
        3
    );
}
