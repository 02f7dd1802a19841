//! Conditioning entries as the guidance consumes them ([`GuidedCond`], [`LatentArea`]) and
//! ComfyUI's bookkeeping around them (`comfy/samplers.py`): same-area partners for area entries
//! (`create_cond_with_same_area_if_none`), area edge feathering (`get_area_and_mult`'s fuzz) and
//! batch repetition (`repeat_to_batch_size`).

use candle_core::Tensor;

use crate::error::{ModelError, Result};

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
    pub(super) fn inside(&self, outer: &LatentArea) -> bool {
        self.y >= outer.y
            && self.x >= outer.x
            && self.y + self.height <= outer.y + outer.height
            && self.x + self.width <= outer.x + outer.width
    }

    pub(super) fn cells(&self) -> usize {
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
    /// Distilled guidance strength (`FluxGuidance`'s `guidance`); models that embed guidance use
    /// their own default (Flux: 3.5) when it is `None`, others ignore it.
    pub guidance: Option<f64>,
    /// Extra latent channels concatenated to the model input (`c_concat`: Flux Fill's masked
    /// image and mask, inpainting models) `[N, C', H, W]`, cut to the entry's area.
    pub concat: Option<Tensor>,
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
            guidance: None,
            concat: None,
        }
    }
}

/// An input error of the guidance.
pub(super) fn input_error(input: &'static str, problem: String) -> ModelError {
    ModelError::Input {
        model: "CfgDenoiser",
        input,
        problem,
    }
}

/// Rejects entries whose tensors or numbers cannot be used.
pub(super) fn check_cond(side: &'static str, cond: &GuidedCond) -> Result<()> {
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
    if let Some(guidance) = cond.guidance {
        if !guidance.is_finite() {
            return Err(input_error(
                side,
                format!("guidance must be finite, got {guidance}"),
            ));
        }
    }
    if let Some(concat) = &cond.concat {
        if concat.rank() != 4 || concat.dim(0)? == 0 {
            return Err(input_error(
                side,
                format!(
                    "concat has shape {:?}, expected [batch, channels, height, width]",
                    concat.dims()
                ),
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
pub(super) fn pair_areas(positive: &mut Vec<GuidedCond>, negative: &mut Vec<GuidedCond>) {
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

/// Weights along one axis of an area: edges that do not touch the latent's border fade in over
/// `min(8, size / 4)` cells (ComfyUI's `fuzz`).
pub(super) fn feather(size: usize, offset: usize, full: usize) -> Vec<f32> {
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
pub(super) fn repeat_to_batch(tensor: &Tensor, batch: usize) -> Result<Tensor> {
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
