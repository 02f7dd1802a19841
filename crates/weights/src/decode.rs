//! Host-side decoding of little-endian storage bytes into `f32`, for every element storage dtype
//! (GGUF block quantisations are dequantised through candle instead).

use half::{bf16, f16};

use crate::fp8::{E4M3FN_TABLE, E5M2_TABLE};
use crate::{GgufType, StorageDType};

fn each<const N: usize>(bytes: &[u8], convert: impl Fn([u8; N]) -> f32) -> Vec<f32> {
    bytes
        .chunks_exact(N)
        .map(|chunk| {
            let mut array = [0u8; N];
            array.copy_from_slice(chunk);
            convert(array)
        })
        .collect()
}

/// Decodes `bytes` (whole elements of `dtype`) to `f32`; `None` for block-quantised GGUF types.
///
/// Integers convert as `as f32` does (large `i64` values lose precision); booleans are 0 or 1.
pub(crate) fn to_f32(dtype: StorageDType, bytes: &[u8]) -> Option<Vec<f32>> {
    Some(match dtype {
        StorageDType::F64 => each::<8>(bytes, |b| f64::from_le_bytes(b) as f32),
        StorageDType::F32 | StorageDType::Gguf(GgufType::F32) => {
            each::<4>(bytes, f32::from_le_bytes)
        }
        StorageDType::F16 | StorageDType::Gguf(GgufType::F16) => {
            each::<2>(bytes, |b| f16::from_le_bytes(b).to_f32())
        }
        StorageDType::BF16 | StorageDType::Gguf(GgufType::BF16) => {
            each::<2>(bytes, |b| bf16::from_le_bytes(b).to_f32())
        }
        StorageDType::F8E4M3 => bytes.iter().map(|&b| E4M3FN_TABLE[b as usize]).collect(),
        StorageDType::F8E5M2 => bytes.iter().map(|&b| E5M2_TABLE[b as usize]).collect(),
        StorageDType::I64 => each::<8>(bytes, |b| i64::from_le_bytes(b) as f32),
        StorageDType::I32 => each::<4>(bytes, |b| i32::from_le_bytes(b) as f32),
        StorageDType::I16 => each::<2>(bytes, |b| f32::from(i16::from_le_bytes(b))),
        StorageDType::I8 => bytes.iter().map(|&b| f32::from(b as i8)).collect(),
        StorageDType::U8 => bytes.iter().map(|&b| f32::from(b)).collect(),
        StorageDType::Bool => bytes.iter().map(|&b| f32::from(u8::from(b != 0))).collect(),
        StorageDType::Gguf(_) => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_each_element_type() {
        assert_eq!(
            to_f32(StorageDType::F64, &1.5f64.to_le_bytes()),
            Some(vec![1.5])
        );
        assert_eq!(
            to_f32(StorageDType::BF16, &bf16::from_f32(-2.0).to_le_bytes()),
            Some(vec![-2.0])
        );
        assert_eq!(
            to_f32(StorageDType::F8E4M3, &[0x7E, 0x38]),
            Some(vec![448.0, 1.0])
        );
        assert_eq!(to_f32(StorageDType::F8E5M2, &[0x3C]), Some(vec![1.0]));
        assert_eq!(to_f32(StorageDType::I8, &[0xFF]), Some(vec![-1.0]));
        assert_eq!(to_f32(StorageDType::Bool, &[0, 7]), Some(vec![0.0, 1.0]));
        assert_eq!(to_f32(StorageDType::Gguf(GgufType::Q8_0), &[]), None);
    }
}
