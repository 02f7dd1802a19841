//! GGUF files written by candle's `gguf_file::write` read back with PyTorch-order shapes and
//! dequantised values close to the originals.

// Helpers outside `#[test]` fns build fixtures; a failed unwrap there is a failed test.
#![allow(clippy::unwrap_used)]

use std::io::Cursor;

use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};
use kiln_weights::{FileFormat, GgufType, StorageDType, WeightFile, WeightsError};

fn ramp(rows: usize, cols: usize) -> Vec<f32> {
    (0..rows * cols)
        .map(|i| ((i as f32) * 0.37).sin() * 2.0)
        .collect()
}

fn write_gguf() -> Vec<u8> {
    let cpu = Device::Cpu;
    let q8 = Tensor::from_vec(ramp(4, 64), (4, 64), &cpu).unwrap();
    let q4 = Tensor::from_vec(ramp(2, 32), (2, 32), &cpu).unwrap();
    let f16 = Tensor::from_vec(ramp(3, 5), (3, 5), &cpu).unwrap();
    let tensors = [
        ("blk.q8", QTensor::quantize(&q8, GgmlDType::Q8_0).unwrap()),
        ("blk.q4", QTensor::quantize(&q4, GgmlDType::Q4_0).unwrap()),
        ("blk.f16", QTensor::quantize(&f16, GgmlDType::F16).unwrap()),
    ];
    let arch = gguf_file::Value::String("flux".into());
    let count = gguf_file::Value::U32(3);
    let metadata = [("general.architecture", &arch), ("kiln.count", &count)];
    let refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (*n, t)).collect();
    let mut out = Cursor::new(Vec::new());
    gguf_file::write(&mut out, &metadata, &refs).unwrap();
    out.into_inner()
}

fn max_error(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn candle_written_gguf_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flux-q8.gguf");
    std::fs::write(&path, write_gguf()).unwrap();
    let file = WeightFile::open(&path).unwrap();
    assert_eq!(file.format(), FileFormat::Gguf);
    assert_eq!(file.metadata()["general.architecture"], "flux");
    assert_eq!(file.metadata()["kiln.count"], "3");

    let q8 = file.get("blk.q8").unwrap();
    assert_eq!(q8.dtype, StorageDType::Gguf(GgufType::Q8_0));
    assert_eq!(q8.shape, vec![4, 64]);
    assert_eq!(file.get("blk.q4").unwrap().shape, vec![2, 32]);
    assert_eq!(
        file.get("blk.f16").unwrap().dtype,
        StorageDType::Gguf(GgufType::F16)
    );

    assert!(max_error(&file.to_f32_vec("blk.q8").unwrap(), &ramp(4, 64)) < 0.02);
    // Q4_0 steps are max|x|/8 = 0.25 here; the extreme opposite the scale's sign clips by one step.
    assert!(max_error(&file.to_f32_vec("blk.q4").unwrap(), &ramp(2, 32)) <= 0.25);
    // And bit-exact against candle's own dequantisation of the tensor before it was written.
    let source = Tensor::from_vec(ramp(2, 32), (2, 32), &Device::Cpu).unwrap();
    let expected: Vec<f32> = QTensor::quantize(&source, GgmlDType::Q4_0)
        .unwrap()
        .dequantize(&Device::Cpu)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    assert_eq!(file.to_f32_vec("blk.q4").unwrap(), expected);
    assert!(max_error(&file.to_f32_vec("blk.f16").unwrap(), &ramp(3, 5)) < 1e-3);

    let q = file.load_quantized("blk.q8", &Device::Cpu).unwrap();
    assert_eq!(q.dtype(), GgmlDType::Q8_0);
    assert_eq!(q.shape().dims(), &[4, 64]);
    let dense = file.load("blk.q4", DType::F16, &Device::Cpu).unwrap();
    assert_eq!(
        (dense.dtype(), dense.dims()),
        (DType::F16, &[2usize, 32][..])
    );
    assert!(matches!(
        file.load_stored("blk.q8", &Device::Cpu),
        Err(WeightsError::UnsupportedDType { .. })
    ));
    assert_eq!(
        file.load_stored("blk.f16", &Device::Cpu).unwrap().dtype(),
        DType::F16
    );
}

#[test]
fn truncated_gguf_is_an_error_not_a_panic() {
    let bytes = write_gguf();
    // The last 2 bytes are alignment padding after the final tensor; cut into real data.
    for cut in [5, 24, 40, 100, bytes.len() - 4] {
        let result = WeightFile::from_bytes("cut.gguf", bytes[..cut].to_vec());
        assert!(result.is_err(), "cut at {cut}");
    }
}
