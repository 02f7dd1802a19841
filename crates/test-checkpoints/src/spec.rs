//! What to write: [`Family`], [`Storage`], [`Packaging`], [`Size`] and the [`CheckpointSpec`] that
//! combines them, which combinations are supported, realistic file names, and [`all_specs`].

use std::fmt;
use std::path::PathBuf;

use crate::fp8::Fp8Kind;
use crate::Error;

/// A model (or standalone model part) whose key layout is reproduced.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    /// Stable Diffusion 1.x (UNet + CLIP-L + 4-channel VAE).
    Sd1,
    /// Stable Diffusion 2.x, ε-prediction (512 models).
    Sd2,
    /// Stable Diffusion 2.x, v-prediction (768-v models).
    Sd2V,
    /// SDXL base (UNet + CLIP-L + OpenCLIP-G + VAE).
    Sdxl,
    /// SDXL refiner (UNet + OpenCLIP-G + VAE).
    SdxlRefiner,
    /// SD3 medium (MMDiT + CLIP-L + CLIP-G + T5-XXL + 16-channel VAE).
    Sd3Medium,
    /// SD3.5 medium (MMDiT-X).
    Sd35Medium,
    /// SD3.5 large.
    Sd35Large,
    /// FLUX.1-dev.
    FluxDev,
    /// FLUX.1-schnell.
    FluxSchnell,
    /// FLUX.1-Fill-dev.
    FluxFill,
    /// CLIP-L text encoder without `text_projection` (as Flux's `clip_l.safetensors`).
    ClipL,
    /// CLIP-L text encoder with `text_projection.weight` (as SD3's `clip_l.safetensors`).
    ClipLWithProjection,
    /// OpenCLIP ViT-bigG text encoder in HF naming with `text_projection.weight`.
    ClipG,
    /// OpenCLIP ViT-H text encoder in HF naming with `text_projection.weight`.
    OpenClipH,
    /// T5 v1.1 XXL encoder.
    T5Xxl,
    /// 4-channel AutoencoderKL (SD1/SD2/SDXL).
    Vae4,
    /// 16-channel AutoencoderKL (SD3/Flux).
    Vae16,
}

impl Family {
    /// Every family.
    pub const ALL: [Family; 18] = [
        Family::Sd1,
        Family::Sd2,
        Family::Sd2V,
        Family::Sdxl,
        Family::SdxlRefiner,
        Family::Sd3Medium,
        Family::Sd35Medium,
        Family::Sd35Large,
        Family::FluxDev,
        Family::FluxSchnell,
        Family::FluxFill,
        Family::ClipL,
        Family::ClipLWithProjection,
        Family::ClipG,
        Family::OpenClipH,
        Family::T5Xxl,
        Family::Vae4,
        Family::Vae16,
    ];

    /// Whether this family is a diffusion model (it has a single-file checkpoint form).
    pub fn is_diffusion_model(self) -> bool {
        !matches!(
            self,
            Family::ClipL | Family::ClipLWithProjection | Family::ClipG | Family::OpenClipH | Family::T5Xxl | Family::Vae4 | Family::Vae16
        )
    }

    /// Whether this family is a text encoder.
    pub fn is_text_encoder(self) -> bool {
        matches!(self, Family::ClipL | Family::ClipLWithProjection | Family::ClipG | Family::OpenClipH | Family::T5Xxl)
    }

    /// Whether this family is a VAE.
    pub fn is_vae(self) -> bool {
        matches!(self, Family::Vae4 | Family::Vae16)
    }

    /// The `general.architecture` city96's converter writes for this diffusion model.
    pub fn gguf_architecture(self) -> Option<&'static str> {
        match self {
            Family::Sd1 | Family::Sd2 | Family::Sd2V => Some("sd1"),
            Family::Sdxl | Family::SdxlRefiner => Some("sdxl"),
            Family::Sd3Medium | Family::Sd35Medium | Family::Sd35Large => Some("sd3"),
            Family::FluxDev | Family::FluxSchnell | Family::FluxFill => Some("flux"),
            _ => None,
        }
    }

    /// Stem of realistic file names for one packaging.
    fn stem(self, packaging: Packaging) -> &'static str {
        use Packaging::{Diffusers, Gguf, SingleFile, Standalone, TorchCkpt};
        match (self, packaging) {
            (Family::Sd1, SingleFile | TorchCkpt) => "v1-5-pruned-emaonly",
            (Family::Sd1, Diffusers) => "stable-diffusion-v1-5",
            (Family::Sd1, _) => "v1-5-unet",
            (Family::Sd2, SingleFile | TorchCkpt) => "v2-1_512-ema-pruned",
            (Family::Sd2, _) => "v2-1_512-unet",
            (Family::Sd2V, SingleFile | TorchCkpt) => "v2-1_768-ema-pruned",
            (Family::Sd2V, _) => "v2-1_768-unet",
            (Family::Sdxl, SingleFile) => "sd_xl_base_1.0",
            (Family::Sdxl, Diffusers) => "stable-diffusion-xl-base-1.0",
            (Family::Sdxl, _) => "sd_xl_base_1.0_unet",
            (Family::SdxlRefiner, SingleFile) => "sd_xl_refiner_1.0",
            (Family::SdxlRefiner, _) => "sd_xl_refiner_1.0_unet",
            (Family::Sd3Medium, SingleFile) => "sd3_medium_incl_clips_t5xxl",
            (Family::Sd3Medium, Diffusers) => "stable-diffusion-3-medium-diffusers",
            (Family::Sd3Medium, _) => "sd3_medium",
            (Family::Sd35Medium, SingleFile) => "sd3.5_medium_incl_clips_t5xxl",
            (Family::Sd35Medium, Diffusers) => "stable-diffusion-3.5-medium",
            (Family::Sd35Medium, _) => "sd3.5_medium",
            (Family::Sd35Large, SingleFile) => "sd3.5_large_incl_clips_t5xxl",
            (Family::Sd35Large, Diffusers) => "stable-diffusion-3.5-large",
            (Family::Sd35Large, _) => "sd3.5_large",
            (Family::FluxDev, SingleFile) => "flux1-dev-checkpoint",
            (Family::FluxDev, Diffusers) => "FLUX.1-dev",
            (Family::FluxDev, _) => "flux1-dev",
            (Family::FluxSchnell, SingleFile) => "flux1-schnell-checkpoint",
            (Family::FluxSchnell, Diffusers) => "FLUX.1-schnell",
            (Family::FluxSchnell, _) => "flux1-schnell",
            (Family::FluxFill, SingleFile) => "flux1-fill-dev-checkpoint",
            (Family::FluxFill, Diffusers) => "FLUX.1-Fill-dev",
            (Family::FluxFill, _) => "flux1-fill-dev",
            (Family::ClipL, _) => "clip_l",
            (Family::ClipLWithProjection, _) => "clip_l_with_projection",
            (Family::ClipG, _) => "clip_g",
            (Family::OpenClipH, _) => "clip_h",
            (Family::T5Xxl, _) => "t5xxl",
            (Family::Vae4, Diffusers) => "sd-vae-ft-mse",
            (Family::Vae4, _) => "vae-ft-mse-840000-ema-pruned",
            (Family::Vae16, Diffusers) => "flux-vae-diffusers",
            (Family::Vae16, _) => "ae",
        }
    }
}

/// Tiny (test) or real (benchmark) widths. Structure and counts are the same.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Size {
    /// Real block counts, tiny widths: every file stays small.
    Tiny,
    /// The released models' shapes.
    Real,
}

/// A GGUF tensor type (city96's ComfyUI-GGUF quantisations).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[allow(non_camel_case_types, missing_docs)]
pub enum GgufQuant {
    F16,
    Q8_0,
    Q6_K,
    Q5_K_S,
    Q5_1,
    Q5_0,
    Q4_K_S,
    Q4_1,
    Q4_0,
}

impl GgufQuant {
    /// Every quantisation.
    pub const ALL: [GgufQuant; 9] = [
        GgufQuant::F16,
        GgufQuant::Q8_0,
        GgufQuant::Q6_K,
        GgufQuant::Q5_K_S,
        GgufQuant::Q5_1,
        GgufQuant::Q5_0,
        GgufQuant::Q4_K_S,
        GgufQuant::Q4_1,
        GgufQuant::Q4_0,
    ];

    /// Name as it appears in file names (`flux1-dev-Q4_K_S.gguf`).
    pub fn name(self) -> &'static str {
        match self {
            GgufQuant::F16 => "F16",
            GgufQuant::Q8_0 => "Q8_0",
            GgufQuant::Q6_K => "Q6_K",
            GgufQuant::Q5_K_S => "Q5_K_S",
            GgufQuant::Q5_1 => "Q5_1",
            GgufQuant::Q5_0 => "Q5_0",
            GgufQuant::Q4_K_S => "Q4_K_S",
            GgufQuant::Q4_1 => "Q4_1",
            GgufQuant::Q4_0 => "Q4_0",
        }
    }

    /// llama.cpp's `general.file_type` (`LLAMA_FTYPE_MOSTLY_*`).
    pub fn file_type(self) -> u32 {
        match self {
            GgufQuant::F16 => 1,
            GgufQuant::Q4_0 => 2,
            GgufQuant::Q4_1 => 3,
            GgufQuant::Q8_0 => 7,
            GgufQuant::Q5_0 => 8,
            GgufQuant::Q5_1 => 9,
            GgufQuant::Q4_K_S => 14,
            GgufQuant::Q5_K_S => 16,
            GgufQuant::Q6_K => 18,
        }
    }
}

/// How tensors are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Storage {
    /// Every float tensor f32.
    F32,
    /// Every float tensor f16.
    F16,
    /// Every float tensor bf16.
    BF16,
    /// fp8 e4m3fn as Comfy-Org's `flux1-dev-fp8.safetensors`: every diffusion-model tensor fp8;
    /// T5 Linear weights fp8 with everything else f32; CLIP f16 inside a checkpoint (standalone
    /// text encoders: Linear weights fp8, rest f32); VAE bf16.
    F8E4M3,
    /// As [`Storage::F8E4M3`] with e5m2.
    F8E5M2,
    /// Matrix weights (Linear and conv) fp8 e4m3fn, biases/norms/embeddings bf16 (the mixture
    /// many community fp8 files have).
    MixedF8E4M3,
    /// ComfyUI "scaled fp8": Linear weights stored as `fp8(w / scale)` with a per-layer f32 scalar
    /// `<layer>.scale_weight`, an empty `scaled_fp8` marker tensor of the fp8 dtype at the
    /// model's prefix, everything else bf16.
    ScaledF8E4M3,
    /// As [`Storage::ScaledF8E4M3`] with e5m2.
    ScaledF8E5M2,
    /// A GGUF quantisation (only with [`Packaging::Gguf`]).
    Gguf(GgufQuant),
}

impl Storage {
    /// The plain storages (everything but GGUF).
    pub const PLAIN: [Storage; 8] = [
        Storage::F32,
        Storage::F16,
        Storage::BF16,
        Storage::F8E4M3,
        Storage::F8E5M2,
        Storage::MixedF8E4M3,
        Storage::ScaledF8E4M3,
        Storage::ScaledF8E5M2,
    ];

    /// File-name tag (`fp16`, `fp8_e4m3fn_scaled`, `Q4_K_S`).
    pub fn tag(self) -> &'static str {
        match self {
            Storage::F32 => "fp32",
            Storage::F16 => "fp16",
            Storage::BF16 => "bf16",
            Storage::F8E4M3 => "fp8_e4m3fn",
            Storage::F8E5M2 => "fp8_e5m2",
            Storage::MixedF8E4M3 => "fp8_e4m3fn_mixed",
            Storage::ScaledF8E4M3 => "fp8_e4m3fn_scaled",
            Storage::ScaledF8E5M2 => "fp8_e5m2_scaled",
            Storage::Gguf(quant) => quant.name(),
        }
    }

    /// Whether tensors are stored as plain f32/f16/bf16.
    pub fn is_full_precision(self) -> bool {
        matches!(self, Storage::F32 | Storage::F16 | Storage::BF16)
    }

    /// The fp8 format involved, if any.
    pub fn fp8_kind(self) -> Option<Fp8Kind> {
        match self {
            Storage::F8E4M3 | Storage::MixedF8E4M3 | Storage::ScaledF8E4M3 => Some(Fp8Kind::E4M3),
            Storage::F8E5M2 | Storage::ScaledF8E5M2 => Some(Fp8Kind::E5M2),
            _ => None,
        }
    }
}

/// How the model is packaged on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Packaging {
    /// One `.safetensors` with every component under its checkpoint prefix (LDM/SGM/SD3 layouts,
    /// or ComfyUI's Flux checkpoint layout).
    SingleFile,
    /// One `.safetensors` with one component and no prefix (models/unet, models/clip, models/vae).
    Standalone,
    /// A diffusers folder (`model_index.json`, per-component folders with `config.json`), or for
    /// a VAE its `diffusion_pytorch_model.safetensors` in diffusers naming.
    Diffusers,
    /// A `torch.save` zip `.ckpt` wrapped as `{"state_dict": OrderedDict}`.
    TorchCkpt,
    /// A city96-style `.gguf` of the diffusion model.
    Gguf,
}

/// One checkpoint to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CheckpointSpec {
    /// Which model.
    pub family: Family,
    /// How tensors are stored.
    pub storage: Storage,
    /// How the file(s) are laid out.
    pub packaging: Packaging,
    /// Tiny or real widths.
    pub size: Size,
    /// Seed of every value.
    pub seed: u64,
}

impl fmt::Display for CheckpointSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}/{:?}/{:?}/{:?}/seed {}", self.family, self.storage, self.packaging, self.size, self.seed)
    }
}

impl CheckpointSpec {
    /// A tiny spec with seed 0.
    pub fn new(family: Family, storage: Storage, packaging: Packaging) -> CheckpointSpec {
        CheckpointSpec { family, storage, packaging, size: Size::Tiny, seed: 0 }
    }

    /// The same spec with another seed.
    pub fn with_seed(self, seed: u64) -> CheckpointSpec {
        CheckpointSpec { seed, ..self }
    }

    /// The same spec at another size.
    pub fn with_size(self, size: Size) -> CheckpointSpec {
        CheckpointSpec { size, ..self }
    }

    /// Whether [`crate::write`] accepts this combination.
    pub fn is_supported(&self) -> bool {
        let family = self.family;
        let gguf_storage = matches!(self.storage, Storage::Gguf(_));
        match self.packaging {
            Packaging::SingleFile => family.is_diffusion_model() && !gguf_storage,
            Packaging::Standalone => !gguf_storage && (!family.is_vae() || self.storage.is_full_precision()),
            Packaging::Diffusers => {
                self.storage.is_full_precision()
                    && matches!(
                        family,
                        Family::Sd1
                            | Family::Sdxl
                            | Family::Sd3Medium
                            | Family::Sd35Medium
                            | Family::Sd35Large
                            | Family::FluxDev
                            | Family::FluxSchnell
                            | Family::FluxFill
                            | Family::Vae4
                            | Family::Vae16
                    )
            }
            Packaging::TorchCkpt => {
                self.storage.is_full_precision() && matches!(family, Family::Sd1 | Family::Sd2 | Family::Sd2V | Family::Vae4)
            }
            Packaging::Gguf => family.is_diffusion_model() && gguf_storage && self.size == Size::Tiny,
        }
    }

    /// Errors with [`Error::UnsupportedCombination`] unless supported.
    pub fn validate(&self) -> Result<(), Error> {
        if self.is_supported() {
            Ok(())
        } else {
            Err(Error::UnsupportedCombination { spec: *self })
        }
    }

    /// Path of what [`crate::write`] returns, relative to the destination directory: a file, a
    /// diffusers folder, or for a diffusers-named VAE its safetensors inside its folder.
    pub fn relative_path(&self) -> PathBuf {
        let stem = self.family.stem(self.packaging);
        let tag = self.storage.tag();
        let separator = if self.family.is_text_encoder() { "_" } else { "-" };
        let size = match self.size {
            Size::Tiny => "",
            Size::Real => "-real",
        };
        let seed = if self.seed == 0 { String::new() } else { format!("-seed{}", self.seed) };
        let stem = format!("{stem}{separator}{tag}{size}{seed}");
        match self.packaging {
            Packaging::SingleFile | Packaging::Standalone => PathBuf::from(format!("{stem}.safetensors")),
            Packaging::TorchCkpt => PathBuf::from(format!("{stem}.ckpt")),
            Packaging::Gguf => PathBuf::from(format!("{stem}.gguf")),
            Packaging::Diffusers if self.family.is_vae() => {
                PathBuf::from(stem).join("diffusion_pytorch_model.safetensors")
            }
            Packaging::Diffusers => PathBuf::from(stem),
        }
    }
}

/// A curated coverage matrix, tiny size, seed 0: every family in every packaging it supports at
/// least once (f16, or bf16 for the bf16-native Flux/SD3.5 diffusers releases), every plain
/// storage swept over the single-file checkpoint and the standalone diffusion model of Flux dev
/// and SD1 and over the standalone T5 and CLIP-L, every GGUF quantisation on Flux dev and a few
/// on the other diffusion models, and the real-world `.ckpt`s. The full product of supported
/// combinations is left out because the SDXL-sized files make it too slow; any supported
/// combination can still be written with [`crate::write`].
pub fn all_specs() -> Vec<CheckpointSpec> {
    use Packaging::{Diffusers, Gguf, SingleFile, Standalone, TorchCkpt};
    let mut specs = Vec::new();
    let mut add = |family: Family, storage: Storage, packaging: Packaging| {
        let spec = CheckpointSpec::new(family, storage, packaging);
        if spec.is_supported() && !specs.contains(&spec) {
            specs.push(spec);
        }
    };
    for family in Family::ALL {
        let preferred = match family {
            Family::FluxDev | Family::FluxSchnell | Family::FluxFill | Family::Sd35Medium | Family::Sd35Large | Family::Vae16 => {
                Storage::BF16
            }
            _ => Storage::F16,
        };
        for packaging in [SingleFile, Standalone, Diffusers, TorchCkpt] {
            add(family, preferred, packaging);
            add(family, Storage::F16, packaging);
        }
        add(family, Storage::Gguf(GgufQuant::Q8_0), Gguf);
    }
    for storage in Storage::PLAIN {
        for family in [Family::FluxDev, Family::Sd1] {
            add(family, storage, SingleFile);
            add(family, storage, Standalone);
        }
        for family in [Family::T5Xxl, Family::ClipL, Family::Sd3Medium] {
            add(family, storage, Standalone);
        }
    }
    for storage in [Storage::F8E4M3, Storage::ScaledF8E4M3] {
        for family in [Family::Sd35Large, Family::Sdxl, Family::FluxSchnell, Family::Sd35Medium] {
            add(family, storage, SingleFile);
        }
        for family in [Family::ClipG, Family::ClipLWithProjection, Family::OpenClipH, Family::Sd2V, Family::SdxlRefiner] {
            add(family, storage, Standalone);
        }
    }
    for quant in GgufQuant::ALL {
        add(Family::FluxDev, Storage::Gguf(quant), Gguf);
    }
    for (family, quant) in [
        (Family::Sd1, GgufQuant::Q4_K_S),
        (Family::Sd1, GgufQuant::F16),
        (Family::Sdxl, GgufQuant::Q4_K_S),
        (Family::Sd2, GgufQuant::Q5_0),
        (Family::Sd3Medium, GgufQuant::Q6_K),
        (Family::Sd35Large, GgufQuant::Q4_0),
        (Family::Sd35Medium, GgufQuant::Q5_1),
        (Family::FluxSchnell, GgufQuant::Q4_1),
        (Family::FluxFill, GgufQuant::Q5_K_S),
    ] {
        add(family, Storage::Gguf(quant), Gguf);
    }
    for (family, storage) in [(Family::Sd1, Storage::F32), (Family::Sd2V, Storage::F32), (Family::Vae4, Storage::F32)] {
        add(family, storage, TorchCkpt);
    }
    add(Family::Sd1, Storage::F32, Diffusers);
    specs
}
