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
            Family::ClipL
                | Family::ClipLWithProjection
                | Family::ClipG
                | Family::OpenClipH
                | Family::T5Xxl
                | Family::Vae4
                | Family::Vae16
        )
    }

    /// Whether this family is a text encoder.
    pub fn is_text_encoder(self) -> bool {
        matches!(
            self,
            Family::ClipL
                | Family::ClipLWithProjection
                | Family::ClipG
                | Family::OpenClipH
                | Family::T5Xxl
        )
    }

    /// Whether this family is a VAE.
    pub fn is_vae(self) -> bool {
        matches!(self, Family::Vae4 | Family::Vae16)
    }

    /// The `general.architecture` of this family's GGUF files: what city96's converter writes
    /// for a diffusion model, llama.cpp's `t5encoder` for the T5-XXL encoder (city96's
    /// `t5-v1_1-xxl-encoder-gguf`, converted and quantised by llama.cpp). `None` where no GGUF
    /// form exists.
    pub fn gguf_architecture(self) -> Option<&'static str> {
        match self {
            Family::Sd1 | Family::Sd2 | Family::Sd2V => Some("sd1"),
            Family::Sdxl | Family::SdxlRefiner => Some("sdxl"),
            Family::Sd3Medium | Family::Sd35Medium | Family::Sd35Large => Some("sd3"),
            Family::FluxDev | Family::FluxSchnell | Family::FluxFill => Some("flux"),
            Family::T5Xxl => Some(crate::t5::LLAMA_CPP_ARCHITECTURE),
            _ => None,
        }
    }

    /// Stem of realistic file names for one packaging.
    fn stem(self, packaging: Packaging) -> &'static str {
        use Packaging::{Diffusers, Gguf, SingleFile, TorchCkpt};
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
            (Family::T5Xxl, Gguf) => "t5-v1_1-xxl-encoder",
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
    /// A city96-style `.gguf` of the diffusion model, or of the T5-XXL encoder in llama.cpp's
    /// naming (tiny size only).
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
        write!(
            f,
            "{:?}/{:?}/{:?}/{:?}/seed {}",
            self.family, self.storage, self.packaging, self.size, self.seed
        )
    }
}

impl CheckpointSpec {
    /// A tiny spec with seed 0.
    pub fn new(family: Family, storage: Storage, packaging: Packaging) -> CheckpointSpec {
        CheckpointSpec {
            family,
            storage,
            packaging,
            size: Size::Tiny,
            seed: 0,
        }
    }

    /// The same spec with another seed.
    pub fn with_seed(self, seed: u64) -> CheckpointSpec {
        CheckpointSpec { seed, ..self }
    }

    /// The same spec at another size.
    pub fn with_size(self, size: Size) -> CheckpointSpec {
        CheckpointSpec { size, ..self }
    }

    /// Whether [`crate::write`] accepts this combination:
    /// - `SingleFile`: diffusion-model families, any plain storage;
    /// - `Standalone`: every family, any plain storage (VAEs: f32/f16/bf16 only);
    /// - `Diffusers`: SD1, SDXL, SD3/3.5, Flux and the VAEs, f32/f16/bf16;
    /// - `TorchCkpt`: SD1, SD2 (ε and v) and the 4-channel VAE, f32/f16/bf16;
    /// - `Gguf`: diffusion-model families and T5-XXL (those with a
    ///   [`Family::gguf_architecture`]) with a [`Storage::Gguf`] storage, tiny size only (the GGUF
    ///   writer holds every quantised tensor in memory).
    pub fn is_supported(&self) -> bool {
        let family = self.family;
        let gguf_storage = matches!(self.storage, Storage::Gguf(_));
        match self.packaging {
            Packaging::SingleFile => family.is_diffusion_model() && !gguf_storage,
            Packaging::Standalone => {
                !gguf_storage && (!family.is_vae() || self.storage.is_full_precision())
            }
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
                self.storage.is_full_precision()
                    && matches!(
                        family,
                        Family::Sd1 | Family::Sd2 | Family::Sd2V | Family::Vae4
                    )
            }
            Packaging::Gguf => {
                family.gguf_architecture().is_some() && gguf_storage && self.size == Size::Tiny
            }
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
        // Text encoders are `t5xxl_fp16`, but city96's GGUF encoders `t5-v1_1-xxl-encoder-Q8_0`.
        let separator = if self.family.is_text_encoder() && self.packaging != Packaging::Gguf {
            "_"
        } else {
            "-"
        };
        let size = match self.size {
            Size::Tiny => "",
            Size::Real => "-real",
        };
        let seed = if self.seed == 0 {
            String::new()
        } else {
            format!("-seed{}", self.seed)
        };
        let stem = format!("{stem}{separator}{tag}{size}{seed}");
        match self.packaging {
            Packaging::SingleFile | Packaging::Standalone => {
                PathBuf::from(format!("{stem}.safetensors"))
            }
            Packaging::TorchCkpt => PathBuf::from(format!("{stem}.ckpt")),
            Packaging::Gguf => PathBuf::from(format!("{stem}.gguf")),
            Packaging::Diffusers if self.family.is_vae() => {
                PathBuf::from(stem).join("diffusion_pytorch_model.safetensors")
            }
            Packaging::Diffusers => PathBuf::from(stem),
        }
    }
}

/// A curated coverage matrix (tiny, seed 0) that keeps writing everything fast enough for a
/// debug-build test: every family in every packaging it supports at least once; every plain
/// storage on a single-file checkpoint and on the small standalone parts; every GGUF
/// quantisation on Flux dev. The big SDXL-sized files appear only where they add a layout.
/// T5-XXL GGUF encoders are supported but not listed yet: existing callers load every GGUF spec
/// of this list as a diffusion model. The full product of supported combinations (see
/// [`CheckpointSpec::is_supported`]) is ~360 specs and several GB, so it is left to callers
/// that need a particular one.
pub fn all_specs() -> Vec<CheckpointSpec> {
    use Family::*;
    use Packaging::{Diffusers, SingleFile, Standalone, TorchCkpt};
    use Storage::{MixedF8E4M3, ScaledF8E4M3, ScaledF8E5M2, BF16, F16, F32, F8E4M3, F8E5M2};
    let mut specs = Vec::new();
    let mut add = |family: Family, storage: Storage, packaging: Packaging| {
        let spec = CheckpointSpec::new(family, storage, packaging);
        if spec.is_supported() && !specs.contains(&spec) {
            specs.push(spec);
        }
    };
    // Single-file checkpoints, each in a storage a real release of it uses.
    for (family, storage) in [
        (Sd1, F16),
        (Sd2, F16),
        (Sd2V, F16),
        (Sdxl, F16),
        (SdxlRefiner, F16),
        (Sd3Medium, F16),
        (Sd35Medium, BF16),
        (Sd35Large, ScaledF8E4M3),
        (FluxDev, F8E4M3),
        (FluxSchnell, BF16),
        (FluxFill, MixedF8E4M3),
    ] {
        add(family, storage, SingleFile);
    }
    add(Sd1, F8E5M2, SingleFile);
    add(Sd1, ScaledF8E5M2, SingleFile);
    // Standalone parts: every family once.
    for (family, storage) in [
        (Sd1, F16),
        (Sd2, F16),
        (Sd2V, F16),
        (Sdxl, F8E4M3),
        (SdxlRefiner, ScaledF8E4M3),
        (Sd35Medium, BF16),
        (Sd35Large, BF16),
        (FluxDev, BF16),
        (FluxSchnell, F8E4M3),
        (FluxFill, BF16),
        (ClipLWithProjection, F16),
        (ClipG, F16),
        (OpenClipH, F16),
        (Vae4, F16),
        (Vae16, BF16),
    ] {
        add(family, storage, Standalone);
    }
    // Every plain storage on the small standalone parts.
    for storage in Storage::PLAIN {
        for family in [Sd3Medium, ClipL, FluxDev, T5Xxl] {
            add(family, storage, Standalone);
        }
    }
    // Diffusers folders.
    for (family, storage) in [
        (Sd1, F16),
        (Sdxl, F16),
        (Sd3Medium, F16),
        (Sd35Medium, BF16),
        (FluxDev, BF16),
        (FluxFill, BF16),
        (Vae4, F16),
        (Vae16, BF16),
    ] {
        add(family, storage, Diffusers);
    }
    // torch.save checkpoints.
    for (family, storage) in [(Sd1, F16), (Sd2V, F16), (Vae4, F32)] {
        add(family, storage, TorchCkpt);
    }
    // GGUF: every quantisation on Flux dev, one per other architecture.
    for quant in GgufQuant::ALL {
        add(FluxDev, Storage::Gguf(quant), Packaging::Gguf);
    }
    for (family, quant) in [
        (Sd1, GgufQuant::Q4_K_S),
        (Sd2V, GgufQuant::Q5_0),
        (Sdxl, GgufQuant::Q8_0),
        (SdxlRefiner, GgufQuant::Q4_0),
        (Sd3Medium, GgufQuant::Q6_K),
        (Sd35Medium, GgufQuant::Q5_1),
        (Sd35Large, GgufQuant::Q4_1),
        (FluxSchnell, GgufQuant::Q4_K_S),
        (FluxFill, GgufQuant::Q5_K_S),
        (T5Xxl, GgufQuant::Q8_0),
    ] {
        add(family, Storage::Gguf(quant), Packaging::Gguf);
    }
    specs
}
