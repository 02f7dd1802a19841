//! The bytes behind a weight file: a read-only memory map of the file, or an owned buffer (for
//! in-memory parsing in tests and fuzzing), plus where each tensor's bytes live in them.

use std::fs::File;
use std::ops::Range;
use std::path::Path;

use memmap2::Mmap;

use crate::WeightsError;

/// The whole content of a weight file.
pub(crate) enum Source {
    Mapped(Mmap),
    Owned(Vec<u8>),
}

impl Source {
    pub(crate) fn bytes(&self) -> &[u8] {
        match self {
            Source::Mapped(map) => map,
            Source::Owned(bytes) => bytes,
        }
    }

    /// Lets go of this process's resident copy of a mapped file's pages (the OS page cache keeps
    /// them, and a later read faults them back in unchanged). Owned buffers are kept.
    pub(crate) fn release_pages(&self) {
        if let Source::Mapped(map) = self {
            release_mapped_pages(map, 0..map.len());
        }
    }

    /// [`Self::release_pages`] for the whole pages inside `range`.
    pub(crate) fn release_range(&self, range: Range<usize>) {
        if let Source::Mapped(map) = self {
            release_mapped_pages(map, range);
        }
    }

    /// Maps the pages of `range` in one call (a hint: failure leaves them to fault in).
    pub(crate) fn populate_range(&self, range: Range<usize>) {
        if let Source::Mapped(map) = self {
            if let Some((offset, len)) = page_span(range, map.len(), false) {
                #[cfg(target_os = "linux")]
                let _ = map.advise_range(memmap2::Advice::PopulateRead, offset, len);
                #[cfg(not(target_os = "linux"))]
                let _ = (offset, len);
            }
        }
    }
}

/// The page-aligned part of `range` (inside a map of `len` bytes) as `(offset, length)`:
/// shrunk to whole pages when `inward` (so neighbouring data keeps its pages), else grown to
/// cover every page it touches. `None` when nothing is left.
fn page_span(range: Range<usize>, len: usize, inward: bool) -> Option<(usize, usize)> {
    const PAGE: usize = 4096;
    let end = range.end.min(len);
    let (start, end) = if inward {
        (range.start.div_ceil(PAGE) * PAGE, end / PAGE * PAGE)
    } else {
        (
            range.start / PAGE * PAGE,
            end.div_ceil(PAGE).saturating_mul(PAGE).min(len),
        )
    };
    (start < end).then(|| (start, end - start))
}

#[allow(unsafe_code)]
fn release_mapped_pages(map: &Mmap, range: Range<usize>) {
    let Some((offset, len)) = page_span(range, map.len(), true) else {
        return;
    };
    // SAFETY: `map` is a read-only shared file mapping (`Mmap::map`): MADV_DONTNEED only drops
    // its page-table entries, and any later access re-reads the same bytes from the file, so
    // slices borrowed from the map stay valid and unchanged. (The call is unsafe in memmap2
    // because on a private writable mapping it would discard modifications; this one has none.)
    // A failed hint only leaves the pages resident.
    #[cfg(unix)]
    let _ = unsafe { map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, offset, len) };
    #[cfg(not(unix))]
    let _ = (map, offset, len);
}

/// Maps `file` read-only. The file must be non-empty (mapping zero bytes fails on some systems).
#[allow(unsafe_code)]
pub(crate) fn map_file(file: &File, path: &Path) -> Result<Mmap, WeightsError> {
    // SAFETY: the map is read-only and never handed out mutably. The remaining hazard of any file
    // map is another process truncating or rewriting the file while it is mapped (SIGBUS or
    // changed bytes); every mmap-based loader, including safetensors' and candle's, accepts it,
    // and checkpoint files are not modified while a model is being loaded.
    unsafe { Mmap::map(file) }.map_err(|source| WeightsError::Io {
        file: path.to_path_buf(),
        source,
    })
}

/// Which buffer a tensor's bytes are in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Buffer {
    /// The file itself (the map).
    File,
    /// An owned side buffer, by index (decompressed zip entries).
    Side(usize),
}

/// Where a tensor's bytes are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Location {
    /// A contiguous byte range of one buffer, already validated against its length.
    Contiguous { buffer: Buffer, range: Range<usize> },
    /// A strided view into a storage; element `i` of the row-major index space sits at element
    /// `offset + Σ index_d · strides[d]` of the storage. Validated: every element is in range.
    Strided {
        buffer: Buffer,
        storage: Range<usize>,
        element_size: usize,
        offset: usize,
        shape: Vec<usize>,
        strides: Vec<usize>,
    },
}

/// What a format parser hands back to [`crate::WeightFile`]: tensors (unsorted; names may still
/// repeat, the caller checks) and where their bytes are.
pub(crate) struct Parsed {
    pub(crate) metadata: std::collections::BTreeMap<String, String>,
    pub(crate) tensors: Vec<(crate::TensorInfo, Location)>,
    pub(crate) side_buffers: Vec<Vec<u8>>,
}

/// Element count of `shape`, or `None` when it overflows — counting zero-sized dimensions as 1
/// for the overflow check, because candle computes strides from the other dimensions and a
/// `[0, 2^40, 2^40]` tensor would overflow there even though it holds no elements.
pub(crate) fn checked_elements(shape: impl IntoIterator<Item = u64>) -> Option<u64> {
    let mut elements = 1u64;
    let mut nonzero = 1u64;
    for dim in shape {
        elements = elements.checked_mul(dim)?;
        nonzero = nonzero.checked_mul(dim.max(1))?;
    }
    usize::try_from(nonzero).ok()?;
    Some(elements)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_dimensions_do_not_hide_overflow() {
        assert_eq!(checked_elements([2, 3]), Some(6));
        assert_eq!(checked_elements([]), Some(1));
        assert_eq!(checked_elements([0, 5]), Some(0));
        assert_eq!(checked_elements([0, 1 << 40, 1 << 40]), None);
        assert_eq!(checked_elements([u64::MAX, 2]), None);
    }
}
