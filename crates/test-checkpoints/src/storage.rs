//! Storage rules: which dtype each tensor gets for a [`Storage`], and the byte encoding of a
//! tensor's values in that dtype.

use crate::fp8::Fp8Kind;
use crate::tensor::Role;
use crate::Storage;

/// Which model part a tensor belongs to; fp8 checkpoints treat the parts differently.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Part {
    /// The UNet / MMDiT / Flux transformer.
    DiffusionModel,
    /// A CLIP text tower.
    Clip,
    /// The T5 encoder.
    T5,
    /// The VAE.
    Vae,
    /// Checkpoint bookkeeping (noise schedule, EMA counters).
    Extra,
}

/// Plain float dtypes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FloatType {
    F32,
    F16,
    BF16,
}

/// How one tensor's values become bytes.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Encoding {
    Float(FloatType),
    Fp8(Fp8Kind),
    /// `fp8(value / scale)` where scale = max |value| / fp8 max.
    ScaledFp8(Fp8Kind),
    /// The f32 scalar scale of the named weight in the same file.
    ScaleOf(String),
    /// The empty `scaled_fp8` marker of this fp8 dtype.
    Marker(Fp8Kind),
    Int64,
    Int32,
}

impl Encoding {
    /// Bytes per element.
    pub(crate) fn element_size(&self) -> usize {
        match self {
            Encoding::Float(FloatType::F32) | Encoding::ScaleOf(_) | Encoding::Int32 => 4,
            Encoding::Float(FloatType::F16 | FloatType::BF16) => 2,
            Encoding::Fp8(_) | Encoding::ScaledFp8(_) | Encoding::Marker(_) => 1,
            Encoding::Int64 => 8,
        }
    }
}

/// Whether the part sits inside a multi-component checkpoint or alone in its file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Placement {
    InCheckpoint,
    Alone,
}

/// The encoding of a tensor with `role` in `part` under `storage`.
pub(crate) fn encoding_for(
    storage: Storage,
    part: Part,
    role: Role,
    placement: Placement,
) -> Encoding {
    match role {
        Role::Index => return Encoding::Int64,
        Role::Counter => return Encoding::Int32,
        _ => {}
    }
    let text_encoder = matches!(part, Part::Clip | Part::T5);
    match storage {
        Storage::F32 | Storage::Gguf(_) => Encoding::Float(FloatType::F32),
        Storage::F16 => Encoding::Float(FloatType::F16),
        Storage::BF16 => Encoding::Float(FloatType::BF16),
        Storage::F8E4M3 | Storage::F8E5M2 => {
            let kind = storage.fp8_kind().unwrap_or(Fp8Kind::E4M3);
            match part {
                Part::DiffusionModel => Encoding::Fp8(kind),
                Part::Clip if placement == Placement::InCheckpoint => {
                    Encoding::Float(FloatType::F16)
                }
                _ if text_encoder && role == Role::Linear => Encoding::Fp8(kind),
                _ if text_encoder => Encoding::Float(FloatType::F32),
                Part::Vae => Encoding::Float(FloatType::BF16),
                _ => Encoding::Float(FloatType::F32),
            }
        }
        Storage::MixedF8E4M3 => match part {
            Part::DiffusionModel if role.is_matrix_weight() => Encoding::Fp8(Fp8Kind::E4M3),
            _ if text_encoder && role == Role::Linear => Encoding::Fp8(Fp8Kind::E4M3),
            Part::Extra => Encoding::Float(FloatType::F32),
            _ => Encoding::Float(FloatType::BF16),
        },
        Storage::ScaledF8E4M3 | Storage::ScaledF8E5M2 => {
            let kind = storage.fp8_kind().unwrap_or(Fp8Kind::E4M3);
            let scaled_part =
                part == Part::DiffusionModel || (text_encoder && placement == Placement::Alone);
            match part {
                _ if scaled_part && role == Role::Linear => Encoding::ScaledFp8(kind),
                Part::Extra => Encoding::Float(FloatType::F32),
                _ => Encoding::Float(FloatType::BF16),
            }
        }
    }
}

/// Whether `part` carries the `scaled_fp8` marker and per-layer scales under `storage`.
pub(crate) fn is_scaled(storage: Storage, part: Part, placement: Placement) -> bool {
    matches!(storage, Storage::ScaledF8E4M3 | Storage::ScaledF8E5M2)
        && (part == Part::DiffusionModel
            || (matches!(part, Part::Clip | Part::T5) && placement == Placement::Alone))
}

/// Little-endian bytes of float values in a plain float type.
pub(crate) fn float_bytes(values: &[f32], float: FloatType) -> Vec<u8> {
    let width = match float {
        FloatType::F32 => 4,
        FloatType::F16 | FloatType::BF16 => 2,
    };
    let mut out = Vec::with_capacity(values.len() * width);
    match float {
        FloatType::F32 => {
            for value in values {
                out.extend_from_slice(&value.to_le_bytes());
            }
        }
        FloatType::F16 => {
            for value in values {
                out.extend_from_slice(&half::f16::from_f32(*value).to_le_bytes());
            }
        }
        FloatType::BF16 => {
            for value in values {
                out.extend_from_slice(&half::bf16::from_f32(*value).to_le_bytes());
            }
        }
    }
    out
}

/// fp8 bytes of `values / scale`.
pub(crate) fn fp8_bytes(values: &[f32], kind: Fp8Kind, scale: f32) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len());
    if scale == 1.0 {
        for value in values {
            out.push(kind.encode(*value));
        }
    } else {
        for value in values {
            out.push(kind.encode(value / scale));
        }
    }
    out
}

/// The scale ComfyUI's scaled-fp8 files use: max |w| / fp8 max (1 for an all-zero weight).
pub(crate) fn fp8_scale(values: &[f32], kind: Fp8Kind) -> f32 {
    let amax = values.iter().fold(0.0f32, |max, v| max.max(v.abs()));
    if amax > 0.0 {
        amax / kind.max_finite()
    } else {
        1.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comfy_org_fp8_checkpoint_rules() {
        let e4 = Storage::F8E4M3;
        let inside = Placement::InCheckpoint;
        assert_eq!(
            encoding_for(e4, Part::DiffusionModel, Role::Norm, inside),
            Encoding::Fp8(Fp8Kind::E4M3)
        );
        assert_eq!(
            encoding_for(e4, Part::Clip, Role::Linear, inside),
            Encoding::Float(FloatType::F16)
        );
        assert_eq!(
            encoding_for(e4, Part::T5, Role::Linear, inside),
            Encoding::Fp8(Fp8Kind::E4M3)
        );
        assert_eq!(
            encoding_for(e4, Part::T5, Role::Embedding, inside),
            Encoding::Float(FloatType::F32)
        );
        assert_eq!(
            encoding_for(e4, Part::Vae, Role::Conv, inside),
            Encoding::Float(FloatType::BF16)
        );
        assert_eq!(
            encoding_for(e4, Part::Clip, Role::Index, inside),
            Encoding::Int64
        );
    }

    #[test]
    fn scaled_rules_touch_only_linear_weights() {
        let scaled = Storage::ScaledF8E4M3;
        let inside = Placement::InCheckpoint;
        assert_eq!(
            encoding_for(scaled, Part::DiffusionModel, Role::Linear, inside),
            Encoding::ScaledFp8(Fp8Kind::E4M3)
        );
        assert_eq!(
            encoding_for(scaled, Part::DiffusionModel, Role::Conv, inside),
            Encoding::Float(FloatType::BF16)
        );
        assert_eq!(
            encoding_for(scaled, Part::T5, Role::Linear, inside),
            Encoding::Float(FloatType::BF16)
        );
        assert_eq!(
            encoding_for(scaled, Part::T5, Role::Linear, Placement::Alone),
            Encoding::ScaledFp8(Fp8Kind::E4M3)
        );
    }

    #[test]
    fn scale_maps_amax_to_fp8_max() {
        let values = [0.5, -2.0, 1.0];
        let scale = fp8_scale(&values, Fp8Kind::E4M3);
        assert_eq!(fp8_bytes(&values, Fp8Kind::E4M3, scale)[1], 0xFE);
    }
}
