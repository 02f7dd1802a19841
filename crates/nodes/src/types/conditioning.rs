//! [`Conditioning`]: ComfyUI's `CONDITIONING` — a list of `(cross-attention tensor, options)`
//! pairs; the options ([`CondMeta`]) hold the pooled output, area, strength, mask, timestep
//! range, SDXL size conditioning, Flux guidance and the inpainting model inputs.

use candle_core::Tensor;
use kiln_graph::Value;
use kiln_models::{LatentArea, RefinerSize, SdxlSize};

/// The options dict of one conditioning entry.
#[derive(Clone, Debug)]
pub struct CondMeta {
    /// `pooled_output` `[B, P]` (CLIP-G/CLIP-L pooled text embedding).
    pub pooled: Option<Tensor>,
    /// `area` in latent cells (`ConditioningSetArea`).
    pub area: Option<LatentArea>,
    /// `strength` (default 1).
    pub strength: f64,
    /// `set_area_to_bounds`.
    pub set_area_to_bounds: bool,
    /// `mask` `[B, H, W]` (`ConditioningSetMask`).
    pub mask: Option<Tensor>,
    /// `mask_strength` (default 1).
    pub mask_strength: f64,
    /// `start_percent` (default 0).
    pub start_percent: f64,
    /// `end_percent` (default 1).
    pub end_percent: f64,
    /// SDXL / SDXL refiner size conditioning (`width`, `height`, `crop_w`, ...).
    pub size: Option<SizeConditioning>,
    /// `guidance` (`FluxGuidance`): the distilled guidance strength of Flux dev; `None` lets
    /// the model use its default.
    pub guidance: Option<f64>,
    /// `guidance: None` as `FluxDisableGuidance` sets it: while [`Self::guidance`] is `None`
    /// the model gets no guidance at all instead of its default (`FluxGuidance` setting a
    /// value overrides it, as in ComfyUI).
    pub guidance_disabled: bool,
    /// `concat_latent_image` (`InpaintModelConditioning`): the VAE latent of the image with
    /// its masked pixels greyed, `[B, C, h, w]` in VAE space; inpainting models (Flux Fill)
    /// take it as extra input channels.
    pub concat_latent_image: Option<Tensor>,
    /// `concat_mask` (`InpaintModelConditioning`): the inpainting mask at pixel size,
    /// `[B, 1, H, W]`.
    pub concat_mask: Option<Tensor>,
}

impl Default for CondMeta {
    fn default() -> Self {
        CondMeta {
            pooled: None,
            area: None,
            strength: 1.0,
            set_area_to_bounds: false,
            mask: None,
            mask_strength: 1.0,
            start_percent: 0.0,
            end_percent: 1.0,
            size: None,
            guidance: None,
            guidance_disabled: false,
            concat_latent_image: None,
            concat_mask: None,
        }
    }
}

/// The size options `CLIPTextEncodeSDXL` / `CLIPTextEncodeSDXLRefiner` put in the dict.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SizeConditioning {
    /// SDXL base: original size, crop and target size.
    Sdxl(SdxlSize),
    /// SDXL refiner: size, crop and aesthetic score.
    Refiner(RefinerSize),
}

/// One `[tensor, dict]` pair.
#[derive(Clone, Debug)]
pub struct CondEntry {
    /// Cross-attention context `[B, tokens, dim]`.
    pub cond: Tensor,
    /// The options.
    pub meta: CondMeta,
}

/// A conditioning list.
#[derive(Clone, Debug, Default)]
pub struct Conditioning {
    /// The entries, in order.
    pub entries: Vec<CondEntry>,
}

impl Conditioning {
    /// ComfyUI's type name.
    pub const TYPE: &'static str = "CONDITIONING";

    /// A list of entries.
    pub fn new(entries: Vec<CondEntry>) -> Self {
        Conditioning { entries }
    }

    /// One entry with default options.
    pub fn single(cond: Tensor, meta: CondMeta) -> Self {
        Conditioning {
            entries: vec![CondEntry { cond, meta }],
        }
    }

    /// `node_helpers.conditioning_set_values`: a copy with `update` applied to every entry's
    /// options.
    pub fn map_meta(&self, update: impl Fn(&mut CondMeta)) -> Conditioning {
        let entries = self
            .entries
            .iter()
            .map(|entry| {
                let mut meta = entry.meta.clone();
                update(&mut meta);
                CondEntry {
                    cond: entry.cond.clone(),
                    meta,
                }
            })
            .collect();
        Conditioning { entries }
    }

    /// Wraps the list as a node value.
    pub fn into_value(self) -> Value {
        Value::object(Self::TYPE, self)
    }
}
