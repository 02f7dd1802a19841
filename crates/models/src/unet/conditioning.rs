//! What a UNet is conditioned on besides the text context: the sinusoidal timestep embedding
//! (`timestep_embedding` in ComfyUI's `diffusionmodules/util.py`) and SDXL's ADM vector, pooled
//! text plus Fourier embeddings of image size and crop (`SDXL.encode_adm` and
//! `SDXLRefiner.encode_adm` in `comfy/model_base.py`).

use candle_core::{DType, Device, Tensor};

use crate::error::{ModelError, Result};

/// Width of each size/crop/score embedding SDXL concatenates into its ADM vector.
pub const SDXL_SIZE_EMBEDDING_WIDTH: usize = 256;

/// Sinusoidal embeddings `[N, dim]` (f32) of `timesteps`, `cos` half first, then `sin`, with
/// frequencies `exp(−ln(10000)·i/half)` — ComfyUI's `timestep_embedding(t, dim)` (no flip, max
/// period 10000), evaluated in f32 as torch does. An odd `dim` gets a zero last column.
pub fn timestep_embedding(timesteps: &[f32], dim: usize, device: &Device) -> Result<Tensor> {
    let half = dim / 2;
    // torch: `-math.log(max_period) * arange(half, float32) / half`, all in f32.
    let log_period = -(10_000f64.ln()) as f32;
    let frequencies: Vec<f32> = (0..half)
        .map(|i| (log_period * i as f32 / half as f32).exp())
        .collect();
    let mut values = Vec::with_capacity(timesteps.len() * dim);
    for &t in timesteps {
        values.extend(frequencies.iter().map(|f| (t * f).cos()));
        values.extend(frequencies.iter().map(|f| (t * f).sin()));
        if dim % 2 == 1 {
            values.push(0.0);
        }
    }
    Ok(Tensor::from_vec(values, (timesteps.len(), dim), device)?)
}

/// Whether a conditioning is the positive or the negative prompt (ComfyUI's `prompt_type`),
/// which picks the refiner's default aesthetic score.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromptKind {
    /// The positive prompt.
    Positive,
    /// The negative prompt.
    Negative,
}

/// The size conditioning of SDXL base (`CLIPTextEncodeSDXL`'s inputs), in pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SdxlSize {
    /// Original image width.
    pub width: f64,
    /// Original image height.
    pub height: f64,
    /// Crop offset from the left.
    pub crop_w: f64,
    /// Crop offset from the top.
    pub crop_h: f64,
    /// Target width.
    pub target_width: f64,
    /// Target height.
    pub target_height: f64,
}

impl SdxlSize {
    /// ComfyUI's defaults when a conditioning sets none: the latent's size × 8, no crop, target
    /// = size (`encode_model_conds` then `encode_adm`).
    pub fn for_latent(latent_height: usize, latent_width: usize) -> Self {
        let (height, width) = ((latent_height * 8) as f64, (latent_width * 8) as f64);
        SdxlSize {
            width,
            height,
            crop_w: 0.0,
            crop_h: 0.0,
            target_width: width,
            target_height: height,
        }
    }
}

/// The size and score conditioning of the SDXL refiner (`CLIPTextEncodeSDXLRefiner`), in pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RefinerSize {
    /// Image width.
    pub width: f64,
    /// Image height.
    pub height: f64,
    /// Crop offset from the left.
    pub crop_w: f64,
    /// Crop offset from the top.
    pub crop_h: f64,
    /// Aesthetic score.
    pub aesthetic_score: f64,
}

impl RefinerSize {
    /// ComfyUI's defaults: the latent's size × 8, no crop, aesthetic score 6 for the positive
    /// prompt and 2.5 for the negative one.
    pub fn for_latent(latent_height: usize, latent_width: usize, prompt: PromptKind) -> Self {
        RefinerSize {
            width: (latent_width * 8) as f64,
            height: (latent_height * 8) as f64,
            crop_w: 0.0,
            crop_h: 0.0,
            aesthetic_score: match prompt {
                PromptKind::Positive => 6.0,
                PromptKind::Negative => 2.5,
            },
        }
    }
}

/// SDXL base's ADM vector `[B, P + 6·256]` (f32): the pooled CLIP-G output `[B, P]` followed by
/// the embeddings of height, width, crop_h, crop_w, target_height, target_width.
pub fn sdxl_adm(pooled: &Tensor, size: &SdxlSize) -> Result<Tensor> {
    adm(
        pooled,
        &[
            size.height,
            size.width,
            size.crop_h,
            size.crop_w,
            size.target_height,
            size.target_width,
        ],
    )
}

/// The SDXL refiner's ADM vector `[B, P + 5·256]` (f32): pooled CLIP-G, then the embeddings of
/// height, width, crop_h, crop_w, aesthetic score.
pub fn sdxl_refiner_adm(pooled: &Tensor, size: &RefinerSize) -> Result<Tensor> {
    adm(
        pooled,
        &[
            size.height,
            size.width,
            size.crop_h,
            size.crop_w,
            size.aesthetic_score,
        ],
    )
}

fn adm(pooled: &Tensor, values: &[f64]) -> Result<Tensor> {
    let batch = match pooled.dims() {
        [batch, _] => *batch,
        dims => {
            return Err(ModelError::Input {
                model: "SDXL ADM",
                input: "pooled",
                problem: format!("has shape {dims:?}, expected [batch, width]"),
            })
        }
    };
    // `torch.Tensor([value])` is f32.
    let values: Vec<f32> = values.iter().map(|&v| v as f32).collect();
    let embedded = timestep_embedding(&values, SDXL_SIZE_EMBEDDING_WIDTH, pooled.device())?
        .flatten_all()?
        .unsqueeze(0)?
        .repeat((batch, 1))?;
    Ok(Tensor::cat(&[&pooled.to_dtype(DType::F32)?, &embedded], 1)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedding_puts_cos_before_sin() {
        let embedded = timestep_embedding(&[0.0, 1.0], 4, &Device::Cpu).unwrap();
        let rows = embedded.to_vec2::<f32>().unwrap();
        assert_eq!(rows[0], vec![1.0, 1.0, 0.0, 0.0]);
        // half = 2: frequencies 1 and 10000^-0.5 = 0.01.
        let expected = [1f32.cos(), 0.01f32.cos(), 1f32.sin(), 0.01f32.sin()];
        for (got, want) in rows[1].iter().zip(expected) {
            assert!((got - want).abs() < 1e-6, "{got} vs {want}");
        }
    }

    #[test]
    fn odd_width_gets_a_zero_column() {
        let embedded = timestep_embedding(&[3.0], 5, &Device::Cpu).unwrap();
        assert_eq!(embedded.dims(), &[1, 5]);
        assert_eq!(embedded.to_vec2::<f32>().unwrap()[0][4], 0.0);
    }

    #[test]
    fn adm_widths_match_sdxl_and_refiner() {
        let pooled = Tensor::ones((2, 1280), DType::F32, &Device::Cpu).unwrap();
        let base = sdxl_adm(&pooled, &SdxlSize::for_latent(128, 128)).unwrap();
        assert_eq!(base.dims(), &[2, 2816]);
        let refiner = RefinerSize::for_latent(128, 128, PromptKind::Negative);
        assert_eq!(refiner.aesthetic_score, 2.5);
        let refiner = sdxl_refiner_adm(&pooled, &refiner).unwrap();
        assert_eq!(refiner.dims(), &[2, 2560]);
        // The first size embedding is the height's: cos(1024·1) at column 1280.
        let value = refiner.get(1).unwrap().get(1280).unwrap();
        let value = value.to_scalar::<f32>().unwrap();
        assert!((value - 1024f32.cos()).abs() < 1e-5);
    }
}
