//! The storage element types the kernels read and write (f32, bf16, f16); all compute in f32.

use candle_core::{CpuStorage, DType, Layout};
use half::{bf16, f16};
use std::borrow::Cow;

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
    /// Values of this type as candle storage.
    fn into_storage(values: Vec<Self>) -> CpuStorage;
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
    fn storage_from_f32(values: Vec<f32>) -> CpuStorage {
        CpuStorage::BF16(crate::threads::par_map(&values, bf16::from_f32))
    }
}

impl Element for f16 {
    fn into_storage(values: Vec<Self>) -> CpuStorage {
        CpuStorage::F16(values)
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
