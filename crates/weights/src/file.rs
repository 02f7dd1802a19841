//! [`WeightFile`]: one opened checkpoint of any supported format, its [`TensorInfo`] list, and
//! the ways to get a tensor's bytes or a candle tensor out of it.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::quantized::{QStorage, QTensor};
use candle_core::{DType, Device, Tensor};
use serde::{Serialize, Serializer};

use crate::source::{self, Buffer, Location, Parsed, Source};
use crate::{decode, gguf, safetensors, torch, StorageDType, WeightsError};

/// A tensor's name, storage dtype and shape (PyTorch dimension order) as found in its file.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct TensorInfo {
    /// The name exactly as in the file (no prefix stripped).
    pub name: String,
    /// How the elements are stored.
    pub dtype: StorageDType,
    /// Dimensions, outermost first.
    pub shape: Vec<usize>,
}

impl TensorInfo {
    /// Number of elements (1 for a scalar).
    pub fn elements(&self) -> u64 {
        self.shape
            .iter()
            .fold(1u64, |acc, &d| acc.saturating_mul(d as u64))
    }
}

/// The container format of a weight file, detected from its content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FileFormat {
    /// Hugging Face safetensors.
    Safetensors,
    /// `torch.save` zip archive (torch ≥ 1.6): `.ckpt`, `.pt`, `.pth`, `.bin`.
    TorchZip,
    /// Pre-1.6 `torch.save` concatenated pickles.
    TorchLegacy,
    /// GGUF (llama.cpp / city96 ComfyUI-GGUF quantisations).
    Gguf,
}

impl FileFormat {
    /// The name Kiln prints and serialises: `safetensors`, `pytorch-zip`, `pytorch-legacy`, `gguf`.
    pub fn name(self) -> &'static str {
        match self {
            FileFormat::Safetensors => "safetensors",
            FileFormat::TorchZip => "pytorch-zip",
            FileFormat::TorchLegacy => "pytorch-legacy",
            FileFormat::Gguf => "gguf",
        }
    }

    /// Detects the format from the first bytes of a file.
    fn sniff(file: &Path, bytes: &[u8]) -> Result<FileFormat, WeightsError> {
        if bytes.is_empty() {
            return Err(WeightsError::EmptyFile {
                file: file.to_path_buf(),
            });
        }
        if bytes.len() < 8 {
            return Err(WeightsError::Truncated {
                file: file.to_path_buf(),
                what: "file header".into(),
                needed: 8,
                available: bytes.len() as u64,
            });
        }
        if bytes.starts_with(b"GGUF") {
            Ok(FileFormat::Gguf)
        } else if bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"PK\x05\x06") {
            Ok(FileFormat::TorchZip)
        } else if bytes.starts_with(&torch::LEGACY_PREFIX) {
            Ok(FileFormat::TorchLegacy)
        } else if bytes.get(8) == Some(&b'{') {
            // The safetensors header is a JSON object right after the 8-byte length.
            Ok(FileFormat::Safetensors)
        } else {
            Err(WeightsError::UnknownFormat {
                file: file.to_path_buf(),
                first_bytes: bytes[..8].to_vec(),
            })
        }
    }
}

impl fmt::Display for FileFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for FileFormat {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

/// An opened, validated weight file. Tensor bytes stay in the memory map until asked for.
///
/// Opening validates the whole header (see each format's checks); afterwards every tensor's bytes
/// are known to lie inside the file, so reading a tensor only fails for dtype reasons.
pub struct WeightFile {
    path: PathBuf,
    format: FileFormat,
    /// Shared with the [`MappedTensor`]s handed out, which keep the map alive.
    source: Arc<Source>,
    metadata: BTreeMap<String, String>,
    /// Sorted by name; `locations[i]` belongs to `tensors[i]`.
    tensors: Vec<TensorInfo>,
    locations: Vec<Location>,
    side_buffers: Vec<Vec<u8>>,
}

/// One tensor's bytes in place in a weight file's memory map ([`WeightFile::mapped`]). The map
/// stays alive while any handle does; the bytes count in the process's memory only while their
/// pages are resident, which [`MappedTensor::release_pages`] ends until they are read again.
#[derive(Clone)]
pub struct MappedTensor {
    source: Arc<Source>,
    range: std::ops::Range<usize>,
    dtype: StorageDType,
}

impl fmt::Debug for MappedTensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MappedTensor")
            .field("range", &self.range)
            .field("dtype", &self.dtype)
            .finish_non_exhaustive()
    }
}

impl MappedTensor {
    /// The stored bytes (little-endian elements, row-major).
    pub fn bytes(&self) -> &[u8] {
        self.source.bytes().get(self.range.clone()).unwrap_or(&[])
    }

    /// The stored dtype.
    pub fn dtype(&self) -> StorageDType {
        self.dtype
    }

    /// Lets go of this process's resident copy of the tensor's whole pages (the page cache keeps
    /// them; the next read faults them back in unchanged).
    pub fn release_pages(&self) {
        self.source.release_range(self.range.clone());
    }

    /// Maps the tensor's pages in one call ahead of use, instead of a page fault per 4 KiB.
    pub fn populate(&self) {
        self.source.populate_range(self.range.clone());
    }
}

impl fmt::Debug for WeightFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WeightFile")
            .field("path", &self.path)
            .field("format", &self.format)
            .field("tensors", &self.tensors.len())
            .finish_non_exhaustive()
    }
}

impl WeightFile {
    /// Drops this process's resident copy of the mapped file's pages once its tensors have been
    /// copied out (the loaders copy into tensors they own): without it the file's pages count in
    /// the process's memory next to the loaded weights until the file is closed. Reads after
    /// this fault the bytes back in from the page cache.
    pub fn release_pages(&self) {
        self.source.release_pages();
    }

    /// Opens and memory-maps `path`, detecting the format from its content (never from the
    /// extension), and validates its header.
    pub fn open(path: impl AsRef<Path>) -> Result<WeightFile, WeightsError> {
        let path = path.as_ref();
        let io = |source| WeightsError::Io {
            file: path.to_path_buf(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(io)?;
        if meta.is_dir() {
            return Err(WeightsError::IsADirectory {
                file: path.to_path_buf(),
            });
        }
        let file = File::open(path).map_err(io)?;
        if file.metadata().map_err(io)?.len() == 0 {
            return Err(WeightsError::EmptyFile {
                file: path.to_path_buf(),
            });
        }
        let map = source::map_file(&file, path)?;
        Self::from_source(path.to_path_buf(), Source::Mapped(map))
    }

    /// Parses a weight file already in memory; `name` stands in for the path in errors.
    ///
    /// Meant for tests, fuzzing and files that arrive over the network; regular files should use
    /// [`WeightFile::open`], which does not copy them.
    pub fn from_bytes(
        name: impl Into<PathBuf>,
        bytes: Vec<u8>,
    ) -> Result<WeightFile, WeightsError> {
        Self::from_source(name.into(), Source::Owned(bytes))
    }

    fn from_source(path: PathBuf, source: Source) -> Result<WeightFile, WeightsError> {
        let bytes = source.bytes();
        let format = FileFormat::sniff(&path, bytes)?;
        let parsed = match format {
            FileFormat::Safetensors => safetensors::parse(&path, bytes)?,
            FileFormat::TorchZip => torch::parse_zip(&path, bytes)?,
            FileFormat::TorchLegacy => torch::parse_legacy(&path, bytes)?,
            FileFormat::Gguf => gguf::parse(&path, bytes)?,
        };
        let Parsed {
            metadata,
            mut tensors,
            side_buffers,
        } = parsed;
        tensors.sort_by(|a, b| a.0.name.cmp(&b.0.name));
        if let Some(pair) = tensors
            .windows(2)
            .find(|pair| pair[0].0.name == pair[1].0.name)
        {
            return Err(WeightsError::DuplicateTensor {
                file: path,
                tensor: pair[0].0.name.clone(),
            });
        }
        let (tensors, locations) = tensors.into_iter().unzip();
        Ok(WeightFile {
            path,
            format,
            source: Arc::new(source),
            metadata,
            tensors,
            locations,
            side_buffers,
        })
    }

    /// The path it was opened from (or the name given to [`WeightFile::from_bytes`]).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The detected container format.
    pub fn format(&self) -> FileFormat {
        self.format
    }

    /// String metadata: safetensors `__metadata__`, GGUF key/values (rendered as text), top-level
    /// scalars of a PyTorch checkpoint (`global_step`, …).
    pub fn metadata(&self) -> &BTreeMap<String, String> {
        &self.metadata
    }

    /// Every tensor, sorted by name.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// The tensor called `name`, if any.
    pub fn get(&self, name: &str) -> Option<&TensorInfo> {
        self.index(name).ok().map(|i| &self.tensors[i])
    }

    fn index(&self, name: &str) -> Result<usize, WeightsError> {
        self.tensors
            .binary_search_by(|t| t.name.as_str().cmp(name))
            .map_err(|_| WeightsError::TensorMissing {
                file: self.path.clone(),
                tensor: name.to_string(),
            })
    }

    fn buffer(&self, buffer: Buffer) -> &[u8] {
        match buffer {
            Buffer::File => self.source.bytes(),
            Buffer::Side(i) => self.side_buffers.get(i).map_or(&[][..], Vec::as_slice),
        }
    }

    fn out_of_range(&self, name: &str, begin: usize, end: usize, available: usize) -> WeightsError {
        WeightsError::OffsetsOutOfRange {
            file: self.path.clone(),
            tensor: name.to_string(),
            begin: begin as u64,
            end: end as u64,
            available: available as u64,
        }
    }

    /// The tensor's bytes in place in the file's memory map, when they lie there contiguously
    /// (safetensors and GGUF tensors; not the strided or compressed storages of PyTorch files):
    /// a handle that keeps the map alive, for weights used straight from the file's pages.
    pub fn mapped(&self, name: &str) -> Option<MappedTensor> {
        let index = self.index(name).ok()?;
        match (&*self.source, &self.locations[index]) {
            (
                Source::Mapped(map),
                Location::Contiguous {
                    buffer: Buffer::File,
                    range,
                },
            ) if range.end <= map.len() => Some(MappedTensor {
                source: Arc::clone(&self.source),
                range: range.clone(),
                dtype: self.tensors[index].dtype,
            }),
            _ => None,
        }
    }

    /// The tensor's elements as little-endian bytes in row-major order: borrowed straight from the
    /// memory map when the tensor is contiguous in the file, a gathered copy when it is a strided
    /// PyTorch view.
    pub fn raw_bytes(&self, name: &str) -> Result<Cow<'_, [u8]>, WeightsError> {
        let index = self.index(name)?;
        match &self.locations[index] {
            Location::Contiguous { buffer, range } => {
                let data = self.buffer(*buffer);
                data.get(range.clone())
                    .map(Cow::Borrowed)
                    .ok_or_else(|| self.out_of_range(name, range.start, range.end, data.len()))
            }
            Location::Strided {
                buffer,
                storage,
                element_size,
                offset,
                shape,
                strides,
            } => {
                let data = self.buffer(*buffer);
                let storage_bytes = data.get(storage.clone()).ok_or_else(|| {
                    self.out_of_range(name, storage.start, storage.end, data.len())
                })?;
                gather(storage_bytes, *element_size, *offset, shape, strides)
                    .map(Cow::Owned)
                    .ok_or_else(|| self.out_of_range(name, 0, usize::MAX, storage_bytes.len()))
            }
        }
    }

    /// Decodes the tensor to `f32` on the host, whatever it is stored as (floats, fp8 through the
    /// lookup tables, integers as `as f32`, GGUF blocks dequantised by candle).
    pub fn to_f32_vec(&self, name: &str) -> Result<Vec<f32>, WeightsError> {
        let info = self.tensor_info(name)?;
        let bytes = self.raw_bytes(name)?;
        if let Some(values) = decode::to_f32(info.dtype, &bytes) {
            return Ok(values);
        }
        let candle = |source| self.candle_error(name, source);
        self.load_quantized(name, &Device::Cpu)?
            .dequantize(&Device::Cpu)
            .and_then(|t| t.flatten_all())
            .and_then(|t| t.to_vec1::<f32>())
            .map_err(candle)
    }

    fn tensor_info(&self, name: &str) -> Result<&TensorInfo, WeightsError> {
        self.index(name).map(|i| &self.tensors[i])
    }

    fn candle_error(&self, name: &str, source: candle_core::Error) -> WeightsError {
        WeightsError::Candle {
            file: self.path.clone(),
            tensor: name.to_string(),
            source: Box::new(source),
        }
    }

    /// Loads the tensor as `dtype` on `device`. The conversion happens on the host, so the device
    /// never holds the storage dtype (an fp8 or GGUF tensor reaches a GPU already widened).
    pub fn load(&self, name: &str, dtype: DType, device: &Device) -> Result<Tensor, WeightsError> {
        let info = self.tensor_info(name)?;
        let candle = |source| self.candle_error(name, source);
        let host = match info.dtype.candle_dtype() {
            // fp8 always widens through Kiln's own tables, the reference decoding.
            Some(stored) if !info.dtype.is_fp8() || stored == dtype => {
                let bytes = self.raw_bytes(name)?;
                Tensor::from_raw_buffer(&bytes, stored, &info.shape, &Device::Cpu)
                    .map_err(candle)?
            }
            _ => {
                let values = self.to_f32_vec(name)?;
                Tensor::from_vec(values, info.shape.as_slice(), &Device::Cpu).map_err(candle)?
            }
        };
        host.to_dtype(dtype)
            .and_then(|t| t.to_device(device))
            .map_err(candle)
    }

    /// Loads the tensor in its storage dtype on `device`, when candle has that dtype
    /// ([`StorageDType::candle_dtype`]); otherwise [`WeightsError::UnsupportedDType`].
    pub fn load_stored(&self, name: &str, device: &Device) -> Result<Tensor, WeightsError> {
        let info = self.tensor_info(name)?;
        let Some(stored) = info.dtype.candle_dtype() else {
            return Err(WeightsError::UnsupportedDType {
                file: self.path.clone(),
                tensor: name.to_string(),
                dtype: info.dtype,
            });
        };
        let bytes = self.raw_bytes(name)?;
        Tensor::from_raw_buffer(&bytes, stored, &info.shape, device)
            .map_err(|e| self.candle_error(name, e))
    }

    /// The tensor's storage bytes as a 1-D `U8` tensor on `device` (for device-side widening of
    /// dtypes a backend cannot hold, such as fp8 e5m2).
    pub fn load_raw_u8(&self, name: &str, device: &Device) -> Result<Tensor, WeightsError> {
        let bytes = self.raw_bytes(name)?;
        Tensor::from_raw_buffer(&bytes, DType::U8, &[bytes.len()], device)
            .map_err(|e| self.candle_error(name, e))
    }

    /// A GGUF tensor as a candle [`QTensor`] on `device` (still quantised). Any other tensor is
    /// [`WeightsError::UnsupportedDType`].
    pub fn load_quantized(&self, name: &str, device: &Device) -> Result<QTensor, WeightsError> {
        let info = self.tensor_info(name)?;
        let StorageDType::Gguf(gguf) = info.dtype else {
            return Err(WeightsError::UnsupportedDType {
                file: self.path.clone(),
                tensor: name.to_string(),
                dtype: info.dtype,
            });
        };
        let bytes = self.raw_bytes(name)?;
        // candle reinterprets the bytes as blocks in place and requires their alignment (at most
        // 4, for f32 scales); GGUF aligns data to 32 in practice, but a file need not.
        let words: Vec<u32>;
        let aligned: &[u8] = if (bytes.as_ptr() as usize).is_multiple_of(4) {
            &bytes
        } else {
            let mut copy = vec![0u32; bytes.len().div_ceil(4)];
            bytemuck::cast_slice_mut::<u32, u8>(&mut copy)[..bytes.len()].copy_from_slice(&bytes);
            words = copy;
            &bytemuck::cast_slice::<u32, u8>(&words)[..bytes.len()]
        };
        let candle = |source| self.candle_error(name, source);
        let storage =
            QStorage::from_data(Cow::Borrowed(aligned), device, gguf.to_ggml()).map_err(candle)?;
        QTensor::new(storage, info.shape.as_slice()).map_err(candle)
    }
}

/// Copies a strided view into row-major order; `None` if any element falls outside `storage`.
fn gather(
    storage: &[u8],
    element_size: usize,
    offset: usize,
    shape: &[usize],
    strides: &[usize],
) -> Option<Vec<u8>> {
    let elements = shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))?;
    let mut out = Vec::with_capacity(elements.checked_mul(element_size)?.min(storage.len()));
    if elements == 0 {
        return Some(out);
    }
    let mut index = vec![0usize; shape.len()];
    for _ in 0..elements {
        let element = index
            .iter()
            .zip(strides)
            .try_fold(offset, |acc, (&i, &s)| acc.checked_add(i.checked_mul(s)?))?;
        let start = element.checked_mul(element_size)?;
        out.extend_from_slice(storage.get(start..start.checked_add(element_size)?)?);
        // Odometer increment, innermost dimension fastest.
        for d in (0..shape.len()).rev() {
            index[d] += 1;
            if index[d] < shape[d] {
                break;
            }
            index[d] = 0;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weight_files_can_be_shared_across_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<WeightFile>();
        assert_send_sync::<WeightsError>();
    }

    #[test]
    fn gather_transposes() {
        // storage [0 1 2 3 4 5] as a 2x3 with strides (1, 2) = transpose of a 3x2.
        let storage: Vec<u8> = (0..6).collect();
        assert_eq!(
            gather(&storage, 1, 0, &[2, 3], &[1, 2]).unwrap(),
            vec![0, 2, 4, 1, 3, 5]
        );
        assert_eq!(
            gather(&storage, 2, 1, &[2], &[1]).unwrap(),
            vec![2, 3, 4, 5]
        );
        assert!(gather(&storage, 1, 0, &[2, 3], &[3, 3]).is_none());
    }

    #[test]
    fn sniffing_uses_content_not_extension() {
        let p = Path::new("model.safetensors");
        assert_eq!(
            FileFormat::sniff(p, b"GGUF\x03\0\0\0").unwrap(),
            FileFormat::Gguf
        );
        assert_eq!(
            FileFormat::sniff(p, b"PK\x03\x04abcd").unwrap(),
            FileFormat::TorchZip
        );
        assert!(matches!(
            FileFormat::sniff(p, b"hello world!"),
            Err(WeightsError::UnknownFormat { .. })
        ));
        assert!(matches!(
            FileFormat::sniff(p, b"abc"),
            Err(WeightsError::Truncated { .. })
        ));
        assert_eq!(FileFormat::TorchZip.to_string(), "pytorch-zip");
        assert_eq!(
            serde_json::to_string(&FileFormat::TorchLegacy).unwrap(),
            "\"pytorch-legacy\""
        );
    }
}
