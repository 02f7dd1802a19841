//! AutoencoderKL, the VAE of SD1.x/SD2.x/SDXL (4 latent channels) and SD3/Flux (16), in LDM
//! naming, with ComfyUI's pixel conventions and tiling (`comfy/ldm/modules/diffusionmodules/
//! model.py`: `Encoder`, `Decoder`, `ResnetBlock`, `AttnBlock`, `Downsample`, `Upsample`;
//! `comfy/ldm/models/autoencoder.py`; `comfy/sd.py: VAE`).
//!
//! Key layout: `encoder.conv_in`, `encoder.down.N.block.M.{norm1,conv1,norm2,conv2,
//! nin_shortcut}`, `encoder.down.N.downsample.conv`, `encoder.mid.{block_1,attn_1,block_2}`
//! (attention `norm,q,k,v,proj_out` as 1×1 convs), `encoder.norm_out`, `encoder.conv_out`,
//! `quant_conv`, `post_quant_conv` (absent in 16-channel VAEs), and the mirror-image
//! `decoder.*` with `decoder.up.N.upsample.conv`.
//!
//! Encoding returns the mean of the latent distribution (ComfyUI's `DiagonalGaussianRegularizer`
//! takes `posterior.mode()`), unscaled: the latent format's scale and shift belong to the
//! diffusion model. Decoding returns ComfyUI IMAGE tensors `[B, H, W, 3]` in 0..1.

use candle_core::{DType, Tensor};

use crate::attention::{Attention, AttentionKernel, MemoryBudget, SplitRule};
use crate::error::{ModelError, Result};
use crate::layers::{Conv2d, GroupNorm};
use crate::tiled::{tiled_scale, TileGrid, TileScale};
use crate::weights::Weights;

const MODEL: &str = "vae";

/// AutoencoderKL architecture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaeConfig {
    /// Base width.
    pub ch: usize,
    /// Width multiplier per level.
    pub ch_mult: Vec<usize>,
    /// Res blocks per encoder level (decoder levels have one more).
    pub num_res_blocks: usize,
    /// Latent channels.
    pub z_channels: usize,
    /// Image channels.
    pub image_channels: usize,
    /// Whether `quant_conv` / `post_quant_conv` exist.
    pub quant_conv: bool,
    /// Whether the encoder's weights are present (decoder-only files cannot encode).
    pub has_encoder: bool,
}

impl VaeConfig {
    /// SD1.x/SD2.x/SDXL: CompVis `v1-inference.yaml` `ddconfig` (ch 128, [1,2,4,4], 2 blocks,
    /// z 4, quant convs).
    pub fn sd() -> Self {
        VaeConfig {
            ch: 128,
            ch_mult: vec![1, 2, 4, 4],
            num_res_blocks: 2,
            z_channels: 4,
            image_channels: 3,
            quant_conv: true,
            has_encoder: true,
        }
    }

    /// SD3/Flux: 16 latent channels, no quant convs
    /// (<https://huggingface.co/black-forest-labs/FLUX.1-dev/blob/main/vae/config.json>).
    pub fn flux() -> Self {
        VaeConfig {
            z_channels: 16,
            quant_conv: false,
            ..VaeConfig::sd()
        }
    }

    /// The architecture as the weights show it.
    pub fn from_weights(weights: &Weights) -> Result<Self> {
        let decoder = weights.pp("decoder");
        let levels = decoder.count_children("up");
        if levels == 0 {
            return Err(ModelError::Config {
                model: MODEL,
                reason: "no `decoder.up.N` weights".to_string(),
            });
        }
        let conv_out = conv_shape(&decoder.pp("conv_out"))?;
        let conv_in = conv_shape(&decoder.pp("conv_in"))?;
        let ch = conv_shape(&decoder.pp("up.0.block.0.conv1"))?[0];
        if ch == 0 {
            return Err(ModelError::Config {
                model: MODEL,
                reason: "zero base width".to_string(),
            });
        }
        let mut ch_mult = Vec::with_capacity(levels);
        for level in 0..levels {
            let width = conv_shape(&decoder.pp(format!("up.{level}.block.0.conv1")))?[0];
            if width % ch != 0 {
                return Err(ModelError::Config {
                    model: MODEL,
                    reason: format!("level {level} width {width} is not a multiple of {ch}"),
                });
            }
            ch_mult.push(width / ch);
        }
        let decoder_blocks = decoder.count_children("up.0.block");
        if decoder_blocks < 1 {
            return Err(ModelError::Config {
                model: MODEL,
                reason: "no decoder res blocks".to_string(),
            });
        }
        Ok(VaeConfig {
            ch,
            ch_mult,
            num_res_blocks: decoder_blocks - 1,
            z_channels: conv_in[1],
            image_channels: conv_out[0],
            quant_conv: weights.contains("post_quant_conv.weight"),
            has_encoder: weights.contains("encoder.conv_in.weight"),
        })
    }

    /// Pixels per latent along each axis (8 for four levels).
    pub fn downscale(&self) -> usize {
        1 << self.ch_mult.len().saturating_sub(1)
    }
}

fn conv_shape(weights: &Weights) -> Result<Vec<usize>> {
    let shape = weights.shape("weight")?;
    if shape.rank() != 4 {
        return Err(ModelError::WeightShape {
            name: weights.path("weight"),
            actual: shape.dims().to_vec(),
            expected: "a 4-D conv kernel".to_string(),
        });
    }
    Ok(shape.dims().to_vec())
}

/// ComfyUI `Normalize`: 32 groups, eps 1e-6 (statistics in f32).
fn normalize(weights: Weights) -> Result<GroupNorm> {
    GroupNorm::new(weights, 32, 1e-6)
}

/// `norm → silu → conv → norm → silu → conv`, plus a 1×1 shortcut when widths differ.
#[derive(Debug, Clone)]
struct ResnetBlock {
    norm1: GroupNorm,
    conv1: Conv2d,
    norm2: GroupNorm,
    conv2: Conv2d,
    nin_shortcut: Option<Conv2d>,
}

impl ResnetBlock {
    fn new(w: &Weights) -> Result<Self> {
        let nin_shortcut = if w.contains("nin_shortcut.weight") {
            Some(Conv2d::new(w.pp("nin_shortcut"), 0, 1)?)
        } else {
            None
        };
        Ok(ResnetBlock {
            norm1: normalize(w.pp("norm1"))?,
            conv1: Conv2d::new(w.pp("conv1"), 1, 1)?,
            norm2: normalize(w.pp("norm2"))?,
            conv2: Conv2d::new(w.pp("conv2"), 1, 1)?,
            nin_shortcut,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.conv1.forward(&self.norm1.forward_silu(x)?)?;
        let h = self.conv2.forward(&self.norm2.forward_silu(&h)?)?;
        let skip = match &self.nin_shortcut {
            Some(conv) => conv.forward(x)?,
            None => x.clone(),
        };
        Ok((skip + h)?)
    }
}

/// Single-head self-attention over all pixels, projections as 1×1 convs.
#[derive(Debug, Clone)]
struct AttnBlock {
    norm: GroupNorm,
    q: Conv2d,
    k: Conv2d,
    v: Conv2d,
    proj_out: Conv2d,
}

impl AttnBlock {
    fn new(w: &Weights) -> Result<Self> {
        Ok(AttnBlock {
            norm: normalize(w.pp("norm"))?,
            q: Conv2d::new(w.pp("q"), 0, 1)?,
            k: Conv2d::new(w.pp("k"), 0, 1)?,
            v: Conv2d::new(w.pp("v"), 0, 1)?,
            proj_out: Conv2d::new(w.pp("proj_out"), 0, 1)?,
        })
    }

    fn forward(&self, x: &Tensor, attention: &Attention) -> Result<Tensor> {
        let (b, c, h, w) = x.dims4()?;
        let normed = self.norm.forward(x)?;
        // `[B, C, H·W]` viewed as `[B, H·W, C]`: matmul reads the transposed layout in place.
        let tokens =
            |t: Tensor| -> Result<Tensor> { Ok(t.reshape((b, c, h * w))?.transpose(1, 2)?) };
        let q = tokens(self.q.forward(&normed)?)?;
        let k = tokens(self.k.forward(&normed)?)?;
        let v = tokens(self.v.forward(&normed)?)?;
        let out = attention.forward(&q, &k, &v, 1, None)?;
        let out = out.transpose(1, 2)?.reshape((b, c, h, w))?;
        Ok((x + self.proj_out.forward(&out)?)?)
    }
}

/// `block_1 → attn_1 → block_2`.
#[derive(Debug, Clone)]
struct MidBlock {
    block_1: ResnetBlock,
    attn_1: AttnBlock,
    block_2: ResnetBlock,
}

impl MidBlock {
    fn new(w: &Weights) -> Result<Self> {
        Ok(MidBlock {
            block_1: ResnetBlock::new(&w.pp("block_1"))?,
            attn_1: AttnBlock::new(&w.pp("attn_1"))?,
            block_2: ResnetBlock::new(&w.pp("block_2"))?,
        })
    }

    fn forward(&self, x: &Tensor, attention: &Attention) -> Result<Tensor> {
        let h = self.block_1.forward(x)?;
        let h = self.attn_1.forward(&h, attention)?;
        self.block_2.forward(&h)
    }
}

/// One encoder level: res blocks, then a stride-2 conv after zero padding right and bottom.
#[derive(Debug, Clone)]
struct DownLevel {
    blocks: Vec<ResnetBlock>,
    downsample: Option<Conv2d>,
}

/// One decoder level: res blocks, then nearest ×2 and a conv.
#[derive(Debug, Clone)]
struct UpLevel {
    blocks: Vec<ResnetBlock>,
    upsample: Option<Conv2d>,
}

/// Image → `2·z` moments.
#[derive(Debug, Clone)]
struct Encoder {
    conv_in: Conv2d,
    down: Vec<DownLevel>,
    mid: MidBlock,
    norm_out: GroupNorm,
    conv_out: Conv2d,
}

impl Encoder {
    fn new(w: &Weights, config: &VaeConfig) -> Result<Self> {
        let levels = config.ch_mult.len();
        let down = (0..levels)
            .map(|level| {
                let lw = w.pp("down").pp(level);
                Ok(DownLevel {
                    blocks: (0..config.num_res_blocks)
                        .map(|i| ResnetBlock::new(&lw.pp("block").pp(i)))
                        .collect::<Result<_>>()?,
                    downsample: if level + 1 != levels {
                        Some(Conv2d::new(lw.pp("downsample.conv"), 0, 2)?)
                    } else {
                        None
                    },
                })
            })
            .collect::<Result<_>>()?;
        Ok(Encoder {
            conv_in: Conv2d::new(w.pp("conv_in"), 1, 1)?,
            down,
            mid: MidBlock::new(&w.pp("mid"))?,
            norm_out: normalize(w.pp("norm_out"))?,
            conv_out: Conv2d::new(w.pp("conv_out"), 1, 1)?,
        })
    }

    fn forward(&self, x: &Tensor, attention: &Attention) -> Result<Tensor> {
        let mut h = self.conv_in.forward(x)?;
        for level in &self.down {
            for block in &level.blocks {
                h = block.forward(&h)?;
            }
            if let Some(conv) = &level.downsample {
                // torch has no asymmetric conv padding: LDM pads (0, 1, 0, 1) by hand.
                h = conv.forward(&h.pad_with_zeros(3, 0, 1)?.pad_with_zeros(2, 0, 1)?)?;
            }
        }
        let h = self.mid.forward(&h, attention)?;
        self.conv_out.forward(&self.norm_out.forward_silu(&h)?)
    }
}

/// `z` → image.
#[derive(Debug, Clone)]
struct Decoder {
    conv_in: Conv2d,
    mid: MidBlock,
    up: Vec<UpLevel>,
    norm_out: GroupNorm,
    conv_out: Conv2d,
}

impl Decoder {
    fn new(w: &Weights, config: &VaeConfig) -> Result<Self> {
        let up = (0..config.ch_mult.len())
            .map(|level| {
                let lw = w.pp("up").pp(level);
                Ok(UpLevel {
                    blocks: (0..=config.num_res_blocks)
                        .map(|i| ResnetBlock::new(&lw.pp("block").pp(i)))
                        .collect::<Result<_>>()?,
                    upsample: if level != 0 {
                        Some(Conv2d::new(lw.pp("upsample.conv"), 1, 1)?)
                    } else {
                        None
                    },
                })
            })
            .collect::<Result<_>>()?;
        Ok(Decoder {
            conv_in: Conv2d::new(w.pp("conv_in"), 1, 1)?,
            mid: MidBlock::new(&w.pp("mid"))?,
            up,
            norm_out: normalize(w.pp("norm_out"))?,
            conv_out: Conv2d::new(w.pp("conv_out"), 1, 1)?,
        })
    }

    fn forward(&self, z: &Tensor, attention: &Attention) -> Result<Tensor> {
        let h = self.conv_in.forward(z)?;
        let mut h = self.mid.forward(&h, attention)?;
        for level in self.up.iter().rev() {
            for block in &level.blocks {
                h = block.forward(&h)?;
            }
            if let Some(conv) = &level.upsample {
                let (_, _, height, width) = h.dims4()?;
                h = conv.forward(&h.upsample_nearest2d(height * 2, width * 2)?)?;
            }
        }
        self.conv_out.forward(&self.norm_out.forward_silu(&h)?)
    }
}

/// ComfyUI `VAE.memory_used_decode` per latent pixel (× 64 output pixels), in elements.
const DECODE_ELEMENTS_PER_LATENT_PIXEL: u64 = 2178 * 64;
/// ComfyUI `VAE.memory_used_encode` per image pixel, in elements.
const ENCODE_ELEMENTS_PER_PIXEL: u64 = 1767;

/// Tile sizes and overlap for tiled encoding and decoding, in the input's units (latent pixels
/// for decoding, image pixels for encoding), as ComfyUI's `VAE.decode_tiled`/`encode_tiled`
/// take them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tiling {
    /// Tile width.
    pub tile_x: usize,
    /// Tile height.
    pub tile_y: usize,
    /// Overlap.
    pub overlap: usize,
}

impl Tiling {
    /// ComfyUI's decode defaults (also its out-of-memory fallback): 64×64 latents, overlap 16.
    pub fn decode_default() -> Self {
        Tiling {
            tile_x: 64,
            tile_y: 64,
            overlap: 16,
        }
    }

    /// ComfyUI's encode defaults: 512×512 pixels, overlap 64.
    pub fn encode_default() -> Self {
        Tiling {
            tile_x: 512,
            tile_y: 512,
            overlap: 64,
        }
    }

    /// `VAEDecodeTiled`'s pixel `tile_size`/`overlap` in latent units: the overlap is clamped to
    /// a quarter tile, then both are divided by the VAE's compression.
    pub fn from_decode_node(tile_size: usize, overlap: usize, compression: usize) -> Self {
        let overlap = if tile_size < overlap.saturating_mul(4) {
            tile_size / 4
        } else {
            overlap
        };
        let compression = compression.max(1);
        Tiling {
            tile_x: tile_size / compression,
            tile_y: tile_size / compression,
            overlap: overlap / compression,
        }
    }

    fn grid(self, tile_x: usize, tile_y: usize) -> TileGrid {
        TileGrid {
            tile_x,
            tile_y,
            overlap: self.overlap,
        }
    }
}

/// An AutoencoderKL over loaded weights.
#[derive(Debug, Clone)]
pub struct AutoencoderKl {
    config: VaeConfig,
    encoder: Option<Encoder>,
    decoder: Decoder,
    quant_conv: Option<Conv2d>,
    post_quant_conv: Option<Conv2d>,
    weights: Weights,
    attention: Attention,
    budget: MemoryBudget,
}

impl AutoencoderKl {
    /// The VAE under `weights` (the component root) with architecture `config`. Attention is
    /// ComfyUI's split VAE attention until [`with_attention`](Self::with_attention) sets the
    /// plan's.
    pub fn new(weights: Weights, config: VaeConfig) -> Result<Self> {
        if config.ch_mult.is_empty() || config.num_res_blocks == 0 {
            return Err(ModelError::Config {
                model: MODEL,
                reason: "needs at least one level and one res block".to_string(),
            });
        }
        let encoder = if config.has_encoder {
            Some(Encoder::new(&weights.pp("encoder"), &config)?)
        } else {
            None
        };
        let decoder = Decoder::new(&weights.pp("decoder"), &config)?;
        let (quant_conv, post_quant_conv) = if config.quant_conv {
            let quant = if config.has_encoder {
                Some(Conv2d::new(weights.pp("quant_conv"), 0, 1)?)
            } else {
                None
            };
            (
                quant,
                Some(Conv2d::new(weights.pp("post_quant_conv"), 0, 1)?),
            )
        } else {
            (None, None)
        };
        Ok(AutoencoderKl {
            config,
            encoder,
            decoder,
            quant_conv,
            post_quant_conv,
            weights,
            attention: Attention::new(AttentionKernel::Split).with_split_rule(SplitRule::Vae),
            budget: MemoryBudget::Device,
        })
    }

    /// The same VAE with the plan's attention.
    pub fn with_attention(self, attention: Attention) -> Self {
        AutoencoderKl { attention, ..self }
    }

    /// The same VAE sizing its batches (and split attention) from `budget`.
    pub fn with_budget(self, budget: MemoryBudget) -> Self {
        AutoencoderKl {
            budget,
            attention: self.attention.with_budget(budget),
            ..self
        }
    }

    /// The architecture.
    pub fn config(&self) -> &VaeConfig {
        &self.config
    }

    /// The dtype the network computes in.
    pub fn dtype(&self) -> DType {
        self.weights.dtype()
    }

    /// Network input `[B, 3, H, W]` in -1..1 → latent mean `[B, z, H/8, W/8]` in the compute
    /// dtype (ComfyUI `first_stage_model.encode`).
    pub fn encode_raw(&self, pixels: &Tensor) -> Result<Tensor> {
        let encoder = self.encoder.as_ref().ok_or_else(|| ModelError::Config {
            model: MODEL,
            reason: "these VAE weights have no encoder".to_string(),
        })?;
        let (_, channels, _, _) = pixels
            .dims4()
            .map_err(|_| self.input_error("pixels", pixels))?;
        if channels != self.config.image_channels {
            return Err(self.input_error("pixels", pixels));
        }
        let x = pixels
            .to_device(self.weights.device())?
            .to_dtype(self.dtype())?;
        let moments = encoder.forward(&x, &self.attention)?;
        let moments = match &self.quant_conv {
            Some(conv) => conv.forward(&moments)?,
            None => moments,
        };
        Ok(moments.narrow(1, 0, self.config.z_channels)?)
    }

    /// Latent `[B, z, h, w]` → network output `[B, 3, 8h, 8w]` in about -1..1, in the compute
    /// dtype (ComfyUI `first_stage_model.decode`).
    pub fn decode_raw(&self, latent: &Tensor) -> Result<Tensor> {
        let (_, channels, _, _) = latent
            .dims4()
            .map_err(|_| self.input_error("latent", latent))?;
        if channels != self.config.z_channels {
            return Err(self.input_error("latent", latent));
        }
        let z = latent
            .to_device(self.weights.device())?
            .to_dtype(self.dtype())?;
        let z = match &self.post_quant_conv {
            Some(conv) => conv.forward(&z)?,
            None => z,
        };
        self.decoder.forward(&z, &self.attention)
    }

    fn input_error(&self, input: &'static str, t: &Tensor) -> ModelError {
        ModelError::Input {
            model: MODEL,
            input,
            problem: format!(
                "shape {:?} does not fit a VAE with {} latent and {} image channels",
                t.dims(),
                self.config.z_channels,
                self.config.image_channels
            ),
        }
    }

    /// How many samples fit in memory at once (ComfyUI's `batch_number`, at least 1).
    fn batch_size(&self, elements_per_sample: u64) -> usize {
        let bytes = elements_per_sample
            .saturating_mul(self.dtype().size_in_bytes() as u64)
            .max(1);
        let free = self.budget.free_bytes(self.weights.device());
        usize::try_from(free / bytes).unwrap_or(usize::MAX).max(1)
    }

    /// `VAEDecode`: latent `[B, z, h, w]` → IMAGE `[B, 8h, 8w, 3]` f32 in 0..1 on the CPU,
    /// in batches sized by free memory.
    pub fn decode(&self, latent: &Tensor) -> Result<Tensor> {
        let (batch, _, h, w) = latent
            .dims4()
            .map_err(|_| self.input_error("latent", latent))?;
        let per_sample = DECODE_ELEMENTS_PER_LATENT_PIXEL.saturating_mul((h * w) as u64);
        let step = self.batch_size(per_sample);
        let mut images = Vec::new();
        let mut start = 0;
        while start < batch {
            let len = step.min(batch - start);
            let raw = self.decode_raw(&latent.narrow(0, start, len)?)?;
            images.push(to_image(
                &raw.to_device(&candle_core::Device::Cpu)?
                    .to_dtype(DType::F32)?,
            )?);
            start += len;
        }
        Ok(Tensor::cat(&images, 0)?)
    }

    /// `VAEEncode`: IMAGE `[B, H, W, C]` in 0..1 (extra channels such as alpha dropped) →
    /// latent mean `[B, z, H/8, W/8]` f32 on the CPU. The image is first center-cropped to a
    /// multiple of 8, as ComfyUI does.
    pub fn encode(&self, image: &Tensor) -> Result<Tensor> {
        let pixels = self.image_to_pixels(image)?;
        let (batch, _, h, w) = pixels.dims4()?;
        let per_sample = ENCODE_ELEMENTS_PER_PIXEL.saturating_mul((h * w) as u64);
        let step = self.batch_size(per_sample);
        let mut latents = Vec::new();
        let mut start = 0;
        while start < batch {
            let len = step.min(batch - start);
            let input = ((pixels.narrow(0, start, len)? * 2.0)? - 1.0)?;
            latents.push(
                self.encode_raw(&input)?
                    .to_device(&candle_core::Device::Cpu)?
                    .to_dtype(DType::F32)?,
            );
            start += len;
        }
        Ok(Tensor::cat(&latents, 0)?)
    }

    /// `VAEDecodeTiled` (ComfyUI `VAE.decode_tiled_`): the average of three tilings
    /// (`tile_x/2 × 2·tile_y`, `2·tile_x × tile_y/2`, `tile_x × tile_y`), each feathered over
    /// `overlap`, in latent units.
    pub fn decode_tiled(&self, latent: &Tensor, tiling: Tiling) -> Result<Tensor> {
        latent
            .dims4()
            .map_err(|_| self.input_error("latent", latent))?;
        let latent = latent
            .to_device(&candle_core::Device::Cpu)?
            .to_dtype(DType::F32)?;
        let decode = |t: &Tensor| -> Result<Tensor> { self.decode_raw(t) };
        let scale = TileScale::Up(self.config.downscale());
        let channels = self.config.image_channels;
        let (x, y) = (tiling.tile_x, tiling.tile_y);
        let a = tiled_scale(&latent, &decode, tiling.grid(x / 2, y * 2), scale, channels)?;
        let b = tiled_scale(&latent, &decode, tiling.grid(x * 2, y / 2), scale, channels)?;
        let c = tiled_scale(&latent, &decode, tiling.grid(x, y), scale, channels)?;
        let mean = (((a + b)? + c)? / 3.0)?;
        to_image(&mean)
    }

    /// `VAEEncodeTiled` (ComfyUI `VAE.encode_tiled_`): the average of three tilings
    /// (`tile_x × tile_y`, `2·tile_x × tile_y/2`, `tile_x/2 × 2·tile_y`) in pixel units.
    pub fn encode_tiled(&self, image: &Tensor, tiling: Tiling) -> Result<Tensor> {
        let pixels = self.image_to_pixels(image)?;
        let encode = |t: &Tensor| -> Result<Tensor> {
            let input = ((t * 2.0)? - 1.0)?;
            self.encode_raw(&input)
        };
        let scale = TileScale::Down(self.config.downscale());
        let channels = self.config.z_channels;
        let (x, y) = (tiling.tile_x, tiling.tile_y);
        let a = tiled_scale(&pixels, &encode, tiling.grid(x, y), scale, channels)?;
        let b = tiled_scale(&pixels, &encode, tiling.grid(x * 2, y / 2), scale, channels)?;
        let c = tiled_scale(&pixels, &encode, tiling.grid(x / 2, y * 2), scale, channels)?;
        Ok((((a + b)? + c)? / 3.0)?)
    }

    /// IMAGE `[B, H, W, C]` → `[B, 3, H', W']` f32 on the CPU, RGB only, center-cropped to a
    /// multiple of the downscale (ComfyUI `vae_encode_crop_pixels` + `movedim`).
    fn image_to_pixels(&self, image: &Tensor) -> Result<Tensor> {
        let (_, h, w, c) = image.dims4().map_err(|_| ModelError::Input {
            model: MODEL,
            input: "image",
            problem: format!("must be [B, H, W, C], got {:?}", image.dims()),
        })?;
        let ratio = self.config.downscale();
        let wanted = self.config.image_channels;
        if c < wanted || h < ratio || w < ratio {
            return Err(ModelError::Input {
                model: MODEL,
                input: "image",
                problem: format!(
                    "shape {:?} needs {wanted} channels and at least {ratio}×{ratio} pixels",
                    image.dims()
                ),
            });
        }
        let crop = |size: usize| ((size % ratio) / 2, (size / ratio) * ratio);
        let (y0, hh) = crop(h);
        let (x0, ww) = crop(w);
        Ok(image
            .to_device(&candle_core::Device::Cpu)?
            .to_dtype(DType::F32)?
            .narrow(3, 0, wanted)?
            .narrow(1, y0, hh)?
            .narrow(2, x0, ww)?
            .permute((0, 3, 1, 2))?
            .contiguous()?)
    }
}

/// ComfyUI `process_output` and `movedim(1, -1)`: `clamp((x + 1) / 2, 0, 1)` as `[B, H, W, C]`.
fn to_image(x: &Tensor) -> Result<Tensor> {
    Ok(((x + 1.0)? / 2.0)?
        .clamp(0f32, 1f32)?
        .permute((0, 2, 3, 1))?
        .contiguous()?)
}
