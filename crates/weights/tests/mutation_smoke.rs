//! Randomised mutation of valid files of every format: parsing must return `Ok` or a typed error,
//! never panic, and an accepted file must be readable tensor by tensor. A stable-toolchain
//! complement to the cargo-fuzz targets in `fuzz/`, small enough to run with every `cargo test`;
//! `KILN_MUTATIONS=N cargo test -p kiln-weights --test mutation_smoke -- --ignored` runs longer.

// Helpers outside `#[test]` fns build fixtures; a failed unwrap there is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Cursor;

use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use kiln_weights::WeightFile;
use safetensors::tensor::TensorView;
use safetensors::Dtype;
use zip::CompressionMethod;

/// xorshift64*: deterministic, so a failure reproduces from its iteration number.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let e4: Vec<u8> = vec![0x38, 0x7E, 0x80, 0x01];
    let f32s: Vec<u8> = [1.0f32, -2.0]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let views = vec![
        (
            "a.weight",
            TensorView::new(Dtype::F8_E4M3, vec![2, 2], &e4).unwrap(),
        ),
        (
            "b.bias",
            TensorView::new(Dtype::F32, vec![2], &f32s).unwrap(),
        ),
    ];
    let safetensors = safetensors::serialize(views, None).unwrap();

    let q = Tensor::from_vec(
        (0..64).map(|i| i as f32 / 7.0).collect::<Vec<_>>(),
        (2, 32),
        &Device::Cpu,
    )
    .unwrap();
    let q = QTensor::quantize(&q, GgmlDType::Q8_0).unwrap();
    let name = gguf_file::Value::String("x".into());
    let mut gguf = Cursor::new(Vec::new());
    gguf_file::write(&mut gguf, &[("general.name", &name)], &[("w", &q)]).unwrap();

    let pickle = common::two_tensor_pickle();
    let storages = common::two_tensor_storages();
    vec![
        ("m.safetensors", safetensors),
        ("m.gguf", gguf.into_inner()),
        (
            "m.pt",
            common::zip_archive(&pickle, &storages, CompressionMethod::Stored),
        ),
        (
            "m.pt",
            common::zip_archive(&pickle, &storages, CompressionMethod::Deflated),
        ),
        ("m.pth", common::legacy_checkpoint()),
    ]
}

fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut bytes = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(bytes.len());
        match rng.below(6) {
            0 => bytes[at] ^= 1 << rng.below(8),
            1 => bytes[at] = [0x00, 0xFF, 0x7F, 0x80, b'{', b'.'][rng.below(6)],
            2 => bytes.truncate(at),
            3 => {
                let end = (at + rng.below(16)).min(bytes.len());
                bytes.drain(at..end);
            }
            4 => {
                let chunk: Vec<u8> = (0..rng.below(16)).map(|_| rng.next() as u8).collect();
                bytes.splice(at..at, chunk);
            }
            _ => {
                // Overwrite 8 bytes with a large little-endian number: lengths, counts, offsets.
                let big = [u64::MAX, 1 << 40, 1 << 31, 0xFFFF_FFFF][rng.below(4)].to_le_bytes();
                for (i, b) in big.iter().enumerate() {
                    if let Some(slot) = bytes.get_mut(at + i) {
                        *slot = *b;
                    }
                }
            }
        }
        if bytes.is_empty() {
            break;
        }
    }
    bytes
}

fn run(iterations: usize) {
    let seeds = seeds();
    for (name, seed) in &seeds {
        assert!(
            WeightFile::from_bytes(*name, seed.clone()).is_ok(),
            "seed {name} is valid"
        );
    }
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut accepted = 0usize;
    for iteration in 0..iterations {
        let (name, seed) = &seeds[iteration % seeds.len()];
        let bytes = mutate(&mut rng, seed);
        let outcome = std::panic::catch_unwind(|| {
            let Ok(file) = WeightFile::from_bytes(*name, bytes.clone()) else {
                return false;
            };
            for info in file.tensors() {
                let _ = file.raw_bytes(&info.name);
                let _ = file.to_f32_vec(&info.name);
            }
            true
        });
        match outcome {
            Ok(ok) => accepted += usize::from(ok),
            Err(_) => panic!("iteration {iteration} on {name} panicked; input {bytes:02x?}"),
        }
    }
    // Both outcomes must occur, or the mutations are not exercising the parsers.
    assert!(
        accepted > 0 && accepted < iterations,
        "{accepted} of {iterations} accepted"
    );
    eprintln!("{accepted} of {iterations} mutated files accepted");
}

#[test]
fn mutated_files_never_panic() {
    run(1500);
}

#[test]
#[ignore = "long run; set KILN_MUTATIONS"]
fn mutated_files_never_panic_long() {
    let iterations = std::env::var("KILN_MUTATIONS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(200_000);
    run(iterations);
}
