//! Held tensors: a weight in the form its device can keep (native dtype, fp8 bytes, native fp8 or
//! GGUF blocks), the rule choosing that form, and widening to the compute dtype per layer.

use std::sync::Arc;

use candle_core::quantized::QTensor;
use candle_core::{DType, Device, Shape, Tensor};
use kiln_weights::{GgufType, MappedTensor, StorageDType, E4M3FN_TABLE, E5M2_TABLE};

use crate::capability::CapabilityProfile;
use crate::dtype_rules::{is_quantized, plain_float, storage_of};
use crate::plan::HeldAs;
use crate::RuntimeError;

/// The form a stored tensor takes on its device, decided by [`hold_target`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HoldTarget {
    /// Converted on the host (if needed) to this candle dtype.
    Native(DType),
    /// fp8 e4m3fn as candle's `F8E4M3`.
    Fp8Native,
    /// fp8 codes of this format as `U8` bytes.
    Fp8Bytes(StorageDType),
    /// GGUF blocks.
    Quantized(GgufType),
}

impl HoldTarget {
    /// The device element form.
    pub(crate) fn held_as(self) -> HeldAs {
        match self {
            HoldTarget::Native(dtype) => HeldAs::Dtype(dtype),
            HoldTarget::Fp8Native => HeldAs::Dtype(DType::F8E4M3),
            HoldTarget::Fp8Bytes(_) => HeldAs::Dtype(DType::U8),
            HoldTarget::Quantized(g) => HeldAs::Quantized(g),
        }
    }

    /// Bytes `elements` values take in this form (GGUF: whole blocks; partial blocks count as
    /// one byte per element, an estimate only).
    pub(crate) fn bytes(self, elements: u64) -> u64 {
        match self {
            HoldTarget::Native(dtype) => elements.saturating_mul(dtype.size_in_bytes() as u64),
            HoldTarget::Fp8Native | HoldTarget::Fp8Bytes(_) => elements,
            HoldTarget::Quantized(g) => StorageDType::Gguf(g)
                .storage_bytes(elements)
                .unwrap_or(elements),
        }
    }
}

/// How a tensor stored as `source` is held when its component is planned as `storage`/`compute`
/// on `profile`. `is_matrix` (rank ≥ 2) decides whether a forced fp8 storage applies: biases and
/// norms keep their float dtype.
///
/// Every returned form is one `profile` can hold: fp8 goes native only where the device both
/// holds `F8E4M3` and casts it to the compute dtype, otherwise it stays bytes; a float the device
/// cannot hold falls back to the compute dtype.
pub(crate) fn hold_target(
    source: StorageDType,
    is_matrix: bool,
    storage: StorageDType,
    compute: DType,
    profile: &CapabilityProfile,
) -> Option<HoldTarget> {
    let compute_storage = storage_of(compute);
    let fp8 = |format: StorageDType| {
        if profile.can_hold(format) && profile.can_cast(format, compute_storage) {
            HoldTarget::Fp8Native
        } else {
            HoldTarget::Fp8Bytes(format)
        }
    };
    let float = |wanted: StorageDType| match wanted.candle_dtype() {
        Some(dtype) if profile.can_hold(wanted) && profile.can_cast(wanted, compute_storage) => {
            HoldTarget::Native(dtype)
        }
        _ => HoldTarget::Native(compute),
    };
    let source = plain_float(source);
    let storage = plain_float(storage);
    Some(match source {
        // GGUF files mix quantisations (Q4_K with Q6_K layers): every quantised tensor of a
        // GGUF-planned component stays quantised where the device has kernels for its type.
        StorageDType::Gguf(g) => {
            if is_quantized(storage) && profile.can_hold(source) {
                HoldTarget::Quantized(g)
            } else {
                HoldTarget::Native(compute)
            }
        }
        StorageDType::F8E4M3 | StorageDType::F8E5M2 => {
            if storage.is_fp8() {
                fp8(storage)
            } else if is_quantized(storage) {
                float(source)
            } else {
                float(storage)
            }
        }
        StorageDType::F64 | StorageDType::F32 | StorageDType::F16 | StorageDType::BF16 => {
            if storage.is_fp8() {
                if is_matrix {
                    fp8(storage)
                } else {
                    float(source)
                }
            } else if is_quantized(storage) {
                float(source)
            } else {
                float(storage)
            }
        }
        StorageDType::U8 => HoldTarget::Native(DType::U8),
        StorageDType::I64 | StorageDType::I32 | StorageDType::I16 => {
            let dtype = source.candle_dtype()?;
            if profile.can_hold(source) {
                HoldTarget::Native(dtype)
            } else {
                HoldTarget::Native(DType::I64)
            }
        }
        StorageDType::I8 | StorageDType::Bool => return None,
    })
}

/// The id candle's `index_select` treats as padding for `U8` ids: it writes zeros instead of
/// gathering (CPU `IndexSelect`, `candle-kernels/src/indexing.cu` and Metal `indexing.metal` all
/// compare against the id type's maximum). In both fp8 formats 0xFF is a NaN (−NaN).
const U8_PADDING_ID: u8 = 0xFF;

/// The positive NaN code of both fp8 formats, which 0xFF is rewritten to.
const POSITIVE_NAN_CODE: u8 = 0x7F;

/// Rewrites the code candle would gather as padding (0xFF, −NaN) to +NaN (0x7F), so a lookup
/// table widens every code to its value (up to the sign of NaN).
pub fn canonical_fp8_codes(codes: &mut [u8]) {
    for code in codes.iter_mut().filter(|code| **code == U8_PADDING_ID) {
        *code = POSITIVE_NAN_CODE;
    }
}

/// A mapped tensor copied into a candle tensor in its stored dtype.
fn copy_out(bytes: &MappedTensor, dtype: DType, shape: &Shape) -> Result<Tensor, RuntimeError> {
    Tensor::from_raw_buffer(bytes.bytes(), dtype, shape.dims(), &Device::Cpu)
        .map_err(RuntimeError::candle("copying out a mapped weight"))
}

/// A mapped tensor's elements, borrowed from the file's pages.
#[derive(Debug, Clone, Copy)]
pub enum MappedValues<'a> {
    /// f32 elements.
    F32(&'a [f32]),
    /// f16 elements.
    F16(&'a [half::f16]),
    /// bf16 elements.
    BF16(&'a [half::bf16]),
}

/// One weight as its device holds it.
#[derive(Debug, Clone)]
pub enum HeldTensor {
    /// A tensor in a dtype the device holds (possibly already the compute dtype).
    Native(Tensor),
    /// fp8 codes as flat `U8` bytes (the device cannot hold this fp8 format), widened through a
    /// 256-entry lookup table. Build it with [`HeldTensor::fp8_bytes`]: the bytes must not contain
    /// 0xFF, which candle's gather reads as padding (see [`canonical_fp8_codes`]).
    Fp8Bytes {
        /// Flat (rank-1) `U8` codes on the device.
        bytes: Tensor,
        /// `F8E4M3` or `F8E5M2`.
        format: StorageDType,
        /// The logical shape.
        shape: Shape,
        /// Per-tensor scale of scaled-fp8 checkpoints.
        scale: Option<f32>,
    },
    /// fp8 e4m3fn held as candle's `F8E4M3`, widened by an on-device cast.
    Fp8Native {
        /// The `F8E4M3` tensor on the device.
        tensor: Tensor,
        /// Per-tensor scale of scaled-fp8 checkpoints.
        scale: Option<f32>,
    },
    /// A float tensor used in place from its file's memory map (CPU plans, tensors stored as
    /// they are held): never copied for the kernels that read it ([`HeldTensor::mapped_values`]),
    /// copied out for everything else, and resident only while its pages are
    /// ([`HeldTensor::release_pages`]).
    Mapped {
        /// The bytes in the map.
        bytes: MappedTensor,
        /// f32, f16 or bf16.
        dtype: DType,
        /// The shape.
        shape: Shape,
    },
    /// GGUF blocks for candle's quantised matmul.
    Quantized(Arc<QTensor>),
    /// GGUF blocks stored in a shape other than their logical one (city96's converter flattens
    /// UNet convs and short-row matrices to `[n / 256, 256]`) whose logical rows do not fill whole
    /// blocks, so quantised matmul cannot use them: kept quantised, dequantised and reshaped to
    /// `shape` when widened.
    QuantizedFlat {
        /// The blocks, in their stored shape.
        blocks: Arc<QTensor>,
        /// The logical shape.
        shape: Shape,
    },
}

/// The decode table of an fp8 format.
fn decode_table(format: StorageDType) -> Option<&'static [f32; 256]> {
    match format {
        StorageDType::F8E4M3 => Some(&E4M3FN_TABLE),
        StorageDType::F8E5M2 => Some(&E5M2_TABLE),
        _ => None,
    }
}

/// The 256-entry table for `format`, times `scale`, in `compute` on `device`. The scale is baked in
/// before rounding to the compute dtype, so scaled fp8 is rounded once.
pub(crate) fn lookup_table(
    format: StorageDType,
    scale: Option<f32>,
    compute: DType,
    device: &Device,
) -> Result<Tensor, RuntimeError> {
    Tensor::from_vec(scaled_table(format, scale)?, 256, device)
        .and_then(|t| t.to_dtype(compute))
        .map_err(RuntimeError::candle(format!(
            "building the {format} lookup table"
        )))
}

/// `format`'s 256 decoded values times `scale`, in f32.
fn scaled_table(format: StorageDType, scale: Option<f32>) -> Result<Vec<f32>, RuntimeError> {
    let table = decode_table(format).ok_or_else(|| RuntimeError::UnsupportedTensorDType {
        tensor: "fp8 lookup table".to_string(),
        dtype: format,
    })?;
    Ok(match scale {
        Some(scale) => table.iter().map(|v| v * scale).collect(),
        None => table.to_vec(),
    })
}

/// `codes` decoded through `format`'s table times `scale`, as f32, split over the cores. On the
/// CPU this replaces candle's paths: its F8E4M3 cast converts one element at a time through
/// `float8` and its gather runs on one thread, together several seconds per Flux step.
fn decode_codes(
    codes: impl Fn(usize) -> u8 + Sync,
    count: usize,
    format: StorageDType,
    scale: Option<f32>,
) -> Result<Vec<f32>, RuntimeError> {
    let table = scaled_table(format, scale)?;
    let mut values = vec![0f32; count];
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = count.div_ceil(threads.max(1)).max(1 << 16);
    std::thread::scope(|scope| {
        for (index, part) in values.chunks_mut(chunk).enumerate() {
            let (table, codes) = (&table, &codes);
            scope.spawn(move || {
                let start = index * chunk;
                for (offset, value) in part.iter_mut().enumerate() {
                    *value = table[usize::from(codes(start + offset))];
                }
            });
        }
    });
    Ok(values)
}

/// `tensor` (contiguous, on the CPU) decoded on the host ([`decode_codes`]) from its elements
/// of type `T` read as fp8 codes by `code`, into `shape`; `None` off the CPU.
fn decode_on_host<T: candle_core::WithDType>(
    tensor: &Tensor,
    code: impl Fn(&T) -> u8 + Sync,
    format: StorageDType,
    scale: Option<f32>,
    shape: &Shape,
) -> Result<Option<Tensor>, RuntimeError> {
    if !tensor.device().is_cpu() || !tensor.is_contiguous() {
        return Ok(None);
    }
    let (storage, layout) = tensor.storage_and_layout();
    let candle_core::Storage::Cpu(cpu) = &*storage else {
        return Ok(None);
    };
    let elements = cpu
        .as_slice::<T>()
        .map_err(RuntimeError::candle("reading fp8 codes"))?;
    let start = layout.start_offset();
    let elements = &elements[start..start + tensor.elem_count()];
    let values = decode_codes(|i| code(&elements[i]), elements.len(), format, scale)?;
    Tensor::from_vec(values, shape.clone(), &Device::Cpu)
        .map(Some)
        .map_err(RuntimeError::candle("shaping decoded fp8 codes"))
}

/// GGUF blocks copied byte for byte to `device`.
fn move_blocks(q: &QTensor, device: &Device) -> Result<Arc<QTensor>, RuntimeError> {
    let moving = |source| RuntimeError::Candle {
        context: "moving GGUF blocks to their device".to_string(),
        source,
    };
    let data = q.data().map_err(moving)?;
    let storage =
        candle_core::quantized::QStorage::from_data(data, device, q.dtype()).map_err(moving)?;
    let moved = QTensor::new(storage, q.shape().clone()).map_err(moving)?;
    Ok(Arc::new(moved))
}

/// GGUF blocks whose stored shape is `stored`, held under the logical `shape`: the blocks
/// themselves when the shapes agree, the same bytes re-viewed in the logical shape when its rows
/// fill whole blocks (row-major order is unchanged by a reshape), else [`HeldTensor::QuantizedFlat`].
pub(crate) fn hold_blocks(q: QTensor, shape: &[usize]) -> Result<HeldTensor, RuntimeError> {
    if q.shape().dims() == shape {
        return Ok(HeldTensor::Quantized(Arc::new(q)));
    }
    let block = q.dtype().block_size();
    let row = shape.last().copied().unwrap_or(1);
    if !shape.is_empty() && row.is_multiple_of(block) {
        let data = q
            .data()
            .map_err(RuntimeError::candle("reading GGUF blocks"))?;
        let storage = candle_core::quantized::QStorage::from_data(data, &q.device(), q.dtype())
            .map_err(RuntimeError::candle("re-viewing GGUF blocks"))?;
        let viewed = QTensor::new(storage, shape).map_err(RuntimeError::candle(
            "re-viewing GGUF blocks in their logical shape",
        ))?;
        return Ok(HeldTensor::Quantized(Arc::new(viewed)));
    }
    Ok(HeldTensor::QuantizedFlat {
        blocks: Arc::new(q),
        shape: Shape::from_dims(shape),
    })
}

impl HeldTensor {
    /// fp8 `codes` of `format` in row-major order for `shape`, canonicalised
    /// ([`canonical_fp8_codes`]) and uploaded to `device` as flat `U8` bytes.
    pub fn fp8_bytes(
        mut codes: Vec<u8>,
        format: StorageDType,
        shape: Shape,
        scale: Option<f32>,
        device: &Device,
    ) -> Result<HeldTensor, RuntimeError> {
        if !format.is_fp8() {
            return Err(RuntimeError::UnsupportedTensorDType {
                tensor: "fp8 bytes".to_string(),
                dtype: format,
            });
        }
        if codes.len() != shape.elem_count() {
            return Err(RuntimeError::TransformShape {
                tensor: "fp8 bytes".to_string(),
                transform: format!("{} codes as shape", codes.len()),
                shape: shape.dims().to_vec(),
            });
        }
        canonical_fp8_codes(&mut codes);
        let length = codes.len();
        let bytes = Tensor::from_vec(codes, length, device)
            .map_err(RuntimeError::candle("uploading fp8 bytes"))?;
        Ok(HeldTensor::Fp8Bytes {
            bytes,
            format,
            shape,
            scale,
        })
    }

    /// The logical shape.
    pub fn shape(&self) -> &Shape {
        match self {
            HeldTensor::Native(tensor) | HeldTensor::Fp8Native { tensor, .. } => tensor.shape(),
            HeldTensor::Fp8Bytes { shape, .. } | HeldTensor::Mapped { shape, .. } => shape,
            HeldTensor::Quantized(q) => q.shape(),
            HeldTensor::QuantizedFlat { shape, .. } => shape,
        }
    }

    /// The device it is on.
    pub fn device(&self) -> Device {
        match self {
            HeldTensor::Native(tensor) | HeldTensor::Fp8Native { tensor, .. } => {
                tensor.device().clone()
            }
            HeldTensor::Fp8Bytes { bytes, .. } => bytes.device().clone(),
            HeldTensor::Mapped { .. } => Device::Cpu,
            HeldTensor::Quantized(q) | HeldTensor::QuantizedFlat { blocks: q, .. } => q.device(),
        }
    }

    /// Its element form on the device.
    pub fn held_as(&self) -> HeldAs {
        match self {
            HeldTensor::Native(tensor) | HeldTensor::Fp8Native { tensor, .. } => {
                HeldAs::Dtype(tensor.dtype())
            }
            HeldTensor::Fp8Bytes { .. } => HeldAs::Dtype(DType::U8),
            HeldTensor::Mapped { dtype, .. } => HeldAs::Dtype(*dtype),
            HeldTensor::Quantized(q) | HeldTensor::QuantizedFlat { blocks: q, .. } => {
                HeldAs::Quantized(GgufType::from_ggml(q.dtype()))
            }
        }
    }

    /// Bytes it occupies.
    pub fn bytes(&self) -> u64 {
        match self {
            HeldTensor::Native(tensor) | HeldTensor::Fp8Native { tensor, .. } => {
                (tensor.elem_count() * tensor.dtype().size_in_bytes()) as u64
            }
            HeldTensor::Fp8Bytes { bytes, .. } => bytes.elem_count() as u64,
            HeldTensor::Mapped { bytes, .. } => bytes.bytes().len() as u64,
            HeldTensor::Quantized(q) | HeldTensor::QuantizedFlat { blocks: q, .. } => {
                q.storage_size_in_bytes() as u64
            }
        }
    }

    /// The per-tensor scale, for scaled fp8.
    pub fn scale(&self) -> Option<f32> {
        match self {
            HeldTensor::Fp8Bytes { scale, .. } | HeldTensor::Fp8Native { scale, .. } => *scale,
            HeldTensor::Native(_)
            | HeldTensor::Mapped { .. }
            | HeldTensor::Quantized(_)
            | HeldTensor::QuantizedFlat { .. } => None,
        }
    }

    /// A mapped tensor's values in place, for kernels that read weights without a copy. `None`
    /// for every other form.
    pub fn mapped_values(&self) -> Option<MappedValues<'_>> {
        let HeldTensor::Mapped { bytes, dtype, .. } = self else {
            return None;
        };
        let bytes = bytes.bytes();
        match dtype {
            DType::F32 => bytemuck::try_cast_slice(bytes).ok().map(MappedValues::F32),
            DType::F16 => bytemuck::try_cast_slice(bytes).ok().map(MappedValues::F16),
            DType::BF16 => bytemuck::try_cast_slice(bytes).ok().map(MappedValues::BF16),
            _ => None,
        }
    }

    /// Lets go of a mapped tensor's resident pages (the next use reads them back from the page
    /// cache); a no-op for the other forms, which own their memory.
    pub fn release_pages(&self) {
        if let HeldTensor::Mapped { bytes, .. } = self {
            bytes.release_pages();
        }
    }

    /// Maps a mapped tensor's pages in one call ahead of use; a no-op for the other forms.
    pub fn populate(&self) {
        if let HeldTensor::Mapped { bytes, .. } = self {
            bytes.populate();
        }
    }

    /// The quantised tensor in its logical shape, for callers that multiply with `QMatMul`
    /// instead of widening. `None` for [`HeldTensor::QuantizedFlat`], whose blocks only widen.
    pub fn as_quantized(&self) -> Option<&Arc<QTensor>> {
        match self {
            HeldTensor::Quantized(q) => Some(q),
            _ => None,
        }
    }

    /// The weight in `compute` on its device: a no-op or cast for native tensors, a table gather
    /// for fp8 bytes, a cast for native fp8, a dequantisation for GGUF; scaled fp8 is multiplied
    /// by its scale.
    pub fn widen(&self, compute: DType) -> Result<Tensor, RuntimeError> {
        match self {
            HeldTensor::Native(tensor) => tensor
                .to_dtype(compute)
                .map_err(RuntimeError::candle("widening a native weight")),
            HeldTensor::Mapped {
                bytes,
                dtype,
                shape,
            } => copy_out(bytes, *dtype, shape)?
                .to_dtype(compute)
                .map_err(RuntimeError::candle("widening a mapped weight")),
            HeldTensor::Fp8Bytes {
                bytes,
                format,
                shape,
                scale,
            } => {
                if let Some(widened) =
                    decode_on_host(bytes, |code: &u8| *code, *format, *scale, shape)?
                {
                    return widened
                        .to_dtype(compute)
                        .map_err(RuntimeError::candle("widening decoded fp8 bytes"));
                }
                let table = lookup_table(*format, *scale, compute, bytes.device())?;
                table
                    .index_select(bytes, 0)
                    .and_then(|values| values.reshape(shape.clone()))
                    .map_err(RuntimeError::candle(
                        "gathering fp8 bytes through the lookup table",
                    ))
            }
            HeldTensor::Fp8Native { tensor, scale } => {
                let code = |value: &float8::F8E4M3| value.to_bits();
                if let Some(widened) =
                    decode_on_host(tensor, code, StorageDType::F8E4M3, *scale, tensor.shape())?
                {
                    return widened
                        .to_dtype(compute)
                        .map_err(RuntimeError::candle("widening decoded f8e4m3"));
                }
                let widened = tensor
                    .to_dtype(compute)
                    .map_err(RuntimeError::candle("casting f8e4m3 on the device"))?;
                match scale {
                    Some(scale) => widened
                        .affine(f64::from(*scale), 0.0)
                        .map_err(RuntimeError::candle("scaling a scaled-fp8 weight")),
                    None => Ok(widened),
                }
            }
            HeldTensor::Quantized(q) => q
                .dequantize(&q.device())
                .and_then(|t| t.to_dtype(compute))
                .map_err(RuntimeError::candle("dequantising a GGUF weight")),
            HeldTensor::QuantizedFlat { blocks, shape } => blocks
                .dequantize(&blocks.device())
                .and_then(|t| t.reshape(shape.clone()))
                .and_then(|t| t.to_dtype(compute))
                .map_err(RuntimeError::candle("dequantising a flattened GGUF weight")),
        }
    }

    /// A copy on `device` in the same form (streaming: host → device per layer). GGUF blocks are
    /// re-uploaded byte for byte.
    pub fn to_device(&self, device: &Device) -> Result<HeldTensor, RuntimeError> {
        let moving = || RuntimeError::candle("moving a held weight to its device");
        Ok(match self {
            HeldTensor::Native(tensor) => {
                HeldTensor::Native(tensor.to_device(device).map_err(moving())?)
            }
            HeldTensor::Mapped {
                bytes,
                dtype,
                shape,
            } => HeldTensor::Native(
                copy_out(bytes, *dtype, shape)?
                    .to_device(device)
                    .map_err(moving())?,
            ),
            HeldTensor::Fp8Bytes {
                bytes,
                format,
                shape,
                scale,
            } => HeldTensor::Fp8Bytes {
                bytes: bytes.to_device(device).map_err(moving())?,
                format: *format,
                shape: shape.clone(),
                scale: *scale,
            },
            HeldTensor::Fp8Native { tensor, scale } => HeldTensor::Fp8Native {
                tensor: tensor.to_device(device).map_err(moving())?,
                scale: *scale,
            },
            HeldTensor::Quantized(q) => HeldTensor::Quantized(move_blocks(q, device)?),
            HeldTensor::QuantizedFlat { blocks, shape } => HeldTensor::QuantizedFlat {
                blocks: move_blocks(blocks, device)?,
                shape: shape.clone(),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capability::MacOsVersion;

    const GIB: u64 = 1 << 30;

    fn cpu() -> CapabilityProfile {
        CapabilityProfile::cpu("cpu", "t", GIB, GIB)
    }

    fn m1() -> CapabilityProfile {
        CapabilityProfile::metal("m1", "t", MacOsVersion::new(13, 6), GIB, GIB)
    }

    #[test]
    fn fp8_is_native_only_where_held_and_castable() {
        let e4 = StorageDType::F8E4M3;
        let e5 = StorageDType::F8E5M2;
        assert_eq!(
            hold_target(e4, true, e4, DType::F32, &cpu()),
            Some(HoldTarget::Fp8Native)
        );
        assert_eq!(
            hold_target(e5, true, e5, DType::F32, &cpu()),
            Some(HoldTarget::Fp8Bytes(e5))
        );
        assert_eq!(
            hold_target(e4, true, e4, DType::F16, &m1()),
            Some(HoldTarget::Fp8Bytes(e4))
        );
    }

    #[test]
    fn floats_fall_back_to_compute_when_not_holdable() {
        // bf16 norms of an fp8 checkpoint on macOS 13: held in the compute dtype.
        let target = hold_target(
            StorageDType::BF16,
            false,
            StorageDType::F8E4M3,
            DType::F16,
            &m1(),
        );
        assert_eq!(target, Some(HoldTarget::Native(DType::F16)));
        // Forced fp8 applies to matrices only.
        let bias = hold_target(
            StorageDType::F16,
            false,
            StorageDType::F8E4M3,
            DType::F32,
            &cpu(),
        );
        assert_eq!(bias, Some(HoldTarget::Native(DType::F16)));
        let weight = hold_target(
            StorageDType::F16,
            true,
            StorageDType::F8E5M2,
            DType::F32,
            &cpu(),
        );
        assert_eq!(weight, Some(HoldTarget::Fp8Bytes(StorageDType::F8E5M2)));
        assert_eq!(
            hold_target(
                StorageDType::Bool,
                false,
                StorageDType::F16,
                DType::F16,
                &cpu()
            ),
            None
        );
    }

    /// Equal values, or both NaN (the sign of NaN is not kept: 0xFF becomes +NaN).
    fn same(got: f32, want: f32) -> bool {
        got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan())
    }

    #[test]
    fn host_decode_of_every_fp8_code_equals_the_tables_and_candles_cast() {
        let codes: Vec<u8> = (0..=255).collect();
        let scale = Some(0.37f32);
        // f8e4m3 held natively: the host decode against candle's own cast times the scale.
        let native =
            Tensor::from_raw_buffer(&codes, DType::F8E4M3, &[16, 16], &Device::Cpu).unwrap();
        let cast = (native.to_dtype(DType::F32).unwrap() * 0.37f64).unwrap();
        let held = HeldTensor::Fp8Native {
            tensor: native,
            scale,
        };
        let got = held.widen(DType::F32).unwrap();
        assert_eq!(got.dims(), &[16, 16]);
        let got = got.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let want = cast.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        for (code, (g, w)) in got.iter().zip(&want).enumerate() {
            // candle's scaling adds 0.0, which turns −0 into +0; the table keeps PyTorch's −0.
            let equal = g == w || (g.is_nan() && w.is_nan());
            assert!(equal, "f8e4m3 code {code:#04x}: {g} vs {w}");
        }
        // Bytes of both formats: the host decode against the table, scale applied once.
        for format in [StorageDType::F8E4M3, StorageDType::F8E5M2] {
            let held = HeldTensor::fp8_bytes(
                codes.clone(),
                format,
                Shape::from_dims(&[256]),
                scale,
                &Device::Cpu,
            )
            .unwrap();
            let got = held.widen(DType::F32).unwrap().to_vec1::<f32>().unwrap();
            let table = decode_table(format).unwrap();
            for code in 0..255usize {
                // 0xFF is stored as 0x7F (see canonical_fp8_codes); both are NaN in e4m3fn.
                let want = table[code] * 0.37;
                assert!(same(got[code], want), "{format} code {code:#04x}");
            }
        }
    }

    #[test]
    fn candle_gathers_zero_for_the_largest_u8_id() {
        // Why `canonical_fp8_codes` exists; if candle drops the sentinel this test says so.
        let table = Tensor::new(&[1f32, 2.0], &Device::Cpu).unwrap();
        let table = table.pad_with_same(0, 0, 254).unwrap();
        let ids = Tensor::new(&[255u8, 0], &Device::Cpu).unwrap();
        let got = table
            .index_select(&ids, 0)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(got, vec![0.0, 1.0]);
    }

    #[test]
    fn mixed_gguf_quantisations_all_stay_quantised() {
        let q4k = StorageDType::Gguf(GgufType::Q4K);
        let q6k = StorageDType::Gguf(GgufType::Q6K);
        let f32 = StorageDType::Gguf(GgufType::F32);
        let q6k_target = hold_target(q6k, true, q4k, DType::F16, &m1());
        assert_eq!(q6k_target, Some(HoldTarget::Quantized(GgufType::Q6K)));
        let norm = hold_target(f32, false, q4k, DType::F16, &m1());
        assert_eq!(norm, Some(HoldTarget::Native(DType::F32)));
        // Where the device lacks kernels (Q8_1 on CUDA) the tensor is dequantised at load.
        let cc = crate::capability::CudaCapability::new(8, 6);
        let cuda = CapabilityProfile::cuda("c", "t", cc, GIB, GIB);
        let q8_1 = StorageDType::Gguf(GgufType::Q8_1);
        let target = hold_target(q8_1, true, q4k, DType::BF16, &cuda);
        assert_eq!(target, Some(HoldTarget::Native(DType::BF16)));
    }

    #[test]
    fn flattened_gguf_blocks_take_their_logical_shape() {
        let values: Vec<f32> = (0..4096).map(|i| (i % 17) as f32 - 8.0).collect();
        let stored = Tensor::from_vec(values, (16, 256), &Device::Cpu).unwrap();
        let quantize = |dtype| QTensor::quantize(&stored, dtype).unwrap();
        let q8 = candle_core::quantized::GgmlDType::Q8_0;
        let q4k = candle_core::quantized::GgmlDType::Q4K;
        // Rows of 64 fill whole Q8_0 blocks: the same bytes re-viewed, usable by QMatMul.
        let viewed = hold_blocks(quantize(q8), &[64, 64]).unwrap();
        assert_eq!(viewed.as_quantized().unwrap().shape().dims(), &[64, 64]);
        // A 3×3 conv cannot be Q4_K rows: kept flat, widened into shape.
        let flat = hold_blocks(quantize(q4k), &[16, 16, 4, 4]).unwrap();
        assert!(flat.as_quantized().is_none());
        assert_eq!(flat.shape().dims(), &[16, 16, 4, 4]);
        assert_eq!(flat.held_as(), HeldAs::Quantized(GgufType::Q4K));
        let widened = flat.widen(DType::F32).unwrap();
        let want = stored.reshape((16, 16, 4, 4)).unwrap();
        let error = (widened - want)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(error < 1.0, "{error}");
        let moved = flat.to_device(&Device::Cpu).unwrap();
        assert_eq!(moved.shape().dims(), &[16, 16, 4, 4]);
    }

    #[test]
    fn lut_widening_of_every_code_matches_the_decode_table() {
        for format in [StorageDType::F8E4M3, StorageDType::F8E5M2] {
            let table = decode_table(format).unwrap();
            let codes: Vec<u8> = (0..=255).collect();
            let held =
                HeldTensor::fp8_bytes(codes, format, Shape::from((16, 16)), None, &Device::Cpu)
                    .unwrap();
            let widened = held.widen(DType::F32).unwrap();
            assert_eq!(widened.dims(), &[16, 16]);
            let values = widened.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            for (code, (got, want)) in values.iter().zip(table.iter()).enumerate() {
                assert!(
                    same(*got, *want),
                    "{format} code {code:#04x}: {got} != {want}"
                );
            }
        }
    }

    #[test]
    fn scaled_lut_widening_is_table_times_scale() {
        let codes: Vec<u8> = (0..=255).collect();
        let scale = 0.037_f32;
        let held = HeldTensor::fp8_bytes(
            codes,
            StorageDType::F8E4M3,
            Shape::from(256),
            Some(scale),
            &Device::Cpu,
        )
        .unwrap();
        let values = held.widen(DType::F32).unwrap().to_vec1::<f32>().unwrap();
        for (code, got) in values.iter().enumerate() {
            assert!(same(*got, E4M3FN_TABLE[code] * scale), "code {code}");
        }
        // The f16 path rounds once from the exact product.
        let half = held
            .widen(DType::F16)
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap();
        let half = half.to_vec1::<f32>().unwrap();
        for (code, got) in half.iter().enumerate() {
            let want = half::f16::from_f32(E4M3FN_TABLE[code] * scale).to_f32();
            assert!(same(*got, want), "code {code}");
        }
    }

    #[test]
    fn fp8_bytes_rejects_mismatched_shapes_and_formats() {
        let shape = Shape::from(3);
        assert!(HeldTensor::fp8_bytes(
            vec![1, 2],
            StorageDType::F8E4M3,
            shape.clone(),
            None,
            &Device::Cpu
        )
        .is_err());
        assert!(
            HeldTensor::fp8_bytes(vec![1, 2, 3], StorageDType::F16, shape, None, &Device::Cpu)
                .is_err()
        );
    }

    #[test]
    fn native_fp8_cast_agrees_with_the_table() {
        let codes: Vec<u8> = (0..=255).collect();
        let tensor = Tensor::from_raw_buffer(&codes, DType::F8E4M3, &[256], &Device::Cpu).unwrap();
        let held = HeldTensor::Fp8Native {
            tensor,
            scale: Some(2.0),
        };
        let values = held.widen(DType::F32).unwrap().to_vec1::<f32>().unwrap();
        for (code, got) in values.iter().enumerate() {
            // `affine` adds +0.0, so −0 comes back as +0: compare as numbers.
            let want = E4M3FN_TABLE[code] * 2.0;
            assert!(
                *got == want || (got.is_nan() && want.is_nan()),
                "code {code}"
            );
        }
        assert_eq!(held.held_as(), HeldAs::Dtype(DType::F8E4M3));
        assert_eq!(held.bytes(), 256);
    }
}
