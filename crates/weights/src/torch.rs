//! PyTorch checkpoints (`.ckpt`, `.pt`, `.pth`, `.bin`): the `torch.save` zip format (torch ≥ 1.6)
//! and the legacy concatenated-pickle format, read through [`crate::pickle`] without executing
//! anything.
//!
//! Zip layout: `<archive>/data.pkl` (the pickled object; tensors refer to storages by persistent
//! id), `<archive>/data/<key>` (one entry per storage, raw little-endian elements, normally
//! STORED so they are used in place from the memory map), `<archive>/byteorder`.
//!
//! Legacy layout: five pickles back to back (magic number, protocol version, system info, the
//! object, the list of storage keys), then for each key an 8-byte element count and the raw
//! elements.
//!
//! Like ComfyUI's `load_torch_file`, a top-level `state_dict` dict is unwrapped, and the tensors
//! are the top-level string-keyed tensor entries of the resulting dict. Top-level scalars
//! (`global_step`, `epoch`) are reported as metadata; everything else is ignored.

use std::collections::{BTreeMap, HashMap};
use std::io::{Cursor, Read};
use std::ops::Range;
use std::path::Path;
use std::rc::Rc;

use zip::{CompressionMethod, ZipArchive};

use crate::pickle::{self, StorageRef, TensorRef, Unpickled, Value};
use crate::source::{checked_elements, Buffer, Location, Parsed};
use crate::{TensorInfo, WeightsError};

/// The pickled `LONG1` with which a legacy checkpoint starts (after `PROTO 2`):
/// torch's magic number 0x1950a86a20f9469cfc6c.
pub(crate) const LEGACY_PREFIX: [u8; 14] = [
    0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19,
];

/// Deflate cannot expand data by more than ~1032×; a zip entry claiming more is lying.
const MAX_INFLATE_RATIO: u64 = 1100;

/// Compressed entries are rare in checkpoints (torch writes STORED); all of an archive's
/// inflated entries together may take at most this many times the file size, plus
/// [`INFLATE_ALLOWANCE`]. Zip central directories can point many entries at one compressed
/// stream, so a per-entry ratio alone does not bound the total.
const MAX_TOTAL_INFLATE_FACTOR: u64 = 16;
const INFLATE_ALLOWANCE: u64 = 64 << 20;

fn zip_error(file: &Path, reason: impl std::fmt::Display) -> WeightsError {
    WeightsError::Zip {
        file: file.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// Where a storage's bytes are.
#[derive(Clone)]
struct StorageBytes {
    buffer: Buffer,
    range: Range<usize>,
}

/// Reads one zip entry: a range of the file when STORED, otherwise inflated into a side buffer.
fn entry_bytes(
    file: &Path,
    bytes: &[u8],
    archive: &mut ZipArchive<Cursor<&[u8]>>,
    index: usize,
    side_buffers: &mut Vec<Vec<u8>>,
) -> Result<StorageBytes, WeightsError> {
    let (name, method, start, compressed, size) = {
        let entry = archive
            .by_index_raw(index)
            .map_err(|e| zip_error(file, e))?;
        if entry.encrypted() {
            return Err(zip_error(
                file,
                format!("entry `{}` is encrypted", entry.name().unwrap_or_default()),
            ));
        }
        let start = entry
            .data_start()
            .ok_or_else(|| zip_error(file, "entry without a data offset"))?;
        (
            entry.name().unwrap_or_default().to_string(),
            entry.compression(),
            start,
            entry.compressed_size(),
            entry.size(),
        )
    };
    let end = start.checked_add(compressed);
    if end.is_none_or(|end| end > bytes.len() as u64) {
        return Err(WeightsError::Truncated {
            file: file.to_path_buf(),
            what: format!("zip entry `{name}`"),
            needed: start.saturating_add(compressed),
            available: bytes.len() as u64,
        });
    }
    if method == CompressionMethod::Stored {
        if compressed != size {
            return Err(zip_error(
                file,
                format!("stored entry `{name}` has two sizes"),
            ));
        }
        // Both bounded by the slice length checked above.
        let range = start as usize..(start + size) as usize;
        return Ok(StorageBytes {
            buffer: Buffer::File,
            range,
        });
    }
    if size
        > compressed
            .saturating_mul(MAX_INFLATE_RATIO)
            .saturating_add(1024)
    {
        return Err(zip_error(
            file,
            format!("entry `{name}` claims {size} bytes from {compressed} compressed"),
        ));
    }
    let inflated_so_far: u64 = side_buffers.iter().map(|b| b.len() as u64).sum();
    let total_limit = (bytes.len() as u64)
        .saturating_mul(MAX_TOTAL_INFLATE_FACTOR)
        .saturating_add(INFLATE_ALLOWANCE);
    if inflated_so_far.saturating_add(size) > total_limit {
        return Err(zip_error(
            file,
            format!("compressed entries inflate to more than {total_limit} bytes in total"),
        ));
    }
    let mut inflated = Vec::new();
    let reader = archive.by_index(index).map_err(|e| zip_error(file, e))?;
    // Growth is driven by the bytes actually produced, never by the declared size.
    reader
        .take(size.saturating_add(1))
        .read_to_end(&mut inflated)
        .map_err(|e| zip_error(file, format!("entry `{name}`: {e}")))?;
    if inflated.len() as u64 != size {
        return Err(zip_error(
            file,
            format!(
                "entry `{name}` inflates to {} bytes, not {size}",
                inflated.len()
            ),
        ));
    }
    let range = 0..inflated.len();
    side_buffers.push(inflated);
    Ok(StorageBytes {
        buffer: Buffer::Side(side_buffers.len() - 1),
        range,
    })
}

fn buffer_slice<'a>(bytes: &'a [u8], side: &'a [Vec<u8>], at: &StorageBytes) -> &'a [u8] {
    let buffer = match at.buffer {
        Buffer::File => bytes,
        Buffer::Side(i) => side.get(i).map_or(&[][..], Vec::as_slice),
    };
    buffer.get(at.range.clone()).unwrap_or_default()
}

/// Parses a `torch.save` zip checkpoint.
pub(crate) fn parse_zip(file: &Path, bytes: &[u8]) -> Result<Parsed, WeightsError> {
    let mut archive = ZipArchive::new(Cursor::new(bytes)).map_err(|e| zip_error(file, e))?;
    let pickle_name = archive
        .file_names_raw()
        .filter_map(|name| std::str::from_utf8(name).ok())
        .filter(|name| name.ends_with("data.pkl"))
        .map(str::to_string)
        .find(|name| {
            let prefix = &name[..name.len() - "data.pkl".len()];
            prefix.is_empty() || (prefix.ends_with('/') && prefix.matches('/').count() == 1)
        })
        .ok_or_else(|| zip_error(file, "no `data.pkl` entry: not a torch.save archive"))?;
    let prefix = pickle_name[..pickle_name.len() - "data.pkl".len()].to_string();
    let mut side_buffers = Vec::new();

    if let Some(index) = archive.index_for_name(&format!("{prefix}byteorder")) {
        let at = entry_bytes(file, bytes, &mut archive, index, &mut side_buffers)?;
        if buffer_slice(bytes, &side_buffers, &at) == b"big" {
            return Err(zip_error(file, "big-endian checkpoints are not supported"));
        }
    }

    let pickle_index = archive
        .index_for_name(&pickle_name)
        .ok_or_else(|| zip_error(file, "`data.pkl` vanished"))?;
    let pickle_at = entry_bytes(file, bytes, &mut archive, pickle_index, &mut side_buffers)?;
    let unpickled = pickle::unpickle(file, buffer_slice(bytes, &side_buffers, &pickle_at))?;

    let mut storages: HashMap<Rc<str>, StorageBytes> = HashMap::new();
    for storage in &unpickled.storages {
        if storages.contains_key(&storage.key) {
            continue;
        }
        let entry_name = format!("{prefix}data/{}", storage.key);
        let index = archive
            .index_for_name(&entry_name)
            .ok_or_else(|| zip_error(file, format!("storage entry `{entry_name}` is missing")))?;
        let at = entry_bytes(file, bytes, &mut archive, index, &mut side_buffers)?;
        storages.insert(storage.key.clone(), at);
    }

    let mut parsed = collect(file, &unpickled, |storage| {
        storages.get(&storage.key).cloned()
    })?;
    parsed.side_buffers = side_buffers;
    Ok(parsed)
}

/// Parses a legacy (pre-1.6, non-zip) `torch.save` file.
pub(crate) fn parse_legacy(file: &Path, bytes: &[u8]) -> Result<Parsed, WeightsError> {
    let mut pos = 0usize;
    let next_pickle = |pos: &mut usize| -> Result<Unpickled, WeightsError> {
        let rest = bytes.get(*pos..).unwrap_or_default();
        let unpickled = pickle::unpickle(file, rest)?;
        *pos += unpickled.consumed;
        Ok(unpickled)
    };
    let _magic = next_pickle(&mut pos)?;
    let protocol = next_pickle(&mut pos)?;
    if !matches!(protocol.root, Value::Int(1001)) {
        return Err(WeightsError::Pickle {
            file: file.to_path_buf(),
            reason: "legacy checkpoint with an unknown protocol version".into(),
        });
    }
    let sys_info = next_pickle(&mut pos)?;
    let big_endian = sys_info
        .dict_entries(&sys_info.root)
        .is_some_and(|entries| {
            entries.iter().any(|(k, v)| {
                matches!(k, Value::Str(k) if &**k == "little_endian")
                    && matches!(v, Value::Bool(false))
            })
        });
    if big_endian {
        return Err(WeightsError::Pickle {
            file: file.to_path_buf(),
            reason: "big-endian checkpoints are not supported".into(),
        });
    }
    let object = next_pickle(&mut pos)?;
    let keys = next_pickle(&mut pos)?;
    let key_list = keys
        .list_items(&keys.root)
        .ok_or_else(|| WeightsError::Pickle {
            file: file.to_path_buf(),
            reason: "legacy storage key list is not a list".into(),
        })?;

    let dtype_of: HashMap<&str, &StorageRef> =
        object.storages.iter().map(|s| (&*s.key, &**s)).collect();
    let mut storages: HashMap<Rc<str>, StorageBytes> = HashMap::new();
    for key in key_list {
        let Value::Str(key) = key else {
            return Err(WeightsError::Pickle {
                file: file.to_path_buf(),
                reason: "legacy storage key is not a string".into(),
            });
        };
        let Some(storage) = dtype_of.get(&**key) else {
            return Err(WeightsError::Pickle {
                file: file.to_path_buf(),
                reason: format!("storage `{key}` is listed but never used"),
            });
        };
        let element_size = storage.dtype.element_size().unwrap_or(1) as u64;
        let count_at = bytes
            .get(pos..pos + 8)
            .ok_or_else(|| WeightsError::Truncated {
                file: file.to_path_buf(),
                what: format!("size of storage `{key}`"),
                needed: 8,
                available: bytes.len().saturating_sub(pos) as u64,
            })?;
        let mut count = [0u8; 8];
        count.copy_from_slice(count_at);
        pos += 8;
        let len = u64::from_le_bytes(count).checked_mul(element_size);
        let available = (bytes.len() - pos) as u64;
        let Some(len) = len.filter(|&len| len <= available) else {
            return Err(WeightsError::Truncated {
                file: file.to_path_buf(),
                what: format!("storage `{key}`"),
                needed: u64::from_le_bytes(count).saturating_mul(element_size),
                available,
            });
        };
        let range = pos..pos + len as usize;
        pos = range.end;
        storages.insert(
            key.clone(),
            StorageBytes {
                buffer: Buffer::File,
                range,
            },
        );
    }

    collect(file, &object, |storage| {
        let root = storages.get(&storage.key)?.clone();
        let Some((_, offset, size)) = &storage.view else {
            return Some(root);
        };
        let element_size = storage.dtype.element_size()? as u64;
        let begin = offset.checked_mul(element_size)?;
        let end = offset.checked_add(*size)?.checked_mul(element_size)?;
        let len = root.range.len() as u64;
        if end > len {
            return None;
        }
        Some(StorageBytes {
            buffer: root.buffer,
            range: root.range.start + begin as usize..root.range.start + end as usize,
        })
    })
}

/// Turns the unpickled object into tensors (after the `state_dict` unwrap) and metadata.
fn collect(
    file: &Path,
    unpickled: &Unpickled,
    storage_bytes: impl Fn(&StorageRef) -> Option<StorageBytes>,
) -> Result<Parsed, WeightsError> {
    let not_dict = || WeightsError::Pickle {
        file: file.to_path_buf(),
        reason: "the checkpoint's top-level object is not a dict".into(),
    };
    let root = unpickled
        .dict_entries(&unpickled.root)
        .ok_or_else(not_dict)?;
    let state_dict = root.iter().find_map(|(key, value)| match key {
        Value::Str(key) if &**key == "state_dict" => unpickled.dict_entries(value),
        _ => None,
    });
    let entries = state_dict.unwrap_or(root);

    // Scalars beside the state dict (`global_step`, `epoch`) and inside it are both reported.
    let mut metadata = BTreeMap::new();
    for (key, value) in root.iter().chain(state_dict.unwrap_or_default()) {
        let Value::Str(name) = key else { continue };
        let text = match value {
            Value::Int(v) => v.to_string(),
            Value::Float(v) => v.to_string(),
            Value::Bool(v) => v.to_string(),
            Value::Str(v) => v.to_string(),
            _ => continue,
        };
        metadata.insert(name.to_string(), text);
    }

    let mut tensors = Vec::new();
    for (key, value) in entries {
        let (Value::Str(name), Value::Tensor(tensor)) = (key, value) else {
            continue;
        };
        let at = storage_bytes(&tensor.storage).ok_or_else(|| WeightsError::Pickle {
            file: file.to_path_buf(),
            reason: format!("tensor `{name}` refers to a storage whose bytes are missing"),
        })?;
        tensors.push(locate(file, name, tensor, at)?);
    }
    Ok(Parsed {
        metadata,
        tensors,
        side_buffers: Vec::new(),
    })
}

/// Validates a tensor view against its storage's real bytes and says where its bytes are.
fn locate(
    file: &Path,
    name: &str,
    tensor: &TensorRef,
    at: StorageBytes,
) -> Result<(TensorInfo, Location), WeightsError> {
    let dtype = tensor
        .dtype
        .map_err(|torch_dtype| WeightsError::UnknownDType {
            file: file.to_path_buf(),
            tensor: name.to_string(),
            dtype: torch_dtype.to_string(),
        })?;
    let element_size = dtype.element_size().unwrap_or(1);
    let storage_element_size = tensor.storage.dtype.element_size().unwrap_or(1);
    let storage_len = at.range.len() as u64;
    let overflow = || WeightsError::ShapeOverflow {
        file: file.to_path_buf(),
        tensor: name.to_string(),
        shape: tensor.shape.clone(),
    };
    let declared = tensor
        .storage
        .numel
        .checked_mul(storage_element_size as u64)
        .ok_or_else(overflow)?;
    if tensor.storage.view.is_none() && declared != storage_len {
        return Err(WeightsError::ByteLengthMismatch {
            file: file.to_path_buf(),
            tensor: name.to_string(),
            expected: declared,
            actual: storage_len,
        });
    }
    let shape: Vec<usize> = tensor
        .shape
        .iter()
        .map(|&d| usize::try_from(d).ok())
        .collect::<Option<_>>()
        .ok_or_else(overflow)?;
    let elements = checked_elements(tensor.shape.iter().copied()).ok_or_else(overflow)?;
    let info = TensorInfo {
        name: name.to_string(),
        dtype,
        shape: shape.clone(),
    };
    if elements == 0 {
        let start = at.range.start;
        let location = Location::Contiguous {
            buffer: at.buffer,
            range: start..start,
        };
        return Ok((info, location));
    }
    let last_element = tensor
        .shape
        .iter()
        .zip(&tensor.strides)
        .try_fold(tensor.offset, |acc, (&dim, &stride)| {
            (dim - 1)
                .checked_mul(stride)
                .and_then(|step| acc.checked_add(step))
        })
        .ok_or_else(overflow)?;
    let end = last_element
        .checked_add(1)
        .and_then(|n| n.checked_mul(element_size as u64))
        .ok_or_else(overflow)?;
    // A view never needs more bytes than its storage unless it broadcasts (stride 0); refusing
    // those keeps every gathered copy bounded by the file size.
    if elements.saturating_mul(element_size as u64) > storage_len {
        return Err(WeightsError::Pickle {
            file: file.to_path_buf(),
            reason: format!("tensor `{name}` is a broadcast view larger than its storage"),
        });
    }
    if end > storage_len {
        return Err(WeightsError::OffsetsOutOfRange {
            file: file.to_path_buf(),
            tensor: name.to_string(),
            begin: tensor.offset.saturating_mul(element_size as u64),
            end,
            available: storage_len,
        });
    }
    // Everything below is ≤ storage_len, a slice length, so fits in usize.
    let offset = tensor.offset as usize;
    let strides: Vec<usize> = tensor.strides.iter().map(|&s| s as usize).collect();
    if is_row_major(&shape, &strides) {
        let start = at.range.start + offset * element_size;
        let location = Location::Contiguous {
            buffer: at.buffer,
            range: start..start + elements as usize * element_size,
        };
        Ok((info, location))
    } else {
        let location = Location::Strided {
            buffer: at.buffer,
            storage: at.range,
            element_size,
            offset,
            shape,
            strides,
        };
        Ok((info, location))
    }
}

/// True when `strides` are the row-major strides of `shape` (size-1 dimensions may have any).
fn is_row_major(shape: &[usize], strides: &[usize]) -> bool {
    let mut expected = 1usize;
    for (&dim, &stride) in shape.iter().zip(strides).rev() {
        if dim != 1 && stride != expected {
            return false;
        }
        expected = expected.saturating_mul(dim);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_major_detection_ignores_unit_dims() {
        assert!(is_row_major(&[2, 3], &[3, 1]));
        assert!(is_row_major(&[2, 1, 3], &[3, 99, 1]));
        assert!(!is_row_major(&[2, 3], &[1, 2]));
        assert!(is_row_major(&[], &[]));
    }

    #[test]
    fn views_past_their_storage_are_rejected() {
        let storage = Rc::new(StorageRef {
            key: Rc::from("0"),
            dtype: crate::StorageDType::F32,
            numel: 4,
            view: None,
        });
        let tensor = TensorRef {
            storage,
            dtype: Ok(crate::StorageDType::F32),
            offset: 1,
            shape: vec![2, 2],
            strides: vec![2, 1],
        };
        let at = StorageBytes {
            buffer: Buffer::File,
            range: 0..16,
        };
        assert!(matches!(
            locate(Path::new("t.pt"), "w", &tensor, at.clone()),
            Err(WeightsError::OffsetsOutOfRange { end: 20, .. })
        ));
        let transposed = TensorRef {
            offset: 0,
            strides: vec![1, 2],
            ..tensor
        };
        let (_, location) = locate(Path::new("t.pt"), "w", &transposed, at).unwrap();
        assert!(matches!(location, Location::Strided { .. }));
    }
}
