//! The registry of simulated capability profiles, selectable by name (`kiln doctor --profile
//! metal-m1`), so every device can be planned for on any machine.

use crate::capability::{CapabilityProfile, CudaCapability, MacOsVersion};
use crate::RuntimeError;

const GIB: u64 = 1 << 30;

/// One registered profile: its name and how to build it.
struct SimulatedProfile {
    name: &'static str,
    build: fn() -> CapabilityProfile,
}

/// Every simulated profile, in the order `kiln doctor --list-profiles` shows them.
const REGISTRY: &[SimulatedProfile] = &[
    SimulatedProfile {
        name: "cpu",
        build: || {
            CapabilityProfile::cpu(
                "cpu",
                "generic 64-bit CPU, 32 GiB RAM (28 GiB available)",
                32 * GIB,
                28 * GIB,
            )
        },
    },
    SimulatedProfile {
        name: "cpu-avx512bf16",
        build: || {
            CapabilityProfile::cpu(
                "cpu-avx512bf16",
                "64-bit CPU with AVX512-BF16, 32 GiB RAM (28 GiB available): --bf16-unet/--bf16-vae \
                 compute bf16",
                32 * GIB,
                28 * GIB,
            )
            .with_fast_bf16()
        },
    },
    SimulatedProfile {
        name: "metal-m1",
        build: || {
            CapabilityProfile::metal(
                "metal-m1",
                "Apple M1, macOS 13.6, 16 GiB unified memory: no bf16, no fp8",
                MacOsVersion::new(13, 6),
                16 * GIB,
                12 * GIB,
            )
        },
    },
    SimulatedProfile {
        name: "metal-m3",
        build: || {
            CapabilityProfile::metal(
                "metal-m3",
                "Apple M3, macOS 15.0, 24 GiB unified memory: bf16, no fp8",
                MacOsVersion::new(15, 0),
                24 * GIB,
                19 * GIB,
            )
        },
    },
    SimulatedProfile {
        name: "cuda-sm75",
        build: || {
            CapabilityProfile::cuda(
                "cuda-sm75",
                "NVIDIA Turing (T4-like), 16 GiB: fp16, no bf16, no fp8 casts",
                CudaCapability::new(7, 5),
                16 * GIB,
                15 * GIB,
            )
        },
    },
    SimulatedProfile {
        name: "cuda-sm86",
        build: || {
            CapabilityProfile::cuda(
                "cuda-sm86",
                "NVIDIA Ampere (RTX 3090-like), 24 GiB: fp16 + bf16, fp8 held but not computed",
                CudaCapability::new(8, 6),
                24 * GIB,
                23 * GIB,
            )
        },
    },
    SimulatedProfile {
        name: "cuda-sm89",
        build: || {
            CapabilityProfile::cuda(
                "cuda-sm89",
                "NVIDIA Ada (RTX 4090-like), 24 GiB: fp8 tensor cores (candle has no fp8 gemm)",
                CudaCapability::new(8, 9),
                24 * GIB,
                23 * GIB,
            )
        },
    },
    SimulatedProfile {
        name: "cuda-sm90",
        build: || {
            CapabilityProfile::cuda(
                "cuda-sm90",
                "NVIDIA Hopper (H100-like), 80 GiB",
                CudaCapability::new(9, 0),
                80 * GIB,
                79 * GIB,
            )
        },
    },
];

/// The names of every simulated profile, in registry order.
pub fn profile_names() -> Vec<&'static str> {
    REGISTRY.iter().map(|entry| entry.name).collect()
}

/// The simulated profile called `name`, if there is one.
pub fn simulated(name: &str) -> Option<CapabilityProfile> {
    REGISTRY
        .iter()
        .find(|entry| entry.name == name)
        .map(|entry| (entry.build)())
}

/// The simulated profile called `name`, or [`RuntimeError::UnknownProfile`] listing the valid
/// names.
pub fn simulated_profile(name: &str) -> Result<CapabilityProfile, RuntimeError> {
    simulated(name).ok_or_else(|| RuntimeError::UnknownProfile {
        name: name.to_string(),
        valid: profile_names(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capability::BackendKind;

    #[test]
    fn every_registered_name_builds_a_profile_of_that_name() {
        let names = profile_names();
        assert!(names.len() >= 8);
        for name in names {
            let profile = simulated(name).unwrap();
            assert_eq!(profile.name, name);
            assert!(profile.free_memory <= profile.total_memory);
        }
    }

    #[test]
    fn unknown_name_lists_valid_names() {
        let err = simulated_profile("tpu-v5").unwrap_err();
        match &err {
            RuntimeError::UnknownProfile { name, valid } => {
                assert_eq!(name, "tpu-v5");
                assert!(valid.contains(&"metal-m1"));
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(err.to_string().contains("cuda-sm86"));
    }

    #[test]
    fn only_the_avx512bf16_cpu_is_fast_in_bf16() {
        assert!(simulated("cpu-avx512bf16").unwrap().fast_bf16);
        assert!(!simulated("cpu").unwrap().fast_bf16);
        assert_eq!(
            simulated("cpu-avx512bf16").unwrap().backend,
            BackendKind::Cpu
        );
    }

    #[test]
    fn metal_profiles_share_memory_and_cuda_ones_do_not() {
        assert!(simulated("metal-m1").unwrap().unified_memory);
        let sm90 = simulated("cuda-sm90").unwrap();
        assert_eq!(sm90.backend, BackendKind::Cuda);
        assert!(!sm90.unified_memory);
        assert_eq!(sm90.total_memory, 80 * GIB);
    }
}
