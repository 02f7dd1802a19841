//! `DoubleStreamBlock` (ComfyUI `comfy/ldm/flux/layers.py`): image and text tokens keep their
//! own weights (modulation, qkv, MLP) but attend jointly over `[text; image]`.

use candle_core::Tensor;

use super::config::FluxConfig;
use super::expect_shape;
use super::modulation::Modulation;
use super::rope::Rope;
use super::self_attention::{rope_attention, SelfAttention};
use crate::attention::Attention;
use crate::error::Result;
use crate::layers::{LayerNorm, Linear};
use crate::weights::Weights;

/// Epsilon of every Flux layer norm (all without affine parameters).
pub(crate) const LAYER_NORM_EPS: f64 = 1e-6;

/// `Linear → GELU(tanh) → Linear` (`img_mlp`, `txt_mlp`; Sequential indices 0 and 2).
#[derive(Debug, Clone)]
pub(crate) struct Mlp {
    fc1: Linear,
    fc2: Linear,
}

impl Mlp {
    fn new(weights: &Weights, config: &FluxConfig) -> Result<Self> {
        let (hidden, inner) = (config.hidden_size, config.mlp_hidden);
        expect_shape(&weights.pp("0"), "weight", &[inner, hidden])?;
        expect_shape(&weights.pp("2"), "weight", &[hidden, inner])?;
        Ok(Mlp {
            fc1: Linear::new(weights.pp("0"))?,
            fc2: Linear::new(weights.pp("2"))?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.fc2.forward(&self.fc1.forward(x)?.gelu()?)
    }
}

/// One stream of a double block: its modulation, attention and MLP, and its two
/// parameterless layer norms.
#[derive(Debug, Clone)]
struct Stream {
    modulation: Modulation,
    norm1: LayerNorm,
    attention: SelfAttention,
    norm2: LayerNorm,
    mlp: Mlp,
}

impl Stream {
    /// `{stream}_mod`, `{stream}_norm1`, `{stream}_attn`, `{stream}_norm2`, `{stream}_mlp` under
    /// `weights`.
    fn new(weights: &Weights, stream: &str, config: &FluxConfig) -> Result<Self> {
        let hidden = config.hidden_size;
        Ok(Stream {
            modulation: Modulation::new(&weights.pp(format!("{stream}_mod")), 2, hidden)?,
            norm1: LayerNorm::new(weights.pp(format!("{stream}_norm1")), LAYER_NORM_EPS)?,
            norm2: LayerNorm::new(weights.pp(format!("{stream}_norm2")), LAYER_NORM_EPS)?,
            attention: SelfAttention::new(
                &weights.pp(format!("{stream}_attn")),
                config.hidden_size,
                config.num_heads,
            )?,
            mlp: Mlp::new(&weights.pp(format!("{stream}_mlp")), config)?,
        })
    }
}

/// `double_blocks.N`.
#[derive(Debug, Clone)]
pub(crate) struct DoubleStreamBlock {
    img: Stream,
    txt: Stream,
}

impl DoubleStreamBlock {
    /// The block under `weights` (`double_blocks.N`).
    pub(crate) fn new(weights: &Weights, config: &FluxConfig) -> Result<Self> {
        Ok(DoubleStreamBlock {
            img: Stream::new(weights, "img", config)?,
            txt: Stream::new(weights, "txt", config)?,
        })
    }

    /// Updated `(img, txt)` for `img` `[B, Li, hidden]`, `txt` `[B, Lt, hidden]`.
    pub(crate) fn forward(
        &self,
        img: &Tensor,
        txt: &Tensor,
        vec: &Tensor,
        rope: &Rope,
        attention: &Attention,
    ) -> Result<(Tensor, Tensor)> {
        let (img_mod1, img_mod2) = self.img.modulation.pair(vec)?;
        let (txt_mod1, txt_mod2) = self.txt.modulation.pair(vec)?;

        let img_modulated = img_mod1.modulate(&self.img.norm1.forward(img)?)?;
        let (img_q, img_k, img_v) = self.img.attention.qkv(&img_modulated)?;
        let txt_modulated = txt_mod1.modulate(&self.txt.norm1.forward(txt)?)?;
        let (txt_q, txt_k, txt_v) = self.txt.attention.qkv(&txt_modulated)?;

        let joint = |t: &Tensor, i: &Tensor| Tensor::cat(&[t, i], 2);
        let attended = rope_attention(
            &joint(&txt_q, &img_q)?,
            &joint(&txt_k, &img_k)?,
            &joint(&txt_v, &img_v)?,
            rope,
            attention,
        )?;
        let text_tokens = txt.dim(1)?;
        let txt_attn = attended.narrow(1, 0, text_tokens)?;
        let img_attn = attended.narrow(1, text_tokens, img.dim(1)?)?;

        let img = img_mod1.gated_add(img, &self.img.attention.proj(&img_attn)?)?;
        let img_mlp = self
            .img
            .mlp
            .forward(&img_mod2.modulate(&self.img.norm2.forward(&img)?)?)?;
        let img = img_mod2.gated_add(&img, &img_mlp)?;

        let txt = txt_mod1.gated_add(txt, &self.txt.attention.proj(&txt_attn)?)?;
        let txt_mlp = self
            .txt
            .mlp
            .forward(&txt_mod2.modulate(&self.txt.norm2.forward(&txt)?)?)?;
        let txt = txt_mod2.gated_add(&txt, &txt_mlp)?;
        Ok((img, clamp_half(&txt)?))
    }
}

/// ComfyUI's `nan_to_num(x, nan=0, posinf=65504, neginf=-65504)` for f16 activations, which
/// overflow in Flux's later blocks; other dtypes pass through.
pub(crate) fn clamp_half(x: &Tensor) -> Result<Tensor> {
    if x.dtype() != candle_core::DType::F16 {
        return Ok(x.clone());
    }
    // NaN fails every comparison, so `x == x` is false exactly there.
    let finite_or_inf = x.eq(x)?;
    let zeros = x.zeros_like()?;
    let cleaned = finite_or_inf.where_cond(x, &zeros)?;
    Ok(cleaned.clamp(-65504f32, 65504f32)?)
}
