//! `TorchGenerator::randn` against `torch.randn` bit patterns recorded from PyTorch on the CPU,
//! for both of torch's CPU kernels.

mod common;

use common::{bits, fnv1a64, load_json, usizes};
use kiln_sampling::{NormalKernel, TorchGenerator};

fn kernel_named(name: &str) -> NormalKernel {
    match name {
        "avx2" => NormalKernel::Avx2,
        "scalar" => NormalKernel::Scalar,
        other => panic!("unknown kernel {other}"),
    }
}

fn to_bits(values: &[f32]) -> Vec<u32> {
    values.iter().map(|v| v.to_bits()).collect()
}

#[test]
fn randn_is_bit_exact_for_every_seed_shape_and_kernel() {
    let fixture = load_json("randn.json");
    let kernels = fixture["kernels"].as_object().unwrap();
    assert_eq!(kernels.len(), 2);
    for (name, data) in kernels {
        let kernel = kernel_named(name);
        for case in data["cases"].as_array().unwrap() {
            let seed = case["seed"].as_u64().unwrap();
            let shape = usizes(&case["shape"]);
            let got = to_bits(
                &TorchGenerator::manual_seed(seed)
                    .with_kernel(kernel)
                    .randn(&shape),
            );
            if let Some(checksum) = case.get("fnv1a64") {
                assert_eq!(
                    fnv1a64(&got),
                    checksum.as_str().unwrap(),
                    "{name} seed {seed} {shape:?}"
                );
                assert_eq!(got[..64], bits(&case["first"])[..], "{name} seed {seed}");
                assert_eq!(
                    got[got.len() - 64..],
                    bits(&case["last"])[..],
                    "{name} seed {seed}"
                );
            } else {
                assert_eq!(got, bits(&case["bits"]), "{name} seed {seed} {shape:?}");
            }
        }
    }
}

#[test]
fn successive_draws_continue_the_stream_like_torch() {
    let fixture = load_json("randn.json");
    for (name, data) in fixture["kernels"].as_object().unwrap() {
        let seed = data["sequence_seed"].as_u64().unwrap();
        let mut generator = TorchGenerator::manual_seed(seed).with_kernel(kernel_named(name));
        for (i, draw) in data["sequence"].as_array().unwrap().iter().enumerate() {
            let got = to_bits(&generator.randn(&usizes(&draw["shape"])));
            assert_eq!(got, bits(&draw["bits"]), "{name} draw {i}");
        }
    }
}
