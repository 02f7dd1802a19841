//! `Checkpoint::open` and `detect_file` on real files: LoRA and unknown files are typed errors,
//! unreadable paths wrap the reader's error, diffusers component folders open, and `read_f32`
//! refuses names outside the key map.

use std::fs;
use std::path::Path;

use kiln_detect::{detect_file, Architecture, Checkpoint, ComponentKind, DetectError};
use kiln_test_checkpoints as tc;
use kiln_weights::WeightFile;

/// A safetensors file of zero-filled f16 tensors.
fn write_safetensors(path: &Path, tensors: &[(&str, &[usize])]) {
    let mut header = serde_json::Map::new();
    let mut offset = 0usize;
    for (name, shape) in tensors {
        let bytes = shape.iter().product::<usize>() * 2;
        header.insert(
            name.to_string(),
            serde_json::json!({"dtype": "F16", "shape": shape, "data_offsets": [offset, offset + bytes]}),
        );
        offset += bytes;
    }
    let mut json = serde_json::Value::Object(header).to_string().into_bytes();
    // The header is padded with spaces to 8-byte alignment, as the reference writer does.
    let padding = (8 - json.len() % 8) % 8;
    json.extend(std::iter::repeat_n(b' ', padding));
    let mut file = (json.len() as u64).to_le_bytes().to_vec();
    file.extend(json);
    file.extend(vec![0u8; offset]);
    fs::write(path, file).expect("writing the test file");
}

#[test]
fn a_lora_file_is_named_as_a_lora() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("style.safetensors");
    write_safetensors(
        &path,
        &[
            (
                "lora_unet_input_blocks_1_1_proj_in.lora_down.weight",
                &[4, 32],
            ),
            (
                "lora_unet_input_blocks_1_1_proj_in.lora_up.weight",
                &[32, 4],
            ),
            ("lora_unet_input_blocks_1_1_proj_in.alpha", &[]),
        ],
    );
    match Checkpoint::open(&path).unwrap_err() {
        DetectError::Lora {
            file, lora_keys, ..
        } => {
            assert_eq!((file, lora_keys), (path, 3));
        }
        other => panic!("{other}"),
    }
}

#[test]
fn an_unknown_file_says_what_it_holds() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mystery.safetensors");
    write_safetensors(
        &path,
        &[
            ("backbone.stem.weight", &[8, 3]),
            ("backbone.head.weight", &[2, 8]),
        ],
    );
    let err = Checkpoint::open(&path).unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, DetectError::Unrecognised { .. }), "{message}");
    assert!(
        message.contains("2 tensors; top prefixes: `backbone.head.` (1), `backbone.stem.` (1)"),
        "{message}"
    );
}

#[test]
fn unreadable_paths_wrap_the_reader_error() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.safetensors");
    fs::write(&garbage, b"definitely not a checkpoint").unwrap();
    assert!(matches!(
        Checkpoint::open(&garbage),
        Err(DetectError::Weights { .. })
    ));
    let missing = dir.path().join("missing.safetensors");
    assert!(matches!(
        Checkpoint::open(&missing),
        Err(DetectError::Weights { .. })
    ));
    let empty_dir = dir.path().join("empty");
    fs::create_dir(&empty_dir).unwrap();
    assert!(matches!(
        Checkpoint::open(&empty_dir),
        Err(DetectError::DiffusersFolder { .. })
    ));
}

#[test]
fn a_diffusers_component_folder_and_its_file_open_alike() {
    let dir = tempfile::tempdir().unwrap();
    let spec =
        tc::CheckpointSpec::new(tc::Family::Vae4, tc::Storage::F16, tc::Packaging::Diffusers);
    let file = tc::write(&spec, dir.path()).unwrap();
    let folder = file.parent().unwrap();
    let from_folder = Checkpoint::open(folder).unwrap();
    assert_eq!(from_folder.path(), folder);
    assert_eq!(from_folder.detection().architecture, Architecture::Vae);
    let opened = WeightFile::open(&file).unwrap();
    let from_file = detect_file(&opened).unwrap();
    assert_eq!(from_file.variant, from_folder.detection().variant);
    let (shape, values) = from_folder
        .read_f32(ComponentKind::Vae, "decoder.mid.attn_1.q.weight")
        .unwrap();
    assert_eq!((shape.len(), shape[2..].to_vec()), (4, vec![1, 1]));
    assert_eq!(values.len() as u64, shape.iter().product::<u64>());
    let err = from_folder.read_f32(
        ComponentKind::ClipL,
        "text_model.embeddings.token_embedding.weight",
    );
    assert!(matches!(
        err,
        Err(DetectError::NotInKeyMap {
            kind: ComponentKind::ClipL,
            ..
        })
    ));
}
