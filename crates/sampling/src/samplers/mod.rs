//! Samplers: the [`Sampler`] trait and [`SAMPLERS`], the registry of ComfyUI's samplers that
//! Kiln implements, in ComfyUI's order (`comfy/samplers.py: SAMPLER_NAMES`).
//!
//! A sampler walks a descending sigma sequence from a noised latent to a clean one, calling the
//! [`Denoiser`] once or more per step. It knows nothing about models: it sees a denoised
//! prediction, the model's [`ModelSampling`](crate::ModelSampling) (for the flow-model special
//! cases) and a [`NoiseFactory`](crate::NoiseFactory) for ancestral/SDE noise.
//!
//! Scalar coefficients are computed in float32 in the order ComfyUI evaluates them on 0-d
//! tensors; tensor updates are float32 element-wise operations in torch's order.

mod common;
mod context;
mod ddpm;
mod deis;
mod derivative_history;
mod dpm_2;
mod dpm_2_ancestral;
mod dpm_fast;
mod dpmpp_2m;
mod dpmpp_2m_sde;
mod dpmpp_2s_ancestral;
mod dpmpp_3m_sde;
mod dpmpp_sde;
mod er_sde;
mod euler;
mod euler_ancestral;
mod gradient_estimation;
mod heun;
mod heunpp2;
mod ipndm;
mod ipndm_v;
mod lcm;
mod lms;
mod res_multistep;
mod sde_step;
mod seeds;
mod uni_pc;

use candle_core::Tensor;

pub use context::{Denoiser, NoProgress, Progress, SamplerContext, StepInfo};
pub use ddpm::Ddpm;
pub use deis::Deis;
pub use dpm_2::Dpm2;
pub use dpm_2_ancestral::Dpm2Ancestral;
pub use dpm_fast::DpmFast;
pub use dpmpp_2m::Dpmpp2m;
pub use dpmpp_2m_sde::{Dpmpp2mSde, SolverType};
pub use dpmpp_2s_ancestral::Dpmpp2sAncestral;
pub use dpmpp_3m_sde::Dpmpp3mSde;
pub use dpmpp_sde::DpmppSde;
pub use er_sde::ErSde;
pub use euler::{Ddim, Euler};
pub use euler_ancestral::EulerAncestral;
pub use gradient_estimation::GradientEstimation;
pub use heun::Heun;
pub use heunpp2::HeunPp2;
pub use ipndm::Ipndm;
pub use ipndm_v::IpndmV;
pub use lcm::Lcm;
pub use lms::Lms;
pub use res_multistep::ResMultistep;
pub use seeds::{Seeds2, Seeds3};
pub use uni_pc::{UniPc, UniPcVariant};

use crate::error::{Result, SamplingError};

/// One way of walking a sigma schedule.
pub trait Sampler: Send + Sync {
    /// The name ComfyUI uses (`"dpmpp_2m"`, …).
    fn name(&self) -> &'static str;

    /// Whether `KSampler` computes one extra step and drops the penultimate sigma for it
    /// (`dpm_2`, `dpm_2_ancestral`, `uni_pc`, `uni_pc_bh2`).
    fn discards_penultimate_sigma(&self) -> bool {
        false
    }

    /// The sigma ComfyUI's `inverse_noise_scaling` sees after this sampler ran on `sigmas`
    /// (normally the last one).
    fn final_sigma(&self, sigmas: &[f32]) -> f32 {
        sigmas.last().copied().unwrap_or(0.0)
    }

    /// Runs the sampler from the noised latent `x` along `sigmas` and returns the final latent.
    fn sample(&self, ctx: &mut SamplerContext<'_>, x: Tensor, sigmas: &[f32]) -> Result<Tensor>;
}

/// Every sampler Kiln implements, in ComfyUI's order.
pub static SAMPLERS: &[&dyn Sampler] = &[
    &Euler,
    &EulerAncestral::DEFAULT,
    &Heun,
    &HeunPp2,
    &Dpm2,
    &Dpm2Ancestral::DEFAULT,
    &Lms::DEFAULT,
    &DpmFast,
    &Dpmpp2sAncestral::DEFAULT,
    &DpmppSde::DEFAULT,
    &DpmppSde::GPU,
    &Dpmpp2m,
    &Dpmpp2mSde::MIDPOINT,
    &Dpmpp2mSde::MIDPOINT_GPU,
    &Dpmpp2mSde::HEUN,
    &Dpmpp2mSde::HEUN_GPU,
    &Dpmpp3mSde::DEFAULT,
    &Dpmpp3mSde::GPU,
    &Ddpm,
    &Lcm,
    &Ipndm::DEFAULT,
    &IpndmV::DEFAULT,
    &Deis::DEFAULT,
    &ResMultistep::DETERMINISTIC,
    &ResMultistep::ANCESTRAL,
    &GradientEstimation::DEFAULT,
    &ErSde::DEFAULT,
    &Seeds2::DEFAULT,
    &Seeds3::DEFAULT,
    &Ddim,
    &UniPc::BH1,
    &UniPc::BH2,
];

/// ComfyUI's full `SAMPLER_NAMES` (what the UI offers), including the ones Kiln lacks.
pub const COMFYUI_SAMPLER_NAMES: &[&str] = &[
    "euler",
    "euler_cfg_pp",
    "euler_ancestral",
    "euler_ancestral_cfg_pp",
    "heun",
    "heunpp2",
    "dpm_2",
    "dpm_2_ancestral",
    "lms",
    "dpm_fast",
    "dpm_adaptive",
    "dpmpp_2s_ancestral",
    "dpmpp_2s_ancestral_cfg_pp",
    "dpmpp_sde",
    "dpmpp_sde_gpu",
    "dpmpp_2m",
    "dpmpp_2m_cfg_pp",
    "dpmpp_2m_sde",
    "dpmpp_2m_sde_gpu",
    "dpmpp_2m_sde_heun",
    "dpmpp_2m_sde_heun_gpu",
    "dpmpp_3m_sde",
    "dpmpp_3m_sde_gpu",
    "ddpm",
    "lcm",
    "ipndm",
    "ipndm_v",
    "deis",
    "res_multistep",
    "res_multistep_cfg_pp",
    "res_multistep_ancestral",
    "res_multistep_ancestral_cfg_pp",
    "gradient_estimation",
    "gradient_estimation_cfg_pp",
    "er_sde",
    "seeds_2",
    "seeds_3",
    "sa_solver",
    "sa_solver_pece",
    "ddim",
    "uni_pc",
    "uni_pc_bh2",
];

/// The sampler called `name`: [`SamplingError::UnsupportedSampler`] for a ComfyUI sampler Kiln
/// does not implement, [`SamplingError::UnknownSampler`] for anything else.
pub fn sampler_by_name(name: &str) -> Result<&'static dyn Sampler> {
    if let Some(sampler) = SAMPLERS.iter().copied().find(|s| s.name() == name) {
        return Ok(sampler);
    }
    if COMFYUI_SAMPLER_NAMES.contains(&name) {
        Err(SamplingError::UnsupportedSampler {
            name: name.to_owned(),
        })
    } else {
        Err(SamplingError::UnknownSampler {
            name: name.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_follows_comfyui_order() {
        let positions: Vec<usize> = SAMPLERS
            .iter()
            .map(|s| {
                COMFYUI_SAMPLER_NAMES
                    .iter()
                    .position(|&n| n == s.name())
                    .unwrap_or_else(|| panic!("{} is not a ComfyUI sampler", s.name()))
            })
            .collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
    }

    #[test]
    fn lookup_distinguishes_unknown_from_unsupported() {
        assert_eq!(sampler_by_name("dpmpp_2m").unwrap().name(), "dpmpp_2m");
        assert!(matches!(
            sampler_by_name("sa_solver"),
            Err(SamplingError::UnsupportedSampler { .. })
        ));
        assert!(matches!(
            sampler_by_name("bogus"),
            Err(SamplingError::UnknownSampler { .. })
        ));
    }

    #[test]
    fn discard_penultimate_set_matches_comfyui() {
        let discarding: Vec<_> = SAMPLERS
            .iter()
            .filter(|s| s.discards_penultimate_sigma())
            .map(|s| s.name())
            .collect();
        assert_eq!(
            discarding,
            ["dpm_2", "dpm_2_ancestral", "uni_pc", "uni_pc_bh2"]
        );
    }
}
