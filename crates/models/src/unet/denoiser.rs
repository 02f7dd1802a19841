//! `CfgDenoiser`: a diffusion model plus its [`ModelSampling`] plus classifier-free guidance, as
//! the [`Denoiser`] samplers call — ComfyUI's `CFGGuider` → `sampling_function` →
//! `calc_cond_batch` → `BaseModel.apply_model` (`comfy/samplers.py`, `comfy/model_base.py`).
//!
//! Per call: every conditioning entry whose timestep range contains σ is cut to its area, given
//! its weight (strength, feathered at area edges), run through the model (entries of the same
//! shape batched together), and the denoised predictions are averaged per side by weight. With
//! `cfg == 1` the negative side is never run. Then `uncond + (cond − uncond)·cfg`.

use candle_core::{DType, Tensor};
use kiln_sampling::samplers::Denoiser;
use kiln_sampling::{ModelSampling, SamplingError};

use super::guided_cond::{
    check_cond, feather, input_error, pair_areas, repeat_to_batch, GuidedCond, LatentArea,
};
use super::model::Unet;
use crate::error::{ModelError, Result};

/// What one model call is conditioned on besides the latent and the timestep, batched to the
/// latent's batch size (ComfyUI's `extra_conds` after `calc_cond_batch`).
#[derive(Debug, Clone, Copy)]
pub struct ModelConditioning<'a> {
    /// Cross-attention / joint-attention text tokens `[B, T, D]`.
    pub context: &'a Tensor,
    /// Pooled vector `y` `[B, adm]` (SDXL ADM, SD3 pooled CLIP, Flux pooled CLIP-L).
    pub y: Option<&'a Tensor>,
    /// Distilled guidance `[B]` f32 (Flux dev), `None` where no entry set one.
    pub guidance: Option<&'a Tensor>,
}

/// A network the guidance can run: ComfyUI's `diffusion_model(x, t, context, y, guidance)`.
pub trait DiffusionModel {
    /// The dtype the network computes in; scaled inputs are cast to it.
    fn compute_dtype(&self) -> DType;

    /// The raw prediction (ε, v or flow) for `x` `[B, C, H, W]` (with any `c_concat` channels
    /// already appended) at `timesteps` `[B]`.
    fn predict(&self, x: &Tensor, timesteps: &Tensor, cond: &ModelConditioning) -> Result<Tensor>;
}

impl DiffusionModel for Unet {
    fn compute_dtype(&self) -> DType {
        self.dtype()
    }

    fn predict(&self, x: &Tensor, timesteps: &Tensor, cond: &ModelConditioning) -> Result<Tensor> {
        self.forward(x, timesteps, cond.context, cond.y)
    }
}

/// How many conditioning entries one model call may batch (ComfyUI batches as many as free
/// memory allows; the result is the same either way up to float rounding).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CondBatching {
    /// Every compatible entry in one call.
    All,
    /// At most this many entries per call (`AtMost(1)`: one call per entry).
    AtMost(usize),
}

/// An entry with its timestep range resolved to sigmas (`calculate_start_end_timesteps`).
#[derive(Debug, Clone)]
struct ResolvedCond {
    cond: GuidedCond,
    sigma_start: f32,
    sigma_end: f32,
}

/// An entry cut to one evaluation (`get_area_and_mult`'s `cond_obj`).
struct Evaluation {
    side: usize,
    input_x: Tensor,
    mult: Tensor,
    context: Tensor,
    y: Option<Tensor>,
    guidance: Option<f64>,
    concat: Option<Tensor>,
    area: Option<LatentArea>,
}

/// The UNet (or any [`DiffusionModel`]) with model sampling and CFG, as a sampler's
/// [`Denoiser`].
pub struct CfgDenoiser<'m, M: DiffusionModel + ?Sized> {
    model: &'m M,
    sampling: ModelSampling,
    positive: Vec<ResolvedCond>,
    negative: Vec<ResolvedCond>,
    cfg: f64,
    batching: CondBatching,
    evaluations: usize,
}

impl<M: DiffusionModel + ?Sized> std::fmt::Debug for CfgDenoiser<'_, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CfgDenoiser")
            .field("positive", &self.positive.len())
            .field("negative", &self.negative.len())
            .field("cfg", &self.cfg)
            .field("batching", &self.batching)
            .field("evaluations", &self.evaluations)
            .finish_non_exhaustive()
    }
}

impl<'m, M: DiffusionModel + ?Sized> CfgDenoiser<'m, M> {
    /// Guidance of `model` with scale `cfg` between `positive` and `negative` entries, batching
    /// every compatible entry. As ComfyUI's `process_conds`, each area entry on one side that
    /// has no same-area partner on the other side gets one: a copy of it with the context of
    /// the other side's smallest entry containing that area.
    pub fn new(
        model: &'m M,
        sampling: ModelSampling,
        positive: Vec<GuidedCond>,
        negative: Vec<GuidedCond>,
        cfg: f64,
    ) -> Result<Self> {
        if !cfg.is_finite() {
            return Err(input_error("cfg", format!("must be finite, got {cfg}")));
        }
        let (mut positive, mut negative) = (positive, negative);
        for (side, entries) in [("positive", &positive), ("negative", &negative)] {
            entries.iter().try_for_each(|cond| check_cond(side, cond))?;
        }
        pair_areas(&mut positive, &mut negative);
        let resolve = |entries: Vec<GuidedCond>| -> Vec<ResolvedCond> {
            entries
                .into_iter()
                .map(|cond| ResolvedCond {
                    sigma_start: sampling.percent_to_sigma(cond.start_percent) as f32,
                    sigma_end: sampling.percent_to_sigma(cond.end_percent) as f32,
                    cond,
                })
                .collect()
        };
        Ok(CfgDenoiser {
            model,
            positive: resolve(positive),
            negative: resolve(negative),
            sampling,
            cfg,
            batching: CondBatching::All,
            evaluations: 0,
        })
    }

    /// The same denoiser batching entries as `batching` says.
    pub fn with_batching(mut self, batching: CondBatching) -> Self {
        self.batching = batching;
        self
    }

    /// Model calls made so far.
    pub fn evaluations(&self) -> usize {
        self.evaluations
    }

    /// Number of `(positive, negative)` entries after area pairing.
    pub fn entry_counts(&self) -> (usize, usize) {
        (self.positive.len(), self.negative.len())
    }

    /// The guidance scale.
    pub fn cfg(&self) -> f64 {
        self.cfg
    }

    /// ComfyUI's `math.isclose(cfg, 1.0)`: the negative side is skipped.
    fn skips_uncond(&self) -> bool {
        (self.cfg - 1.0).abs() <= 1e-9 * self.cfg.abs().max(1.0)
    }

    /// `sampling_function` for `x` at `sigma`.
    fn guided(&mut self, x: &Tensor, sigma: f32) -> Result<Tensor> {
        let x = x.to_dtype(DType::F32)?;
        let skip_uncond = self.skips_uncond();
        let mut pending = Vec::new();
        for (side, entries) in [(0usize, &self.positive), (1, &self.negative)] {
            if side == 1 && skip_uncond {
                continue;
            }
            for entry in entries {
                if let Some(evaluation) = prepare(entry, side, &x, sigma)? {
                    pending.push(evaluation);
                }
            }
        }

        let mut sums = [x.zeros_like()?, x.zeros_like()?];
        let mut weights = [(x.ones_like()? * 1e-37)?, (x.ones_like()? * 1e-37)?];
        while !pending.is_empty() {
            let batch = self.take_batch(&mut pending);
            let outputs = self.run_batch(&batch, sigma)?;
            for (evaluation, output) in batch.iter().zip(outputs) {
                let side = evaluation.side;
                let contribution = (output * &evaluation.mult)?;
                match evaluation.area {
                    None => {
                        sums[side] = (&sums[side] + contribution)?;
                        weights[side] = (&weights[side] + &evaluation.mult)?;
                    }
                    Some(area) => {
                        sums[side] = add_in_area(&sums[side], &area, &contribution)?;
                        weights[side] = add_in_area(&weights[side], &area, &evaluation.mult)?;
                    }
                }
            }
        }
        let [cond_sum, uncond_sum] = sums;
        let [cond_weight, uncond_weight] = weights;
        let cond = (cond_sum / cond_weight)?;
        let uncond = (uncond_sum / uncond_weight)?;
        // `cfg_function`: with the negative side skipped `uncond` is all zeros.
        Ok((&uncond + ((&cond - &uncond)? * self.cfg)?)?)
    }

    /// Removes the next batch from `pending`: the entries compatible with the first, most
    /// recent first, limited by the batching policy (ComfyUI's `to_batch_temp` halving).
    fn take_batch(&self, pending: &mut Vec<Evaluation>) -> Vec<Evaluation> {
        let mut compatible: Vec<usize> = (0..pending.len())
            .filter(|&index| can_concat(&pending[index], &pending[0]))
            .collect();
        compatible.reverse();
        let limit = match self.batching {
            CondBatching::All => compatible.len(),
            CondBatching::AtMost(limit) => limit.max(1),
        };
        let chosen = (1..=compatible.len())
            .map(|divisor| compatible.len() / divisor)
            .find(|&amount| amount <= limit)
            .unwrap_or(1);
        compatible.truncate(chosen.max(1));
        // Indices are descending, so each removal leaves the later ones valid.
        compatible
            .into_iter()
            .map(|index| pending.remove(index))
            .collect()
    }

    /// `apply_model` on a batch: denoised predictions, one per evaluation.
    fn run_batch(&mut self, batch: &[Evaluation], sigma: f32) -> Result<Vec<Tensor>> {
        let input_x = Tensor::cat(&batch.iter().map(|e| &e.input_x).collect::<Vec<_>>(), 0)?;
        let context = concat_contexts(batch)?;
        let y = match batch.first().and_then(|e| e.y.as_ref()) {
            Some(_) => {
                let ys = batch
                    .iter()
                    .filter_map(|e| e.y.as_ref())
                    .collect::<Vec<_>>();
                Some(Tensor::cat(&ys, 0)?)
            }
            None => None,
        };
        let guidance = match batch.first().and_then(|e| e.guidance) {
            Some(_) => {
                let values = batch
                    .iter()
                    .flat_map(|e| {
                        let rows = e.input_x.dim(0).unwrap_or(0);
                        std::iter::repeat_n(e.guidance.unwrap_or_default() as f32, rows)
                    })
                    .collect::<Vec<_>>();
                let rows = values.len();
                Some(Tensor::from_vec(values, rows, input_x.device())?)
            }
            None => None,
        };
        let mut scaled = self
            .sampling
            .calculate_input(sigma, &input_x)
            .map_err(sampling_error)?;
        if batch.first().is_some_and(|e| e.concat.is_some()) {
            let concats = batch
                .iter()
                .filter_map(|e| e.concat.as_ref())
                .collect::<Vec<_>>();
            let concat = Tensor::cat(&concats, 0)?.to_dtype(scaled.dtype())?;
            scaled = Tensor::cat(&[&scaled, &concat], 1)?;
        }
        let scaled = scaled.to_dtype(self.model.compute_dtype())?;
        let rows = input_x.dim(0)?;
        let timestep = self.sampling.timestep(sigma);
        let timesteps = Tensor::full(timestep, rows, input_x.device())?;
        self.evaluations += 1;
        let conditioning = ModelConditioning {
            context: &context,
            y: y.as_ref(),
            guidance: guidance.as_ref(),
        };
        let output = self
            .model
            .predict(&scaled, &timesteps, &conditioning)?
            .to_dtype(DType::F32)?;
        let denoised = self
            .sampling
            .calculate_denoised(sigma, &output, &input_x)
            .map_err(sampling_error)?;
        Ok(denoised.chunk(batch.len(), 0)?)
    }
}

impl<M: DiffusionModel + ?Sized> Denoiser for CfgDenoiser<'_, M> {
    fn denoise(&mut self, x: &Tensor, sigma: f64) -> kiln_sampling::Result<Tensor> {
        self.guided(x, sigma as f32)
            .map_err(|error| SamplingError::Denoiser {
                sigma,
                source: Box::new(error),
            })
    }
}

/// Wraps a model-sampling failure (shape errors in `calculate_input`/`calculate_denoised`).
fn sampling_error(error: SamplingError) -> ModelError {
    input_error("x", error.to_string())
}

/// `get_area_and_mult`: `None` when σ is outside the entry's range.
fn prepare(
    entry: &ResolvedCond,
    side: usize,
    x: &Tensor,
    sigma: f32,
) -> Result<Option<Evaluation>> {
    if sigma > entry.sigma_start || sigma < entry.sigma_end {
        return Ok(None);
    }
    let cond = &entry.cond;
    let (batch, channels, height, width) = x.dims4()?;
    let strength = cond.strength as f32;
    let (input_x, area, row_factors, column_factors) = match cond.area {
        None => (x.clone(), None, vec![1.0; height], vec![1.0; width]),
        Some(requested) => {
            if requested.y >= height || requested.x >= width {
                return Err(input_error(
                    "area",
                    format!("{requested:?} starts outside the {height}×{width} latent"),
                ));
            }
            let area = LatentArea {
                height: requested.height.min(height - requested.y),
                width: requested.width.min(width - requested.x),
                ..requested
            };
            let input_x = x
                .narrow(2, area.y, area.height)?
                .narrow(3, area.x, area.width)?;
            (
                input_x,
                Some(area),
                feather(area.height, area.y, height),
                feather(area.width, area.x, width),
            )
        }
    };
    // `ones * strength`, then rows, then columns scaled in place, all in f32.
    let (rows, columns) = (row_factors.len(), column_factors.len());
    let mut mult = Vec::with_capacity(rows * columns);
    for row in &row_factors {
        for column in &column_factors {
            mult.push(strength * row * column);
        }
    }
    let mult = Tensor::from_vec(mult, (1, 1, rows, columns), x.device())?
        .broadcast_as((batch, channels, rows, columns))?
        .contiguous()?;
    Ok(Some(Evaluation {
        side,
        input_x,
        mult,
        context: repeat_to_batch(&cond.context, batch)?,
        y: cond
            .y
            .as_ref()
            .map(|y| repeat_to_batch(y, batch))
            .transpose()?,
        guidance: cond.guidance,
        concat: match &cond.concat {
            Some(concat) => Some(crop_concat(concat, area, batch, height, width)?),
            None => None,
        },
        area,
    }))
}

/// `c_concat` repeated to the batch and cut to the evaluated area; it must cover the latent.
fn crop_concat(
    concat: &Tensor,
    area: Option<LatentArea>,
    batch: usize,
    height: usize,
    width: usize,
) -> Result<Tensor> {
    let (_, _, concat_height, concat_width) = concat.dims4()?;
    if (concat_height, concat_width) != (height, width) {
        return Err(input_error(
            "concat",
            format!(
                "concat latent is {concat_height}×{concat_width}, the latent is {height}×{width}"
            ),
        ));
    }
    let concat = repeat_to_batch(concat, batch)?;
    Ok(match area {
        None => concat,
        Some(area) => concat
            .narrow(2, area.y, area.height)?
            .narrow(3, area.x, area.width)?,
    })
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

fn lcm(a: usize, b: usize) -> usize {
    a / gcd(a, b) * b
}

/// `can_concat_cond`: same latent crop, ADM presence and shape, and contexts whose token counts
/// tile to a common length with at most 4× repetition (`CONDCrossAttn.can_concat`).
fn can_concat(a: &Evaluation, b: &Evaluation) -> bool {
    if a.input_x.dims() != b.input_x.dims() {
        return false;
    }
    match (&a.y, &b.y) {
        (None, None) => {}
        (Some(ya), Some(yb)) if ya.dims() == yb.dims() => {}
        _ => return false,
    }
    if a.guidance.is_some() != b.guidance.is_some() {
        return false;
    }
    match (&a.concat, &b.concat) {
        (None, None) => {}
        (Some(ca), Some(cb)) if ca.dims() == cb.dims() => {}
        _ => return false,
    }
    let (ca, cb) = (a.context.dims(), b.context.dims());
    if ca == cb {
        return true;
    }
    if ca[0] != cb[0] || ca[2] != cb[2] {
        return false;
    }
    lcm(ca[1], cb[1]) / ca[1].min(cb[1]) <= 4
}

/// `CONDCrossAttn.concat`: contexts tiled along tokens to their common length, then stacked.
fn concat_contexts(batch: &[Evaluation]) -> Result<Tensor> {
    let tokens = batch
        .iter()
        .map(|e| e.context.dim(1))
        .collect::<candle_core::Result<Vec<_>>>()?;
    let common = tokens.iter().copied().fold(1, lcm);
    let tiled = batch
        .iter()
        .zip(&tokens)
        .map(|(e, &t)| Ok(e.context.repeat((1, common / t, 1))?))
        .collect::<Result<Vec<_>>>()?;
    Ok(Tensor::cat(&tiled, 0)?)
}

/// `target[…, area] += values`.
fn add_in_area(target: &Tensor, area: &LatentArea, values: &Tensor) -> Result<Tensor> {
    let region = target
        .narrow(2, area.y, area.height)?
        .narrow(3, area.x, area.width)?;
    let (batch, channels, _, _) = target.dims4()?;
    Ok(target.slice_assign(
        &[
            0..batch,
            0..channels,
            area.y..area.y + area.height,
            area.x..area.x + area.width,
        ],
        &(region + values)?,
    )?)
}
