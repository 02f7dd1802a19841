//! [`TaesdDecoder`]: the decoder half of TAESD, the tiny autoencoder ComfyUI uses for better
//! previews (`comfy/taesd/taesd.py`), over the files of `models/vae_approx`
//! (`taesd_decoder.*`, `taesdxl_decoder.*`, `taesd3_decoder.*`, `taef1_decoder.*`).
//!
//! The files are the state dict of one `nn.Sequential`, so tensor names are layer indices:
//!
//! | index | layer |
//! |---|---|
//! | 0 | `Clamp`: `tanh(x / 3) · 3` (no weights) |
//! | 1, 2 | 3×3 conv latent → width, ReLU |
//! | 3–5, 8–10, 13–15 | `Block`s: `conv.0`, `conv.2`, `conv.4` 3×3 convs (ReLU between), residual, ReLU |
//! | 6, 11, 16 | nearest 2× upsampling (no weights) |
//! | 7, 12, 17 | 3×3 conv width → width without bias |
//! | 18 | `Block` |
//! | 19 | 3×3 conv width → RGB |
//!
//! The real files have width 64; the width is read from layer 1, so smaller test files work.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use kiln_detect::{Architecture, ComponentKind, DetectError};
use kiln_models::{Conv2d, ModelError, Weights};
use kiln_runtime::{RuntimeError, WeightStore};
use kiln_weights::WeightFile;

use crate::error::{NodesError, TensorContext};

/// The layer index of the first convolution.
const INPUT_CONV: usize = 1;
/// Each upsampling stage: its blocks, then (after the upsampling) its convolution.
const UP_STAGES: [([usize; 3], usize); 3] = [([3, 4, 5], 7), ([8, 9, 10], 12), ([13, 14, 15], 17)];
/// The block after the last upsampling.
const LAST_BLOCK: usize = 18;
/// The convolution to RGB.
const OUTPUT_CONV: usize = 19;
/// `Clamp`'s magnitude: latents are squashed into `±3` before decoding.
const LATENT_MAGNITUDE: f64 = 3.0;

/// The `models/vae_approx` file-name prefix of a family's TAESD decoder
/// (`latent_format.taesd_decoder_name`), `None` for families without one.
pub fn taesd_decoder_name(architecture: Architecture) -> Option<&'static str> {
    match architecture {
        Architecture::Sd1 | Architecture::Sd2 => Some("taesd_decoder"),
        Architecture::Sdxl | Architecture::SdxlRefiner => Some("taesdxl_decoder"),
        Architecture::Sd3 => Some("taesd3_decoder"),
        Architecture::Flux => Some("taef1_decoder"),
        _ => None,
    }
}

fn model_error(context: &str) -> impl Fn(ModelError) -> NodesError + '_ {
    move |source| NodesError::Model {
        context: context.to_owned(),
        source: Box::new(source),
    }
}

/// A 3×3 convolution with padding 1 whose kernel must be `[out, in, 3, 3]`.
fn conv3x3(weights: Weights, out: usize, input: usize) -> Result<Conv2d, NodesError> {
    let shape = weights
        .shape("weight")
        .map_err(model_error("reading the TAESD decoder"))?;
    if shape.dims() != [out, input, 3, 3] {
        return Err(NodesError::Model {
            context: "reading the TAESD decoder".to_owned(),
            source: Box::new(ModelError::WeightShape {
                name: weights.path("weight"),
                actual: shape.dims().to_vec(),
                expected: format!("[{out}, {input}, 3, 3]"),
            }),
        });
    }
    Conv2d::new(weights, 1, 1).map_err(model_error("reading the TAESD decoder"))
}

/// One convolution of the decoder's forward pass.
fn conv(layer: &Conv2d, x: &Tensor) -> Result<Tensor, NodesError> {
    layer.forward(x).map_err(model_error("decoding with TAESD"))
}

fn relu(x: &Tensor) -> Result<Tensor, NodesError> {
    x.relu().context("TAESD activation")
}

/// `taesd.Block(width, width)`: three convolutions with a residual connection.
#[derive(Debug, Clone)]
struct Block {
    convs: [Conv2d; 3],
}

impl Block {
    fn new(weights: &Weights, width: usize) -> Result<Self, NodesError> {
        let conv = weights.pp("conv");
        Ok(Block {
            convs: [
                conv3x3(conv.pp(0), width, width)?,
                conv3x3(conv.pp(2), width, width)?,
                conv3x3(conv.pp(4), width, width)?,
            ],
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor, NodesError> {
        let [first, second, third] = &self.convs;
        let y = relu(&conv(first, x)?)?;
        let y = relu(&conv(second, &y)?)?;
        let y = conv(third, &y)?;
        // The skip is `nn.Identity` because every decoder block keeps its width.
        (y + x)
            .and_then(|sum| sum.relu())
            .context("TAESD block residual")
    }
}

/// Blocks, nearest 2× upsampling, then a convolution.
#[derive(Debug, Clone)]
struct UpStage {
    blocks: Vec<Block>,
    conv: Conv2d,
}

/// The TAESD decoder: a sampler-space latent `[B, C, H, W]` → an image `[B, 3, 8H, 8W]` in
/// `-1..1` (`TAESD.decode` with ComfyUI's preview defaults `vae_scale = 1`, `vae_shift = 0`).
#[derive(Debug, Clone)]
pub struct TaesdDecoder {
    latent_channels: usize,
    input: Conv2d,
    stages: Vec<UpStage>,
    last_block: Block,
    output: Conv2d,
    device: Device,
}

impl TaesdDecoder {
    /// Builds the decoder over `weights` (named as in the files: `1.weight`, `3.conv.0.weight`,
    /// ...), checking every kernel's shape. The latent channels and width come from layer 1.
    pub fn from_weights(weights: &Weights) -> Result<Self, NodesError> {
        let input_weights = weights.pp(INPUT_CONV);
        let input_shape = input_weights
            .shape("weight")
            .map_err(model_error("reading the TAESD decoder"))?;
        let (width, latent_channels) = match input_shape.dims() {
            [width, channels, 3, 3] if *width > 0 && *channels > 0 => (*width, *channels),
            other => {
                return Err(NodesError::Model {
                    context: "reading the TAESD decoder".to_owned(),
                    source: Box::new(ModelError::WeightShape {
                        name: input_weights.path("weight"),
                        actual: other.to_vec(),
                        expected: "[width, latent_channels, 3, 3]".to_owned(),
                    }),
                })
            }
        };
        let input = conv3x3(input_weights, width, latent_channels)?;
        let stages = UP_STAGES
            .iter()
            .map(|(blocks, conv)| {
                Ok(UpStage {
                    blocks: blocks
                        .iter()
                        .map(|&index| Block::new(&weights.pp(index), width))
                        .collect::<Result<_, NodesError>>()?,
                    conv: conv3x3(weights.pp(conv), width, width)?,
                })
            })
            .collect::<Result<_, NodesError>>()?;
        Ok(TaesdDecoder {
            latent_channels,
            input,
            stages,
            last_block: Block::new(&weights.pp(LAST_BLOCK), width)?,
            output: conv3x3(weights.pp(OUTPUT_CONV), 3, width)?,
            device: weights.device().clone(),
        })
    }

    /// Loads a decoder file (safetensors or a PyTorch state dict) onto `device`, in f32.
    pub fn load(path: &Path, device: &Device) -> Result<Self, NodesError> {
        let file = WeightFile::open(path).map_err(|source| NodesError::Detect {
            path: path.to_path_buf(),
            source: Box::new(DetectError::Weights {
                path: path.to_path_buf(),
                source,
            }),
        })?;
        let runtime_error = |source| NodesError::Runtime {
            path: path.to_path_buf(),
            source: Box::new(source),
        };
        let mut tensors = BTreeMap::new();
        for info in file.tensors() {
            let tensor = file
                .load(&info.name, DType::F32, &Device::Cpu)
                .map_err(|source| {
                    runtime_error(RuntimeError::Weights {
                        tensor: info.name.clone(),
                        source,
                    })
                })?;
            tensors.insert(info.name.clone(), tensor);
        }
        let store = WeightStore::from_tensors(ComponentKind::Vae, DType::F32, device, tensors)
            .map_err(runtime_error)?;
        TaesdDecoder::from_weights(&Weights::new(Arc::new(store)))
    }

    /// Latent channels the decoder takes (4 for SD/SDXL, 16 for SD3/Flux).
    pub fn latent_channels(&self) -> usize {
        self.latent_channels
    }

    /// Decodes `latent` `[B, C, H, W]` to `[B, 3, 8H, 8W]` in `-1..1`, on the decoder's device.
    pub fn decode(&self, latent: &Tensor) -> Result<Tensor, NodesError> {
        let channels = match latent.dims() {
            [_, channels, _, _] => *channels,
            _ => {
                return Err(NodesError::input(
                    "x0",
                    "TAESD decodes [B, C, H, W] latents",
                ))
            }
        };
        if channels != self.latent_channels {
            return Err(NodesError::input(
                "x0",
                format!(
                    "the TAESD decoder takes {} latent channels, got {channels}",
                    self.latent_channels
                ),
            ));
        }
        let x = latent
            .to_device(&self.device)
            .and_then(|x| x.to_dtype(DType::F32))
            .context("placing the latent for TAESD")?;
        let decoded = self.forward(&x)?;
        // `TAESD.decode`: the decoder's 0..1 output moved to -1..1.
        decoded
            .affine(2.0, -1.0)
            .context("scaling the TAESD output")
    }

    fn forward(&self, latent: &Tensor) -> Result<Tensor, NodesError> {
        let clamped = (latent / LATENT_MAGNITUDE)
            .and_then(|x| x.tanh())
            .and_then(|x| x * LATENT_MAGNITUDE)
            .context("TAESD input clamp")?;
        let mut x = relu(&conv(&self.input, &clamped)?)?;
        for stage in &self.stages {
            for block in &stage.blocks {
                x = block.forward(&x)?;
            }
            let (_, _, height, width) = x.dims4().context("TAESD upsampling")?;
            x = x
                .upsample_nearest2d(height * 2, width * 2)
                .context("TAESD upsampling")?;
            x = conv(&stage.conv, &x)?;
        }
        x = self.last_block.forward(&x)?;
        conv(&self.output, &x)
    }
}
