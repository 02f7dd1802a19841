//! Per-thread reusable buffers for the kernels' temporaries (widened weights, im2col columns,
//! attention scores, bf16-packed operands): a fresh multi-megabyte allocation per layer costs
//! more in page faults and zeroing than the work done in it, so each calling thread keeps its
//! buffers and grows them as needed.

use std::cell::RefCell;

/// What an f32 buffer is for (each use has its own, so one can be filled while another is read).
#[derive(Clone, Copy)]
pub(crate) enum Scratch {
    /// A 16-bit weight widened to f32.
    Widened,
    /// im2col columns of a convolution band.
    Columns,
    /// One attention task's block of scores.
    Scores,
}

thread_local! {
    static WIDENED: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    static COLUMNS: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    static SCORES: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    static SPARE_PACKED: RefCell<Vec<Vec<u32>>> = const { RefCell::new(Vec::new()) };
}

/// The largest f32 buffer a thread keeps between uses (64 MiB: SD1.5's largest widened weight,
/// 1280×1280×3×3, fits): a larger one is allocated per use, so no thread holds an outsized
/// model's peak for good.
const RETAINED_ELEMENTS: usize = 1 << 24;

/// Calls `use_buffer` with `len` f32s of this thread's `scratch` buffer (contents unspecified:
/// whatever the last use left, zero where it grew). A nested use of the same buffer gets one of
/// its own.
pub(crate) fn with_scratch<R>(
    scratch: Scratch,
    len: usize,
    use_buffer: impl FnOnce(&mut [f32]) -> R,
) -> R {
    let cell = match scratch {
        Scratch::Widened => &WIDENED,
        Scratch::Columns => &COLUMNS,
        Scratch::Scores => &SCORES,
    };
    if len > RETAINED_ELEMENTS {
        return use_buffer(&mut vec![0.0; len]);
    }
    cell.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buffer) => {
            if buffer.len() < len {
                buffer.resize(len, 0.0);
            }
            use_buffer(&mut buffer[..len])
        }
        Err(_) => use_buffer(&mut vec![0.0; len]),
    })
}

/// Spare packed buffers one thread keeps: a bf16 product holds two at once (its packed left and
/// right operands), attention its packed inputs and one task's probabilities.
const SPARE_PACKED_BUFFERS: usize = 3;

/// The largest packed buffer kept as a spare (1 Mi lanes, 4 MiB: a band's packed columns).
/// Larger ones — packed weights, up to 30 MB for SD1.5's 1280-channel layers — go back to the
/// allocator, which keeps them for reuse while the model runs and returns them when it idles;
/// three such spares per thread stayed resident for the process's life (SD1.5's peak RSS with
/// bf16 products: 2.06 → 1.94 GiB, no slower in paired `kiln bench` runs).
const RETAINED_PACKED_LANES: usize = 1 << 20;

/// A buffer of bf16 pairs (`u32` lanes) taken from this thread's spares and handed back to the
/// spares of whichever thread drops it, so packed operands cost no allocation or zeroing once
/// every thread has seen the largest size. Its contents start unspecified (whatever a previous
/// use left, zero where it grew): packers write every lane they later read.
///
/// A buffer for a form kept across calls ([`PackedBuffer::kept`]: a weight packed once per
/// sampling run) gets an anonymous mapping of its own instead: hundreds of them living between
/// the short-lived activations would fragment the heap (SD1.5: +90 MB of peak RSS measured), and
/// unmapping hands their memory straight back when the run ends.
pub(crate) struct PackedBuffer {
    lanes: Lanes,
    len: usize,
}

enum Lanes {
    Reused(Vec<u32>),
    Mapped(memmap2::MmapMut),
}

impl PackedBuffer {
    /// `len` lanes: the smallest spare that is large enough, else the largest spare grown.
    pub(crate) fn take(len: usize) -> Self {
        let spare = SPARE_PACKED
            .try_with(|spares| {
                let mut spares = spares.try_borrow_mut().ok()?;
                let fitting = spares
                    .iter()
                    .enumerate()
                    .filter(|(_, v)| v.len() >= len)
                    .min_by_key(|(_, v)| v.len())
                    .map(|(i, _)| i);
                let largest = spares
                    .iter()
                    .enumerate()
                    .max_by_key(|(_, v)| v.len())
                    .map(|(i, _)| i);
                fitting.or(largest).map(|i| spares.swap_remove(i))
            })
            .ok()
            .flatten();
        let mut values = spare.unwrap_or_default();
        if values.len() < len {
            values.resize(len, 0);
        }
        Self {
            lanes: Lanes::Reused(values),
            len,
        }
    }

    /// `len` zeroed lanes in a mapping of their own, for a form kept across calls (falls back
    /// to [`take`](Self::take) where the system refuses the mapping).
    pub(crate) fn kept(len: usize) -> Self {
        let bytes = len.saturating_mul(std::mem::size_of::<u32>());
        match memmap2::MmapMut::map_anon(bytes) {
            Ok(map) if len > 0 => Self {
                lanes: Lanes::Mapped(map),
                len,
            },
            _ => Self::take(len),
        }
    }

    /// The lanes.
    pub(crate) fn as_slice(&self) -> &[u32] {
        match &self.lanes {
            Lanes::Reused(values) => &values[..self.len],
            // A page-aligned mapping of `4 · len` bytes: the cast cannot fail.
            Lanes::Mapped(map) => &bytemuck::cast_slice(map)[..self.len],
        }
    }

    /// The lanes, writable.
    pub(crate) fn as_mut_slice(&mut self) -> &mut [u32] {
        match &mut self.lanes {
            Lanes::Reused(values) => &mut values[..self.len],
            Lanes::Mapped(map) => &mut bytemuck::cast_slice_mut(map)[..self.len],
        }
    }
}

impl Drop for PackedBuffer {
    fn drop(&mut self) {
        let Lanes::Reused(values) = &mut self.lanes else {
            return;
        };
        let values = std::mem::take(values);
        if values.is_empty() || values.len() > RETAINED_PACKED_LANES {
            return;
        }
        // A thread being torn down has no spares left to keep it in: the buffer is freed.
        let _ = SPARE_PACKED.try_with(|spares| {
            if let Ok(mut spares) = spares.try_borrow_mut() {
                spares.push(values);
                if spares.len() > SPARE_PACKED_BUFFERS {
                    if let Some(smallest) = spares
                        .iter()
                        .enumerate()
                        .min_by_key(|(_, v)| v.len())
                        .map(|(i, _)| i)
                    {
                        spares.swap_remove(smallest);
                    }
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dropped_packed_buffer_is_reused_by_the_next_take() {
        let mut first = PackedBuffer::take(1000);
        first.as_mut_slice()[999] = 7;
        let address = first.as_slice().as_ptr();
        drop(first);
        let second = PackedBuffer::take(500);
        assert_eq!(second.as_slice().len(), 500);
        assert_eq!(second.as_slice().as_ptr(), address);
        let third = PackedBuffer::take(2000);
        assert_eq!(third.as_slice().len(), 2000);
        assert_ne!(third.as_slice().as_ptr(), address);
    }

    #[test]
    fn a_kept_buffer_has_its_own_zeroed_lanes_and_is_not_reused() {
        let mut kept = PackedBuffer::kept(3000);
        assert_eq!(kept.as_slice().len(), 3000);
        assert!(kept.as_slice().iter().all(|&lane| lane == 0));
        kept.as_mut_slice()[2999] = 9;
        assert_eq!(kept.as_slice()[2999], 9);
        let address = kept.as_slice().as_ptr();
        drop(kept);
        let next = PackedBuffer::take(3000);
        assert_ne!(next.as_slice().as_ptr(), address);
        assert!(PackedBuffer::kept(0).as_slice().is_empty());
    }
}
