//! What detection reports: architecture, variant, prediction type, layout and the components a
//! checkpoint holds, each with its parameter count, storage-dtype histogram and key map.

use std::collections::BTreeMap;
use std::fmt;

use kiln_weights::StorageDType;
use serde::Serialize;

/// A model family Kiln recognises. Serialised with the names `kiln inspect --json` promises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Architecture {
    /// Stable Diffusion 1.x UNet (+ CLIP-L, 4-channel VAE).
    Sd1,
    /// Stable Diffusion 2.x UNet (+ OpenCLIP-H, 4-channel VAE).
    Sd2,
    /// SDXL base UNet (+ CLIP-L and OpenCLIP-G, 4-channel VAE).
    Sdxl,
    /// SDXL refiner UNet (+ OpenCLIP-G, 4-channel VAE).
    SdxlRefiner,
    /// SD3 / SD3.5 MMDiT (+ CLIP-L, CLIP-G, T5-XXL, 16-channel VAE).
    Sd3,
    /// Flux.1 dev / schnell / fill (+ CLIP-L, T5-XXL, 16-channel VAE).
    Flux,
    /// A standalone CLIP ViT-L/14 text encoder.
    ClipL,
    /// A standalone OpenCLIP ViT-bigG/14 text encoder.
    ClipG,
    /// A standalone OpenCLIP ViT-H/14 text encoder.
    #[serde(rename = "openclip_h")]
    OpenClipH,
    /// A standalone T5 v1.1 XXL encoder.
    T5xxl,
    /// A standalone AutoencoderKL (4- or 16-channel latents).
    Vae,
}

impl Architecture {
    /// The stable lower-case name (`sd1`, `sdxl_refiner`, `openclip_h`, …).
    pub fn name(self) -> &'static str {
        match self {
            Self::Sd1 => "sd1",
            Self::Sd2 => "sd2",
            Self::Sdxl => "sdxl",
            Self::SdxlRefiner => "sdxl_refiner",
            Self::Sd3 => "sd3",
            Self::Flux => "flux",
            Self::ClipL => "clip_l",
            Self::ClipG => "clip_g",
            Self::OpenClipH => "openclip_h",
            Self::T5xxl => "t5xxl",
            Self::Vae => "vae",
        }
    }
}

impl fmt::Display for Architecture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What the diffusion model predicts, which decides how samplers use its output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Prediction {
    /// Noise (epsilon) prediction: SD1, SD2-base, SDXL.
    Eps,
    /// Velocity prediction: SD2 768-v and other v-models.
    V,
    /// Rectified-flow velocity (ComfyUI's CONST sampling): SD3, Flux.
    Flow,
}

/// One part of a model that the planner places on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ComponentKind {
    /// UNet, MMDiT or Flux transformer.
    DiffusionModel,
    /// CLIP ViT-L/14 text encoder.
    ClipL,
    /// OpenCLIP ViT-bigG/14 text encoder.
    ClipG,
    /// OpenCLIP ViT-H/14 text encoder.
    #[serde(rename = "openclip_h")]
    OpenClipH,
    /// T5 v1.1 XXL encoder.
    T5xxl,
    /// AutoencoderKL.
    Vae,
}

impl ComponentKind {
    /// The stable lower-case name, also the key under `plan` in `kiln doctor --json`.
    pub fn name(self) -> &'static str {
        match self {
            Self::DiffusionModel => "diffusion_model",
            Self::ClipL => "clip_l",
            Self::ClipG => "clip_g",
            Self::OpenClipH => "openclip_h",
            Self::T5xxl => "t5xxl",
            Self::Vae => "vae",
        }
    }

    /// True for the text encoders.
    pub fn is_text_encoder(self) -> bool {
        matches!(
            self,
            Self::ClipL | Self::ClipG | Self::OpenClipH | Self::T5xxl
        )
    }
}

impl fmt::Display for ComponentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The key layout a component was found in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    /// CompVis/LDM single-file naming (`model.diffusion_model.`, `first_stage_model.`, `cond_stage_model.`).
    Ldm,
    /// Stability generative-models naming (SDXL: `conditioner.embedders.N.`).
    Sgm,
    /// Black Forest Labs naming (Flux: `double_blocks.`, `single_blocks.`).
    Bfl,
    /// Stability's SD3 naming (`joint_blocks.`).
    Sai,
    /// Hugging Face diffusers naming (`down_blocks.`, `transformer_blocks.`).
    Diffusers,
    /// open_clip naming (`transformer.resblocks.N.attn.in_proj_weight`).
    OpenClip,
    /// Hugging Face transformers naming (`text_model.encoder.layers.`, `encoder.block.`).
    Transformers,
    /// llama.cpp's GGUF naming (`enc.blk.N.attn_q`, `token_embd`): T5 encoders converted by
    /// llama.cpp, as city96's `t5-v1_1-xxl-encoder-gguf`.
    LlamaCpp,
}

/// One stored tensor: which file of the checkpoint, and its name there.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct TensorRef {
    /// Index into the checkpoint's file list.
    pub file: usize,
    /// The tensor name inside that file.
    pub name: String,
}

/// Where an internal tensor name comes from.
///
/// Most internal tensors are one stored tensor, possibly reshaped (`transform`). Diffusers splits
/// some fused weights into parts (Flux's and SD3's `to_q`/`to_k`/`to_v`, Flux's `proj_mlp`); the
/// internal tensor is then [`KeyTransform::ConcatRows`]: `name` followed by every tensor in
/// `concat`, joined along dimension 0 in that order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeySource {
    /// Index into the checkpoint's file list.
    pub file: usize,
    /// The tensor name inside that file (the first part for [`KeyTransform::ConcatRows`]).
    pub name: String,
    /// How the stored tensor becomes the internal one.
    pub transform: KeyTransform,
    /// With [`KeyTransform::ConcatRows`]: the tensors that follow `name` along dimension 0, in
    /// order. Empty for every other transform.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub concat: Vec<TensorRef>,
}

impl KeySource {
    /// A stored tensor used through `transform`.
    pub fn new(file: usize, name: impl Into<String>, transform: KeyTransform) -> Self {
        Self {
            file,
            name: name.into(),
            transform,
            concat: Vec::new(),
        }
    }

    /// A stored tensor used as it is.
    pub fn identity(file: usize, name: impl Into<String>) -> Self {
        Self::new(file, name, KeyTransform::Identity)
    }

    /// `first` followed by `rest`, concatenated along dimension 0.
    pub fn concat_rows(first: TensorRef, rest: Vec<TensorRef>) -> Self {
        Self {
            file: first.file,
            name: first.name,
            transform: KeyTransform::ConcatRows,
            concat: rest,
        }
    }

    /// Every stored tensor this internal tensor is read from, in order.
    pub fn tensors(&self) -> impl Iterator<Item = (usize, &str)> {
        std::iter::once((self.file, self.name.as_str())).chain(
            self.concat
                .iter()
                .map(|part| (part.file, part.name.as_str())),
        )
    }
}

/// A shape change between a layout and the internal naming. Most keys need none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyTransform {
    /// The tensor is used as stored.
    Identity,
    /// Rows `[part*n/parts, (part+1)*n/parts)` of dimension 0 (open_clip's fused q/k/v).
    SliceRows {
        /// Which part (0-based).
        part: usize,
        /// Into how many equal parts dimension 0 is cut.
        parts: usize,
    },
    /// A `[out, in]` linear weight used as a `[out, in, 1, 1]` conv weight (diffusers VAE attention).
    LinearToConv1x1,
    /// The matrix is transposed (open_clip's `text_projection` is stored `[in, out]`).
    Transpose,
    /// The two halves of dimension 0 swap places: diffusers stores the final AdaLayerNorm
    /// modulation of Flux and SD3 as `(scale, shift)`, BFL and SAI as `(shift, scale)`.
    SwapHalves,
    /// The source tensor and every tensor in [`KeySource::concat`] are concatenated along
    /// dimension 0 (diffusers' separate `to_q`/`to_k`/`to_v` become one fused `qkv`).
    ConcatRows,
}

/// Internal tensor name → where it is stored. Sorted, so listings are stable.
pub type KeyMap = BTreeMap<String, KeySource>;

/// One part of a checkpoint, as detected.
#[derive(Debug, Clone, Serialize)]
pub struct Component {
    /// Which part this is.
    pub kind: ComponentKind,
    /// The layout its keys were stored in.
    pub layout: Layout,
    /// The key prefix it was found under in the source file (`model.diffusion_model.`, or empty).
    pub prefix: String,
    /// Number of elements across all its tensors.
    pub params: u64,
    /// Elements per storage dtype.
    pub dtypes: BTreeMap<StorageDType, u64>,
    /// The float storage dtype holding the most elements (ComfyUI's `weight_dtype`).
    pub dominant_dtype: StorageDType,
    /// `Some(fp8 type)` when the weights are scaled fp8 (per-tensor `scale_weight`).
    pub scaled_fp8: Option<StorageDType>,
    /// Architecture facts read from shapes (channels, widths, depths) that the planner and models need.
    pub facts: BTreeMap<String, u64>,
    /// Internal name → source tensor.
    #[serde(skip)]
    pub keys: KeyMap,
}

/// Everything detection says about one checkpoint (a file or a diffusers folder).
#[derive(Debug, Clone, Serialize)]
pub struct Detection {
    /// The model family.
    pub architecture: Architecture,
    /// A finer name: `v1.5`, `768-v`, `dev`, `schnell`, `fill`, `3.5-large`, `16-channel`, …
    pub variant: String,
    /// What the diffusion model predicts (`None` for text encoders and VAEs).
    pub prediction: Option<Prediction>,
    /// The parts found, diffusion model first.
    pub components: Vec<Component>,
    /// Keys that belong to no component (EMA copies, optimizer state, …), counted, not loaded.
    pub unclaimed_keys: usize,
    /// Human-readable observations (e.g. why v-prediction was guessed).
    pub notes: Vec<String>,
}

impl Detection {
    /// The component of `kind`, if the checkpoint has it.
    pub fn component(&self, kind: ComponentKind) -> Option<&Component> {
        self.components.iter().find(|c| c.kind == kind)
    }
}
