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

use super::model::Unet;
use crate::error::{ModelError, Result};

const MODEL: &str = "CfgDenoiser";

/// A network the guidance can run: ComfyUI's `diffusion_model(x, t, context, y)`.
pub trait DiffusionModel {
    /// The dtype the network computes in; scaled inputs are cast to it.
    fn compute_dtype(&self) -> DType;

    /// The raw prediction (ε, v or flow) for `x` `[B, C, H, W]` at `timesteps` `[B]`, with
    /// `context` `[B, T, D]` and optional ADM vector `y` `[B, adm]`.
    fn predict(
        &self,
        x: &Tensor,
        timesteps: &Tensor,
        context: &Tensor,
        y: Option<&Tensor>,
    ) -> Result<Tensor>;
}

impl DiffusionModel for Unet {
    fn compute_dtype(&self) -> DType {
        self.dtype()
    }

    fn predict(
        &self,
        x: &Tensor,
        timesteps: &Tensor,
        context: &Tensor,
        y: Option<&Tensor>,
    ) -> Result<Tensor> {
        self.forward(x, timesteps, context, y)
    }
}

/// A rectangle of latent cells (`ConditioningSetArea`'s pixel values divided by 8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LatentArea {
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
    /// First row.
    pub y: usize,
    /// First column.
    pub x: usize,
}

impl LatentArea {
    /// The area `ConditioningSetArea` stores for pixel inputs: each value floor-divided by 8.
    pub fn from_pixels(width: usize, height: usize, x: usize, y: usize) -> Self {
        LatentArea {
            height: height / 8,
            width: width / 8,
            y: y / 8,
            x: x / 8,
        }
    }

    /// Whether `self` lies inside `outer` (ComfyUI's `area_inside`).
    fn inside(&self, outer: &LatentArea) -> bool {
        self.y >= outer.y
            && self.x >= outer.x
            && self.y + self.height <= outer.y + outer.height
            && self.x + self.width <= outer.x + outer.width
    }

    fn cells(&self) -> usize {
        self.height * self.width
    }
}

/// One entry of a ComfyUI `CONDITIONING` list, as the diffusion model consumes it.
#[derive(Debug, Clone)]
pub struct GuidedCond {
    /// Cross-attention context (`c_crossattn`) `[N, T, D]`; repeated or cut to the latent batch.
    pub context: Tensor,
    /// SDXL's ADM vector `[N, adm]` (see [`super::sdxl_adm`]); `None` for SD1/SD2.
    pub y: Option<Tensor>,
    /// Restricts the entry to part of the latent (`ConditioningSetArea`).
    pub area: Option<LatentArea>,
    /// Weight of the entry in the average (`strength`, default 1).
    pub strength: f64,
    /// The entry is used from this fraction of the schedule on (`start_percent`, default 0).
    pub start_percent: f64,
    /// …up to this fraction (`end_percent`, default 1).
    pub end_percent: f64,
}

impl GuidedCond {
    /// A full-image entry of strength 1 used at every step.
    pub fn new(context: Tensor, y: Option<Tensor>) -> Self {
        GuidedCond {
            context,
            y,
            area: None,
            strength: 1.0,
            start_percent: 0.0,
            end_percent: 1.0,
        }
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
        let scaled = self
            .sampling
            .calculate_input(sigma, &input_x)
            .map_err(sampling_error)?
            .to_dtype(self.model.compute_dtype())?;
        let rows = input_x.dim(0)?;
        let timestep = self.sampling.timestep(sigma);
        let timesteps = Tensor::full(timestep, rows, input_x.device())?;
        self.evaluations += 1;
        let output = self
            .model
            .predict(&scaled, &timesteps, &context, y.as_ref())?
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

fn input_error(input: &'static str, problem: String) -> ModelError {
    ModelError::Input {
        model: MODEL,
        input,
        problem,
    }
}

/// Wraps a model-sampling failure (shape errors in `calculate_input`/`calculate_denoised`).
fn sampling_error(error: SamplingError) -> ModelError {
    input_error("x", error.to_string())
}

fn check_cond(side: &'static str, cond: &GuidedCond) -> Result<()> {
    if cond.context.rank() != 3 || cond.context.dims().contains(&0) {
        return Err(input_error(
            side,
            format!(
                "context has shape {:?}, expected [batch, tokens, width]",
                cond.context.dims()
            ),
        ));
    }
    if let Some(y) = &cond.y {
        if y.rank() != 2 || y.dim(0)? == 0 {
            return Err(input_error(
                side,
                format!("y has shape {:?}, expected [batch, width]", y.dims()),
            ));
        }
    }
    if !cond.strength.is_finite() {
        return Err(input_error(
            side,
            format!("strength must be finite, got {}", cond.strength),
        ));
    }
    if let Some(area) = &cond.area {
        if area.cells() == 0 {
            return Err(input_error(side, format!("area {area:?} is empty")));
        }
    }
    Ok(())
}

/// `process_conds`' "make sure each cond area has an opposite one with the same area", in
/// ComfyUI's order: positive areas into the negative list, then negative ones (copies included)
/// into the positive list.
fn pair_areas(positive: &mut Vec<GuidedCond>, negative: &mut Vec<GuidedCond>) {
    let mut index = 0;
    while index < positive.len() {
        let cond = positive[index].clone();
        add_same_area(negative, &cond);
        index += 1;
    }
    let mut index = 0;
    while index < negative.len() {
        let cond = negative[index].clone();
        add_same_area(positive, &cond);
        index += 1;
    }
}

/// `create_cond_with_same_area_if_none`.
fn add_same_area(entries: &mut Vec<GuidedCond>, cond: &GuidedCond) {
    let Some(area) = cond.area else {
        return;
    };
    let mut smallest: Option<&GuidedCond> = None;
    for entry in entries.iter() {
        match (&entry.area, smallest.and_then(|s| s.area)) {
            (Some(candidate), current) if area.inside(candidate) => match current {
                None => smallest = Some(entry),
                Some(current) if current.cells() > candidate.cells() => smallest = Some(entry),
                Some(_) => {}
            },
            (None, _) if smallest.is_none() => smallest = Some(entry),
            _ => {}
        }
    }
    let Some(smallest) = smallest else {
        return;
    };
    if smallest.area == Some(area) {
        return;
    }
    let copy = GuidedCond {
        context: smallest.context.clone(),
        y: smallest.y.clone(),
        ..cond.clone()
    };
    entries.push(copy);
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
        area,
    }))
}

/// Weights along one axis of an area: edges that do not touch the latent's border fade in over
/// `min(8, size / 4)` cells (ComfyUI's `fuzz`).
fn feather(size: usize, offset: usize, full: usize) -> Vec<f32> {
    let mut factors = vec![1.0f32; size];
    let ramp = 8.min(size / 4);
    let step = |t: usize| ((1.0f64 / ramp as f64) * (t + 1) as f64) as f32;
    if offset != 0 {
        for (t, factor) in factors.iter_mut().take(ramp).enumerate() {
            *factor *= step(t);
        }
    }
    if size + offset < full {
        for t in 0..ramp {
            factors[size - 1 - t] *= step(t);
        }
    }
    factors
}

/// `repeat_to_batch_size`: cut or tile along dim 0 to `batch` rows.
fn repeat_to_batch(tensor: &Tensor, batch: usize) -> Result<Tensor> {
    let rows = tensor.dim(0)?;
    if rows == batch {
        return Ok(tensor.clone());
    }
    if rows > batch {
        return Ok(tensor.narrow(0, 0, batch)?);
    }
    let copies = batch.div_ceil(rows);
    let tiled = Tensor::cat(&vec![tensor; copies], 0)?;
    Ok(tiled.narrow(0, 0, batch)?)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feather_matches_comfyui_fuzz() {
        // 16 cells from offset 0 in a 32-cell latent: only the far edge fades, over 4 cells.
        let factors = feather(16, 0, 32);
        assert_eq!(&factors[..12], &[1.0; 12]);
        assert_eq!(&factors[12..], &[1.0, 0.75, 0.5, 0.25]);
        // Touching both borders: no fade.
        assert_eq!(feather(8, 0, 8), vec![1.0; 8]);
        // Interior, tiny: ramp of 0 cells.
        assert_eq!(feather(3, 2, 8), vec![1.0; 3]);
    }

    #[test]
    fn repeat_to_batch_tiles_and_cuts() {
        let t = Tensor::new(&[[1f32], [2.0]], &candle_core::Device::Cpu).unwrap();
        let tiled = repeat_to_batch(&t, 3).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(tiled, vec![vec![1.0], vec![2.0], vec![1.0]]);
        let cut = repeat_to_batch(&t, 1).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(cut, vec![vec![1.0]]);
    }

    fn cond_with_area(area: Option<LatentArea>, marker: f32) -> GuidedCond {
        let context = Tensor::full(marker, (1, 1, 1), &candle_core::Device::Cpu).unwrap();
        GuidedCond {
            area,
            ..GuidedCond::new(context, None)
        }
    }

    fn marker(cond: &GuidedCond) -> f32 {
        cond.context
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()[0]
    }

    #[test]
    fn area_pairing_copies_the_smallest_containing_context() {
        let area = LatentArea {
            height: 4,
            width: 4,
            y: 2,
            x: 2,
        };
        let big = LatentArea {
            height: 8,
            width: 8,
            y: 0,
            x: 0,
        };
        let mut positive = vec![cond_with_area(None, 1.0), cond_with_area(Some(area), 2.0)];
        let mut negative = vec![cond_with_area(None, 3.0), cond_with_area(Some(big), 4.0)];
        pair_areas(&mut positive, &mut negative);
        // The small positive area got a negative partner with the big area's context; the big
        // negative area got a positive partner from the full positive entry.
        assert_eq!(negative.len(), 3);
        assert_eq!(negative[2].area, Some(area));
        assert_eq!(marker(&negative[2]), 4.0);
        assert_eq!(positive.len(), 3);
        assert_eq!(positive[2].area, Some(big));
        assert_eq!(marker(&positive[2]), 1.0);
    }
}
