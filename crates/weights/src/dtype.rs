//! Storage dtypes: how a tensor's elements are laid out in a checkpoint file, independent of the
//! dtype a backend later computes in.

use std::fmt;

use candle_core::quantized::GgmlDType;
use serde::{Serialize, Serializer};

/// The element type of a tensor *as stored in its file*.
///
/// This is deliberately wider than [`candle_core::DType`]: candle has no `F8E5M2`, and GGUF block
/// quantisations are not element types at all. The planner decides which candle dtype (if any) a
/// tensor becomes on a device; until then a tensor keeps its storage dtype.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StorageDType {
    /// IEEE binary64.
    F64,
    /// IEEE binary32.
    F32,
    /// IEEE binary16.
    F16,
    /// bfloat16.
    BF16,
    /// fp8 e4m3fn (no infinities, one NaN pattern per sign), as PyTorch's `float8_e4m3fn`.
    F8E4M3,
    /// fp8 e5m2 (IEEE-like, with infinities and NaNs), as PyTorch's `float8_e5m2`.
    F8E5M2,
    /// 64-bit signed integer.
    I64,
    /// 32-bit signed integer.
    I32,
    /// 16-bit signed integer.
    I16,
    /// 8-bit signed integer.
    I8,
    /// 8-bit unsigned integer.
    U8,
    /// Boolean, one byte per element.
    Bool,
    /// A GGUF/GGML block-quantised (or plain) type.
    Gguf(GgufType),
}

/// GGML storage types as found in GGUF files. Mirrors candle's [`GgmlDType`] but is ordered and
/// hashable so it can key histograms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[allow(missing_docs)]
pub enum GgufType {
    F32,
    F16,
    BF16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q8_1,
    Q2K,
    Q3K,
    Q4K,
    Q5K,
    Q6K,
    Q8K,
}

impl GgufType {
    /// The candle type that reads and multiplies this storage.
    pub fn to_ggml(self) -> GgmlDType {
        match self {
            GgufType::F32 => GgmlDType::F32,
            GgufType::F16 => GgmlDType::F16,
            GgufType::BF16 => GgmlDType::BF16,
            GgufType::Q4_0 => GgmlDType::Q4_0,
            GgufType::Q4_1 => GgmlDType::Q4_1,
            GgufType::Q5_0 => GgmlDType::Q5_0,
            GgufType::Q5_1 => GgmlDType::Q5_1,
            GgufType::Q8_0 => GgmlDType::Q8_0,
            GgufType::Q8_1 => GgmlDType::Q8_1,
            GgufType::Q2K => GgmlDType::Q2K,
            GgufType::Q3K => GgmlDType::Q3K,
            GgufType::Q4K => GgmlDType::Q4K,
            GgufType::Q5K => GgmlDType::Q5K,
            GgufType::Q6K => GgmlDType::Q6K,
            GgufType::Q8K => GgmlDType::Q8K,
        }
    }

    /// The Kiln type for a candle GGML type.
    pub fn from_ggml(dtype: GgmlDType) -> Self {
        match dtype {
            GgmlDType::F32 => GgufType::F32,
            GgmlDType::F16 => GgufType::F16,
            GgmlDType::BF16 => GgufType::BF16,
            GgmlDType::Q4_0 => GgufType::Q4_0,
            GgmlDType::Q4_1 => GgufType::Q4_1,
            GgmlDType::Q5_0 => GgufType::Q5_0,
            GgmlDType::Q5_1 => GgufType::Q5_1,
            GgmlDType::Q8_0 => GgufType::Q8_0,
            GgmlDType::Q8_1 => GgufType::Q8_1,
            GgmlDType::Q2K => GgufType::Q2K,
            GgmlDType::Q3K => GgufType::Q3K,
            GgmlDType::Q4K => GgufType::Q4K,
            GgmlDType::Q5K => GgufType::Q5K,
            GgmlDType::Q6K => GgufType::Q6K,
            GgmlDType::Q8K => GgufType::Q8K,
        }
    }

    /// The type for a GGML type id as stored in GGUF tensor infos (`ggml_type` in `ggml.h`), or
    /// `None` for ids candle cannot read (IQ quantisations, removed Q4_2, …).
    pub fn from_ggml_id(id: u32) -> Option<Self> {
        Some(match id {
            0 => GgufType::F32,
            1 => GgufType::F16,
            2 => GgufType::Q4_0,
            3 => GgufType::Q4_1,
            6 => GgufType::Q5_0,
            7 => GgufType::Q5_1,
            8 => GgufType::Q8_0,
            9 => GgufType::Q8_1,
            10 => GgufType::Q2K,
            11 => GgufType::Q3K,
            12 => GgufType::Q4K,
            13 => GgufType::Q5K,
            14 => GgufType::Q6K,
            15 => GgufType::Q8K,
            30 => GgufType::BF16,
            _ => return None,
        })
    }

    /// Lower-case name as GGUF tools print it (`q8_0`, `q4_k`, …).
    pub fn name(self) -> &'static str {
        match self {
            GgufType::F32 => "f32",
            GgufType::F16 => "f16",
            GgufType::BF16 => "bf16",
            GgufType::Q4_0 => "q4_0",
            GgufType::Q4_1 => "q4_1",
            GgufType::Q5_0 => "q5_0",
            GgufType::Q5_1 => "q5_1",
            GgufType::Q8_0 => "q8_0",
            GgufType::Q8_1 => "q8_1",
            GgufType::Q2K => "q2_k",
            GgufType::Q3K => "q3_k",
            GgufType::Q4K => "q4_k",
            GgufType::Q5K => "q5_k",
            GgufType::Q6K => "q6_k",
            GgufType::Q8K => "q8_k",
        }
    }

    /// (elements per block, bytes per block).
    pub fn block_layout(self) -> (usize, usize) {
        let g = self.to_ggml();
        (g.block_size(), g.type_size())
    }
}

impl StorageDType {
    /// Parses a safetensors header dtype string (`"F8_E4M3"`, `"BF16"`, …).
    pub fn from_safetensors_name(name: &str) -> Option<Self> {
        Some(match name {
            "F64" => Self::F64,
            "F32" => Self::F32,
            "F16" => Self::F16,
            "BF16" => Self::BF16,
            "F8_E4M3" => Self::F8E4M3,
            "F8_E5M2" => Self::F8E5M2,
            "I64" => Self::I64,
            "I32" => Self::I32,
            "I16" => Self::I16,
            "I8" => Self::I8,
            "U8" => Self::U8,
            "BOOL" => Self::Bool,
            _ => return None,
        })
    }

    /// The canonical short name used in Kiln's output and JSON (`f32`, `fp8_e4m3fn`, `q8_0`, …).
    pub fn name(self) -> &'static str {
        match self {
            Self::F64 => "f64",
            Self::F32 => "f32",
            Self::F16 => "f16",
            Self::BF16 => "bf16",
            Self::F8E4M3 => "fp8_e4m3fn",
            Self::F8E5M2 => "fp8_e5m2",
            Self::I64 => "i64",
            Self::I32 => "i32",
            Self::I16 => "i16",
            Self::I8 => "i8",
            Self::U8 => "u8",
            Self::Bool => "bool",
            Self::Gguf(g) => g.name(),
        }
    }

    /// Bytes per element for element types; `None` for block-quantised GGUF types.
    pub fn element_size(self) -> Option<usize> {
        Some(match self {
            Self::F64 | Self::I64 => 8,
            Self::F32 | Self::I32 => 4,
            Self::F16 | Self::BF16 | Self::I16 => 2,
            Self::F8E4M3 | Self::F8E5M2 | Self::I8 | Self::U8 | Self::Bool => 1,
            Self::Gguf(GgufType::F32) => 4,
            Self::Gguf(GgufType::F16 | GgufType::BF16) => 2,
            Self::Gguf(_) => return None,
        })
    }

    /// Bytes needed for `elements` values of this type, or `None` when the count does not fill
    /// whole GGUF blocks or overflows.
    pub fn storage_bytes(self, elements: u64) -> Option<u64> {
        match self.element_size() {
            Some(size) => elements.checked_mul(size as u64),
            None => {
                let Self::Gguf(g) = self else { return None };
                let (block, bytes) = g.block_layout();
                if !elements.is_multiple_of(block as u64) {
                    return None;
                }
                (elements / block as u64).checked_mul(bytes as u64)
            }
        }
    }

    /// True for the floating-point types a model weight can be stored in.
    pub fn is_float(self) -> bool {
        matches!(
            self,
            Self::F64 | Self::F32 | Self::F16 | Self::BF16 | Self::F8E4M3 | Self::F8E5M2
        ) || matches!(self, Self::Gguf(_))
    }

    /// True for the two 8-bit float formats.
    pub fn is_fp8(self) -> bool {
        matches!(self, Self::F8E4M3 | Self::F8E5M2)
    }

    /// The candle dtype with the same element layout, when candle has one.
    ///
    /// `F8E5M2`, `I8` and `Bool` have none (candle lacks them); GGUF quantisations are not element
    /// types. Such tensors are read as raw bytes and decoded by Kiln.
    pub fn candle_dtype(self) -> Option<candle_core::DType> {
        use candle_core::DType;
        Some(match self {
            Self::F64 => DType::F64,
            Self::F32 | Self::Gguf(GgufType::F32) => DType::F32,
            Self::F16 | Self::Gguf(GgufType::F16) => DType::F16,
            Self::BF16 | Self::Gguf(GgufType::BF16) => DType::BF16,
            Self::F8E4M3 => DType::F8E4M3,
            Self::I64 => DType::I64,
            Self::I32 => DType::I32,
            Self::I16 => DType::I16,
            Self::U8 => DType::U8,
            Self::F8E5M2 | Self::I8 | Self::Bool | Self::Gguf(_) => return None,
        })
    }
}

impl fmt::Display for StorageDType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for StorageDType {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safetensors_names_round_trip_through_storage_bytes() {
        let e4 = StorageDType::from_safetensors_name("F8_E4M3").unwrap();
        assert_eq!(e4, StorageDType::F8E4M3);
        assert_eq!(e4.storage_bytes(10), Some(10));
        assert_eq!(
            StorageDType::from_safetensors_name("F8_E5M2")
                .unwrap()
                .name(),
            "fp8_e5m2"
        );
        assert_eq!(StorageDType::from_safetensors_name("C64"), None);
    }

    #[test]
    fn gguf_storage_bytes_need_whole_blocks() {
        let q8 = StorageDType::Gguf(GgufType::Q8_0);
        assert_eq!(q8.storage_bytes(64), Some(68));
        assert_eq!(q8.storage_bytes(33), None);
        assert_eq!(StorageDType::F32.storage_bytes(u64::MAX), None);
    }
}
