//! Probing the real machine: the host CPU always, CUDA and Metal devices when those features are
//! compiled in. Each probe returns a [`CapabilityProfile`] built by the same constructors as the
//! simulated ones, so real and simulated devices plan identically.

use sysinfo::{CpuRefreshKind, System};

use crate::capability::CapabilityProfile;
use crate::options::PlanOptions;
use crate::RuntimeError;

/// Total and available system RAM in bytes, as ComfyUI reads them with psutil (`total`,
/// `available`). `(0, 0)` when the OS refuses to say.
fn system_memory() -> (u64, u64) {
    match System::new() {
        Ok(mut system) => {
            system.refresh_memory();
            (system.total_memory(), system.available_memory())
        }
        Err(_) => (0, 0),
    }
}

/// Bytes of memory the system has available now (free plus reclaimable), 0 if unknown.
pub(crate) fn available_memory() -> u64 {
    system_memory().1
}

/// The CPU's model name, if the OS reports one.
fn cpu_brand() -> Option<String> {
    let mut system = System::new().ok()?;
    system.refresh_cpu_list(CpuRefreshKind::nothing());
    let brand = system.cpus().first()?.brand().trim().to_string();
    (!brand.is_empty()).then_some(brand)
}

/// SIMD features relevant to candle's CPU kernels. `avx512_bf16` comes from `/proc/cpuinfo`
/// because `is_x86_feature_detected!("avx512bf16")` needs a newer toolchain than our MSRV.
fn cpu_features() -> Vec<String> {
    let mut features = Vec::new();
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            features.push("avx2".to_string());
        }
        if std::arch::is_x86_feature_detected!("fma") {
            features.push("fma".to_string());
        }
        if std::arch::is_x86_feature_detected!("f16c") {
            features.push("f16c".to_string());
        }
        if std::arch::is_x86_feature_detected!("avx512f") {
            features.push("avx512f".to_string());
        }
        if cpuinfo_has_flag("avx512_bf16") {
            features.push("avx512_bf16".to_string());
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        if std::arch::is_aarch64_feature_detected!("neon") {
            features.push("neon".to_string());
        }
        if std::arch::is_aarch64_feature_detected!("fp16") {
            features.push("fp16".to_string());
        }
        if std::arch::is_aarch64_feature_detected!("bf16") {
            features.push("bf16".to_string());
        }
    }
    features
}

/// True when the first `flags` line of `/proc/cpuinfo` lists `flag` (always false off Linux).
#[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
fn cpuinfo_has_flag(flag: &str) -> bool {
    let Ok(cpuinfo) = std::fs::read_to_string("/proc/cpuinfo") else {
        return false;
    };
    cpuinfo
        .lines()
        .find(|line| line.starts_with("flags"))
        .is_some_and(|line| line.split_whitespace().any(|word| word == flag))
}

/// The real host CPU: RAM from the OS, SIMD features from the CPU. The features are reported for
/// `kiln doctor`; only `avx512_bf16` plans differently, marking the profile fast in bf16
/// ([`CapabilityProfile::with_fast_bf16`]) so `--bf16-unet`/`--bf16-vae` compute in bf16.
pub fn detect_host() -> CapabilityProfile {
    let (total, free) = system_memory();
    let features = cpu_features();
    let brand = cpu_brand().unwrap_or_else(|| "unknown CPU".to_string());
    let description = if features.is_empty() {
        brand
    } else {
        format!("{brand} ({})", features.join(", "))
    };
    let fast_bf16 = features.iter().any(|feature| feature == "avx512_bf16");
    let mut profile = CapabilityProfile::cpu("host", &description, total, free);
    if fast_bf16 {
        profile = profile.with_fast_bf16();
    }
    profile.cpu_features = features;
    profile
}

/// Probes CUDA device `ordinal`: compute capability, name, free and total memory.
#[cfg(feature = "cuda")]
pub fn probe_cuda(ordinal: usize) -> Result<CapabilityProfile, RuntimeError> {
    use crate::capability::CudaCapability;
    use candle_core::cuda_backend::cudarc::driver::CudaContext;

    let unavailable = |reason: String| RuntimeError::BackendUnavailable {
        backend: "cuda",
        reason,
    };
    let context = CudaContext::new(ordinal).map_err(|e| unavailable(e.to_string()))?;
    let (major, minor) = context
        .compute_capability()
        .map_err(|e| unavailable(e.to_string()))?;
    let (free, total) = context
        .mem_get_info()
        .map_err(|e| unavailable(e.to_string()))?;
    let name = context.name().unwrap_or_else(|_| "NVIDIA GPU".to_string());
    let capability = CudaCapability::new(major.max(0) as u32, minor.max(0) as u32);
    Ok(CapabilityProfile::cuda(
        &format!("cuda:{ordinal}"),
        &format!("{name} ({capability})"),
        capability,
        total as u64,
        free as u64,
    ))
}

/// Probes CUDA device `ordinal`; this build has no CUDA support.
#[cfg(not(feature = "cuda"))]
pub fn probe_cuda(ordinal: usize) -> Result<CapabilityProfile, RuntimeError> {
    Err(RuntimeError::BackendUnavailable {
        backend: "cuda",
        reason: format!("kiln was built without the `cuda` feature (device {ordinal})"),
    })
}

/// Probes the default Metal device. Memory is system RAM (unified), as ComfyUI reports it on MPS.
#[cfg(feature = "metal")]
pub fn probe_metal() -> Result<CapabilityProfile, RuntimeError> {
    use crate::capability::MacOsVersion;

    candle_core::Device::new_metal(0).map_err(|e| RuntimeError::BackendUnavailable {
        backend: "metal",
        reason: e.to_string(),
    })?;
    let macos = System::os_version()
        .ok()
        .and_then(|text| MacOsVersion::parse(&text))
        .ok_or_else(|| RuntimeError::BackendUnavailable {
            backend: "metal",
            reason: "cannot read the macOS version".to_string(),
        })?;
    let (total, free) = system_memory();
    let brand = cpu_brand().unwrap_or_else(|| "Apple silicon".to_string());
    Ok(CapabilityProfile::metal(
        "metal",
        &format!("{brand}, macOS {macos}"),
        macos,
        total,
        free,
    ))
}

/// Probes the default Metal device; this build has no Metal support.
#[cfg(not(feature = "metal"))]
pub fn probe_metal() -> Result<CapabilityProfile, RuntimeError> {
    Err(RuntimeError::BackendUnavailable {
        backend: "metal",
        reason: "kiln was built without the `metal` feature".to_string(),
    })
}

/// The device ComfyUI would pick (§2.1): `--cpu` ⇒ host CPU; otherwise Metal, then CUDA device
/// `--cuda-device` (default 0). Where ComfyUI fails ("Could not pick default device") Kiln falls
/// back to the host CPU; the second value says why when it did.
pub fn detect_device(options: &PlanOptions) -> (CapabilityProfile, Option<String>) {
    if options.cpu {
        return (detect_host(), None);
    }
    let metal = probe_metal();
    if let Ok(profile) = metal {
        return (profile, None);
    }
    match probe_cuda(options.cuda_device.unwrap_or(0)) {
        Ok(profile) => (profile, None),
        Err(cuda) => {
            let metal = metal.err().map(|e| e.to_string()).unwrap_or_default();
            (
                detect_host(),
                Some(format!(
                    "no GPU usable ({cuda}; {metal}); planning for the CPU"
                )),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capability::BackendKind;

    #[test]
    fn host_profile_reports_real_memory() {
        let host = detect_host();
        assert_eq!(host.backend, BackendKind::Cpu);
        assert_eq!(host.name, "host");
        assert!(host.total_memory > 0);
        assert!(host.free_memory <= host.total_memory);
        let has_bf16 = host.cpu_features.iter().any(|f| f == "avx512_bf16");
        assert_eq!(host.fast_bf16, has_bf16);
        assert_eq!(
            host.computes(crate::capability::OpFamily::Conv, candle_core::DType::BF16),
            has_bf16
        );
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_probe_without_feature_is_a_typed_error() {
        assert!(matches!(
            probe_cuda(0),
            Err(RuntimeError::BackendUnavailable {
                backend: "cuda",
                ..
            })
        ));
    }

    #[cfg(not(any(feature = "cuda", feature = "metal")))]
    #[test]
    fn detect_device_falls_back_to_cpu_and_says_why() {
        let (profile, why) = detect_device(&PlanOptions::default());
        assert_eq!(profile.backend, BackendKind::Cpu);
        assert!(why.unwrap().contains("cuda"));
        let (_, why) = detect_device(&PlanOptions {
            cpu: true,
            ..PlanOptions::default()
        });
        assert!(why.is_none());
    }
}
