//! Noise-level arithmetic shared by several samplers (`get_ancestral_step`, the rectified-flow
//! ancestral step, half-log-SNR conversions), in float32 as ComfyUI computes it on 0-d tensors.

use crate::model_sampling::ModelSampling;

/// `get_ancestral_step(sigma_from, sigma_to, eta)`: the deterministic target `sigma_down` and
/// the noise `sigma_up` to add back.
pub(crate) fn ancestral_step(sigma_from: f32, sigma_to: f32, eta: f32) -> (f32, f32) {
    if eta == 0.0 {
        return (sigma_to, 0.0);
    }
    let to2 = sigma_to * sigma_to;
    let from2 = sigma_from * sigma_from;
    let candidate = eta * ((to2 * (from2 - to2)) / from2).sqrt();
    // Python's min(a, b) keeps `a` unless `b` is strictly smaller.
    let sigma_up = if candidate < sigma_to {
        candidate
    } else {
        sigma_to
    };
    let sigma_down = (to2 - sigma_up * sigma_up).sqrt();
    (sigma_down, sigma_up)
}

/// The rectified-flow ancestral step of the `*_RF` samplers.
#[derive(Clone, Copy, Debug)]
pub(crate) struct FlowAncestralStep {
    /// `sigma_down`.
    pub(crate) sigma_down: f32,
    /// `alpha_ip1 / alpha_down`, the rescale before adding noise.
    pub(crate) alpha_ratio: f32,
    /// `renoise_coeff`.
    pub(crate) renoise: f32,
}

/// `downstep_ratio = 1 + (σ'/σ − 1)·η`, `σ_down = σ'·ratio`, `renoise = √(σ'² − σ_down²·α'²/α_down²)`.
pub(crate) fn flow_ancestral_step(sigma: f32, sigma_next: f32, eta: f32) -> FlowAncestralStep {
    let downstep_ratio = 1.0 + (sigma_next / sigma - 1.0) * eta;
    let sigma_down = sigma_next * downstep_ratio;
    let alpha_next = 1.0 - sigma_next;
    let alpha_down = 1.0 - sigma_down;
    let renoise = (sigma_next * sigma_next
        - (sigma_down * sigma_down * (alpha_next * alpha_next)) / (alpha_down * alpha_down))
        .sqrt();
    FlowAncestralStep {
        sigma_down,
        alpha_ratio: alpha_next / alpha_down,
        renoise,
    }
}

/// `sigma_to_half_log_snr`: `log(α/σ)`; `−logit(σ)` for flow models, `−log σ` otherwise.
pub(crate) fn half_log_snr(sigma: f32, model: &ModelSampling) -> f32 {
    if model.is_const() {
        -(sigma / (1.0 - sigma)).ln()
    } else {
        -sigma.ln()
    }
}

/// `half_log_snr_to_sigma`: `sigmoid(−λ)` for flow models, `exp(−λ)` otherwise.
pub(crate) fn half_log_snr_to_sigma(lambda: f32, model: &ModelSampling) -> f32 {
    if model.is_const() {
        1.0 / (1.0 + lambda.exp())
    } else {
        (-lambda).exp()
    }
}

/// `offset_first_sigma_for_snr`: a flow schedule starting at σ ≥ 1 (infinite log-SNR) starts at
/// `percent_to_sigma(1e-4)` instead.
pub(crate) fn offset_first_sigma_for_snr(sigmas: &[f32], model: &ModelSampling) -> Vec<f32> {
    let mut sigmas = sigmas.to_vec();
    if sigmas.len() > 1 && model.is_const() && sigmas[0] >= 1.0 {
        sigmas[0] = model.percent_to_sigma(1e-4) as f32;
    }
    sigmas
}

/// `torch.lerp(start, end, weight)` on 0-d float32 tensors: `start + w·(end − start)` for
/// `|w| < 0.5`, else `end − (end − start)·(1 − w)`, each as one fused multiply–add.
pub(crate) fn lerp(start: f32, end: f32, weight: f32) -> f32 {
    if weight.abs() < 0.5 {
        weight.mul_add(end - start, start)
    } else {
        (weight - 1.0).mul_add(end - start, end)
    }
}

/// Python's `1 / x` on a 0-d tensor: `reciprocal(x) * 1`.
pub(crate) fn reciprocal(x: f32) -> f32 {
    1.0 / x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ancestral_step_splits_variance() {
        let (down, up) = ancestral_step(2.0, 1.0, 1.0);
        assert!((down * down + up * up - 1.0).abs() < 1e-6);
        assert_eq!(ancestral_step(2.0, 1.0, 0.0), (1.0, 0.0));
        assert_eq!(ancestral_step(2.0, 0.0, 1.0), (0.0, 0.0));
    }

    #[test]
    fn flow_step_to_zero_has_no_noise() {
        let step = flow_ancestral_step(0.5, 0.0, 1.0);
        assert_eq!(step.sigma_down, 0.0);
        assert_eq!(step.renoise, 0.0);
    }

    #[test]
    fn half_log_snr_round_trips() {
        for model in [
            ModelSampling::discrete(crate::Prediction::Eps),
            ModelSampling::sd3(),
        ] {
            let sigma = 0.3f32;
            let back = half_log_snr_to_sigma(half_log_snr(sigma, &model), &model);
            assert!((back - sigma).abs() < 1e-6);
        }
    }
}
