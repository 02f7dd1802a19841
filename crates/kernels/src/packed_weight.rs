//! Weights rounded to bf16 and packed once for the bf16 products, then kept between calls. A
//! convolution or linear layer that multiplies in bf16 used to round its (often f16) weight and
//! pack it into the micro-kernel's panel order on every call — for SD1.5 at 512² about a tenth
//! of a sampling step, repeated every step. A caller that can keep things for a while (a model
//! in use: see `WeightStore::prepared` in kiln-runtime) hands the kernels a
//! [`PackedWeightCache`] for the weight, and the kernels ask it for the packed form instead of
//! packing afresh. The packed form is as large as a 16-bit weight, so the caller lets go of the
//! weight's own pages while it keeps it.

use std::sync::Arc;

use half::bf16;

use crate::element::{Element, WeightValues};
use crate::gemm_bf16::{PackedLhs, PackedRhs};
use crate::linear::TransposedWeight;
use crate::scratch::PackedBuffer;

/// A weight in the packed form one kernel's bf16 products read: opaque to callers, who only
/// keep it ([`PackedWeightCache`]).
pub struct PackedWeight(Form);

enum Form {
    /// A convolution's `[O, C·kh·kw]` weight as the left operand.
    Convolution(PackedLhs),
    /// A linear layer's `[N, K]` weight, transposed, as the right operand.
    Linear(PackedRhs),
}

impl std::fmt::Debug for PackedWeight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (kind, [rows, cols]) = match &self.0 {
            Form::Convolution(lhs) => ("convolution", lhs.dims()),
            Form::Linear(rhs) => ("linear", rhs.dims()),
        };
        write!(f, "PackedWeight({kind}, {rows}×{cols})")
    }
}

impl PackedWeight {
    /// Bytes it holds.
    pub fn bytes(&self) -> usize {
        match &self.0 {
            Form::Convolution(lhs) => lhs.bytes(),
            Form::Linear(rhs) => rhs.bytes(),
        }
    }

    /// A convolution weight of `out_channels` rows of `patch` values (row-major), packed —
    /// into a buffer of its own when it is to be `kept` across calls. `None` when the sizes
    /// disagree with `values`.
    pub(crate) fn convolution<W: Element>(
        values: &[W],
        out_channels: usize,
        patch: usize,
        kept: bool,
    ) -> Option<Self> {
        PackedLhs::from_elements_in(values, out_channels, patch, allocator(kept))
            .map(|lhs| Self(Form::Convolution(lhs)))
    }

    /// The packed left operand when this is a convolution weight of `[rows, cols]`.
    pub(crate) fn convolution_lhs(&self, dims: [usize; 2]) -> Option<&PackedLhs> {
        match &self.0 {
            Form::Convolution(lhs) if lhs.dims() == dims => Some(lhs),
            _ => None,
        }
    }

    /// A linear weight `[out_features, in_features]` (row-major) transposed and packed. f32 and
    /// f16 weights are rounded to bf16 once, on all cores, before the transposed (column-wise)
    /// reads of packing. Into a buffer of its own when it is to be `kept` across calls. `None`
    /// when the sizes disagree with `weight`.
    pub(crate) fn linear(
        weight: WeightValues<'_>,
        [out_features, in_features]: [usize; 2],
        kept: bool,
    ) -> Option<Self> {
        if out_features.checked_mul(in_features) != Some(weight.len()) {
            return None;
        }
        fn pack<W: Element>(weight: &[W], [n, k]: [usize; 2], kept: bool) -> PackedRhs {
            let transposed = TransposedWeight {
                weight,
                out_features: n,
                in_features: k,
            };
            PackedRhs::new_in(&transposed, allocator(kept))
        }
        let dims = [out_features, in_features];
        let rhs = match weight {
            WeightValues::BF16(w) => pack(w, dims, kept),
            WeightValues::F32(w) => pack(&crate::threads::par_map(w, bf16::from_f32), dims, kept),
            WeightValues::F16(w) => pack(
                &crate::threads::par_map(w, |value| bf16::from_f32(value.to_f32())),
                dims,
                kept,
            ),
        };
        Some(Self(Form::Linear(rhs)))
    }

    /// The packed right operand when this is a linear weight whose transpose is `[rows, cols]`.
    pub(crate) fn linear_rhs(&self, dims: [usize; 2]) -> Option<&PackedRhs> {
        match &self.0 {
            Form::Linear(rhs) if rhs.dims() == dims => Some(rhs),
            _ => None,
        }
    }
}

/// Where a packed weight's lanes come from: a mapping of its own when it is `kept` across
/// calls, else the kernels' reused buffers.
fn allocator(kept: bool) -> fn(usize) -> PackedBuffer {
    if kept {
        PackedBuffer::kept
    } else {
        PackedBuffer::take
    }
}

/// Where a kernel keeps one weight's packed form between calls. The kernels call
/// [`packed`](Self::packed) only on a path that multiplies that weight in bf16 (a convolution
/// that takes the Winograd path never does), and check the sizes of what they get back (a
/// mismatch is packed afresh, never misread).
pub trait PackedWeightCache: Sync {
    /// The weight's packed form: the one kept from an earlier call, else `pack(keep)`'s — kept
    /// for the next call where this cache keeps things, and `keep` says whether it means to
    /// (a form to keep gets memory of its own; one for a single call reuses the kernels'
    /// buffers). `None` when `pack` cannot pack it.
    fn packed(
        &self,
        pack: &mut dyn FnMut(bool) -> Option<PackedWeight>,
    ) -> Option<Arc<PackedWeight>>;
}

/// The packed form from `cache` when it has one of the right sizes (`usable`), else packed
/// for this call alone. `pack(kept)` packs into a buffer of its own when `kept`.
pub(crate) fn from_cache_or_pack(
    cache: Option<&dyn PackedWeightCache>,
    pack: impl Fn(bool) -> Option<PackedWeight>,
    usable: impl Fn(&PackedWeight) -> bool,
) -> Option<Arc<PackedWeight>> {
    let cached = cache.and_then(|cache| cache.packed(&mut |keep| pack(keep)));
    match cached {
        Some(packed) if usable(&packed) => Some(packed),
        _ => pack(false).map(Arc::new),
    }
}
