//! adaLN modulation (`Modulation`, `ModulationOut` and `apply_mod` in ComfyUI's
//! `comfy/ldm/flux/layers.py`): a Linear on `silu(vec)` yields shift/scale/gate triples that
//! steer each block's layer norms and residual branches.

use candle_core::{Tensor, D};

use super::expect_shape;
use crate::error::{ModelError, Result};
use crate::layers::Linear;
use crate::weights::Weights;

/// One shift/scale/gate triple, each `[B, 1, hidden]`.
#[derive(Debug, Clone)]
pub(crate) struct ModulationOut {
    pub(crate) shift: Tensor,
    pub(crate) scale: Tensor,
    pub(crate) gate: Tensor,
}

impl ModulationOut {
    /// `x·(1 + scale) + shift`.
    pub(crate) fn modulate(&self, x: &Tensor) -> Result<Tensor> {
        modulate(x, &self.shift, &self.scale)
    }

    /// `x + gate·branch`.
    pub(crate) fn gated_add(&self, x: &Tensor, branch: &Tensor) -> Result<Tensor> {
        Ok((x + branch.broadcast_mul(&self.gate)?)?)
    }
}

/// `Modulation`: `lin(silu(vec))` split into `triples` [`ModulationOut`]s (double blocks 2,
/// single blocks 1).
#[derive(Debug, Clone)]
pub(crate) struct Modulation {
    lin: Linear,
    triples: usize,
}

impl Modulation {
    /// The modulation whose `lin` (`[3·triples·hidden, hidden]`) lives under `weights`.
    pub(crate) fn new(weights: &Weights, triples: usize, hidden: usize) -> Result<Self> {
        let lin = weights.pp("lin");
        expect_shape(&lin, "weight", &[3 * triples * hidden, hidden])?;
        Ok(Modulation {
            lin: Linear::new(lin)?,
            triples,
        })
    }

    /// The first triple for `vec` `[B, hidden]` (single blocks).
    pub(crate) fn single(&self, vec: &Tensor) -> Result<ModulationOut> {
        let (first, _) = self.first_two(vec)?;
        Ok(first)
    }

    /// The two triples for `vec` `[B, hidden]` (double blocks: attention, then MLP).
    pub(crate) fn pair(&self, vec: &Tensor) -> Result<(ModulationOut, ModulationOut)> {
        match self.first_two(vec)? {
            (first, Some(second)) => Ok((first, second)),
            (_, None) => Err(ModelError::Config {
                model: "Flux",
                reason: "a double-stream block's modulation has one triple".to_string(),
            }),
        }
    }

    fn first_two(&self, vec: &Tensor) -> Result<(ModulationOut, Option<ModulationOut>)> {
        let mut triples = self.forward(vec)?.into_iter();
        match triples.next() {
            Some(first) => Ok((first, triples.next())),
            None => Err(ModelError::Config {
                model: "Flux",
                reason: "a modulation with no triples".to_string(),
            }),
        }
    }

    /// The triples for `vec` `[B, hidden]`, in order.
    fn forward(&self, vec: &Tensor) -> Result<Vec<ModulationOut>> {
        let out = self.lin.forward(&vec.silu()?)?.unsqueeze(1)?;
        let mut chunks = out.chunk(3 * self.triples, D::Minus1)?.into_iter();
        let mut next = || {
            chunks.next().ok_or_else(|| ModelError::Input {
                model: "Flux",
                input: "vec",
                problem: format!("modulation output {:?} is too narrow", out.dims()),
            })
        };
        (0..self.triples)
            .map(|_| {
                Ok(ModulationOut {
                    shift: next()?,
                    scale: next()?,
                    gate: next()?,
                })
            })
            .collect()
    }
}

/// `apply_mod(x, 1 + scale, shift)`: `x·(1 + scale) + shift`.
pub(crate) fn modulate(x: &Tensor, shift: &Tensor, scale: &Tensor) -> Result<Tensor> {
    Ok(x.broadcast_mul(&(scale + 1.0)?)?.broadcast_add(shift)?)
}
