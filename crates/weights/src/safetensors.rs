//! Kiln's own safetensors reader: validates the header of a (memory-mapped) file and locates
//! every tensor's bytes without copying them.
//!
//! Why not the `safetensors` crate: its header parse goes through a `HashMap`, so a file that
//! names one tensor twice is silently merged (the last entry wins); and its errors name neither the
//! file nor the tensor, which is what a user with forty checkpoints needs to see. Here every error
//! is a [`WeightsError`] variant naming the file (and the tensor).
//!
//! Format (<https://github.com/huggingface/safetensors>): an 8-byte little-endian header length
//! `N`, `N` bytes of UTF-8 JSON (an object: tensor name → `{dtype, shape, data_offsets}`, plus an
//! optional `__metadata__` string→string map), then the data section; `data_offsets` are
//! `[begin, end)` relative to the data section.
//!
//! Checks, in order, none of which allocates by a size the file claims before comparing it with
//! the real file length: length prefix present; header length ≤ [`MAX_HEADER_LEN`] and inside the
//! file; header UTF-8 JSON object; no name twice; known dtype; shape product fits; offsets ordered
//! and inside the data section; byte length = elements × element size; no two tensors overlap.
//!
//! The specification also forbids gaps between tensors ("the byte buffer needs to be entirely
//! indexed") and the `safetensors` crate enforces it. Kiln does not: a gap makes a file larger,
//! never ambiguous, and alignment padding written by other tools should not make a checkpoint
//! unloadable. Overlap is rejected because it makes two tensors alias one another.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::de::{self, Deserializer as _, MapAccess, Visitor};
use serde::Deserialize;

use crate::source::{checked_elements, Buffer, Location, Parsed};
use crate::{StorageDType, TensorInfo, WeightsError};

/// Largest header accepted (the `safetensors` crate uses the same 100 MB bound).
pub const MAX_HEADER_LEN: u64 = 100_000_000;

/// One tensor entry exactly as the header states it.
#[derive(Deserialize)]
struct RawEntry {
    dtype: String,
    shape: Vec<u64>,
    data_offsets: [u64; 2],
}

/// The header's entries in file order, duplicates kept, so they can be reported.
#[derive(Default)]
struct RawHeader {
    metadata: Option<BTreeMap<String, String>>,
    entries: Vec<(String, RawEntry)>,
}

/// Visits the header object one key at a time: deserialising into a map type would merge
/// duplicate names before we could see them.
struct HeaderVisitor;

impl<'de> Visitor<'de> for HeaderVisitor {
    type Value = RawHeader;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object of tensor entries")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawHeader, A::Error> {
        let mut header = RawHeader::default();
        while let Some(key) = map.next_key::<String>()? {
            if key == "__metadata__" {
                if header.metadata.is_some() {
                    return Err(de::Error::custom("`__metadata__` appears twice"));
                }
                let metadata = map
                    .next_value::<BTreeMap<String, String>>()
                    .map_err(|e| de::Error::custom(format!("`__metadata__`: {e}")))?;
                header.metadata = Some(metadata);
            } else {
                let entry = map
                    .next_value::<RawEntry>()
                    .map_err(|e| de::Error::custom(format!("tensor `{key}`: {e}")))?;
                header.entries.push((key, entry));
            }
        }
        Ok(header)
    }
}

fn parse_header(file: &Path, header: &[u8]) -> Result<RawHeader, WeightsError> {
    let not_json = |reason: String| WeightsError::HeaderNotJson {
        file: file.to_path_buf(),
        reason,
    };
    let text = std::str::from_utf8(header).map_err(|e| not_json(format!("not UTF-8: {e}")))?;
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let raw = deserializer
        .deserialize_map(HeaderVisitor)
        .map_err(|e| not_json(e.to_string()))?;
    // Trailing spaces are allowed (writers pad the header); anything else is not.
    deserializer.end().map_err(|e| not_json(e.to_string()))?;
    Ok(raw)
}

/// Parses and validates a whole safetensors file held in `bytes`.
pub(crate) fn parse(file: &Path, bytes: &[u8]) -> Result<Parsed, WeightsError> {
    let path = || file.to_path_buf();
    if bytes.is_empty() {
        return Err(WeightsError::EmptyFile { file: path() });
    }
    let Some(prefix) = bytes.first_chunk::<8>() else {
        return Err(WeightsError::Truncated {
            file: path(),
            what: "safetensors header length".into(),
            needed: 8,
            available: bytes.len() as u64,
        });
    };
    let header_len = u64::from_le_bytes(*prefix);
    if header_len > MAX_HEADER_LEN {
        return Err(WeightsError::HeaderTooLarge {
            file: path(),
            header_len,
            limit: MAX_HEADER_LEN,
        });
    }
    let after_prefix = &bytes[8..];
    if header_len > after_prefix.len() as u64 {
        return Err(WeightsError::Truncated {
            file: path(),
            what: "safetensors header".into(),
            needed: header_len,
            available: after_prefix.len() as u64,
        });
    }
    // Fits in usize: bounded by the slice length just above.
    let header_len = header_len as usize;
    let (header, data) = after_prefix.split_at(header_len);
    let data_start = 8 + header_len;
    let raw = parse_header(file, header)?;

    reject_duplicates(file, &raw.entries)?;

    let mut tensors = Vec::with_capacity(raw.entries.len());
    for (name, entry) in raw.entries {
        let (info, range) = validate_entry(file, name, entry, data.len() as u64)?;
        let location = Location::Contiguous {
            buffer: Buffer::File,
            range: data_start + range.start..data_start + range.end,
        };
        tensors.push((info, location));
    }
    reject_overlaps(file, &tensors)?;

    Ok(Parsed {
        metadata: raw.metadata.unwrap_or_default(),
        tensors,
        side_buffers: Vec::new(),
    })
}

fn reject_duplicates(file: &Path, entries: &[(String, RawEntry)]) -> Result<(), WeightsError> {
    let mut names: Vec<&str> = entries.iter().map(|(name, _)| name.as_str()).collect();
    names.sort_unstable();
    match names.windows(2).find(|pair| pair[0] == pair[1]) {
        Some(pair) => Err(WeightsError::DuplicateTensor {
            file: file.to_path_buf(),
            tensor: pair[0].to_string(),
        }),
        None => Ok(()),
    }
}

/// Checks one entry against the data section; returns its info and data-relative byte range.
fn validate_entry(
    file: &Path,
    name: String,
    entry: RawEntry,
    data_len: u64,
) -> Result<(TensorInfo, std::ops::Range<usize>), WeightsError> {
    let Some(dtype) = StorageDType::from_safetensors_name(&entry.dtype) else {
        return Err(WeightsError::UnknownDType {
            file: file.to_path_buf(),
            tensor: name,
            dtype: entry.dtype,
        });
    };
    let overflow = |name: String, shape: Vec<u64>| WeightsError::ShapeOverflow {
        file: file.to_path_buf(),
        tensor: name,
        shape,
    };
    let expected = checked_elements(entry.shape.iter().copied())
        .and_then(|elements| dtype.storage_bytes(elements));
    let Some(expected) = expected else {
        return Err(overflow(name, entry.shape));
    };
    let shape: Option<Vec<usize>> = entry
        .shape
        .iter()
        .map(|&dim| usize::try_from(dim).ok())
        .collect();
    let Some(shape) = shape else {
        return Err(overflow(name, entry.shape));
    };
    let [begin, end] = entry.data_offsets;
    if end < begin || end > data_len {
        return Err(WeightsError::OffsetsOutOfRange {
            file: file.to_path_buf(),
            tensor: name,
            begin,
            end,
            available: data_len,
        });
    }
    if end - begin != expected {
        return Err(WeightsError::ByteLengthMismatch {
            file: file.to_path_buf(),
            tensor: name,
            expected,
            actual: end - begin,
        });
    }
    // Both ≤ data_len, which is a slice length, so they fit in usize.
    let range = begin as usize..end as usize;
    Ok((TensorInfo { name, dtype, shape }, range))
}

fn reject_overlaps(file: &Path, tensors: &[(TensorInfo, Location)]) -> Result<(), WeightsError> {
    let mut ranges: Vec<(&std::ops::Range<usize>, &str)> = tensors
        .iter()
        .filter_map(|(info, location)| match location {
            // Empty tensors occupy no bytes and so overlap nothing.
            Location::Contiguous { range, .. } if !range.is_empty() => {
                Some((range, info.name.as_str()))
            }
            _ => None,
        })
        .collect();
    ranges.sort_unstable_by_key(|(range, _)| range.start);
    match ranges
        .windows(2)
        .find(|pair| pair[1].0.start < pair[0].0.end)
    {
        Some(pair) => Err(WeightsError::OverlappingTensors {
            file: file.to_path_buf(),
            tensor: pair[1].1.to_string(),
            other: pair[0].1.to_string(),
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_with(header: &str, data: &[u8]) -> Vec<u8> {
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend_from_slice(data);
        bytes
    }

    fn parse_err(bytes: &[u8]) -> WeightsError {
        match parse(Path::new("x.safetensors"), bytes) {
            Ok(_) => panic!("expected an error"),
            Err(e) => e,
        }
    }

    #[test]
    fn reads_entries_metadata_and_ranges() {
        let header = r#"{"__metadata__":{"format":"pt"},"b":{"dtype":"F16","shape":[2],"data_offsets":[4,8]},"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}}   "#;
        let bytes = file_with(header, &[0; 8]);
        let parsed = parse(Path::new("x.safetensors"), &bytes).unwrap();
        assert_eq!(parsed.metadata["format"], "pt");
        assert_eq!(parsed.tensors.len(), 2);
        let start = 8 + header.len();
        assert_eq!(
            parsed.tensors[0].1,
            Location::Contiguous {
                buffer: Buffer::File,
                range: start + 4..start + 8
            }
        );
    }

    #[test]
    fn gaps_are_allowed_overlaps_are_not() {
        let gap = r#"{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"b":{"dtype":"U8","shape":[2],"data_offsets":[6,8]}}"#;
        assert!(parse(Path::new("x"), &file_with(gap, &[0; 8])).is_ok());
        let overlap = r#"{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[2],"data_offsets":[3,5]}}"#;
        assert!(matches!(
            parse_err(&file_with(overlap, &[0; 8])),
            WeightsError::OverlappingTensors { tensor, other, .. } if tensor == "b" && other == "a"
        ));
        let empty_inside = r#"{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[0],"data_offsets":[2,2]}}"#;
        assert!(parse(Path::new("x"), &file_with(empty_inside, &[0; 4])).is_ok());
    }

    #[test]
    fn huge_header_length_is_rejected_before_allocating() {
        let mut bytes = u64::MAX.to_le_bytes().to_vec();
        bytes.push(b'{');
        assert!(matches!(
            parse_err(&bytes),
            WeightsError::HeaderTooLarge { .. }
        ));
        let mut bytes = 1000u64.to_le_bytes().to_vec();
        bytes.extend_from_slice(b"{}");
        assert!(matches!(
            parse_err(&bytes),
            WeightsError::Truncated {
                needed: 1000,
                available: 2,
                ..
            }
        ));
    }

    #[test]
    fn shape_overflow_and_unknown_dtype_name_the_tensor() {
        let big = r#"{"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,0]}}"#;
        assert!(matches!(
            parse_err(&file_with(big, &[])),
            WeightsError::ShapeOverflow { tensor, .. } if tensor == "w"
        ));
        let hidden =
            r#"{"w":{"dtype":"F32","shape":[0,1099511627776,1099511627776],"data_offsets":[0,0]}}"#;
        assert!(matches!(
            parse_err(&file_with(hidden, &[])),
            WeightsError::ShapeOverflow { .. }
        ));
        let c64 = r#"{"w":{"dtype":"C64","shape":[1],"data_offsets":[0,8]}}"#;
        assert!(matches!(
            parse_err(&file_with(c64, &[0; 8])),
            WeightsError::UnknownDType { tensor, dtype, .. } if tensor == "w" && dtype == "C64"
        ));
    }

    #[test]
    fn malformed_entries_are_not_json_errors_naming_the_tensor() {
        let missing = r#"{"w":{"dtype":"F32","shape":[1]}}"#;
        match parse_err(&file_with(missing, &[])) {
            WeightsError::HeaderNotJson { reason, .. } => {
                assert!(reason.contains("`w`"), "{reason}")
            }
            other => panic!("{other}"),
        }
        let not_object = "[1,2]";
        assert!(matches!(
            parse_err(&file_with(not_object, &[])),
            WeightsError::HeaderNotJson { .. }
        ));
        let trailing = r#"{} x"#;
        assert!(matches!(
            parse_err(&file_with(trailing, &[])),
            WeightsError::HeaderNotJson { .. }
        ));
        let bad_utf8 = file_with("{\"\u{e9}\":1}", &[]);
        let mut bad_utf8 = bad_utf8;
        bad_utf8[10] = 0xFF;
        assert!(matches!(
            parse_err(&bad_utf8),
            WeightsError::HeaderNotJson { .. }
        ));
    }
}
