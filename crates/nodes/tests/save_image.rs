//! SaveImage/PreviewImage through the public registry: exact file names and counters, and PNG
//! text chunks byte-identical to what ComfyUI (Python's `json.dumps`) writes.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use candle_core::{Device, Tensor};
use kiln_folders::FolderPaths;
use kiln_graph::{ExecutionContext, ExecutionEvent, InterruptFlag, NodeInputs, NodeOutput, Value};
use kiln_nodes::{builtin_registry, read_png_text, Image, NodeServices};
use kiln_runtime::{detect_host, PlanOptions, Planner};

const PROMPT: &str = r#"{"3": {"class_type": "KSampler", "inputs": {"seed": 156680208700286, "cfg": 8.0, "denoise": 1, "model": ["4", 0], "text": "caf\u00e9 \u2615 \"q\"\n\ttab \ud83d\ude00"}}, "10": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]}, "_meta": {"title": "Save"}}, "4": {"class_type": "X", "inputs": {"scale": 1e-05, "big": 1e+16, "neg": -0.5}}}"#;
const EXTRA: &str = r#"{"workflow": {"nodes": [], "links": [[1, 4, 0, 3, 0, "MODEL"]], "version": 0.4, "extra": {"ds": {"scale": 1.2100000000000002, "offset": [0, -3.5]}}}, "note": "\u00fc"}"#;

// Printed by CPython 3.12: json.dumps(json.loads(PROMPT)) and json.dumps(v) for each v of EXTRA.
const PROMPT_CHUNK: &str = r#"{"3": {"class_type": "KSampler", "inputs": {"seed": 156680208700286, "cfg": 8.0, "denoise": 1, "model": ["4", 0], "text": "caf\u00e9 \u2615 \"q\"\n\ttab \ud83d\ude00"}}, "10": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]}, "_meta": {"title": "Save"}}, "4": {"class_type": "X", "inputs": {"scale": 1e-05, "big": 1e+16, "neg": -0.5}}}"#;
const WORKFLOW_CHUNK: &str = r#"{"nodes": [], "links": [[1, 4, 0, 3, 0, "MODEL"]], "version": 0.4, "extra": {"ds": {"scale": 1.2100000000000002, "offset": [0, -3.5]}}}"#;
const NOTE_CHUNK: &str = r#""\u00fc""#;

fn services(base: &std::path::Path, disable_metadata: bool) -> NodeServices {
    let planner = Planner::new(PlanOptions::default(), detect_host());
    NodeServices::builder(FolderPaths::new(base).unwrap(), planner)
        .disable_metadata(disable_metadata)
        .build()
}

fn images(batch: usize) -> Image {
    // Values chosen to show truncation: 0.999 -> 254, 0.5 -> 127, 1.5 -> 255, -1 -> 0.
    let pixel = [0.999f32, 0.5, 1.5, -1.0, 0.0, 1.0];
    let data: Vec<f32> = (0..batch).flat_map(|_| pixel).collect();
    Image::new(Tensor::from_vec(data, (batch, 1, 2, 3), &Device::Cpu).unwrap())
}

fn run(class: &str, inputs: &NodeInputs, services: &NodeServices) -> NodeOutput {
    let registry = builtin_registry();
    let node = registry.get(class).unwrap().node().clone();
    let interrupt = InterruptFlag::new();
    let mut events: Vec<ExecutionEvent> = Vec::new();
    let mut ctx = ExecutionContext::standalone("9", services, &interrupt, &mut events);
    node.execute(inputs, &mut ctx).unwrap()
}

fn save_inputs(prefix: &str, batch: usize) -> NodeInputs {
    NodeInputs::new()
        .with("images", images(batch).into_value())
        .with("filename_prefix", Value::String(prefix.into()))
        .with("prompt", Value::Json(serde_json::from_str(PROMPT).unwrap()))
        .with(
            "extra_pnginfo",
            Value::Json(serde_json::from_str(EXTRA).unwrap()),
        )
}

#[test]
fn save_image_writes_comfyui_names_chunks_and_pixels() {
    let base = tempfile::tempdir().unwrap();
    let services = services(base.path(), false);
    let output = services.output_directory().to_path_buf();
    std::fs::create_dir_all(&output).unwrap();
    std::fs::write(output.join("ComfyUI_00041_.png"), b"").unwrap();

    let out = run("SaveImage", &save_inputs("ComfyUI", 2), &services);
    assert!(out.values.is_empty());
    assert_eq!(
        out.ui.unwrap(),
        serde_json::json!({"images": [
            {"filename": "ComfyUI_00042_.png", "subfolder": "", "type": "output"},
            {"filename": "ComfyUI_00043_.png", "subfolder": "", "type": "output"}
        ]})
    );
    let path = output.join("ComfyUI_00042_.png");
    let chunks = read_png_text(&path).unwrap();
    let want: Vec<(String, String)> = [
        ("prompt", PROMPT_CHUNK),
        ("workflow", WORKFLOW_CHUNK),
        ("note", NOTE_CHUNK),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(chunks, want);

    // The raw file holds the tEXt chunk bytes `keyword NUL text` right after IHDR.
    let bytes = std::fs::read(&path).unwrap();
    let first = &bytes[33..];
    let length = u32::from_be_bytes(first[..4].try_into().unwrap()) as usize;
    assert_eq!(&first[4..8], b"tEXt");
    let mut expected = b"prompt\0".to_vec();
    expected.extend_from_slice(PROMPT_CHUNK.as_bytes());
    assert_eq!(&first[8..8 + length], expected.as_slice());

    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&path).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buffer = vec![0; reader.output_buffer_size().unwrap()];
    let frame = reader.next_frame(&mut buffer).unwrap();
    assert_eq!((frame.width, frame.height), (2, 1));
    assert_eq!(frame.color_type, png::ColorType::Rgb);
    assert_eq!(&buffer[..frame.buffer_size()], &[254, 127, 255, 0, 0, 255]);
}

#[test]
fn subfolders_tokens_and_disabled_metadata() {
    let base = tempfile::tempdir().unwrap();
    let services = services(base.path(), true);
    let out = run(
        "SaveImage",
        &save_inputs("cats/%width%x%height%_%batch_num%", 2),
        &services,
    );
    assert_eq!(
        out.ui.unwrap()["images"],
        serde_json::json!([
            {"filename": "2x1_0_00001_.png", "subfolder": "cats", "type": "output"},
            {"filename": "2x1_1_00002_.png", "subfolder": "cats", "type": "output"}
        ])
    );
    let path = services
        .output_directory()
        .join("cats")
        .join("2x1_0_00001_.png");
    assert!(read_png_text(&path).unwrap().is_empty());
}

#[test]
fn preview_image_goes_to_temp_with_random_prefix() {
    let base = tempfile::tempdir().unwrap();
    let services = services(base.path(), false);
    let inputs = NodeInputs::new().with("images", images(1).into_value());
    let out = run("PreviewImage", &inputs, &services);
    let entry = &out.ui.unwrap()["images"][0];
    let name = entry["filename"].as_str().unwrap();
    assert_eq!(entry["type"], "temp");
    assert_eq!(entry["subfolder"], "");
    assert!(
        name.starts_with("ComfyUI_temp_") && name.ends_with("_00001_.png"),
        "{name}"
    );
    let suffix = &name["ComfyUI_temp_".len().."ComfyUI_temp_".len() + 5];
    assert!(
        suffix.bytes().all(|b| b.is_ascii_lowercase() && b != b'w'),
        "{suffix}"
    );
    assert!(services.temp_directory().join(name).is_file());
}

#[test]
fn saving_outside_the_output_folder_fails_and_writes_nothing() {
    let base = tempfile::tempdir().unwrap();
    let services = services(base.path(), false);
    let registry = builtin_registry();
    let node = registry.get("SaveImage").unwrap().node().clone();
    let interrupt = InterruptFlag::new();
    let mut events: Vec<ExecutionEvent> = Vec::new();
    let mut ctx = ExecutionContext::standalone("9", &services, &interrupt, &mut events);
    let err = node
        .execute(&save_inputs("../escape", 1), &mut ctx)
        .unwrap_err();
    assert!(
        err.to_string().contains("outside the output folder"),
        "{err}"
    );
    assert!(!base.path().join("escape_00001_.png").exists());
}
