//! GGUF files: a bounds-checking pre-scan of the header, then candle's
//! `candle_core::quantized::gguf_file` reader for metadata and tensor infos.
//!
//! The pre-scan walks the header without allocating by any size it declares: counts, string and
//! array lengths are each compared with the bytes actually left in the file, nesting is bounded,
//! tensor names must be unique (candle keeps tensor infos in a `HashMap`, which would silently
//! merge duplicates) and every tensor's GGML type must be one candle can read (so the error names
//! the tensor). Only then is candle's reader run. Shapes come out in PyTorch order (GGUF lists
//! dimensions innermost first; candle reverses them).

use std::collections::BTreeMap;
use std::io::Cursor;
use std::path::Path;

use candle_core::quantized::gguf_file;

use crate::source::{checked_elements, Buffer, Location, Parsed};
use crate::{GgufType, StorageDType, TensorInfo, WeightsError};

/// GGML's maximum tensor rank.
const MAX_DIMS: u32 = 4;
/// Nesting bound for array-of-array metadata values.
const MAX_VALUE_DEPTH: usize = 8;
/// Arrays up to this many elements are written out in full in the metadata strings.
const MAX_RENDERED_ARRAY: usize = 32;

struct Scanner<'a> {
    file: &'a Path,
    bytes: &'a [u8],
    pos: usize,
    /// GGUF v1 used 32-bit lengths and counts; v2 and v3 use 64-bit.
    wide: bool,
}

impl<'a> Scanner<'a> {
    fn error(&self, reason: impl Into<String>) -> WeightsError {
        WeightsError::Gguf {
            file: self.file.to_path_buf(),
            reason: reason.into(),
        }
    }

    fn remaining(&self) -> u64 {
        (self.bytes.len() - self.pos) as u64
    }

    fn skip(&mut self, len: u64, what: &str) -> Result<usize, WeightsError> {
        if len > self.remaining() {
            return Err(WeightsError::Truncated {
                file: self.file.to_path_buf(),
                what: format!("GGUF {what}"),
                needed: len,
                available: self.remaining(),
            });
        }
        let start = self.pos;
        self.pos += len as usize;
        Ok(start)
    }

    fn u32(&mut self, what: &str) -> Result<u32, WeightsError> {
        let at = self.skip(4, what)?;
        let mut b = [0u8; 4];
        b.copy_from_slice(&self.bytes[at..at + 4]);
        Ok(u32::from_le_bytes(b))
    }

    fn u64(&mut self, what: &str) -> Result<u64, WeightsError> {
        let at = self.skip(8, what)?;
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.bytes[at..at + 8]);
        Ok(u64::from_le_bytes(b))
    }

    fn length(&mut self, what: &str) -> Result<u64, WeightsError> {
        if self.wide {
            self.u64(what)
        } else {
            self.u32(what).map(u64::from)
        }
    }

    fn length_size(&self) -> u64 {
        if self.wide {
            8
        } else {
            4
        }
    }

    fn string(&mut self, what: &str) -> Result<&'a [u8], WeightsError> {
        let len = self.length(what)?;
        let at = self.skip(len, what)?;
        let bytes: &'a [u8] = self.bytes;
        Ok(&bytes[at..at + len as usize])
    }

    /// Smallest encoding of one value of `value_type`, to bound array counts before iterating.
    fn min_size(&self, value_type: u32) -> Result<u64, WeightsError> {
        Ok(match value_type {
            0 | 1 | 7 => 1,
            2 | 3 => 2,
            4..=6 => 4,
            10..=12 => 8,
            8 => self.length_size(),
            9 => 4 + self.length_size(),
            other => return Err(self.error(format!("unknown metadata value type {other}"))),
        })
    }

    fn skip_value(&mut self, value_type: u32, depth: usize) -> Result<(), WeightsError> {
        if depth > MAX_VALUE_DEPTH {
            return Err(self.error("metadata arrays nested too deeply"));
        }
        match value_type {
            8 => {
                self.string("metadata string")?;
            }
            9 => {
                let element_type = self.u32("array type")?;
                let count = self.length("array length")?;
                let min = self.min_size(element_type)?;
                if count.saturating_mul(min) > self.remaining() {
                    return Err(self.error(format!(
                        "array of {count} elements cannot fit in the {} bytes left",
                        self.remaining()
                    )));
                }
                if matches!(element_type, 8 | 9) {
                    for _ in 0..count {
                        self.skip_value(element_type, depth + 1)?;
                    }
                } else {
                    self.skip(count * min, "array")?;
                }
            }
            fixed => {
                let size = self.min_size(fixed)?;
                self.skip(size, "metadata value")?;
            }
        }
        Ok(())
    }
}

/// candle divides by `general.alignment` when it is an integer type; zero would panic, and
/// GGUF requires a power of two.
fn check_alignment(scan: &Scanner<'_>, value_type: u32, value: &[u8]) -> Result<(), WeightsError> {
    let mut wide = [0u8; 8];
    let alignment = match value_type {
        // u8, i8, u16, i16, u32, i32: little-endian, sign irrelevant once checked non-zero.
        0..=5 => {
            wide[..value.len()].copy_from_slice(value);
            u64::from_le_bytes(wide)
        }
        _ => return Ok(()), // candle ignores other types and uses its default of 32
    };
    let signed_negative =
        matches!(value_type, 1 | 3 | 5) && value.last().is_some_and(|b| b & 0x80 != 0);
    if !signed_negative && !alignment.is_power_of_two() {
        return Err(scan.error(format!(
            "general.alignment {alignment} is not a power of two"
        )));
    }
    Ok(())
}

/// Walks the whole header with bounds checks; returns nothing, only errors.
fn prescan(file: &Path, bytes: &[u8]) -> Result<(), WeightsError> {
    let mut scan = Scanner {
        file,
        bytes,
        pos: 0,
        wide: true,
    };
    scan.u32("magic")?;
    let version = scan.u32("version")?;
    if !(1..=3).contains(&version) {
        return Err(scan.error(format!("unsupported GGUF version {version}")));
    }
    scan.wide = version >= 2;
    let tensor_count = scan.length("tensor count")?;
    let kv_count = scan.length("metadata count")?;
    let min_kv = scan.length_size() + 4 + 1;
    let min_tensor = scan.length_size() + 4 + 4 + 8;
    let needed = kv_count
        .saturating_mul(min_kv)
        .saturating_add(tensor_count.saturating_mul(min_tensor));
    if needed > scan.remaining() {
        return Err(WeightsError::Truncated {
            file: file.to_path_buf(),
            what: format!("GGUF header of {tensor_count} tensors and {kv_count} metadata entries"),
            needed,
            available: scan.remaining(),
        });
    }
    for _ in 0..kv_count {
        let key = scan.string("metadata key")?;
        let value_type = scan.u32("metadata type")?;
        let value_at = scan.pos;
        scan.skip_value(value_type, 0)?;
        if key == b"general.alignment" {
            check_alignment(&scan, value_type, &bytes[value_at..scan.pos])?;
        }
    }
    let mut names: Vec<&[u8]> = Vec::new();
    for _ in 0..tensor_count {
        let name = scan.string("tensor name")?;
        let printable = String::from_utf8_lossy(name).into_owned();
        let dims = scan.u32("tensor rank")?;
        if dims > MAX_DIMS {
            return Err(scan.error(format!("tensor `{printable}` has {dims} dimensions")));
        }
        scan.skip(u64::from(dims) * scan.length_size(), "tensor dimensions")?;
        let type_id = scan.u32("tensor type")?;
        if GgufType::from_ggml_id(type_id).is_none() {
            return Err(WeightsError::UnknownDType {
                file: file.to_path_buf(),
                tensor: printable,
                dtype: format!("ggml type {type_id}"),
            });
        }
        scan.u64("tensor offset")?;
        names.push(name);
    }
    names.sort_unstable();
    if let Some(pair) = names.windows(2).find(|pair| pair[0] == pair[1]) {
        return Err(WeightsError::DuplicateTensor {
            file: file.to_path_buf(),
            tensor: String::from_utf8_lossy(pair[0]).into_owned(),
        });
    }
    Ok(())
}

/// Renders a metadata value for display (`kiln inspect`), eliding long arrays.
fn render(value: &gguf_file::Value) -> String {
    use gguf_file::Value as V;
    match value {
        V::U8(v) => v.to_string(),
        V::I8(v) => v.to_string(),
        V::U16(v) => v.to_string(),
        V::I16(v) => v.to_string(),
        V::U32(v) => v.to_string(),
        V::I32(v) => v.to_string(),
        V::U64(v) => v.to_string(),
        V::I64(v) => v.to_string(),
        V::F32(v) => v.to_string(),
        V::F64(v) => v.to_string(),
        V::Bool(v) => v.to_string(),
        V::String(v) => v.clone(),
        V::Array(items) if items.len() <= MAX_RENDERED_ARRAY => {
            let items: Vec<String> = items.iter().map(render).collect();
            format!("[{}]", items.join(", "))
        }
        V::Array(items) => format!("[{} items]", items.len()),
    }
}

/// Parses a GGUF file held in `bytes`.
pub(crate) fn parse(file: &Path, bytes: &[u8]) -> Result<Parsed, WeightsError> {
    prescan(file, bytes)?;
    let content =
        gguf_file::Content::read(&mut Cursor::new(bytes)).map_err(|e| WeightsError::Gguf {
            file: file.to_path_buf(),
            reason: e.to_string(),
        })?;
    let metadata: BTreeMap<String, String> = content
        .metadata
        .iter()
        .map(|(key, value)| (key.clone(), render(value)))
        .collect();
    let file_len = bytes.len() as u64;
    let mut tensors = Vec::with_capacity(content.tensor_infos.len());
    for (name, info) in &content.tensor_infos {
        let dtype = StorageDType::Gguf(GgufType::from_ggml(info.ggml_dtype));
        let shape = info.shape.dims().to_vec();
        let Some(elements) = checked_elements(shape.iter().map(|&d| d as u64)) else {
            return Err(WeightsError::ShapeOverflow {
                file: file.to_path_buf(),
                tensor: name.clone(),
                shape: shape.iter().map(|&d| d as u64).collect(),
            });
        };
        let Some(len) = dtype.storage_bytes(elements) else {
            return Err(WeightsError::Gguf {
                file: file.to_path_buf(),
                reason: format!(
                    "tensor `{name}` of shape {shape:?} does not fill whole {dtype} blocks"
                ),
            });
        };
        let begin = content.tensor_data_offset.checked_add(info.offset);
        let end = begin.and_then(|b| b.checked_add(len));
        let (Some(begin), Some(end)) = (begin, end) else {
            return Err(WeightsError::OffsetsOutOfRange {
                file: file.to_path_buf(),
                tensor: name.clone(),
                begin: info.offset,
                end: u64::MAX,
                available: file_len,
            });
        };
        if end > file_len {
            return Err(WeightsError::OffsetsOutOfRange {
                file: file.to_path_buf(),
                tensor: name.clone(),
                begin,
                end,
                available: file_len,
            });
        }
        let location = Location::Contiguous {
            buffer: Buffer::File,
            range: begin as usize..end as usize,
        };
        tensors.push((
            TensorInfo {
                name: name.clone(),
                dtype,
                shape,
            },
            location,
        ));
    }
    Ok(Parsed {
        metadata,
        tensors,
        side_buffers: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(tensors: u64, kvs: u64) -> Vec<u8> {
        let mut b = b"GGUF".to_vec();
        b.extend_from_slice(&3u32.to_le_bytes());
        b.extend_from_slice(&tensors.to_le_bytes());
        b.extend_from_slice(&kvs.to_le_bytes());
        b
    }

    #[test]
    fn lying_counts_are_rejected_before_allocating() {
        let bytes = header(u64::MAX / 2, 1 << 40);
        assert!(matches!(
            parse(Path::new("m.gguf"), &bytes),
            Err(WeightsError::Truncated { .. })
        ));
    }

    #[test]
    fn lying_string_and_array_lengths_are_rejected() {
        let mut bytes = header(0, 1);
        bytes.extend_from_slice(&u64::MAX.to_le_bytes()); // key length
        bytes.extend_from_slice(&[0; 16]);
        assert!(matches!(
            parse(Path::new("m.gguf"), &bytes),
            Err(WeightsError::Truncated { .. })
        ));
        let mut bytes = header(0, 1);
        bytes.extend_from_slice(&1u64.to_le_bytes());
        bytes.push(b'k');
        bytes.extend_from_slice(&9u32.to_le_bytes()); // array
        bytes.extend_from_slice(&8u32.to_le_bytes()); // of strings
        bytes.extend_from_slice(&(1u64 << 60).to_le_bytes());
        bytes.extend_from_slice(&[0; 32]);
        assert!(matches!(
            parse(Path::new("m.gguf"), &bytes),
            Err(WeightsError::Gguf { .. })
        ));
    }

    #[test]
    fn zero_alignment_is_rejected_instead_of_dividing_by_zero() {
        let mut bytes = header(0, 1);
        bytes.extend_from_slice(&17u64.to_le_bytes());
        bytes.extend_from_slice(b"general.alignment");
        bytes.extend_from_slice(&4u32.to_le_bytes()); // u32
        bytes.extend_from_slice(&0u32.to_le_bytes());
        assert!(matches!(
            parse(Path::new("m.gguf"), &bytes),
            Err(WeightsError::Gguf { .. })
        ));
    }

    #[test]
    fn unknown_tensor_type_names_the_tensor() {
        let mut bytes = header(1, 0);
        bytes.extend_from_slice(&1u64.to_le_bytes());
        bytes.push(b'w');
        bytes.extend_from_slice(&1u32.to_le_bytes());
        bytes.extend_from_slice(&32u64.to_le_bytes());
        bytes.extend_from_slice(&16u32.to_le_bytes()); // IQ2_XXS: not in candle
        bytes.extend_from_slice(&0u64.to_le_bytes());
        bytes.extend_from_slice(&[0; 64]);
        match parse(Path::new("m.gguf"), &bytes) {
            Err(WeightsError::UnknownDType { tensor, dtype, .. }) => {
                assert_eq!(tensor, "w");
                assert_eq!(dtype, "ggml type 16");
            }
            other => panic!("{:?}", other.err()),
        }
    }
}
