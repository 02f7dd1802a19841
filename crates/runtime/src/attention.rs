//! Attention kernel and softmax-upcast choice per component (spec §3): the diffusion model uses
//! ComfyUI's global `optimized_attention`, text encoders its small-input path, the VAE its
//! `vae_attention`; requests the device cannot honour fall back with a reason.

use candle_core::DType;
use kiln_detect::ComponentKind;

use crate::capability::{BackendKind, CapabilityProfile, MacOsVersion};
use crate::options::{AttentionRequest, UpcastRequest};
use crate::plan::AttentionKernel;

/// ComfyUI's `ENABLE_PYTORCH_ATTENTION`: on with `--use-pytorch-cross-attention`, and on NVIDIA
/// unless `--use-split-cross-attention`/`--use-quad-cross-attention` was given.
fn fused_enabled(request: AttentionRequest, device: &CapabilityProfile) -> bool {
    match request {
        AttentionRequest::Fused => true,
        AttentionRequest::Split | AttentionRequest::SubQuadratic => false,
        // On the CPU the fused kernel is Kiln's own tiled one (kiln-kernels): the same result as
        // ComfyUI's sub-quadratic default up to rounding, in less memory and 3–7× less time.
        AttentionRequest::Auto | AttentionRequest::Flash | AttentionRequest::Sage => {
            device.backend == BackendKind::Cuda || device.backend == BackendKind::Cpu
        }
    }
}

/// The diffusion model's kernel when nothing more specific applies.
fn diffusion_default(
    request: AttentionRequest,
    device: &CapabilityProfile,
) -> (AttentionKernel, String) {
    let label = device.label();
    if fused_enabled(request, device) {
        if device.fused_attention {
            return (
                AttentionKernel::Fused,
                format!("fused attention on {label}"),
            );
        }
        return (
            AttentionKernel::SubQuadratic,
            format!("sub-quadratic attention: {label} has no fused attention kernel"),
        );
    }
    (
        AttentionKernel::SubQuadratic,
        format!(
            "sub-quadratic attention (ComfyUI default on {})",
            device.backend
        ),
    )
}

/// The attention kernel for `kind` on `device`, and why.
pub(crate) fn choose(
    kind: ComponentKind,
    request: AttentionRequest,
    device: &CapabilityProfile,
) -> (AttentionKernel, String) {
    let label = device.label();
    match kind {
        ComponentKind::DiffusionModel => match request {
            AttentionRequest::Split => (
                AttentionKernel::Split,
                "split attention (--use-split-cross-attention)".to_string(),
            ),
            AttentionRequest::SubQuadratic => (
                AttentionKernel::SubQuadratic,
                "sub-quadratic attention (--use-quad-cross-attention)".to_string(),
            ),
            AttentionRequest::Flash if device.flash_attention => (
                AttentionKernel::Flash,
                "flash attention (--use-flash-attention)".to_string(),
            ),
            AttentionRequest::Flash => {
                let (kernel, why) = diffusion_default(request, device);
                (
                    kernel,
                    format!("--use-flash-attention needs CUDA sm80+, not {label}: {why}"),
                )
            }
            AttentionRequest::Sage => {
                let (kernel, why) = diffusion_default(request, device);
                (
                    kernel,
                    format!("--use-sage-attention: Kiln has no sage kernel; {why}"),
                )
            }
            AttentionRequest::Fused if !device.fused_attention => (
                AttentionKernel::SubQuadratic,
                format!(
                    "--use-pytorch-cross-attention but {label} has no fused kernel: sub-quadratic"
                ),
            ),
            AttentionRequest::Fused | AttentionRequest::Auto => diffusion_default(request, device),
        },
        ComponentKind::Vae => {
            if fused_enabled(request, device) && device.fused_attention {
                (
                    AttentionKernel::Fused,
                    format!("fused VAE attention on {label}"),
                )
            } else {
                (
                    AttentionKernel::Split,
                    format!("split VAE attention (ComfyUI without SDPA on {label})"),
                )
            }
        }
        ComponentKind::ClipL
        | ComponentKind::ClipG
        | ComponentKind::OpenClipH
        | ComponentKind::T5xxl => {
            // Text sequences are short: the CPU gains nothing from tiling them.
            if fused_enabled(request, device)
                && device.fused_attention
                && device.backend != BackendKind::Cpu
            {
                (
                    AttentionKernel::Fused,
                    format!("fused attention on {label}"),
                )
            } else {
                (
                    AttentionKernel::Plain,
                    "plain attention (short text sequences)".to_string(),
                )
            }
        }
    }
}

/// Whether attention softmax runs in f32 although the component computes f16 (ComfyUI only ever
/// upcasts f16): forced by flag, never with `--dont-upcast-attention`, and by default on macOS ≥
/// 14.5 (black-image bug) and on the CPU. The macOS version is the machine's, so it applies to
/// components a Mac runs on its CPU too.
pub(crate) fn upcast(
    request: UpcastRequest,
    compute: DType,
    device: &CapabilityProfile,
    macos: Option<MacOsVersion>,
) -> (bool, Option<String>) {
    if compute != DType::F16 {
        return (false, None);
    }
    match request {
        UpcastRequest::Never => (false, Some("--dont-upcast-attention".to_string())),
        UpcastRequest::Force => (
            true,
            Some("f32 softmax (--force-upcast-attention)".to_string()),
        ),
        UpcastRequest::Auto => match macos {
            Some(version) if version.at_least(14, 5) => {
                (true, Some(format!("f32 softmax (macOS {version} ≥ 14.5)")))
            }
            _ if device.backend == BackendKind::Cpu => {
                (true, Some("f32 softmax (f16 on the CPU)".to_string()))
            }
            _ => (false, None),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capability::CudaCapability;

    const GIB: u64 = 1 << 30;

    fn cuda(major: u32, minor: u32) -> CapabilityProfile {
        CapabilityProfile::cuda("c", "t", CudaCapability::new(major, minor), GIB, GIB)
    }

    fn cpu() -> CapabilityProfile {
        CapabilityProfile::cpu("cpu", "t", GIB, GIB)
    }

    #[test]
    fn defaults_per_backend_and_component() {
        let dm = ComponentKind::DiffusionModel;
        // Kiln's tiled CPU kernel (ComfyUI: sub-quadratic / split, equal up to rounding).
        assert_eq!(
            choose(dm, AttentionRequest::Auto, &cpu()).0,
            AttentionKernel::Fused
        );
        assert_eq!(
            choose(dm, AttentionRequest::Auto, &cuda(8, 6)).0,
            AttentionKernel::Fused
        );
        assert_eq!(
            choose(ComponentKind::Vae, AttentionRequest::Auto, &cpu()).0,
            AttentionKernel::Fused
        );
        assert_eq!(
            choose(ComponentKind::ClipL, AttentionRequest::Auto, &cpu()).0,
            AttentionKernel::Plain
        );
        assert_eq!(
            choose(ComponentKind::T5xxl, AttentionRequest::Auto, &cuda(9, 0)).0,
            AttentionKernel::Fused
        );
        let (kernel, why) = choose(dm, AttentionRequest::Auto, &cuda(7, 5));
        assert_eq!(kernel, AttentionKernel::SubQuadratic);
        assert!(why.contains("no fused"));
    }

    #[test]
    fn requests_fall_back_with_reasons() {
        let dm = ComponentKind::DiffusionModel;
        assert_eq!(
            choose(dm, AttentionRequest::Split, &cuda(8, 6)).0,
            AttentionKernel::Split
        );
        assert_eq!(
            choose(dm, AttentionRequest::Flash, &cuda(8, 0)).0,
            AttentionKernel::Flash
        );
        let (kernel, why) = choose(dm, AttentionRequest::Flash, &cuda(7, 5));
        assert_eq!(kernel, AttentionKernel::SubQuadratic);
        assert!(why.contains("sm80"));
        let (kernel, why) = choose(dm, AttentionRequest::Fused, &cuda(7, 5));
        assert_eq!(kernel, AttentionKernel::SubQuadratic);
        assert!(why.contains("no fused"));
        let (kernel, why) = choose(dm, AttentionRequest::Sage, &cuda(8, 9));
        assert_eq!(kernel, AttentionKernel::Fused);
        assert!(why.contains("sage"));
        // The split flag disables SDPA for the VAE too.
        assert_eq!(
            choose(ComponentKind::Vae, AttentionRequest::Split, &cuda(8, 6)).0,
            AttentionKernel::Split
        );
    }

    #[test]
    fn upcast_only_touches_f16() {
        let mac = Some(MacOsVersion::new(14, 5));
        let gpu = cuda(8, 6);
        assert!(upcast(UpcastRequest::Auto, DType::F16, &gpu, mac).0);
        assert!(
            !upcast(
                UpcastRequest::Auto,
                DType::F16,
                &gpu,
                Some(MacOsVersion::new(14, 4))
            )
            .0
        );
        assert!(!upcast(UpcastRequest::Auto, DType::BF16, &gpu, mac).0);
        assert!(upcast(UpcastRequest::Auto, DType::F16, &cpu(), None).0);
        assert!(!upcast(UpcastRequest::Never, DType::F16, &cpu(), mac).0);
        assert!(upcast(UpcastRequest::Force, DType::F16, &gpu, None).0);
    }
}
