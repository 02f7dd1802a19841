//! PyTorch checkpoints built by hand (pickle opcodes written byte by byte, zipped with the `zip`
//! crate the way `torch.save` lays them out) read back, and malicious pickles are refused.

// Helpers outside `#[test]` fns build fixtures; a failed unwrap there is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Cursor, Write};

use common::{two_tensor_pickle, two_tensor_storages, zip_archive, Pickle};
use kiln_weights::{FileFormat, StorageDType, WeightFile, WeightsError};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

fn open(name: &str, bytes: Vec<u8>) -> Result<WeightFile, WeightsError> {
    WeightFile::from_bytes(name, bytes)
}

#[test]
fn zip_checkpoint_with_two_tensors_and_a_transposed_view() {
    for method in [CompressionMethod::Stored, CompressionMethod::Deflated] {
        let bytes = zip_archive(&two_tensor_pickle(), &two_tensor_storages(), method);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.ckpt");
        std::fs::write(&path, bytes).unwrap();
        let file = WeightFile::open(&path).unwrap();
        assert_eq!(file.format(), FileFormat::TorchZip);
        let names: Vec<&str> = file.tensors().iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "t"]);
        let a = file.get("a").unwrap();
        assert_eq!((a.dtype, a.shape.clone()), (StorageDType::F32, vec![2, 3]));
        assert_eq!(
            file.to_f32_vec("a").unwrap(),
            [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
        );
        assert_eq!(file.get("b").unwrap().dtype, StorageDType::F16);
        assert_eq!(file.to_f32_vec("b").unwrap(), [1.0, -2.0, 0.25, 8.0]);
        // t[i][j] = a[j][i]
        assert_eq!(
            file.to_f32_vec("t").unwrap(),
            [0.0, 3.0, 1.0, 4.0, 2.0, 5.0]
        );
        let t = file
            .load("t", candle_core::DType::F32, &candle_core::Device::Cpu)
            .unwrap();
        assert_eq!(
            t.to_vec2::<f32>().unwrap(),
            [[0.0, 3.0], [1.0, 4.0], [2.0, 5.0]]
        );
        if method == CompressionMethod::Stored {
            assert!(matches!(
                file.raw_bytes("a").unwrap(),
                std::borrow::Cow::Borrowed(_)
            ));
        }
    }
}

#[test]
fn state_dict_is_unwrapped_and_scalars_become_metadata() {
    let mut p = Pickle::new();
    p.op(b"}(")
        .str("global_step")
        .int(470000)
        .str("state_dict")
        .op(b"}(");
    p.str("model.diffusion_model.w")
        .tensor("Float8_e4m3fnStorage", "0", 2, 0, &[2], &[1]);
    p.op(b"u").op(b"u");
    let pickle = p.finish();
    let bytes = zip_archive(
        &pickle,
        &[("0", vec![0x38, 0xFE])],
        CompressionMethod::Stored,
    );
    let file = open("sd.ckpt", bytes).unwrap();
    assert_eq!(file.metadata()["global_step"], "470000");
    let w = file.get("model.diffusion_model.w").unwrap();
    assert_eq!(w.dtype, StorageDType::F8E4M3);
    assert_eq!(
        file.to_f32_vec("model.diffusion_model.w").unwrap(),
        [1.0, -448.0]
    );
    assert_eq!(file.tensors().len(), 1);
}

#[test]
fn malicious_global_is_refused_and_never_runs() {
    let marker = std::env::temp_dir().join(format!("kiln-pwned-{}", std::process::id()));
    let mut p = Pickle::new();
    p.global("os", "system")
        .str(&format!("touch {}", marker.display()))
        .op(b"\x85R");
    let bytes = zip_archive(&p.finish(), &[], CompressionMethod::Stored);
    match open("evil.pt", bytes) {
        Err(WeightsError::PickleRefused { file, global }) => {
            assert_eq!(global, "os.system");
            assert_eq!(file, std::path::Path::new("evil.pt"));
        }
        other => panic!("{other:?}"),
    }
    assert!(!marker.exists());

    // Refused even when hidden inside an otherwise valid state dict.
    let mut p = Pickle::new();
    p.op(b"}(")
        .str("w")
        .global("builtins", "eval")
        .str("1")
        .op(b"\x85R")
        .op(b"u");
    let bytes = zip_archive(&p.finish(), &[], CompressionMethod::Stored);
    assert!(matches!(
        open("evil.pt", bytes),
        Err(WeightsError::PickleRefused { global, .. }) if global == "builtins.eval"
    ));
}

#[test]
fn storage_problems_are_typed_errors() {
    // Storage entry missing from the archive.
    let bytes = zip_archive(
        &two_tensor_pickle(),
        &two_tensor_storages()[..1],
        CompressionMethod::Stored,
    );
    assert!(matches!(open("m.pt", bytes), Err(WeightsError::Zip { .. })));
    // Storage shorter than the pickle claims.
    let mut storages = two_tensor_storages();
    storages[0].1.truncate(20);
    let bytes = zip_archive(&two_tensor_pickle(), &storages, CompressionMethod::Stored);
    assert!(matches!(
        open("m.pt", bytes),
        Err(WeightsError::ByteLengthMismatch {
            expected: 24,
            actual: 20,
            ..
        })
    ));
    // A view reaching past its storage.
    let mut p = Pickle::new();
    p.op(b"}(")
        .str("w")
        .tensor("FloatStorage", "0", 6, 4, &[3], &[1])
        .op(b"u");
    let bytes = zip_archive(
        &p.finish(),
        &two_tensor_storages()[..1],
        CompressionMethod::Stored,
    );
    assert!(matches!(
        open("m.pt", bytes),
        Err(WeightsError::OffsetsOutOfRange { tensor, .. }) if tensor == "w"
    ));
    // A zip without data.pkl is not a torch checkpoint.
    let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
    zip.start_file("readme.txt", SimpleFileOptions::default())
        .unwrap();
    zip.write_all(b"hi").unwrap();
    let bytes = zip.finish().unwrap().into_inner();
    assert!(matches!(open("m.pt", bytes), Err(WeightsError::Zip { .. })));
}

#[test]
fn legacy_format_reads_back() {
    let mut bytes = common::legacy_checkpoint();
    let file = open("old.pth", bytes.clone()).unwrap();
    assert_eq!(file.format(), FileFormat::TorchLegacy);
    assert_eq!(file.to_f32_vec("w").unwrap(), [1.5, -2.5]);

    bytes.truncate(bytes.len() - 1);
    assert!(matches!(
        open("old.pth", bytes),
        Err(WeightsError::Truncated { .. })
    ));
}

#[test]
fn rebuild_tensor_v3_views_untyped_storage_as_its_dtype() {
    let bf16: Vec<u8> = [1.0f32, -3.0, 0.5]
        .iter()
        .flat_map(|&v| half::bf16::from_f32(v).to_le_bytes())
        .collect();
    let v3 = |p: &mut Pickle, dtype: &str| {
        p.global("torch._utils", "_rebuild_tensor_v3").op(b"(");
        p.op(b"(")
            .str("storage")
            .global("torch", "UntypedStorage")
            .str("0")
            .str("cpu")
            .int(6)
            .op(b"tQ");
        p.int(1).int_tuple(&[2]).int_tuple(&[1]).op(b"\x89");
        p.empty_ordered_dict().global("torch", dtype).op(b"tR");
    };
    let mut p = Pickle::new();
    p.op(b"}(").str("w");
    v3(&mut p, "bfloat16");
    p.op(b"u");
    let bytes = zip_archive(
        &p.finish(),
        &[("0", bf16.clone())],
        CompressionMethod::Stored,
    );
    let file = open("v3.pt", bytes).unwrap();
    assert_eq!(file.get("w").unwrap().dtype, StorageDType::BF16);
    assert_eq!(file.to_f32_vec("w").unwrap(), [-3.0, 0.5]);

    let mut p = Pickle::new();
    p.op(b"}(").str("u");
    v3(&mut p, "uint16");
    p.op(b"u");
    let bytes = zip_archive(&p.finish(), &[("0", bf16)], CompressionMethod::Stored);
    assert!(matches!(
        open("v3.pt", bytes),
        Err(WeightsError::UnknownDType { tensor, dtype, .. }) if tensor == "u" && dtype == "torch.uint16"
    ));
}
