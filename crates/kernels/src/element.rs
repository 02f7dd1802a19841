//! The storage element types the kernels read and write (f32, bf16, f16); all compute in f32.

use candle_core::{CpuStorage, DType, Layout};
use half::{bf16, f16};
use std::borrow::Cow;
use std::ops::Range;

/// One element type the kernels accept: widened to f32 on read, rounded on write.
pub(crate) trait Element: Copy + Send + Sync + 'static {
    fn to_f32(self) -> f32;
    fn from_f32(value: f32) -> Self;
    /// The values themselves when they already are f32 (no copy).
    fn as_f32(values: &[Self]) -> Option<&[f32]>;
    /// The values themselves when they already are bf16 (no copy).
    fn as_bf16(_values: &[Self]) -> Option<&[bf16]> {
        None
    }
    /// The value as bf16 bits: its own bits when it is bf16, else rounded to nearest even.
    fn to_bf16_bits(self) -> u16 {
        crate::gemm_bf16::bf16_bits(self.to_f32()) as u16
    }
    /// Values of this type as candle storage.
    fn into_storage(values: Vec<Self>) -> CpuStorage;
    /// `src` widened into `dst` (same length); 16-bit types use half's SIMD conversions (F16C
    /// where the CPU has it, detected at run time).
    fn widen_into(src: &[Self], dst: &mut [f32]) {
        for (d, s) in dst.iter_mut().zip(src) {
            *d = s.to_f32();
        }
    }
    /// f32 results rounded to this type, as candle storage.
    fn storage_from_f32(values: Vec<f32>) -> CpuStorage;
}

impl Element for f32 {
    fn into_storage(values: Vec<Self>) -> CpuStorage {
        CpuStorage::F32(values)
    }
    #[inline(always)]
    fn to_f32(self) -> f32 {
        self
    }
    #[inline(always)]
    fn from_f32(value: f32) -> Self {
        value
    }
    fn as_f32(values: &[Self]) -> Option<&[f32]> {
        Some(values)
    }
    fn storage_from_f32(values: Vec<f32>) -> CpuStorage {
        CpuStorage::F32(values)
    }
}

impl Element for bf16 {
    fn into_storage(values: Vec<Self>) -> CpuStorage {
        CpuStorage::BF16(values)
    }
    fn widen_into(src: &[Self], dst: &mut [f32]) {
        use half::slice::HalfFloatSliceExt;
        src.convert_to_f32_slice(dst);
    }
    #[inline(always)]
    fn to_f32(self) -> f32 {
        bf16::to_f32(self)
    }
    #[inline(always)]
    fn from_f32(value: f32) -> Self {
        bf16::from_f32(value)
    }
    fn as_f32(_: &[Self]) -> Option<&[f32]> {
        None
    }
    fn as_bf16(values: &[Self]) -> Option<&[bf16]> {
        Some(values)
    }
    #[inline(always)]
    fn to_bf16_bits(self) -> u16 {
        self.to_bits()
    }
    fn storage_from_f32(values: Vec<f32>) -> CpuStorage {
        CpuStorage::BF16(crate::threads::par_map(&values, bf16::from_f32))
    }
}

impl Element for f16 {
    fn into_storage(values: Vec<Self>) -> CpuStorage {
        CpuStorage::F16(values)
    }
    fn widen_into(src: &[Self], dst: &mut [f32]) {
        use half::slice::HalfFloatSliceExt;
        src.convert_to_f32_slice(dst);
    }
    #[inline(always)]
    fn to_f32(self) -> f32 {
        f16::to_f32(self)
    }
    #[inline(always)]
    fn from_f32(value: f32) -> Self {
        f16::from_f32(value)
    }
    fn as_f32(_: &[Self]) -> Option<&[f32]> {
        None
    }
    fn storage_from_f32(values: Vec<f32>) -> CpuStorage {
        CpuStorage::F16(crate::threads::par_map(&values, f16::from_f32))
    }
}

/// Whether the kernels compute in `dtype`.
pub fn supports_dtype(dtype: DType) -> bool {
    matches!(dtype, DType::F32 | DType::BF16 | DType::F16)
}

/// The contiguous slice of `values` that `layout` covers; `None` for strided views (the public
/// functions make inputs contiguous first, so this only guards the op boundary).
pub(crate) fn contiguous<'a, T>(values: &'a [T], layout: &Layout) -> Option<&'a [T]> {
    let (start, end) = layout.contiguous_offsets()?;
    values.get(start..end)
}

/// `values` widened to f32 (a borrow when they already are).
pub(crate) fn widen<T: Element>(values: &[T]) -> Cow<'_, [f32]> {
    match T::as_f32(values) {
        Some(same) => Cow::Borrowed(same),
        None => Cow::Owned(crate::threads::par_map(values, T::to_f32)),
    }
}

/// A weight's values borrowed in their element type: a CPU tensor's, or bytes used in place
/// (a weight file's memory map) by [`crate::conv2d_values`] and [`crate::linear_values`].
#[derive(Debug, Clone, Copy)]
pub enum WeightValues<'a> {
    /// f32 elements.
    F32(&'a [f32]),
    /// bf16 elements.
    BF16(&'a [bf16]),
    /// f16 elements.
    F16(&'a [f16]),
}

impl WeightValues<'_> {
    /// Elements.
    pub fn len(&self) -> usize {
        match self {
            WeightValues::F32(v) => v.len(),
            WeightValues::BF16(v) => v.len(),
            WeightValues::F16(v) => v.len(),
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Refuses `tensor` (the kernel `op`'s `input`) unless it is a CPU tensor in a dtype the kernels
/// compute.
pub(crate) fn check_cpu_input(
    tensor: &candle_core::Tensor,
    op: &'static str,
    input: &'static str,
) -> crate::Result<()> {
    if !tensor.device().is_cpu() {
        return Err(crate::KernelError::NotOnCpu { op, input });
    }
    if !supports_dtype(tensor.dtype()) {
        return Err(crate::KernelError::UnsupportedDType {
            op,
            dtype: tensor.dtype().as_str(),
        });
    }
    Ok(())
}

/// Calls `read` with the values of `tensor` (made contiguous first when it is a strided view):
/// kernels read held weights in place instead of copying them out per call.
pub(crate) fn with_values<R>(
    tensor: &candle_core::Tensor,
    op: &'static str,
    input: &'static str,
    read: impl FnOnce(WeightValues<'_>) -> R,
) -> crate::Result<R> {
    let tensor = tensor.contiguous()?;
    let (storage, layout) = tensor.storage_and_layout();
    let candle_core::Storage::Cpu(cpu) = &*storage else {
        return Err(crate::KernelError::NotOnCpu { op, input });
    };
    let strided = || crate::KernelError::Shape {
        op,
        input,
        actual: layout.dims().to_vec(),
        expected: "a contiguous tensor".to_string(),
    };
    Ok(match cpu {
        CpuStorage::F32(v) => read(WeightValues::F32(
            contiguous(v, layout).ok_or_else(strided)?,
        )),
        CpuStorage::BF16(v) => read(WeightValues::BF16(
            contiguous(v, layout).ok_or_else(strided)?,
        )),
        CpuStorage::F16(v) => read(WeightValues::F16(
            contiguous(v, layout).ok_or_else(strided)?,
        )),
        _ => {
            return Err(crate::KernelError::UnsupportedDType {
                op,
                dtype: tensor.dtype().as_str(),
            })
        }
    })
}

/// Calls `use_rows` on the rows (`row_len` values each) of `values` in f32, block by block, in
/// order, until it returns false: once with every row when the values are f32 (read in place),
/// else each block of at most [`WIDEN_BLOCK_ELEMENTS`] widened on all cores into this thread's
/// reusable buffer. Returns whether every call returned true.
pub(crate) fn for_widened_rows<T: Element>(
    values: &[T],
    row_len: usize,
    mut use_rows: impl FnMut(Range<usize>, &[f32]) -> bool,
) -> bool {
    let rows = values.len().checked_div(row_len).unwrap_or(0);
    if let Some(same) = T::as_f32(values) {
        return use_rows(0..rows, same);
    }
    let block_rows = (WIDEN_BLOCK_ELEMENTS / row_len.max(1)).clamp(1, rows.max(1));
    crate::scratch::with_scratch(
        crate::scratch::Scratch::Widened,
        block_rows * row_len,
        |buffer| {
            let mut start = 0;
            while start < rows {
                let end = (start + block_rows).min(rows);
                let source = &values[start * row_len..end * row_len];
                let widened = &mut buffer[..source.len()];
                crate::threads::install(|| {
                    use rayon::prelude::*;
                    widened
                        .par_chunks_mut(WIDEN_CHUNK)
                        .zip(source.par_chunks(WIDEN_CHUNK))
                        .for_each(|(dst, src)| T::widen_into(src, dst));
                });
                if !use_rows(start..end, widened) {
                    return false;
                }
                start = end;
            }
            true
        },
    )
}

/// The most values of a 16-bit weight widened at a time (16 MiB of f32). Widened whole, the
/// largest layer's f32 copy would stay resident in the calling thread's buffer for the life of
/// the process: 59 MB for SD1.5's 1280×1280×3×3 convolutions, 52 MB for its GEGLU projections.
/// In blocks the products see the same rows and sums, a block at a time.
const WIDEN_BLOCK_ELEMENTS: usize = 1 << 22;

/// Elements one widening task converts.
const WIDEN_CHUNK: usize = 1 << 16;
