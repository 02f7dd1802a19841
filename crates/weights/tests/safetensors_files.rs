//! safetensors files written by the third-party `safetensors` crate read back exactly, and every
//! kind of malformed file is the specific typed error.

// Helpers outside `#[test]` fns build fixtures; a failed unwrap there is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device};
use kiln_weights::{FileFormat, StorageDType, WeightFile, WeightsError};
use safetensors::tensor::TensorView;
use safetensors::Dtype;

/// `(name, safetensors dtype, kiln dtype, bytes of 6 elements)` for every supported dtype.
fn every_dtype() -> Vec<(&'static str, Dtype, StorageDType, Vec<u8>)> {
    let values = [0.5f32, -1.0, 2.0, 0.0, 448.0, -0.015625];
    let f64s = values
        .iter()
        .flat_map(|&v| f64::from(v).to_le_bytes())
        .collect();
    let f32s = values.iter().flat_map(|&v| v.to_le_bytes()).collect();
    let f16s = values
        .iter()
        .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
        .collect();
    let bf16s = values
        .iter()
        .flat_map(|&v| half::bf16::from_f32(v).to_le_bytes())
        .collect();
    let e4 = values
        .iter()
        .map(|&v| kiln_weights::f32_to_e4m3fn(v))
        .collect();
    let e5 = values
        .iter()
        .map(|&v| kiln_weights::f32_to_e5m2(v))
        .collect();
    let ints = [3i64, -2, 1, 0, 100, -100];
    vec![
        ("f64", Dtype::F64, StorageDType::F64, f64s),
        ("f32", Dtype::F32, StorageDType::F32, f32s),
        ("f16", Dtype::F16, StorageDType::F16, f16s),
        ("bf16", Dtype::BF16, StorageDType::BF16, bf16s),
        ("e4m3", Dtype::F8_E4M3, StorageDType::F8E4M3, e4),
        ("e5m2", Dtype::F8_E5M2, StorageDType::F8E5M2, e5),
        (
            "i64",
            Dtype::I64,
            StorageDType::I64,
            ints.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ),
        (
            "i32",
            Dtype::I32,
            StorageDType::I32,
            ints.iter()
                .flat_map(|&v| (v as i32).to_le_bytes())
                .collect(),
        ),
        (
            "i16",
            Dtype::I16,
            StorageDType::I16,
            ints.iter()
                .flat_map(|&v| (v as i16).to_le_bytes())
                .collect(),
        ),
        (
            "i8",
            Dtype::I8,
            StorageDType::I8,
            ints.iter().map(|&v| v as i8 as u8).collect(),
        ),
        (
            "u8",
            Dtype::U8,
            StorageDType::U8,
            vec![0, 1, 2, 3, 200, 255],
        ),
        (
            "bool",
            Dtype::BOOL,
            StorageDType::Bool,
            vec![1, 0, 1, 1, 0, 0],
        ),
    ]
}

fn write_every_dtype(dir: &Path) -> std::path::PathBuf {
    let entries = every_dtype();
    let views: Vec<(String, TensorView<'_>)> = entries
        .iter()
        .map(|(name, dtype, _, bytes)| {
            (
                name.to_string(),
                TensorView::new(*dtype, vec![2, 3], bytes).unwrap(),
            )
        })
        .collect();
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    let bytes = safetensors::serialize(views, Some(metadata)).unwrap();
    let path = dir.join("every_dtype.weights"); // extension deliberately meaningless
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn every_dtype_written_by_the_safetensors_crate_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_every_dtype(dir.path());
    let file = WeightFile::open(&path).unwrap();
    assert_eq!(file.format(), FileFormat::Safetensors);
    assert_eq!(file.path(), path);
    assert_eq!(file.metadata()["format"], "pt");
    let names: Vec<&str> = file.tensors().iter().map(|t| t.name.as_str()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "tensors() is sorted by name");
    for (name, _, dtype, bytes) in every_dtype() {
        let info = file.get(name).unwrap();
        assert_eq!(info.dtype, dtype, "{name}");
        assert_eq!(info.shape, vec![2, 3]);
        assert_eq!(info.elements(), 6);
        let raw = file.raw_bytes(name).unwrap();
        assert!(matches!(raw, std::borrow::Cow::Borrowed(_)), "zero-copy");
        assert_eq!(&*raw, bytes.as_slice(), "{name}");
    }
    let floats = [0.5f32, -1.0, 2.0, 0.0, 448.0, -0.015625];
    for name in ["f64", "f32", "f16", "bf16", "e4m3", "e5m2"] {
        assert_eq!(file.to_f32_vec(name).unwrap(), floats, "{name}");
    }
    assert_eq!(
        file.to_f32_vec("i8").unwrap(),
        [3.0, -2.0, 1.0, 0.0, 100.0, -100.0]
    );
    assert_eq!(
        file.to_f32_vec("bool").unwrap(),
        [1.0, 0.0, 1.0, 1.0, 0.0, 0.0]
    );
}

#[test]
fn load_converts_on_the_host_and_load_stored_keeps_candle_dtypes() {
    let dir = tempfile::tempdir().unwrap();
    let file = WeightFile::open(write_every_dtype(dir.path())).unwrap();
    let cpu = Device::Cpu;
    for name in ["f64", "f32", "f16", "bf16", "e4m3", "e5m2"] {
        let t = file.load(name, DType::F32, &cpu).unwrap();
        assert_eq!(t.dims(), &[2, 3]);
        assert_eq!(t.dtype(), DType::F32);
        let got: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(got, [0.5, -1.0, 2.0, 0.0, 448.0, -0.015625], "{name}");
        let h = file.load(name, DType::BF16, &cpu).unwrap();
        assert_eq!(h.dtype(), DType::BF16);
    }
    let stored = file.load_stored("bf16", &cpu).unwrap();
    assert_eq!(stored.dtype(), DType::BF16);
    let stored = file.load_stored("e4m3", &cpu).unwrap();
    assert_eq!(stored.dtype(), DType::F8E4M3);
    match file.load_stored("e5m2", &cpu) {
        Err(WeightsError::UnsupportedDType { tensor, dtype, .. }) => {
            assert_eq!(tensor, "e5m2");
            assert_eq!(dtype, StorageDType::F8E5M2);
        }
        other => panic!("{other:?}"),
    }
    let raw = file.load_raw_u8("e5m2", &cpu).unwrap();
    assert_eq!(raw.dims(), &[6]);
    assert_eq!(
        raw.to_vec1::<u8>().unwrap(),
        file.raw_bytes("e5m2").unwrap().to_vec()
    );
    assert!(matches!(
        file.load_quantized("f32", &cpu),
        Err(WeightsError::UnsupportedDType { .. })
    ));
    assert!(matches!(
        file.to_f32_vec("nope"),
        Err(WeightsError::TensorMissing { tensor, .. }) if tensor == "nope"
    ));
}

fn file_with(header: &str, data: &[u8]) -> Vec<u8> {
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(data);
    bytes
}

fn open_bytes(bytes: &[u8]) -> WeightsError {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.safetensors");
    std::fs::write(&path, bytes).unwrap();
    let err = WeightFile::open(&path).unwrap_err();
    assert!(
        err.to_string().contains("bad.safetensors"),
        "message names the file: {err}"
    );
    assert!(!err.to_string().contains('\n'), "one line: {err}");
    err
}

#[test]
fn empty_and_short_files() {
    assert!(matches!(open_bytes(b""), WeightsError::EmptyFile { .. }));
    assert!(matches!(
        open_bytes(b"\x02\0\0"),
        WeightsError::Truncated { .. }
    ));
}

#[test]
fn header_past_end_or_absurd() {
    let mut past_end = 4096u64.to_le_bytes().to_vec();
    past_end.extend_from_slice(b"{\"a\":1}");
    assert!(matches!(
        open_bytes(&past_end),
        WeightsError::Truncated { needed: 4096, .. }
    ));
    let mut absurd = (200u64 << 20).to_le_bytes().to_vec();
    absurd.extend_from_slice(b"{}");
    assert!(matches!(
        open_bytes(&absurd),
        WeightsError::HeaderTooLarge { .. }
    ));
}

#[test]
fn header_not_json() {
    assert!(matches!(
        open_bytes(&file_with("{not json", &[])),
        WeightsError::HeaderNotJson { .. }
    ));
    let mut bad_utf8 = file_with("{\"ab\":1}", &[]);
    bad_utf8[10] = 0xC3;
    assert!(matches!(
        open_bytes(&bad_utf8),
        WeightsError::HeaderNotJson { .. }
    ));
    assert!(matches!(
        open_bytes(&file_with(r#"{"__metadata__":{"a":1}}"#, &[])),
        WeightsError::HeaderNotJson { .. }
    ));
}

#[test]
fn offsets_out_of_range_reversed_or_overlapping() {
    let past = r#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#;
    assert!(matches!(
        open_bytes(&file_with(past, &[0; 4])),
        WeightsError::OffsetsOutOfRange { tensor, end: 8, available: 4, .. } if tensor == "w"
    ));
    let reversed = r#"{"w":{"dtype":"U8","shape":[0],"data_offsets":[4,0]}}"#;
    assert!(matches!(
        open_bytes(&file_with(reversed, &[0; 4])),
        WeightsError::OffsetsOutOfRange { .. }
    ));
    let overlap = r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#;
    assert!(matches!(
        open_bytes(&file_with(overlap, &[0; 8])),
        WeightsError::OverlappingTensors { .. }
    ));
}

#[test]
fn byte_length_mismatch_unknown_dtype_duplicates() {
    let short = r#"{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#;
    assert!(matches!(
        open_bytes(&file_with(short, &[0; 8])),
        WeightsError::ByteLengthMismatch {
            expected: 12,
            actual: 8,
            ..
        }
    ));
    let unknown = r#"{"w":{"dtype":"F4","shape":[2],"data_offsets":[0,1]}}"#;
    assert!(matches!(
        open_bytes(&file_with(unknown, &[0; 1])),
        WeightsError::UnknownDType { dtype, .. } if dtype == "F4"
    ));
    let duplicate = r#"{"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"w":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}"#;
    assert!(matches!(
        open_bytes(&file_with(duplicate, &[0; 2])),
        WeightsError::DuplicateTensor { tensor, .. } if tensor == "w"
    ));
}

#[test]
fn directories_and_missing_files() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(
        WeightFile::open(dir.path()),
        Err(WeightsError::IsADirectory { .. })
    ));
    assert!(matches!(
        WeightFile::open(dir.path().join("missing.safetensors")),
        Err(WeightsError::Io { .. })
    ));
    assert!(matches!(
        WeightFile::from_bytes("x", b"definitely not weights".to_vec()),
        Err(WeightsError::UnknownFormat { .. })
    ));
}
