//! Memory accounting: the inference reserve, ComfyUI's partial-load weight budget (spec §2.2) and
//! the resident/streamed decision per component.

use crate::capability::{BackendKind, CapabilityProfile};
use crate::options::{PlanOptions, VramMode};
use crate::plan::{DevicePlacement, LoadMode};

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// ComfyUI's default `--reserve-vram` (400 MB; Kiln does not add Windows' extra 200 MB).
const DEFAULT_RESERVE: u64 = 400 * MIB;

/// Bytes kept free for other applications on a GPU: `--reserve-vram`, else 400 MiB; none on the
/// CPU.
pub(crate) fn reserve_bytes(profile: &CapabilityProfile, options: &PlanOptions) -> u64 {
    if profile.backend == BackendKind::Cpu {
        return 0;
    }
    options.reserve_vram_bytes.unwrap_or(DEFAULT_RESERVE)
}

/// ComfyUI `minimum_inference_memory`: 0.8 GiB for activations plus the reserve.
pub(crate) fn minimum_inference_bytes(profile: &CapabilityProfile, options: &PlanOptions) -> u64 {
    (GIB as f64 * 0.8) as u64 + reserve_bytes(profile, options)
}

/// How many weight bytes a partially loaded model may keep on the device (ComfyUI
/// `load_models_gpu`): `max(128 MiB, free − minimum, min(free × ratio, free − minimum))`, where
/// the ratio is 0 on NVIDIA and 0.4 elsewhere. With `--novram` almost nothing stays.
pub fn streaming_budget(profile: &CapabilityProfile, options: &PlanOptions) -> u64 {
    if options.vram == VramMode::NoVram {
        return 0;
    }
    let free = profile.free_memory;
    let minimum = minimum_inference_bytes(profile, options);
    let ratio = if profile.backend == BackendKind::Cuda {
        0.0
    } else {
        0.4
    };
    let by_ratio = ((free as f64 * ratio) as u64).min(free.saturating_sub(minimum));
    (128 * MIB).max(free.saturating_sub(minimum)).max(by_ratio)
}

/// `12.3 GiB`, for reasons.
pub(crate) fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / GIB as f64)
}

/// Resident or streamed, and why. CPU placements and unified memory (ComfyUI's SHARED state)
/// are always resident; on a discrete GPU `--gpu-only`/`--highvram` force resident, `--novram`
/// streams, and otherwise a component streams when it exceeds the partial-load budget (ComfyUI
/// does this in NORMAL as well as LOW_VRAM).
pub(crate) fn load_mode(
    bytes: u64,
    placement: DevicePlacement,
    profile: &CapabilityProfile,
    options: &PlanOptions,
) -> (LoadMode, String) {
    if placement == DevicePlacement::Cpu {
        return (
            LoadMode::Resident,
            "resident (host memory is the device)".to_string(),
        );
    }
    if profile.unified_memory {
        let mut why = "resident (unified memory, ComfyUI SHARED)".to_string();
        if matches!(options.vram, VramMode::Low | VramMode::NoVram) {
            why.push_str("; --lowvram/--novram have no effect on unified memory");
        }
        return (LoadMode::Resident, why);
    }
    match options.vram {
        VramMode::GpuOnly | VramMode::High => {
            let flag = if options.vram == VramMode::GpuOnly {
                "--gpu-only"
            } else {
                "--highvram"
            };
            (LoadMode::Resident, format!("resident ({flag})"))
        }
        VramMode::NoVram => (
            LoadMode::Streamed,
            "streamed layer by layer (--novram)".to_string(),
        ),
        VramMode::Auto | VramMode::Normal | VramMode::Low => {
            let budget = streaming_budget(profile, options);
            if bytes > budget {
                (
                    LoadMode::Streamed,
                    format!(
                        "streamed: {} of weights exceed the {} budget on {}",
                        gib(bytes),
                        gib(budget),
                        profile.label()
                    ),
                )
            } else {
                (
                    LoadMode::Resident,
                    format!("resident: {} fits the {} budget", gib(bytes), gib(budget)),
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capability::{CudaCapability, MacOsVersion};

    fn cuda(free: u64) -> CapabilityProfile {
        CapabilityProfile::cuda("c", "t", CudaCapability::new(8, 6), free, free)
    }

    #[test]
    fn budget_follows_comfyui_formula() {
        let options = PlanOptions::default();
        // 10 GiB free on NVIDIA: ratio 0, so free − (0.8 GiB + 400 MiB).
        let budget = streaming_budget(&cuda(10 * GIB), &options);
        assert_eq!(budget, 10 * GIB - (GIB as f64 * 0.8) as u64 - 400 * MIB);
        // Nearly nothing free: the 128 MiB floor.
        assert_eq!(streaming_budget(&cuda(GIB), &options), 128 * MIB);
        let novram = PlanOptions {
            vram: VramMode::NoVram,
            ..PlanOptions::default()
        };
        assert_eq!(streaming_budget(&cuda(10 * GIB), &novram), 0);
    }

    #[test]
    fn reserve_flag_shrinks_the_budget() {
        let options = PlanOptions {
            reserve_vram_bytes: Some(2 * GIB),
            ..PlanOptions::default()
        };
        let budget = streaming_budget(&cuda(10 * GIB), &options);
        assert_eq!(budget, 10 * GIB - (GIB as f64 * 0.8) as u64 - 2 * GIB);
    }

    #[test]
    fn unified_memory_is_always_resident() {
        let m1 = CapabilityProfile::metal("m1", "t", MacOsVersion::new(13, 6), 16 * GIB, GIB);
        let options = PlanOptions {
            vram: VramMode::Low,
            ..PlanOptions::default()
        };
        let (mode, why) = load_mode(40 * GIB, DevicePlacement::Metal, &m1, &options);
        assert_eq!(mode, LoadMode::Resident);
        assert!(why.contains("no effect"));
    }

    #[test]
    fn too_large_for_the_budget_streams() {
        let options = PlanOptions::default();
        let (mode, why) = load_mode(
            20 * GIB,
            DevicePlacement::Cuda(0),
            &cuda(16 * GIB),
            &options,
        );
        assert_eq!(mode, LoadMode::Streamed);
        assert!(why.contains("exceed"));
        let (mode, _) = load_mode(GIB, DevicePlacement::Cuda(0), &cuda(16 * GIB), &options);
        assert_eq!(mode, LoadMode::Resident);
    }
}
